"""The Tune trainable: one bridge trial on the one path (``ltrans.pipeline.run_trial``).

Latents reach the workers through Ray's object store: the driver's prepare stage loads each pair once
(``load_pair``: base models, classifiers, cached latents) and ``tune.with_parameters`` ships the
``PairData`` to every worker, so no worker trains or encodes anything and no shared filesystem is
needed on a cluster. Intermediate reports (every ``eval_every`` bridge steps) carry the training-loss
parts for ASHA; the final report carries the whole ``MetricsRow`` with ``final=True``.
"""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
from typing import Any

from ray import tune

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
