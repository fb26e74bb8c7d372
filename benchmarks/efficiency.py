"""Efficiency: achieved FLOP/s of packed bridge training against this machine's own fp32 matmul rate.

    python benchmarks/efficiency.py                 # ~3 minutes on 2 CPU cores
    python benchmarks/efficiency.py --quick         # seconds (tests/test_benchmarks.py runs this)
    python benchmarks/efficiency.py --device cuda   # the same on a GPU (benchmarks/gpu.sh)

The matmul rate is measured in the same run (2048 x 2048 fp32 matmuls, before and after each case; the
best of them is the yardstick, as neighbours on a shared machine move it). Then packs of K bridges train
on synthetic 100-d latents (the toy pair, 5,000 rows a side, like the embedded MNIST): the paper's
bridge (4x512 MLPs, batch 512 a domain, 8-d code; DESIGN.md section 1) and the smoke preset's (2x64,
batch 128), plus the unpacked ``train_bridge`` of each for reference; on cuda the packs go up to 64
paper and 256 smoke bridges, as one small MLP leaves a GPU idle. Both are timed from their first step
(building bridges, samplers and optimiser state is left out of either). Each case is printed as it is
measured. FLOPs are torch's FlopCounterMode count of one training step (matmuls forward and backward,
the SWD projections); sorts, elementwise ops and Adam are not counted, so the figure is the usual model
FLOP/s and its share of the matmul rate a utilisation.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_common_args, count_flops, machine, matmul_rate, setup, sync, table, write_json

from ltrans.bridge.config import BridgeConfig
from ltrans.bridge.packed import Member, Pack
from ltrans.bridge.toy import toy_pair
from ltrans.bridge.train import train_bridge

PAPER = BridgeConfig()  # 4x512, batch 512, shared dim 8: the MNIST <-> MNIST setting
SMOKE = dataclasses.replace(PAPER, n_layers=2, width=64, batch_size=128, n_projections=32)
CASES = [("paper", PAPER, (1, 4, 8), 30), ("smoke", SMOKE, (1, 16, 64), 60)]  # name, bridge, packs, steps
# A GPU sits idle under one small MLP: there the packs go wider. Not wider still: each member draws its
# own batch from its own generator every step (what makes it equal its unpacked run), so a step costs
# O(K) small launches and building a pack O(K) bridges: packs of 256 paper and 2,048 smoke members did
# not finish within 200 s on an H200.
CUDA_CASES = [("paper", PAPER, (1, 8, 64), 30), ("smoke", SMOKE, (1, 64, 256), 60)]
QUICK = [("paper/4", dataclasses.replace(PAPER, width=128, batch_size=128), (1, 4), 5),
         ("smoke", SMOKE, (1, 8), 5)]


def members(cfg: BridgeConfig, k: int, steps: int) -> list[Member]:
    """K members of one shape with different learning rates and seeds."""
    return [Member(dataclasses.replace(cfg, lr=cfg.lr * (1 + 0.1 * i), steps=steps, eval_every=steps), seed=i)
            for i in range(k)]


def flops_per_step(cfg: BridgeConfig, k: int, lat, device: str) -> int:
    pack = Pack(members(cfg, k, 1), *lat, device=device)

    def step() -> None:
        total, _ = pack.losses(*pack.draw())
        total.sum().backward()

    return count_flops(step)


def timed_pack(cfg: BridgeConfig, k: int, steps: int, lat, device: str) -> float:
    """Seconds per training step of a pack of k (after a short warm-up run)."""
    Pack(members(cfg, k, 2), *lat, device=device).run()
    pack = Pack(members(cfg, k, steps), *lat, device=device)
    sync(device)
    start = time.perf_counter()
    pack.run()
    sync(device)
    return (time.perf_counter() - start) / steps


def timed_unpacked(cfg: BridgeConfig, steps: int, lat, device: str) -> float:
    """Seconds per training step of ``train_bridge`` (after a short warm-up run), its setup left out as the
    packs' is: train_bridge's wall_s counts building the bridge, samplers and Adam, so the wall_s of a run
    of 0 steps is subtracted."""
    def wall_s(n: int) -> float:
        return train_bridge(dataclasses.replace(cfg, steps=n, eval_every=max(n, 1)), *lat, seed=0,
                            device=device).wall_s

    wall_s(2)
    setup = wall_s(0)
    return (wall_s(steps) - setup) / steps


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, "efficiency")
    args = parser.parse_args(argv)
    device = setup(args)
    pair = toy_pair(n_per_class=500, dim=100, rotation_seed=0, noise=0.5, seed=0, posterior_std=0.1)
    lat = (pair.latents_a, pair.latents_b)
    rate = lambda: matmul_rate(device, n=1024 if args.quick else 2048, seconds=0.5 if args.quick else 2.0)
    rates, rows = [rate()], []
    cases = QUICK if args.quick else CUDA_CASES if device.startswith("cuda") else CASES
    for name, cfg, packs, steps in cases:
        per_member = flops_per_step(cfg, 1, lat, device)
        runs = [("unpacked", 1, timed_unpacked(cfg, steps, lat, device))]
        print(f"{name}: unpacked {1e3 * runs[0][2]:.1f} ms/step", flush=True)
        for k in packs:
            runs.append(("packed", k, timed_pack(cfg, k, steps, lat, device)))
            print(f"{name}: pack of {k} {1e3 * runs[-1][2]:.1f} ms/step", flush=True)
        for how, k, seconds in runs:
            flops = per_member * k if how == "unpacked" else flops_per_step(cfg, k, lat, device)
            rows.append({"bridge": name, "how": how, "K": k, "width": cfg.width, "batch": cfg.batch_size,
                         "ms/step": 1e3 * seconds, "ms/member-step": 1e3 * seconds / k,
                         "GFLOP/step": flops / 1e9, "GFLOP/s": flops / seconds / 1e9,
                         "GFLOP": flops, "seconds": seconds})
        rates.append(rate())
    # On a shared machine the rate moves with the neighbours' load: judge against the best one measured.
    peak = max(rates)
    for row in rows:
        flops, seconds = row.pop("GFLOP"), row.pop("seconds")
        row["% of matmul"] = 100 * flops / seconds / peak
    print(f"fp32 matmul rate on {device}: best {peak / 1e9:.1f} GFLOP/s of "
          f"{', '.join(f'{r / 1e9:.0f}' for r in rates)} measured ({machine(device)['threads']} threads)\n")
    print(table(rows, ["bridge", "how", "K", "width", "batch", "ms/step", "ms/member-step", "GFLOP/step",
                       "GFLOP/s", "% of matmul"]))
    best = max((r for r in rows if r["how"] == "packed"), key=lambda r: r["% of matmul"])
    print(f"\nbest packed: {best['bridge']} K={best['K']} at {best['% of matmul']:.0f}% of the matmul rate")
    payload = {"benchmark": "efficiency", "quick": args.quick, "machine": machine(device),
               "matmul_gflops": peak / 1e9, "matmul_gflops_measured": [r / 1e9 for r in rates], "rows": rows, "best_packed_percent": best["% of matmul"]}
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
