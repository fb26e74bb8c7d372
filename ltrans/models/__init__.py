"""Frozen base models and domain classifiers. Importing this package fills BASE_MODELS and CLASSIFIERS."""

from __future__ import annotations

from ltrans.models import classifier, gan, specgan, spoken, spoken_classifier, vae  # noqa: F401  (registration)
from ltrans.models.base import BASE_MODELS, CLASSIFIERS, BaseSpec, ClassifierSpec

__all__ = ["BASE_MODELS", "CLASSIFIERS", "BaseSpec", "ClassifierSpec"]
