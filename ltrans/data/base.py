"""The data types every domain returns, the DATASETS registry and the stratified split."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ltrans.registry import Registry

if TYPE_CHECKING:
    from ltrans.artifacts import Store


@dataclass(frozen=True, eq=False)
class Examples:
    """Data of one split of one domain.

    x: (n, 28, 28) float32 in [0, 1] for images, (n, 8, 8) for digits8, (n, 16000) float32 in [-1, 1]
    for audio; y: (n,) int64 class indices 0..9.
    """

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x has {self.x.shape[0]} rows but y has {self.y.shape[0]}")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: np.ndarray) -> Examples:
        return Examples(self.x[index], self.y[index])


@dataclass(frozen=True)
class Split:
    """Train and test examples; ``class_names`` is set when the source names its classes differently
    from the domain's defaults (Fashion-MNIST files loaded into the ``animals`` domain)."""

    train: Examples
    test: Examples
    class_names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class LoadRequest:
    """What a domain loader is asked for. ``data_dir`` None means the embedded default data."""

    data_dir: Path | None
    seed: int
    store: Store


@dataclass(frozen=True)
class Domain:
    """A registered domain: its metadata and the function that loads its train/test split."""

    name: str
    modality: str  # "image" or "audio"
    class_names: tuple[str, ...]
    sample_shape: tuple[int, ...]
    source: str  # where the embedded data comes from, and its licence
    real_dataset: str  # what --data-dir accepts
    load: Callable[[LoadRequest], Split]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


DATASETS: Registry[Domain] = Registry("dataset")


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) with the same share of every class in test, fixed by ``seed``."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        n_test = round(len(members) * test_fraction)
        test.append(members[:n_test])
        train.append(members[n_test:])
    # Sort so that the order depends only on the data and the seed, then shuffle once.
    train_idx = rng.permutation(np.sort(np.concatenate(train)))
    test_idx = rng.permutation(np.sort(np.concatenate(test)))
    return train_idx, test_idx


def grouped_split(y: np.ndarray, groups: list[str], test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) with each group (a speaker) on one side only and about ``test_fraction`` of
    every class in test: groups join test in a seeded order while each of their classes is short of its
    share; a class left without test clips then gets its smallest group. ValueError when a class cannot be
    on both sides (all its clips come from one group)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    names, group_of = np.unique(np.asarray(groups), return_inverse=True)
    labels, label_of = np.unique(y, return_inverse=True)
    counts = np.zeros((len(names), len(labels)), dtype=np.int64)  # (groups, classes) clips
    np.add.at(counts, (group_of, label_of), 1)
    share = counts.sum(0) * test_fraction
    order = rng.permutation(len(names))
    in_test, held = np.zeros(len(names), dtype=bool), np.zeros(len(labels), dtype=np.int64)
    for g in order:
        has = counts[g] > 0
        if (held[has] < share[has]).all():
            in_test[g], held = True, held + counts[g]
    for c in np.flatnonzero(held == 0):
        if held[c] == 0:  # a group taken for an earlier class may have brought c along
            g = min((g for g in order if counts[g, c]), key=lambda g: counts[g].sum())
            in_test[g], held = True, held + counts[g]
    lopsided = np.flatnonzero((held == 0) | (held == counts.sum(0)))
    if len(lopsided):
        raise ValueError(f"class {labels[lopsided[0]]} cannot be in train and test without splitting a group")
    test = in_test[group_of]
    return rng.permutation(np.flatnonzero(~test)), rng.permutation(np.flatnonzero(test))
