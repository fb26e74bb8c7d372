"""Class-conditional sampling (ltrans.samples): the mixture's draws and the sample-quality cache key."""

from __future__ import annotations

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import ltrans.data  # noqa: F401  (fills DATASETS)
from ltrans import samples
from ltrans.artifacts import Store
from ltrans.models import zoo
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


class _Decoder(nn.Module):
    latent_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # the sampler reads the device off a parameter

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z


class _SureOf(nn.Module):
    """A classifier that calls every input class ``c``, confidently."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20 * nn.functional.one_hot(torch.full((len(x),), self.c), 10).float()


def test_a_retrained_classifier_judges_the_samples_again(tmp_path, monkeypatch):
    # The stored summary is the classifier's verdict: another classifier (new weights, new record key) must
    # not be answered with the former one's figures, in `base train` or in `base ls`.
    store = Store(tmp_path)
    model = zoo.Trained(_Decoder(), {"name": "mnist_gan", "key": "gan-weights", "domain": "mnist", "preset": "tiny"})
    current = {}
    monkeypatch.setattr(zoo, "base_model", lambda name, **kwargs: model)
    monkeypatch.setattr(zoo, "classifier", lambda domain, **kwargs: current["clf"])
    monkeypatch.setattr(zoo, "is_trained", lambda name, **kwargs: current["clf"].record)
    verdicts = []
    for c, key in ((0, "clf-a"), (3, "clf-b"), (0, "clf-a")):
        current["clf"] = zoo.Trained(_SureOf(c), {"name": "mnist", "key": key})
        quality = samples.sample_quality("mnist_gan", store=store, preset="tiny")
        assert samples.stored_quality(model.record, store) == quality
        verdicts.append(max(quality["confident_per_class"], key=quality["confident_per_class"].get))
    assert verdicts == ["0", "3", "0"]  # mnist names its classes by digit
    assert len([e for e in store.entries() if e.kind == "sample_quality"]) == 2  # the third was a cache hit


def test_the_quality_key_names_the_classifier_and_every_mixture_setting(monkeypatch):
    record = {"name": "mnist_vae", "key": "vae-weights"}
    key = samples._quality_key(record, {"key": "clf-a"}).digest
    assert samples._quality_key(record, {"key": "clf-b"}).digest != key
    monkeypatch.setattr(samples, "MIN_PER_COMPONENT", samples.MIN_PER_COMPONENT + 1)
    assert samples._quality_key(record, {"key": "clf-a"}).digest != key


def test_no_stored_classifier_means_no_stored_quality(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "is_trained", lambda name, **kwargs: None)
    assert samples.stored_quality({"name": "mnist_vae", "key": "k", "domain": "mnist", "preset": "tiny"},
                                  Store(tmp_path)) is None
