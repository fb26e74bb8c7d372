"""A sweep's run folder: the ledger (our source of truth), trials.parquet, curves.parquet, provenance.

The driver appends one JSON line per finished trial to ``ledger/trials.jsonl`` (fsynced) *before* it
tells Optuna, and one line per learning-curve point to ``ledger/curves.jsonl``. A line torn by a
killed driver is skipped on read (the next append starts a new line after it). The parquet files are
views of the ledger, rewritten atomically; resume and ``ltrans sweep status`` read the ledger, so a
crash between the two loses nothing.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from ltrans.files import atomic_open, atomic_write_json

TRIALS_LEDGER = Path("ledger") / "trials.jsonl"
CURVES_LEDGER = Path("ledger") / "curves.jsonl"
TERMINAL = ("ok", "pruned", "failed")


class Ledger:
    """Append-only JSON-lines records of one run folder."""

    def __init__(self, run: Path) -> None:
        self.run = Path(run)
        (self.run / "ledger").mkdir(parents=True, exist_ok=True)

    def _append(self, rel: Path, records: list[dict], sync: bool) -> None:
        data = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records).encode()
        with open(self.run / rel, "ab+") as f:
            if f.seek(0, os.SEEK_END) > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a line torn by a killed driver: end it, or this record joins it
                    data = b"\n" + data
            f.write(data)  # append mode writes at the end, wherever the read left the position
            f.flush()
            if sync:  # a trial line must survive a SIGKILL right after it (resume trusts it)
                os.fsync(f.fileno())

    def record_trial(self, entry: dict) -> None:
        assert entry["status"] in TERMINAL, entry
        self._append(TRIALS_LEDGER, [{"kind": "trial", **entry}], sync=True)

    def record_curve(self, point: dict) -> None:
        self._append(CURVES_LEDGER, [point], sync=False)

    def trials(self) -> dict[int, dict]:
        """Finished trials by Optuna trial number (reason amendments merged in)."""
        out: dict[int, dict] = {}
        for record in _read_lines(self.run / TRIALS_LEDGER):
            if record.get("kind") == "trial":
                out.setdefault(record["number"], record)  # the first word on a trial is final
            elif record.get("kind") == "reason" and record.get("number") in out:  # older run folders' amendments
                out[record["number"]]["reason"] = record["reason"]
        return dict(sorted(out.items()))

    def curves(self) -> list[dict]:
        return list(_read_lines(self.run / CURVES_LEDGER))


def _read_lines(path: Path):
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:  # torn last line of a killed driver
                continue


def trial_row(entry: dict) -> dict[str, Any]:
    """One trials.parquet row: identity, status, every metric, config/* columns, wall time, node."""
    ident = {k: entry.get(k) for k in ("number", "tune_trial_id", "content_key", "status", "reason", "pair",
                                       "seed", "attempt", "wall_s", "node_ip", "finished_at")}
    metrics = {k: v for k, v in (entry.get("metrics") or {}).items() if k not in ident}
    return ident | metrics | {f"config/{k}": v for k, v in (entry.get("config") or {}).items()}


def _write_parquet(path: Path, rows: list[dict]) -> None:
    import pandas as pd

    frame = pd.DataFrame(rows)
    with atomic_open(path) as f:
        frame.to_parquet(f, index=False)


def write_parquets(run: Path) -> tuple[int, int]:
    """Rewrite trials.parquet and curves.parquet from the ledger; (trial rows, curve rows)."""
    ledger = Ledger(run)
    trials = ledger.trials()
    rows = [trial_row(e) for e in trials.values()]
    finished = {e["tune_trial_id"] for e in trials.values()}  # curves of re-run trials' dead attempts go
    points = [p for p in ledger.curves() if p.get("tune_trial_id") in finished]
    _write_parquet(Path(run) / "trials.parquet", rows)
    _write_parquet(Path(run) / "curves.parquet", points)
    return len(rows), len(points)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def provenance(code_version: str, argv: list[str]) -> dict[str, Any]:
    """Where and with what a run (attempt) happened: git sha, package versions, machine."""
    from ltrans.metrics.row import git_sha

    return {
        "git_sha": git_sha(), "code_version": code_version, "argv": argv,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "packages": {n: _version(n) for n in ("ltrans", "torch", "ray", "optuna", "numpy", "pandas", "pyarrow")},
        "machine": {"host": socket.gethostname(), "platform": platform.platform(),
                    "processor": platform.machine(), "cpus": os.cpu_count(), "gpus": _gpus()},
    }


def _gpus() -> list[str]:
    import torch

    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def write_provenance(run: Path, code_version: str, argv: list[str]) -> None:
    """provenance.json: the first start plus one entry per resume."""
    path = Path(run) / "provenance.json"
    record = provenance(code_version, argv)
    if path.exists():
        old = json.loads(path.read_text())
        old.setdefault("resumes", []).append(record)
        record = old
    atomic_write_json(path, record)


def objective_values(entry: dict, objectives) -> list[float] | None:
    """The objective values of a finished ok trial, None when any is missing or not finite."""
    metrics = entry.get("metrics") or {}
    values = [metrics.get(o.name) for o in objectives]
    if entry.get("status") != "ok" or any(not isinstance(v, (int, float)) or not math.isfinite(v) for v in values):
        return None
    return [float(v) for v in values]


def best_entries(trials: dict[int, dict], objectives) -> list[dict]:
    """The best ok trial (one objective) or the Pareto front (several), best first."""
    scored = [(e, objective_values(e, objectives)) for e in trials.values()]
    scored = [(e, [v if o.direction == "minimize" else -v for v, o in zip(vals, objectives)])
              for e, vals in scored if vals is not None]  # all minimised from here
    front = [(e, s) for e, s in scored
             if not any(all(x <= y for x, y in zip(t, s)) and t != s for _, t in scored)]
    best = [e for e, s in sorted(front, key=lambda es: es[1])]  # stable: ties stay in trial order
    return best[:1] if len(objectives) == 1 else best  # one objective: one best, the first to reach it


def counts(trials: dict[int, dict]) -> dict[str, int]:
    out = {status: 0 for status in TERMINAL}
    for entry in trials.values():
        out[entry["status"]] += 1
    return out
