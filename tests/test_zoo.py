"""Reading stored base-model records: a corrupted record is refused with the fix, never a JSON traceback."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ltrans.artifacts import Store
from ltrans.cli import cli
from ltrans.data import audio
from ltrans.data.base import DATASETS, Examples, Split
from ltrans.models import BASE_MODELS, CLASSIFIERS, zoo


def test_a_corrupted_record_is_one_error_naming_the_fix(store, tmp_path):
    zoo.classifier("digits8", store=store, preset="tiny")  # the session's, trained once for every test
    record = zoo.is_trained("digits8", store=store, preset="tiny", kind="classifier")
    assert record["info"]["test_accuracy"] > 0.5  # read back, and a trained classifier (chance 0.1)
    # how it was timed, for the speed comparisons (bridge_vs_base warns when a bridge is timed otherwise)
    assert record["device"] == "cpu" and isinstance(record["threads"], int) and record["threads"] >= 1
    name = f"digits8-{record['key'][:12]}"
    shutil.copytree(store.root / "classifier" / name, tmp_path / "classifier" / name)  # damage a copy
    path = tmp_path / "classifier" / name / "record.json"
    path.write_text(path.read_text()[:-20])  # a torn write or a stray edit
    listing = CliRunner().invoke(cli, ["--cache-dir", str(tmp_path), "base", "ls", "--preset", "tiny"])
    assert listing.exit_code == 2 and "Traceback" not in listing.output
    assert "corrupt" in listing.output and "record.json" in listing.output and "cache clear" in listing.output


def test_listing_a_fresh_cache_builds_nothing(tmp_path):
    # `base ls` is a read-only listing: it must not synthesise spoken_digits (or load any data) to say
    # that nothing is trained yet.
    listing = CliRunner().invoke(cli, ["--cache-dir", str(tmp_path), "base", "ls", "-f", "json"])
    assert listing.exit_code == 0 and '"status": "not trained"' in listing.output.replace("'", '"')
    assert Store(tmp_path).entries() == []


@pytest.mark.parametrize("name", BASE_MODELS.names())
def test_tiny_preset_keeps_the_latent_dim_of_the_spec(name):
    # `base ls`, `base sample`, sample_quality and the latents record read spec.latent_dim whatever the preset:
    # a tiny model with another latent size made `base train NAME --preset tiny` a shape error.
    spec = BASE_MODELS[name]
    module = spec.build(spec.tiny)
    assert module.latent_dim == spec.tiny.latent_dim == spec.config.latent_dim == spec.latent_dim
    z = torch.zeros(2, spec.latent_dim)
    with torch.no_grad():
        assert len(module.eval().decode(z)) == 2  # a draw of the spec's size decodes


def _tiny_split() -> Split:
    rng = np.random.default_rng(0)
    part = Examples(rng.random((4, 8), dtype=np.float32), np.arange(4))
    return Split(part, Examples(rng.random((2, 8), dtype=np.float32), np.arange(2)))


_SPECS = [("base_model", n) for n in BASE_MODELS.names()] + [("classifier", d) for d in CLASSIFIERS.names()]


@pytest.mark.parametrize("setting, value", [("N_MELS", 80), ("HOP", 160), ("LOG_FLOOR", -30.0), ("EPS", 1e-8)])
@pytest.mark.parametrize("kind, name", _SPECS)
def test_audio_front_end_settings_are_in_the_keys_of_spoken_models_only(kind, name, setting, value, monkeypatch):
    # The key fingerprints raw waves; a spoken model sees their spectrograms, so a changed front end must
    # train (and encode) again, while image models, which never see it, keep their stored weights.
    spec = BASE_MODELS[name] if kind == "base_model" else CLASSIFIERS[name]
    before = zoo._key(kind, name, spec, "tiny", _tiny_split())[1].digest
    monkeypatch.setattr(audio, setting, value)
    after = zoo._key(kind, name, spec, "tiny", _tiny_split())[1].digest
    assert (after != before) == (DATASETS[spec.domain].modality == "audio")


@pytest.mark.parametrize("kind, name", _SPECS)
def test_held_out_examples_are_in_the_key(kind, name):
    # The record's test figures (reconstruction error, accuracy) and a VAE's test latents come from split.test.x.
    spec = BASE_MODELS[name] if kind == "base_model" else CLASSIFIERS[name]
    split = _tiny_split()
    other = Split(split.train, Examples(split.test.x + 0.5, split.test.y))
    assert zoo._key(kind, name, spec, "tiny", other)[1].digest != zoo._key(kind, name, spec, "tiny", split)[1].digest
