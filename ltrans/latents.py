"""Latents: a domain encoded once by its frozen base model (DESIGN.md section 1, "Inputs").

A VAE gives the posterior mean and std of every example; a GAN has no encoder, so its latents are
prior samples kept for the domain classifier's confidence, with ``std = 0`` and pseudo-labels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class Latents:
    """mu, std: (n, d) float32; y: (n,) int64 labels (true, or pseudo-labels for a GAN);
    confidence: (n,) float32 classifier confidence of y (1 for true labels)."""

    mu: torch.Tensor
    std: torch.Tensor
    y: torch.Tensor
    confidence: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.mu.ndim != 2 or self.mu.shape != self.std.shape:
            raise ValueError(f"mu and std must both be (n, d); got {tuple(self.mu.shape)}, {tuple(self.std.shape)}")
        if self.y.shape != (self.mu.shape[0],):
            raise ValueError(f"y must be ({self.mu.shape[0]},); got {tuple(self.y.shape)}")
        if self.confidence is not None and self.confidence.shape != self.y.shape:
            raise ValueError(f"confidence must be {tuple(self.y.shape)}; got {tuple(self.confidence.shape)}")

    def __len__(self) -> int:
        return int(self.mu.shape[0])

    @property
    def dim(self) -> int:
        return int(self.mu.shape[1])

    def subset(self, index: torch.Tensor) -> Latents:
        conf = None if self.confidence is None else self.confidence[index]
        return Latents(self.mu[index], self.std[index], self.y[index], conf)


@dataclass(frozen=True)
class LatentSplit:
    """Train/test latents of one base model, with the record of how they were made."""

    train: Latents
    test: Latents
    record: dict


@dataclass(frozen=True)
class GanSelection:
    """How GAN latents are chosen: rounds of ``samples`` prior draws (at most ``max_samples`` in all)
    until every class has ``keep`` samples at ``min_confidence`` and is the classifier's argmax for at
    least ``candidates`` draws; the ``keep`` most confident per class are kept, ``test`` of them per
    class held out."""

    samples: int
    keep: int
    test: int
    min_confidence: float
    max_samples: int
    candidates: int = 0


# The paper keeps the 1,700 most confident of >= 7,000 prior samples per class (~24%). Prior draws are
# free, so the embedded data sets no bound here, and the count is what lets a bridge learn the GAN's class
# regions: a bridge fits its kept latents far better than it generalises to held-out ones (mnist_spoken's
# 8x1024 paper bridge with 1,700: class kept through the GAN round trip for 94% of training latents, 77%
# of held-out ones; mnist_vae_gan's 4x512: 99% / 84%). We keep 10,000 per class, all at softmax >= 0.9:
# a quarter (spoken "eight": of 40,967) to three fifths (mnist_gan "four": of 16,622) of its argmax draws.
# Measured 2026-12-07 (seed 0, paper presets), on held-out latents that no bridge of the comparison
# trained on: mnist_vae_gan B -> A 0.724 / 0.807 / 0.852 with 1,700 / 5,000 / 10,000 a class (514
# latents; A -> B on the same MNIST digits 0.945 / 0.946 / 0.942), mnist_spoken 0.829 / 0.891 / 0.919
# (521; A -> B 0.899 / 0.914 / 0.920). mnist_spoken's 8x1024 bridge, on each selection's own held-out
# latents: 0.920 / 0.927 with 10,000, 0.914 / 0.877 with 5,000; class kept through its GAN round trip for
# 94% of training latents and 88% of held-out ones (92% / 82% with 5,000).
# Earlier (2026-11, a 100-256-10 MLP probe): the class of a kept mnist_gan latent is predicted for
# 73% / 79% / 83% with 400 / 1,000 / 1,900 training latents per class, spoken_specgan 69% / 80% / 84%
# (400 / 1,000 / 1,700). Rounds of 20,000 draws until every class has 10,000 at softmax >= 0.9 and is
# the argmax of >= 7,000 draws, at most 1,200,000; 100 per class held out for evaluation. mnist_gan:
# 300,000 draws (262 s by `ltrans latents build mnist_gan`, one thread beside a bridge; its rarest,
# "four", 3.5% of draws at >= 0.9), spoken_specgan: 520,000 (988 s on two threads beside other runs;
# "eight" 1.9%).
# "tiny" base models (tests) keep few, with no threshold.
GAN_SELECTION = {"full": GanSelection(20_000, 10_000, 100, 0.9, 1_200_000, candidates=7_000),
                 "tiny": GanSelection(2_000, 20, 5, 0.0, 2_000)}
GAN_MIN_CONFIDENCE = GAN_SELECTION["full"].min_confidence
LATENTS_FORMAT = 2  # 2: GAN classes filled by their own probability (tiny preset)


def _encode(module, x, batch: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    mus, stds = [], []
    with torch.no_grad():
        for chunk in x.split(batch):
            mu, std = module.encode(chunk.to(next(module.parameters()).device))
            mus.append(mu.float().cpu())
            stds.append(std.float().cpu())
    return torch.cat(mus), torch.cat(stds)


def vae_latents(module, x: torch.Tensor, y: torch.Tensor) -> Latents:
    """Posterior mean and std of every example (model space ``x``) with its true label."""
    mu, std = _encode(module, x)
    return Latents(mu, std, y.long(), torch.ones(len(y)))


@dataclass(frozen=True)
class GanDraws:
    """What a GAN selection kept (``latents``), how many prior samples it drew, how many of them were
    confidently each class and how many had each class as their argmax (the figures a latent dataset's
    record keeps)."""

    latents: Latents
    drawn: int
    confident_per_class: list[int]
    argmax_per_class: list[int]


def gan_latents(generator_module, clf, **kwargs) -> Latents:
    """The latents ``gan_selection`` keeps (same arguments)."""
    return gan_selection(generator_module, clf, **kwargs).latents


def gan_selection(generator_module, clf, *, n_samples: int, keep_per_class: int, seed: int,
                  min_confidence: float = GAN_MIN_CONFIDENCE, n_classes: int = 10, batch: int = 1000,
                  max_samples: int | None = None, candidates_per_class: int = 0) -> GanDraws:
    """Prior samples decoded and classified; per class, the ``keep_per_class`` draws the classifier
    gives that class the highest probability, among those where it is >= ``min_confidence``.

    Draws rounds of ``n_samples`` (one seeded stream) until every class has ``keep_per_class`` such
    draws and is the classifier's argmax for at least ``candidates_per_class`` draws (so that the kept
    draws are a class's most confident share, not all it has: the paper keeps 1,700 of >= 7,000), or
    ``max_samples`` (default: one round) have been drawn. Raises UserError when a class is still
    short then (the GAN does not cover it well enough to give balanced latents). With ``min_confidence``
    >= 0.5 a draw qualifies for one class only, its argmax, so the kept draws are each class's most
    confident ones. Below 0.5 (the tiny preset's 0: a GAN trained for seconds may never make some class
    the argmax) classes are filled in order and a draw is kept for one class at most; its pseudo-label is
    then the class it was kept for and its confidence that class's probability.
    """
    from ltrans.errors import UserError

    max_samples = max(max_samples or n_samples, n_samples)
    g = torch.Generator().manual_seed(seed)
    device = next(generator_module.parameters()).device
    zs, probs, drawn = [], [], 0
    sure = torch.zeros(n_classes, dtype=torch.long)  # draws that qualify for each class
    argmax = torch.zeros(n_classes, dtype=torch.long)  # draws each class is the argmax of
    while True:
        z = torch.randn(min(n_samples, max_samples - drawn), generator_module.latent_dim, generator=g)
        with torch.no_grad():
            for chunk in z.split(batch):
                p = torch.softmax(clf(generator_module.decode(chunk.to(device))), dim=1).float().cpu()
                sure += (p >= min_confidence).sum(0)
                argmax += torch.bincount(p.argmax(1), minlength=n_classes)
                probs.append(p)
        zs.append(z)
        drawn += len(z)
        enough = int(sure.min()) >= keep_per_class and int(argmax.min()) >= candidates_per_class
        if enough or drawn >= max_samples:
            break
    z, p = torch.cat(zs), torch.cat(probs)
    short = torch.nonzero(argmax < candidates_per_class).flatten().tolist()
    if short:
        c = short[0]
        raise UserError(f"the GAN made class {c} the classifier's argmax for only {int(argmax[c])} of {drawn} "
                        f"prior draws; candidates_per_class={candidates_per_class} needs more (raise max_samples, "
                        "or train the GAN longer)")
    taken = torch.zeros(len(z), dtype=torch.bool)
    keep = []
    for c in range(n_classes):
        members = torch.nonzero((p[:, c] >= min_confidence) & ~taken).flatten()
        if len(members) < keep_per_class:
            raise UserError(f"the GAN gave only {len(members)} samples of class {c} with confidence >= "
                            f"{min_confidence} among {drawn} prior draws; keep_per_class={keep_per_class} needs "
                            "more (train the GAN longer, or on a GPU)")
        order = torch.argsort(p[members, c], descending=True, stable=True)
        chosen = members[order[:keep_per_class]]
        taken[chosen] = True
        keep.append(chosen)
    index, label = torch.cat(keep), torch.arange(n_classes).repeat_interleave(keep_per_class)
    kept = Latents(z[index], torch.zeros_like(z[index]), label, p[index, label])
    return GanDraws(kept, drawn, sure.tolist(), argmax.tolist())


def _split_per_class(lat: Latents, test_per_class: int, seed: int) -> tuple[Latents, Latents]:
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in torch.unique(lat.y):
        members = torch.nonzero(lat.y == c).flatten()
        members = members[torch.randperm(len(members), generator=g)]
        test.append(members[:test_per_class])
        train.append(members[test_per_class:])
    return lat.subset(torch.sort(torch.cat(train)).values), lat.subset(torch.sort(torch.cat(test)).values)


def _save(directory, split: LatentSplit) -> None:
    from ltrans.files import atomic_write_json, save_arrays

    arrays = {}
    for part in ("train", "test"):
        lat = getattr(split, part)
        for field in ("mu", "std", "y", "confidence"):
            arrays[f"{part}_{field}"] = getattr(lat, field).numpy()
    save_arrays(directory / "latents.npz", **arrays)
    atomic_write_json(directory / "record.json", split.record)


def _read(directory) -> LatentSplit:
    import json

    from ltrans.files import load_arrays

    arrays = {k: torch.from_numpy(v) for k, v in load_arrays(directory / "latents.npz").items()}
    parts = [Latents(*(arrays[f"{p}_{f}"] for f in ("mu", "std", "y", "confidence"))) for p in ("train", "test")]
    return LatentSplit(parts[0], parts[1], json.loads((directory / "record.json").read_text()))


def latent_dataset(name: str, *, store=None, preset: str = "full", device: str = "cpu",
                   progress: bool = False, seed: int = 0) -> LatentSplit:
    """The cached latent dataset of base model ``name`` (built on first use)."""
    from ltrans.artifacts import Store, make_key
    from ltrans.data import load_split
    from ltrans.models import zoo
    from ltrans.models.base import BASE_MODELS
    from ltrans.models.space import to_model_space

    store = store or Store()
    spec = BASE_MODELS[name]
    base = zoo.base_model(name, store=store, preset=preset, device=device, progress=progress)
    parts = {"format": LATENTS_FORMAT, "base": base.record["key"], "seed": seed}
    clf = None
    if spec.kind == "gan":
        clf = zoo.classifier(spec.domain, store=store, preset=preset, device=device, progress=progress)
        selection = GAN_SELECTION[preset]
        parts |= {"classifier": clf.record["key"], **dataclasses.asdict(selection)}
    key = make_key("latents", name, **parts)

    def build(directory) -> None:
        extra = {}
        if spec.kind == "vae":
            split = load_split(spec.domain, store=store)
            train = vae_latents(base.module, to_model_space(spec.domain, split.train.x),
                                torch.from_numpy(split.train.y))
            test = vae_latents(base.module, to_model_space(spec.domain, split.test.x),
                               torch.from_numpy(split.test.y))
        else:
            draws = gan_selection(base.module, clf.module, n_samples=selection.samples,
                                  keep_per_class=selection.keep, seed=seed,
                                  min_confidence=selection.min_confidence, max_samples=selection.max_samples,
                                  candidates_per_class=selection.candidates)
            train, test = _split_per_class(draws.latents, selection.test, seed)
            extra = {"prior_draws": draws.drawn, "confident_per_class": draws.confident_per_class,
                     "argmax_per_class": draws.argmax_per_class}
        record = {"name": name, "domain": spec.domain, "kind": spec.kind, "key": key.digest, **parts,
                  "n_train": len(train), "n_test": len(test), "latent_dim": train.dim, **extra}
        _save(directory, LatentSplit(train, test, record))

    return _read(store.get_or_create(key, build))
