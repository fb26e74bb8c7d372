"""Prior samples of a frozen base model, judged by its domain's classifier (``ltrans base sample``).

Draw z ~ N(0, I), decode, classify: the fraction of confident samples and the count per class say
whether a generative model covers every class (GAN latents need that), and the most confident
samples of each class are what a person looks at to judge that the classes are recognisable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

CONFIDENT = 0.9  # the same threshold as the GAN latent selection (ltrans.latents.GAN_SELECTION)
QUALITY_SAMPLES = 2000  # prior draws behind the quality figure of a GAN in `ltrans base ls`


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
    device = next(decoder.parameters()).device
    xs, probs = [], []
    for chunk in z.split(batch):
        x = decoder.decode(chunk.to(device))
        probs.append(torch.softmax(classifier(x), dim=1).float().cpu())
        xs.append(x.float().cpu())
    confidence, label = torch.cat(probs).max(dim=1)
    return PriorSamples(z, torch.cat(xs), label, confidence)


def summary(samples: PriorSamples, class_names: list[str]) -> dict:
    """JSON-able figures: confident fraction, confident count per class, mean confidence."""
    counts = samples.per_class(len(class_names))
    return {"n": len(samples.z), "threshold": CONFIDENT, "confident_fraction": samples.confident_fraction(),
            "mean_confidence": float(samples.confidence.mean()),
            "confident_per_class": dict(zip(class_names, counts)), "min_class_count": int(np.min(counts))}


def _quality_key(record: dict):
    from ltrans.artifacts import make_key

    return make_key("sample_quality", record["name"], model=record["key"], n=QUALITY_SAMPLES, threshold=CONFIDENT)


def sample_quality(name: str, *, store, preset: str = "full", device: str = "cpu") -> dict:
    """The stored summary of QUALITY_SAMPLES prior draws of base model ``name`` (computed once)."""
    import json

    from ltrans.artifacts import atomic_write_json
    from ltrans.data.base import DATASETS
    from ltrans.models import zoo
    from ltrans.models.base import BASE_MODELS

    spec = BASE_MODELS[name]
    model = zoo.base_model(name, store=store, preset=preset, device=device)
    clf = zoo.classifier(spec.domain, store=store, preset=preset, device=device)

    def build(out) -> None:
        samples = prior_samples(model.module, clf.module, spec.latent_dim, n=QUALITY_SAMPLES, seed=0)
        atomic_write_json(out / "summary.json", summary(samples, list(DATASETS[spec.domain].class_names)))

    path = store.get_or_create(_quality_key(model.record), build)
    return json.loads((path / "summary.json").read_text())


def stored_quality(record: dict, store) -> dict | None:
    """The sample-quality summary of a trained model's record if it was computed, else None."""
    import json

    key = _quality_key(record)
    return json.loads((store.path(key) / "summary.json").read_text()) if store.exists(key) else None

