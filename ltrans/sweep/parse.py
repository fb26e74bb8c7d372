"""Reading and validating sweep files into ``SweepSpec`` (see ``ltrans.sweep.spec`` for the format).

Every problem is one ``UserError`` naming the file, the key and the valid choices.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import yaml

from ltrans.config import yaml_float
from ltrans.errors import UserError
from ltrans.sweep.spec import (
    BASES,
    DIRECTIONS,
    KINDS,
    MAX_PACK,
    MAX_SAMPLER_SEED,
    OBJECTIVE_METRICS,
    PRESET_NAMES,
    SAMPLERS,
    SCHEDULER_METRICS,
    TOP_KEYS,
    Asha,
    Dimension,
    Objective,
    Resources,
    SweepSpec,
    grid_size,
    smoke_version,
)


def load_spec(path: Path | str, smoke: bool = False) -> SweepSpec:
    """Read and validate a sweep file; ``smoke`` gives the same sweep at toy size."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"sweep file {path} does not exist") from None
    except OSError as err:  # a folder, no permission, ...
        raise UserError(f"cannot read sweep file {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not a text file (UTF-8 expected; byte {err.start} is not)") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    spec = parse_spec(raw, where=str(path))
    return smoke_version(spec) if smoke and not spec.smoke else spec


_REQUIRED = ("name", "pairs", "objectives", "space")


class _Checker:
    """Raises UserErrors that name the file and the key."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, key: str, problem: str) -> UserError:
        return UserError(f"{self.where}: {key}: {problem}")

    def choice(self, key: str, value: Any, valid: tuple | list) -> Any:
        if value not in valid:
            raise self.fail(key, f"{value!r} is not valid; choose one of {', '.join(map(str, valid))}")
        return value

    def keys(self, key: str, mapping: Any, valid: tuple) -> dict:
        if not isinstance(mapping, dict):
            raise self.fail(key, f"must be a mapping with keys {', '.join(valid)}, got {mapping!r}")
        unknown = [k for k in mapping if k not in valid]
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}" if key else str(unknown[0]),
                            f"unknown key; valid keys: {', '.join(valid)}")
        return mapping

    def number(self, key: str, value: Any, *, integer: bool = False, minimum: float | None = None,
               maximum: float | None = None) -> Any:
        value = yaml_float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and integer:
            ok = float(value).is_integer()
        if not ok:
            raise self.fail(key, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {value!r}")
        if maximum is not None and value > maximum:
            raise self.fail(key, f"must be <= {maximum}, got {value!r}")
        return int(value) if integer else value

    def flag(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):  # bool("no") is True: only YAML's true/false will do
            raise self.fail(key, f"must be true or false, got {value!r}")
        return value

    def distinct(self, key: str, values: tuple) -> tuple:
        twice = sorted({v for v in values if values.count(v) > 1}, key=str)
        if twice:
            raise self.fail(key, f"{', '.join(map(str, twice))} listed twice; list each once")
        return values


def parse_spec(raw: Any, where: str = "<sweep>") -> SweepSpec:
    """Validate a loaded YAML document into a SweepSpec (see sweeps/*.yaml for the format)."""
    from ltrans.config import MAX_SEED
    from ltrans.pairs import PAIRS

    c = _Checker(where)
    raw = _document(c, raw)
    for required in _REQUIRED:
        if required not in raw:
            raise c.fail(required, "missing; a sweep needs name, pairs, objectives and space")
    pairs = c.distinct("pairs", _string_list(c, "pairs", raw["pairs"]))
    for i, pair in enumerate(pairs):
        c.choice(f"pairs[{i}]", pair, PAIRS.names())
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds:
        raise c.fail("seeds", f"must be a non-empty list of integers, got {seeds!r}")
    seeds = c.distinct("seeds", tuple(c.number(f"seeds[{i}]", s, integer=True, minimum=0, maximum=MAX_SEED)
                                      for i, s in enumerate(seeds)))
    preset = c.choice("preset", raw.get("preset", "paper"), PRESET_NAMES)
    base = c.choice("base", raw["base"], BASES) if raw.get("base") is not None else None
    sampler = c.choice("sampler", raw.get("sampler", "tpe"), SAMPLERS)
    objectives = _objectives(c, raw["objectives"], sampler)
    space = tuple(_dimension(c, f"space.{k}", k, v)  # sorted: a spec does not depend on key order
                  for k, v in sorted(c.keys("space", raw["space"], _space_keys()).items()))
    for d in space:
        _check_kind(c, f"space.{d.key}", d)
    fixed = c.keys("fixed", raw.get("fixed") or {}, _space_keys())
    for key in fixed:  # a trial would silently take the sampled value over the fixed one
        if key in raw["space"]:
            raise c.fail(f"fixed.{key}", f"{key} is in both fixed and space; keep it in one of them")
    spec = SweepSpec(
        name=_name(c, raw["name"]), pairs=pairs, objectives=objectives, space=space,
        budget=_budget(c, raw.get("budget"), sampler, space, pairs, seeds), preset=preset, base=base,
        seeds=seeds, sampler=sampler, sampler_seed=c.number("sampler_seed", raw.get("sampler_seed", 0), integer=True,
                                                            minimum=0, maximum=MAX_SAMPLER_SEED),
        fixed=tuple(sorted(fixed.items())), scheduler=_scheduler(c, raw.get("scheduler")),
        resources=_resources(c, raw.get("resources") or {}),
        max_concurrent=(c.number("max_concurrent", raw["max_concurrent"], integer=True, minimum=1)
                        if raw.get("max_concurrent") is not None else None),
        max_failures=c.number("max_failures", raw.get("max_failures", 2), integer=True, minimum=0),
        pack=_pack(c, raw.get("pack", 1)),
        description=str(raw.get("description", "")), smoke=c.flag("smoke", raw.get("smoke", False)),
    )
    _check_trials(c, spec)
    return spec


def _document(c: _Checker, raw: Any) -> dict:
    """The file's top-level mapping; an empty file or a list is refused as such."""
    if isinstance(raw, dict):
        return c.keys("", raw, TOP_KEYS)
    what = "is empty" if raw is None else "holds a list" if isinstance(raw, list) else f"holds only {raw!r}"
    raise UserError(f"{c.where}: the file {what}; a sweep file is a mapping with keys name, pairs, objectives, "
                    f"space and optionally {', '.join(k for k in TOP_KEYS if k not in _REQUIRED)} (see sweeps/*.yaml)")


def _name(c: _Checker, name: Any) -> str:
    if not isinstance(name, str) or not name.replace("-", "_").isidentifier():
        raise c.fail("name", f"must be a short word (letters, digits, _ or -), got {name!r}")
    return name


def _string_list(c: _Checker, key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise c.fail(key, f"must be a non-empty list of names, got {value!r}")
    return tuple(value)


def _space_keys() -> tuple[str, ...]:
    """Dotted TrialConfig keys a sweep may search or fix (pair and seed come from pairs/seeds)."""
    from ltrans.config import dotted_keys
    from ltrans.pipeline import TrialConfig

    return tuple(k for k in dotted_keys(TrialConfig()) if k not in ("pair", "seed"))


def _objectives(c: _Checker, raw: Any, sampler: str) -> tuple[Objective, ...]:
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise c.fail("objectives", "must be a list of {name: METRIC, direction: maximize|minimize}")
    out = []
    for i, item in enumerate(raw):
        item = c.keys(f"objectives[{i}]", item, ("name", "direction"))
        name = c.choice(f"objectives[{i}].name", item.get("name"), OBJECTIVE_METRICS)
        out.append(Objective(name, c.choice(f"objectives[{i}].direction", item.get("direction", "maximize"),
                                            DIRECTIONS)))
    if len(out) > 1 and sampler == "cmaes":
        raise c.fail("sampler", "cmaes optimises one objective; for several use nsga2, tpe, random or grid")
    if len({o.name for o in out}) != len(out):
        raise c.fail("objectives", "an objective is listed twice")
    return tuple(out)


def _dimension(c: _Checker, where: str, key: str, raw: Any) -> Dimension:
    raw = c.keys(where, raw, ("type", "low", "high", "log", "step", "choices"))
    kind = c.choice(f"{where}.type", raw.get("type"), KINDS)
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices or set(raw) - {"type", "choices"}:
            raise c.fail(where, "categorical takes only `choices`, a non-empty list of values")
        if any(not isinstance(v, (str, int, float, bool)) for v in choices) or len(set(choices)) != len(choices):
            raise c.fail(f"{where}.choices", "must be distinct scalars (numbers, strings or booleans)")
        return Dimension(key, kind, choices=tuple(choices))
    integer = kind == "int"
    low = c.number(f"{where}.low", raw.get("low"), integer=integer)
    high = c.number(f"{where}.high", raw.get("high"), integer=integer)
    log = c.flag(f"{where}.log", raw.get("log", False))
    step = c.number(f"{where}.step", raw["step"], integer=integer) if raw.get("step") is not None else None
    if not low < high:
        raise c.fail(where, f"needs low < high, got low={low}, high={high}")
    if log and low <= 0:
        raise c.fail(f"{where}.low", f"a log distribution needs low > 0, got {low}")
    if log and step is not None:
        raise c.fail(where, "log and step cannot be combined (Optuna's rule)")
    if step is not None:
        _check_step(c, f"{where}.step", low, high, step)
    return Dimension(key, kind, low, high, log, step)


def _check_step(c: _Checker, where: str, low: float, high: float, step: float) -> None:
    """A step must divide high - low: Optuna would silently move high, a grid would overshoot it."""
    if step <= 0:
        raise c.fail(where, f"must be > 0, got {step}")
    n = (high - low) / step  # float tolerance below: (0.3 - 0.1) / 0.1 is 1.9999999999999998
    if n < 1 - 1e-9:
        raise c.fail(where, f"{step} is larger than the range {low}..{high}; nothing to step through")
    if abs(n - round(n)) > 1e-9 * n:
        below, above = low + math.floor(n) * step, low + math.ceil(n) * step
        raise c.fail(where, f"{step} does not divide high - low = {high - low:g}; "
                     f"use high: {below:g} or high: {above:g}, or another step")


def _check_kind(c: _Checker, where: str, d: Dimension) -> None:
    """A float dimension cannot set an int field, nor a number a bool or str one (every trial would fail)."""
    from ltrans.pipeline import TrialConfig

    like = functools.reduce(getattr, d.key.split("."), TrialConfig())
    if d.kind == "float" and type(like) is int:
        raise c.fail(where, f"{d.key} is an int setting; use type: int (or categorical)")
    if d.kind != "categorical" and type(like) in (bool, str):
        raise c.fail(where, f"{d.key} is a {type(like).__name__} setting; use type: categorical with choices")


def _budget(c: _Checker, raw: Any, sampler: str, space: tuple[Dimension, ...], pairs: tuple, seeds: tuple) -> int:
    if sampler == "grid":
        for d in space:
            if d.kind != "categorical" and (d.step is None or d.log):
                raise c.fail(f"space.{d.key}", "grid search needs `choices` or a linear `step`")
        size = grid_size(space, pairs, seeds)
        if raw is None:
            return size
        budget = c.number("budget", raw, integer=True, minimum=1)
        if budget > size:
            raise c.fail("budget", f"{budget} is more than the grid's {size} points")
        return budget
    if raw is None:
        raise c.fail("budget", "missing: how many trials to run (an integer >= 1)")
    return c.number("budget", raw, integer=True, minimum=1)


def _pack(c: _Checker, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise c.fail("pack", f"must be a whole number of bridges per Tune trial (1 = no packing), got {raw!r}")
    if not 1 <= raw <= MAX_PACK:
        raise c.fail("pack", f"must be between 1 (no packing) and {MAX_PACK}, got {raw}")
    return raw


def _scheduler(c: _Checker, raw: Any) -> Asha | None:
    if raw is None or raw == "none" or (isinstance(raw, dict) and raw.get("type") == "none"):
        return None
    raw = c.keys("scheduler", raw, ("type", "grace_period", "reduction_factor", "metric", "mode"))
    c.choice("scheduler.type", raw.get("type"), ("asha", "none"))
    if "grace_period" not in raw:
        raise c.fail("scheduler.grace_period", "missing: bridge steps before ASHA may stop a trial")
    return Asha(
        grace_period=c.number("scheduler.grace_period", raw["grace_period"], integer=True, minimum=1),
        reduction_factor=c.number("scheduler.reduction_factor", raw.get("reduction_factor", 3.0), minimum=1.01),
        metric=c.choice("scheduler.metric", raw.get("metric", "loss_recon"), SCHEDULER_METRICS),
        mode=c.choice("scheduler.mode", raw.get("mode", "min"), ("min", "max")),
    )


def _resources(c: _Checker, raw: Any) -> Resources:
    raw = c.keys("resources", raw, ("cpus", "gpus"))
    return Resources(cpus=c.number("resources.cpus", raw.get("cpus", 1), minimum=0.01),
                     gpus=c.number("resources.gpus", raw.get("gpus", 0), minimum=0))


def _check_trials(c: _Checker, spec: SweepSpec) -> None:
    """Every fixed value, bound and choice must make a valid TrialConfig for every pair; a pack fits the budget."""
    from ltrans.sweep.trials import base_config, max_steps

    if spec.pack > spec.budget:
        raise c.fail("pack", f"{spec.pack} bridges per pack is more than the budget of {spec.budget} trials; "
                     f"use pack <= {spec.budget}")
    for pair in spec.pairs:
        cfg = base_config(spec, pair, c)
        for d in spec.space:
            values = d.choices if d.kind == "categorical" else (d.low, d.high)
            for value in values:
                _try_override(c, f"space.{d.key}", cfg, {d.key: value})
    if spec.scheduler is not None:
        steps = max_steps(spec)  # every value overrides cleanly: checked just above
        if spec.scheduler.grace_period > steps:
            raise c.fail("scheduler.grace_period", f"{spec.scheduler.grace_period} is beyond the "
                         f"trials' {steps} bridge steps")


def _try_override(c: _Checker, key: str, cfg: Any, changes: dict) -> Any:
    from ltrans.config import override

    try:
        return override(cfg, changes)
    except UserError as err:
        raise c.fail(key, str(err)) from None
