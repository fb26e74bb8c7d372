"""The one progress bar every training loop draws (stderr, cleared when done, off unless asked for)."""

from __future__ import annotations

import sys

from tqdm import tqdm

# Seconds between redraws when stderr is not a terminal (a log file of nohup, CI or a batch job): there
# every redraw appends another bar's bytes, ~500 KB over a 4,000-step bridge at tqdm's default 0.1 s.
# The bridge's eval points (set_postfix) still redraw when they come.
LOG_INTERVAL_S = 30.0


def progress_bar(total: int, enabled: bool, desc: str) -> tqdm:
    # In a log, maxinterval too: tqdm's monitor thread otherwise forces a redraw after 10 s without one.
    pace = ({"dynamic_ncols": True} if sys.stderr.isatty()
            else {"mininterval": LOG_INTERVAL_S, "maxinterval": LOG_INTERVAL_S})
    return tqdm(total=total, disable=not enabled, desc=desc, leave=False, **pace)
