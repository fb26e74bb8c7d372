"""The report's sections: each a titled list of figures with a one-line caption saying how to read it.

A section whose data is missing (no ok trial, one trial, no curves.parquet, nothing searched) carries
a note saying so instead of a figure: a partial run gives a partial report, never a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go
from ltrans.analysis import aggregate as agg
from ltrans.analysis import figures as fr
from ltrans.analysis import figures_training as ft
from ltrans.analysis.domains import model_info, pair_sides
from ltrans.analysis.importance import MIN_TOP, importance_table
from ltrans.analysis.runs import Results
from ltrans.analysis.speed import speed_table


@dataclass(frozen=True)
class Panel:
    figure: go.Figure
    caption: str  # one line: how to read the figure


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    panels: tuple[Panel, ...] = ()
    notes: tuple[str, ...] = ()  # what could not be drawn, and why
    html: str = ""  # extra markup (example images and audio players)


@dataclass(frozen=True)
class Context:
    """What every section needs: the results and the colour of each series."""

    results: Results
    colors: dict[str, str] = field(default_factory=dict)
    store_root: Path | None = None


def no_ok_notes(ctx: Context) -> tuple[str, ...]:
    """What a section says when there is no ok trial to draw: how many finished, and how."""
    counts = agg.status_counts(ctx.results)
    if counts.empty:
        return ("no finished trials in this run yet",)
    pruned, failed = int(counts["pruned"].sum()), int(counts["failed"].sum())
    return (f"no trial finished ok ({pruned} pruned, {failed} failed): nothing to rank or compare",)


def leaderboard(ctx: Context) -> Section:
    """Status counts per pair and the best settings of each pair."""
    r = ctx.results
    counts = agg.status_counts(r)
    panels = []
    if not counts.empty:
        panels.append(Panel(fr.status_figure(counts), "Finished trials per pair: green ok, yellow stopped early "
                            "by ASHA (pruned), red failed (reasons below)."))
    board = agg.leaderboard(r)
    if not board.empty:
        panels.append(Panel(fr.leaderboard_figure(board, agg.searched_keys(r), r.objective),
                            f"Best settings of each pair, ranked by the seed mean of {r.objective}; 'm ± s' is the "
                            "mean ± std over seeds; transfer: share of translations the target classifier puts "
                            "in the source class (higher is better; 0.1 is chance); FID: Fréchet distance to real "
                            "target data in classifier features (lower is better)."))
    notes = no_ok_notes(ctx) if board.empty else ()
    return Section("leaderboard", "Leaderboard", tuple(panels), notes + _failure_reasons(r))


def _failure_reasons(r: Results) -> tuple[str, ...]:
    """The three commonest reasons trials failed, with their counts."""
    failed = r.trials[r.trials["status"] == "failed"]
    if failed.empty or "reason" not in failed:
        return ()
    top = failed["reason"].fillna("no reason recorded").astype(str).str.slice(0, 160).value_counts().head(3)
    return tuple(f"{n} failed: {reason}" for reason, n in top.items())


def pair_matrix(ctx: Context) -> Section:
    """Source model x target model transfer accuracy."""
    sides = {p: pair_sides(p) for p in ctx.results.trials["pair"].dropna().unique()}
    matrix = agg.pair_matrix(ctx.results, sides)
    if matrix.empty:
        return Section("pairs", "Pair matrix", notes=no_ok_notes(ctx))
    return Section("pairs", "Pair matrix", (Panel(fr.pair_matrix_figure(matrix), (
        "Row: source model, column: target model; each cell is the transfer accuracy of that pair's best "
        "setting in that direction (mean ± std over seeds); empty cells are pairs this run did not train.")),))


def ablations(ctx: Context) -> Section:
    """The ablation ladder and the label-budget curve, Procrustes beside both."""
    ladder, budget = agg.ablation_table(ctx.results, "rung"), agg.ablation_table(ctx.results, "n_sup")
    if ladder.empty:
        return Section("ablations", "Ablation ladder and label budget", notes=no_ok_notes(ctx))
    notes = []
    if ladder["rung"].nunique() < 2:
        notes.append("this run holds one rung of the ladder only; a sweep over beta_kl, beta_swd and beta_cls "
                     "with 0 among the choices (sweeps/paper.yaml) fills it")
    if "procrustes" not in set(ladder["rung"]):
        notes.append("no Procrustes trials in this run; add `method: {type: categorical, choices: [bridge, "
                     "procrustes]}` to the sweep's space to draw the baseline")
    fig = fr.ablation_figure(ladder, budget, ctx.colors)
    return Section("ablations", "Ablation ladder and label budget", (Panel(fig, (
        "Left: each step of the paper's ladder adds one loss term (AE → VAE → +SWD → +classifier); right: "
        "accuracy against labelled examples per domain; dashed: the Procrustes baseline on the same labels; "
        "bars: std over seeds.")),), tuple(notes))


def speed(ctx: Context) -> Section:
    """Bridge vs base-model training time, and the objective against wall time."""
    r = ctx.results
    table, missing = speed_table(r, ctx.store_root)
    panels, notes = [], []
    if not table.empty:
        panels.append(Panel(ft.speed_figure(table), (
            "Training seconds on a log axis: frozen base models and classifiers (trained once) against the "
            "median bridge of each pair (whiskers: fastest to slowest ok trial); the gap is the speed claim.")))
    if missing:
        root = ctx.store_root or "the default cache"
        notes.append(f"not in the artifact store at {root} (use --cache-dir): " + ", ".join(missing))
    ok = r.ok()
    if "wall_s" in ok and ok["wall_s"].notna().any():
        panels.append(Panel(ft.time_figure(r.trials, r.objective, r.direction, ctx.colors), (
            f"Left: each ok trial's {r.objective} against its wall time; right: the best so far as the time "
            "of every trial (pruned and failed ones too) accumulates in finishing order (a plateau early "
            "means a smaller budget would do).")))
    return Section("speed", "Training speed", tuple(panels), (no_ok_notes(ctx) if ok.empty else ()) + tuple(notes))


def search(ctx: Context) -> Section:
    """Hyperparameter importance and parallel coordinates over the searched settings."""
    r = ctx.results
    keys = agg.searched_keys(r)
    ok = r.ok()
    if ok.empty or not keys:
        return Section("search", "Hyperparameters", notes=no_ok_notes(ctx) if ok.empty else ("nothing was searched",))
    table, skipped = importance_table(r)
    panels = []
    if not table.empty:
        panels.append(Panel(ft.importance_figure(table, ctx.colors), (
            f"How much each searched setting decides whether a trial reaches the top trials (at least {MIN_TOP}, "
            "10% on large runs) of the objective (Optuna's PED-ANOVA); long bars are the settings worth tuning.")))
    spaces = {k: v for run in r.runs for k, v in (run.spec.get("space") or {}).items()}
    panels.append(Panel(ft.parallel_figure(ok, keys, spaces, r.objective), (
        f"One line per ok trial ({len(ok):,}) through its settings to {r.objective} (colour); drag along an "
        "axis to keep a range; log-searched settings sit on log10 axes.")))
    return Section("search", "Hyperparameters", tuple(panels), tuple(f"no importance for {s}" for s in skipped))


def curves(ctx: Context) -> Section:
    """Learning curves (a bounded sample) and the best trial's confusion matrices per pair."""
    r = ctx.results
    missing = [n for run in r.runs for n in run.notes if n.startswith("curves.parquet")]
    panels, notes = [], [f"{run.label}: {n}" for run in r.runs for n in run.notes if n in missing]
    metric = _curve_metric(r)
    if not r.curves.empty and metric:
        picked = ft.pick_curves(r.curves, r.ok(), r.objective, r.direction)
        n_all = r.curves.groupby(["run", "number"]).ngroups
        panels.append(Panel(ft.curves_figure(r.curves, picked, metric, ctx.colors), (
            f"{metric} against bridge step for {len(picked):,} of {n_all:,} trials (each pair's best "
            f"{ft.BEST_CURVES}, then an even sample; at most {ft.MAX_POINTS} points each); dotted: pruned or "
            "failed.")))
    elif not missing:
        notes.append("no learning-curve points recorded")
    best = _with_confusions(agg.best_trials(r))
    if not best.empty:
        names = {p: pair_sides(p) for p in best["pair"]}
        classes = {m: model_info(m).class_names for pair in names.values() for m in pair}
        panels.append(Panel(ft.confusion_figure(best, names, classes), (
            "Each pair's best trial: rows the source class, columns the class the target classifier sees after "
            "translation, as a rate per row; a bright diagonal means classes survive (hover for counts).")))
    return Section("curves", "Learning curves and confusions", tuple(panels), tuple(notes))


def _curve_metric(r: Results) -> str | None:
    """The metric ASHA watched (sweep.yaml scheduler), else the total loss, if curves.parquet has it."""
    wanted = [(run.spec.get("scheduler") or {}).get("metric") for run in r.runs] + ["loss_total", "loss_recon"]
    return next((m for m in wanted if m and m in r.curves and r.curves[m].notna().any()), None)


def _with_confusions(best):
    """The rows whose two confusion matrices are stored (100 counts each)."""
    cols = ["confusion_a_to_b", "confusion_b_to_a"]
    if best.empty or not set(cols) <= set(best):
        return best.iloc[0:0]
    ok = best[cols].map(lambda v: hasattr(v, "__len__") and len(v) == 100).all(axis=1)
    return best[ok]
