"""The speed claim, measured: what a bridge costs against what its frozen base models cost to train.

Bridge (and Procrustes) times are the trials' ``train_seconds`` in trials.parquet; a packed trial's is
its share of its pack's training time (``bridge.packed``), and its bar says so; in run folders from before
that (no ``time_share`` column) it was the whole pack's time, and the bar says that. Base-model and
classifier times are not in the run folder: they come from the ``record.json`` the model zoo writes
beside each trained model in the artifact store (``ltrans.models.zoo``), matched by model name and
base preset. A model that is not in the store is listed as missing, not guessed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from ltrans.analysis.domains import model_info, pair_sides
from ltrans.analysis.runs import Results

COLUMNS = ["series", "what", "kind", "seconds", "low", "high", "n"]


def stored_model_times(store_root: Path | None) -> pd.DataFrame:
    """(kind, name, preset, seconds, created) of every trained model recorded in the artifact store."""
    from ltrans.artifacts import Store

    rows = []
    for entry in Store(store_root).entries():
        record_path = entry.path / "record.json"
        if entry.kind not in ("base_model", "classifier") or not record_path.is_file():
            continue
        record = json.loads(record_path.read_text())
        rows.append({"kind": entry.kind, "name": record.get("name", entry.name), "preset": record.get("preset"),
                     "seconds": record.get("train_seconds"), "created": entry.created})
    return pd.DataFrame(rows, columns=["kind", "name", "preset", "seconds", "created"])


def base_rows(results: Results, stored: pd.DataFrame) -> tuple[list[dict], list[str]]:
    """Rows for the base models and classifiers the runs' pairs use, and the names not in the store."""
    t = results.trials
    if t.empty:
        return [], []
    presets = sorted(set(t.get("config/base", pd.Series(["full"])).dropna()))
    wanted = []
    for pair in sorted(set(t["pair"].dropna())):
        for model in pair_sides(pair):
            wanted += [("base_model", model), ("classifier", model_info(model).domain)]
    rows, missing = [], []
    for (kind, name) in dict.fromkeys(wanted):
        for preset in presets:
            hit = stored[(stored["kind"] == kind) & (stored["name"] == name) & (stored["preset"] == preset)]
            what = f"{name} ({'base model' if kind == 'base_model' else 'classifier'}, {preset})"
            if hit.empty:
                missing.append(what)
                continue
            seconds = float(hit.sort_values("created")["seconds"].iloc[-1])
            rows.append({"series": "base models", "what": what, "kind": kind.replace("_", " "),
                         "seconds": seconds, "low": seconds, "high": seconds, "n": 1})
    return rows, missing


def bridge_rows(results: Results) -> list[dict]:
    """Median (and range) of train_seconds of the ok trials per series and method."""
    ok = results.trials[results.trials["status"] == "ok"]
    if ok.empty or "train_seconds" not in ok:
        return []
    rows = []
    for (series, method), g in ok.groupby(["series", "method"], sort=True):
        s = g["train_seconds"].dropna()
        if s.empty:
            continue
        kind = "bridge" if method == "bridge" else f"{method} fit"
        what = f"{kind}: {series}{_packing_note(g)}"
        rows.append({"series": series, "what": what, "kind": kind, "seconds": float(s.median()),
                     "low": float(s.min()), "high": float(s.max()), "n": len(s)})
    return rows


def _packing_note(trials: pd.DataFrame) -> str:
    """What a packed series' seconds are: each member's share of its pack's time, or (run folders from
    before ``time_share`` was recorded) each member's whole pack's time; "" for unpacked trials."""
    if "pack_size" not in trials or not (pd.to_numeric(trials["pack_size"], errors="coerce") > 1).any():
        return ""
    if "time_share" in trials and trials["time_share"].fillna(False).astype(bool).all():
        return " (packed: each its share of its pack's time)"
    return " (packed, run before 2026-12-07: each its whole pack's time)"


def speed_table(results: Results, store_root: Path | None) -> tuple[pd.DataFrame, list[str]]:
    """Training seconds of base models, classifiers and bridges (COLUMNS), and base models not found."""
    stored = stored_model_times(store_root)
    base, missing = base_rows(results, stored)
    return pd.DataFrame(base + bridge_rows(results), columns=COLUMNS), missing
