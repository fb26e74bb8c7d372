"""Domains: loaders from files (or embedded package data) to ``Examples(x, y)``.

Importing this package registers every domain in ``DATASETS``.
"""

from __future__ import annotations

from pathlib import Path

from ltrans.data import images, spoken  # noqa: F401  (registers mnist, animals, digits8, spoken_digits)
from ltrans.data.base import DATASETS, Domain, Examples, LoadRequest, Split, stratified_split

__all__ = ["DATASETS", "Domain", "Examples", "LoadRequest", "Split", "load_split", "stratified_split"]


def load_split(name: str, *, data_dir: Path | None = None, seed: int = 0, store=None) -> Split:
    """Train/test split of domain ``name``: embedded data, or the real dataset under ``data_dir``."""
    from ltrans.artifacts import Store

    domain = DATASETS[name]
    request = LoadRequest(data_dir=Path(data_dir) if data_dir else None, seed=seed, store=store or Store())
    return domain.load(request)
