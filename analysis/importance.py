"""Hyperparameter importance of a run's searched settings for its objective: Optuna's PED-ANOVA.

PED-ANOVA (Watanabe et al., IJCAI 2023, https://arxiv.org/abs/2304.10255) was chosen over fANOVA for
speed: it fits one Parzen estimator per parameter instead of a random forest, ~0.1 s at 10,000 trials
here. It is computed from trials.parquet (the searched ``config/*`` columns and the objective) with
the search space read from sweep.yaml, so it needs no optuna.db and agrees with every other figure.
"""

from __future__ import annotations

import math
import warnings

import pandas as pd
from ltrans.analysis.runs import Results, plain

MIN_OK = 8  # fewer ok trials say nothing about importance
MIN_TOP = 3  # trials in PED-ANOVA's "good" set; the quantile grows for small runs to keep this many


def distributions(space: dict) -> dict:
    """Optuna distributions of a resolved sweep.yaml ``space`` (keys as in config/* columns)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}
    for key, d in space.items():
        if d["type"] == "categorical":
            out[key] = CategoricalDistribution(list(d["choices"]))
        elif d["type"] == "int":
            out[key] = IntDistribution(int(d["low"]), int(d["high"]), log=bool(d.get("log")),
                                       step=int(d.get("step") or 1))
        else:
            out[key] = FloatDistribution(float(d["low"]), float(d["high"]), log=bool(d.get("log")),
                                         step=d.get("step"))
    return out


def importance_of(frame: pd.DataFrame, space: dict, objective: str, direction: str) -> dict[str, float]:
    """{setting: importance} over ``frame``'s ok trials; empty when too few trials or settings."""
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator

    dists = {k: v for k, v in distributions(space).items() if f"config/{k}" in frame
             and frame[f"config/{k}"].nunique() > 1}
    if len(frame) < MIN_OK or not dists:
        return {}
    sign = -1.0 if direction == "maximize" else 1.0  # the evaluator ranks lower values as better
    trials = [optuna.trial.create_trial(params={k: plain(row[f"config/{k}"]) for k in dists},
                                        distributions=dists, value=sign * float(row[objective]))
              for _, row in frame.iterrows()]
    study = optuna.create_study(direction="minimize")
    study.add_trials(trials)
    evaluator = PedAnovaImportanceEvaluator(target_quantile=max(0.1, MIN_TOP / len(trials)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PED-ANOVA's experimental-API notice
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))


def importance_table(results: Results) -> tuple[pd.DataFrame, list[str]]:
    """Columns series, setting, importance, n_trials; and a line for each series left out (and why)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ok = results.ok()
    rows, skipped = [], []
    spaces = {run.label: run.spec.get("space") or {} for run in results.runs}
    for (run, series), frame in ok.groupby(["run", "series"], sort=True):
        values = importance_of(frame, spaces[run], results.objective, results.direction)
        if not values:
            skipped.append(f"{series}: {len(frame)} ok trials (needs {MIN_OK}) or no searched setting varies")
        rows += [{"series": series, "setting": k, "importance": v, "n_trials": len(frame)}
                 for k, v in values.items() if not math.isnan(v)]
    return pd.DataFrame(rows, columns=["series", "setting", "importance", "n_trials"]), skipped
