"""How long `ltrans report` takes on big sweeps: synthetic run folders in the runner's own layout, timed.

    python benchmarks/report_scale.py            # 1,000 and 10,000 trials: ~1-2 minutes on 2 CPU cores
    python benchmarks/report_scale.py --quick    # 200 trials in seconds (the test runs this)

Each run folder is made by the sweep runner's own code: ``create_run`` writes sweep.yaml, state.json and
provenance.json from a sweep over all four pairs, the ablation ladder, label budgets, Procrustes and
three seeds; trial and curve records go into the ledger in its JSON-lines format and
``ltrans.sweep.results.write_parquets`` turns them into trials.parquet and curves.parquet. The metrics
are synthetic (rung and label budget set the accuracy, plus noise), the layout is real. The report is
timed end to end as a user runs it (``python -m ltrans report``, imports included) against the issue's
budget of 60 s, with a per-section breakdown from a second, in-process build.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import yaml
from common import write_json

BUDGET_S = 60.0
PAIRS = ("mnist_mnist", "mnist_animals", "mnist_vae_gan", "mnist_spoken")
SPACE = {
    "method": {"type": "categorical", "choices": ["bridge", "procrustes"]},
    "bridge.beta_kl": {"type": "categorical", "choices": [0.0, 0.005]},
    "bridge.beta_swd": {"type": "categorical", "choices": [0.0, 1.0]},
    "bridge.beta_cls": {"type": "categorical", "choices": [0.0, 0.05]},
    "bridge.n_sup": {"type": "categorical", "choices": [0, 10, 100, 1000, -1]},
    "bridge.lr": {"type": "float", "low": 1.0e-4, "high": 3.0e-3, "log": True},
    "bridge.width": {"type": "categorical", "choices": [128, 256, 512, 1024]},
}
GAIN = {"kl": 0.15, "swd": 0.3, "cls": 0.2}  # accuracy each loss term adds: AE 0.25 ... full bridge 0.9
EVAL_EVERY, STEPS = 250, 4000  # 16 curve points for a trial that runs out


def sweep_file(folder: Path, n_trials: int) -> Path:
    """A sweep over every pair, the ladder's loss terms, label budgets, Procrustes, lr and width."""
    raw = {"name": "scale", "description": "synthetic: report benchmark", "preset": "paper", "pairs": list(PAIRS),
           "seeds": [0, 1, 2], "budget": n_trials, "sampler": "random",
           "objectives": [{"name": "transfer_mean", "direction": "maximize"}],
           "fixed": {"bridge.eval_every": EVAL_EVERY, "bridge.steps": STEPS}, "space": SPACE,
           "scheduler": {"type": "asha", "metric": "loss_recon", "mode": "min", "grace_period": 500},
           "resources": {"cpus": 1, "gpus": 0}}
    path = folder / "scale.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def sample_params(rng: np.random.Generator) -> dict:
    """One random point of SPACE (what the random sampler would suggest)."""
    out = {}
    for key, d in SPACE.items():
        if d["type"] == "categorical":
            out[key] = d["choices"][rng.integers(len(d["choices"]))]
        else:
            out[key] = float(np.exp(rng.uniform(np.log(d["low"]), np.log(d["high"]))))
    return out


def accuracy(params: dict, rng: np.random.Generator) -> float:
    """A plausible transfer accuracy: the rung, the label budget and the learning rate decide it."""
    labels = {0: 0.6, 10: 0.75, 100: 0.9, 1000: 0.97, -1: 1.0}[params["bridge.n_sup"]]
    if params["method"] == "procrustes":
        base = 0.85 * labels
    else:
        base = (0.25 + sum(g for k, g in GAIN.items() if params[f"bridge.beta_{k}"] > 0)) * labels
        base -= 0.15 * abs(np.log10(params["bridge.lr"] / 1e-3))
    return float(np.clip(base + rng.normal(0, 0.03), 0.05, 1.0))


def confusion(acc: float, rng: np.random.Generator) -> list[int]:
    """100 counts (row-major 10x10) whose diagonal holds about ``acc`` of each row of 50."""
    rows = [rng.multinomial(50, np.where(np.arange(10) == c, acc, (1 - acc) / 9)) for c in range(10)]
    return np.concatenate(rows).tolist()


def trial_records(number: int, pair: str, seed: int, config: dict, rng: np.random.Generator) -> tuple[dict, list]:
    """One ledger trial entry (as the searcher writes it) and its curve points (as Progress writes them)."""
    params = {k: config[k] for k in SPACE}
    procrustes = params["method"] == "procrustes"
    status = "failed" if procrustes and params["bridge.n_sup"] == 0 else str(rng.choice(
        ["ok", "pruned", "failed"], p=[0.8, 0.17, 0.03]) if not procrustes else "ok")
    steps = 0 if procrustes else {"ok": STEPS, "pruned": int(rng.choice([500, 1500])), "failed": 750}[status]
    train_s = float(rng.lognormal(np.log(0.05), 0.3)) if procrustes else steps / 4000 * float(rng.lognormal(3.4, 0.4))
    metrics = {"train_seconds": train_s, "steps": steps, "method": params["method"]}
    reason = {"pruned": f"ASHA stopped it at bridge step {steps}", "failed": "parameters became non-finite"}
    if status == "ok":
        a, b = accuracy(params, rng), accuracy(params, rng)
        metrics |= {"transfer_a_to_b": a, "transfer_b_to_a": b, "transfer_mean": (a + b) / 2,
                    "fid_a_to_b": float(60 * (1 - a) + rng.gamma(2, 2)), "fid_b_to_a": float(60 * (1 - b) + rng.gamma(2, 2)),
                    "confusion_a_to_b": confusion(a, rng), "confusion_b_to_a": confusion(b, rng),
                    "eval_seconds": float(rng.uniform(1, 3)), "trial_seconds": train_s + 2}
    tune_id = f"{number:08x}"
    entry = {"number": number, "tune_trial_id": tune_id, "content_key": f"{number:016x}", "status": status,
             "reason": "" if status == "ok" else reason[status], "pair": pair, "seed": seed, "attempt": 1,
             "wall_s": train_s + 3.0, "node_ip": "127.0.0.1", "metrics": metrics, "config": config}
    curve = [{"number": number, "tune_trial_id": tune_id, "step": s, "wall_s": train_s * s / max(steps, 1),
              "loss_recon": float(np.exp(-s / 1500) + 0.05 + rng.normal(0, 0.005) ** 2),
              "loss_total": float(1.5 * np.exp(-s / 1500) + 0.1)} for s in range(EVAL_EVERY, steps + 1, EVAL_EVERY)]
    return entry, curve


def make_run(folder: Path, n_trials: int, seed: int = 0) -> tuple[Path, int]:
    """A finished synthetic sweep of ``n_trials`` in ``folder/run``; (run folder, curve points)."""
    from ltrans.sweep import results
    from ltrans.sweep.runner import create_run, load_run
    from ltrans.sweep.trials import base_config, flat_config

    run = create_run(sweep_file(folder, n_trials), folder / "run", False, ["benchmarks/report_scale.py"])
    spec, _ = load_run(run)
    bases = {pair: flat_config(base_config(spec, pair)) for pair in PAIRS}
    rng = np.random.default_rng(seed)
    trials, curves = [], []
    for number in range(n_trials):
        pair, trial_seed = PAIRS[number % len(PAIRS)], int(rng.integers(3))
        entry, curve = trial_records(number, pair, trial_seed, bases[pair] | sample_params(rng) | {"seed": trial_seed}, rng)
        trials.append({"kind": "trial", **entry})
        curves += curve
    results.Ledger(run)  # makes ledger/; one bulk write below instead of an fsync per trial
    for rel, records in ((results.TRIALS_LEDGER, trials), (results.CURVES_LEDGER, curves)):
        (run / rel).write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    results.write_parquets(run)
    return run, len(curves)


def time_cli(run: Path, out: Path) -> float:
    """Seconds for `python -m ltrans report RUN -o OUT`, as a user runs it (imports included)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ltrans", "report", str(run), "-o", str(out)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"ltrans report failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def measure(n_trials: int, folder: Path) -> dict:
    """Make a run of ``n_trials``, time its report end to end, and break the time down by section."""
    from ltrans.analysis.report import write_report

    folder.mkdir(parents=True)
    run, n_points = make_run(folder, n_trials)
    html = folder / "report.html"
    seconds = time_cli(run, html)
    breakdown = write_report([run], folder / "again.html").timings
    return {"trials": n_trials, "curve_points": n_points, "report_s": seconds, "html_mb": html.stat().st_size / 1e6,
            "within_budget": seconds < BUDGET_S, "sections_s": breakdown}


def table(rows: list[dict]) -> str:
    """The measurements side by side, with seconds per 1,000 trials (flat means it scales linearly)."""
    head = f"{'trials':>8} {'curve pts':>10} {'report s':>9} {'s/1k trials':>11} {'HTML MB':>8} {'< 60 s':>7}  slowest step"
    lines = [head, "-" * len(head)]
    for r in rows:
        slow = max(r["sections_s"].items(), key=lambda kv: kv[1])
        lines.append(f"{r['trials']:>8,} {r['curve_points']:>10,} {r['report_s']:>9.1f} "
                     f"{1000 * r['report_s'] / r['trials']:>11.2f} {r['html_mb']:>8.1f} "
                     f"{'yes' if r['within_budget'] else 'NO':>7}  {slow[0]} {slow[1]:.1f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small size (200 trials): checks, not speed")
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated trial counts")
    parser.add_argument("--json", type=Path, default=Path("out/bench/report_scale.json"), help="where to write JSON")
    args = parser.parse_args(argv)
    sizes = [200] if args.quick else [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="report-scale-") as tmp:
        rows = [measure(n, Path(tmp) / f"n{n}") for n in sizes]
    print(table(rows))
    write_json(args.json, {"budget_s": BUDGET_S, "runs": rows})


if __name__ == "__main__":
    main()
