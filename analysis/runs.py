"""Sweep run folders -> tidy pandas frames (DESIGN.md section 5): the only way numbers reach a report.

Reads what the sweep runner writes for this purpose and nothing else: ``trials.parquet`` (one row
per finished trial, config as ``config/*`` columns), ``curves.parquet`` (one row per eval point),
the resolved ``sweep.yaml`` and ``provenance.json``. Never logs, the ledger or checkpoints.

Derived columns added to every trial row: ``run`` (a short label), ``series`` (what a figure
colours by: the pair, or run and pair when several runs are compared), ``method``, ``rung`` (the
paper's ablation ladder step implied by the loss weights), ``n_sup`` and ``config_id`` (the config
without its seed, so that seeds of one setting group together).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from ltrans.errors import UserError, one_line

RUNGS = ("ae", "vae", "vae+swd", "full", "other")  # ladder order (ltrans.ablations.ladder), then the rest
TRIAL_COLUMNS = ("number", "status", "pair", "seed")  # what every trials frame has, rows or not


@dataclass(frozen=True)
class Run:
    """One run folder: its metadata, its trials and (when present) its learning curves."""

    label: str
    path: Path
    spec: dict  # the resolved sweep.yaml
    provenance: dict
    trials: pd.DataFrame
    curves: pd.DataFrame | None  # None when curves.parquet is missing
    notes: tuple[str, ...] = ()  # what is missing or odd, said in the report


@dataclass(frozen=True)
class Results:
    """Several runs side by side; ``trials`` and ``curves`` are the runs' frames stacked."""

    runs: tuple[Run, ...]
    trials: pd.DataFrame
    curves: pd.DataFrame  # empty when no run has curves
    objective: str = "transfer_mean"
    direction: str = "maximize"
    notes: tuple[str, ...] = field(default=())

    @property
    def multi_run(self) -> bool:
        return len(self.runs) > 1

    def ok(self) -> pd.DataFrame:
        """Trials that finished ok with a finite objective."""
        t = self.trials
        if t.empty or self.objective not in t:
            return t.iloc[0:0]
        return t[(t["status"] == "ok") & t[self.objective].map(_finite)]


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_run_dir(path: Path | str) -> Path:
    """``path`` as a run folder; UserError naming the problem when it is missing or not one."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{path} does not exist; pass a sweep run folder such as runs/sweeps/demo-<time>")
    if not path.is_dir() or not (path / "sweep.yaml").is_file():
        raise UserError(f"{path} is not a sweep run folder (no sweep.yaml); make one with `ltrans sweep run FILE`")
    return path.resolve()


def load(run_dir: Path | str) -> pd.DataFrame:
    """The tidy trials frame of one run folder: one row per finished trial (for notebooks)."""
    return read_run(run_dir).trials


def load_curves(run_dir: Path | str) -> pd.DataFrame:
    """The learning-curve points of one run folder (empty when curves.parquet is missing)."""
    curves = read_run(run_dir).curves
    return pd.DataFrame() if curves is None else curves


def read_run(run_dir: Path | str, label: str | None = None) -> Run:
    """Everything the report needs from one run folder."""
    path = check_run_dir(run_dir)
    label = label or path.name
    spec = _read_spec(path / "sweep.yaml")
    prov_path = path / "provenance.json"
    provenance = _read_provenance(prov_path) if prov_path.is_file() else {}
    notes = [] if prov_path.is_file() else ["provenance.json is missing"]
    trials = _read_parquet(path / "trials.parquet")
    if trials is None:
        notes.append("trials.parquet is missing: no trial has finished yet, or the driver stopped before "
                     f"writing it (`ltrans sweep resume {path}` rewrites it)")
        trials = pd.DataFrame(columns=list(TRIAL_COLUMNS))
    trials = _with_trial_columns(trials, path / "trials.parquet")
    curves = _read_parquet(path / "curves.parquet")
    if curves is None:
        notes.append("curves.parquet is missing: no learning curves for this run")
    return Run(label, path, spec, provenance, tidy(trials, label), curves, tuple(notes))


def _with_trial_columns(trials: pd.DataFrame, path: Path) -> pd.DataFrame:
    """trials with every TRIAL_COLUMNS column: an empty frame gains the missing ones (no trial has
    finished yet; older runners wrote such a file without columns), a frame with rows must have them."""
    missing = [c for c in TRIAL_COLUMNS if c not in trials]
    if not missing:
        return trials
    if trials.empty:
        return trials.reindex(columns=[*trials.columns, *missing])
    raise UserError(f"{path} has {len(trials)} rows but no {', '.join(missing)} column, so `ltrans sweep` did "
                    f"not write it; {_rebuild_hint(path.parent)}")


def _read_spec(path: Path) -> dict:
    """The resolved sweep.yaml as a mapping (empty for an empty file); UserError naming a damaged one."""
    # `ltrans sweep run` writes it once; resume reads it and would fail on it too.
    fix = "restore it, or start the sweep again with `ltrans sweep run FILE`"
    try:
        spec = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, ValueError) as err:  # ValueError: not UTF-8
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"{path} is not valid YAML ({getattr(err, 'problem', None) or one_line(err)}{where}); "
                        f"{fix}") from None
    if spec is not None and not isinstance(spec, dict):
        raise UserError(f"{path} holds a YAML {type(spec).__name__}, not the mapping of a resolved sweep; {fix}")
    return spec or {}


def _read_provenance(path: Path) -> dict:
    """provenance.json as a mapping; UserError naming a damaged one."""
    # Deleting it is safe: the report notes it missing, and the next resume writes a fresh one.
    fix = "delete it to report without it (the next `ltrans sweep resume` writes a new one)"
    try:
        provenance = json.loads(path.read_text())
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise UserError(f"{path} is not valid JSON ({one_line(err)}); {fix}") from None
    if not isinstance(provenance, dict):
        raise UserError(f"{path} holds a JSON {type(provenance).__name__}, not an object; {fix}")
    return provenance


def _read_parquet(path: Path) -> pd.DataFrame | None:
    """The frame, or None when the runner has not written the file; UserError naming a damaged one."""
    from pyarrow import ArrowException

    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except (ArrowException, ValueError) as err:
        why = str(err).replace(f"Could not open Parquet input source '{path}': ", "")  # the path, said once
        raise UserError(f"{path} is not a readable parquet file ({one_line(why)}); {_rebuild_hint(path.parent)}"
                        ) from None


def _rebuild_hint(run: Path) -> str:
    """How to get a damaged parquet file of run folder ``run`` back."""
    # execute() rewrites both parquet files from the ledger whenever it ends, budget spent or not.
    if (run / "ledger").is_dir() and (run / "state.json").is_file():
        return f"`ltrans sweep resume {run}` rewrites it from the run's ledger"
    return "restore it from the folder the sweep ran in (this one has no ledger to rebuild it from)"


def tidy(trials: pd.DataFrame, label: str) -> pd.DataFrame:
    """trials.parquet rows plus run, method, rung, n_sup and config_id (see the module docstring)."""
    out = trials.copy()
    out.insert(0, "run", label)
    out["method"] = _column(out, "config/method", "method", "bridge")
    out["rung"] = [_rung(m, kl, swd, cls) for m, kl, swd, cls in zip(
        out["method"], _column(out, "config/bridge.beta_kl"), _column(out, "config/bridge.beta_swd"),
        _column(out, "config/bridge.beta_cls"))]
    out["n_sup"] = pd.to_numeric(_column(out, "config/bridge.n_sup", default=-1)).astype("int64")
    keys = [c for c in out.columns if c.startswith("config/") and c != "config/seed"]
    out["config_id"] = [_config_id(row) for row in out[keys].itertuples(index=False)]
    return out


def _column(frame: pd.DataFrame, *names: str, default=math.nan) -> pd.Series:
    """The first of ``names`` that exists, its gaps filled from the next ones, else ``default``."""
    col = pd.Series([default] * len(frame), index=frame.index, dtype=object)
    for name in reversed(names):
        if name in frame:
            col = frame[name].astype(object).where(frame[name].notna(), col)
    return col


def _rung(method: str, beta_kl: float, beta_swd: float, beta_cls: float) -> str:
    """The ablation-ladder step a bridge's loss weights make (ltrans.ablations.ladder), or 'procrustes'."""
    if method == "procrustes":
        return "procrustes"
    on = tuple(_finite(b) and b > 0 for b in (beta_kl, beta_swd, beta_cls))
    return {(False, False, False): "ae", (True, False, False): "vae", (True, True, False): "vae+swd",
            (True, True, True): "full"}.get(on, "other")


def _config_id(values: tuple) -> str:
    """10 hex digits naming one setting (its config values, seed left out)."""
    return hashlib.sha256(repr(tuple(plain(v) for v in values)).encode()).hexdigest()[:10]


def plain(value):
    """A parquet cell as plain Python: numpy scalars -> int/float/bool, arrays (stored lists) -> lists."""
    return value.tolist() if hasattr(value, "tolist") else value


def read_runs(run_dirs: list[Path | str]) -> Results:
    """Several run folders stacked, each with a unique label; the first run's first objective leads."""
    paths = [check_run_dir(p) for p in run_dirs]
    runs = tuple(read_run(p, label) for p, label in zip(paths, _labels(paths)))
    multi = len(runs) > 1
    trials = pd.concat([_with_series(r.trials, multi) for r in runs], ignore_index=True)
    curves = _stack_curves(runs, trials)
    objectives = [(r.spec.get("objectives") or [{}])[0] for r in runs]
    first = objectives[0] or {"name": "transfer_mean", "direction": "maximize"}
    notes = () if all(o == objectives[0] for o in objectives) else (
        f"the runs optimise different objectives; figures rank by the first run's {first.get('name')}",)
    return Results(runs, trials, curves, first.get("name", "transfer_mean"), first.get("direction", "maximize"),
                   notes)


def _labels(paths: list[Path]) -> list[str]:
    """Folder names, prefixed by their parents' names where two would read the same."""
    labels = [p.name for p in paths]
    for depth in (1, 2):
        if len(set(labels)) == len(labels):
            break
        labels = ["/".join(p.parts[-1 - depth:]) for p in paths]
    return labels if len(set(labels)) == len(labels) else [f"{i}:{p.name}" for i, p in enumerate(paths)]


def _with_series(trials: pd.DataFrame, multi_run: bool) -> pd.DataFrame:
    """The trials with ``series``: the pair, prefixed by the run when several runs are compared."""
    pair = trials["pair"].astype(object).fillna(_column(trials, "config/pair", default="?"))
    out = trials.assign(pair=pair)
    out["series"] = (out["run"] + " · " + pair.astype(str)) if multi_run else pair.astype(str)
    return out


def _stack_curves(runs: tuple[Run, ...], trials: pd.DataFrame) -> pd.DataFrame:
    """Every run's curve points with the trial's run, series, status and pair beside them."""
    frames = [r.curves.assign(run=r.label) for r in runs if r.curves is not None and not r.curves.empty]
    if not frames or trials.empty:
        return pd.DataFrame(columns=["run", "number", "step", "series", "status"])
    curves = pd.concat(frames, ignore_index=True)
    keys = trials[["run", "number", "series", "status", "pair"]]
    return curves.merge(keys, on=["run", "number"], how="inner")
