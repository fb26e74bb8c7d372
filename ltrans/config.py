"""Config plumbing shared by every frozen config dataclass: ``override`` with dotted keys and the
parsing of ``--set key=value`` strings (CLI) into typed values.

Configs themselves live beside what they configure (``ltrans.bridge.config.BridgeConfig``,
``ltrans.models.vae.VAEConfig``, ...); their defaults are the paper's setting.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import yaml

from ltrans.errors import UserError

# The largest seed anywhere (trials, sweeps' seeds:, translate and sample --seed). Seeds reach torch
# generators (which take 64 bits); 32 bits is numpy's and Optuna's range too, so a seed stays valid
# wherever it is handed on.
MAX_SEED = 2**32 - 1

T = TypeVar("T")


class ConfigError(UserError, KeyError):
    """An unknown key or a value of the wrong type in an override."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def field_names(cfg: object) -> list[str]:
    return [f.name for f in dataclasses.fields(cfg)]


def dotted_keys(cfg: object, prefix: str = "") -> list[str]:
    """Every settable dotted key of a (nested) config, e.g. ``["bridge.beta_kl", ..., "seed"]``."""
    keys = []
    for name in field_names(cfg):
        value = getattr(cfg, name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            keys.extend(dotted_keys(value, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def override(cfg: T, changes: Mapping[str, Any]) -> T:
    """Copy of ``cfg`` with dotted keys replaced, e.g. ``{"bridge.beta_swd": 0.3}``.

    Values are coerced to the type of the value they replace (so "3" sets an int field to 3);
    ``__post_init__`` validation runs again on every replaced level.
    """
    for key, value in changes.items():
        cfg = _override_one(cfg, key, value, root=cfg, full_key=key)
    return cfg


def _override_one(cfg: T, key: str, value: Any, root: object, full_key: str) -> T:
    head, _, rest = key.partition(".")
    if not dataclasses.is_dataclass(cfg) or head not in field_names(cfg):
        raise ConfigError(
            f"{type(root).__name__} has no setting {full_key!r}; valid keys: {', '.join(dotted_keys(root))}"
        )
    current = getattr(cfg, head)
    if rest:
        new = _override_one(current, rest, value, root, full_key)
    else:
        new = coerce(value, current, full_key)
    try:
        return dataclasses.replace(cfg, **{head: new})
    except ValueError as err:  # __post_init__ validation
        raise UserError(f"invalid value for {full_key!r}: {err}") from None


def coerce(value: Any, like: Any, key: str = "value") -> Any:
    """``value`` converted to the type of ``like`` (bool, int, float, str, tuple), strictly.

    None (an empty string, or "null") is kept only where ``like`` is None: an optional setting."""
    if isinstance(value, str) and not isinstance(like, str):
        value = yaml.safe_load(value) if value.strip() else None
    if like is None:
        return value
    kind = type(like)
    if value is None:
        raise ConfigError(f"{key!r} needs a value ({_a(kind)}, like {like!r})")
    if kind is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        value = yaml_float(value)
    ok = (
        (kind is bool and isinstance(value, bool))
        or (kind is int and isinstance(value, int) and not isinstance(value, bool))
        or (kind is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (kind is str and isinstance(value, str))
        or (kind in (tuple, list) and isinstance(value, (list, tuple)))
    )
    if not ok:
        raise ConfigError(f"{key!r} takes {_a(kind)} (like {like!r}); got {value!r}")
    return kind(value)


def _a(kind: type) -> str:
    """'an int', 'a float': the type's name with its article."""
    return f"{'an' if kind.__name__[0] in 'aeiou' else 'a'} {kind.__name__}"


# A number in exponent notation without a dot, which YAML 1.1 (PyYAML) leaves as a string: 1e-3, -2E+5.
_EXPONENT = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+")


def yaml_float(value: Any) -> Any:
    """``value`` as a float if it is a string PyYAML left unread (1e-3), finite; otherwise unchanged, so
    that the caller's type check names it. Only ASCII exponent notation: "08" or a full-width "１" stay
    strings, as YAML reads them."""
    if isinstance(value, str) and _EXPONENT.fullmatch(value) and math.isfinite(number := float(value)):
        return number
    return value


def parse_sets(items: Iterable[str]) -> dict[str, str]:
    """``["a.b=1", "c=x"]`` -> ``{"a.b": "1", "c": "x"}``; a malformed item raises ConfigError."""
    changes = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes key=value, got {item!r} (e.g. --set bridge.beta_swd=0.3)")
        changes[key.strip()] = value.strip()
    return changes


def to_dict(cfg: object) -> dict[str, Any]:
    """JSON-able dict of a config (tuples become lists)."""
    return dataclasses.asdict(cfg)
