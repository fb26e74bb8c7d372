"""Training figures: speed, accuracy vs wall time, importance, parallel coordinates, curves, confusions.

Built to stay responsive at 10,000 trials: point clouds are WebGL (``Scattergl``, ``Parcoords``), and
learning curves are a bounded sample of trials, each thinned to a bounded number of points, drawn as
one trace per series with gaps between trials.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from ltrans.analysis.figures import styled
from plotly.subplots import make_subplots

KIND_COLORS = {"base model": "#264653", "classifier": "#8d99ae", "bridge": "#2a9d8f", "procrustes fit": "#e9c46a"}
MAX_CURVES = 240  # learning curves drawn per report (best ones first, then an even sample)
MAX_POINTS = 60  # points kept per curve
BEST_CURVES = 10  # per series, always drawn


def speed_figure(table: pd.DataFrame) -> go.Figure:
    """Training seconds as dots on a log axis (bars have no honest length there): base models vs bridges."""
    fig = go.Figure()
    for kind, g in table.groupby("kind", sort=False):
        fig.add_trace(go.Scatter(
            y=g["what"], x=g["seconds"], mode="markers", name=kind,
            marker={"color": KIND_COLORS.get(kind, "#999"), "size": 13, "symbol": "diamond"},
            error_x={"type": "data", "symmetric": False, "array": g["high"] - g["seconds"],
                     "arrayminus": g["seconds"] - g["low"]},
            customdata=g[["n", "low", "high"]].values,
            hovertemplate="%{y}: %{x:.3g} s (n=%{customdata[0]}, %{customdata[1]:.3g}–%{customdata[2]:.3g} s)"
                          "<extra></extra>"))
    fig.update_xaxes(type="log", title_text="training time (s, log scale)")
    fig.update_yaxes(autorange="reversed")
    return styled(fig, height=160 + 30 * len(table))


def time_figure(trials: pd.DataFrame, objective: str, direction: str, colors: dict[str, str]) -> go.Figure:
    """Left: objective vs each ok trial's wall time; right: best so far vs the sweep's cumulative trial
    time, every trial's (pruned and failed ones cost time too) in finishing order (``finished_at``; trial
    number for run folders from before it was recorded)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("each trial", "best so far (trials in finishing order)"),
                        shared_yaxes=True, horizontal_spacing=0.06)
    better = np.fmax.accumulate if direction == "maximize" else np.fmin.accumulate
    for series, g in trials.groupby("series", sort=True):
        g = g.sort_values("number")
        if "finished_at" in g and g["finished_at"].notna().any():  # a trial without one (an older line, or
            # one recovered from optuna.db) keeps its place after the trial numbered before it
            finished = pd.to_numeric(g["finished_at"], errors="coerce").ffill().fillna(-np.inf)
            g = g.assign(_finished=finished).sort_values("_finished", kind="stable")
        value = pd.to_numeric(g[objective], errors="coerce") if objective in g else pd.Series(np.nan, g.index)
        ok = g[(g["status"] == "ok") & np.isfinite(value)]
        if ok.empty:
            continue
        fig.add_trace(go.Scattergl(
            x=ok["wall_s"].astype(float), y=ok[objective], mode="markers", name=series, legendgroup=series,
            marker={"color": colors[series], "size": 6, "opacity": 0.6}, customdata=ok["number"],
            hovertemplate="trial %{customdata}: %{y:.3f} after %{x:.3g} s<extra></extra>"), row=1, col=1)
        hours = g["wall_s"].astype(float).fillna(0).cumsum() / 3600  # up to and including each trial
        fig.add_trace(go.Scattergl(
            x=hours[ok.index], y=better(ok[objective].to_numpy(dtype=float)), mode="lines",
            line={"color": colors[series], "shape": "hv"}, name=series, legendgroup=series, showlegend=False,
            hovertemplate="%{y:.3f} after %{x:.3g} trial-hours<extra></extra>"), row=1, col=2)
    fig.update_xaxes(type="log", title_text="trial wall time (s, log scale)", row=1, col=1)
    fig.update_xaxes(title_text="cumulative trial time, all trials (h)", row=1, col=2)
    fig.update_yaxes(title_text=objective, row=1, col=1)
    return styled(fig, height=440, titled=True)


def importance_figure(table: pd.DataFrame, colors: dict[str, str]) -> go.Figure:
    """PED-ANOVA importance of each searched setting, one bar colour per series."""
    fig = go.Figure()
    order = table.groupby("setting")["importance"].mean().sort_values().index.tolist()
    for series, g in table.groupby("series", sort=True):
        g = g.set_index("setting").reindex(order).reset_index()
        fig.add_trace(go.Bar(y=g["setting"], x=g["importance"], orientation="h", name=series,
                             marker_color=colors[series],
                             hovertemplate="%{y}: %{x:.3f}<extra>" + series + "</extra>"))
    fig.update_layout(barmode="group", xaxis_title="importance (PED-ANOVA, sums to 1 per series)")
    return styled(fig, height=160 + 16 * len(order) * max(table["series"].nunique(), 1))


def parallel_figure(ok: pd.DataFrame, keys: list[str], spaces: dict, objective: str) -> go.Figure:
    """One line per ok trial through its searched settings to the objective (colour = objective)."""
    dims = [_category_dim(ok, c, c) for c in ("run", "pair") if ok[c].nunique() > 1]
    for key in keys:
        dims.append(_setting_dim(ok, key, spaces.get(key.removeprefix("config/"), {})))
    values = ok[objective].astype(float)
    dims.append({"label": objective, "values": values})
    line = {"color": values, "colorscale": "Viridis", "showscale": True, "colorbar": {"title": objective}}
    fig = go.Figure(go.Parcoords(line=line, dimensions=dims))
    return styled(fig, height=460).update_layout(margin={"l": 80, "r": 80, "t": 60, "b": 30})


def _category_dim(frame: pd.DataFrame, column: str, label: str, order: list | None = None) -> dict:
    """A categorical axis in the order of ``order`` (the sweep's choices), else sorted by value."""
    present = set(frame[column].astype(str))
    labels = [str(v) for v in order or sorted(frame[column].dropna().unique()) if str(v) in present]
    labels += sorted(present - set(labels))
    codes = frame[column].astype(str).map({v: i for i, v in enumerate(labels)})
    return {"label": label.removeprefix("config/").removeprefix("bridge."), "values": codes,
                "tickvals": list(range(len(labels))), "ticktext": labels}


def _setting_dim(frame: pd.DataFrame, key: str, dim: dict) -> dict:
    """A searched setting's axis: categories as codes, log-searched numbers as log10 with real ticks."""
    values = frame[key]
    if dim.get("type") == "categorical" or not pd.api.types.is_numeric_dtype(values):
        return _category_dim(frame, key, key, dim.get("choices"))
    label = key.removeprefix("config/").removeprefix("bridge.")
    if dim.get("log") and (values > 0).all():
        logs = np.log10(values.astype(float))
        ticks = np.linspace(logs.min(), logs.max(), 5)  # real values on a log10 axis
        return {"label": f"{label} (log)", "values": logs, "tickvals": ticks, "ticktext": [f"{10**t:.2g}" for t in ticks]}
    return {"label": label, "values": values.astype(float)}


def pick_curves(curves: pd.DataFrame, ok: pd.DataFrame, objective: str, direction: str) -> list[tuple]:
    """(run, number) of the curves to draw: each series' best trials, then an even sample of the rest."""
    drawn = list(dict.fromkeys(zip(curves["run"], curves["number"])))
    ranked = ok[pd.MultiIndex.from_frame(ok[["run", "number"]]).isin(drawn)]  # Procrustes fits have no curve
    ranked = ranked.sort_values(objective, ascending=direction == "minimize")
    best = ranked.groupby("series", sort=False).head(BEST_CURVES)
    chosen = list(zip(best["run"], best["number"]))
    rest = [k for k in drawn if k not in set(chosen)]
    room = max(MAX_CURVES - len(chosen), 0)
    if len(rest) > room:
        rest = [rest[i] for i in np.linspace(0, len(rest) - 1, room).round().astype(int)] if room else []
    return chosen + rest


def thin(points: pd.DataFrame, n: int = MAX_POINTS) -> pd.DataFrame:
    """At most ``n`` evenly spaced points of one curve, always keeping the first and last."""
    if len(points) <= n:
        return points
    return points.iloc[np.unique(np.linspace(0, len(points) - 1, n).round().astype(int))]


def curves_figure(curves: pd.DataFrame, picked: list[tuple], metric: str, colors: dict[str, str]) -> go.Figure:
    """Training-loss curves of the picked trials: one WebGL trace per series and status, gaps between trials."""
    keep = curves[pd.MultiIndex.from_frame(curves[["run", "number"]]).isin(picked)]
    fig = go.Figure()
    for (series, status), g in keep.groupby(["series", "status"], sort=True):
        xs, ys, ids = [], [], []
        for _, one in g.groupby(["run", "number"], sort=False):
            one = thin(one.sort_values("step"))
            xs += [*one["step"], None]
            ys += [*one[metric], None]
            ids += [*one["number"], None]
        fig.add_trace(go.Scattergl(
            x=xs, y=ys, mode="lines", name=f"{series} · {status}", customdata=ids,
            line={"color": colors[series], "width": 1.2, "dash": "solid" if status == "ok" else "dot"},
            opacity=0.8 if status == "ok" else 0.45,
            hovertemplate="trial %{customdata}, step %{x}: %{y:.4g}<extra></extra>"))
    fig.update_xaxes(title_text="bridge step")
    fig.update_yaxes(title_text=f"{metric} (log scale)", type="log")
    return styled(fig, height=420)


def confusion_figure(best: pd.DataFrame, names: dict[str, tuple[str, str]], classes: dict) -> go.Figure:
    """Row-normalised 10x10 confusions of each pair's best trial, A→B left and B→A right.

    ``names`` maps a pair to its (model a, model b); ``classes`` maps a model to its class names.
    """
    titles = [f"{r.series} · trial {r.number} · {d}" for r in best.itertuples() for d in ("A→B", "B→A")]
    fig = make_subplots(rows=len(best), cols=2, subplot_titles=titles, horizontal_spacing=0.12,
                        vertical_spacing=0.3 / max(len(best), 1))
    for i, (_, row) in enumerate(best.iterrows(), start=1):
        a, b = names[row["pair"]]
        for j, (tag, src, dst) in enumerate((("a_to_b", a, b), ("b_to_a", b, a)), start=1):
            counts = np.asarray(row[f"confusion_{tag}"], dtype=float).reshape(10, 10)
            rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
            fig.add_trace(go.Heatmap(
                z=rates, x=list(classes[dst]), y=list(classes[src]), zmin=0, zmax=1, colorscale="Blues",
                showscale=(i, j) == (1, 1), colorbar={"title": "rate"}, customdata=counts,
                hovertemplate=f"{src} %{{y}} → {dst} %{{x}}: %{{z:.2f}} (%{{customdata:.0f}})<extra></extra>"),
                row=i, col=j)
            fig.update_xaxes(title_text=f"translated label ({dst})", type="category", row=i, col=j)
            fig.update_yaxes(title_text=f"source label ({src})", type="category", autorange="reversed", row=i, col=j)
    return styled(fig, height=140 + 400 * len(best), titled=True)
