"""Every registered pair (ltrans/pairs.py): a contract a new pair meets before any training.

Training on each pair is tested by name elsewhere (tests/test_pipeline.py); this checks every entry,
so a pair added later cannot name a model or domain that is not there.
"""

from __future__ import annotations

import pytest

import ltrans.models  # noqa: F401  registers the base models and classifiers
from ltrans.models.base import BASE_MODELS, CLASSIFIERS
from ltrans.pairs import PAIRS
from ltrans.presets import PRESETS


@pytest.mark.parametrize("name", PAIRS.names())
def test_a_pair_joins_two_registered_models_whose_domains_have_classifiers(name):
    pair = PAIRS[name]
    sides = [BASE_MODELS[pair.a], BASE_MODELS[pair.b]]
    assert pair.a != pair.b and all(spec.kind in ("vae", "gan") for spec in sides)
    # transfer accuracy is judged by each domain's classifier, the FID in its features
    assert all(spec.domain in CLASSIFIERS.names() for spec in sides)
    assert pair.description


@pytest.mark.parametrize("name", PAIRS.names())
@pytest.mark.parametrize("preset", PRESETS.names())
def test_every_preset_resolves_for_every_pair_and_keeps_its_losses(name, preset):
    cfg = PRESETS[preset](name)
    assert cfg.pair == name and cfg.bridge.steps > 0
    authors = PAIRS[name].paper  # a preset scales size and steps, never the loss weights
    weights = ("shared_dim", "beta_kl", "beta_swd", "beta_cls", "n_sup")
    assert {w: getattr(cfg.bridge, w) for w in weights} == {w: getattr(authors, w) for w in weights}
    if preset == "paper":
        assert cfg.bridge == authors and cfg.base == "full"
