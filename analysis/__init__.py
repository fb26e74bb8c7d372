"""Aggregation of sweep results and Plotly reports; installed as ``ltrans.analysis``.

This folder sits at the top of the repository and ships inside the wheel as ``ltrans.analysis``
(pyproject.toml maps it), so ``ltrans report`` works from an installed wheel. Only this package
imports plotly.

From a notebook::

    from ltrans.analysis import load, load_curves, read_runs, write_report
    trials = load("runs/sweeps/demo-20250101-120000")      # one row per finished trial
    write_report(["runs/sweeps/a", "runs/sweeps/b"], "compare.html")

Modules: ``runs`` (run folders -> frames), ``aggregate`` (tables), ``figures`` and
``figures_training`` (tables -> Figures), ``importance``, ``speed``, ``examples``, ``sections`` and
``report`` (the HTML page).
"""

from __future__ import annotations

from ltrans.analysis.report import write_report
from ltrans.analysis.runs import load, load_curves, read_runs

__all__ = ["load", "load_curves", "read_runs", "write_report"]
