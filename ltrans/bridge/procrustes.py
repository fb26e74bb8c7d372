"""Training-free baseline: a linear map between latent spaces fitted on class-matched anchors.

After Maiorca et al., "Latent Space Translation via Semantic Alignment" (NeurIPS 2023): standardise
both spaces (centre, optionally scale), then fit the map on anchor pairs, by orthogonal Procrustes
(SVD of the cross-covariance) when the dims are equal, or by ridge least squares when they differ or
when asked. Their anchors are the same inputs seen by both models; across modalities we have no such
pairs, so anchors are matched by class: with the labelled budget ``n_sup`` per domain (chosen as the
bridge chooses it), the k-th labelled example of class c in A is paired with the k-th of class c in B
(``anchors="pairs"``), or each class mean with the other's (``anchors="means"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ltrans.bridge.train import labelled_subsets
from ltrans.latents import Latents


@dataclass(frozen=True)
class LinearMap:
    """z_b = (z_a - mean_a) @ w_ab + mean_b, and back with w_ba. Weights: (dim_a, dim_b), (dim_b, dim_a)."""

    mean_a: Tensor  # (dim_a,)
    mean_b: Tensor  # (dim_b,)
    w_ab: Tensor
    w_ba: Tensor

    def a_to_b(self, z: Tensor) -> Tensor:  # (n, dim_a) -> (n, dim_b)
        return (z - self.mean_a) @ self.w_ab + self.mean_b

    def b_to_a(self, z: Tensor) -> Tensor:  # (n, dim_b) -> (n, dim_a)
        return (z - self.mean_b) @ self.w_ba + self.mean_a


def class_anchors(latents_a: Latents, latents_b: Latents, n_sup: int, seed: int,
                  anchors: str = "pairs") -> tuple[Tensor, Tensor]:
    """Matched anchor rows (m, dim_a), (m, dim_b) from the labelled subsets of both domains."""
    if n_sup == 0:
        raise ValueError("n_sup=0: a Procrustes map needs labelled anchors; use n_sup=-1 (all) or k > 0")
    if anchors not in ("pairs", "means"):
        raise ValueError(f"anchors must be 'pairs' or 'means', got {anchors!r}")
    ia, ib = labelled_subsets(latents_a.y, latents_b.y, n_sup, seed)  # the bridge's labelled rows
    za, ya, zb, yb = latents_a.mu[ia], latents_a.y[ia], latents_b.mu[ib], latents_b.y[ib]
    rows_a, rows_b = [], []
    for c in sorted(set(ya.tolist()) & set(yb.tolist())):
        ca, cb = za[ya == c], zb[yb == c]
        if anchors == "means":
            rows_a.append(ca.mean(0, keepdim=True))
            rows_b.append(cb.mean(0, keepdim=True))
        else:
            k = min(len(ca), len(cb))  # the k-th of class c in A with the k-th of class c in B
            rows_a.append(ca[:k])
            rows_b.append(cb[:k])
    if not rows_a:
        raise ValueError("no class has labelled examples in both domains: cannot pair anchors")
    return torch.cat(rows_a).double(), torch.cat(rows_b).double()


def orthogonal_procrustes(x: Tensor, y: Tensor) -> Tensor:
    """The orthogonal W (d, d) minimising ||x @ W - y||_F, for x, y: (m, d): W = U V^T, x^T y = U S V^T."""
    u, _, vh = torch.linalg.svd(x.T @ y)
    return u @ vh


def ridge(x: Tensor, y: Tensor, lam: float) -> Tensor:
    """W (d_x, d_y) minimising ||x @ W - y||^2 + lam * m * ||W||^2 for x: (m, d_x), y: (m, d_y)."""
    gram = x.T @ x + lam * len(x) * torch.eye(x.shape[1], dtype=x.dtype)
    return torch.linalg.solve(gram, x.T @ y)


def fit_procrustes(latents_a: Latents, latents_b: Latents, n_sup: int, seed: int,
                   method: str = "orthogonal", *, anchors: str = "pairs", scale: bool = True,
                   lam: float = 1e-3) -> LinearMap:
    """Fit A <-> B maps on class-matched anchors; ``method`` "orthogonal" (equal dims) or "lstsq".

    Centring uses each domain's full latents (no labels needed); ``scale`` divides each space by its
    RMS norm so that an orthogonal map can bridge spaces of different spread.
    """
    if method not in ("orthogonal", "lstsq"):
        raise ValueError(f"method must be 'orthogonal' or 'lstsq', got {method!r}")
    xa, xb = class_anchors(latents_a, latents_b, n_sup, seed, anchors)
    mean_a, mean_b = latents_a.mu.double().mean(0), latents_b.mu.double().mean(0)
    s_a, s_b = _rms(latents_a.mu.double() - mean_a, scale), _rms(latents_b.mu.double() - mean_b, scale)
    xa, xb = (xa - mean_a) / s_a, (xb - mean_b) / s_b
    if method == "orthogonal" and latents_a.dim == latents_b.dim:
        r = orthogonal_procrustes(xa, xb)  # (d, d)
        w_ab, w_ba = r, r.T
    else:  # different dims have no orthogonal map: least squares, one fit per direction
        w_ab, w_ba = ridge(xa, xb, lam), ridge(xb, xa, lam)
    dtype = latents_a.mu.dtype
    return LinearMap(mean_a.to(dtype), mean_b.to(dtype), (w_ab * s_b / s_a).to(dtype),
                     (w_ba * s_a / s_b).to(dtype))


def _rms(centred: Tensor, scale: bool) -> Tensor:
    """RMS row norm of a centred (n, d) cloud, or 1 without scaling."""
    if not scale:
        return torch.ones((), dtype=centred.dtype)
    return centred.pow(2).sum(1).mean().sqrt()
