"""``ltrans report``: one self-contained, offline HTML page over one or more sweep run folders.

plotly.js is embedded once in the page head and every figure is a ``<div>`` drawn by it, so the file
opens anywhere without a network. Numbers come only from ``analysis.runs`` (DESIGN.md section 5).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import plotly.io as pio
from ltrans.analysis import sections as sec
from ltrans.analysis.figures import palette
from ltrans.analysis.runs import Results, read_runs
from ltrans.analysis.style import CSS
from plotly.offline import get_plotlyjs

from ltrans.files import atomic_write_text, writable_dir

PLOT_CONFIG = {"displaylogo": False, "responsive": True}
SECTIONS: tuple[Callable[[sec.Context], sec.Section], ...] = (
    sec.leaderboard, sec.pair_matrix, sec.ablations, sec.speed, sec.search, sec.curves)


@dataclass(frozen=True)
class Report:
    """A written report: its path, sections and how long each step took (seconds)."""

    path: Path
    sections: tuple[sec.Section, ...]
    timings: dict[str, float]

    @property
    def plot_ids(self) -> list[str]:
        return [f"{s.key}-{i}" for s in self.sections for i in range(len(s.panels))]


def build_sections(results: Results, store_root: Path | None = None, examples: bool = False,
                   timings: dict[str, float] | None = None) -> tuple[sec.Section, ...]:
    """Every section of the report, in page order (timed into ``timings`` by section key)."""
    timings = {} if timings is None else timings
    ctx = sec.Context(results, palette(list(results.trials.get("series", []))), store_root)
    out = []
    for make in (*SECTIONS, lambda c: examples_section(c, examples)):
        start = time.perf_counter()
        section = make(ctx)
        timings[section.key] = time.perf_counter() - start
        out.append(section)
    return tuple(out)


def examples_section(ctx: sec.Context, regenerate: bool) -> sec.Section:
    """Translations of each pair's best bridge when asked for (retrained, cached), else "not stored"."""
    title = "Examples"
    if not regenerate:
        return sec.Section("examples", title, notes=(
            ("not stored: sweeps keep metrics, not bridges; `ltrans report --examples RUN` retrains the best bridge "
            "of each pair from its stored config and seed (as long as that trial took) and caches its pictures "
            "and sounds"),))
    if ctx.results.ok().empty:
        return sec.Section("examples", title, notes=sec.no_ok_notes(ctx))
    from ltrans.analysis.examples import examples_html

    from ltrans.artifacts import Store

    markup, notes = examples_html(ctx.results, Store(ctx.store_root))
    return sec.Section("examples", title, notes=tuple(notes), html=markup)


def write_report(run_dirs: list[Path | str], out: Path | str | None = None, *, store_root: Path | None = None,
                 examples: bool = False, title: str | None = None) -> Report:
    """Read the run folders, build every section and write the page (default RUN/report.html for one run)."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    results = read_runs(list(run_dirs))
    timings["load"] = time.perf_counter() - start
    path = Path(out) if out else (results.runs[0].path / "report.html" if len(results.runs) == 1
                                  else Path("report.html"))
    writable_dir(path.parent)  # a bad -o fails now, not after --examples has retrained bridges
    sections = build_sections(results, store_root, examples, timings)
    start = time.perf_counter()
    page = render_page(results, sections, title or _title(results))
    atomic_write_text(path, page)  # mode from the umask, like any file the user writes
    timings["html"] = time.perf_counter() - start
    return Report(path.resolve(), sections, timings)


def _title(results: Results) -> str:
    names = ", ".join(dict.fromkeys(str(r.spec.get("name", r.label)) for r in results.runs))
    return f"ltrans report: {names}"


def render_page(results: Results, sections: tuple[sec.Section, ...], title: str) -> str:
    """The whole HTML document: plotly.js once, a header about the runs, then the sections."""
    nav = "".join(f"<a href='#{s.key}'>{html.escape(s.title)}</a>" for s in sections)
    body = "\n".join(_section_html(s) for s in sections)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{CSS}</style>"
            f"<script>window.PlotlyConfig = {{MathJaxConfig: 'local'}};</script>"
            f"<script>{get_plotlyjs()}</script></head><body><header><h1>{html.escape(title)}</h1>"
            f"{_runs_table(results)}</header><nav>{nav}</nav><main>{body}</main>"
            f"<footer>Made by <code>ltrans report</code> from trials.parquet, curves.parquet, sweep.yaml and "
            f"provenance.json on {time.strftime('%Y-%m-%d %H:%M')}.</footer></body></html>\n")


def _section_html(section: sec.Section) -> str:
    """A section: title, notes, then each figure as a plot div under its caption."""
    parts = [f"<section id='{section.key}'><h2>{html.escape(section.title)}</h2>"]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in section.notes]
    for i, panel in enumerate(section.panels):
        div = pio.to_html(panel.figure, full_html=False, include_plotlyjs=False, config=PLOT_CONFIG,
                          div_id=f"{section.key}-{i}")
        parts.append(f"<figure class='panel'><p class='caption'>{html.escape(panel.caption)}</p>{div}</figure>")
    parts.append(section.html + "</section>")
    return "\n".join(parts)


def _runs_table(results: Results) -> str:
    """One row per run: folder, sweep, trials by status, code version, when and where it ran."""
    rows = []
    for run in results.runs:
        t, prov = run.trials, run.provenance
        counts = t["status"].value_counts() if not t.empty else {}
        status = ", ".join(f"{k} {int(counts.get(k, 0))}" for k in ("ok", "pruned", "failed"))
        machine = prov.get("machine") or {}
        cpu = f" ({machine['cpu']})" if machine.get("cpu") else ""  # runs before 2026-12-08 lack it
        where = (f"{machine.get('host', '?')}, {machine.get('cpus', '?')} CPUs{cpu}, "
                 f"{len(machine.get('gpus') or [])} GPUs")
        smoke = " (smoke test)" if run.spec.get("smoke") else ""
        cells = [run.label, f"{run.spec.get('name', '?')}{smoke}", f"{len(t)} of {run.spec.get('budget', '?')}",
                 status, str(prov.get("git_sha", "?"))[:12], str(prov.get("time", "?")), where, str(run.path)]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        rows += [f"<tr class='note'><td colspan='8'>{html.escape(run.label)}: {html.escape(n)}</td></tr>"
                 for n in run.notes if not n.startswith("curves.parquet")]
    rows += [f"<tr class='note'><td colspan='8'>{html.escape(n)}</td></tr>" for n in results.notes]
    head = "".join(f"<th>{h}</th>" for h in ("run", "sweep", "trials", "status", "code", "started", "machine",
                                              "folder"))
    return f"<table class='runs'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
