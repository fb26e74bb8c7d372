"""Sweep files: YAML in ``sweeps/`` -> a validated, frozen ``SweepSpec`` (DESIGN.md section 4).

Every problem is one ``UserError`` naming the file, the key and the valid choices, raised before
anything starts. The search space is written in Optuna's terms (float/int with low, high, log, step;
categorical with choices) over dotted ``TrialConfig`` keys; ``fixed`` overrides apply to every trial.
A step divides ``high - low``; int settings take int or categorical dimensions, bool and str settings
categorical ones; a key is searched or fixed, not both.
No Ray or Optuna import here: ``ltrans sweep run`` reports a bad file instantly.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

SAMPLERS = ("tpe", "random", "grid", "cmaes", "nsga2")
PRESET_NAMES = ("paper", "demo", "smoke")
BASES = ("full", "tiny")
DIRECTIONS = ("maximize", "minimize")
KINDS = ("float", "int", "categorical")
# Figures a trial's MetricsRow carries (ltrans.metrics.transfer.evaluate), plus our derived mean.
OBJECTIVE_METRICS = (
    "transfer_mean", "transfer_a_to_b", "transfer_b_to_a", "recon_a", "recon_b",
    "entropy_a_to_b", "entropy_b_to_a", "fid_a_to_b", "fid_b_to_a", "prior_agreement",
    "interp_consistency_a_to_b", "interp_consistency_b_to_a", "train_seconds",
)
# ASHA compares trials mid-training, where only the training-loss parts exist (on_eval reports).
SCHEDULER_METRICS = ("loss_recon", "loss_total", "loss_kl", "loss_swd", "loss_cls")
# Size settings --smoke-test takes from the smoke preset instead of the file's `fixed` block.
SIZE_KEYS = ("base", "n_eval", "bridge.steps", "bridge.width", "bridge.n_layers", "bridge.batch_size",
             "bridge.eval_every", "bridge.n_projections")
SMOKE_BUDGET = 4
TOP_KEYS = ("name", "description", "preset", "base", "pairs", "seeds", "budget", "sampler",
            "sampler_seed", "objectives", "space", "fixed", "scheduler", "resources", "max_concurrent",
            "max_failures", "pack", "smoke")
MAX_PACK = 1024  # members per pack; past a few hundred a pack is compute-bound and gains nothing
# numpy seeds take < 2**32, and a resume seeds its sampler with sampler_seed + 7919 * trials so far
# (searcher.make_sampler): half the range is left for that, ~270,000 trials before it wraps around.
MAX_SAMPLER_SEED = 2**31 - 1


def transfer_mean(metrics: dict[str, Any]) -> float:
    """Mean of the two directions' transfer accuracy: the headline figure of one bridge."""
    return (float(metrics["transfer_a_to_b"]) + float(metrics["transfer_b_to_a"])) / 2


@dataclass(frozen=True)
class Dimension:
    """One searched setting in Optuna's terms."""

    key: str
    kind: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def grid_values(self) -> tuple:
        """The values a grid search visits: the choices, or low..high by step."""
        if self.kind == "categorical":
            return self.choices
        n = round((self.high - self.low) / self.step) + 1  # parse_spec checked that step divides the range
        if self.kind == "int":
            return tuple(int(self.low + i * self.step) for i in range(n))
        # Round off the float error of low + i * step (0.1 + 2 * 0.1 = 0.30000000000000004), 12 digits
        # below the step, so that grid points print and compare as written.
        digits = 12 - math.floor(math.log10(self.step))
        return tuple(round(self.low + i * self.step, digits) + 0.0 for i in range(n))  # + 0.0: no -0.0


@dataclass(frozen=True)
class Objective:
    name: str
    direction: str  # maximize | minimize


@dataclass(frozen=True)
class Asha:
    """Async successive halving over bridge steps (rungs at grace_period * reduction_factor^k)."""

    grace_period: int  # bridge steps before a trial can be stopped
    reduction_factor: float = 3.0
    metric: str = "loss_recon"
    mode: str = "min"


@dataclass(frozen=True)
class Resources:
    cpus: float = 1.0
    gpus: float = 0.0  # fractions share one GPU between trials


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep. ``to_dict()`` round-trips through ``parse_spec``."""

    name: str
    pairs: tuple[str, ...]
    objectives: tuple[Objective, ...]
    space: tuple[Dimension, ...]
    budget: int
    preset: str = "paper"
    base: str | None = None  # overrides the preset's base-model size
    seeds: tuple[int, ...] = (0,)
    sampler: str = "tpe"
    sampler_seed: int = 0
    fixed: tuple[tuple[str, Any], ...] = ()
    scheduler: Asha | None = None
    resources: Resources = field(default_factory=Resources)
    max_concurrent: int | None = None
    max_failures: int = 2
    pack: int = 1  # bridges one Tune trial trains together (ltrans.bridge.packed); each one Optuna trial
    description: str = ""
    smoke: bool = False

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the resolved ``sweep.yaml`` of a run folder."""
        out = dataclasses.asdict(self)
        out["fixed"] = dict(self.fixed)
        out["pairs"], out["seeds"] = list(self.pairs), list(self.seeds)
        out["objectives"] = [dataclasses.asdict(o) for o in self.objectives]
        out["space"] = {d.key: _dimension_dict(d) for d in self.space}
        out["scheduler"] = {"type": "asha", **out["scheduler"]} if self.scheduler else None
        return out


def _dimension_dict(d: Dimension) -> dict[str, Any]:
    if d.kind == "categorical":
        return {"type": "categorical", "choices": list(d.choices)}
    out = {"type": d.kind, "low": d.low, "high": d.high, "log": d.log}
    return out | ({"step": d.step} if d.step is not None else {})


def grid_size(space: tuple[Dimension, ...], pairs: tuple, seeds: tuple) -> int:
    return math.prod(len(d.grid_values()) for d in space) * len(pairs) * len(seeds)



def smoke_version(spec: SweepSpec) -> SweepSpec:
    """The same sweep at toy size: smoke preset (tiny base models, 200 steps), <= 4 trials, CPU only
    (a packed sweep keeps packing, at most half the budget per pack)."""
    fixed = tuple((k, v) for k, v in spec.fixed if k not in SIZE_KEYS)
    space = tuple(d for d in spec.space if d.key not in SIZE_KEYS)
    scheduler = spec.scheduler and dataclasses.replace(spec.scheduler, grace_period=50)  # smoke eval_every
    budget = min(spec.budget, SMOKE_BUDGET, _grid_cap(spec, space))
    return dataclasses.replace(spec, preset="smoke", base=None, fixed=fixed, space=space, budget=budget,
                               scheduler=scheduler, resources=Resources(cpus=1, gpus=0), smoke=True,
                               pack=min(spec.pack, max(1, budget // 2)))  # still two packs, if packed


def _grid_cap(spec: SweepSpec, space: tuple[Dimension, ...]) -> int:
    return grid_size(space, spec.pairs, spec.seeds) if spec.sampler == "grid" else SMOKE_BUDGET


def combos(spec: SweepSpec) -> list[tuple[str, int]]:
    """(pair, seed) combinations, in the order non-grid samplers cycle through them by trial number."""
    return list(itertools.product(spec.pairs, spec.seeds))


from ltrans.sweep.parse import load_spec, parse_spec

__all__ = [
    "Asha",
    "Dimension",
    "Objective",
    "Resources",
    "SweepSpec",
    "combos",
    "grid_size",
    "load_spec",
    "parse_spec",
    "smoke_version",
    "transfer_mean",
]
