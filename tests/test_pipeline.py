"""The one path end to end on real cached latents: run_trial with the smoke preset."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ltrans
from ltrans.config import override
from ltrans.errors import UserError
from ltrans.latents import GAN_SELECTION
from ltrans.pairs import PAIRS
from ltrans.pipeline import MAX_SEED, load_pair, pair_classes, run_trial
from ltrans.presets import PRESETS, smoke


@pytest.fixture(scope="module")
def pair(store):
    return load_pair("mnist_mnist", store=store, preset="tiny")


def test_smoke_trial_gives_a_finite_row_better_than_chance(pair):
    row, result = run_trial(smoke("mnist_mnist"), pair)
    assert row.status == "ok", row.reason
    flat = row.flat()
    for key in ("transfer_a_to_b", "transfer_b_to_a", "recon_a", "recon_b", "fid_a_to_b", "fid_b_to_a",
                "entropy_a_to_b", "prior_agreement", "interp_consistency_a_to_b", "interp_step_cv_a_to_b"):
        assert math.isfinite(flat[key]), key
    assert 0 <= flat["transfer_a_to_b"] <= 1 and sum(flat["confusion_a_to_b"]) == 200
    assert row.steps == 200 and len(result.curve) == 4
    # Two MNIST VAEs: a 200-step bridge on tiny base models keeps the class of its own round trips
    # (recon 0.83-0.99 in 16 runs over seeds and thread counts) and, with a class weight that counts
    # at this size (beta_cls 0.5), carries it across well above chance (0.1; standard error 0.02 on 200
    # balanced examples): 0.63-0.93 in 12 runs. At the authors' 0.05 whether 200 steps line the classes
    # up is a lottery (A->B 0.10-0.77 over seeds and over the thread count the tiny models trained with).
    assert flat["recon_a"] > 0.7 and flat["recon_b"] > 0.7
    weighted, _ = run_trial(override(smoke("mnist_mnist"), {"bridge.beta_cls": 0.5}), pair)
    assert weighted.flat()["transfer_a_to_b"] > 0.4 and weighted.flat()["transfer_b_to_a"] > 0.4


@pytest.mark.parametrize("name", ["mnist_vae_gan", "mnist_spoken"])
def test_smoke_preset_runs_on_the_gan_pairs(store, name):
    # The tiny GANs train for seconds and may never make some class the argmax; their latents must still
    # be class-balanced (ltrans.latents.gan_selection below one half) so that the smoke preset runs.
    data = load_pair(name, store=store, preset="tiny")
    assert data.b.latents.record["kind"] == "gan"
    assert set(data.b.latents.train.y.bincount(minlength=10).tolist()) == {GAN_SELECTION["tiny"].keep -
                                                                          GAN_SELECTION["tiny"].test}
    row, _ = run_trial(smoke(name), data)
    assert row.status == "ok", row.reason
    flat = row.flat()
    assert all(math.isfinite(flat[k]) for k in ("transfer_a_to_b", "transfer_b_to_a", "recon_a", "recon_b"))
    # smoke evaluates 200 class-balanced examples a direction, or all there are: the GAN side holds out 50
    assert sum(flat["confusion_a_to_b"]) == 200 and sum(flat["confusion_b_to_a"]) == 10 * GAN_SELECTION["tiny"].test


def test_same_seed_same_row_and_other_seed_differs(pair):
    cfg = smoke("mnist_mnist")
    first, _ = run_trial(cfg, pair)
    again, _ = run_trial(cfg, pair)
    other, _ = run_trial(override(cfg, {"seed": 1}), pair)
    keep = lambda r: {k: v for k, v in r.flat().items() if not k.endswith("_seconds")}
    assert keep(first) == keep(again)
    assert keep(first) != keep(other)


def test_a_diverging_trial_ends_failed_with_its_reason(pair):
    cfg = override(smoke("mnist_mnist"), {"bridge.lr": 1e12, "bridge.steps": 100})
    row, _ = run_trial(cfg, pair)
    assert row.status == "failed" and ("nan" in row.reason or "inf" in row.reason or "non-finite" in row.reason)


def test_procrustes_baseline_runs_on_the_same_path_and_needs_labels(pair):
    cfg = override(smoke("mnist_mnist"), {"method": "procrustes", "bridge.n_sup": 100})
    row, _ = run_trial(cfg, pair)
    assert row.status == "ok" and row.flat()["transfer_a_to_b"] > 0.3
    row0, _ = run_trial(override(cfg, {"bridge.n_sup": 0}), pair)
    assert row0.status == "failed" and "n_sup" in row0.reason


def test_a_seed_changes_training_never_the_evaluation(pair):
    # Procrustes on all labels uses no randomness, so all a trial seed could change is the evaluation's
    # own choices (held-out subset: 200 of the tiny split's 1,000; interpolation paths; joint draws).
    from ltrans.metrics.transfer import balanced_index

    test_y = pair.a.latents.test.y
    assert not torch.equal(balanced_index(test_y, 200, 0), balanced_index(test_y, 200, 1))  # seeds would differ
    cfg = override(smoke("mnist_mnist"), {"method": "procrustes", "bridge.n_sup": -1})
    rows = [run_trial(override(cfg, {"seed": seed}), pair)[0] for seed in (0, 1)]
    keep = lambda r: {k: v for k, v in r.flat().items() if not k.endswith("_seconds") and k not in ("seed", "config_hash")}
    assert rows[0].status == rows[1].status == "ok"
    assert keep(rows[0]) == keep(rows[1])


def with_nan(data, side: str, part: str):
    """``data`` with one non-finite value in the ``part`` ("train" or "test") latents of ``side``."""
    split = getattr(data, side).latents
    lat = getattr(split, part)
    mu = lat.mu.clone()
    mu[0, 0] = float("nan")
    split = dataclasses.replace(split, **{part: dataclasses.replace(lat, mu=mu)})
    return dataclasses.replace(data, **{side: dataclasses.replace(getattr(data, side), latents=split)})


@pytest.mark.parametrize("method", ["bridge", "procrustes"])
@pytest.mark.parametrize("side, part", [("b", "train"), ("a", "test")])
def test_non_finite_latents_end_the_trial_failed_naming_them(pair, method, side, part):
    cfg = override(smoke("mnist_mnist"), {"method": method, "bridge.n_sup": 100, "bridge.steps": 10})
    row, _ = run_trial(cfg, with_nan(pair, side, part))
    assert row.status == "failed" and f"latents_{side}.mu has non-finite values" in row.reason
    assert ("held-out" in row.reason) == (part == "test")


def test_config_for_another_pair_is_refused(pair):
    with pytest.raises(ValueError, match="pair"):
        run_trial(dataclasses.replace(smoke("mnist_mnist"), pair="mnist_animals"), pair)


REFUSED = [  # settings that passed validation and then failed every trial, or ran with a typo kept
    ({"bridge.n_classes": 5}, ("bridge.n_classes must be 10, the number of classes of pair mnist_mnist's domains; "
                              "set bridge.n_classes=10")),
    ({"bridge.n_classes": 11}, "bridge.n_classes must be 10"),
    ({"procrustes": "foo"}, "procrustes must be one of ('orthogonal', 'lstsq'), got 'foo'"),
    ({"method": "procrustes", "procrustes": "foo"}, "procrustes must be one of"),
    ({"seed": -1}, "seed must be between 0 and 4294967295"),
    ({"seed": MAX_SEED + 1}, "seed must be between 0 and 4294967295"),
    ({"seed": 99999999999999999999}, "got 99999999999999999999"),
]


@pytest.mark.parametrize("changes, words", REFUSED)
def test_settings_no_trial_can_run_are_refused_by_the_config(changes, words):
    with pytest.raises(UserError) as err:
        override(smoke("mnist_mnist"), changes)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_the_seed_range_is_what_every_seeded_generator_takes():
    cfg = override(smoke("mnist_mnist"), {"seed": MAX_SEED, "procrustes": "lstsq"})
    assert (cfg.seed, cfg.procrustes) == (MAX_SEED, "lstsq")
    torch.Generator().manual_seed(MAX_SEED)
    np.random.RandomState(MAX_SEED)  # numpy's legacy seeding, the narrowest: 32 bits
    with pytest.raises(ValueError):
        np.random.RandomState(MAX_SEED + 1)


@pytest.mark.parametrize("preset", PRESETS.names())
@pytest.mark.parametrize("pair", PAIRS.names())
def test_every_preset_gives_the_bridge_its_pairs_class_count(preset, pair):
    assert PRESETS[preset](pair).bridge.n_classes == pair_classes(pair) == 10


def test_a_row_names_the_commit_imported_not_the_head_when_it_ends(tmp_path):
    """The trial's code is fixed when ltrans.pipeline is imported; a commit made while it runs is not its code."""
    repo = tmp_path / "checkout"
    shutil.copytree(Path(ltrans.__file__).parent, repo / "ltrans", ignore=shutil.ignore_patterns("__pycache__"))
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(tmp_path), "PATH": os.environ["PATH"]}

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True,
                              check=True).stdout.strip()

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "the code a trial runs")
    started = git("rev-parse", "HEAD")
    script = ("import subprocess, ltrans.pipeline\n"
              "subprocess.run(['git', 'commit', '-q', '--allow-empty', '-m', 'later'], check=True)\n"
              "from ltrans.metrics.row import git_sha\n"
              "print(git_sha())\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=repo, env=env | {"PYTHONPATH": str(repo)},
                         capture_output=True, text=True, check=True).stdout.split()
    assert git("rev-parse", "HEAD") != started  # HEAD moved while the "trial" ran
    assert out[-1] == started
