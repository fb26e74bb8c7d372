"""Known answers of the evaluation figures (ltrans/metrics/transfer.py) on two sides whose ground truth is
exact: each side's "decoder" is the identity, its classifier's features are the identity and its readout
is nearest class centre (logits -cdist), with tight class clusters; B's space is A's rotated by a known R,
so the right translator is z @ R and every figure of it (and of deliberately wrong ones) is known.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ltrans.bridge.toy import random_rotation
from ltrans.latents import Latents, LatentSplit
from ltrans.metrics.transfer import (
    Side,
    direction_metrics,
    evaluate,
    interpolation_smoothness,
    reconstruction_agreement,
)

DIM, PER_CLASS, N_EVAL = 4, 20, 200  # the eval set: 20 of each class's 20 test rows
OFFSET = 10.0  # added to B's real features in the FID test: |offset * ones(DIM)|^2 = 400


class IdentityDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # decode_and_classify reads the device off a parameter

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z


class NearestCentre(nn.Module):
    """Features = the input; readout = -distance to each class centre (argmax = nearest centre)."""

    def __init__(self, centres: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("centres", centres)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def readout(self, f: torch.Tensor) -> torch.Tensor:
        return -torch.cdist(f, self.centres)


class Toy:
    """Centres (10, DIM) of A, rotation R, and fresh Sides (their memo is per Side) for A and B = A @ R."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.rotation = random_rotation(DIM, seed=1)
        self.centres_a = 5.0 * torch.randn(10, DIM, generator=g)  # far apart next to the 0.05 noise
        self.centres_b = self.centres_a @ self.rotation
        y = torch.arange(10).repeat_interleave(PER_CLASS)

        def latents() -> Latents:
            mu = self.centres_a[y] + 0.05 * torch.randn(len(y), DIM, generator=g)
            return Latents(mu, torch.zeros_like(mu), y)

        self.test_a, fresh = latents(), latents()  # B: fresh rows of the same classes, rotated into B
        self.test_b = Latents(fresh.mu @ self.rotation, fresh.std, y)

    def side(self, name: str, feature_offset: float = 0.0) -> Side:
        test, centres = (self.test_a, self.centres_a) if name == "a" else (self.test_b, self.centres_b)
        real = test.mu.numpy().astype(np.float64) + feature_offset  # held-out "real data" features
        return Side(f"toy_{name}", name, IdentityDecoder(), NearestCentre(centres), LatentSplit(test, test, {}),
                    real)

    def label(self, z: torch.Tensor, domain: str) -> torch.Tensor:
        return torch.cdist(z, self.centres_a if domain == "a" else self.centres_b).argmin(1)

    def rotate(self, z: torch.Tensor, src: str, dst: str) -> torch.Tensor:
        """The right translator: A -> B is z @ R, B -> A is z @ R^T, a domain to itself the identity."""
        if src == dst:
            return z
        return z @ self.rotation if src == "a" else z @ self.rotation.T

    def shift(self, z: torch.Tensor, src: str, dst: str) -> torch.Tensor:
        """Across domains, moves class c's rows to class c - 1's cluster; a domain to itself is exact."""
        out = self.rotate(z, src, dst)
        if src == dst:
            return out
        centres = self.centres_a if dst == "a" else self.centres_b
        y = self.label(out, dst)
        return out - centres[y] + centres[(y - 1) % 10]


@pytest.fixture
def toy() -> Toy:
    return Toy()


def test_the_right_translator_scores_perfectly_on_every_figure(toy):
    a, b = toy.side("a"), toy.side("b")

    def sample_joint(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        z = toy.centres_a[torch.randint(10, (n,), generator=g)] + 0.05 * torch.randn(n, DIM, generator=g)
        return z, z @ toy.rotation  # one code decoded in both domains: same class

    out = evaluate(toy.rotate, a, b, n_eval=N_EVAL, seed=0, sample_joint=sample_joint)
    for tag in ("a_to_b", "b_to_a"):
        assert out[f"transfer_{tag}"] == 1.0 and out[f"entropy_{tag}"] == 0.0
        assert np.array_equal(np.array(out[f"confusion_{tag}"]).reshape(10, 10), PER_CLASS * np.eye(10))
        assert out[f"interp_consistency_{tag}"] == 1.0
        # Linear paths decoded by a linear map: every step has the same length (CV 0 up to rounding).
        assert out[f"interp_step_cv_{tag}"] < 1e-4
        assert out[f"fid_{tag}"] < 0.05  # the translations are the real data of the destination, resampled
    assert out["recon_a"] == out["recon_b"] == 1.0
    assert out["prior_agreement"] == 1.0


def test_a_class_shift_scores_zero_and_the_confusion_rows_are_the_source_label(toy):
    a, b = toy.side("a"), toy.side("b")

    def sample_joint(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        z = toy.centres_a[torch.randint(10, (n,), generator=g)] + 0.05 * torch.randn(n, DIM, generator=g)
        return z, toy.shift(z, "a", "b")

    out = evaluate(toy.shift, a, b, n_eval=N_EVAL, seed=0, sample_joint=sample_joint)
    shifted = np.zeros((10, 10), dtype=int)
    shifted[np.arange(10), (np.arange(10) - 1) % 10] = PER_CLASS  # row c (source), column c - 1 (translated)
    for tag in ("a_to_b", "b_to_a"):
        assert out[f"transfer_{tag}"] == 0.0
        assert out[f"entropy_{tag}"] == 0.0  # wrong, but deterministic
        assert np.array_equal(np.array(out[f"confusion_{tag}"]).reshape(10, 10), shifted)
        assert out[f"interp_consistency_{tag}"] == 0.0  # every path point lands in the neighbouring class
    assert out["recon_a"] == out["recon_b"] == 1.0  # the round trip A -> A is exact: recon asks for it
    assert out["prior_agreement"] == 0.0


def test_a_coin_flip_translator_has_one_bit_of_conditional_entropy(toy):
    a, b = toy.side("a"), toy.side("b")
    z = a.latents.test.mu  # rows sorted by class, 20 of each

    def flip(x: torch.Tensor, src: str, dst: str) -> torch.Tensor:
        out = toy.shift(x, src, dst)
        keep = torch.arange(len(x)) % 2 == 0  # every other row of each class keeps its class
        return torch.where(keep[:, None], toy.rotate(x, src, dst), out)

    labels = toy.label(z, "a").numpy()
    out = direction_metrics(flip, a, b, "a", "b", z, labels)
    matrix = np.array(out["confusion_a_to_b"]).reshape(10, 10)
    assert out["transfer_a_to_b"] == 0.5 and out["entropy_a_to_b"] == pytest.approx(1.0)
    assert all(matrix[c, c] == matrix[c, (c - 1) % 10] == PER_CLASS // 2 for c in range(10))


def test_entropy_is_conditioned_on_the_source_label(toy):
    # Class 1 merged into class 0: each source label has one translated label (H(dst | src) = 0), while
    # translated label 0 has two sources (H(src | dst) = 1 bit on 40 of 200 rows, 0.2 bits).
    a, b = toy.side("a"), toy.side("b")
    z = a.latents.test.mu

    def merge(x: torch.Tensor, src: str, dst: str) -> torch.Tensor:
        out = toy.rotate(x, src, dst)
        ones = toy.label(out, dst) == 1
        return torch.where(ones[:, None], out - toy.centres_b[1] + toy.centres_b[0], out)

    out = direction_metrics(merge, a, b, "a", "b", z, toy.label(z, "a").numpy())
    assert out["transfer_a_to_b"] == 0.9 and out["entropy_a_to_b"] == 0.0
    assert np.array(out["confusion_a_to_b"]).reshape(10, 10)[1, 0] == PER_CLASS


def test_fid_compares_with_the_destinations_real_features(toy):
    # B's real features moved by +10 in every coordinate: A -> B translations sit 10 * sqrt(DIM) from
    # them (FD = 400 from the means alone), B -> A translations are A's real data (FD ~ 0).
    a, b = toy.side("a"), toy.side("b", feature_offset=OFFSET)
    out = evaluate(toy.rotate, a, b, n_eval=N_EVAL, seed=0, with_reconstruction=False)
    assert out["fid_a_to_b"] == pytest.approx(OFFSET**2 * DIM, rel=0.02)
    assert out["fid_b_to_a"] < 0.05
    assert "recon_a" not in out and "prior_agreement" not in out


def test_reconstruction_agreement_is_the_round_trip_through_the_same_domain(toy):
    a = toy.side("a")
    z = a.latents.test.mu
    labels = toy.label(z, "a").numpy()
    assert reconstruction_agreement(toy.rotate, a, "a", z, labels) == 1.0
    # A translator that moves every row to the next class, even within its own domain: agreement 0.
    assert reconstruction_agreement(lambda x, s, d: x - toy.centres_a[toy.label(x, "a")]
                                    + toy.centres_a[(toy.label(x, "a") + 1) % 10], a, "a", z, labels) == 0.0


def test_interpolation_step_cv_sees_an_uneven_path(toy):
    # A translator that squares the path parameter inside each segment is not evenly paced: with the
    # path z(t) mapped to z(0) + t^2 (z(1) - z(0)) the steps grow as (2i + 1), CV = std / mean of 1, 3, ... 15.
    a, b = toy.side("a"), toy.side("b")
    z = a.latents.test.mu
    labels = toy.label(z, "a").numpy()
    steps = 9

    def squared(x: torch.Tensor, src: str, dst: str) -> torch.Tensor:
        paths = x.reshape(-1, steps, DIM)
        t = torch.linspace(0, 1, steps)[None, :, None]
        start, end = paths[:, :1], paths[:, -1:]
        return toy.rotate((start + t**2 * (end - start)).reshape(-1, DIM), src, dst)

    out = interpolation_smoothness(squared, a, b, "a", "b", z, labels, n_paths=20, steps=steps)
    jumps = torch.arange(1, 2 * steps - 1, 2, dtype=torch.float64)  # 1, 3, ..., 15 (times |z1 - z0| / 64)
    assert out["interp_step_cv_a_to_b"] == pytest.approx((jumps.std() / jumps.mean()).item(), rel=1e-3)
    assert out["interp_consistency_a_to_b"] == 1.0
