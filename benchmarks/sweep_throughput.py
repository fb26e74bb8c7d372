"""Sweep throughput: the same bridge configurations run four ways, side by side (issue 7).

    python benchmarks/sweep_throughput.py            # 64 smoke-size bridges, four ways: ~10 minutes on 2 cores
    python benchmarks/sweep_throughput.py --quick    # 4 bridges of 50 steps (tests/test_benchmarks.py runs this)

A 4 x 4 x 4 grid over the learning rate, beta_swd and beta_kl of the smoke preset's bridge (2x64, batch
128, 200 steps, MNIST <-> MNIST on the tiny base models, seed 0), each run to the end and evaluated on
the one path (``run_trial``: 200 held-out examples a direction), as
  (a) a user would write it with stock Ray Tune: ``ray.tune.search.optuna.OptunaSearch`` handed the 64
      points, a function trainable calling run_trial, one trial per worker process (reuse_actors=False);
  (b) the same with ``reuse_actors=True``;
  (c) our sweep, ``ltrans sweep run`` on the same grid (our Optuna searcher, ledger, sqlite study);
  (d) our sweep with ``pack: K`` (K = configurations / concurrent trials: one pack per core; at least 2,
      so that (d) packs even where there are as many cores as configurations).
Every variant runs as many trials at once as there are cores and ships the prepared pair to its workers
through Ray's object store. Wall time covers what a user waits for: loading the cached pair, starting
Ray, the sweep, stopping Ray. Accuracies are compared configuration by configuration with (a).
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml
from common import add_common_args, machine, setup, table, write_json

GRID = {"bridge.lr": [3e-4, 1e-3, 2e-3, 4e-3], "bridge.beta_swd": [0.1, 0.3, 1.0, 3.0],
        "bridge.beta_kl": [1e-3, 5e-3, 2e-2, 5e-2]}
QUICK_GRID = {"bridge.lr": [1e-3, 3e-3], "bridge.beta_swd": [0.3, 1.0], "bridge.beta_kl": [5e-3]}
FIXED = {"bridge.steps": 200, "bridge.eval_every": 50, "n_eval": 200}  # the smoke preset's own
QUICK_FIXED = {"bridge.steps": 50, "bridge.eval_every": 25, "n_eval": 50}
ACCURACY = ("transfer_a_to_b", "transfer_b_to_a")


def points(grid: dict[str, list]) -> list[dict]:
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def pack_size(n: int, concurrency: int) -> int:
    """(d)'s K: one pack per concurrent trial, but at least 2 members, so that (d) always packs."""
    return min(n, max(2, math.ceil(n / concurrency)))


def key(point: dict) -> tuple:
    return tuple(round(float(point[k]), 12) for k in sorted(GRID))


def user_trial(config: dict, data=None, fixed=None, device: str = "cpu") -> None:
    """What a user writes: override the preset, run_trial, report the figures."""
    from ray import tune

    from ltrans.config import override
    from ltrans.pipeline import run_trial
    from ltrans.presets import smoke

    for side in (data.a, data.b):  # the frozen models on the trial's device (shipped on the CPU)
        side.decoder.to(device)
        side.classifier.to(device)
    row, _ = run_trial(override(smoke("mnist_mnist"), {**fixed, **config}), data, device=device)
    tune.report({k: row.flat().get(k, math.nan) for k in (*ACCURACY, "eval_seconds", "train_seconds")}
                | {"status": row.status})


def run_stock(grid: dict, fixed: dict, reuse: bool, device: str, concurrency: int, folder: Path):
    """(a) or (b): stock Tune + OptunaSearch over the grid's points; wall time and accuracy by point."""
    import optuna
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from ltrans.pipeline import load_pair
    from ltrans.sweep.runner import init_ray

    start = time.perf_counter()
    data = load_pair("mnist_mnist", preset="tiny", device="cpu")
    init_ray(None)
    try:
        space = {k: optuna.distributions.CategoricalDistribution(v) for k, v in grid.items()}
        search = OptunaSearch(space=space, metric="transfer_a_to_b", mode="max", points_to_evaluate=points(grid))
        trainable = tune.with_parameters(user_trial, data=data, fixed=fixed, device=device)
        gpu = 1 / concurrency if device == "cuda" else 0
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1, "gpu": gpu}),
            tune_config=tune.TuneConfig(search_alg=search, num_samples=len(points(grid)),
                                        max_concurrent_trials=concurrency, reuse_actors=reuse),
            run_config=tune.RunConfig(name="stock", storage_path=str(folder), verbose=0))
        grid_results = tuner.fit()
    finally:
        import ray

        ray.shutdown()
    wall = time.perf_counter() - start
    found = {key(r.config): {k: r.metrics.get(k) for k in (*ACCURACY, "eval_seconds")} for r in grid_results}
    return wall, found


def run_ours(grid: dict, fixed: dict, pack: int, device: str, concurrency: int, folder: Path):
    """(c) or (d): ``ltrans sweep run`` on the grid (create_run + execute, as the CLI does)."""
    import pandas as pd

    from ltrans.sweep.runner import create_run, execute

    spec = {"name": f"throughput{'-packed' if pack > 1 else ''}", "preset": "smoke", "pairs": ["mnist_mnist"],
            "seeds": [0], "sampler": "grid", "objectives": [{"name": "transfer_mean", "direction": "maximize"}],
            "fixed": fixed, "space": {k: {"type": "categorical", "choices": v} for k, v in grid.items()},
            "resources": {"cpus": 1, "gpus": 1 / concurrency if device == "cuda" else 0},
            "max_concurrent": concurrency, "pack": pack}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    start = time.perf_counter()
    outcome = execute(create_run(path, folder / "run", False, []), echo=lambda line: None)
    wall = time.perf_counter() - start
    trials = pd.read_parquet(outcome.run / "trials.parquet")
    found = {key({k: row[f"config/{k}"] for k in grid}): {k: row.get(k) for k in (*ACCURACY, "eval_seconds")}
             for _, row in trials.iterrows()}
    return wall, found


def compare(found: dict, reference: dict) -> dict:
    """Largest and mean absolute difference of the transfer accuracies, over configurations in both."""
    diffs = [abs(found[k][m] - reference[k][m]) for k in reference if k in found for m in ACCURACY
             if found[k].get(m) is not None and reference[k].get(m) is not None]
    return {"max_abs_diff": max(diffs, default=math.nan), "mean_abs_diff": sum(diffs) / max(len(diffs), 1),
            "compared": len(diffs) // len(ACCURACY)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, "sweep_throughput")
    parser.add_argument("--concurrency", type=int, default=0, help="trials at once (0: one per CPU, at most 8)")
    args = parser.parse_args(argv)
    device = setup(args)
    grid, fixed = (QUICK_GRID, QUICK_FIXED) if args.quick else (GRID, FIXED)
    n = len(points(grid))
    concurrency = args.concurrency or min(os.cpu_count() or 1, 8)
    os.environ.setdefault("LTRANS_RAY_CPUS", str(concurrency))
    pack = pack_size(n, concurrency)
    prep = time.perf_counter()
    from ltrans.pipeline import load_pair

    load_pair("mnist_mnist", preset="tiny")  # trains and caches the tiny base models once, untimed
    prep = time.perf_counter() - prep
    variants = [("(a) Tune + OptunaSearch, a process per trial", lambda f: run_stock(grid, fixed, False, device, concurrency, f)),
                ("(b) Tune + OptunaSearch, reuse_actors", lambda f: run_stock(grid, fixed, True, device, concurrency, f)),
                ("(c) ltrans sweep", lambda f: run_ours(grid, fixed, 1, device, concurrency, f)),
                (f"(d) ltrans sweep, pack: {pack}", lambda f: run_ours(grid, fixed, pack, device, concurrency, f))]
    results = {}
    with tempfile.TemporaryDirectory(prefix="sweep-throughput-") as tmp:
        for i, (name, run) in enumerate(variants):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            print(f"running {name} ...", flush=True)
            results[name] = run(folder)
            print(f"  {results[name][0]:.1f} s, {len(results[name][1])} trials", flush=True)
            if len(results) < len(variants):  # a run cut short (a GPU lease, a timeout) keeps what it measured
                write_json(args.json, measured(results, n, fixed, pack, concurrency, prep, device, args), quiet=True)
    return report(measured(results, n, fixed, pack, concurrency, prep, device, args), fixed, prep, args.json)


def measured(results: dict, n: int, fixed: dict, pack: int, concurrency: int, prep: float, device: str,
             args) -> dict:
    """The JSON payload of the variants run so far (in order, (a) first); ``complete`` once all four ran."""
    names = list(results)
    wall_a, reference = results[names[0]]
    rows = []
    for name in names:
        wall, found = results[name]
        evals = [v["eval_seconds"] for v in found.values() if v.get("eval_seconds") is not None]
        rows.append({"variant": name, "trials": len(found), "wall s": wall, "trials/hour": 3600 * len(found) / wall,
                     "x (a)": wall_a / wall * len(found) / max(len(reference), 1),
                     "max |d acc| vs (a)": compare(found, reference)["max_abs_diff"],
                     "eval s/trial": sum(evals) / max(len(evals), 1)})
    complete = len(rows) == 4
    return {"benchmark": "sweep_throughput", "quick": args.quick, "complete": complete, "machine": machine(device),
            "configs": n, "fixed": fixed, "pack": pack, "concurrency": concurrency, "prepare_s": prep, "rows": rows,
            "ratio_d_to_a": rows[3]["x (a)"] if complete else None,
            "ratio_d_to_b": rows[3]["trials/hour"] / rows[1]["trials/hour"] if complete else None,
            "accuracy": {name: {str(k): v for k, v in found.items()} for name, (_, found) in results.items()},
            "agreement": {name: compare(found, reference) for name, (_, found) in results.items()}}


def report(payload: dict, fixed: dict, prep: float, path: Path) -> dict:
    """Print the table and the ratios of a complete run, and write its JSON."""
    rows = payload["rows"]
    print(f"\n{payload['configs']} bridge configurations ({fixed['bridge.steps']} steps, smoke preset, seed 0), "
          f"{payload['concurrency']} at a time on {payload['machine']['device']}; base models prepared beforehand "
          f"in {prep:.1f} s\n")
    print(table(rows, list(rows[0])))
    print(f"\npacked sweep: {payload['ratio_d_to_a']:.1f}x the trials/hour of (a), {payload['ratio_d_to_b']:.1f}x "
          f"of (b); accuracies agree with (a) within {max(r['max |d acc| vs (a)'] for r in rows):.3g}")
    write_json(path, payload)
    return payload


if __name__ == "__main__":
    main()
