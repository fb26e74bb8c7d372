"""The ``spoken_digits`` data-space classifier: judges spoken-digit transfers (the paper's "transfer
accuracy"), labels ``spoken_specgan``'s prior samples and scores ``spoken_vae``'s samples.

It reuses the image CNN of ``classifier.py`` on model-space log-mel spectrograms (n, 64, 64) and trains
with SpecAugment-style masking (Park et al. 2019), time shifts, gain offsets and noise so that it stays
right on imperfect generated spectrograms, beside an internal "not a digit" class (``outliers``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ltrans.data.base import Split
from ltrans.models.base import CLASSIFIERS, ClassifierSpec, check_positive
from ltrans.models.classifier import (
    ClassifierConfig,
    ImageClassifier,
    batch_indices,
    build_seeded,
    optimizer_step,
    predict_logits,
)
from ltrans.models.space import to_model_space
from ltrans.progress import progress_bar

DOMAIN = "spoken_digits"
N_DIGITS = 10
OUTLIER = N_DIGITS  # index of the internal "not a digit" class


@dataclass(frozen=True)
class SpokenClassifierConfig:
    """The image CNN's shape (four stages, 64 -> 8 frames), spectrogram augmentation sizes, and the share
    of "not a digit" outliers mixed into each batch."""

    stages: tuple[tuple[int, ...], ...] = ((16,), (32,), (64,), (128,))
    feature_dim: int = 128
    epochs: int = 6  # 750 steps on 8,000 clips (20 epochs of 2,400 before 2026-12-07)
    batch_size: int = 64
    lr: float = 3e-3  # AdamW peak of a one-cycle schedule, as the image classifiers
    weight_decay: float = 5e-4
    max_shift: int = 8  # frames (125 ms) of random time shift, edge frames repeated
    time_mask: int = 10  # widest masked run of frames (SpecAugment's T)
    freq_mask: int = 8  # widest masked run of mel bands (SpecAugment's F)
    gain: float = 0.1  # +- model-space offset (0.1 = 1.8 nats of log power, ~8 dB)
    noise: float = 0.03  # largest std of added Gaussian noise, so GAN texture does not surprise it
    # Outliers per real clip in a batch (0.5: 32 beside 64 real). Without them the classifier calls
    # uniform noise "five" at >= 0.9 and half the time-reversed clips a digit (measured), so it cannot
    # be trusted to judge GAN samples.
    outlier_fraction: float = 0.5

    def __post_init__(self) -> None:
        check_positive(self, ("feature_dim", "epochs", "batch_size", "lr"))
        if min(self.max_shift, self.time_mask, self.freq_mask, self.gain, self.noise, self.weight_decay,
               self.outlier_fraction) < 0:
            raise ValueError("augmentation sizes, outlier_fraction and weight_decay must be >= 0")


# One epoch of batch 16 is 500 steps on the full split (8,000 clips); tests on 240 clips raise ``epochs``. A
# quarter outliers and a higher lr: at the full setting's 0.5 and 3e-3 the tiny net learned the digits too slowly.
TINY_CLASSIFIER = SpokenClassifierConfig(stages=((8,), (16,), (32,), (32,)), feature_dim=32, epochs=1, batch_size=16,
                                         lr=1e-2, outlier_fraction=0.25)


class SpokenClassifier(ImageClassifier):
    """(n, 64, 64) spectrograms -> logits (n, 10) of the digits; ``features`` gives (n, feature_dim).

    Internally an 11-way softmax: ten digits and "not a digit" (``OUTLIER``), trained on noise and on
    real clips reversed, shuffled or blurred in time (``outliers``). ``forward`` returns log-probabilities
    of the ten digits with the outlier mass spread evenly over them, log(p_k + p_out / 10): a proper
    10-way distribution, so ``softmax(forward(x))`` equals ``forward(x).exp()``, its argmax is the
    11-way model's best digit, and ``softmax(forward(x)).max() >= 0.9`` implies p_k >= 0.889 for that
    digit under the 11-way model: the confidence that x *is* that digit, not merely the least unlikely one.
    Something that is no digit at all gets a flat ~0.1 everywhere. ``all_logits`` gives the 11 logits.
    """

    def all_logits(self, x: torch.Tensor) -> torch.Tensor:  # (n, 11)
        return self.head(self.features(x))

    def readout(self, features: torch.Tensor) -> torch.Tensor:  # (n, 10), see the class docstring
        log_p = F.log_softmax(self.head(features), dim=1)
        return torch.logaddexp(log_p[:, :OUTLIER], log_p[:, OUTLIER:] - math.log(N_DIGITS))


def build_spoken_classifier(config: SpokenClassifierConfig) -> SpokenClassifier:
    """The untrained classifier of ``config`` (11-way head, 10-way readout)."""
    return SpokenClassifier(ClassifierConfig(stages=config.stages, feature_dim=config.feature_dim,
                                             n_classes=N_DIGITS + 1))


def _runs(n: int, length: int, widest: int, g: torch.Generator) -> torch.Tensor:
    """(n, length) bool masks, each one random run of 0..widest positions."""
    width = torch.randint(widest + 1, (n, 1), generator=g)
    start = (torch.rand(n, 1, generator=g) * (length - width + 1)).floor()
    pos = torch.arange(length)
    return (pos >= start) & (pos < start + width)


def augment(x: torch.Tensor, config: SpokenClassifierConfig, g: torch.Generator) -> torch.Tensor:
    """Random time shift, one time and one frequency mask (filled with the clip's floor), gain, noise."""
    n, bands, frames = x.shape
    shift = torch.randint(-config.max_shift, config.max_shift + 1, (n, 1), generator=g)
    index = (torch.arange(frames) - shift).clamp(0, frames - 1).to(x.device)  # (n, frames)
    x = x.gather(2, index[:, None, :].expand(n, bands, frames))
    mask = _runs(n, frames, config.time_mask, g)[:, None, :] | _runs(n, bands, config.freq_mask, g)[:, :, None]
    floor = x.amin(dim=(1, 2), keepdim=True)
    x = torch.where(mask.to(x.device), floor, x)
    offset = (torch.rand(n, 1, 1, generator=g) * 2 - 1) * config.gain
    sigma = torch.rand(n, 1, 1, generator=g) * config.noise
    return (x + offset.to(x) + sigma.to(x) * torch.randn(x.shape, generator=g).to(x)).clamp(0.0, 1.0)


def blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each (64, 64) spectrogram of x (n, 64, 64) blurred by an isotropic Gaussian of its own sigma (n,)."""
    radius = 8
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma.to(x)[:, None]) ** 2)
    k = k / k.sum(1, keepdim=True)  # (n, 17) separable kernel, one per example
    h = F.pad(x[None], (radius, radius, radius, radius), mode="replicate")  # (1, n, 80, 80)
    h = F.conv2d(h, k[:, None, :, None], groups=len(x))  # along mel bands
    return F.conv2d(h, k[:, None, None, :], groups=len(x))[0]  # along frames


def outliers(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Spectrograms that are no spoken digit, one per clip of x (n, 64, 64), five kinds in turn:
    uniform noise at a random level, smooth noise "blobs", and the clip reversed in time, cut into
    4-frame pieces and shuffled, or blurred (sigma 1.5..4 bins, which erases the harmonics)."""
    n, bands, frames = x.shape
    kind = torch.arange(n) % 5
    level, spread = torch.rand(n, 1, 1, generator=g), torch.rand(n, 1, 1, generator=g)
    noise = (level * (1 - spread) + spread * torch.rand(x.shape, generator=g)).to(x)
    coarse = torch.rand(n, 1, 8, 8, generator=g).to(x)
    blobs = F.interpolate(coarse, size=(bands, frames), mode="bicubic", align_corners=False)[:, 0]
    pieces = torch.argsort(torch.rand(n, frames // 4, generator=g), dim=1)  # (n, 16) piece order
    order = (pieces[:, :, None] * 4 + torch.arange(4)).flatten(1).to(x.device)  # (n, 64) frame order
    shuffled = x.gather(2, order[:, None, :].expand(n, bands, frames))
    blurred = blur(x, 1.5 + 2.5 * torch.rand(n, generator=g))
    out = torch.stack([noise, blobs.clamp(0, 1), x.flip(2), shuffled, blurred])  # (5, n, 64, 64)
    return out[kind, torch.arange(n)]


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict_logits(model, x).argmax(1) == y).float().mean())


@torch.no_grad()
def outlier_confident_rate(model: nn.Module, x: torch.Tensor, seed: int, threshold: float = 0.9) -> float:
    """Share of ``outliers(x)`` that the classifier calls some digit with softmax >= ``threshold``."""
    fake = outliers(x, torch.Generator().manual_seed(seed))
    return float((predict_logits(model, fake).softmax(1).amax(1) >= threshold).float().mean())


def train_spoken_classifier(
    config: SpokenClassifierConfig, split: Split, *, seed: int, device: str | torch.device = "cpu",
    progress: bool = False,
) -> tuple[SpokenClassifier, dict[str, Any]]:
    """11-way cross-entropy (digits + outliers) with AdamW and a one-cycle schedule on augmented clips."""
    x, y = to_model_space(DOMAIN, split.train.x).to(device), torch.as_tensor(split.train.y).to(device)
    g = torch.Generator().manual_seed(seed)
    model = build_seeded(build_spoken_classifier, config, seed).to(device).train()
    steps = config.epochs * max(1, len(x) // min(config.batch_size, len(x)))
    n_out = round(config.outlier_fraction * min(config.batch_size, len(x)))
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps, pct_start=0.15)
    bar, batches = progress_bar(steps, progress, "spoken classifier"), batch_indices(len(x), config.batch_size, g)
    for _ in range(steps):
        idx = next(batches).to(device)
        xb = augment(x[idx], config, g)
        xb = torch.cat([xb, outliers(xb[:n_out], g)])
        yb = torch.cat([y[idx], torch.full((n_out,), OUTLIER, device=device)])
        loss = F.cross_entropy(model.all_logits(xb), yb)
        optimizer_step(loss, opt, sched, bar)
    bar.close()
    model.eval()
    x_test = to_model_space(DOMAIN, split.test.x)
    info = {"train_loss": loss.item(), "train_accuracy": _accuracy(model, x.cpu(), y.cpu()),
            "test_accuracy": _accuracy(model, x_test, torch.as_tensor(split.test.y)),
            "test_outlier_confident_rate": outlier_confident_rate(model, x_test, seed=seed + 1), "steps": steps}
    return model, info


CLASSIFIERS.register(
    DOMAIN,
    ClassifierSpec(domain=DOMAIN, config=SpokenClassifierConfig(), tiny=TINY_CLASSIFIER,
                   build=build_spoken_classifier, train=train_spoken_classifier, floor=0.97),
)
