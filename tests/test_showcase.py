"""What a person looks at: prior samples per class (`ltrans base sample`), translations and
interpolation strips of a trained bridge (`ltrans translate`), and the bridge folder they load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from ltrans import render
from ltrans.cli import cli
from ltrans.cli_bridge import train_and_write
from ltrans.cli_models import _quality, class_figures
from ltrans.config import override
from ltrans.data.audio import N_SAMPLES, read_wav
from ltrans.errors import UserError
from ltrans.models import zoo
from ltrans.pipeline import load_pair, run_trial
from ltrans.presets import smoke
from ltrans.samples import (
    CONFIDENT,
    class_conditional_samples,
    class_gaussians,
    class_mixture,
    class_mixtures,
    prior_samples,
    sample_quality,
    stored_quality,
)
from ltrans.showcase import load_bridge, write_translations


def _grid_rows(path) -> int:
    return (Image.open(path).height - 2) // (render.TILE + 2)


@pytest.fixture(scope="module")
def mnist_models(store):
    return (zoo.base_model("mnist_vae", store=store, preset="tiny"),
            zoo.classifier("mnist", store=store, preset="tiny"))


def test_prior_samples_are_seeded_and_their_summary_counts_them(mnist_models):
    vae, clf = mnist_models
    first = prior_samples(vae.module, clf.module, 100, n=300, seed=3)
    again = prior_samples(vae.module, clf.module, 100, n=300, seed=3)
    other = prior_samples(vae.module, clf.module, 100, n=300, seed=4)
    assert torch.equal(first.x, again.x) and not torch.equal(first.x, other.x)
    assert first.x.shape == (300, 28, 28) and float(first.x.min()) >= 0 and float(first.x.max()) <= 1
    counts = first.per_class(10)
    assert sum(counts) == int((first.confidence >= CONFIDENT).sum())
    for c in range(10):
        best = first.best_of_class(c, 5)
        assert (first.label[best] == c).all()
        assert torch.all(first.confidence[best][:-1] >= first.confidence[best][1:])


def test_base_sample_writes_a_class_grid_and_wavs_for_audio(store, tmp_path):
    result = CliRunner().invoke(cli, ["base", "sample", "spoken_specgan", "--preset", "tiny", "-o", str(tmp_path),
                                      "-n", "200", "--per-class", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n"] == 200 and len(summary["confident_per_class"]) == 10
    assert _grid_rows(tmp_path / "spoken_specgan_by_class.png") == 10
    assert _grid_rows(tmp_path / "spoken_specgan_draws.png") == 8
    wavs = sorted((tmp_path / "wav").glob("*.wav"))
    assert 0 < len(wavs) <= 20  # up to two per class that the classifier gave any sample to
    wave, rate = read_wav(wavs[0])
    assert rate == 16_000 and len(wave) == N_SAMPLES and np.abs(wave).max() > 0.01
    # The GAN's quality figure for `base ls` is now stored: 2,000 draws, the same summary every time.
    record = zoo.is_trained("spoken_specgan", store=store, preset="tiny")
    quality = stored_quality(record, store)
    assert quality == sample_quality("spoken_specgan", store=store, preset="tiny") and quality["n"] == 2000
    listing = CliRunner().invoke(cli, ["base", "ls", "--preset", "tiny", "-f", "json"], catch_exceptions=False)
    row = next(r for r in json.loads(listing.output) if r["name"] == "spoken_specgan")
    assert row["quality"] == f"confident samples {quality['confident_fraction']:.1%}"


def test_base_train_trains_a_classifier_alone_by_its_listed_name(store):
    """digits8 has a classifier but no base model: `base train classifier:digits8` trains just it, once."""
    run = CliRunner().invoke
    first = run(cli, ["base", "train", "classifier:digits8", "--preset", "tiny"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    record = zoo.is_trained("digits8", store=store, preset="tiny", kind="classifier")
    assert record and record["info"]["test_accuracy"] > 0.8  # chance is 0.1
    again = run(cli, ["base", "train", "classifier:digits8", "--preset", "tiny"], catch_exceptions=False)
    assert again.stdout == first.stdout  # a cache hit: the same record, training time included
    listing = json.loads(run(cli, ["base", "ls", "--preset", "tiny", "-f", "json"], catch_exceptions=False).output)
    row = next(r for r in listing if r["name"] == "classifier:digits8")
    assert (row["status"], row["quality"]) == ("trained", f"test acc {record['info']['test_accuracy']:.4g}")
    unknown = run(cli, ["base", "train", "classifier:fashion", "--preset", "tiny"])
    assert unknown.exit_code == 2 and "digits8" in unknown.output and "Traceback" not in unknown.output
    typo = run(cli, ["base", "train", "mnist_vea", "--preset", "tiny"])
    assert typo.exit_code == 2 and "mnist_vae" in typo.output and "classifier:digits8" in typo.output


def test_class_gaussians_match_the_aggregate_posterior_moments():
    """Mean and covariance of the mixture of N(mu_i, diag std_i^2): mean(mu), cov(mu) + mean(std^2)."""
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4000, 3, generator=g) @ torch.tensor([[2.0, 0, 0], [0.5, 1, 0], [0, 0, 0.1]])
    std = 0.3 + torch.rand(4000, 3, generator=g)
    y = torch.arange(4000) % 2
    for c, (mean, chol) in enumerate(class_gaussians(mu, std, y, 2, jitter=0.0)):
        m, s = mu[y == c].double(), std[y == c].double()
        assert torch.allclose(mean, m.mean(0))
        assert torch.allclose(chol @ chol.T, torch.cov(m.T) + torch.diag(s.pow(2).mean(0)), atol=1e-10)
        # and equal the moments of draws from the mixture itself (a posterior picked at random, then a sample)
        pick = torch.randint(len(m), (400_000,), generator=g)
        mixture = m[pick] + s[pick] * torch.randn(400_000, 3, generator=g, dtype=torch.float64)
        assert torch.allclose(mixture.mean(0), mean, atol=0.02)
        assert torch.allclose(torch.cov(mixture.T), chol @ chol.T, atol=0.05)


def _two_modes_and_a_gaussian(n: int = 600):
    """Class 0: two tight modes at (-5, 0) and (5, 0); class 1: one Gaussian at (0, 8); posterior std 0.3."""
    g = torch.Generator().manual_seed(3)
    y = torch.arange(2 * n) % 2
    side = torch.where(torch.arange(2 * n) % 4 == 0, -5.0, 5.0)
    centre = torch.where(y[:, None] == 0, torch.stack([side, torch.zeros(2 * n)], 1), torch.tensor([0.0, 8.0]))
    mu = centre + 0.5 * torch.randn(2 * n, 2, generator=g)
    return mu, torch.full((2 * n, 2), 0.3), y


def test_class_mixture_with_one_component_is_the_moment_matched_gaussian():
    mu, std, y = _two_modes_and_a_gaussian()
    for c, (mean, chol) in enumerate(class_gaussians(mu, std, y, 2)):
        mix = class_mixture(mu[y == c].double(), std[y == c].double(), components=(1,))
        assert mix.k == 1 and torch.equal(mix.means[0], mean) and torch.equal(mix.chols[0], chol)


def test_class_mixture_finds_the_modes_of_a_class_and_keeps_one_gaussian_for_one():
    mu, std, y = _two_modes_and_a_gaussian()
    two, one = class_mixtures(mu, std, y, 2, seed=0)
    assert two.k >= 2 and one.k == 1  # chosen by held-out likelihood, not told
    g = torch.Generator().manual_seed(0)

    def near_a_mode(z):
        return float(((z[:, 0].abs() - 5).abs() < 2).float().mean())

    assert near_a_mode(two.sample(4000, g)) > 0.95
    single = class_mixture(mu[y == 0].double(), std[y == 0].double(), components=(1,))
    assert near_a_mode(single.sample(4000, g)) < 0.5  # one Gaussian puts its mass between the modes
    for mix, c in ((two, 0), (one, 1)):
        # every mixture keeps the aggregate posterior's first two moments (law of total covariance; one
        # Gaussian uses the unbiased covariance, EM's responsibilities the biased one; jitter 1e-5)
        m, s = mu[y == c].double(), std[y == c].double()
        mean = mix.weights @ mix.means
        cov = sum(w * (ch @ ch.T + torch.outer(mk - mean, mk - mean))
                  for w, mk, ch in zip(mix.weights, mix.means, mix.chols))
        aggregate = torch.cov(m.T, correction=int(mix.k == 1)) + torch.diag(s.pow(2).mean(0) + 1e-5)
        assert torch.allclose(mean, m.mean(0)) and torch.allclose(cov, aggregate, atol=1e-9)
        # and log_prob is the mixture density torch.distributions computes
        ref = torch.distributions.MixtureSameFamily(
            torch.distributions.Categorical(probs=mix.weights),
            torch.distributions.MultivariateNormal(mix.means, scale_tril=mix.chols))
        assert torch.allclose(mix.log_prob(m[:50]), ref.log_prob(m[:50]))


def test_class_mixture_of_too_few_rows_falls_back_to_one_gaussian():
    mu, std, y = _two_modes_and_a_gaussian(n=12)  # 12 rows a class: 10 to fit, below 2 x MIN_PER_COMPONENT
    assert [mix.k for mix in class_mixtures(mu, std, y, 2)] == [1, 1]


class _Identity(torch.nn.Module):
    """A 'decoder' that returns its latent: the classifier then judges the latent itself."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the module a device

    def decode(self, z):
        return z


class _Nearest(torch.nn.Module):
    """Logits of the nearest class centre (a sharp softmax): a classifier with a known answer."""

    def __init__(self, centres) -> None:
        super().__init__()
        self.centres = centres

    def forward(self, x):
        return -20 * torch.cdist(x, self.centres)


@pytest.mark.parametrize("spread,low,high", [(0.05, 0.99, 1.0), (3.0, 0.0, 0.6)])
def test_class_conditional_samples_land_in_their_class_when_classes_are_apart(spread, low, high):
    centres = torch.tensor([[4.0 * c, 0.0] for c in range(4)])
    g = torch.Generator().manual_seed(1)
    y = torch.arange(800) % 4
    mu = centres[y] + spread * torch.randn(800, 2, generator=g)
    std = torch.full((800, 2), spread)
    cond = class_conditional_samples(_Identity(), _Nearest(centres), mu, std, y, n_per_class=250, n_classes=4,
                                     seed=2)
    assert torch.equal(cond.target, torch.arange(4).repeat_interleave(250))
    assert low <= cond.accuracy(CONFIDENT) <= high  # apart: every draw is its class; overlapping: many are not
    again = class_conditional_samples(_Identity(), _Nearest(centres), mu, std, y, n_per_class=250, n_classes=4,
                                      seed=2)
    assert torch.equal(again.samples.x, cond.samples.x)
    with pytest.raises(ValueError, match="class 3 has 0"):
        class_gaussians(mu[y < 3], std[y < 3], y[y < 3], 4)


def test_base_sample_of_a_vae_adds_class_conditional_draws(store, tmp_path):
    result = CliRunner().invoke(cli, ["base", "sample", "mnist_vae", "--preset", "tiny", "-o", str(tmp_path),
                                      "-n", "300", "--per-class", "3"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    cond = json.loads((tmp_path / "summary.json").read_text())["class_conditional"]
    assert cond["n_per_class"] == 30 and len(cond["confident_accuracy_per_class"]) == 10
    assert set(cond["components_per_class"].values()) <= {1, 2, 3, 4, 6, 8}
    assert 0 <= cond["confident_accuracy"] <= cond["accuracy"] <= 1
    assert _grid_rows(tmp_path / "mnist_vae_class_conditional.png") == 10
    assert "class-conditional samples per class recognised" in result.output
    listing = CliRunner().invoke(cli, ["base", "ls", "--preset", "tiny", "-f", "json"], catch_exceptions=False)
    row = next(r for r in json.loads(listing.output) if r["name"] == "mnist_vae")
    stored = sample_quality("mnist_vae", store=store, preset="tiny")["class_conditional"]
    assert row["quality"].endswith(f"class-conditional samples {stored['confident_accuracy']:.1%} recognised")
    # A model trained outside the CLI (no sample figures stored yet) says how to get them.
    unsampled = {**zoo.is_trained("mnist_vae", store=store, preset="tiny"), "key": "never-sampled"}
    assert _quality(unsampled, store) == f"test recon mse {unsampled['info']['test_recon_mse']:.4g}" \
        "; samples: run `ltrans base sample`"


@pytest.fixture(scope="module")
def pair(store):
    return load_pair("mnist_mnist", store=store, preset="tiny")


@pytest.fixture(scope="module")
def bridge_folder(pair, tmp_path_factory):
    """A smoke bridge written by the same function `ltrans bridge train` uses."""
    import click

    out = tmp_path_factory.mktemp("bridge")
    with click.Context(cli, obj={"cache_dir": None}) as ctx:
        train_and_write(ctx, smoke("mnist_mnist"), out, "cpu")
    return out


def test_bridge_folder_round_trips_and_has_examples(bridge_folder, pair):
    cfg, model = load_bridge(bridge_folder)
    assert cfg == smoke("mnist_mnist")
    _, result = run_trial(cfg, pair)  # same seed -> the same bridge, bitwise on CPU
    z = pair.a.latents.test.mu[:20]
    assert torch.equal(model.translate(z, "a", "b"), result.model.translate(z, "a", "b"))
    summary = json.loads((bridge_folder / "examples" / "summary.json").read_text())
    assert set(summary) == {"a_to_b", "b_to_a"}
    for name in ("a_to_b.png", "interp_within_a_to_b.png", "interp_across_b_to_a.png"):
        assert (bridge_folder / "examples" / name).is_file()
    assert _grid_rows(bridge_folder / "examples" / "interp_within_a_to_b.png") == 10  # 5 strips x (src, dst)


def test_translation_agreement_equals_the_trials_transfer_accuracy(bridge_folder, pair, tmp_path):
    cfg, model = load_bridge(bridge_folder)
    row, _ = run_trial(override(cfg, {"n_eval": 50}), pair)
    sides = {"a": pair.a, "b": pair.b}
    for src, dst in (("a", "b"), ("b", "a")):
        summary = write_translations(model, sides, src, 50, tmp_path, seed=cfg.seed)
        assert summary["n"] == 50
        # Two code paths (the evaluation and the picture writer) judge the same 50 examples alike.
        assert summary["agreement"] == pytest.approx(row.flat()[f"transfer_{src}_to_{dst}"])
        assert _grid_rows(tmp_path / f"{src}_to_{dst}.png") == 10


def test_a_damaged_or_missing_bridge_is_refused_clearly(bridge_folder, tmp_path):
    with pytest.raises(UserError, match="bridge train"):
        load_bridge(tmp_path)
    for name in ("config.json", "bridge.pt"):
        (tmp_path / name).write_bytes((bridge_folder / name).read_bytes())
    data = (tmp_path / "bridge.pt").read_bytes()
    (tmp_path / "bridge.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cannot be loaded"):
        load_bridge(tmp_path)


class _Crafted:
    """Pickles as a call of os.mkdir: a bridge.pt that would run code if torch.load unpickled it fully."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.mkdir, (self.marker,)


@pytest.mark.parametrize("content", ["crafted", "text", "list"])
def test_a_foreign_bridge_pt_is_one_line_exit_2_and_runs_nothing(bridge_folder, tmp_path, content):
    folder, marker = tmp_path / "bridge", tmp_path / "ran"
    folder.mkdir()
    (folder / "config.json").write_bytes((bridge_folder / "config.json").read_bytes())
    if content == "text":
        (folder / "bridge.pt").write_text("these are not the weights you are looking for\n")
    else:
        torch.save({"w": _Crafted(marker)} if content == "crafted" else [torch.zeros(2)], folder / "bridge.pt")
    result = CliRunner().invoke(cli, ["translate", "mnist_mnist", "--bridge", str(folder), "-o", str(tmp_path / "o")])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith(f"error: {folder / 'bridge.pt'} cannot be loaded: not a torch checkpoint written by")
    assert f"retrain it with `ltrans bridge train mnist_mnist -o {folder}`" in lines[0]
    assert not marker.exists()  # the weights-only load refused the pickle instead of calling os.mkdir


@pytest.mark.parametrize(("dims", "why"), [
    (torch.tensor([100]), "shape (2,), not (1,)"), (torch.tensor(100), "shape (2,), not ()"),
    (torch.tensor([[100, 100]]), "shape (2,), not (1, 2)"), (torch.tensor([100.0, 100.0]), "integers"),
    (torch.tensor([100, 0]), "positive"), (torch.tensor([100, -3]), "positive"), (None, "missing"),
])
def test_a_bridge_pt_with_malformed_dims_is_a_user_error_naming_the_file_and_the_fix(tmp_path, dims, why):
    import dataclasses

    (tmp_path / "config.json").write_text(json.dumps(dataclasses.asdict(smoke("mnist_mnist"))))
    torch.save({"w": torch.zeros(2)} if dims is None else {"dims": dims}, tmp_path / "bridge.pt")
    with pytest.raises(UserError) as err:
        load_bridge(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'bridge.pt'} cannot be loaded: its dims entry") and why in message
    assert f"retrain it with `ltrans bridge train mnist_mnist -o {tmp_path}`" in message


def test_a_procrustes_rerun_into_a_bridge_folder_leaves_no_stale_bridge(bridge_folder, tmp_path):
    import shutil

    import click

    out = tmp_path / "bridge"
    shutil.copytree(bridge_folder, out)
    with click.Context(cli, obj={"cache_dir": None}) as ctx:
        row = train_and_write(ctx, override(smoke("mnist_mnist"), {"method": "procrustes"}), out, "cpu")
    assert row["method"] == "procrustes" and row["status"] == "ok"
    # The old bridge.pt and examples/ would otherwise sit beside a config that no longer describes them.
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "row.json"]
    assert json.loads((out / "config.json").read_text())["method"] == "procrustes"
    with pytest.raises(UserError, match="holds no trained bridge"):
        load_bridge(out)


def test_translate_cli_refuses_a_bridge_of_another_pair(bridge_folder, tmp_path):
    result = CliRunner().invoke(cli, ["translate", "mnist_animals", "--bridge", str(bridge_folder), "-o",
                                      str(tmp_path)])
    assert result.exit_code == 2 and "mnist_mnist" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["translate", "mnist_mnist", "--bridge", str(bridge_folder), "-o",
                                      str(tmp_path), "-n", "20"])
    assert result.exit_code == 0, result.output
    assert "agrees with the source" in result.output and (tmp_path / "a_to_b.png").is_file()


def test_per_class_figures_print_named_in_the_domain_class_order():
    """Stored summaries are JSON with sorted keys ("eight" before "zero"); the CLI prints in class order."""
    stored = json.loads(json.dumps({"zero": 0.17, "one": 0.04, "nine": 0.0, "eight": 1}, sort_keys=True))
    assert class_figures(stored, "spoken_digits") == "zero 0.17, one 0.04, eight 1, nine 0.0"
