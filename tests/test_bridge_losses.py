"""Properties of the bridge loss terms (ltrans/bridge/losses.py): closed forms, invariances, shapes."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from ltrans.bridge.config import BridgeConfig
from ltrans.bridge.losses import (
    BridgeBatch,
    bridge_loss,
    kl_standard_normal,
    labelled_cross_entropy,
    sliced_wasserstein,
    sorted_values,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_fast_sort_has_torch_sort_values_and_gradients_even_with_ties():
    x = torch.randn(64, 300, generator=gen(), dtype=torch.float32)
    x[3, 10] = x[3, 20]  # a tie: the row falls back to torch's order
    x[7, :50] = 0.25  # many ties in one row
    w = torch.randn(64, 300, generator=gen(1))
    grads = []
    for sort in (sorted_values, lambda t: torch.sort(t, dim=-1).values):
        leaf = x.clone().requires_grad_(True)
        out = sort(leaf)
        (out * w).sum().backward()
        grads.append((out.detach(), leaf.grad))
    assert torch.equal(grads[0][0], grads[1][0])
    assert torch.equal(grads[0][1], grads[1][1])


def test_swd_of_identical_sets_is_zero():
    x = torch.randn(200, 5, generator=gen())
    assert sliced_wasserstein(x, x.clone(), 32, gen(1)).item() == 0.0


def test_swd_grows_monotonically_with_a_shift():
    x = torch.randn(300, 4, generator=gen())
    y = torch.randn(300, 4, generator=gen(1))
    direction = torch.tensor([1.0, -2.0, 0.5, 1.0])
    values = [sliced_wasserstein(x + s * direction, y, 64, gen(2)).item() for s in (0.0, 0.5, 1.0, 2.0, 4.0)]
    assert values[0] > 0  # two samples of one distribution still differ a little
    assert all(lo < hi for lo, hi in itertools.pairwise(values))


def test_swd_in_one_dimension_is_the_exact_w1():
    x = torch.randn(100, 1, generator=gen())
    y = 2.0 * torch.randn(100, 1, generator=gen(1)) + 0.7
    exact = (x.sort(dim=0).values - y.sort(dim=0).values).abs().mean()  # a 1x1 unit column is +-1
    assert sliced_wasserstein(x, y, 8, gen(2)).item() == pytest.approx(exact.item(), rel=1e-5)


def test_swd_ignores_row_order_and_is_reproducible():
    x = torch.randn(128, 6, generator=gen())
    y = torch.randn(128, 6, generator=gen(1)) + 0.3
    perm = torch.randperm(128, generator=gen(2))
    base = sliced_wasserstein(x, y, 16, gen(3))
    assert sliced_wasserstein(x[perm], y, 16, gen(3)).item() == pytest.approx(base.item(), rel=1e-6)
    assert sliced_wasserstein(x, y, 16, gen(3)).item() == base.item()  # same seed, same value


@pytest.mark.parametrize("x_shape, y_shape", [((10, 3), (11, 3)), ((10, 3), (10, 4)), ((10,), (10,))])
def test_swd_rejects_mismatched_shapes(x_shape, y_shape):
    with pytest.raises(ValueError):
        sliced_wasserstein(torch.zeros(x_shape), torch.zeros(y_shape), 4, gen())


@pytest.mark.parametrize("d", [2, 3, 8])
def test_swd_of_a_shift_matches_the_closed_form(d):
    # Shifting a cloud by s moves every projection by <s, theta>: SW1 = E|<s, theta>| over unit theta.
    x = torch.randn(64, d, generator=gen())
    s = torch.randn(d, generator=gen(1))
    expected = s.norm().item() * math.gamma(d / 2) / (math.sqrt(math.pi) * math.gamma((d + 1) / 2))
    got = sliced_wasserstein(x + s, x, 4000 // d, gen(2)).item()
    assert got == pytest.approx(expected, rel=0.03)


def test_kl_matches_torch_distributions():
    mu = torch.randn(32, 5, generator=gen())
    std = torch.rand(32, 5, generator=gen(1)) * 2 + 0.05
    q = torch.distributions.Normal(mu, std)
    p = torch.distributions.Normal(torch.zeros(5), torch.ones(5))
    expected = torch.distributions.kl_divergence(q, p).sum(dim=1).mean()
    assert kl_standard_normal(mu, std).item() == pytest.approx(expected.item(), rel=1e-5)


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
    assert kl_standard_normal(torch.zeros(4, 3), torch.ones(4, 3)).item() == pytest.approx(0.0, abs=1e-7)
    assert kl_standard_normal(torch.full((4, 3), 0.1), torch.ones(4, 3)).item() > 0
    assert kl_standard_normal(torch.zeros(4, 3), torch.full((4, 3), 0.9)).item() > 0


def test_cross_entropy_uses_only_labelled_rows():
    logits = torch.randn(6, 10, generator=gen())
    y = torch.tensor([3, -1, 7, -1, -1, 0])
    keep = y >= 0
    expected = torch.nn.functional.cross_entropy(logits[keep], y[keep])
    assert labelled_cross_entropy(logits, y).item() == pytest.approx(expected.item())
    assert labelled_cross_entropy(logits, torch.full((6,), -1)).item() == 0.0


def _batch(n: int = 16, k: int = 3) -> BridgeBatch:
    t = [torch.randn(n, 4, generator=gen(i)) for i in range(4)]
    codes = [torch.randn(n, k, generator=gen(10 + i)) for i in range(2)]
    return BridgeBatch(t[0], t[1], t[2], t[3], torch.cat(codes), torch.ones(2 * n, k), codes[0], codes[1],
                       torch.cat(codes), torch.arange(2 * n) % 10)


def test_bridge_loss_is_the_weighted_sum_of_its_parts():
    cfg = BridgeConfig(beta_kl=0.1, beta_swd=2.0, beta_cls=0.5, n_projections=8)
    classify = torch.nn.Linear(3, 10)
    total, parts = bridge_loss(_batch(), cfg, gen(), classify)
    expected = parts["recon"] + 0.1 * parts["kl"] + 2.0 * parts["swd"] + 0.5 * parts["cls"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert parts["total"].item() == pytest.approx(total.item())


def test_bridge_loss_parts_match_their_definitions_computed_by_hand():
    # Domains of different sizes (4 and 6), so "the mean of the two domains' MSEs" differs from one MSE
    # over all elements; codes differ from the posterior means, so the SWD must read the codes.
    n, k = 16, 3
    z_a, z_b = torch.randn(n, 4, generator=gen(0)), torch.randn(n, 6, generator=gen(1))
    recon_a, recon_b = 2.0 * torch.randn(n, 4, generator=gen(2)), torch.randn(n, 6, generator=gen(3)) + 1.0
    mu = torch.randn(2 * n, k, generator=gen(4))
    std = torch.rand(2 * n, k, generator=gen(5)) + 0.2
    code_a, code_b = torch.randn(n, k, generator=gen(6)), 3.0 * torch.randn(n, k, generator=gen(7)) + 1.0
    cls_y = torch.tensor([3, -1, 7, 0, -1, 9] * 2)
    cls_code = torch.randn(len(cls_y), k, generator=gen(8))
    batch = BridgeBatch(z_a, z_b, recon_a, recon_b, mu, std, code_a, code_b, cls_code, cls_y)
    cfg = BridgeConfig(beta_kl=0.1, beta_swd=2.0, beta_cls=0.5, n_projections=8)
    classify = torch.nn.Linear(k, 10)
    total, parts = bridge_loss(batch, cfg, gen(9), classify)

    mse_a = ((recon_a - z_a) ** 2).sum() / (n * 4)
    mse_b = ((recon_b - z_b) ** 2).sum() / (n * 6)
    recon = (mse_a + mse_b) / 2
    kl = (0.5 * (mu**2 + std**2 - 1) - std.log()).sum() / (2 * n)  # summed over the code, mean over rows
    swd = sliced_wasserstein(code_a, code_b, 8, gen(9))  # the first draw of the step's generator
    labelled = cls_y >= 0
    log_p = torch.log_softmax(classify(cls_code[labelled]), dim=1)
    cls = -log_p[torch.arange(int(labelled.sum())), cls_y[labelled]].mean()
    for name, value in (("recon", recon), ("kl", kl), ("swd", swd), ("cls", cls)):
        assert parts[name].item() == pytest.approx(value.item(), rel=1e-5), name
    assert swd.item() != pytest.approx(sliced_wasserstein(mu[:n], mu[n:], 8, gen(9)).item(), rel=1e-2)
    assert total.item() == pytest.approx((recon + 0.1 * kl + 2.0 * swd + 0.5 * cls).item(), rel=1e-5)


def test_a_zero_beta_removes_its_term_without_computing_it():
    calls = []

    def classify(code: torch.Tensor) -> torch.Tensor:
        calls.append(code)
        return torch.zeros(len(code), 10)

    cfg = BridgeConfig(beta_kl=0.0, beta_swd=0.0, beta_cls=0.0)
    total, parts = bridge_loss(_batch(), cfg, gen(), classify)
    assert set(parts) == {"recon", "total"} and not calls
    assert total.item() == pytest.approx(parts["recon"].item())
