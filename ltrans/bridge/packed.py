"""Packed training: K bridges of one shape trained at once as stacked parameters (DESIGN.md 4, "Packing").

A bridge trial is tiny, so per-process costs dominate a sweep. A pack holds every parameter as one
(K, ...) tensor and runs each layer as one batched matmul. Member k keeps its own learning rate, loss
weights, label budget, seed, step budget and Adam state; its loss reads only slice k of every stacked
tensor, so gradients never mix and one member's NaN cannot reach another. Each member draws its rows
and noise from its own generator, in the order ``train.train_bridge`` draws them (``train.draw_step``),
so a member trains like the unpacked bridge of the same config and seed (bitwise on a CPU, but for the
exceptions ``stacked.py`` names; the stacked layers and loss live there). A member leaves the pack when
it finishes, fails or is stopped (``should_stop``, e.g. ASHA rungs); the others go on in a smaller pack.

A member's training time (its result's ``wall_s`` and its curve's) is its share of the pack's: the
setup split evenly, each step's time split among the members training at it, and the callbacks
(evaluations of members that left, reports) not counted; so the members' times add up to the pack's
training time, as K unpacked runs' times add up to theirs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ltrans import faults
from ltrans.bridge.config import BridgeConfig
from ltrans.bridge.model import Bridge
from ltrans.bridge.stacked import stack_inputs, stacked_loss, swd_directions
from ltrans.bridge.train import (
    BridgeResult,
    Metrics,
    StepDraws,
    _draw_seed,
    _non_finite,
    _Run,
    domains,
    draw_step,
)
from ltrans.latents import Latents

# Settings every member of a pack shares: the layer shapes and the step layout.
PACK_FIELDS = ("shared_dim", "n_layers", "width", "batch_size", "n_projections", "n_classes", "eval_every",
               "freeze_classifier", "std_floor")
PARTS = ("recon", "kl", "swd", "cls", "total")
BETAS = ("beta_kl", "beta_swd", "beta_cls")
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, as train_bridge uses them


def pack_key(cfg: BridgeConfig) -> tuple:
    """What bridges must share to train in one pack (see PACK_FIELDS)."""
    return tuple(getattr(cfg, name) for name in PACK_FIELDS)


@dataclass(frozen=True)
class Member:
    """One bridge of a pack: its config and seed (the ``seed`` of ``train_bridge``)."""

    cfg: BridgeConfig
    seed: int


class Pack:
    """K members trained together; ``run`` trains them, ``bridge(k)`` is member k's current bridge."""

    def __init__(self, members: Sequence[Member], latents_a: Latents, latents_b: Latents,
                 device: str = "cpu") -> None:
        if not members or len({pack_key(m.cfg) for m in members}) != 1:
            raise ValueError(f"a pack needs members that agree on {', '.join(PACK_FIELDS)}")
        self.start = time.perf_counter()
        self.members, self.device, self.cfg = list(members), device, members[0].cfg
        latents_a, latents_b = _on_device(latents_a, device), _on_device(latents_b, device)  # once, not K times
        self.models, self.gens = [], []
        for m in self.members:  # train_bridge's order: init from the seed, then the step generator
            gen = torch.Generator().manual_seed(m.seed)
            self.models.append(Bridge(latents_a.dim, latents_b.dim, m.cfg, generator=gen).to(device))
            cpu = torch.device(device).type == "cpu"
            self.gens.append(gen if cpu else torch.Generator(device).manual_seed(_draw_seed(gen)))
        self.runs = [_Run(model, m.cfg, self.start, clock=lambda k=k: self.member_s[k])
                     for k, (model, m) in enumerate(zip(self.models, self.members))]
        self.bad_latents = _non_finite(latents_a, latents_b)
        self.doms = [] if self.bad_latents else [
            domains(latents_a, latents_b, m.cfg, m.seed, g, device) for m, g in zip(self.members, self.gens)]
        self.active = list(range(len(self.members)))  # member ids of the stacked slices, in order
        first = self.models[0]
        self.dims, self.pad_dim = first.dims, first.pad_dim
        self.params = {name: torch.stack([dict(model.named_parameters())[name].detach() for model in self.models])
                       .requires_grad_(p.requires_grad) for name, p in first.named_parameters()}
        self.exp_avg = {n: torch.zeros_like(p) for n, p in self.params.items() if p.requires_grad}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in self.params.items() if p.requires_grad}
        self.lr = torch.tensor([m.cfg.lr for m in self.members], dtype=torch.float64, device=device)
        self.betas = {b: torch.tensor([getattr(m.cfg, b) for m in self.members], device=device) for b in BETAS}
        self.adam_steps = 0
        self.window: dict[str, Tensor] = {}
        self.window_count = 0
        setup = time.perf_counter() - self.start  # each member's share of the pack's training seconds (its clock)
        self.member_s = [setup / len(self.members)] * len(self.members)
        self.cuda = torch.device(device).type == "cuda"
        self.callback_s = 0.0  # seconds spent in run()'s callbacks

    def bridge(self, k: int) -> Bridge:
        """Member k's bridge holding its current weights (its final ones once it has left the pack)."""
        if k in self.active:
            slot = self.active.index(k)
            with torch.no_grad():
                for name, p in self.models[k].named_parameters():
                    p.copy_(self.params[name][slot])
        return self.models[k]

    def draw(self) -> tuple[list[StepDraws], Tensor]:
        """One step's draws of every active member, and their SWD directions (K, k, P k)."""
        draws, thetas = [], []
        for k in self.active:
            cfg, gen = self.members[k].cfg, self.gens[k]
            draws.append(draw_step(self.doms[k], cfg, gen))
            theta = swd_directions(cfg, gen) if cfg.beta_swd > 0 else None  # train_bridge draws none at 0
            thetas.append(theta)
        zero = torch.zeros(self.cfg.shared_dim, self.cfg.n_projections * self.cfg.shared_dim, device=self.device)
        return draws, torch.stack([zero if t is None else t for t in thetas])

    def losses(self, draws: list[StepDraws], theta: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-member total loss (K,) with its graph, and the detached parts (K,) of ``losses.bridge_loss``."""
        cfgs = [self.members[k].cfg for k in self.active]
        return stacked_loss(self.params, stack_inputs(draws, cfgs, theta, self.dims, self.pad_dim), self.cfg,
                            self.betas, self.dims)

    def adam(self) -> None:
        """One step of torch.optim.Adam's single-tensor update, with a learning rate per member."""
        self.adam_steps += 1
        (b1, b2), t = ADAM_BETAS, self.adam_steps
        step_size = (self.lr / (1 - b1**t)).float()  # lr / bias_correction1 in float64, as Adam computes it
        bias_correction2_sqrt = (1 - b2**t) ** 0.5
        with torch.no_grad():
            for name, m in self.exp_avg.items():
                param, v = self.params[name], self.exp_avg_sq[name]
                grad = param.grad
                if grad is None:  # no active member's loss used it (beta_cls = 0 or n_sup = 0): Adam skips it
                    continue
                m.lerp_(grad, 1 - b1)
                v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                denom = (v.sqrt() / bias_correction2_sqrt).add_(ADAM_EPS)
                param.add_(-step_size.view(-1, *[1] * (param.ndim - 1)) * m / denom)
                param.grad = None

    def run(self, on_eval: Callable[[int, int, Metrics], None] | None = None,
            should_stop: Callable[[int, int, Metrics], bool] | None = None,
            on_end: Callable[[int, BridgeResult], None] | None = None,
            after_step: Callable[[int], None] | None = None) -> list[BridgeResult]:
        """Train every member to its own ``steps``; results in member order (like ``train_bridge``'s).

        At a step, every due on_eval comes first, then every should_stop, then on_end for each member
        that left, then after_step (only at steps where one of those happened).

        Args:
            on_eval: on_eval(k, step, metrics) for member k at each of its eval points.
            should_stop: should_stop(k, step, metrics) after on_eval; True stops member k alone.
            on_end: on_end(k, result) as soon as member k has left the pack.
            after_step: after_step(step) once this step's callbacks are done.
        """
        results: dict[int, BridgeResult] = {}
        if self.bad_latents:
            results = {k: run.result("failed", self.bad_latents) for k, run in enumerate(self.runs)}
        for k in [k for k in self.active if k not in results and self.members[k].cfg.steps == 0]:
            results[k] = self._end(k, "ok", "", window=False)
        self._finish_step(0, results, set(results), on_end, after_step)
        for model in self.models:
            model.train()
        step = 0
        on_eval, should_stop, on_end, after_step = (None if f is None else self._timed(f)
                                                    for f in (on_eval, should_stop, on_end, after_step))
        for member in self.members:
            faults.check(member.cfg)
        mark, outside = time.perf_counter(), self.callback_s  # training time is counted from mark on
        while self.active:
            step += 1
            training = list(self.active)
            total, parts = self.losses(*self.draw())
            finite = torch.isfinite(total)
            failed = set()
            if not bool(finite.all()):  # as train_bridge: such a member leaves before this step's update
                for slot in torch.nonzero(~finite).flatten().tolist():
                    k = self.active[slot]
                    failed.add(k)
                    results[k] = self._end(k, "failed", f"loss became {total[slot].item()} at step {step}")
            torch.where(finite, total, torch.zeros_like(total)).sum().backward()
            self.adam()
            self._add(parts, finite)
            if self.cuda:
                torch.cuda.synchronize(self.device)  # the step's kernels are its time, not the next one's
            now = time.perf_counter()  # this step's time (and the last one's bookkeeping), before its points
            share = (now - mark - (self.callback_s - outside)) / len(training)
            for k in training:
                self.member_s[k] += share
            for k in failed:  # ended before the update (as train_bridge), but this step was theirs too
                results[k] = dataclasses.replace(results[k], wall_s=self.member_s[k])
            mark, outside = now, self.callback_s
            due = self._evals(step, results, on_eval, should_stop)
            if step % self.cfg.eval_every == 0:  # every member still here took its point: a new window
                self.window, self.window_count = {}, 0
            self._finish_step(step, results, failed | due, on_end, after_step)
        return [results[k] for k in range(len(self.members))]

    def _timed(self, callback: Callable) -> Callable:
        """``callback`` with its time counted in ``callback_s`` (no member's training time)."""
        def timed(*args):
            began = time.perf_counter()
            try:
                return callback(*args)
            finally:
                self.callback_s += time.perf_counter() - began
        return timed

    def _evals(self, step: int, results: dict[int, BridgeResult], on_eval, should_stop) -> set[int]:
        """This step's eval points, stops and ends of members still training; the members it concerned."""
        live = [k for k in self.active if k not in results]
        due = [k for k in live if step % self.cfg.eval_every == 0 or step == self.members[k].cfg.steps]
        points = {k: self._point(k, step) for k in due}
        for k in due:
            if on_eval is not None:
                on_eval(k, step, points[k])
        for k in due:
            if should_stop is not None and should_stop(k, step, points[k]):
                results[k] = self._end(k, "stopped", f"should_stop at step {step}", window=False)
        for k in [k for k in live if k not in results and step >= self.members[k].cfg.steps]:
            slot = self.active.index(k)
            finite = all(bool(torch.isfinite(p[slot]).all()) for n, p in self.params.items() if n in self.exp_avg)
            reason = "" if finite else f"parameters became non-finite at step {step}"
            results[k] = self._end(k, "ok" if finite else "failed", reason, window=False)
        return set(due)

    def _finish_step(self, step: int, results: dict[int, BridgeResult], touched: set[int], on_end,
                     after_step) -> None:
        """on_end for the members that left at this step, drop them, then after_step."""
        gone = [k for k in self.active if k in results]
        self._drop(set(gone))
        for k in gone:
            if on_end is not None:
                on_end(k, results[k])
        if (touched or gone) and after_step is not None:
            after_step(step)

    def _add(self, parts: dict[str, Tensor], finite: Tensor) -> None:
        for name, value in parts.items():  # per-member window sums, kept on the device
            value = torch.where(finite, value, torch.zeros_like(value))
            self.window[name] = self.window[name] + value if name in self.window else value
        self.window_count += 1
        for k in self.active:
            self.runs[k].steps += 1

    def _point(self, k: int, step: int) -> Metrics:
        run, slot = self.runs[k], self.active.index(k)
        run.sums = {name: self.window[name][slot] for name in self._parts(k)}
        run.count = self.window_count
        return run.point(step)

    def _parts(self, k: int) -> list[str]:
        """The loss parts member k reports: those whose beta is > 0 (cls only with labels), as bridge_loss."""
        cfg = self.members[k].cfg
        on = {"recon": True, "kl": cfg.beta_kl > 0, "swd": cfg.beta_swd > 0,
              "cls": cfg.beta_cls > 0 and cfg.n_sup != 0, "total": True}
        return [name for name in PARTS if on[name] and name in self.window]

    def _end(self, k: int, status: str, reason: str, window: bool = True) -> BridgeResult:
        """Member k's result; ``window``: its losses are the means of the steps since its last point."""
        run, slot = self.runs[k], self.active.index(k)
        if window:
            run.sums = {name: self.window[name][slot] for name in self._parts(k)} if self.window_count else {}
            run.count = self.window_count
        self.bridge(k)
        return run.result(status, reason)

    def _drop(self, done: set[int]) -> None:
        """Remove members that have left from every stacked tensor."""
        keep = [slot for slot, k in enumerate(self.active) if k not in done]
        if len(keep) == len(self.active):
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        with torch.no_grad():
            self.params = {n: p.index_select(0, index).requires_grad_(p.requires_grad) for n, p in self.params.items()}
        for state in (self.exp_avg, self.exp_avg_sq, self.window, self.betas):
            for name in state:
                state[name] = state[name].index_select(0, index)
        self.lr = self.lr.index_select(0, index)
        self.active = [self.active[slot] for slot in keep]


def _on_device(lat: Latents, device: str) -> Latents:
    return Latents(lat.mu.to(device), lat.std.to(device), lat.y.to(device), lat.confidence)


def train_pack(members: Sequence[Member], latents_a: Latents, latents_b: Latents, *, device: str = "cpu",
               on_eval: Callable[[int, int, Metrics], None] | None = None,
               should_stop: Callable[[int, int, Metrics], bool] | None = None) -> list[BridgeResult]:
    """Train the members together; member k's result matches ``train_bridge(members[k].cfg, ..., seed)``
    (see ``Pack.run`` for the callbacks, which take the member index k first)."""
    return Pack(members, latents_a, latents_b, device).run(on_eval, should_stop)
