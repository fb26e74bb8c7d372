"""What the benchmarks share: the device and thread setting, the machine's fp32 matmul rate, FLOP
counting, a plain-text table and the JSON file. Scripts in this folder import it as ``common``."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ltrans.sweep.results import cpu_model


def add_common_args(parser, name: str) -> None:
    """--quick, --device, --threads and --json, the same in every benchmark."""
    parser.add_argument("--quick", action="store_true", help="seconds, not minutes (the tests run this)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (ltrans.models.zoo.resolve_device)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads in this process (0: torch's default)")
    parser.add_argument("--json", type=Path, default=Path(f"out/bench/{name}.json"), help="where to write JSON")


def setup(args) -> str:
    """Apply --threads; the resolved device (``auto`` picks cuda when there is one)."""
    from ltrans.models.zoo import resolve_device

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    return resolve_device(args.device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_rate(device: str, n: int = 2048, seconds: float = 2.0) -> float:
    """The machine's fp32 matmul rate in FLOP/s: n x n times n x n, repeated for about ``seconds``."""
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, generator=g, device=device)
    b = torch.randn(n, n, generator=g, device=device)
    a @ b  # warm-up (thread pool, kernels)
    sync(device)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or reps < 3:
        a @ b
        reps += 1
        if reps % 4 == 0:
            sync(device)
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs torch's FlopCounterMode counts in ``fn()`` (matmuls and convolutions, forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def machine(device: str) -> dict[str, Any]:
    """Where the numbers were measured."""
    out = {"platform": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count(), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "device": device,
           "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}
    if device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain-text table: one line per row, columns padded to their widest cell."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
        return "" if value is None else str(value)

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))) for row in cells]
    return "\n".join(lines)


def write_json(path: Path, payload: dict[str, Any], quiet: bool = False) -> None:
    """payload as JSON at path, written atomically: a benchmark killed mid-write leaves the old file."""
    from ltrans.files import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload, indent=2, default=str, allow_nan=True) + "\n")
    if not quiet:
        print(f"\nwrote {path}")
