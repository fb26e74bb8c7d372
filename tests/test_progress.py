"""The training progress bar: redrawn in place in a terminal, rarely in a log file."""

from __future__ import annotations

import sys

import tqdm.std

from ltrans.progress import LOG_INTERVAL_S, progress_bar


def _redraws(monkeypatch, capsys, steps: int, step_s: float) -> int:
    """How many times a bar of ``steps`` steps, one every ``step_s`` seconds of a fake clock, draws itself."""
    clock = [0.0]
    monkeypatch.setattr(tqdm.std, "time", lambda: clock[0])
    capsys.readouterr()
    bar = progress_bar(steps, True, "bridge")
    for _ in range(steps):
        clock[0] += step_s
        bar.update()
    bar.close()
    return capsys.readouterr().err.count("bridge:")


def test_a_log_file_gets_a_redraw_every_interval_not_every_step(monkeypatch, capsys):
    assert not sys.stderr.isatty()  # capsys: stderr is a file, as under nohup or CI
    span = 600 * 0.5  # 600 steps of half a second: 300 s
    draws = _redraws(monkeypatch, capsys, 600, 0.5)
    assert span / LOG_INTERVAL_S - 1 <= draws <= span / LOG_INTERVAL_S + 3  # start, ~every interval, end


def test_a_terminal_gets_a_redraw_every_step_that_takes_longer_than_a_tenth(monkeypatch, capsys):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert _redraws(monkeypatch, capsys, 600, 0.5) >= 600
