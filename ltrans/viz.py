"""Pictures a person looks at: labelled PNG grids of images and spectrograms (Pillow only).

Arrays in, PNG files out; values are expected in [0, 1] (images and model-space spectrograms).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ltrans.errors import UserError

# A perceptually ordered dark-blue -> green -> yellow ramp (anchor colours chosen by eye, viridis-like).
_RAMP = np.array(
    [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64
)


def colormap(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (any shape) to RGB uint8 (..., 3) along the ramp."""
    v = np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0) * (len(_RAMP) - 1)
    low = np.floor(v).astype(int).clip(0, len(_RAMP) - 2)
    frac = (v - low)[..., None]
    return (_RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac).round().astype(np.uint8)


def spectrogram_rgb(spec: np.ndarray) -> np.ndarray:
    """(n_mels, frames) in [0, 1] -> RGB image with low frequencies at the bottom."""
    return colormap(np.flipud(spec))


def to_rgb(tile: np.ndarray) -> np.ndarray:
    if tile.ndim == 2:
        return np.repeat((np.clip(tile, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=2)
    return tile


def tile_grid(
    tiles: Sequence[Sequence[np.ndarray]],
    row_labels: Sequence[str] | None = None,
    scale: int = 2,
    pad: int = 2,
) -> Image.Image:
    """A grid image of ``tiles[row][col]`` (2-d grey in [0, 1] or RGB uint8), labelled on the left.

    A row may be empty (a class without examples); it stays blank. All rows empty is a UserError.
    """
    first = next((row[0] for row in tiles if len(row)), None)
    if first is None:
        raise UserError(f"nothing to draw: all {len(tiles)} rows of the grid are empty (no examples)")
    h, w = to_rgb(first).shape[:2]
    n_rows, n_cols = len(tiles), max(len(r) for r in tiles)
    label_w = 8 + 7 * max((len(s) for s in row_labels), default=0) if row_labels else 0
    width = label_w + n_cols * (w * scale + pad) + pad
    height = n_rows * (h * scale + pad) + pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for r, row in enumerate(tiles):
        top = pad + r * (h * scale + pad)
        if row_labels:
            draw.text((4, top + h * scale // 2 - 6), row_labels[r], fill=(0, 0, 0), font=font)
        for c, tile in enumerate(row):
            img = Image.fromarray(to_rgb(tile)).resize((w * scale, h * scale), Image.NEAREST)
            canvas.paste(img, (label_w + pad + c * (w * scale + pad), top))
    return canvas


def save_png(image: Image.Image, path: Path) -> Path:
    """Write ``image`` as PNG atomically (never a half-written file)."""
    from ltrans.files import atomic_write_bytes

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def per_class_rows(x: np.ndarray, y: np.ndarray, n_classes: int, per_class: int) -> list[list[np.ndarray]]:
    """The first ``per_class`` examples of each class, one row per class."""
    return [list(x[np.flatnonzero(y == c)[:per_class]]) for c in range(n_classes)]
