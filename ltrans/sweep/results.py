"""A sweep's run folder: the ledger (our source of truth), trials.parquet, curves.parquet, provenance, state.

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

from ltrans.errors import UserError, one_line
from ltrans.files import atomic_open, atomic_write_json

STATE = "state.json"  # {"code_version", "attempts", "source"}, written by runner.create_run and each start
TRIALS_LEDGER = Path("ledger") / "trials.jsonl"
CURVES_LEDGER = Path("ledger") / "curves.jsonl"
TERMINAL = ("ok", "pruned", "failed")
# trials.parquet's leading columns, present even before any trial has finished (analysis reads them).
IDENTITY = ("number", "tune_trial_id", "content_key", "status", "reason", "pair", "seed", "attempt", "wall_s",
            "node_ip", "finished_at")


class Ledger:
    """Append-only JSON-lines records of one run folder (its ``ledger/`` folder is made on the first
    append, so that the read-only commands write nothing)."""

    def __init__(self, run: Path) -> None:
        self.run = Path(run)

    def _append(self, rel: Path, records: list[dict], sync: bool) -> None:
        data = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records).encode()
        (self.run / rel).parent.mkdir(parents=True, exist_ok=True)
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
    ident = {k: entry.get(k) for k in IDENTITY}
    metrics = {k: v for k, v in (entry.get("metrics") or {}).items() if k not in ident}
    return ident | metrics | {f"config/{k}": v for k, v in (entry.get("config") or {}).items()}


def _write_parquet(path: Path, rows: list[dict], columns: tuple[str, ...] = ()) -> None:
    """rows as a parquet file; with no rows, a frame of just ``columns`` (readers index them)."""
    import pandas as pd

    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(columns))
    with atomic_open(path) as f:
        frame.to_parquet(f, index=False)


def write_parquets(run: Path) -> tuple[int, int]:
    """Rewrite trials.parquet and curves.parquet from the ledger; (trial rows, curve rows)."""
    ledger = Ledger(run)
    trials = ledger.trials()
    rows = [trial_row(e) for e in trials.values()]
    finished = {e["tune_trial_id"] for e in trials.values()}  # curves of re-run trials' dead attempts go
    points = [p for p in ledger.curves() if p.get("tune_trial_id") in finished]
    _write_parquet(Path(run) / "trials.parquet", rows, IDENTITY)
    _write_parquet(Path(run) / "curves.parquet", points, ("number", "tune_trial_id", "step", "wall_s"))
    return len(rows), len(points)


def read_state(run: Path) -> dict:
    """state.json (code version, attempts) as ``runner.create_run`` wrote it; UserError naming the file
    and how to write it again."""
    path = run / STATE
    try:
        state = json.loads(path.read_text())
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        problem = f"is not valid JSON ({one_line(err)})"
    else:
        if not isinstance(state, dict):
            problem = f"holds a JSON {type(state).__name__}, not an object"
        elif not isinstance(state.get("code_version"), str) or type(state.get("attempts")) is not int:
            problem = "lacks a string code_version or a whole number of attempts"
        else:
            return state
    raise UserError(f"{path} {problem}; the finished trials are safe in {run / 'ledger'}: write {STATE} again as "
                    f"{json.dumps(_state_guess(run))} (code_version from provenance.json, attempts = the "
                    "highest tune/attempt-N), then try again")


def _state_guess(run: Path) -> dict:
    """The state.json a damaged one most likely held, from provenance.json and the tune/attempt-N folders."""
    try:
        code_version = json.loads((run / "provenance.json").read_text())["code_version"]
    except (OSError, ValueError, TypeError, KeyError):
        code_version = "<git sha of the first start>"
    attempts = [int(d.name[8:]) for d in (run / "tune").glob("attempt-*") if d.name[8:].isdigit()]
    return {"code_version": code_version, "attempts": max(attempts, default=0)}


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
                    "processor": platform.machine(), "cpu": cpu_model(), "cpus": os.cpu_count(),
                    "gpus": _gpus()},
    }


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what ``platform`` knows. Worth recording: a
    seed fixes every random draw but not the order in which the CPU's kernels add, so the same code and
    seed can give figures a few thousandths apart on another CPU model or thread count."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


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


class StudyUnreadable(Exception):
    """optuna.db cannot be read as the run's study; the message says why, in sqlite's or Optuna's words."""


def study_trials(run: Path, name: str) -> list | None:
    """The trials (Optuna FrozenTrials) of the study ``name`` in the run's optuna.db (None if there is no
    optuna.db). Read-only (opened read-write, a damaged or empty file would get Optuna's tables written into it),
    unless a hot journal is there (a driver killed mid-commit), which only a writer can roll back, as
    the resume would next. StudyUnreadable when the file is empty, not an Optuna database, or holds
    no such study."""
    import sqlite3
    from contextlib import closing

    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    path = (Path(run) / "optuna.db").resolve()
    if not path.exists():
        return None
    if path.stat().st_size == 0:
        raise StudyUnreadable("empty file")
    uri = path.as_uri() + ("" if path.with_name(path.name + "-journal").exists() else "?mode=ro")

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False)

    try:
        with closing(connect()) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as err:  # e.g. "file is not a database"
        raise StudyUnreadable(str(err)) from None
    if not {"studies", "trials", "version_info"} <= tables:
        raise StudyUnreadable("a SQLite file, but not an Optuna database")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = None
    try:
        storage = optuna.storages.RDBStorage("sqlite://", engine_kwargs={"creator": connect}, skip_table_creation=True)
        return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    except KeyError:  # Optuna's "Record does not exist."
        raise StudyUnreadable(f"it holds no study named {name!r}") from None
    except (SQLAlchemyError, optuna.exceptions.OptunaError, ValueError, RuntimeError, AssertionError) as err:
        # RuntimeError: a schema from another Optuna version; sqlite's own words, without SQLAlchemy's SQL
        raise StudyUnreadable(one_line(getattr(err, "orig", None) or err)) from None
    finally:
        if storage is not None:
            storage.engine.dispose()


def check_study(run: Path, name: str, finished: dict[int, dict]) -> None:
    """UserError when optuna.db cannot carry on the ``finished`` trials (the ledger's, by number): damaged,
    emptied, removed, or holding fewer trials than the ledger numbers, a study started afresh would
    number new trials over finished ones."""
    if not finished:
        return
    path = Path(run) / "optuna.db"
    try:
        trials = study_trials(run, name)
        why = "it is missing" if trials is None else (
            f"it holds {len(trials)} trials but the ledger has finished trial #{max(finished)}"
            if len(trials) <= max(finished) else "")
    except StudyUnreadable as err:
        why = f"unreadable: {err}"
    if why:
        raise UserError(f"{path} cannot continue this sweep ({why}); its {len(finished)} finished trials are "
                        f"safe in {Path(run) / 'ledger'} (`ltrans sweep trials {run}`, `ltrans report {run}`): "
                        "put the run's optuna.db back to resume it, or start a new sweep with `ltrans sweep run`")
