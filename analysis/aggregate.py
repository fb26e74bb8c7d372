"""Tables the report draws, computed with pandas from the tidy trials frame (``analysis.runs``).

Seeds of one setting are grouped by ``config_id`` and summarised as mean and spread (sample standard
deviation; NaN for a single seed). "Best" always means the best seed-mean of the run's objective.
"""

from __future__ import annotations

import pandas as pd
from ltrans.analysis.runs import RUNGS, Results

STATUSES = ("ok", "pruned", "failed")
# The leaderboard's figures: transfer accuracy both ways and the FID analogue both ways (metrics.transfer).
LEADER_METRICS = ("transfer_a_to_b", "transfer_b_to_a", "transfer_mean", "fid_a_to_b", "fid_b_to_a")
GROUP = ["run", "series", "pair"]


def status_counts(results: Results) -> pd.DataFrame:
    """Finished trials per run and pair by status: columns ok, pruned, failed, total."""
    t = results.trials
    if t.empty:
        return pd.DataFrame(columns=[*GROUP, *STATUSES, "total"])
    counts = (t.groupby(GROUP)["status"].value_counts().unstack(fill_value=0)
              .reindex(columns=list(STATUSES), fill_value=0).reset_index())
    counts.columns.name = None
    counts["total"] = counts[list(STATUSES)].sum(axis=1)
    return counts


def searched_keys(results: Results) -> list[str]:
    """The config/* columns of the settings any run searched (its sweep.yaml ``space``)."""
    keys = {f"config/{k}" for run in results.runs for k in (run.spec.get("space") or {})}
    return sorted(k for k in keys if k in results.trials)


def seed_summary(results: Results, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (run, pair, config_id) of ok trials: mean and std of every leaderboard figure.

    Columns: run, series, pair, config_id, n_seeds, trials (numbers), the searched settings, then
    ``<metric>_mean`` and ``<metric>_std``; sorted best first by the objective's mean.
    """
    ok = results.ok() if frame is None else frame
    metrics = [m for m in dict.fromkeys((results.objective, *LEADER_METRICS)) if m in ok]
    keys = [k for k in searched_keys(results) if k in ok] + ["method", "rung", "n_sup"]
    if ok.empty:
        return pd.DataFrame(columns=[*GROUP, "config_id", "n_seeds", "trials", *keys,
                                     *(f"{m}_{s}" for m in metrics for s in ("mean", "std"))])
    grouped = ok.groupby([*GROUP, "config_id"], sort=False)
    stats = grouped[metrics].agg(["mean", "std"])
    stats.columns = [f"{m}_{s}" for m, s in stats.columns]
    first = grouped[keys].first()
    info = grouped.agg(n_seeds=("seed", "nunique"), trials=("number", lambda n: ", ".join(map(str, sorted(n)))))
    out = pd.concat([info, first, stats], axis=1).reset_index()
    return out.sort_values(f"{results.objective}_mean", ascending=results.direction == "minimize",
                           kind="stable").reset_index(drop=True)


def leaderboard(results: Results, top: int = 5) -> pd.DataFrame:
    """The ``top`` best settings of each run and pair (seed means, best first within a pair)."""
    summary = seed_summary(results)
    board = summary.groupby(GROUP, sort=False).head(top)
    return board.sort_values(GROUP, kind="stable").reset_index(drop=True)  # each pair's rows together


def best_settings(results: Results, frame: pd.DataFrame | None = None, by: list[str] | None = None) -> pd.DataFrame:
    """The best setting (seed mean of the objective) of each run and pair, or of each ``by`` group."""
    summary = seed_summary(results, frame)
    return summary.groupby(by or GROUP, sort=False).head(1).reset_index(drop=True)


def best_trials(results: Results) -> pd.DataFrame:
    """One trial row per run and pair: the best seed of the best setting (for confusions, examples)."""
    ok = results.ok()
    best = best_settings(results)
    if best.empty:
        return ok.iloc[0:0]
    chosen = ok.merge(best[["run", "pair", "config_id"]], on=["run", "pair", "config_id"])
    chosen = chosen.sort_values(results.objective, ascending=results.direction == "minimize", kind="stable")
    return chosen.groupby(["run", "pair"], sort=False).head(1).reset_index(drop=True)


def pair_matrix(results: Results, sides: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """Transfer accuracy of the best setting per pair, by source and target model, both directions.

    ``sides`` maps a pair to its (model a, model b). Columns: run, source, target, pair, accuracy,
    spread (std over seeds), n_seeds.
    """
    rows = []
    for _, best in best_settings(results).iterrows():
        a, b = sides.get(best["pair"], (f"{best['pair']}:a", f"{best['pair']}:b"))
        for src, dst, tag in ((a, b, "a_to_b"), (b, a, "b_to_a")):
            if f"transfer_{tag}_mean" in best:
                rows.append({"run": best["run"], "source": src, "target": dst, "pair": best["pair"],
                             "accuracy": best[f"transfer_{tag}_mean"], "spread": best[f"transfer_{tag}_std"],
                             "n_seeds": best["n_seeds"]})
    return pd.DataFrame(rows, columns=["run", "source", "target", "pair", "accuracy", "spread", "n_seeds"])


def with_transfer_mean(results: Results) -> pd.DataFrame:
    """Ok trials with a transfer_mean column (the mean of both directions where it is not stored)."""
    ok = results.trials[results.trials["status"] == "ok"]
    if {"transfer_a_to_b", "transfer_b_to_a"} - set(ok):
        return ok.iloc[0:0]
    mean = (ok["transfer_a_to_b"] + ok["transfer_b_to_a"]) / 2
    ok = ok.assign(transfer_mean=ok["transfer_mean"].fillna(mean) if "transfer_mean" in ok else mean)
    return ok[ok["transfer_mean"].notna()]


def ablation_table(results: Results, by: str) -> pd.DataFrame:
    """Best setting's transfer_mean (mean, std over seeds) per run, pair and ``by`` ("rung" or "n_sup").

    For ``n_sup`` the bridge and Procrustes are kept apart (column ``method``); -1 means all labels.
    """
    ok = with_transfer_mean(results)
    view = Results(results.runs, ok, results.curves, "transfer_mean", "maximize")
    keys = [*GROUP, by] + (["method"] if by == "n_sup" else [])
    best = best_settings(view, ok, by=keys)
    cols = [*keys, "transfer_mean_mean", "transfer_mean_std", "n_seeds", "trials"]
    if best.empty:
        return pd.DataFrame(columns=cols)
    if by == "rung":
        order = {r: i for i, r in enumerate((*RUNGS, "procrustes"))}
        best = best.assign(_o=best["rung"].map(order)).sort_values([*GROUP, "_o"]).drop(columns="_o")
    else:
        best = best.assign(_o=best["n_sup"].where(best["n_sup"] >= 0, 10**9)).sort_values(["method", *GROUP, "_o"])
        best = best.drop(columns="_o")
    return best[cols].reset_index(drop=True)


def budget_label(n_sup: int) -> str:
    """How a label budget reads on an axis: -1 is every label."""
    return "all" if n_sup < 0 else f"{n_sup:,}"
