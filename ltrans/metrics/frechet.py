"""Frechet distance between two sets of feature vectors (the FID formula, Heusel et al. 2017).

Our FID analogue applies it to the *target domain classifier's* penultimate features rather than
Inception features: d^2 = |mu_x - mu_y|^2 + Tr(C_x + C_y - 2 (C_x C_y)^(1/2)).
"""

from __future__ import annotations

import numpy as np


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Squared Frechet distance between Gaussians fitted to x: (n, k) and y: (m, k); NaN when either holds
    a non-finite value (a diverged translator's features), so that its trial ends as failed, not raising."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need (n, k) and (m, k) features; got {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan")
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    mu_x, mu_y = x.mean(0), y.mean(0)
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    value = np.sum((mu_x - mu_y) ** 2) + np.trace(cov_x) + np.trace(cov_y) - 2 * _trace_sqrt_product(cov_x, cov_y)
    return float(max(value, 0.0))


def _trace_sqrt_product(a: np.ndarray, b: np.ndarray) -> float:
    """Tr((A B)^(1/2)) for symmetric PSD A, B, as Tr((A^(1/2) B A^(1/2))^(1/2)): symmetric eigenvalue
    problems only, so it stays real and stable when the covariances are singular."""
    w, v = np.linalg.eigh(a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root_a @ b @ root_a)
    return float(np.sqrt(np.clip(inner, 0, None)).sum())
