"""ltrans: latent translation between frozen generative models (Tian & Engel, arXiv 1902.08261).

Importing the package is cheap: it never imports ray or plotly. Subpackages fill their registries
when imported (``ltrans.data`` fills ``DATASETS``).
"""

from __future__ import annotations

__version__ = "0.1.0"
