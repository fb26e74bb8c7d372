"""An image GAN: the base model without an encoder (Tian & Engel 2019, sections 3 and 4).

The paper bridges a VAE to a GAN (WaveGAN for SC09); a GAN's latents are prior samples z ~ N(0, I)
kept for the domain classifier's confidence (DESIGN.md section 1). This is a small DCGAN
(Radford et al. 2016, arXiv 1511.06434): a transposed-conv generator with batch norm, a strided-conv
discriminator. By default the discriminator uses spectral norm (Miyato et al. 2018, arXiv 1802.05957)
with the hinge loss and Adam(4e-4, betas (0, 0.999)): on 4,000 digits it covered every digit, where
DCGAN's batch-norm discriminator dropped most "1"s and "4"s. ``d_norm="batch"``, the
non-saturating loss of Goodfellow et al. 2014 and DCGAN's Adam(2e-4, (0.5, 0.999)) stay options.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ltrans.data.base import Split
from ltrans.models.base import BASE_MODELS, BaseSpec
from ltrans.models.classifier import as_images, batch_indices, build_seeded
from ltrans.progress import progress_bar


@dataclass(frozen=True)
class GANConfig:
    """Widths, loss and schedule of the DCGAN; ``g_channels`` at 7x7 and 14x14, ``d_channels`` at 14, 7."""

    latent_dim: int = 100
    g_channels: tuple[int, int] = (128, 64)
    d_channels: tuple[int, int] = (64, 128)
    # Hinge loss, lr 4e-4 and beta1 0 (the SN-GAN recipe, Miyato et al. 2018) measured best here: at
    # DCGAN's (non-saturating, 2e-4, beta1 0.5) 56% of samples were confidently classified and "1"
    # was rare (19 of 2,000); with these, 67% and every digit >= 71 of 2,000.
    loss: str = "hinge"  # or "nonsaturating"
    d_norm: str = "spectral"  # discriminator normalisation: "spectral" or "batch" (DCGAN's)
    lr: float = 4e-4
    beta1: float = 0.0  # Adam's momentum; DCGAN used 0.5 (0.9 makes the two players oscillate)
    batch_size: int = 64
    steps: int = 4000

    def __post_init__(self) -> None:
        if self.loss not in ("nonsaturating", "hinge"):
            raise ValueError(f"loss must be 'nonsaturating' or 'hinge', got {self.loss!r}")
        if self.d_norm not in ("spectral", "batch"):
            raise ValueError(f"d_norm must be 'spectral' or 'batch', got {self.d_norm!r}")
        if len(self.g_channels) != 2 or len(self.d_channels) != 2:
            raise ValueError("g_channels and d_channels take two widths each")
        if min(self.latent_dim, self.batch_size, self.steps, *self.g_channels, *self.d_channels) < 1:
            raise ValueError("widths, latent_dim, batch_size and steps must be >= 1")
        if self.lr <= 0 or not 0 <= self.beta1 < 1:
            raise ValueError(f"need lr > 0 and 0 <= beta1 < 1; got {self.lr}, {self.beta1}")


def _generator(config: GANConfig) -> nn.Sequential:
    c0, c1 = config.g_channels
    return nn.Sequential(
        nn.Linear(config.latent_dim, c0 * 49, bias=False), nn.BatchNorm1d(c0 * 49), nn.ReLU(),
        nn.Unflatten(1, (c0, 7, 7)),
        nn.ConvTranspose2d(c0, c1, 4, 2, 1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(),  # 14x14
        nn.ConvTranspose2d(c1, 1, 4, 2, 1), nn.Sigmoid(),  # 28x28 in [0, 1], the model space
    )  # fmt: skip


def _discriminator(config: GANConfig) -> nn.Sequential:
    d0, d1 = config.d_channels
    if config.d_norm == "batch":  # DCGAN: batch norm on every layer but the first
        return nn.Sequential(
            nn.Conv2d(1, d0, 4, 2, 1), nn.LeakyReLU(0.2),  # 14x14
            nn.Conv2d(d0, d1, 4, 2, 1, bias=False), nn.BatchNorm2d(d1), nn.LeakyReLU(0.2),  # 7x7
            nn.Flatten(), nn.Linear(d1 * 49, 1),
        )  # fmt: skip
    return nn.Sequential(
        spectral_norm(nn.Conv2d(1, d0, 4, 2, 1)), nn.LeakyReLU(0.2),  # 14x14
        spectral_norm(nn.Conv2d(d0, d1, 4, 2, 1)), nn.LeakyReLU(0.2),  # 7x7
        nn.Flatten(), spectral_norm(nn.Linear(d1 * 49, 1)),
    )  # fmt: skip


class ImageGAN(nn.Module):
    """Generator (``decode``: (n, latent_dim) -> (n, 28, 28) in [0, 1]) with its discriminator."""

    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        self.latent_dim = config.latent_dim
        self.generator = _generator(config)
        self.discriminator = _discriminator(config)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)[:, 0]

    def critic(self, x: torch.Tensor) -> torch.Tensor:
        """Discriminator logits (n,) of (n, 28, 28) images."""
        return self.discriminator(x[:, None])[:, 0]


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, loss: str) -> torch.Tensor:
    """Loss of the critic's logits on real and fake images, (n,) each."""
    if loss == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def generator_loss(fake: torch.Tensor, loss: str) -> torch.Tensor:
    """Generator loss from the critic's logits on fakes; non-saturating: -log D(G(z))."""
    return -fake.mean() if loss == "hinge" else F.softplus(-fake).mean()


def train_gan(
    config: GANConfig, split: Split, *, seed: int, device: str = "cpu", progress: bool = False
) -> tuple[ImageGAN, dict[str, Any]]:
    """Alternating single steps of discriminator and generator; batches and z drawn from ``seed``."""
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    model = build_seeded(ImageGAN, config, seed).to(device).train()
    x = as_images(split.train.x, device)
    adam = {"lr": config.lr, "betas": (config.beta1, 0.999)}
    opt_d = torch.optim.Adam(model.discriminator.parameters(), **adam)
    opt_g = torch.optim.Adam(model.generator.parameters(), **adam)
    bar, batches = progress_bar(config.steps, progress, "gan"), batch_indices(len(x), config.batch_size, gen)
    for _ in range(config.steps):
        real = x[next(batches).to(device)]
        fake = model.decode(torch.randn(len(real), config.latent_dim, generator=gen).to(device))
        loss_d = discriminator_loss(model.critic(real), model.critic(fake.detach()), config.loss)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = generator_loss(model.critic(fake), config.loss)  # the same fakes, against the updated critic
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        bar.update()
        bar.set_postfix(d=f"{loss_d.item():.3f}", g=f"{loss_g.item():.3f}", refresh=False)
    bar.close()
    info = {
        "loss_d": float(loss_d.item()),
        "loss_g": float(loss_g.item()),
        "steps": config.steps,
        "seconds": round(time.perf_counter() - start, 2),
    }
    return model.eval(), info


_TINY = GANConfig(g_channels=(16, 8), d_channels=(8, 16), batch_size=32, steps=30)

BASE_MODELS.register(
    "mnist_gan",
    BaseSpec(
        name="mnist_gan", domain="mnist", kind="gan", latent_dim=GANConfig().latent_dim, seed=0,
        config=GANConfig(), tiny=_TINY, build=ImageGAN, train=train_gan,
        description="DCGAN of MNIST digits, 100-d Gaussian prior (the paper's VAE-to-GAN setting on images)",
    ),
)  # fmt: skip
