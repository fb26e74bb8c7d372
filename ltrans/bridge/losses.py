"""The bridge objective (Tian & Engel 2019, section 3; DESIGN.md section 1, "Loss").

    L = MSE(z_hat, z) + beta_kl * KL(q(z'|z, d) || N(0, I)) + beta_swd * SWD(z'_A, z'_B)
        + beta_cls * CE(cls(z'), y)   (labelled rows of both domains only)

Pure functions: tensors in, tensors out, randomness passed in as a ``torch.Generator``. A beta of 0
removes its term: it is neither computed nor reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ltrans.bridge.config import BridgeConfig


def sliced_wasserstein(x: Tensor, y: Tensor, n_projections: int, generator: torch.Generator) -> Tensor:
    """Sliced W1 between equal-size point clouds x, y: (n, d), in the authors' form.

    Draws ``n_projections`` random d x d Gaussian matrices with unit-norm columns (n_projections * d
    directions), projects both clouds, sorts each projected column and returns the mean absolute
    difference of the sorted values (the exact 1-D W1 per direction), averaged over directions.
    """
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"x and y must have the same (n, d) shape, got {tuple(x.shape)} vs {tuple(y.shape)}")
    if n_projections < 1:
        raise ValueError(f"n_projections must be >= 1, got {n_projections}")
    d = x.shape[1]
    theta = torch.randn(d, n_projections * d, generator=generator, device=generator.device).to(x)
    theta = theta / theta.norm(dim=0, keepdim=True)  # (d, k*d) unit directions
    # Projections laid out (k*d, n) so that each sort runs over contiguous memory (2x faster on CPU).
    px = sorted_values(theta.T @ x.T)  # (k*d, n)
    py = sorted_values(theta.T @ y.T)
    return (px - py).abs().mean()


def sorted_values(x: Tensor) -> Tensor:
    """x sorted along its last dim, differentiably: exactly the values and gradients of ``torch.sort``.

    On a CPU, numpy's argsort (AVX-512 x86-simd-sort where the CPU has it) is ~10x faster than torch's
    sort for rows of a few hundred values, and the SWD's sorts are most of a small bridge's step. Its
    order is torch's wherever values are distinct; the few rows with a tie are sorted again by torch,
    whose tie order decides which of the tied points gets the gradient.
    """
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return torch.sort(x, dim=-1).values
    plain = x.detach()
    order = torch.from_numpy(np.argsort(plain.numpy(), axis=-1))
    values = plain.gather(-1, order)
    tied = (values[..., 1:] == values[..., :-1]).any(dim=-1)
    if bool(tied.any()):
        rows = tied.nonzero(as_tuple=True)
        order[rows] = torch.sort(plain[rows], dim=-1).indices
    return x.gather(-1, order)


def kl_standard_normal(mu: Tensor, std: Tensor) -> Tensor:
    """KL(N(mu, std^2) || N(0, I)) for diagonal Gaussians: mu, std (n, k); summed over k, mean over n."""
    kl = 0.5 * (mu.pow(2) + std.pow(2) - 1.0) - torch.log(std)  # (n, k)
    return kl.sum(dim=1).mean()


def reconstruction_mse(recon: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over all elements: recon, target (n, d)."""
    return F.mse_loss(recon, target)


def labelled_cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy over rows with y >= 0 (y = -1 marks unlabelled); 0 when no row is labelled.

    logits: (n, c), y: (n,) int64.
    """
    keep = y >= 0
    if not bool(keep.any()):
        return logits.sum() * 0.0  # keeps the graph (and dtype/device) without a gradient
    return F.cross_entropy(logits[keep], y[keep])


@dataclass(frozen=True)
class BridgeBatch:
    """One step's forward pass: targets, reconstructions, posteriors and code samples per domain.

    z_*/recon_*: (n, dim_*) latents and their reconstructions; mu/std: (2n, k) posteriors of the
    stacked [A; B] batch; code_a, code_b: (n, k) reparameterised samples of z'; cls_code: (m, k) codes
    to classify with labels cls_y (m,) (-1 = unlabelled), or None when no labels are used.
    """

    z_a: Tensor
    z_b: Tensor
    recon_a: Tensor
    recon_b: Tensor
    mu: Tensor
    std: Tensor
    code_a: Tensor
    code_b: Tensor
    cls_code: Tensor | None = None
    cls_y: Tensor | None = None


def bridge_loss(batch: BridgeBatch, cfg: BridgeConfig, generator: torch.Generator,
                classify: Callable[[Tensor], Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss and its parts (detached): recon, and kl / swd / cls when their beta is > 0."""
    # Both domains weigh equally: the mean of the two reconstruction errors.
    recon = 0.5 * (reconstruction_mse(batch.recon_a, batch.z_a) + reconstruction_mse(batch.recon_b, batch.z_b))
    total, parts = recon, {"recon": recon}
    if cfg.beta_kl > 0:
        parts["kl"] = kl_standard_normal(batch.mu, batch.std)
        total = total + cfg.beta_kl * parts["kl"]
    if cfg.beta_swd > 0:
        parts["swd"] = sliced_wasserstein(batch.code_a, batch.code_b, cfg.n_projections, generator)
        total = total + cfg.beta_swd * parts["swd"]
    if cfg.beta_cls > 0 and batch.cls_code is not None and batch.cls_y is not None:
        parts["cls"] = labelled_cross_entropy(classify(batch.cls_code), batch.cls_y)
        total = total + cfg.beta_cls * parts["cls"]
    parts = {name: value.detach() for name, value in parts.items()}
    parts["total"] = total.detach()
    return total, parts
