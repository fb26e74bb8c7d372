"""Packs on the one path: trial configs trained as one pack, each ending in its own ``MetricsRow``.

``run_pack`` is ``pipeline.run_trial`` for several bridge configs of one pair and shape: the training is
``bridge.packed.Pack``, the evaluation and the row are run_trial's own (``pipeline.bridge_row``).
``Rungs`` is ASHA inside packs, ``rung_history`` its records replayed on resume. No Ray here: the trainable (``trainable.bridge_pack``) and the
benchmarks call these.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ltrans.bridge.packed import Member, Pack, pack_key
from ltrans.bridge.train import BridgeResult, Metrics
from ltrans.pipeline import bridge_row


def group_key(cfg) -> tuple:
    """Trial configs with equal keys can share a pack: one pair and base, bridges of one shape."""
    return (cfg.pair, cfg.base, cfg.method) + (pack_key(cfg.bridge) if cfg.method == "bridge" else ())


def pack_groups(cfgs: list) -> list[list[int]]:
    """Indices of ``cfgs`` by pack: bridges grouped by ``group_key`` in first-seen order; any other
    method (Procrustes) trains alone."""
    groups: dict[tuple, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        key = group_key(cfg) if cfg.method == "bridge" else ("alone", i)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def run_pack(cfgs: list, data, *, device: str = "cpu",
             on_eval: Callable[[int, int, Metrics], None] | None = None,
             should_stop: Callable[[int, int, Metrics], bool] | None = None,
             on_row: Callable[[int, Any], None] | None = None,
             after_step: Callable[[int], None] | None = None) -> list:
    """Train the bridge configs ``cfgs`` (one ``group_key``) as one pack; their rows, in order.

    Member i's row is the one ``run_trial(cfgs[i], data)`` gives (see ``bridge.packed`` for how close).
    on_row(i, row) comes as soon as member i has left the pack and been evaluated; the other callbacks
    are ``Pack.run``'s.
    """
    if len({group_key(c) for c in cfgs}) != 1 or cfgs[0].method != "bridge":
        raise ValueError("a pack takes bridge configs of one pair, base and bridge shape (see group_key)")
    if cfgs[0].pair != data.pair:
        raise ValueError(f"configs are for pair {cfgs[0].pair!r} but the data is for {data.pair!r}")
    rows: dict[int, Any] = {}

    def on_end(i: int, result: BridgeResult) -> None:
        rows[i] = bridge_row(cfgs[i], data, result)
        if on_row is not None:
            on_row(i, rows[i])

    pack = Pack([Member(c.bridge, c.seed) for c in cfgs], data.a.latents.train, data.b.latents.train, device)
    pack.run(on_eval, should_stop, on_end, after_step)
    return [rows[i] for i in range(len(cfgs))]


class Rungs:
    """ASHA's rungs for members of packs (Li et al. 2020, arXiv 1810.05934; one bracket, as Ray's
    ``ASHAScheduler``): milestones at grace_period * reduction_factor^k steps below max_t.

    A member's first eval point at or past a milestone records its value there; it stops when the value
    is worse than the top 1/reduction_factor of the values recorded at that milestone so far (earlier
    packs' included, through ``history``). Members of one pack reach a milestone together, so they are
    judged together, each against all of them.
    """

    def __init__(self, grace_period: int, reduction_factor: float, max_t: int, mode: str = "min",
                 history: dict[float, list[float]] | None = None) -> None:
        n = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
        self.milestones = [grace_period * reduction_factor**k for k in range(max(n, 0))]
        self.rf, self.sign = reduction_factor, (-1.0 if mode == "min" else 1.0)
        # Rewards (larger is better), as Ray keeps them; ``history`` holds metric values by milestone.
        self.recorded = {m: [self.sign * v for v in (history or {}).get(m, [])] for m in self.milestones}
        self.passed: dict[Any, set[float]] = {}  # member -> milestones it was judged at

    def milestone(self, member: Any, step: int) -> float | None:
        """The highest milestone ``step`` has reached, if ``member`` was not judged at it yet (as Ray's
        bracket: a member whose reports skip a milestone is never judged at it later)."""
        reached = [m for m in self.milestones if step >= m]
        if not reached or max(reached) in self.passed.get(member, set()):
            return None
        return max(reached)

    def judge(self, values: dict[Any, float], step: int) -> tuple[set, list[tuple[float, float]]]:
        """Members (of ``values``: member -> metric at ``step``) to stop, and the new (milestone, value)
        records. A NaN value is recorded as NaN and never stops its member (as Ray's ASHA)."""
        by_milestone: dict[float, dict[Any, float]] = {}
        for member, value in values.items():
            if (m := self.milestone(member, step)) is not None:
                by_milestone.setdefault(m, {})[member] = value
        stop, new = set(), []
        for m, group in by_milestone.items():
            rewards = self.recorded[m] + [self.sign * v for v in group.values()]
            cutoff = np.nanpercentile(rewards, (1 - 1 / self.rf) * 100) if not np.isnan(rewards).all() else None
            for member, value in group.items():
                if cutoff is not None and self.sign * value < cutoff:
                    stop.add(member)
                self.passed.setdefault(member, set()).add(m)
            self.recorded[m] += [self.sign * v for v in group.values()]
            new += [(m, v) for v in group.values()]
        return stop, new


def rung_history(trials: Mapping[int, dict], curves: Iterable[dict], metric: str, rungs: Rungs,
                 finals: bool = False) -> dict[float, list[float]]:
    """The values ASHA recorded at each milestone for the finished ``trials`` (the ledger's, by number),
    replayed from their learning ``curves`` (the ledger's points) as the scheduler saw them: so that a
    resumed sweep judges its new trials against every trial before it, as an uninterrupted one would.
    Points of a trial's dead attempts (another Tune trial id) and of unfinished trials are left out. A
    point without a finite ``metric`` (the ledger keeps finite values only) was a NaN to the scheduler:
    it took its milestone but moves no cutoff, so it is replayed as such and left out of the values.
    ``finals``: Ray's scheduler also sees each trial's final report (its steps and last losses, in the
    ledger entry's metrics), where a trial that ended between eval points can reach a milestone; the
    in-pack rungs do not. Linear in the points: no cutoff is computed, only where each value lands."""
    by_trial: dict[int, list[tuple[float, float]]] = {}
    for point in curves:
        number = point.get("number")
        if number in trials and point.get("tune_trial_id") == trials[number].get("tune_trial_id") \
                and isinstance(point.get("step"), int | float):
            by_trial.setdefault(number, []).append((point["step"], _value(point.get(metric))))
    if finals:
        for number, entry in trials.items():
            final = entry.get("metrics") or {}
            if isinstance(final.get("steps"), int | float):  # also a trial that ended before its first point
                by_trial.setdefault(number, []).append((final["steps"], _value(final.get(metric))))
    history: dict[float, list[float]] = {}
    for number, points in by_trial.items():
        for step, value in sorted(points, key=lambda p: p[0]):  # stable: a retried run's after its first's
            if (milestone := rungs.milestone(number, int(step))) is None:
                continue
            rungs.passed.setdefault(number, set()).add(milestone)
            if not math.isnan(value):
                history.setdefault(milestone, []).append(value)
    return history


def _value(value) -> float:
    """A metric value as the scheduler saw it: a finite number, or NaN where the ledger has none."""
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else math.nan
