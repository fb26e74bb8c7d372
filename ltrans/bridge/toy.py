"""A toy pair with ground truth: two latent spaces that differ by a known rotation (STYLE.md, Tests).

Domain A: 10 Gaussian class clusters in d dimensions. Domain B: the same distribution rotated by a
random orthogonal R (z_b = z_a @ R, fresh samples, not the same points). Each domain's "classifier" is
nearest class centre in its own space, so transfer accuracy is computable as in the paper: translate
A -> B, classify with B's classifier, compare with A's classifier on the source.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ltrans.latents import Latents


@dataclass(frozen=True, eq=False)
class ToyPair:
    """latents_a, latents_b; rotation R (d, d) with z_b = z_a @ R; centres_a (c, d) of A's classes."""

    latents_a: Latents
    latents_b: Latents
    rotation: Tensor
    centres_a: Tensor

    @property
    def centres_b(self) -> Tensor:  # (c, d)
        return self.centres_a @ self.rotation


def random_rotation(dim: int, seed: int) -> Tensor:
    """A Haar-random orthogonal (dim, dim) matrix: QR of a Gaussian with the signs of R's diagonal fixed."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()


def toy_pair(n_per_class: int, dim: int, rotation_seed: int, noise: float, seed: int,
             n_classes: int = 10, posterior_std: float = 0.0) -> ToyPair:
    """Class centres ~ N(0, 4 I) (shared, in A's frame), rows = centre + noise * N(0, I).

    ``posterior_std`` fills Latents.std (0 = deterministic latents, like a GAN's).
    """
    g = torch.Generator().manual_seed(seed)
    rotation = random_rotation(dim, rotation_seed)
    centres = 2.0 * torch.randn(n_classes, dim, generator=g)  # (c, d)
    y = torch.arange(n_classes).repeat_interleave(n_per_class)  # (n,)

    def draw() -> Tensor:  # fresh rows of A's distribution, (n, d)
        return centres[y] + noise * torch.randn(len(y), dim, generator=g)

    def latents(mu: Tensor) -> Latents:
        return Latents(mu, torch.full_like(mu, posterior_std), y.clone(), torch.ones(len(y)))

    return ToyPair(latents(draw()), latents(draw() @ rotation), rotation, centres)


def toy_classify(pair: ToyPair, z: Tensor, domain: str) -> Tensor:
    """Nearest class centre in ``domain``'s own space: z (n, d) -> labels (n,)."""
    if domain not in ("a", "b"):
        raise ValueError(f"domain must be 'a' or 'b', got {domain!r}")
    centres = pair.centres_a if domain == "a" else pair.centres_b
    return torch.cdist(z, centres).argmin(dim=1)


def transfer_accuracy(pair: ToyPair, z_src: Tensor, z_translated: Tensor, src: str, dst: str) -> float:
    """Fraction where dst's classifier on the translation agrees with src's on the source."""
    return float((toy_classify(pair, z_translated, dst) == toy_classify(pair, z_src, src)).float().mean())
