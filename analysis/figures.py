"""Result figures: leaderboard, status counts, pair matrix, ablation ladder and label budget.

Each function takes tables from ``analysis.aggregate`` and returns a ``plotly.graph_objects.Figure``;
none reads files. Colours follow ``series`` (the pair, or run and pair when runs are compared) through
every figure of a report, so one colour means one thing on the whole page.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from ltrans.analysis.aggregate import STATUSES, budget_label
from ltrans.analysis.runs import RUNGS
from plotly.colors import qualitative
from plotly.subplots import make_subplots

SETTING_CHARS = 50  # characters per line of the leaderboard's setting column, for its height
STATUS_COLORS = {"ok": "#2a9d8f", "pruned": "#e9c46a", "failed": "#e76f51"}
FONT = {"family": "system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif", "size": 13}
LEADER_COLUMNS = {  # leaderboard metric -> header
    "transfer_a_to_b": "transfer A→B", "transfer_b_to_a": "transfer B→A", "transfer_mean": "transfer mean",
    "fid_a_to_b": "FID A→B", "fid_b_to_a": "FID B→A",
}


def palette(series: list[str]) -> dict[str, str]:
    """A fixed colour per series label (sorted, so two reports over the same runs agree)."""
    colours = qualitative.Plotly + qualitative.D3 + qualitative.Dark24
    return {s: colours[i % len(colours)] for i, s in enumerate(sorted(set(series)))}


def styled(fig: go.Figure, height: int = 420, titled: bool = False) -> go.Figure:
    """The report's common layout: white background, readable font, legend on top.

    ``titled``: the figure has subplot titles, so the legend goes higher to stay clear of them.
    """
    legend = {"orientation": "h", "x": 0, "traceorder": "normal"}
    if titled:  # pinned to the top of the figure, clear of the subplot titles below it
        legend |= {"yref": "container", "y": 0.995, "yanchor": "top"}
    else:
        legend |= {"yanchor": "bottom", "y": 1.02}
    fig.update_layout(template="plotly_white", font=FONT, height=height, legend=legend,
                      margin={"l": 60, "r": 20, "t": 90 if titled else 40, "b": 50})
    return fig


def mean_spread(mean: float, std: float, digits: int = 3) -> str:
    """'0.912 ± 0.010', or just the mean when there is no spread (one seed); '–' when missing."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _setting_text(row: pd.Series, keys: list[str]) -> str:
    """'beta_kl=0.005, lr=0.001': the searched settings of a leaderboard row, short names."""
    parts = [f"{k.removeprefix('config/').removeprefix('bridge.')}={_short(row[k])}" for k in keys]
    return ", ".join(parts) or "(fixed)"


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def leaderboard_figure(board: pd.DataFrame, keys: list[str], objective: str) -> go.Figure:
    """The best settings per pair as a table: seed mean ± spread of each figure, trials, settings."""
    metrics = [m for m in dict.fromkeys((*LEADER_COLUMNS, objective)) if f"{m}_mean" in board]
    header = ["series", "#", "trials", "seeds", *(LEADER_COLUMNS.get(m, m) for m in metrics), "setting"]
    rank = board.groupby(["run", "pair"], sort=False).cumcount() + 1
    cells = [board["series"], rank, board["trials"], board["n_seeds"],
             *([mean_spread(m, s) for m, s in zip(board[f"{x}_mean"], board[f"{x}_std"])] for x in metrics),
             [_setting_text(row, keys) for _, row in board.iterrows()]]
    settings = cells[-1]
    fig = go.Figure(go.Table(
        columnwidth=[110, 24, 60, 48, *([90] * len(metrics)), 340],
        header={"values": [f"<b>{h}</b>" for h in header], "fill_color": "#264653", "font": {"color": "white"},
                "align": "left"},
        cells={"values": cells, "align": "left", "height": 24,
               "fill_color": [["#f4f6f6" if r % 2 else "white" for r in range(len(board))]]}))
    lines = sum(1 + len(text) // SETTING_CHARS for text in settings)  # wrapped lines of the widest column
    return styled(fig, height=90 + 18 * max(lines, 1) + 8 * len(board)).update_layout(margin={"t": 10, "b": 10})


def status_figure(counts: pd.DataFrame) -> go.Figure:
    """Finished trials per series as stacked bars: ok, pruned (stopped by ASHA), failed."""
    fig = go.Figure()
    for status in STATUSES:
        fig.add_trace(go.Bar(y=counts["series"], x=counts[status], name=status, orientation="h",
                             marker_color=STATUS_COLORS[status], text=counts[status], textposition="inside"))
    fig.update_layout(barmode="stack", xaxis_title="trials", yaxis={"autorange": "reversed"})
    return styled(fig, height=140 + 36 * len(counts))


def pair_matrix_figure(matrix: pd.DataFrame) -> go.Figure:
    """Source model (rows) x target model (columns) transfer accuracy, one panel per run."""
    runs = list(dict.fromkeys(matrix["run"]))
    models = sorted(set(matrix["source"]) | set(matrix["target"]))
    fig = make_subplots(rows=1, cols=max(len(runs), 1), subplot_titles=runs if len(runs) > 1 else None,
                        horizontal_spacing=0.12)
    for i, run in enumerate(runs, start=1):
        sub = matrix[matrix["run"] == run]
        grid = sub.pivot_table(index="source", columns="target", values="accuracy", aggfunc="max")
        grid = grid.reindex(index=models, columns=models)
        text = {(r.source, r.target): mean_spread(r.accuracy, r.spread, 2) for r in sub.itertuples()}
        fig.add_trace(go.Heatmap(
            z=grid.values, x=models, y=models, zmin=0, zmax=1, colorscale="Viridis", showscale=i == 1,
            colorbar={"title": "accuracy"}, hovertemplate="%{y} → %{x}: %{z:.3f}<extra></extra>",
            text=[[text.get((s, t), "") for t in models] for s in models], texttemplate="%{text}"),
            row=1, col=i)
        fig.update_xaxes(title_text="target model", row=1, col=i)
        fig.update_yaxes(title_text="source model" if i == 1 else None, autorange="reversed", row=1, col=i)
    return styled(fig, height=180 + 60 * len(models), titled=len(runs) > 1)


def ablation_figure(ladder: pd.DataFrame, budget: pd.DataFrame, colors: dict[str, str]) -> go.Figure:
    """Left: the ablation ladder; right: transfer vs label budget; Procrustes dashed on both."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("ablation ladder (best setting per rung)",
                                                        "label budget (labelled examples per domain)"),
                        shared_yaxes=True, horizontal_spacing=0.06)
    rungs = [r for r in RUNGS if r in set(ladder["rung"])]
    bridge = ladder[ladder["rung"] != "procrustes"]
    for series, g in bridge.groupby("series", sort=True):
        fig.add_trace(_line(g["rung"], g, series, colors[series], "bridge", legendgroup=series), row=1, col=1)
    span = rungs or ["procrustes"]  # a run of Procrustes alone has no rung to span: one point of its own
    for series, g in ladder[ladder["rung"] == "procrustes"].groupby("series", sort=True):
        flat = pd.concat([g] * len(span), ignore_index=True)
        fig.add_trace(_line(span, flat, series, colors[series], "procrustes", dash="dash", legendgroup=series),
                      row=1, col=1)
    shown = {t.name for t in fig.data}
    for (series, method), g in budget.groupby(["series", "method"], sort=True):
        line = _line([budget_label(n) for n in g["n_sup"]], g, series, colors[series], method,
                     dash="dash" if method == "procrustes" else None, legendgroup=series)
        fig.add_trace(line.update(showlegend=line.name not in shown), row=1, col=2)
    order = [budget_label(n) for n in sorted(set(budget["n_sup"]), key=lambda n: n if n >= 0 else math.inf)]
    fig.update_xaxes(categoryorder="array", categoryarray=span, row=1, col=1)
    fig.update_xaxes(categoryorder="array", categoryarray=order, type="category", row=1, col=2)
    fig.update_yaxes(title_text="transfer accuracy (mean of A→B, B→A)", range=[0, 1.02], row=1, col=1)
    return styled(fig, height=460, titled=True)


def _line(x, g: pd.DataFrame, series: str, color: str, method: str, dash: str | None = None,
          legendgroup: str | None = None) -> go.Scatter:
    """Seed means of transfer_mean along x, with std bars and the trials in the hover text."""
    return go.Scatter(
        x=list(x), y=g["transfer_mean_mean"], error_y={"type": "data", "array": g["transfer_mean_std"].fillna(0)},
        mode="lines+markers", name=f"{series} · {method}", line={"color": color, "dash": dash},
        legendgroup=legendgroup, customdata=g[["n_seeds", "trials"]].values,
        hovertemplate="%{x}: %{y:.3f} (%{customdata[0]} seeds; trials %{customdata[1]})<extra></extra>")
