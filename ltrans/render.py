"""Model-space outputs a person looks at and listens to: tiles, labelled grids, strips and WAVs.

Base models and bridges produce model-space tensors (images in [0, 1], normalised log-mel
spectrograms for spoken digits). ``tile`` turns one into an RGB picture of a common size, so image and
spectrogram tiles sit side by side in one grid (an image -> audio translation); ``wave`` inverts a
spectrogram to sound with Griffin-Lim. Everything is written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ltrans import viz
from ltrans.data.base import DATASETS

TILE = 64  # side of every tile in pixels (a spectrogram's own size; 28x28 images are scaled up)
GAP_S = 0.15  # silence between the clips of a strip's WAV


def is_audio(domain: str) -> bool:
    return DATASETS[domain].modality == "audio"


def tile(domain: str, x: torch.Tensor | np.ndarray) -> np.ndarray:
    """One model-space example -> (TILE, TILE, 3) uint8: grey image scaled up, or coloured spectrogram."""
    x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    rgb = viz.spectrogram_rgb(x) if is_audio(domain) else viz.to_rgb(x)
    if rgb.shape[:2] != (TILE, TILE):
        rgb = np.asarray(Image.fromarray(rgb).resize((TILE, TILE), Image.NEAREST))
    return rgb


def wave(x: torch.Tensor) -> np.ndarray:
    """Model-space spectrograms (n, 64, 64) -> waveforms (n, samples) by Griffin-Lim, seeded phases."""
    from ltrans.data.audio import from_model_space, griffin_lim

    with torch.no_grad():
        return griffin_lim(from_model_space(x.detach().float().cpu()), generator=torch.Generator().manual_seed(0)
                           ).numpy()


def write_grid(rows: Sequence[Sequence[np.ndarray]], labels: Sequence[str], path: Path) -> Path:
    """A labelled PNG grid of RGB tiles (one row per label)."""
    return viz.save_png(viz.tile_grid(rows, list(labels), scale=1), path)


def write_wavs(clips: Sequence[torch.Tensor], names: Sequence[str], out: Path) -> list[Path]:
    """One WAV per model-space spectrogram, named ``out/NAME.wav``."""
    from ltrans.data.audio import write_wav

    if not clips:
        return []
    out.mkdir(parents=True, exist_ok=True)
    waves = wave(torch.stack(list(clips)))
    paths = []
    for name, w in zip(names, waves, strict=True):
        path = out / f"{name}.wav"
        write_wav(path, w)
        paths.append(path)
    return paths


def write_strip_wav(clips: torch.Tensor, path: Path) -> Path:
    """The clips of one strip (n, 64, 64) played in order with short silences between them."""
    from ltrans.data.audio import SAMPLE_RATE, write_wav

    path.parent.mkdir(parents=True, exist_ok=True)
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32)
    parts = [p for w in wave(clips) for p in (w.astype(np.float32), gap)]
    write_wav(path, np.concatenate(parts[:-1]))
    return path
