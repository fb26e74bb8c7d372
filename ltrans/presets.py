"""Named experiments, one function each: ``paper(pair)``, ``smoke(pair)`` and ``demo(pair)``.

paper: the authors' bridge setting for the pair (DESIGN.md section 1; ``ltrans.pairs``) over the
full base models. ``ltrans bridge train mnist_mnist`` runs it (first run also trains the base
models: about 3 minutes on 2 CPU cores; the bridge itself 688 s for mnist_mnist's 4,000 steps on one
thread, README).
smoke: the same code path at toy size, over the ``tiny`` base models: seconds on a CPU.
demo: the paper's bridge for 1,500 steps (``ltrans demo``): minutes on a CPU.
"""

from __future__ import annotations

import dataclasses

from ltrans.pairs import PAIRS
from ltrans.pipeline import TrialConfig
from ltrans.registry import Registry

PRESETS: Registry = Registry("preset")


@PRESETS.register("paper")
def paper(pair: str = "mnist_mnist") -> TrialConfig:
    """The authors' setting for ``pair`` on the full base models."""
    return TrialConfig(pair=pair, bridge=PAIRS[pair].paper, base="full")


@PRESETS.register("smoke")
def smoke(pair: str = "mnist_mnist") -> TrialConfig:
    """Same path, toy size: a 2x64 bridge for 200 steps on tiny base models (seconds)."""
    bridge = dataclasses.replace(PAIRS[pair].paper, n_layers=2, width=64, batch_size=128, steps=200,
                                 eval_every=50, n_projections=32)
    return TrialConfig(pair=pair, bridge=bridge, base="tiny", n_eval=200)


@PRESETS.register("demo")
def demo(pair: str = "mnist_mnist") -> TrialConfig:
    """The main job's trial: the paper's architecture and losses, 1,500 steps (``ltrans demo``).

    For mnist_mnist's 4x512 bridge about 4.5 minutes of training on one CPU thread: 175 ms a step,
    measured on a 2-core Intel Xeon (2026-12-07, one torch thread, load ~6), in line with the README's
    688 s for 4,000 steps. mnist_spoken's 8x1024 bridge took 1,656 s for 4,000 steps on two threads
    (README): about 10 minutes for these 1,500.
    """
    return TrialConfig(pair=pair, bridge=dataclasses.replace(PAIRS[pair].paper, steps=1500), base="full")
