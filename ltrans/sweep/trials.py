"""From a sweep and a sampled point to a ``TrialConfig`` and its content key (no Ray, no Optuna).

The content key names everything that fixes a trial's result: the resolved config (pair and seed
included) and the code version recorded when the sweep started. Resume keeps trials by it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from ltrans.errors import UserError


def base_config(spec, pair: str, checker=None):
    """The preset's TrialConfig for ``pair`` with the sweep's base size and fixed overrides."""
    from ltrans.config import override
    from ltrans.presets import PRESETS

    cfg = PRESETS[spec.preset](pair)
    changes = ({"base": spec.base} if spec.base else {}) | dict(spec.fixed)
    try:
        return override(cfg, changes)
    except UserError as err:
        if checker is None:
            raise
        raise checker.fail("fixed", str(err)) from None


def resolve(spec, params: dict[str, Any], pair: str, seed: int):
    """The TrialConfig of one sampled point (``params`` by dotted key)."""
    from ltrans.config import override

    cfg = base_config(spec, pair)
    return override(cfg, {**{k: v for k, v in params.items() if k not in ("pair", "seed")}, "seed": seed})


def max_steps(spec) -> int:
    """The most bridge steps any trial of the sweep can take (ASHA's max_t)."""
    from ltrans.config import override

    steps = []
    for pair in spec.pairs:
        cfg = base_config(spec, pair)
        steps.append(cfg.bridge.steps)
        for d in spec.space:
            if d.key == "bridge.steps":  # categorical steps have no `high`: their largest choice
                values = d.choices if d.kind == "categorical" else (d.high,)
                steps += [override(cfg, {d.key: v}).bridge.steps for v in values]
    return max(steps)


def flat_config(cfg) -> dict[str, Any]:
    """A TrialConfig as {dotted key: value}: what Tune gets and trials.parquet's config/* columns hold."""
    out: dict[str, Any] = {}

    def walk(obj: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
            else:
                out[f"{prefix}{f.name}"] = list(value) if isinstance(value, tuple) else value

    walk(cfg, "")
    return out


def config_from_flat(flat: dict[str, Any]):
    """Inverse of flat_config (on a worker: rebuild the exact TrialConfig the driver resolved)."""
    from ltrans.config import override
    from ltrans.pipeline import TrialConfig

    return override(TrialConfig(pair=flat["pair"]), flat)


def content_key(cfg, code_version: str) -> str:
    """16 hex digits of sha256 over the resolved config (pair, seed included) and the code version."""
    blob = json.dumps({"config": dataclasses.asdict(cfg), "code": code_version}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
