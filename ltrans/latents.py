"""Latents: a domain encoded once by its frozen base model (DESIGN.md section 1, "Inputs").

A VAE gives the posterior mean and std of every example; a GAN has no encoder, so its latents are
prior samples kept for the domain classifier's confidence, with ``std = 0`` and pseudo-labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class Latents:
    """mu, std: (n, d) float32; y: (n,) int64 labels (true, or pseudo-labels for a GAN);
    confidence: (n,) float32 classifier confidence of y (1 for true labels)."""

    mu: torch.Tensor
    std: torch.Tensor
    y: torch.Tensor
    confidence: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.mu.ndim != 2 or self.mu.shape != self.std.shape:
            raise ValueError(f"mu and std must both be (n, d); got {tuple(self.mu.shape)}, {tuple(self.std.shape)}")
        if self.y.shape != (self.mu.shape[0],):
            raise ValueError(f"y must be ({self.mu.shape[0]},); got {tuple(self.y.shape)}")
        if self.confidence is not None and self.confidence.shape != self.y.shape:
            raise ValueError(f"confidence must be {tuple(self.y.shape)}; got {tuple(self.confidence.shape)}")

    def __len__(self) -> int:
        return int(self.mu.shape[0])

    @property
    def dim(self) -> int:
        return int(self.mu.shape[1])

    def subset(self, index: torch.Tensor) -> Latents:
        conf = None if self.confidence is None else self.confidence[index]
        return Latents(self.mu[index], self.std[index], self.y[index], conf)
