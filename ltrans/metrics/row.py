"""MetricsRow: the flat, typed result of one trial, appended as one JSON line (DESIGN.md section 3)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

STATUSES = ("ok", "pruned", "failed")


@dataclass(frozen=True)
class MetricsRow:
    """One trial of one pair and seed. Figures are NaN when a trial failed before evaluation.

    ``metrics`` holds the evaluation figures by name (transfer_a_to_b, fid_b_to_a, ...); confusion
    matrices are 100-long lists (row-major 10x10: source label x translated label).
    """

    pair: str
    method: str
    seed: int
    config_hash: str
    status: str
    reason: str
    steps: int
    train_seconds: float
    eval_seconds: float
    git_sha: str
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def flat(self) -> dict[str, Any]:
        """One level of keys: the metrics merged in beside the identity fields."""
        row = asdict(self)
        return {**{k: v for k, v in row.items() if k != "metrics"}, **row["metrics"]}

    def to_json(self) -> str:
        return json.dumps(self.flat(), sort_keys=True, allow_nan=True)


def config_hash(config: dict[str, Any]) -> str:
    """Short sha256 of a resolved config's canonical JSON."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


@lru_cache(maxsize=1)
def git_sha() -> str:
    """The checkout's commit (with "+dirty" for local changes), or "unknown" outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")
