"""Model space of each domain: what base models and classifiers consume and produce.

Images are (n, h, w) float32 in [0, 1] as loaded; spoken digits are waveforms as loaded and
normalised log-mel spectrograms in model space (``ltrans.data.audio.to_model_space``).
"""

from __future__ import annotations

import numpy as np
import torch

from ltrans.data.base import DATASETS


def to_model_space(domain: str, x: np.ndarray | torch.Tensor, batch: int = 512) -> torch.Tensor:
    """Loaded examples of ``domain`` -> model-space tensor (float32, CPU)."""
    x = torch.as_tensor(x, dtype=torch.float32)
    if DATASETS[domain].modality == "image":
        return x
    from ltrans.data.audio import to_model_space as spec

    return torch.cat([spec(chunk) for chunk in x.split(batch)]) if len(x) else x


def model_space_settings(domain: str) -> dict[str, float]:
    """What besides the loaded data fixes ``to_model_space`` of ``domain``: the audio front end's settings
    for audio, nothing for images (they are used as loaded)."""
    if DATASETS[domain].modality == "image":
        return {}
    from ltrans.data.audio import front_end

    return front_end()


def fingerprint(*arrays: np.ndarray) -> str:
    """sha256 of the arrays' dtypes, shapes and bytes: the data part of a cache key."""
    import hashlib

    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()
