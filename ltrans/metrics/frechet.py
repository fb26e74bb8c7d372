"""Frechet distance between two sets of feature vectors (the FID formula, Heusel et al. 2017).

Our FID analogue applies it to the *target domain classifier's* penultimate features rather than
Inception features: d^2 = |mu_x - mu_y|^2 + Tr(C_x + C_y - 2 (C_x C_y)^(1/2)).
"""

from __future__ import annotations

import numpy as np
from scipy import linalg


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Squared Frechet distance between Gaussians fitted to x: (n, k) and y: (m, k)."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need (n, k) and (m, k) features; got {x.shape} and {y.shape}")
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    mu_x, mu_y = x.mean(0), y.mean(0)
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root, _ = linalg.sqrtm(cov_x @ cov_y, disp=False)
    if not np.isfinite(root).all():  # singular product: regularise both covariances slightly
        eps = 1e-6 * np.eye(len(cov_x))
        root = linalg.sqrtm((cov_x + eps) @ (cov_y + eps))
    value = np.sum((mu_x - mu_y) ** 2) + np.trace(cov_x) + np.trace(cov_y) - 2 * np.trace(root.real)
    return float(max(value, 0.0))
