"""Evaluation of translations in data space: transfer accuracy, confusion, Frechet distance,
interpolation smoothness (transfer.py), and the flat MetricsRow of one trial (row.py)."""
