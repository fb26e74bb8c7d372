"""What every frozen base model and domain classifier family provides, and their registries.

A family module (``vae.py``, ``gan.py``, ``specgan.py``, ``spoken.py``, ``classifier.py``,
``spoken_classifier.py``) defines a frozen config dataclass, an ``nn.Module`` and a ``train_*``
function, and registers named specs here. The zoo (``ltrans/models/zoo.py``) trains a spec once,
stores it in the artifact store and loads it frozen.

Model space: images are (n, 28, 28) float32 in [0, 1]; spoken digits are normalised log-mel
spectrograms from ``ltrans.data.audio.to_model_space`` (see that module for the shape).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from ltrans.registry import Registry


class Generative(Protocol):
    """A frozen generative model. ``encode`` exists only for kind == "vae"."""

    latent_dim: int

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # (n, latent_dim) -> model space
        ...


def check_positive(config: Any, names: tuple[str, ...]) -> None:
    """Raise ValueError naming the first of ``config``'s fields ``names`` that is not > 0."""
    for name in names:
        if getattr(config, name) <= 0:
            raise ValueError(f"{name} must be > 0, got {getattr(config, name)}")


# train(config, split, *, seed, device, progress) -> (trained module in eval mode, info dict of
# JSON-able final figures, e.g. {"loss": .., "recon_mse": .., "steps": ..})
TrainFn = Callable[..., tuple[nn.Module, dict[str, Any]]]


@dataclass(frozen=True)
class BaseSpec:
    """A named base generative model. ``config`` is the full setting, ``tiny`` the same code path at
    a size that trains in seconds (tests)."""

    name: str
    domain: str
    kind: str  # "vae" or "gan"
    latent_dim: int
    seed: int
    config: Any
    tiny: Any
    build: Callable[[Any], nn.Module]  # config -> untrained module (to load a state dict into)
    train: TrainFn
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("vae", "gan"):
            raise ValueError(f"kind must be 'vae' or 'gan', got {self.kind!r}")


@dataclass(frozen=True)
class ClassifierSpec:
    """The data-space classifier of a domain (evaluation only). Its module maps model space to
    logits with ``forward`` and to penultimate features with ``features`` (the FID analogue)."""

    domain: str
    config: Any
    tiny: Any
    build: Callable[[Any], nn.Module]
    train: TrainFn
    floor: float  # held-out accuracy the full config must reach (tests check the tiny one separately)


BASE_MODELS: Registry[BaseSpec] = Registry("base model")
CLASSIFIERS: Registry[ClassifierSpec] = Registry("classifier")
