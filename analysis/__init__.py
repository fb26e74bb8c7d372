"""Aggregation of sweep results and Plotly reports; installed as ``ltrans.analysis``.

This folder sits at the top of the repository and ships inside the wheel as ``ltrans.analysis``
(pyproject.toml maps it), so ``ltrans report`` works from an installed wheel. Only this package
imports plotly.
"""
