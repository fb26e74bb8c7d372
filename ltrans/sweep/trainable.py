"""The Tune trainables: one bridge trial on the one path (``ltrans.pipeline.run_trial``), or a pack of them
(``bridge_pack``, sweeps with ``pack: K``; ``ltrans.sweep.packing``).

Latents reach the workers through Ray's object store: the driver's prepare stage loads each pair once
(``load_pair``: base models, classifiers, cached latents) and ``tune.with_parameters`` ships the
``PairData`` to every worker, so no worker trains or encodes anything and no shared filesystem is
needed on a cluster. Intermediate reports (every ``eval_every`` bridge steps) carry the training-loss
parts for ASHA; the final report carries the whole ``MetricsRow`` with ``final=True``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import traceback
import uuid
from typing import Any

from ray import tune

from ltrans.sweep.packing import Rungs, pack_groups, run_pack
from ltrans.sweep.spec import SCHEDULER_METRICS, transfer_mean
from ltrans.sweep.trials import config_from_flat


def bridge_trial(config: dict[str, Any], pairs: dict | None = None) -> None:
    """Run the trial ``config["trial"]`` (a flat TrialConfig) and report to Tune.

    ``pairs`` maps "pair/base" to the prepared ``PairData`` (shipped by ``tune.with_parameters``).
    """
    from ltrans.pipeline import run_trial

    start = time.perf_counter()
    cfg = config_from_flat(config["trial"])
    device = config.get("device", "cpu")

    def on_eval(step: int, metrics: dict[str, float]) -> None:
        tune.report(interim_report(step, metrics))

    try:
        data = _on_device(pairs[f"{cfg.pair}/{cfg.base}"], device)
        row, _ = run_trial(cfg, data, device=device, on_eval=on_eval)
        flat = row.flat()
    except Exception as err:  # noqa: BLE001  a raising trial is a failed row with its reason; the sweep goes on
        flat = failed_row(cfg, f"{type(err).__name__}: {err}", traceback.format_exc())
    tune.report(final_report(flat, time.perf_counter() - start))


def interim_report(step: int, metrics: dict[str, float]) -> dict[str, Any]:
    """What ASHA sees at an eval point: step, wall time and every loss part as ``loss_<part>``."""
    out = {f"loss_{k}": float(v) for k, v in metrics.items() if k not in ("step", "wall_s")}
    out |= {"step": int(step), "wall_s": float(metrics.get("wall_s", math.nan)), "final": False}
    return {**{m: math.nan for m in SCHEDULER_METRICS}, **out}  # a term with beta 0 has no loss part


def final_report(flat: dict[str, Any], trial_seconds: float) -> dict[str, Any]:
    """The MetricsRow as one flat dict, with the derived transfer_mean and the keys ASHA needs."""
    out = {**{m: math.nan for m in SCHEDULER_METRICS}, **flat}
    if "transfer_a_to_b" in flat and "transfer_b_to_a" in flat:
        out["transfer_mean"] = transfer_mean(flat)
    return out | {"step": int(flat.get("steps", 0)), "trial_seconds": trial_seconds, "final": True}


def failed_row(cfg, reason: str, trace: str) -> dict[str, Any]:
    """The flat row of a trial whose code raised (MetricsRow fields, no figures)."""
    from ltrans.metrics.row import MetricsRow, config_hash, git_sha

    row = MetricsRow(cfg.pair, cfg.method, cfg.seed, config_hash(dataclasses.asdict(cfg)), "failed",
                     reason, 0, 0.0, 0.0, git_sha(), {"traceback": trace[-2000:]})
    return row.flat()


def _on_device(data, device: str):
    """The pair's frozen modules on the trial's device (CPU data as shipped; GPU trials move them)."""
    if device != "cpu":
        for side in (data.a, data.b):
            side.decoder.to(device)
            side.classifier.to(device)
    return data


def bridge_pack(config: dict[str, Any], pairs: dict | None = None) -> None:
    """Train the pack ``config["members"]`` (each member one Optuna trial) and report member events.

    Members of one pair and bridge shape train as one ``packing.run_pack``; others in further packs, one
    after the other. Each report carries ``events``, a JSON list of {"kind": "curve", "number", "step",
    "wall_s", "loss_*"}, {"kind": "rung", "milestone", "value"} (in-pack ASHA, ``config["asha"]``) and
    {"kind": "end", "number", "row"}; the last report has ``final=True``. If a pack raises, its members
    that had not ended run again one by one (``run_trial``), so a raising member fails alone.
    """
    cfgs = [config_from_flat(m["trial"]) for m in config["members"]]
    numbers = [m["number"] for m in config["members"]]
    events = PackEvents(numbers, config.get("asha"))
    for group in pack_groups(cfgs):
        data = _on_device(pairs[f"{cfgs[group[0]].pair}/{cfgs[group[0]].base}"], config.get("device", "cpu"))
        _run_group([cfgs[i] for i in group], [numbers[i] for i in group], data, config.get("device", "cpu"),
                   events)
    tune.report(events.report(final=True))


class PackEvents:
    """The member events of one pack trial, collected between reports; in-pack ASHA decisions."""

    def __init__(self, numbers: list[int], asha: dict | None) -> None:
        self.pending: list[dict] = []
        self.ended: set[int] = set()
        self.last_step: dict[int, int] = {}
        self.asha = asha
        self.rungs = None if asha is None else Rungs(
            asha["grace_period"], asha["reduction_factor"], asha["max_t"], asha["mode"],
            {float(m): v for m, v in asha.get("history", {}).items()})
        self.values: dict[int, float] = {}
        self.stops: set[int] | None = None
        self.step = 0
        self.run, self.reports = uuid.uuid4().hex[:12], 0  # the driver skips a report it has seen

    def curve(self, number: int, step: int, metrics: dict[str, float]) -> None:
        if step <= self.last_step.get(number, 0):  # a member run again after a raising pack
            return
        self.last_step[number] = step
        self.pending.append({"kind": "curve", "number": number, **interim_report(step, metrics)})
        if self.rungs is not None:
            if step != self.step or self.stops is not None:  # a new round: another step, or members
                self.step, self.values, self.stops = step, {}, None  # run after the judged ones at this step
            self.values[number] = float(metrics.get(self.asha["metric"].removeprefix("loss_"), math.nan))

    def should_stop(self, number: int, step: int) -> bool:
        if self.rungs is None or number not in self.values:
            return False
        if self.stops is None:  # every member due at this step has reported: judge them together
            self.stops, records = self.rungs.judge(self.values, step)
            self.pending += [{"kind": "rung", "milestone": m, "value": v} for m, v in records]
        return number in self.stops

    def end(self, number: int, flat: dict[str, Any], seconds: float) -> None:
        if flat["status"] == "pruned" and self.rungs is not None:  # as the unpacked sweep words it
            flat = flat | {"reason": f"ASHA stopped it at bridge step {flat['steps']}"}
        self.ended.add(number)
        self.pending.append({"kind": "end", "number": number, "row": final_report(flat, seconds)})

    def report(self, final: bool = False) -> dict[str, Any]:
        """The next Tune report: the events since the last one."""
        out = {"events": json.dumps(self.pending, allow_nan=True, default=str), "final": final,
               "step": max(self.last_step.values(), default=0), "run": self.run, "report": self.reports}
        self.pending, self.reports = [], self.reports + 1
        return out


def _run_group(cfgs: list, numbers: list[int], data, device: str, events: PackEvents) -> None:
    """One pack (or one Procrustes trial); if the pack raises, its unfinished members one at a time."""
    from ltrans.pipeline import run_trial

    if cfgs[0].method == "bridge" and _packed(cfgs, numbers, data, device, events):
        return
    for cfg, number in zip(cfgs, numbers):
        if number in events.ended:
            continue
        start = time.perf_counter()
        try:
            row, _ = run_trial(cfg, data, device=device,
                               on_eval=lambda step, metrics, n=number: events.curve(n, step, metrics),
                               should_stop=lambda step, metrics, n=number: events.should_stop(n, step))
            flat = row.flat()
        except Exception as err:  # noqa: BLE001  as bridge_trial: a raising trial is a failed row
            flat = failed_row(cfg, f"{type(err).__name__}: {err}", traceback.format_exc())
        events.end(number, flat, time.perf_counter() - start)
        tune.report(events.report())


def _packed(cfgs: list, numbers: list[int], data, device: str, events: PackEvents) -> bool:
    """Train ``cfgs`` as one pack; False if it raised (the caller then finds the member that did).
    A member's trial seconds are its own: its share of the pack's training plus its evaluation."""
    try:
        run_pack(cfgs, data, device=device,
                 on_eval=lambda i, step, metrics: events.curve(numbers[i], step, metrics),
                 should_stop=lambda i, step, metrics: events.should_stop(numbers[i], step),
                 on_row=lambda i, row: events.end(numbers[i], row.flat(), row.train_seconds + row.eval_seconds),
                 after_step=lambda step: tune.report(events.report()))
    except Exception:  # noqa: BLE001
        return False
    return True
