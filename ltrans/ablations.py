"""The paper's ablations and baselines as lists of named trial configs (Tian & Engel 2019, section 5).

- ladder: AE only -> VAE (+ beta_kl) -> + SWD -> + classifier (the full bridge);
- label budget: n_sup in {0, 10, 100, 1000, all} for the full bridge and the Procrustes baseline
  (Maiorca et al., NeurIPS 2023) fitted on the same labelled anchors;
- classifier: trained (ours) vs frozen at its random init (the authors' code).

Every variant changes only what its name says; steps, seeds and pairs stay those of the base config.
"""

from __future__ import annotations

from collections.abc import Iterator

from ltrans.config import override
from ltrans.pipeline import TrialConfig

LABEL_BUDGETS = (0, 10, 100, 1000, -1)


def ladder(base: TrialConfig) -> Iterator[tuple[str, TrialConfig]]:
    """AE -> VAE -> +SWD -> +classifier, each keeping the base config's betas where switched on."""
    b = base.bridge
    yield "ae", override(base, {"bridge.beta_kl": 0.0, "bridge.beta_swd": 0.0, "bridge.beta_cls": 0.0,
                                "bridge.sample_posterior": False})
    yield "vae", override(base, {"bridge.beta_swd": 0.0, "bridge.beta_cls": 0.0})
    yield "vae+swd", override(base, {"bridge.beta_cls": 0.0, "bridge.beta_swd": b.beta_swd or 1.0})
    yield "full", base


def label_budget(base: TrialConfig) -> Iterator[tuple[str, TrialConfig]]:
    """The full bridge and the Procrustes baseline at each labelled budget per domain."""
    for n_sup in LABEL_BUDGETS:
        tag = "all" if n_sup == -1 else str(n_sup)
        yield f"bridge n_sup={tag}", override(base, {"bridge.n_sup": n_sup})
        if n_sup != 0:  # Procrustes has nothing to fit on without labelled anchors
            yield f"procrustes n_sup={tag}", override(base, {"method": "procrustes", "bridge.n_sup": n_sup})


def classifier(base: TrialConfig) -> Iterator[tuple[str, TrialConfig]]:
    yield "trained classifier", base
    yield "frozen classifier", override(base, {"bridge.freeze_classifier": True})


STUDIES = {"ladder": ladder, "labels": label_budget, "classifier": classifier}


def variants(base: TrialConfig, studies: tuple[str, ...] = tuple(STUDIES)) -> list[tuple[str, str, TrialConfig]]:
    """(study, variant name, config) for the chosen studies, without duplicate configs."""
    seen, out = set(), []
    for study in studies:
        for name, cfg in STUDIES[study](base):
            if cfg not in seen:
                seen.add(cfg)
                out.append((study, name, cfg))
    return out
