"""Latent datasets: VAE posteriors, GAN selection, and the content-keyed cache."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ltrans.latents as latents_mod
from ltrans.data import load_split
from ltrans.errors import UserError
from ltrans.latents import Latents, gan_latents, gan_selection, latent_dataset
from ltrans.models import zoo
from ltrans.models.space import to_model_space


class PrototypeGenerator(nn.Module):
    """A real generator with a known class structure: z -> a softmax mix of per-class mean digits."""

    latent_dim = 10

    def __init__(self, prototypes: torch.Tensor) -> None:
        super().__init__()
        self.mix = nn.Linear(self.latent_dim, len(prototypes), bias=False)
        self.mix.weight.data = torch.eye(len(prototypes), self.latent_dim) * 6   # class = argmax of z
        self.register_buffer("prototypes", prototypes)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.mix(z), dim=1)
        return torch.einsum("nk,khw->nhw", weights, self.prototypes)


@pytest.fixture(scope="module")
def mnist_tiny_classifier(store):
    return zoo.classifier("mnist", store=store, preset="tiny").module


def test_gan_latents_are_balanced_confident_and_the_most_confident(store, mnist_tiny_classifier):
    split = load_split("mnist", store=store)
    x = torch.from_numpy(split.train.x)
    with torch.no_grad():  # per class, the real digit the classifier is surest of
        probs = torch.softmax(mnist_tiny_classifier(x), 1)
    prototypes = x[probs.argmax(0)]
    generator = PrototypeGenerator(prototypes)
    lat = gan_latents(generator, mnist_tiny_classifier, n_samples=3000, keep_per_class=15, seed=0,
                      min_confidence=0.5)
    assert torch.bincount(lat.y, minlength=10).tolist() == [15] * 10
    assert torch.all(lat.std == 0) and torch.all(lat.confidence >= 0.5)
    with torch.no_grad():  # pseudo-labels are the classifier's labels of the decoded samples
        probs = torch.softmax(mnist_tiny_classifier(generator.decode(lat.mu)), 1)
    assert torch.equal(probs.argmax(1), lat.y)
    assert torch.allclose(probs.max(1).values, lat.confidence, atol=1e-5)
    # Nothing left out of a class was more confident than what was kept of it.
    z_all = torch.randn(3000, 10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        conf_all, label_all = torch.softmax(mnist_tiny_classifier(generator.decode(z_all)), 1).max(1)
    for c in range(10):
        kept_min = lat.confidence[lat.y == c].min()
        assert conf_all[label_all == c].sort(descending=True).values[14] <= kept_min + 1e-6
    again = gan_latents(generator, mnist_tiny_classifier, n_samples=3000, keep_per_class=15, seed=0,
                        min_confidence=0.5)
    assert torch.equal(again.mu, lat.mu)


def test_gan_latents_refuse_a_class_the_generator_does_not_cover(store, mnist_tiny_classifier):
    split = load_split("mnist", store=store)
    x, y = torch.from_numpy(split.train.x), torch.from_numpy(split.train.y)
    only_ones = x[y == 1].mean(0, keepdim=True).repeat(10, 1, 1)   # every class prototype is a "1"
    with pytest.raises(Exception, match="class 0"):
        gan_latents(PrototypeGenerator(only_ones), mnist_tiny_classifier, n_samples=500, keep_per_class=5,
                    seed=0, min_confidence=0.5)


def test_gan_latents_below_one_half_fill_every_class_by_its_own_probability(store, mnist_tiny_classifier):
    # The tiny preset's threshold 0: a generator whose every draw is a "1" still gives balanced latents,
    # class c taking the draws most probable for c that no earlier class took (a seconds-long GAN may
    # never make some class the argmax, and the smoke preset must still run).
    split = load_split("mnist", store=store)
    x, y = torch.from_numpy(split.train.x), torch.from_numpy(split.train.y)
    only_ones = x[y == 1].mean(0, keepdim=True).repeat(10, 1, 1)
    generator = PrototypeGenerator(only_ones)
    lat = gan_latents(generator, mnist_tiny_classifier, n_samples=500, keep_per_class=5, seed=0, min_confidence=0.0)
    assert torch.bincount(lat.y, minlength=10).tolist() == [5] * 10
    assert len(torch.unique(lat.mu, dim=0)) == 50  # no draw kept twice
    z_all = torch.randn(500, 10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        p_all = torch.softmax(mnist_tiny_classifier(generator.decode(z_all)), 1)
        p_kept = torch.softmax(mnist_tiny_classifier(generator.decode(lat.mu)), 1)
    assert torch.allclose(p_kept[torch.arange(50), lat.y], lat.confidence, atol=1e-5)
    assert (p_all.argmax(1) != 0).all()  # class 0 was never anyone's argmax, yet it has its five
    # Class 0 is filled first: its five are exactly the five draws most probable for 0.
    assert torch.allclose(lat.confidence[lat.y == 0].sort(descending=True).values, p_all[:, 0].topk(5).values,
                          atol=1e-5)


class RareZeroGenerator(PrototypeGenerator):
    """Class 0 wins the mix only when z[0] beats every other coordinate by 1.5: ~0.5% of draws."""

    @classmethod
    def for_classifier(cls, classifier: nn.Module, store) -> RareZeroGenerator:
        """Prototypes: the MNIST training digit the classifier finds most typical of each class."""
        x = torch.from_numpy(load_split("mnist", store=store).train.x)
        with torch.no_grad():
            return cls(x[torch.softmax(classifier(x), 1).argmax(0)])

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        logits = self.mix(z) - torch.tensor([9.0] + [0.0] * 9)
        return torch.einsum("nk,khw->nhw", torch.softmax(logits, dim=1), self.prototypes)


def test_gan_latents_draw_more_rounds_for_a_rare_class_up_to_the_limit(store, mnist_tiny_classifier):
    generator = RareZeroGenerator.for_classifier(mnist_tiny_classifier, store)
    # How many of the first 500 draws the tiny classifier calls a zero at >= 0.5 depends on the threads it
    # trained with (measured 10 on one thread, 25 on two; every other class 39 or more), so the test asks
    # for 5 more than that: one round cannot give them, 20,000 draws easily do.
    with torch.no_grad():
        z = torch.randn(500, generator.latent_dim, generator=torch.Generator().manual_seed(0))
        zeros = int((torch.softmax(mnist_tiny_classifier(generator.decode(z)), 1)[:, 0] >= 0.5).sum())
    kw = {"keep_per_class": zeros + 5, "seed": 0, "min_confidence": 0.5}
    with pytest.raises(Exception, match="class 0 .* among 500 prior draws"):
        gan_latents(generator, mnist_tiny_classifier, n_samples=500, **kw)  # one round is not enough
    draws = gan_selection(generator, mnist_tiny_classifier, n_samples=500, max_samples=20_000, **kw)
    lat = draws.latents
    keep = kw["keep_per_class"]
    assert torch.bincount(lat.y, minlength=10).tolist() == [keep] * 10 and torch.all(lat.confidence >= 0.5)
    # it says how many it drew and found, and stopped at the first round that was enough: one round less fails
    assert 500 < draws.drawn < 20_000 and draws.drawn % 500 == 0
    assert min(draws.confident_per_class) >= keep and sum(draws.confident_per_class) <= draws.drawn
    with pytest.raises(Exception, match=f"among {draws.drawn - 500} prior draws"):
        gan_selection(generator, mnist_tiny_classifier, n_samples=500, max_samples=draws.drawn - 500, **kw)
    again = gan_latents(generator, mnist_tiny_classifier, n_samples=500, max_samples=20_000, **kw)
    assert torch.equal(again.mu, lat.mu)  # the rounds are one seeded stream
    with pytest.raises(Exception, match="among 1000 prior draws"):  # the limit holds
        gan_latents(generator, mnist_tiny_classifier, n_samples=500, max_samples=1000,
                    **{**kw, "keep_per_class": 200})


def test_gan_selection_keeps_the_most_confident_share_of_enough_candidates(store, mnist_tiny_classifier):
    generator = RareZeroGenerator.for_classifier(mnist_tiny_classifier, store)
    kw = {"n_samples": 500, "keep_per_class": 25, "seed": 0, "min_confidence": 0.5}
    enough_kept = gan_selection(generator, mnist_tiny_classifier, max_samples=40_000, **kw)
    paper = gan_selection(generator, mnist_tiny_classifier, max_samples=40_000, candidates_per_class=100, **kw)
    # it drew on until the rare zero was the argmax of 100 draws, and stopped at the first round that was enough
    assert min(paper.argmax_per_class) >= 100 and sum(paper.argmax_per_class) == paper.drawn > enough_kept.drawn
    assert min(enough_kept.argmax_per_class) < 100
    with pytest.raises(UserError, match=f"class 0 the classifier's argmax for only .* of {paper.drawn - 500} prior"):
        gan_selection(generator, mnist_tiny_classifier, max_samples=paper.drawn - 500, candidates_per_class=100, **kw)
    # One seeded stream: the larger pool holds the smaller, so each class's kept draws are at least as
    # confident, rank by rank, and still 25 a class.
    for c in range(10):
        small = enough_kept.latents.confidence[enough_kept.latents.y == c].sort(descending=True).values
        large = paper.latents.confidence[paper.latents.y == c].sort(descending=True).values
        assert len(large) == 25 and torch.all(large >= small)


def test_vae_latents_cover_every_example_and_the_cache_hit_does_not_re_encode(store, monkeypatch):
    split = load_split("mnist", store=store)
    first = latent_dataset("mnist_vae", store=store, preset="tiny")
    assert len(first.train) == len(split.train) and len(first.test) == len(split.test)
    assert torch.equal(first.train.y, torch.from_numpy(split.train.y))
    assert torch.all(first.train.std > 0) and first.train.dim == first.record["latent_dim"]
    # Each row is its own example's posterior: the frozen base model's encoder on the same rows (model
    # space, as latent_dataset encodes them) gives the stored mean and std, beside the example's label.
    module = zoo.base_model("mnist_vae", store=store, preset="tiny").module
    for part, lat in (("train", first.train), ("test", first.test)):
        x, y = getattr(split, part).x, getattr(split, part).y
        rows = torch.arange(len(x))[-64:] if part == "test" else torch.arange(64)
        with torch.no_grad():
            mu, std = module.encode(to_model_space("mnist", x[rows.numpy()]))
        torch.testing.assert_close(lat.mu[rows], mu, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(lat.std[rows], std, rtol=1e-5, atol=1e-6)
        assert torch.equal(lat.y, torch.from_numpy(y)) and torch.equal(lat.confidence, torch.ones(len(y)))

    def fail(*args, **kwargs):
        raise AssertionError("re-encoded on a cache hit")

    monkeypatch.setattr(latents_mod, "vae_latents", fail)
    second = latent_dataset("mnist_vae", store=store, preset="tiny")
    for part in ("train", "test"):
        for field in ("mu", "std", "y", "confidence"):
            assert torch.equal(getattr(getattr(first, part), field), getattr(getattr(second, part), field))


def test_latents_validate_their_shapes():
    with pytest.raises(ValueError, match="mu and std"):
        Latents(torch.zeros(4, 3), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="y must be"):
        Latents(torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))
