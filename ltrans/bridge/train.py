"""Training loop of the bridge VAE (Tian & Engel 2019, section 3 and 4.1; DESIGN.md 1, "Training").

Adam on the loss of ``losses.bridge_loss``; each step draws ``batch_size`` rows from each domain
(class-balanced when ``balanced_batches``: labels cycle through the classes), a fresh posterior sample
z ~ N(mu, std) per row (std = 0 for GAN latents), and classifies the codes of the labelled rows
(``n_sup`` per domain, chosen class-balanced with the seed). All randomness comes from one seed: the
same seed gives a bitwise identical model on CPU. A diverging run ends with status "failed", never an
exception, so a sweep goes on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm import tqdm

from ltrans import faults
from ltrans.bridge.config import BridgeConfig
from ltrans.bridge.losses import BridgeBatch, bridge_loss
from ltrans.bridge.model import Bridge
from ltrans.latents import Latents
from ltrans.progress import progress_bar

Metrics = dict[str, float]


@dataclass
class BridgeResult:
    """A trained bridge (eval mode) and how its training went; ``curve`` has one entry per eval point."""

    model: Bridge
    status: str  # "ok" | "failed" | "stopped"
    reason: str
    steps: int  # optimizer steps done
    wall_s: float
    losses: Metrics  # mean loss parts over the last eval window
    curve: list[Metrics] = field(default_factory=list)


class ClassSampler:
    """Draws row indices of one domain; balanced draws cycle through the classes present in ``y``."""

    def __init__(self, y: Tensor, balanced: bool, generator: torch.Generator) -> None:
        if len(y) == 0:
            raise ValueError("cannot sample batches from an empty set of latents")
        self.n, self.balanced, self.generator, self.offset = len(y), balanced, generator, 0
        device = generator.device
        classes = torch.unique(y)
        members = [torch.nonzero(y == c).squeeze(1) for c in classes]
        self.counts = torch.tensor([len(m) for m in members], device=device)  # (c,)
        self.table = torch.zeros(len(members), int(self.counts.max()), dtype=torch.long)  # (c, max count)
        for row, m in enumerate(members):
            self.table[row, : len(m)] = m
        self.table = self.table.to(device)

    def draw(self, n: int) -> Tensor:  # -> (n,) indices into y, with replacement
        device = self.generator.device
        if not self.balanced:
            return torch.randint(self.n, (n,), generator=self.generator, device=device)
        n_classes = len(self.counts)
        # Class of row i is (offset + i) mod c; the offset carries over, so classes stay balanced over
        # steps even when c does not divide n.
        cls = (self.offset + torch.arange(n, device=device)) % n_classes
        self.offset = (self.offset + n) % n_classes
        u = torch.rand(n, generator=self.generator, device=device)
        rank = torch.minimum((u * self.counts[cls]).long(), self.counts[cls] - 1)
        return self.table[cls, rank]


def select_labelled(y: Tensor, n_sup: int, generator: torch.Generator) -> Tensor:
    """Sorted indices of the labelled subset: all (-1), none (0) or n_sup rows spread evenly over classes.

    Classes take turns in a random order, each giving its next randomly chosen row, so every class has
    floor(n_sup / c) or one more (fewer only if a class runs out).
    """
    n = len(y)
    if n_sup < 0 or n_sup >= n:
        return torch.arange(n)
    y = y.cpu()
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(_draw_seed(generator)))
    ys = y[perm]
    classes = torch.unique(ys)
    turn = torch.randperm(len(classes), generator=torch.Generator().manual_seed(_draw_seed(generator)))
    rank = torch.zeros(n, dtype=torch.long)  # position of each permuted row within its class
    key = torch.zeros(n, dtype=torch.long)
    for i, c in enumerate(classes):
        where = torch.nonzero(ys == c).squeeze(1)
        rank[where] = torch.arange(len(where))
        key[where] = turn[i]
    order = torch.argsort(rank * len(classes) + key)
    return perm[order[:n_sup]].sort().values


def labelled_subsets(y_a: Tensor, y_b: Tensor, n_sup: int, seed: int) -> tuple[Tensor, Tensor]:
    """The labelled rows of each domain for a trial seed: what the bridge's class term trains on and what
    the Procrustes baseline pairs as anchors (``procrustes.class_anchors``), so that a label-budget study
    compares the two on the same examples. Seeded by ``seed`` alone: the subset does not depend on the
    bridge's architecture or on how many random numbers its initialisation drew."""
    gen = torch.Generator().manual_seed(seed)
    return select_labelled(y_a, n_sup, gen), select_labelled(y_b, n_sup, gen)


def _draw_seed(generator: torch.Generator) -> int:
    """A seed for a CPU helper generator, drawn from ``generator`` (works for any device)."""
    return int(torch.randint(2**62, (1,), generator=generator, device=generator.device).item())


@dataclass
class _Domain:
    """One domain's training latents on the device, with its batch and labelled-batch samplers."""

    mu: Tensor  # (n, d)
    std: Tensor  # (n, d)
    y: Tensor  # (n,)
    batches: ClassSampler
    labelled: Tensor  # (m,) indices of the labelled subset
    labelled_batches: ClassSampler | None

    def sample(self, idx: Tensor, cfg: BridgeConfig, generator: torch.Generator) -> Tensor:
        mu = self.mu[idx]
        if not cfg.sample_posterior:
            return mu
        return mu + self.std[idx] * torch.randn(mu.shape, generator=generator, device=generator.device)


def domains(latents_a: Latents, latents_b: Latents, cfg: BridgeConfig, seed: int, generator: torch.Generator,
            device: str) -> tuple[_Domain, _Domain]:
    """Both domains' training state for a trial of ``seed`` (labelled subsets from ``labelled_subsets``)."""
    ia, ib = labelled_subsets(latents_a.y, latents_b.y, cfg.n_sup, seed)
    return _domain(latents_a, ia, cfg, generator, device), _domain(latents_b, ib, cfg, generator, device)


def _domain(lat: Latents, labelled: Tensor, cfg: BridgeConfig, generator: torch.Generator, device: str) -> _Domain:
    labelled = labelled.to(device)
    y = lat.y.to(device)
    sub = None
    if 0 < cfg.n_sup and len(labelled) > 0:
        sub = ClassSampler(y[labelled], cfg.balanced_batches, generator)
    return _Domain(lat.mu.to(device, torch.float32), lat.std.to(device, torch.float32), y,
                   ClassSampler(y, cfg.balanced_batches, generator), labelled, sub)


@dataclass(frozen=True)
class StepDraws:
    """One step's rows and noise, drawn before any compute and in the order training has always drawn
    them, so that a pack can draw them per member from that member's generator (``bridge.packed``).

    z_a, z_b: (n, dim_*) sampled latents; y: (2n,) their labels; eps: (2n, k) noise of the code sample;
    labelled: one (side, z (m, dim), y (m,), eps (m, k)) per domain with a labelled batch, when the
    classifier trains on a labelled subset (0 < n_sup); the SWD directions are drawn after these.
    """

    z_a: Tensor
    z_b: Tensor
    y: Tensor
    eps: Tensor
    labelled: tuple[tuple[int, Tensor, Tensor, Tensor], ...] = ()


def _code_noise(shape: tuple[int, int], cfg: BridgeConfig, generator: torch.Generator) -> Tensor:
    """eps of the code sample mu + std * eps; zeros when ``cfg.sample_code`` is off (drawn all the same, so
    every later draw of the run is the one a sampling run makes)."""
    eps = torch.randn(shape, generator=generator, device=generator.device)
    return eps if cfg.sample_code else torch.zeros_like(eps)


def draw_step(dom: tuple[_Domain, _Domain], cfg: BridgeConfig, generator: torch.Generator) -> StepDraws:
    """Batch rows of both domains, their posterior samples and the code noise of one step.

    With a labelled subset, the classifier gets a separate class-balanced batch from each domain's
    labelled rows (so k labels are used every step, not only when a random batch happens to hit one).
    """
    n = cfg.batch_size
    idx = (dom[0].batches.draw(n), dom[1].batches.draw(n))
    z_a, z_b = (d.sample(i, cfg, generator) for d, i in zip(dom, idx))
    eps = _code_noise((2 * n, cfg.shared_dim), cfg, generator)
    labelled = []
    if cfg.beta_cls > 0 and cfg.n_sup > 0:
        for side, d in enumerate(dom):
            if d.labelled_batches is None:
                continue
            rows = d.labelled[d.labelled_batches.draw(min(cfg.batch_size, len(d.labelled)))]
            z = d.sample(rows, cfg, generator)
            noise = _code_noise((len(rows), cfg.shared_dim), cfg, generator)
            labelled.append((side, z, d.y[rows], noise))
    y = torch.cat([dom[0].y[idx[0]], dom[1].y[idx[1]]])
    return StepDraws(z_a, z_b, y, eps, tuple(labelled))


def _classified(model: Bridge, draws: StepDraws, code: Tensor,
                cfg: BridgeConfig) -> tuple[Tensor | None, Tensor | None]:
    """Codes and labels for the classifier term: the batch itself when all rows are labelled, else the
    separate labelled batches of ``draws``."""
    if cfg.beta_cls == 0 or cfg.n_sup == 0:
        return None, None
    if cfg.n_sup < 0:
        return code, draws.y
    codes, labels = [], []
    for side, z, y, eps in draws.labelled:
        mu, std = model.encode_padded(model.pad(z), torch.full((len(z),), side, device=z.device))
        codes.append(mu + std * eps)
        labels.append(y)
    return (torch.cat(codes), torch.cat(labels)) if codes else (None, None)


def _forward(model: Bridge, draws: StepDraws, cfg: BridgeConfig) -> BridgeBatch:
    """Encode both domains' batches in one pass of the shared body, sample z', decode."""
    n = cfg.batch_size
    z_a, z_b = draws.z_a, draws.z_b
    ids = torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)]).to(z_a.device)
    mu, std = model.encode_padded(torch.cat([model.pad(z_a), model.pad(z_b)]), ids)  # (2n, k) each
    code = mu + std * draws.eps
    recon = model.decode_padded(code, ids)  # (2n, pad_dim)
    cls_code, cls_y = _classified(model, draws, code, cfg)
    return BridgeBatch(z_a, z_b, recon[:n, : model.dims[0]], recon[n:, : model.dims[1]], mu, std,
                       code[:n], code[n:], cls_code, cls_y)


def _non_finite(latents_a: Latents, latents_b: Latents) -> str:
    for name, lat in (("latents_a", latents_a), ("latents_b", latents_b)):
        for field_name in ("mu", "std"):
            if not bool(torch.isfinite(getattr(lat, field_name)).all()):
                return f"{name}.{field_name} has non-finite values"
    return ""


def train_bridge(cfg: BridgeConfig, latents_a: Latents, latents_b: Latents, *, seed: int,
                 device: str = "cpu", on_eval: Callable[[int, Metrics], None] | None = None,
                 should_stop: Callable[[int, Metrics], bool] | None = None, progress: bool = False) -> BridgeResult:
    """Train a bridge between two domains' latents.

    Args:
        on_eval: called as on_eval(step, metrics) every ``cfg.eval_every`` steps and at the end, with
            the mean training-loss parts over the window, ``step`` and ``wall_s``.
        should_stop: called after on_eval; True ends training with status "stopped" (early stopping).
        progress: a progress bar on stderr (steps, time left, the loss at each eval point).
    """
    bar = progress_bar(cfg.steps, progress, "bridge")
    try:
        return _train(cfg, latents_a, latents_b, seed, device, on_eval, should_stop, bar)
    finally:
        bar.close()


def _train(cfg: BridgeConfig, latents_a: Latents, latents_b: Latents, seed: int, device: str,
           on_eval: Callable[[int, Metrics], None] | None, should_stop: Callable[[int, Metrics], bool] | None,
           bar: tqdm) -> BridgeResult:
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    model = Bridge(latents_a.dim, latents_b.dim, cfg, generator=gen).to(device)
    # CPU: the one generator drives everything; elsewhere a device generator seeded from it.
    step_gen = gen if torch.device(device).type == "cpu" else torch.Generator(device).manual_seed(_draw_seed(gen))
    run = _Run(model, cfg, start)
    if bad := _non_finite(latents_a, latents_b):
        return run.result("failed", bad)
    dom = domains(latents_a, latents_b, cfg, seed, step_gen, device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    model.train()
    faults.check(cfg)
    for step in range(1, cfg.steps + 1):
        draws = draw_step(dom, cfg, step_gen)
        loss, parts = bridge_loss(_forward(model, draws, cfg), cfg, step_gen, model.classify)
        if not bool(torch.isfinite(loss)):
            return run.result("failed", f"loss became {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run.add(parts)
        bar.update()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            metrics = run.point(step)
            bar.set_postfix({k: f"{v:.3g}" for k, v in metrics.items() if k not in ("step", "wall_s")})
            if on_eval is not None:
                on_eval(step, metrics)
            if should_stop is not None and should_stop(step, metrics):
                return run.result("stopped", f"should_stop at step {step}")
    if not all(bool(torch.isfinite(p).all()) for p in params):
        return run.result("failed", f"parameters became non-finite at step {cfg.steps}")
    return run.result("ok", "")


class _Run:
    """Bookkeeping of one training run: loss sums over the current window and the curve."""

    def __init__(self, model: Bridge, cfg: BridgeConfig, start: float,
                 clock: Callable[[], float] | None = None) -> None:
        """``clock()``: the run's training seconds so far (default: wall time since ``start``)."""
        self.model, self.cfg, self.start = model, cfg, start
        self.clock = clock or (lambda: time.perf_counter() - start)
        self.sums: dict[str, Tensor] = {}
        self.count, self.steps = 0, 0
        self.curve: list[Metrics] = []
        self.losses: Metrics = {}

    def add(self, parts: dict[str, Tensor]) -> None:
        for name, value in parts.items():  # summed as tensors: no device sync per step
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.count, self.steps = self.count + 1, self.steps + 1

    def point(self, step: int) -> Metrics:
        self.losses = {name: float(total) / self.count for name, total in self.sums.items()}
        self.sums, self.count = {}, 0
        metrics = {"step": float(step), "wall_s": self.clock(), **self.losses}
        self.curve.append(metrics)
        return metrics

    def result(self, status: str, reason: str) -> BridgeResult:
        if self.count:  # a partial window (failure or the end): its means are the final losses
            finite = {n: float(t) / self.count for n, t in self.sums.items()}
            self.losses = {n: v for n, v in finite.items() if math.isfinite(v)}
        self.model.eval()
        return BridgeResult(self.model, status, reason, self.steps, self.clock(), self.losses, self.curve)


@torch.no_grad()
def translate_latents(model: Bridge, mu_src: Tensor, src: str, dst: str) -> Tensor:
    """Translate (n, dim_src) latents to (n, dim_dst) through the posterior mean of z'."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = model.translate(mu_src.to(device, torch.float32), src, dst)
    model.train(was_training)
    return out
