"""The paper's ablations and baselines as lists of named trial configs (Tian & Engel 2019, section 5).

- ladder: AE only -> VAE (+ beta_kl) -> + SWD -> + classifier (the full bridge);
- label budget: n_sup in {0, 10, 100, 1000, all} for the full bridge and the Procrustes baseline
  (Maiorca et al., NeurIPS 2023) fitted on the same labelled anchors;
- classifier: trained (ours) vs frozen at its random init (the authors' code).

Every variant changes only what its name says; steps, seeds and pairs stay those of the base config.
``over_seeds`` repeats variants with consecutive seeds and ``summarise`` gives each variant's mean and
spread over them: one run each decides little where two variants are a few points apart.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from ltrans.config import MAX_SEED, override
from ltrans.errors import UserError
from ltrans.pipeline import TrialConfig

LABEL_BUDGETS = (0, 10, 100, 1000, -1)


def ladder(base: TrialConfig) -> Iterator[tuple[str, TrialConfig]]:
    """AE -> VAE -> +SWD -> +classifier, each keeping the base config's betas where switched on.

    The AE rung is a plain autoencoder: it feeds the posterior means of the base latents and uses the
    code's mean itself (no sampling of either), as an autoencoder without the KL term would."""
    b = base.bridge
    yield "ae", override(base, {"bridge.beta_kl": 0.0, "bridge.beta_swd": 0.0, "bridge.beta_cls": 0.0,
                                "bridge.sample_posterior": False, "bridge.sample_code": False})
    yield "vae", override(base, {"bridge.beta_swd": 0.0, "bridge.beta_cls": 0.0})
    yield "vae+swd", override(base, {"bridge.beta_cls": 0.0, "bridge.beta_swd": b.beta_swd or 1.0})
    yield "full", base


def label_budget(base: TrialConfig) -> Iterator[tuple[str, TrialConfig]]:
    """The full bridge and the Procrustes baseline at each labelled budget per domain.

    Below "all" the bridge's batches are drawn without class balancing: balanced batches read every
    training label, which a budget of n labels a domain does not have (the paper's balancing stays on
    for "all"). The bridge then sees exactly the labels Procrustes fits on.
    """
    for n_sup in LABEL_BUDGETS:
        tag = "all" if n_sup == -1 else str(n_sup)
        budget = {"bridge.n_sup": n_sup} | ({} if n_sup == -1 else {"bridge.balanced_batches": False})
        yield f"bridge n_sup={tag}", override(base, budget)
        if n_sup != 0:  # Procrustes has nothing to fit on without labelled anchors
            yield f"procrustes n_sup={tag}", override(base, {"method": "procrustes", "bridge.n_sup": n_sup})


def classifier(base: TrialConfig) -> Iterator[tuple[str, TrialConfig]]:
    yield "trained classifier", base
    yield "frozen classifier", override(base, {"bridge.freeze_classifier": True})


STUDIES = {"ladder": ladder, "labels": label_budget, "classifier": classifier}


Variant = tuple[str, str, TrialConfig]  # (study, variant name, config)


def variants(base: TrialConfig, studies: tuple[str, ...] = tuple(STUDIES), names: Iterable[str] = ()) -> list[Variant]:
    """(study, variant name, config) for the chosen studies, without duplicate configs (the first name of
    a config wins). With ``names``, only the variants so called, in study order, chosen before duplicates
    are dropped (so "trained classifier" is found though the ladder's "full" is the same config); an
    unknown name is a UserError listing the valid ones."""
    every = [(study, name, cfg) for study in studies for name, cfg in STUDIES[study](base)]
    names = list(names)
    known = list(dict.fromkeys(name for _, name, _ in every))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"unknown variant {unknown[0]!r}; the chosen studies have: "
                        + ", ".join(repr(n) for n in known))
    seen, out = set(), []
    for study, name, cfg in every:
        if (not names or name in names) and cfg not in seen:
            seen.add(cfg)
            out.append((study, name, cfg))
    return out


def over_seeds(rows: list[Variant], seeds: int) -> list[Variant]:
    """Each variant with seeds ``cfg.seed, cfg.seed + 1, ...`` (``seeds`` of them), seed-major: a run cut
    short still has every variant at the first seeds."""
    if seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {seeds}")
    first = max((cfg.seed for _, _, cfg in rows), default=0)
    if first + seeds - 1 > MAX_SEED:  # checked here, not as each replace() raises a bare ValueError
        raise UserError(f"--seeds {seeds} from seed {first} goes past the largest seed, {MAX_SEED}; "
                        f"use a lower --set seed or fewer --seeds")
    return [(study, name, replace(cfg, seed=cfg.seed + i)) for i in range(seeds) for study, name, cfg in rows]


SUMMARY_METRICS = ("transfer_a_to_b", "transfer_b_to_a")


def summarise(rows: Iterable[Mapping[str, Any]], metrics: tuple[str, ...] = SUMMARY_METRICS) -> list[dict[str, Any]]:
    """One line per (study, variant) of flat ablation rows, in first-seen order: the seeds run, how many
    ended ``ok``, and the mean and sample standard deviation (NaN below two) of each metric over the ok
    rows (NaN when none)."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["study"], row["variant"]), []).append(row)
    out = []
    for (study, variant), group in groups.items():
        ok = [r for r in group if r.get("status") == "ok"]
        line: dict[str, Any] = {"study": study, "variant": variant, "seeds": [r["seed"] for r in group],
                                "n_ok": len(ok)}
        for m in metrics:
            values = [float(r[m]) for r in ok if m in r]
            line[f"{m}_mean"] = statistics.fmean(values) if values else math.nan
            line[f"{m}_std"] = statistics.stdev(values) if len(values) > 1 else math.nan
        out.append(line)
    return out
