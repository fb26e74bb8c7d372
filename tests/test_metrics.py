from __future__ import annotations

import numpy as np
import pytest
import torch

from ltrans.metrics.frechet import frechet_distance
from ltrans.metrics.row import MetricsRow, config_hash
from ltrans.metrics.transfer import balanced_index, conditional_entropy, confusion


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    rng = np.random.default_rng(0)
    n, d = 200_000, 3
    shift = np.array([1.0, -2.0, 0.5])
    scales = np.array([1.0, 2.0, 0.5])
    x = rng.standard_normal((n, d))
    y = rng.standard_normal((n, d)) * scales + shift
    # Diagonal covariances: d^2 = |shift|^2 + sum (1 - s)^2.
    expected = float((shift**2).sum() + ((1 - scales) ** 2).sum())
    assert frechet_distance(x, y) == pytest.approx(expected, rel=0.02)


def test_frechet_distance_is_zero_for_one_set_and_symmetric():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((500, 4)), rng.standard_normal((400, 4)) + 1
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(x, y) == pytest.approx(frechet_distance(y, x), rel=1e-6)
    with pytest.raises(ValueError, match="features"):
        frechet_distance(x, y[:, :3])


def test_frechet_distance_of_non_finite_features_is_nan_not_an_error():
    # A diverged translator's features: the trial must end as failed (non-finite metric), not raise.
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((100, 4)), rng.standard_normal((100, 4))
    for bad in (np.nan, np.inf):
        y[3, 1] = bad
        assert np.isnan(frechet_distance(x, y)) and np.isnan(frechet_distance(y, x))


def test_confusion_and_entropy_known_answers():
    src = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    dst = np.array([0, 0, 1, 2, 2, 2, 3, 3])
    m = confusion(src, dst, n_classes=4)
    assert m.sum() == len(src) and m[0, 0] == 2 and m[1, 1] == 1 and m[1, 2] == 1 and m[2, 3] == 2
    # Row 0 deterministic (0 bits), row 1 a fair coin (1 bit), row 2 a fair coin (1 bit):
    # weighted by rows (2, 2, 4) -> (0*2 + 1*2 + 1*4) / 8.
    assert conditional_entropy(m) == pytest.approx(6 / 8)
    assert conditional_entropy(confusion(src, src, 4)) == 0.0


def test_balanced_index_takes_equal_counts_per_class_without_repeats():
    y = torch.arange(10).repeat_interleave(torch.tensor([50, 60, 70, 80, 90, 100, 110, 120, 130, 30]))
    idx = balanced_index(y, 400, seed=3)
    counts = torch.bincount(y[idx], minlength=10)
    assert counts[:9].tolist() == [40] * 9 and counts[9] == 30        # the short class gives all it has
    assert len(torch.unique(idx)) == len(idx)
    assert torch.equal(idx, balanced_index(y, 400, seed=3))
    assert not torch.equal(idx, balanced_index(y, 400, seed=4))


def test_metrics_row_flattens_and_refuses_unknown_status():
    row = MetricsRow("p", "bridge", 0, config_hash({"a": 1}), "ok", "", 10, 1.0, 0.5, "sha",
                     {"transfer_a_to_b": 0.9})
    flat = row.flat()
    assert flat["transfer_a_to_b"] == 0.9 and flat["pair"] == "p" and "metrics" not in flat
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1}) != config_hash({"a": 2, "b": 2})
    with pytest.raises(ValueError, match="status"):
        MetricsRow("p", "bridge", 0, "h", "done", "", 0, 0.0, 0.0, "sha")
