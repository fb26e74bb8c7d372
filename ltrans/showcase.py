"""Translations and interpolations a person looks at and listens to (``ltrans translate``).

A trained bridge folder (``ltrans bridge train -o DIR``: config.json + bridge.pt) is loaded back
safely (weights only); held-out source latents are decoded by the source model, translated and decoded
by the target model, and written side by side: per class one row of source/translation pairs (PNG),
with WAVs (Griffin-Lim) for spoken digits. Interpolation strips go along straight lines in the source
latent space, within one class and across two, with the translated strip under the source strip.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ltrans import render
from ltrans.errors import UserError, one_line
from ltrans.metrics.transfer import Side, balanced_index, decode_and_classify

STEPS = 9  # points per interpolation strip, endpoints included
MAX_PER_ROW = 8  # source/translation pairs per class row of a grid


def load_bridge(folder: Path):
    """(TrialConfig, Bridge) of a folder written by ``ltrans bridge train``; clear errors otherwise."""
    from ltrans.bridge.config import BridgeConfig
    from ltrans.pipeline import TrialConfig

    folder = Path(folder)
    config_path, weights = folder / "config.json", folder / "bridge.pt"
    if not config_path.is_file() or not weights.is_file():
        raise UserError(f"{folder} holds no trained bridge (config.json and bridge.pt); train one with "
                        f"`ltrans bridge train PAIR -o {folder}`")
    try:
        raw = json.loads(config_path.read_text())
        cfg = TrialConfig(**{**raw, "bridge": BridgeConfig(**raw["bridge"])})
    except (ValueError, TypeError, KeyError) as err:
        raise UserError(f"{config_path} is not a trial config written by `ltrans bridge train` ({err})") from None
    if cfg.method != "bridge":
        raise UserError(f"{folder} holds a {cfg.method} trial, not a bridge; only bridges can translate here")
    foreign = f"{weights} cannot be loaded: not a torch checkpoint written by `ltrans bridge train`"
    retrain = f"retrain it with `ltrans bridge train {cfg.pair} -o {folder}`"
    with open(weights, "rb") as f:
        if f.read(4) != _ZIP_MAGIC:
            raise UserError(f"{foreign} (torch.save writes a zip archive; this file is not one); {retrain}")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except OSError:
        raise  # unreadable rather than foreign: the CLI names the path and the reason
    except Exception as err:  # noqa: BLE001  a damaged or crafted file fails in many ways (pickle, zip)
        raise UserError(f"{foreign} ({_why_not_loaded(err)}); {retrain}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{foreign} (it holds a {type(state).__name__}, not a dict of tensors); {retrain}")
    if problem := _dims_problem(state.get("dims")):
        raise UserError(f"{weights} cannot be loaded: its dims entry {problem}; {retrain}")
    try:
        model = _bridge_from_state(state, cfg.bridge)
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{weights} cannot be loaded: its tensors do not fit the bridge that {config_path.name} "
                        f"describes ({one_line(err)}); {retrain}") from None
    return cfg, model


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since torch 1.6


def _why_not_loaded(err: Exception) -> str:
    """One line on why torch.load refused a file; its weights-only refusal is a paragraph."""
    if "Weights only load failed" in str(err):
        return "it holds Python objects besides tensors, which a weights-only load never runs"
    return f"{type(err).__name__}: {one_line(err)}"


def _dims_problem(dims: torch.Tensor | None) -> str:
    """What is wrong with a checkpoint's ``dims`` (the two latent sizes, as ``bridge_state`` writes them); ""."""
    if dims is None:
        return "(the two latent sizes) is missing"
    if dims.dtype.is_floating_point or dims.dtype.is_complex or dims.dtype == torch.bool:
        return f"must hold integers, not {dims.dtype}"
    if tuple(dims.shape) != (2,):
        return f"must hold the two latent sizes, shape (2,), not {tuple(dims.shape)}"
    if not bool((dims > 0).all()):
        return f"must hold two positive latent sizes, not {dims.tolist()}"
    return ""


def _bridge_from_state(state: dict, cfg) -> torch.nn.Module:
    from ltrans.bridge.model import Bridge

    dims = [int(d) for d in state["dims"].tolist()]
    model = Bridge(dims[0], dims[1], cfg)
    model.load_state_dict({k: v for k, v in state.items() if k != "dims"})
    return model.eval().requires_grad_(False)


def bridge_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors ``load_bridge`` needs: weights plus the two latent sizes."""
    return {**{k: v.detach().cpu() for k, v in model.state_dict().items()},
            "dims": torch.tensor(model.dims, dtype=torch.long)}


def _decode(side: Side, z: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """Model-space outputs (CPU) and classifier labels of latents z of one side."""
    out = decode_and_classify(side, z, keep_x=True)
    return out.x, out.labels


def _translate(model, z: torch.Tensor, src: str, dst: str) -> torch.Tensor:
    from ltrans.bridge.train import translate_latents

    return translate_latents(model, z, src, dst).cpu()


def write_translations(model, sides: dict[str, Side], src: str, n: int, out: Path, seed: int = 0) -> dict:
    """Per class a row of (source, translation) tiles for ~n held-out source latents; WAVs for audio.

    A row's label "c: k/m" says the target classifier agreed with the source classifier on k of its m pairs.
    """
    dst = "b" if src == "a" else "a"
    s, d = sides[src], sides[dst]
    test = s.latents.test
    idx = balanced_index(test.y, max(n, 10), seed)
    z = test.mu[idx]
    x_src, y_src = _decode(s, z)
    x_dst, y_dst = _decode(d, _translate(model, z, src, dst))
    truth = test.y[idx].numpy()  # rows by the latents' own (pseudo-)labels, so every class shows
    rows, labels = [], []
    for c in sorted(set(truth.tolist())):
        members = np.flatnonzero(truth == c)[:MAX_PER_ROW]
        rows.append([t for i in members for t in (render.tile(s.domain, x_src[i]), render.tile(d.domain, x_dst[i]))])
        labels.append(f"{c}: {int((y_dst[members] == y_src[members]).sum())}/{len(members)}")
    stem = f"{src}_to_{dst}"
    paths = [render.write_grid(rows, labels, out / f"{stem}.png")]
    for side, x, kind in ((s, x_src, "source"), (d, x_dst, "translation")):
        if render.is_audio(side.domain):
            paths += render.write_wavs(list(x), [f"{stem}_{i:03d}_class{y_src[i]}_{kind}" for i in range(len(x))],
                                       out / "wav")
    return {"direction": stem, "n": len(z), "agreement": float((y_src == y_dst).mean()),
            "files": [str(p) for p in paths]}


def _strip_ends(test, labels: np.ndarray, across: bool, n_strips: int, g: torch.Generator) -> list[tuple]:
    classes = sorted(set(labels.tolist()))
    ends = []
    for k in range(n_strips):
        c0 = classes[k % len(classes)]
        c1 = classes[(k + 1) % len(classes)] if across else c0
        a, b = (np.flatnonzero(labels == c) for c in (c0, c1))
        i = int(a[torch.randint(len(a), (1,), generator=g)])
        j = int(b[torch.randint(len(b), (1,), generator=g)])
        if i == j and len(b) > 1:
            j = int(b[b != i][0])
        ends.append((f"{c0}->{c1}", test.mu[i], test.mu[j]))
    return ends


def write_interpolations(model, sides: dict[str, Side], src: str, out: Path, n_strips: int = 5,
                         seed: int = 0) -> list[Path]:
    """Within-class and across-class strips: source row, translated row, STEPS points each."""
    dst = "b" if src == "a" else "a"
    s, d = sides[src], sides[dst]
    t = torch.linspace(0, 1, STEPS)[:, None]
    labels = s.latents.test.y.numpy()  # true labels (pseudo-labels for a GAN)
    paths = []
    for kind, across in (("within", False), ("across", True)):
        rows, row_labels = [], []
        ends = _strip_ends(s.latents.test, labels, across, n_strips, torch.Generator().manual_seed(seed))
        for k, (name, z0, z1) in enumerate(ends):
            path = (1 - t) * z0 + t * z1
            x_src, _ = _decode(s, path)
            x_dst, _ = _decode(d, _translate(model, path, src, dst))
            rows += [[render.tile(s.domain, x) for x in x_src], [render.tile(d.domain, x) for x in x_dst]]
            row_labels += [f"{name} {src}", f"{name} {dst}"]
            for side, x, which in ((s, x_src, src), (d, x_dst, dst)):
                if render.is_audio(side.domain):
                    paths.append(render.write_strip_wav(x, out / "wav" / f"interp_{kind}_{k}_{which}.wav"))
        paths.append(render.write_grid(rows, row_labels, out / f"interp_{kind}_{src}_to_{dst}.png"))
    return paths


def write_examples(model, sides: dict[str, Side], out: Path, n: int = 50, seed: int = 0) -> dict:
    """Translations and interpolation strips in both directions, plus summary.json."""
    from ltrans.files import atomic_write_json

    summary = {}
    for src in ("a", "b"):
        entry = write_translations(model, sides, src, n, out, seed)
        entry["files"] += [str(p) for p in write_interpolations(model, sides, src, out, seed=seed)]
        summary[entry["direction"]] = entry
    atomic_write_json(out / "summary.json", summary)
    return summary


