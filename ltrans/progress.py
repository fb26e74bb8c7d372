"""The one progress bar every training loop draws (stderr, cleared when done, off unless asked for)."""

from __future__ import annotations

from tqdm import tqdm


def progress_bar(total: int, enabled: bool, desc: str) -> tqdm:
    return tqdm(total=total, disable=not enabled, desc=desc, leave=False, dynamic_ncols=True)
