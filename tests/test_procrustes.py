"""The training-free baseline (ltrans/bridge/procrustes.py) on the toy pair with a known rotation."""

from __future__ import annotations

import pytest
import torch

from ltrans.bridge.config import BridgeConfig
from ltrans.bridge.model import Bridge
from ltrans.bridge.packed import Member, Pack
from ltrans.bridge.procrustes import class_anchors, fit_procrustes
from ltrans.bridge.toy import toy_pair, transfer_accuracy
from ltrans.bridge.train import domains, labelled_subsets
from ltrans.latents import Latents

SHIFT = torch.tensor([5.0, -3.0, 2.0, 0.0, 1.0, -7.0, 4.0, 0.5])  # B's origin, in B's coordinates


def scaled(pair, z: torch.Tensor, y: torch.Tensor) -> Latents:
    """B = 3 z @ R + SHIFT for A-frame rows z: a space three times the spread of A, moved off the origin."""
    mu = 3.0 * z @ pair.rotation + SHIFT
    return Latents(mu, torch.zeros_like(mu), y)


def test_recovers_the_rotation_and_transfers():
    # 10 class means pin down a rotation only when they span the space: dim <= 9.
    pair = toy_pair(n_per_class=200, dim=8, rotation_seed=3, noise=0.5, seed=0)
    linear = fit_procrustes(pair.latents_a, pair.latents_b, n_sup=-1, seed=0)
    assert torch.linalg.matrix_norm(linear.w_ab - pair.rotation).item() < 0.15
    za, zb = pair.latents_a.mu, pair.latents_b.mu
    assert transfer_accuracy(pair, za, linear.a_to_b(za), "a", "b") >= 0.95
    assert transfer_accuracy(pair, zb, linear.b_to_a(zb), "b", "a") >= 0.95


@pytest.mark.parametrize("method, anchors", [("orthogonal", "pairs"), ("orthogonal", "means"),
                                             ("lstsq", "pairs"), ("lstsq", "means")])
def test_transfers_in_more_dims_than_classes(method, anchors):
    # In 16-d the map is fixed only on the span of the class means, which is all labels need.
    pair = toy_pair(n_per_class=100, dim=16, rotation_seed=1, noise=0.5, seed=2)
    linear = fit_procrustes(pair.latents_a, pair.latents_b, n_sup=100, seed=0, method=method, anchors=anchors)
    za, zb = pair.latents_a.mu, pair.latents_b.mu
    assert transfer_accuracy(pair, za, linear.a_to_b(za), "a", "b") >= 0.95
    assert transfer_accuracy(pair, zb, linear.b_to_a(zb), "b", "a") >= 0.95


def test_scaling_and_centring_recover_a_scaled_shifted_rotation():
    # B holds A's own rows, scaled by 3, rotated and shifted: the class means are exactly related, so
    # the fit is exact. The map is z_b = (z_a - mean_a) @ w_ab + mean_b with w_ab = R * (s_b / s_a) = 3R.
    pair = toy_pair(n_per_class=100, dim=8, rotation_seed=3, noise=0.5, seed=0)
    za, r = pair.latents_a.mu, pair.rotation
    lat_b = scaled(pair, za, pair.latents_a.y)
    zb = lat_b.mu
    linear = fit_procrustes(pair.latents_a, lat_b, n_sup=-1, seed=0, anchors="means")
    assert torch.allclose(linear.w_ab, 3.0 * r, atol=1e-5) and torch.allclose(linear.w_ba, r.T / 3.0, atol=1e-5)
    assert torch.allclose(linear.mean_b, 3.0 * linear.mean_a @ r + SHIFT, atol=1e-4)
    assert torch.allclose(linear.a_to_b(za), zb, atol=1e-4)
    assert torch.allclose(linear.b_to_a(zb), za, atol=1e-4)
    assert torch.allclose(linear.b_to_a(linear.a_to_b(za)), za, atol=1e-4)
    # Without scaling an orthogonal map cannot stretch: it stays a rotation and misses B by far.
    rigid = fit_procrustes(pair.latents_a, lat_b, n_sup=-1, seed=0, anchors="means", scale=False)
    assert torch.allclose(rigid.w_ab @ rigid.w_ab.T, torch.eye(8), atol=1e-5)
    assert (rigid.a_to_b(za) - zb).norm(dim=1).mean() > 1.0


@pytest.mark.parametrize("method", ["orthogonal", "lstsq"])
def test_transfers_between_spaces_of_different_spread_and_origin(method):
    pair = toy_pair(n_per_class=100, dim=8, rotation_seed=3, noise=0.5, seed=0)
    b_frame = pair.latents_b.mu @ pair.rotation.T  # B's fresh rows in A's frame
    lat_b = scaled(pair, b_frame, pair.latents_b.y)
    linear = fit_procrustes(pair.latents_a, lat_b, n_sup=100, seed=0, method=method)
    za, zb = pair.latents_a.mu, pair.latents_b.mu
    unscale = lambda z: (z - SHIFT) / 3.0  # back to the toy's B, whose nearest-centre classifier judges
    assert transfer_accuracy(pair, za, unscale(linear.a_to_b(za)), "a", "b") >= 0.95
    assert transfer_accuracy(pair, zb, linear.b_to_a(lat_b.mu), "b", "a") >= 0.95


def test_lstsq_maps_between_different_dims():
    pair = toy_pair(n_per_class=100, dim=8, rotation_seed=0, noise=0.3, seed=0)
    wide = torch.cat([pair.latents_b.mu, torch.zeros(len(pair.latents_b), 4)], dim=1)  # B embedded in 12-d
    lat_b = type(pair.latents_b)(wide, torch.zeros_like(wide), pair.latents_b.y)
    linear = fit_procrustes(pair.latents_a, lat_b, n_sup=-1, seed=0, method="orthogonal")  # falls back
    za = pair.latents_a.mu
    assert linear.a_to_b(za).shape == (len(za), 12)
    assert transfer_accuracy(pair, za, linear.a_to_b(za)[:, :8], "a", "b") >= 0.95
    assert linear.b_to_a(wide).shape == za.shape
    zb = pair.latents_b.mu
    assert transfer_accuracy(pair, zb, linear.b_to_a(wide), "b", "a") >= 0.95


def test_without_labels_it_cannot_fit():
    pair = toy_pair(n_per_class=10, dim=4, rotation_seed=0, noise=0.3, seed=0)
    with pytest.raises(ValueError, match="n_sup=0"):
        fit_procrustes(pair.latents_a, pair.latents_b, n_sup=0, seed=0)


def test_same_seed_same_map():
    pair = toy_pair(n_per_class=50, dim=6, rotation_seed=0, noise=0.5, seed=0)
    one = fit_procrustes(pair.latents_a, pair.latents_b, n_sup=20, seed=4)
    two = fit_procrustes(pair.latents_a, pair.latents_b, n_sup=20, seed=4)
    assert torch.equal(one.w_ab, two.w_ab)


def test_anchors_are_the_bridges_labelled_rows_whatever_its_architecture():
    # A label-budget study compares the two on the same labelled examples of each domain.
    pair = toy_pair(n_per_class=30, dim=6, rotation_seed=0, noise=0.3, seed=0)
    a, b = pair.latents_a, pair.latents_b
    ia, ib = labelled_subsets(a.y, b.y, 20, seed=7)
    assert len(ia) == len(ib) == 20 and a.y[ia].bincount(minlength=10).tolist() == [2] * 10
    assert not torch.equal(ia, labelled_subsets(a.y, b.y, 20, seed=8)[0])
    xa, xb = class_anchors(a, b, 20, seed=7)
    rows = lambda z: sorted(map(tuple, z.double().tolist()))
    assert rows(xa) == rows(a.mu[ia]) and rows(xb) == rows(b.mu[ib])
    for width in (8, 32):  # the bridge's initialisation draws a different amount of randomness
        cfg = BridgeConfig(shared_dim=3, n_layers=2, width=width, n_sup=20)
        gen = torch.Generator().manual_seed(7)
        Bridge(a.dim, b.dim, cfg, generator=gen)
        dom_a, dom_b = domains(a, b, cfg, 7, gen, "cpu")
        assert torch.equal(dom_a.labelled, ia) and torch.equal(dom_b.labelled, ib)
        packed = Pack([Member(cfg, 7)], a, b).doms[0]
        assert torch.equal(packed[0].labelled, ia) and torch.equal(packed[1].labelled, ib)
