"""The bridge's layers and loss on stacked parameters: K members' tensors as one (K, ...) tensor each.

Each function is the batched twin of one in ``model.py`` / ``losses.py`` (the paper's bridge, DESIGN.md
section 1), used by ``packed.Pack``. Member k reads only slice k of every input, so no value or gradient
crosses members. Where rounding depends on operand order (matmul backward, gradient accumulation), the
order of the unpacked code is kept: on a CPU with one intra-op thread (as in a sweep's workers) a
member's losses and gradients are then bitwise those of its unpacked bridge, whatever else is in the
pack, except for a member with a label subset (its labelled rows of both domains are encoded in one
pass here, one per domain there, and zero-padded to the pack's longest): it agrees to float rounding.
With more threads, reductions split differently and agreement is to float rounding too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ltrans.bridge.config import BridgeConfig
from ltrans.bridge.losses import labelled_cross_entropy, sorted_values
from ltrans.bridge.train import StepDraws

Params = dict[str, Tensor]  # Bridge parameter name -> (K, ...) stacked tensor


def swd_directions(cfg: BridgeConfig, generator: torch.Generator) -> Tensor:
    """(k, n_projections * k) unit directions, drawn as ``losses.sliced_wasserstein`` draws them."""
    k = cfg.shared_dim
    theta = torch.randn(k, cfg.n_projections * k, generator=generator, device=generator.device)
    return theta / theta.norm(dim=0, keepdim=True)


class _StackedLinear(torch.autograd.Function):
    """x (K, n, in), weight (K, out, in), bias (K, out) -> (K, n, out), one matmul per member.

    The weight gradient is grad^T x, as nn.Linear's backward computes it (not (x^T grad)^T, which rounds
    differently), and on a CPU one torch.mm per member into a fresh tensor: the CPU matmul rounds
    differently when it writes to memory that is not 64-byte aligned, as the slices of one (K, out, in)
    result mostly are (measured with torch 2.13: bmm's and mm(out=view)'s small weight grads).
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_w = None
        if need_w and grad.device.type == "cpu":
            grad_w = torch.stack([g.t().mm(xk) for g, xk in zip(grad, x)])
        elif need_w:
            grad_w = torch.bmm(grad.transpose(1, 2), x)
        return (torch.bmm(grad, weight) if need_x else None, grad_w, grad.sum(dim=1) if need_b else None)


def linear(params: dict[str, Tensor], name: str, x: Tensor) -> Tensor:
    """Stacked nn.Linear of the parameters ``{name}.weight`` and ``{name}.bias``."""
    return _StackedLinear.apply(x, params[f"{name}.weight"], params[f"{name}.bias"])


def gated(params: dict[str, Tensor], name: str, x: Tensor, h: Tensor) -> Tensor:
    """Stacked ``model.GatedAffine``: (1 - g) * skip(x) + g * dz with [dz, g_logit] = proj(h)."""
    dz, g_logit = linear(params, f"{name}.proj", h).chunk(2, dim=2)
    g = torch.sigmoid(g_logit)
    return (1 - g) * linear(params, f"{name}.skip", x) + g * dz


def body(params: dict[str, Tensor], name: str, x: Tensor, n_layers: int) -> Tensor:
    """Stacked ``model.mlp``: n_layers of Linear + ReLU (Linear i is ``{name}.{2 i}``)."""
    for i in range(n_layers):
        x = torch.relu(linear(params, f"{name}.{2 * i}", x))
    return x


@dataclass(frozen=True)
class StackedBatch:
    """One step's inputs of K members (see ``stack_inputs``); rows are [A batch; B batch]."""

    x: Tensor  # (K, 2n, pad_dim + 2) padded latents and the domain one-hot
    eps: Tensor  # (K, 2n, k) noise of the code sample
    y: Tensor  # (K, 2n) labels
    theta: Tensor  # (K, k, P k) SWD directions (zeros for a member with beta_swd 0)
    cls: tuple[str | None, ...]  # per member: "batch" (all labelled), "labelled" (a subset) or None
    labelled: tuple[Tensor, Tensor, Tensor, tuple[int, ...]] | None = None  # x, eps, y, rows per member


def stack_inputs(draws: list[StepDraws], cfgs: list[BridgeConfig], theta: Tensor, dims: tuple[int, int],
                 pad_dim: int) -> StackedBatch:
    """Stack the members' draws. A member with a label subset also has labelled rows (its A rows, then
    its B rows, zero rows up to the longest member's), which the classifier reads instead of the batch,
    as ``train._classified`` does."""
    cfg, dev = cfgs[0], theta.device
    n, k = cfg.batch_size, cfg.shared_dim
    x = torch.zeros(len(draws), 2 * n, pad_dim + 2, device=dev)
    x[:, :n, pad_dim], x[:, n:, pad_dim + 1] = 1.0, 1.0
    for slot, d in enumerate(draws):
        x[slot, :n, : dims[0]], x[slot, n:, : dims[1]] = d.z_a, d.z_b
    eps, y = torch.stack([d.eps for d in draws]), torch.stack([d.y for d in draws])
    cls = tuple(None if c.beta_cls == 0 or c.n_sup == 0 else "batch" if c.n_sup < 0 else
                "labelled" if d.labelled else None for c, d in zip(cfgs, draws))
    labelled = _stack_labelled(draws, k, pad_dim, dev) if "labelled" in cls else None
    return StackedBatch(x, eps, y, theta, cls, labelled)


def _stack_labelled(draws: list[StepDraws], k: int, pad_dim: int, dev) -> tuple[Tensor, Tensor, Tensor, tuple]:
    counts = tuple(sum(len(z) for _, z, _, _ in d.labelled) for d in draws)
    x = torch.zeros(len(draws), max(counts), pad_dim + 2, device=dev)
    eps = torch.zeros(len(draws), max(counts), k, device=dev)
    y = torch.zeros(len(draws), max(counts), dtype=torch.long, device=dev)
    for slot, d in enumerate(draws):
        at = 0
        for side, z, labels, noise in d.labelled:
            rows = slice(at, at + len(z))
            x[slot, rows, : z.shape[1]], x[slot, rows, pad_dim + side] = z, 1.0
            eps[slot, rows], y[slot, rows] = noise, labels
            at += len(z)
    return x, eps, y, counts


def encode(p: Params, x: Tensor, eps: Tensor, cfg: BridgeConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Stacked ``Bridge.encode_padded`` and the reparameterised code: mu, std, mu + std * eps."""
    h = body(p, "enc_body", x, cfg.n_layers)
    mu, std = gated(p, "enc_mu", x, h), F.softplus(gated(p, "enc_std", x, h)) + cfg.std_floor
    return mu, std, mu + std * eps


def stacked_loss(p: Params, batch: StackedBatch, cfg: BridgeConfig, betas: dict[str, Tensor],
                 dims: tuple[int, int]) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-member total loss (K,) with its graph, and the detached parts (K,) of ``losses.bridge_loss``.

    ``betas`` maps beta_kl, beta_swd, beta_cls to (K,) weights; a weight of 0 removes its term. Every
    member computes every term (a removed one with weight 0), so the ops are those of train_bridge's
    step in its order, plus terms whose gradients are exact zeros.
    """
    n, x, pad_dim = cfg.batch_size, batch.x, batch.x.shape[2] - 2
    mu, std, code = encode(p, x, batch.eps, cfg)  # (K, 2n, k) each
    dec_in = torch.cat([code, x[:, :, pad_dim:]], dim=2)  # codes + domain one-hot
    recon = gated(p, "dec_out", dec_in, body(p, "dec_body", dec_in, cfg.n_layers))
    err_a = (recon[:, :n, : dims[0]] - x[:, :n, : dims[0]]).pow(2).mean(dim=(1, 2))
    err_b = (recon[:, n:, : dims[1]] - x[:, n:, : dims[1]]).pow(2).mean(dim=(1, 2))
    parts = {"recon": 0.5 * (err_a + err_b)}
    parts["kl"] = (0.5 * (mu.pow(2) + std.pow(2) - 1.0) - torch.log(std)).sum(dim=2).mean(dim=1)
    parts["swd"] = sliced_wasserstein(code[:, :n], code[:, n:], batch.theta)
    if any(batch.cls):
        parts["cls"] = _classifier_loss(p, batch, code, cfg)
    total = parts["recon"]
    for name in ("kl", "swd", "cls"):
        if name in parts:  # where, not a product: a removed term's NaN stays out
            weight = betas[f"beta_{name}"]
            total = total + torch.where(weight > 0, weight * parts[name], torch.zeros_like(total))
    return total, {name: value.detach() for name, value in parts.items()} | {"total": total.detach()}


def _classifier_loss(p: Params, batch: StackedBatch, code: Tensor, cfg: BridgeConfig) -> Tensor:
    """(K,) cross-entropy of each member's classifier rows (0 for a member without the term)."""
    on_batch = gated(p, "classifier", code, code) if "batch" in batch.cls else None  # (K, 2n, c)
    on_labelled, labels, counts = None, None, ()
    if batch.labelled is not None:
        x, eps, labels, counts = batch.labelled
        labelled_code = encode(p, x, eps, cfg)[2]
        on_labelled = gated(p, "classifier", labelled_code, labelled_code)  # (K, m, c)
    zero = code.new_zeros(())
    losses = []
    for i, kind in enumerate(batch.cls):
        if kind == "batch":
            losses.append(labelled_cross_entropy(on_batch[i], batch.y[i]))
        elif kind == "labelled":
            losses.append(labelled_cross_entropy(on_labelled[i, : counts[i]], labels[i, : counts[i]]))
        else:
            losses.append(zero)
    return torch.stack(losses)


class _Projection(torch.autograd.Function):
    """theta (K, k, P k), x (K, n, k) -> theta^T x^T (K, P k, n), differentiable in x only.

    The backward multiplies as torch.mm's does for ``theta.T @ x.T`` (x's grad = grad^T theta^T), so
    that the SWD's gradients are bitwise those of ``losses.sliced_wasserstein``.
    """

    @staticmethod
    def forward(ctx, theta: Tensor, x: Tensor) -> Tensor:
        ctx.save_for_backward(theta)
        return torch.bmm(theta.transpose(1, 2), x.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor]:
        (theta,) = ctx.saved_tensors
        return None, torch.bmm(grad.transpose(1, 2), theta.transpose(1, 2))


def sliced_wasserstein(x: Tensor, y: Tensor, theta: Tensor) -> Tensor:
    """Per-member sliced W1 of ``losses.sliced_wasserstein``: x, y (K, n, k), theta (K, k, P k) -> (K,)."""
    px = sorted_values(_Projection.apply(theta, x))  # (K, P k, n)
    py = sorted_values(_Projection.apply(theta, y))
    return (px - py).abs().mean(dim=(1, 2))

