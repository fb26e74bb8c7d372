"""Samples of a frozen base model, judged by its domain's classifier (``ltrans base sample``).

Prior samples: draw z ~ N(0, I), decode, classify: the fraction of confident samples and the count per
class say whether a generative model covers every class (GAN latents need that), and the most
confident samples of each class are what a person looks at to judge that the classes are recognisable.

Class-conditional samples (VAEs, which have an encoder): for each class c, draw from a Gaussian mixture
fitted to the class's aggregate posterior, the mixture of the posteriors N(mu_i, diag sigma_i^2) of its
training examples ("ex-post density estimation", Ghosh et al., ICLR 2020), decode, classify. Each of the
mixture's components matches the first two moments of its share of the posteriors (mean and covariance
of the mu_i it is responsible for, plus their mean diag sigma_i^2); with one component that is the
moment-matched Gaussian of the whole class. How many components a class gets (``MIXTURE_COMPONENTS``)
is chosen by the log-likelihood of a held-out fifth of that class's posterior means, never by the
classifier. The share of draws for class c that the classifier calls c (with confidence >= CONFIDENT)
says whether the model's latent regions of each class decode to recognisable members of it, without
choosing among the draws. A class's region is rarely one ellipsoid: one Gaussian over it puts mass in
the holes between its modes (on the animal VAE, the mean latent of 7 of the 10 classes decodes to
another class), and a VAE's plain prior draws land in holes between the class regions far more often
than a GAN's, so this is the VAE's measure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

CONFIDENT = 0.9  # the same threshold as the GAN latent selection (ltrans.latents.GAN_SELECTION)
QUALITY_SAMPLES = 2000  # prior draws behind the quality figure of a GAN in `ltrans base ls`
# Candidate component counts of a class's mixture. Chosen on the embedded data (seed 0, 2026-12-06): 3-6
# for the MNIST VAEs' digits, 2-4 for the animal VAE's classes, 1 for every spoken VAE digit; 8 never.
MIXTURE_COMPONENTS = (1, 2, 3, 4, 6, 8)
HELD_OUT = 0.2  # share of a class's training posteriors that scores each candidate count
MIN_PER_COMPONENT = 10  # a candidate needs this many fitting rows per component


@dataclass(frozen=True)
class PriorSamples:
    """z (n, d); x model-space outputs (n, ...); label, confidence (n,) from the domain classifier."""

    z: torch.Tensor
    x: torch.Tensor
    label: torch.Tensor
    confidence: torch.Tensor

    def confident_fraction(self, threshold: float = CONFIDENT) -> float:
        return float((self.confidence >= threshold).float().mean())

    def per_class(self, n_classes: int, threshold: float = CONFIDENT) -> list[int]:
        """How many samples are confidently each class."""
        sure = self.label[self.confidence >= threshold]
        return [int((sure == c).sum()) for c in range(n_classes)]

    def best_of_class(self, c: int, k: int) -> torch.Tensor:
        """Indices of the (up to) k most confident samples labelled c, most confident first."""
        members = torch.nonzero(self.label == c).flatten()
        order = torch.argsort(self.confidence[members], descending=True, stable=True)
        return members[order[:k]]


@torch.no_grad()
def prior_samples(decoder: torch.nn.Module, classifier: torch.nn.Module, latent_dim: int, *, n: int,
                  seed: int = 0, batch: int = 500) -> PriorSamples:
    """``n`` seeded prior draws of a frozen decoder, decoded and classified (all tensors on the CPU)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    z = torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed))
    return _judge(decoder, classifier, z, batch)


@torch.no_grad()
def _judge(decoder: torch.nn.Module, classifier: torch.nn.Module, z: torch.Tensor, batch: int) -> PriorSamples:
    """Decode ``z`` in batches and classify: PriorSamples on the CPU."""
    device = next(decoder.parameters()).device
    xs, probs = [], []
    for chunk in z.split(batch):
        x = decoder.decode(chunk.to(device))
        probs.append(torch.softmax(classifier(x), dim=1).float().cpu())
        xs.append(x.float().cpu())
    confidence, label = torch.cat(probs).max(dim=1)
    return PriorSamples(z, torch.cat(xs), label, confidence)


@dataclass(frozen=True)
class ConditionalSamples:
    """Draws for intended classes: ``target`` (n,) the class each was drawn for, ``samples`` as judged,
    ``components`` the mixture size used for each class."""

    target: torch.Tensor
    samples: PriorSamples
    components: tuple[int, ...] = ()

    def accuracy(self, threshold: float = 0.0) -> float:
        """Share of draws classified as their target class with confidence >= ``threshold``."""
        s = self.samples
        return float(((s.label == self.target) & (s.confidence >= threshold)).float().mean())

    def per_class_accuracy(self, n_classes: int, threshold: float = CONFIDENT) -> list[float]:
        s = self.samples
        hit = (s.label == self.target) & (s.confidence >= threshold)
        return [float(hit[self.target == c].float().mean()) if bool((self.target == c).any()) else float("nan")
                for c in range(n_classes)]


def _class_rows(mu: torch.Tensor, std: torch.Tensor, y: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    m, s = mu[y == c].double(), std[y == c].double()
    if len(m) < 2:
        raise ValueError(f"class {c} has {len(m)} training latents; class-conditional samples need >= 2")
    return m, s


def class_gaussians(mu: torch.Tensor, std: torch.Tensor, y: torch.Tensor, n_classes: int,
                    jitter: float = 1e-5) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per class: (mean (d,), Cholesky factor (d, d)) of the moment-matched Gaussian of its aggregate
    posterior (see the module docstring); ``jitter`` on the diagonal keeps the factorisation defined."""
    return [_moment_gaussian(*_class_rows(mu, std, y, c), jitter) for c in range(n_classes)]


def _moment_gaussian(m: torch.Tensor, s: torch.Tensor, jitter: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (d,), Cholesky factor (d, d)) of the mixture of N(m_i, diag s_i^2): mean(m), cov(m) + mean(s^2)."""
    cov = torch.cov(m.T).reshape(m.shape[1], m.shape[1]) + torch.diag(s.pow(2).mean(0) + jitter)
    return m.mean(0), torch.linalg.cholesky(cov)


@dataclass(frozen=True)
class Mixture:
    """A Gaussian mixture in float64: ``weights`` (k,), ``means`` (k, d), ``chols`` (k, d, d) Cholesky
    factors of the component covariances."""

    weights: torch.Tensor
    means: torch.Tensor
    chols: torch.Tensor

    @property
    def k(self) -> int:
        return len(self.weights)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(n, d) -> (n,) log-density of each row under the mixture."""
        diff = (x.double()[None] - self.means[:, None]).transpose(1, 2)  # (k, d, n)
        white = torch.linalg.solve_triangular(self.chols, diff, upper=False)  # (k, d, n)
        log_det = self.chols.diagonal(dim1=1, dim2=2).log().sum(1)  # (k,) half the log-determinant
        d = x.shape[1]
        per = -0.5 * white.pow(2).sum(1) - log_det[:, None] - 0.5 * d * math.log(2 * math.pi)  # (k, n)
        return torch.logsumexp(per + self.weights.log()[:, None], dim=0)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n draws (n, d): a component by weight, then a Gaussian draw from it."""
        pick = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)  # eps, then z
        for k in range(self.k):  # per component: a factor per draw is (n, d, d), 800 MB for 10,000 100-d draws
            rows = pick == k
            z[rows] = self.means[k] + z[rows] @ self.chols[k].T
        return z


def _fit_mixture(m: torch.Tensor, s: torch.Tensor, k: int, seed: int, jitter: float) -> Mixture:
    """k components by EM on the posterior means m (n, d), each widened to the moments of its share of
    the posteriors: cov = weighted cov(m) + weighted mean of s^2 (s (n, d) the posterior stds)."""
    if k == 1:
        mean, chol = _moment_gaussian(m, s, jitter)
        return Mixture(torch.ones(1, dtype=torch.float64), mean[None], chol[None])
    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(k, covariance_type="full", reg_covar=jitter, random_state=seed).fit(m.numpy())
    resp = torch.as_tensor(gm.predict_proba(m.numpy()))  # (n, k) responsibilities
    mass = resp.sum(0) + 1e-12  # (k,)
    means = (resp.T @ m) / mass[:, None]  # (k, d)
    diff = m[None] - means[:, None]  # (k, n, d)
    cov = torch.einsum("kn,kni,knj->kij", resp.T, diff, diff) / mass[:, None, None]
    cov = cov + torch.diag_embed((resp.T @ s.pow(2)) / mass[:, None] + jitter)
    return Mixture(mass / mass.sum(), means, torch.linalg.cholesky(cov))


def class_mixture(m: torch.Tensor, s: torch.Tensor, *, components: tuple[int, ...] = MIXTURE_COMPONENTS,
                  seed: int = 0, jitter: float = 1e-5) -> Mixture:
    """The mixture of one class's posteriors (means m, stds s, both (n, d)), its size chosen from
    ``components`` by the mean log-likelihood of a seeded held-out fifth of m under a fit to the rest,
    then refitted on all of m. Counts with fewer than MIN_PER_COMPONENT fitting rows a component are
    not tried; one component is always possible."""
    perm = torch.randperm(len(m), generator=torch.Generator().manual_seed(seed))
    n_held = int(len(m) * HELD_OUT)
    held, fit = perm[:n_held], perm[n_held:]
    usable = [k for k in components if k == 1 or k * MIN_PER_COMPONENT <= len(fit)]
    if len(usable) > 1 and n_held > 0:
        scores = [float(_fit_mixture(m[fit], s[fit], k, seed, jitter).log_prob(m[held]).mean()) for k in usable]
        best = usable[max(range(len(usable)), key=scores.__getitem__)]
    else:
        best = usable[0] if usable else 1
    return _fit_mixture(m, s, best, seed, jitter)


def class_mixtures(mu: torch.Tensor, std: torch.Tensor, y: torch.Tensor, n_classes: int, *,
                   components: tuple[int, ...] = MIXTURE_COMPONENTS, seed: int = 0) -> list[Mixture]:
    """``class_mixture`` of each class 0..n_classes-1 of the training posteriors (mu, std, y)."""
    return [class_mixture(*_class_rows(mu, std, y, c), components=components, seed=seed) for c in range(n_classes)]


@torch.no_grad()
def class_conditional_samples(decoder: torch.nn.Module, classifier: torch.nn.Module, mu: torch.Tensor,
                              std: torch.Tensor, y: torch.Tensor, *, n_per_class: int, n_classes: int,
                              seed: int = 0, batch: int = 500,
                              components: tuple[int, ...] = MIXTURE_COMPONENTS) -> ConditionalSamples:
    """``n_per_class`` seeded draws per class from ``class_mixtures`` of the training posteriors
    (mu, std, y), decoded and classified; rows grouped by class, class 0 first. ``components=(1,)``
    draws from the moment-matched Gaussian of each class."""
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    g = torch.Generator().manual_seed(seed)
    mixtures = class_mixtures(mu, std, y, n_classes, components=components, seed=seed)
    z = torch.cat([mix.sample(n_per_class, g) for mix in mixtures]).float()
    target = torch.arange(n_classes).repeat_interleave(n_per_class)
    return ConditionalSamples(target, _judge(decoder, classifier, z, batch), tuple(mix.k for mix in mixtures))


def conditional_summary(cond: ConditionalSamples, class_names: list[str]) -> dict:
    """JSON-able figures: accuracy and confident accuracy overall and per class."""
    per_class = cond.per_class_accuracy(len(class_names))
    return {"n_per_class": len(cond.target) // len(class_names), "threshold": CONFIDENT,
            "accuracy": cond.accuracy(), "confident_accuracy": cond.accuracy(CONFIDENT),
            "confident_accuracy_per_class": dict(zip(class_names, per_class)),
            "min_class_confident_accuracy": float(np.nanmin(per_class)),
            "components_per_class": dict(zip(class_names, cond.components))}


def summary(samples: PriorSamples, class_names: list[str]) -> dict:
    """JSON-able figures: confident fraction, confident count per class, mean confidence."""
    counts = samples.per_class(len(class_names))
    return {"n": len(samples.z), "threshold": CONFIDENT, "confident_fraction": samples.confident_fraction(),
            "mean_confidence": float(samples.confidence.mean()),
            "confident_per_class": dict(zip(class_names, counts)), "min_class_count": int(np.min(counts))}


def _quality_key(record: dict, classifier: dict):
    """Key of the summary of a base model (``record``) judged by its domain's classifier (``classifier``)."""
    from ltrans.artifacts import make_key

    return make_key("sample_quality", record["name"], model=record["key"], classifier=classifier["key"],
                    n=QUALITY_SAMPLES, threshold=CONFIDENT, conditional="mixture",
                    components=list(MIXTURE_COMPONENTS), held_out=HELD_OUT, min_per_component=MIN_PER_COMPONENT)


def sample_quality(name: str, *, store, preset: str = "full", device: str = "cpu") -> dict:
    """The stored summary of QUALITY_SAMPLES prior draws of base model ``name`` (computed once); for a
    VAE also ``class_conditional``, the summary of QUALITY_SAMPLES class-conditional draws."""
    import json

    from ltrans.data.base import DATASETS
    from ltrans.files import atomic_write_json
    from ltrans.models import zoo
    from ltrans.models.base import BASE_MODELS

    spec = BASE_MODELS[name]
    model = zoo.base_model(name, store=store, preset=preset, device=device)
    clf = zoo.classifier(spec.domain, store=store, preset=preset, device=device)

    names = list(DATASETS[spec.domain].class_names)

    def build(out) -> None:
        samples = prior_samples(model.module, clf.module, model.module.latent_dim, n=QUALITY_SAMPLES, seed=0)
        figures = summary(samples, names)
        if spec.kind == "vae":
            figures["class_conditional"] = conditional_summary(
                vae_conditional(name, model.module, clf.module, store=store, preset=preset, device=device,
                                n_per_class=QUALITY_SAMPLES // len(names)), names)
        atomic_write_json(out / "summary.json", figures)

    path = store.get_or_create(_quality_key(model.record, clf.record), build)
    return json.loads((path / "summary.json").read_text())


def vae_conditional(name: str, decoder, classifier, *, store, preset: str, device: str, n_per_class: int,
                    seed: int = 0) -> ConditionalSamples:
    """Class-conditional draws of VAE ``name`` from its cached training posteriors (``latent_dataset``)."""
    from ltrans.data.base import DATASETS
    from ltrans.latents import latent_dataset
    from ltrans.models.base import BASE_MODELS

    train = latent_dataset(name, store=store, preset=preset, device=device).train
    n_classes = len(DATASETS[BASE_MODELS[name].domain].class_names)
    return class_conditional_samples(decoder, classifier, train.mu, train.std, train.y, n_per_class=n_per_class,
                                     n_classes=n_classes, seed=seed)


def stored_quality(record: dict, store) -> dict | None:
    """The sample-quality summary of a trained model's record, judged by the stored classifier of its
    domain, if it was computed, else None."""
    import json

    from ltrans.models import zoo

    classifier = zoo.is_trained(record["domain"], store=store, preset=record["preset"], kind="classifier")
    if classifier is None:
        return None
    key = _quality_key(record, classifier)
    return json.loads((store.open(key) / "summary.json").read_text()) if store.exists(key) else None

