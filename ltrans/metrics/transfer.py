"""Data-space evaluation of a translation between two frozen domains (DESIGN.md section 1, "Evaluation").

A -> B transfer accuracy: decode the source latent with A's frozen model and classify it with A's
data-space classifier (the *source label*); translate the latent to B, decode with B's frozen model
and classify with B's classifier; the accuracy is the fraction where the two labels agree. For a VAE
source "the source" is the decoded posterior mean, for a GAN the decoded prior sample, so both kinds
are judged the same way.

Also: reconstruction agreement (A -> A through the bridge), joint prior samples decoded into both
domains, 10x10 confusion matrices with their conditional entropy, the Frechet distance between
translated outputs and real target data in the target classifier's penultimate features (our FID
analogue), and interpolation smoothness (see ``interpolation_smoothness``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ltrans.latents import LatentSplit
from ltrans.metrics.frechet import frechet_distance

# translate(z_src (n, d_src), src "a"|"b", dst "a"|"b") -> z_dst (n, d_dst)
Translate = Callable[[torch.Tensor, str, str], torch.Tensor]
# Seed of every random choice an evaluation makes (its held-out subset, interpolation paths, joint prior
# draws): fixed, not the trial's, so trials of different seeds are judged on the same examples and a seed
# study measures training alone.
EVAL_SEED = 0


@dataclass(frozen=True)
class Side:
    """One domain's frozen pieces: generative decoder, data-space classifier, latents, real features."""

    model: str
    domain: str
    decoder: torch.nn.Module
    classifier: torch.nn.Module
    latents: LatentSplit
    real_features: np.ndarray  # (m, k) classifier features of real held-out data of this domain
    # Figures that depend only on this side's frozen pieces (the source labels of an evaluation set),
    # computed once per process and shared by every translator evaluated against it.
    memo: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Decoded:
    """Labels (n,), penultimate classifier features (n, k) and, when asked, model-space outputs (CPU)."""

    labels: np.ndarray
    features: np.ndarray
    x: torch.Tensor | None = None


@torch.no_grad()
def decode_and_classify(side: Side, z: torch.Tensor, batch: int = 500, keep_x: bool = False) -> Decoded:
    """Decode latents ``z`` with the side's frozen model and classify them (the conv body runs once)."""
    device = next(side.decoder.parameters()).device
    labels, feats, xs = [], [], []
    for chunk in z.split(batch):
        x = side.decoder.decode(chunk.to(device))
        f = side.classifier.features(x)
        labels.append(side.classifier.readout(f).argmax(1).cpu())
        feats.append(f.float().cpu())
        if keep_x:
            xs.append(x.float().cpu())
    return Decoded(torch.cat(labels).numpy(), torch.cat(feats).numpy(), torch.cat(xs) if keep_x else None)


def eval_set(side: Side, n_eval: int, seed: int = EVAL_SEED) -> tuple[torch.Tensor, np.ndarray]:
    """The class-balanced held-out posterior means of ``side`` and their source labels (memoised)."""
    key = ("eval_set", n_eval, seed)
    if key not in side.memo:
        test = side.latents.test
        z = test.mu[balanced_index(test.y, n_eval, seed)]
        side.memo[key] = (z, decode_and_classify(side, z).labels)
    return side.memo[key]


def balanced_index(y: torch.Tensor, n_total: int, seed: int, n_classes: int = 10) -> torch.Tensor:
    """Class-balanced subset of row indices: n_total // n_classes per class (fewer if a class is short)."""
    g = torch.Generator().manual_seed(seed)
    per_class = max(1, n_total // n_classes)
    picks = []
    for c in range(n_classes):
        members = torch.nonzero(y == c).flatten()
        picks.append(members[torch.randperm(len(members), generator=g)[:per_class]])
    return torch.sort(torch.cat(picks)).values


def confusion(src: np.ndarray, dst: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """(n_classes, n_classes) counts: rows the source label, columns the translated label."""
    return np.bincount(src * n_classes + dst, minlength=n_classes**2).reshape(n_classes, n_classes)


def conditional_entropy(matrix: np.ndarray) -> float:
    """H(dst label | src label) in bits, weighted by row counts: 0 for a deterministic mapping."""
    rows = matrix.sum(1, keepdims=True)
    p = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    logs = np.log2(p, out=np.zeros_like(p), where=p > 0)
    per_row = -(p * logs).sum(1)
    return float((per_row * rows[:, 0]).sum() / max(rows.sum(), 1))


def direction_metrics(translate: Translate, src: Side, dst: Side, src_name: str, dst_name: str,
                      z: torch.Tensor, src_labels: np.ndarray | None = None) -> dict:
    """Transfer accuracy, confusion, entropy and Frechet distance of src -> dst on latents ``z``."""
    if src_labels is None:
        src_labels = decode_and_classify(src, z).labels
    out = decode_and_classify(dst, translate(z, src_name, dst_name))
    dst_labels, dst_feats = out.labels, out.features
    matrix = confusion(src_labels, dst_labels)
    tag = f"{src_name}_to_{dst_name}"
    return {
        f"transfer_{tag}": float((src_labels == dst_labels).mean()),
        f"entropy_{tag}": conditional_entropy(matrix),
        f"fid_{tag}": frechet_distance(dst_feats, dst.real_features),
        f"confusion_{tag}": matrix.flatten().tolist(),
    }


def reconstruction_agreement(translate: Translate, side: Side, name: str, z: torch.Tensor,
                             src_labels: np.ndarray) -> float:
    """Fraction of examples whose class survives name -> name through the translator."""
    labels = decode_and_classify(side, translate(z, name, name)).labels
    return float((labels == src_labels).mean())


def interpolation_smoothness(translate: Translate, src: Side, dst: Side, src_name: str, dst_name: str,
                             z: torch.Tensor, labels: np.ndarray, n_paths: int = 50, steps: int = 9,
                             seed: int = 0) -> dict:
    """Label consistency and step evenness along within-class paths, translated src -> dst.

    For pairs of same-class source latents, interpolate linearly in the source latent space, translate
    every point and decode it in dst. ``consistency``: fraction of path points classified as the class
    of the endpoints (1 = the path never leaves the class). ``step_cv``: coefficient of variation of the
    data-space distances between consecutive decoded points (0 = evenly paced, large = jumps).
    """
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, steps)[:, None]
    classes = np.unique(labels)
    paths, path_class = [], []
    for i in range(n_paths):
        members = np.flatnonzero(labels == classes[i % len(classes)])
        if len(members) < 2:
            continue
        a, b = members[torch.randperm(len(members), generator=g)[:2].numpy()]
        paths.append((1 - t) * z[a] + t * z[b])  # (steps, d_src)
        path_class.append(classes[i % len(classes)])
    tag = f"{src_name}_to_{dst_name}"
    if not paths:  # no class with two members: nothing to interpolate (the trial then fails as non-finite)
        return {f"interp_consistency_{tag}": float("nan"), f"interp_step_cv_{tag}": float("nan")}
    # Every path translated, decoded and classified in one batch; rows stay in path order.
    out = decode_and_classify(dst, translate(torch.cat(paths), src_name, dst_name), keep_x=True)
    x = out.x.flatten(1).reshape(len(paths), steps, -1)
    jumps = (x[:, 1:] - x[:, :-1]).norm(dim=2)  # (paths, steps - 1)
    cvs = jumps.std(dim=1) / jumps.mean(dim=1).clamp_min(1e-8)
    agree = (out.labels.reshape(len(paths), steps) == np.array(path_class)[:, None]).mean(1)
    return {f"interp_consistency_{tag}": float(np.mean(agree)), f"interp_step_cv_{tag}": float(cvs.mean())}


def evaluate(translate: Translate, a: Side, b: Side, *, n_eval: int = 1000, seed: int = EVAL_SEED,
             sample_joint: Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]] | None = None,
             with_reconstruction: bool = True) -> dict:
    """Every evaluation figure of one translator, on class-balanced held-out latents (posterior means);
    ``seed`` makes every random choice of the evaluation (EVAL_SEED for trials)."""
    out: dict = {}
    for (src, dst, s, d) in ((a, b, "a", "b"), (b, a, "b", "a")):
        z, src_labels = eval_set(src, n_eval, seed)
        out.update(direction_metrics(translate, src, dst, s, d, z, src_labels))
        if with_reconstruction:
            out[f"recon_{s}"] = reconstruction_agreement(translate, src, s, z, src_labels)
        out.update(interpolation_smoothness(translate, src, dst, s, d, z, src_labels, seed=seed))
    if sample_joint is not None:
        z_a, z_b = sample_joint(n_eval, torch.Generator().manual_seed(seed))
        labels_a, labels_b = decode_and_classify(a, z_a).labels, decode_and_classify(b, z_b).labels
        out["prior_agreement"] = float((labels_a == labels_b).mean())
    return out
