"""What a pair's names mean, from ltrans's registries: its two base models, their domains and classes.

Names a registry does not know (a renamed pair, a synthetic benchmark) fall back to plain labels, so
that a report over someone else's run folder still draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class ModelInfo:
    name: str
    domain: str
    modality: str  # "image", "audio" or "?" when unknown
    class_names: tuple[str, ...]


@cache
def pair_sides(pair: str) -> tuple[str, str]:
    """(base model a, base model b) of a registered pair, else ("<pair>:a", "<pair>:b")."""
    from ltrans.pairs import PAIRS

    if pair in PAIRS.names():
        record = PAIRS[pair]
        return record.a, record.b
    return f"{pair}:a", f"{pair}:b"


@cache
def model_info(model: str) -> ModelInfo:
    """Domain, modality and class names of a registered base model (digits 0-9 when unknown)."""
    import ltrans.data
    import ltrans.models  # noqa: F401  (fills BASE_MODELS)
    from ltrans.data.base import DATASETS
    from ltrans.models.base import BASE_MODELS

    if model not in BASE_MODELS.names():
        return ModelInfo(model, "?", "?", tuple(str(i) for i in range(10)))
    domain = BASE_MODELS[model].domain
    record = DATASETS[domain]
    return ModelInfo(model, domain, record.modality, tuple(record.class_names))
