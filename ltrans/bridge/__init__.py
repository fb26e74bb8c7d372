"""The bridge VAE between two frozen latent spaces (Tian & Engel 2019), its loss, training loop, and a
training-free Procrustes baseline. Pure torch: no I/O, no ray, no plotly."""

from __future__ import annotations

from ltrans.bridge.config import BridgeConfig
from ltrans.bridge.model import Bridge, GatedAffine
from ltrans.bridge.procrustes import LinearMap, fit_procrustes
from ltrans.bridge.train import BridgeResult, train_bridge, translate_latents

__all__ = [
    "Bridge", "BridgeConfig", "BridgeResult", "GatedAffine", "LinearMap", "fit_procrustes", "train_bridge",
    "translate_latents",
]
