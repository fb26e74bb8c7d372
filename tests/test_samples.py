"""Class-conditional sampling (ltrans.samples): the mixture's draws and the sample-quality cache key."""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

from ltrans.samples import Mixture


def _mixture(k: int, d: int, seed: int) -> Mixture:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(k, d, d, generator=g, dtype=torch.float64)
    cov = a @ a.transpose(1, 2) + 0.1 * torch.eye(d, dtype=torch.float64)
    weights = torch.rand(k, generator=g, dtype=torch.float64) + 0.2
    return Mixture(weights / weights.sum(), 5 * torch.randn(k, d, generator=g, dtype=torch.float64),
                   torch.linalg.cholesky(cov))


def test_mixture_draws_equal_one_factor_per_draw_for_the_same_seed():
    # The former sampler gathered a Cholesky factor per draw, (n, d, d); drawing per component must give the
    # same z for the same generator, or stored sample figures would no longer reproduce.
    mix = _mixture(k=3, d=6, seed=0)
    z = mix.sample(500, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    pick = torch.multinomial(mix.weights, 500, replacement=True, generator=g)
    eps = torch.randn(500, 6, generator=g, dtype=torch.float64)
    expected = mix.means[pick] + torch.einsum("nij,nj->ni", mix.chols[pick], eps)
    assert z.shape == (500, 6) and z.dtype == torch.float64
    torch.testing.assert_close(z, expected, rtol=0, atol=1e-12)
    assert len(torch.unique(pick)) == 3  # every component drawn, so each one's factor is checked


def test_many_draws_of_a_wide_mixture_have_its_mean_and_covariance():
    # 100,000 draws in 100 dimensions: one factor per draw would be 8 GB.
    mix = _mixture(k=2, d=100, seed=2)
    z = mix.sample(100_000, torch.Generator().manual_seed(3))
    cov = mix.chols @ mix.chols.transpose(1, 2)  # (k, d, d)
    mean = mix.weights @ mix.means
    centred = mix.means - mean
    total = torch.einsum("k,kij->ij", mix.weights, cov + centred[:, :, None] * centred[:, None, :])
    scale = total.diagonal().sqrt()
    assert torch.allclose((z.mean(0) - mean) / scale, torch.zeros(100, dtype=torch.float64), atol=0.02)
    corr = torch.cov(z.T) / (scale[:, None] * scale[None])
    assert torch.allclose(corr, total / (scale[:, None] * scale[None]), atol=0.03)


class _LargestTensor(TorchFunctionMode):
    """Records the most elements of any tensor a torch call returns while the mode is on."""

    def __init__(self) -> None:
        super().__init__()
        self.numel = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out


def test_mixture_draws_hold_no_tensor_larger_than_the_draws():
    mix = _mixture(k=3, d=20, seed=4)
    with _LargestTensor() as seen:
        z = mix.sample(5_000, torch.Generator().manual_seed(5))
    assert seen.numel == z.numel() == 5_000 * 20  # never a (n, d, d) stack of factors
