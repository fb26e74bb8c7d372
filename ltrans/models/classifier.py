"""Data-space domain classifiers (evaluation only) and the training helpers the image families share.

The paper scores a translation A -> B by whether B's pretrained data-space classifier agrees with A's
classifier on the source (Tian & Engel 2019, section 4, "transfer accuracy"); the same classifiers
label GAN prior samples (DESIGN.md section 1, "Inputs") and give penultimate features for an FID
analogue. One small CNN family serves both 28x28 domains and the native 8x8 ``digits8`` images: a few
conv-BN-ReLU stages with max pooling between them, global average pooling, a ReLU feature layer
(``features``) and a linear readout (``forward``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ltrans.data.base import Examples, Split
from ltrans.models.base import CLASSIFIERS, ClassifierSpec
from ltrans.progress import progress_bar


# ---------------------------------------------------------------- helpers shared by the image families
def build_seeded(build: Callable[[Any], nn.Module], config: Any, seed: int) -> nn.Module:
    """``build(config)`` with its initial weights fixed by ``seed`` and the global RNG left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(config)


def optimizer_step(loss: torch.Tensor, opt, sched, bar) -> None:
    """One scheduled optimiser step on ``loss``, shown on the progress bar."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    bar.update()
    bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)


def batch_indices(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless minibatch indices: a fresh permutation of ``range(n)`` per epoch, remainder dropped."""
    batch_size = min(batch_size, n)
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


def as_images(x: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """(n, H, W) array -> float32 tensor on ``device``."""
    return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=torch.float32).to(device)


def random_affine(
    x: torch.Tensor, shift: float, rotate: float, scale: float, generator: torch.Generator
) -> torch.Tensor:
    """Small random shifts (pixels), rotations (degrees) and zooms (fraction) of (n, H, W) images."""
    n, h, _ = x.shape
    draw = lambda: torch.rand(n, generator=generator).mul(2).sub(1).to(x.device)  # U(-1, 1) per image
    angle = draw() * math.radians(rotate)
    zoom = 1 + draw() * scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # affine_grid works in [-1, 1] coordinates, where one pixel is 2 / H.
    tx, ty = draw() * shift * 2 / h, draw() * shift * 2 / h
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, (n, 1, *x.shape[1:]), align_corners=False)
    return F.grid_sample(x[:, None], grid, align_corners=False, padding_mode="zeros")[:, 0]


# ---------------------------------------------------------------- the classifier
@dataclass(frozen=True)
class ClassifierConfig:
    """A CNN: ``stages`` of conv-BN-ReLU layers (channels per layer), 2x2 max pooling between stages."""

    stages: tuple[tuple[int, ...], ...] = ((16,), (32, 32), (64, 64))
    feature_dim: int = 128  # width of the penultimate (feature) layer
    n_classes: int = 10
    epochs: int = 40
    batch_size: int = 128
    lr: float = 3e-3  # AdamW peak, cosine-decayed to 0: converges in few epochs on 4,000 images
    weight_decay: float = 5e-4
    aug_shift: float = 2.0  # pixels; 0 turns augmentation off
    aug_rotate: float = 10.0  # degrees
    aug_scale: float = 0.1  # zoom fraction

    def __post_init__(self) -> None:
        if not self.stages or any(not s or min(s) < 1 for s in self.stages):
            raise ValueError(f"stages must be non-empty tuples of positive widths, got {self.stages}")
        if min(self.feature_dim, self.n_classes, self.epochs, self.batch_size) < 1:
            raise ValueError("feature_dim, n_classes, epochs and batch_size must be >= 1")
        if self.lr <= 0 or min(self.aug_shift, self.aug_rotate, self.aug_scale, self.weight_decay) < 0:
            raise ValueError("lr must be > 0 and augmentation sizes / weight_decay >= 0")


class ImageClassifier(nn.Module):
    """(n, H, W) images in [0, 1] -> logits (n, n_classes); ``features`` gives (n, feature_dim)."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 1
        for i, stage in enumerate(config.stages):
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            for out in stage:
                layers += [nn.Conv2d(width, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
                width = out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, config.feature_dim), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(config.feature_dim, config.n_classes)
        self.feature_dim = config.feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.reshape(x.shape[0], 1, *x.shape[-2:]))

    def readout(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from ``features(x)``: ``forward(x) == readout(features(x))``, so an evaluation that
        needs both runs the conv body once."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.features(x))


@torch.no_grad()
def predict_logits(module: nn.Module, x: np.ndarray | torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits of ``module`` (in eval mode) on images ``x``, computed in batches on the module's device."""
    device = next(module.parameters()).device
    x = as_images(x, device)
    return torch.cat([module(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]).cpu()


def accuracy(module: nn.Module, examples: Examples) -> float:
    pred = predict_logits(module, examples.x).argmax(1).numpy()
    return float((pred == examples.y).mean())


def train_classifier(
    config: ClassifierConfig, split: Split, *, seed: int, device: str = "cpu", progress: bool = False
) -> tuple[ImageClassifier, dict[str, Any]]:
    """Cross-entropy training with AdamW, cosine learning rate and light random affine augmentation."""
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    model = build_seeded(ImageClassifier, config, seed).to(device).train()
    x, y = as_images(split.train.x, device), torch.as_tensor(split.train.y).to(device)
    steps = config.epochs * max(1, len(x) // min(config.batch_size, len(x)))
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps, pct_start=0.15)
    bar, batches = progress_bar(steps, progress, "classifier"), batch_indices(len(x), config.batch_size, gen)
    for _ in range(steps):
        idx = next(batches).to(device)
        xb = x[idx]
        if config.aug_shift or config.aug_rotate or config.aug_scale:
            xb = random_affine(xb, config.aug_shift, config.aug_rotate, config.aug_scale, gen)
        loss = F.cross_entropy(model(xb), y[idx])
        optimizer_step(loss, opt, sched, bar)
    bar.close()
    model.eval()
    info = {
        "train_loss": float(loss.item()),
        "train_accuracy": accuracy(model, split.train),
        "test_accuracy": accuracy(model, split.test),
        "steps": steps,
        "seconds": round(time.perf_counter() - start, 2),
    }
    return model, info


# ---------------------------------------------------------------- registry entries
def _register(domain: str, config: ClassifierConfig, tiny: ClassifierConfig, floor: float) -> None:
    CLASSIFIERS.register(
        domain,
        ClassifierSpec(
            domain=domain,
            config=config,
            tiny=tiny,
            build=ImageClassifier,
            train=train_classifier,
            floor=floor,
        ),
    )


# Tiny: seconds of training; three stages so that global pooling still sees 7x7 maps, and a high lr
# because the one-cycle schedule has only ~100-200 steps.
_NO_AUG = {"aug_shift": 0.0, "aug_rotate": 0.0, "aug_scale": 0.0}
_TINY_28 = ClassifierConfig(
    stages=((16,), (32,), (32,)), feature_dim=32, epochs=3, batch_size=64, lr=1e-2, **_NO_AUG
)
_register("mnist", ClassifierConfig(), _TINY_28, floor=0.97)  # measured 0.983
# animals has twice the training images: fewer epochs keep it under a minute (measured 0.983 at 40).
_register("animals", ClassifierConfig(epochs=25), replace(_TINY_28, epochs=2), floor=0.95)
# digits8 runs the same CNN on the native 8x8 images: two stages (8x8 -> 4x4), no rotations or zooms
# (one pixel is an eighth of the digit), and more epochs because an epoch has only ~11 batches.
_register(
    "digits8",
    ClassifierConfig(stages=((32, 32), (64, 64)), epochs=60, aug_shift=0.5, aug_rotate=0, aug_scale=0),
    ClassifierConfig(stages=((16,), (32,)), feature_dim=32, epochs=15, **_NO_AUG),
    floor=0.97,  # measured 0.994
)
