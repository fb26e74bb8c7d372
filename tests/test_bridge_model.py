"""The bridge network (ltrans/bridge/model.py) and its batch / label selection (ltrans/bridge/train.py)."""

from __future__ import annotations

import pytest
import torch

from ltrans.bridge.config import BridgeConfig
from ltrans.bridge.model import Bridge, GatedAffine
from ltrans.bridge.toy import toy_pair
from ltrans.bridge.train import ClassSampler, select_labelled, train_bridge

SMALL = BridgeConfig(shared_dim=3, n_layers=2, width=16, batch_size=20, steps=5, n_projections=4, eval_every=5)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_gated_affine_shapes_and_closed_gate_is_the_skip_path():
    block = GatedAffine(in_dim=5, h_dim=7, out_dim=3)
    x, h = torch.randn(4, 5, generator=gen()), torch.randn(4, 7, generator=gen(1))
    assert block(x, h).shape == (4, 3)
    with torch.no_grad():
        block.proj.bias[3:] = -1e4  # gate logits -> -inf, g -> 0
    assert torch.allclose(block(x, h), block.skip(x))


def test_encode_decode_shapes_for_different_dims_and_positive_std():
    model = Bridge(6, 11, SMALL, generator=gen())
    za, zb = torch.randn(5, 6, generator=gen(1)), torch.randn(7, 11, generator=gen(2))
    mu_a, std_a = model.encode(za, "a")
    mu_b, std_b = model.encode(zb, "b")
    assert mu_a.shape == std_a.shape == (5, 3) and mu_b.shape == (7, 3)
    assert bool((std_a > 0).all()) and bool((std_b > 0).all())
    assert model.decode(mu_a, "a").shape == (5, 6) and model.decode(mu_a, "b").shape == (5, 11)
    assert model.translate(za, "a", "b").shape == (5, 11)
    assert model.translate(zb, "b", "a", sample=True, generator=gen(3)).shape == (7, 6)
    assert model.classify(mu_a).shape == (5, 10)
    with pytest.raises(ValueError):
        model.encode(zb, "a")


def test_each_domain_reads_the_leading_columns_of_the_padded_space():
    # A 6-d A and an 11-d B share one 11-d body: A's latents enter as the first 6 columns (zeros after)
    # and leave as the first 6 columns of the decoder's output; B uses all 11.
    model = Bridge(6, 11, SMALL, generator=gen())
    za, code = torch.randn(5, 6, generator=gen(1)), torch.randn(5, 3, generator=gen(2))
    ids_a, ids_b = torch.zeros(5, dtype=torch.long), torch.ones(5, dtype=torch.long)
    padded = torch.cat([za, torch.zeros(5, 5)], dim=1)
    for got, want in zip(model.encode(za, "a"), model.encode_padded(padded, ids_a), strict=True):
        assert torch.equal(got, want)
    full_a = model.decode_padded(code, ids_a)
    assert torch.equal(model.decode(code, "a"), full_a[:, :6])
    assert not torch.allclose(full_a[:, :6], full_a[:, -6:])  # so that "which 6 columns" is decided here
    assert torch.equal(model.decode(code, "b"), model.decode_padded(code, ids_b))
    assert not torch.allclose(full_a, model.decode_padded(code, ids_b))  # the domain id changes the output


def test_init_from_a_generator_is_reproducible_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    one, two = Bridge(4, 4, SMALL, generator=gen(5)), Bridge(4, 4, SMALL, generator=gen(5))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(one.parameters(), two.parameters()))


def test_balanced_batches_hold_each_class_equally():
    y = torch.tensor([0] * 50 + [1] * 5 + [2] * 20 + [3] * 3)  # unbalanced on purpose
    sampler = ClassSampler(y, balanced=True, generator=gen())
    for _ in range(3):
        counts = torch.bincount(y[sampler.draw(40)], minlength=4)
        assert counts.tolist() == [10, 10, 10, 10]


def test_labelled_subset_is_class_balanced_and_sized():
    y = torch.arange(10).repeat_interleave(30)[torch.randperm(300, generator=gen())]
    chosen = select_labelled(y, 25, gen(1))
    assert len(chosen) == 25 == len(set(chosen.tolist()))
    counts = torch.bincount(y[chosen], minlength=10)
    assert int(counts.min()) == 2 and int(counts.max()) == 3
    assert len(select_labelled(y, 0, gen())) == 0 and len(select_labelled(y, -1, gen())) == 300
    assert torch.equal(select_labelled(y, 25, gen(1)), chosen)


def _classifier_params(model: Bridge) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.classifier.parameters()]


@pytest.mark.parametrize("freeze", [True, False])
def test_frozen_classifier_is_not_updated(freeze):
    pair = toy_pair(n_per_class=10, dim=4, rotation_seed=0, noise=0.3, seed=0)
    cfg = BridgeConfig(**{**SMALL.__dict__, "freeze_classifier": freeze})
    init = _classifier_params(Bridge(4, 4, cfg, generator=gen(7)))  # train_bridge draws init from seed 7
    trained = _classifier_params(train_bridge(cfg, pair.latents_a, pair.latents_b, seed=7).model)
    same = all(torch.equal(p, q) for p, q in zip(init, trained))
    assert same == freeze


@pytest.mark.parametrize("n_sup, moves", [(0, False), (5, True), (-1, True)])
def test_classifier_learns_only_with_labels(n_sup, moves):
    # One real Adam step from seed 0's initialisation: without labels the class term is absent, so the
    # classifier gets no gradient and keeps its initial weights bit for bit; with labels it moves.
    pair = toy_pair(n_per_class=10, dim=4, rotation_seed=0, noise=0.3, seed=0)
    cfg = BridgeConfig(**{**SMALL.__dict__, "n_sup": n_sup, "steps": 1})
    init = _classifier_params(Bridge(4, 4, cfg, generator=gen(0)))  # train_bridge draws init from seed 0
    result = train_bridge(cfg, pair.latents_a, pair.latents_b, seed=0)
    assert result.status == "ok" and result.steps == 1
    trained = _classifier_params(result.model)
    assert [torch.equal(p, q) for p, q in zip(init, trained, strict=True)] == [not moves] * len(init)
    assert ("cls" in result.losses) == moves
    encoder = Bridge(4, 4, cfg, generator=gen(0)).enc_mu.skip.weight
    assert not torch.equal(encoder, result.model.enc_mu.skip.weight)  # the step did update the rest
