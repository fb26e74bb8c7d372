"""The benchmarks run end to end with --quick and leave a well-formed table and JSON (not a speed)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bench(name: str, tmp_path: Path, *args: str, timeout: int = 600) -> tuple[str, dict]:
    out = tmp_path / f"{name}.json"
    env = {**os.environ, "LTRANS_RAY_CPUS": "2"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--quick", "--threads", "1",
                           "--device", "cpu", "--json", str(out), *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def table_rows(stdout: str, header: list[str]) -> list[str]:
    """The data lines of the printed table whose header line has ``header``'s columns in order."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if all(h in line for h in header))
    assert set(lines[start + 1].replace(" ", "")) == {"-"}  # the rule under the header
    rows = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        rows.append(line)
    return rows


def positive(*values) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values)


def test_efficiency_measures_matmul_and_packs_in_one_run(tmp_path):
    stdout, data = bench("efficiency", tmp_path)
    rows = table_rows(stdout, ["bridge", "how", "K", "GFLOP/s", "% of matmul"])
    assert len(rows) == len(data["rows"]) == 6 and "fp32 matmul rate on cpu" in stdout
    assert positive(data["matmul_gflops"]) and data["matmul_gflops"] == max(data["matmul_gflops_measured"])
    for row in data["rows"]:
        assert positive(row["ms/step"], row["GFLOP/step"], row["GFLOP/s"], row["% of matmul"])
        assert row["GFLOP/s"] == pytest.approx(row["GFLOP/step"] / row["ms/step"] * 1e3, rel=1e-6)
    packed = [r for r in data["rows"] if r["how"] == "packed" and r["bridge"] == "smoke"]
    assert packed[1]["GFLOP/step"] == pytest.approx(packed[1]["K"] * packed[0]["GFLOP/step"], rel=1e-6)
    assert data["machine"]["threads"] == 1
    assert data["best_packed_percent"] == max(r["% of matmul"] for r in data["rows"] if r["how"] == "packed")


def test_efficiency_leaves_setup_out_of_the_unpacked_and_the_packed_step_times_alike(monkeypatch):
    # train_bridge's wall_s counts building the bridge; the pack's timer starts once it is built. With a
    # slow setup (0.3 s a bridge) the two must still agree per step: setup must not leak into either.
    import dataclasses
    import time

    from ltrans.bridge.model import Bridge
    from ltrans.bridge.toy import toy_pair

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from efficiency import SMOKE, timed_pack, timed_unpacked

    init = Bridge.__init__

    def slow_init(self, *args, **kwargs):
        time.sleep(0.3)
        init(self, *args, **kwargs)

    monkeypatch.setattr(Bridge, "__init__", slow_init)
    cfg = dataclasses.replace(SMOKE, width=16, batch_size=32, n_projections=8)
    pair = toy_pair(n_per_class=50, dim=8, rotation_seed=0, noise=0.5, seed=0, posterior_std=0.1)
    lat, steps = (pair.latents_a, pair.latents_b), 10
    unpacked, packed = timed_unpacked(cfg, steps, lat, "cpu"), timed_pack(cfg, 1, steps, lat, "cpu")
    assert abs(unpacked - packed) < 0.3 / steps / 2, (unpacked, packed)  # setup in one of them: 0.03 s a step


def test_bridge_vs_base_times_both_and_projects_to_paper_scale(tmp_path):
    stdout, data = bench("bridge_vs_base", tmp_path)
    rows = table_rows(stdout, ["pair", "model", "train s", "bridge to 95% s", "bridge full s",
                               "base full / bridge to 95%", "base full / bridge full"])
    assert len(rows) == len(data["measured"]) == 2  # mnist_mnist's two base models
    assert {r["model"] for r in data["measured"]} == {"mnist_vae", "mnist_vae_b"}
    for row in data["measured"]:
        assert positive(row["train s"], row["bridge to 95% s"], row["step GFLOP"], row["latents s"])
        assert row["base full / bridge to 95%"] == pytest.approx(row["train s"] / row["bridge to 95% s"])
        assert row["base full / bridge full"] == pytest.approx(row["train s"] / row["bridge full s"])
        assert 0 <= row["final transfer"] <= 1
    (proj,) = data["projected"]
    assert positive(proj["base PFLOP"], proj["bridge PFLOP"], proj["base h"], proj["bridge h"])
    assert proj["x fewer FLOPs"] == pytest.approx(proj["base PFLOP"] / proj["bridge PFLOP"])
    curve = data["bridges"][0]["curve"]
    assert [p["step"] for p in curve] == sorted(p["step"] for p in curve) and curve[-1]["step"] == 200
    reach = data["bridges"][0]["steps to 95%"]
    assert next(p for p in curve if p["transfer"] >= 0.95 * curve[-1]["transfer"])["step"] == reach


def test_bridge_vs_base_ratios_divide_the_base_time_by_the_bridges_time_to_95_and_in_full(monkeypatch):
    # A base model's full training against the bridge's time to 95% is not like for like: the full-vs-full
    # ratio is reported beside it, from the same curve.
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from bridge_vs_base import curve_times, side_by_side

    curve = [{"step": 50, "train_s": 2.0, "transfer": 0.5}, {"step": 100, "train_s": 4.0, "transfer": 0.9},
             {"step": 150, "train_s": 6.0, "transfer": 0.8}, {"step": 200, "train_s": 8.0, "transfer": 0.92}]
    base = {"pair": "mnist_mnist", "model": "mnist_vae", "train s": 120.0}
    (row,) = side_by_side([base], curve_times(curve))
    assert row["steps to 95%"] == 100 and row["bridge to 95% s"] == 4.0 and row["bridge full s"] == 8.0
    assert row["base full / bridge to 95%"] == pytest.approx(120.0 / 4.0)
    assert row["base full / bridge full"] == pytest.approx(120.0 / curve[-1]["train_s"])  # 15x, not 30x
    assert row["train s"] == 120.0 and row["final transfer"] == 0.92


@pytest.mark.parametrize(("device", "threads", "named"), [
    ("cpu", None, []), ("cuda", None, ["device cuda (this run: cpu)"]), ("cpu", 1, []),
    ("cpu", 4, ["threads 4 (this run: 1)"]), ("cuda", 4, ["device cuda (this run: cpu)", "threads 4 (this run: 1)"]),
])
def test_bridge_vs_base_warns_when_a_base_model_was_timed_under_other_settings(monkeypatch, device, threads, named):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from bridge_vs_base import provenance_warnings

    base = {"pair": "mnist_mnist", "model": "mnist_vae", "train device": device, "train threads": threads}
    lines = provenance_warnings([base, base | {"model": "mnist_vae_b", "train device": "cpu", "train threads": 1}],
                                "cpu", 1)
    assert len(lines) == (1 if named else 0)
    for part in named:
        assert "mnist_vae's" in lines[0] and part in lines[0]


@pytest.mark.slow
def test_sweep_throughput_runs_the_four_variants_on_the_same_configs(tmp_path):
    stdout, data = bench("sweep_throughput", tmp_path, timeout=900)
    rows = table_rows(stdout, ["variant", "trials", "wall s", "trials/hour", "x (a)"])
    assert len(rows) == len(data["rows"]) == 4 and data["configs"] == 4
    assert [r["variant"][:3] for r in data["rows"]] == ["(a)", "(b)", "(c)", "(d)"]
    for row in data["rows"]:
        assert row["trials"] == 4 and positive(row["wall s"], row["trials/hour"], row["x (a)"])
        assert row["trials/hour"] == pytest.approx(3600 * 4 / row["wall s"])
    assert data["rows"][0]["x (a)"] == pytest.approx(1.0)
    # Same configurations, seeds and steps: every variant finds (a)'s accuracies for every configuration.
    for name, agreement in data["agreement"].items():
        assert agreement["compared"] == 4 and agreement["max_abs_diff"] <= 0.01, name


def test_sweep_throughput_always_packs_and_never_exceeds_the_concurrent_trials(monkeypatch):
    # (d) is the packed variant: on a machine with as many cores as configurations (a GPU box running
    # --quick: 4 configurations, 8 at a time) a pack of 1 would make it (c) again.
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from sweep_throughput import pack_size

    for n in (2, 4, 64):
        for concurrency in (1, 2, 3, 8, 16):
            k = pack_size(n, concurrency)
            assert 2 <= k <= n  # always packs, never more members than configurations
            assert math.ceil(n / k) <= concurrency  # no more packs than trials run at once
    assert pack_size(64, 2) == 32 and pack_size(4, 8) == 2


def test_sweep_throughput_payload_of_a_run_cut_short_keeps_its_variants_without_ratios(monkeypatch):
    # benchmarks/gpu.sh may run out of its lease mid-benchmark: the JSON written after each variant
    # must hold what was measured and claim no ratio until all four ran.
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from argparse import Namespace

    from sweep_throughput import measured

    configs = {(0.001,): {"transfer_a_to_b": 0.5, "transfer_b_to_a": 0.25, "eval_seconds": 1.0},
               (0.003,): {"transfer_a_to_b": 0.75, "transfer_b_to_a": 0.5, "eval_seconds": 3.0}}
    walls = {"(a)": 100.0, "(b)": 40.0, "(c)": 50.0, "(d)": 20.0}
    results = {}
    for name, wall in walls.items():
        results[name] = (wall, configs)
        payload = measured(results, 2, {}, 2, 2, 1.0, "cpu", Namespace(quick=True))
        assert [r["variant"] for r in payload["rows"]] == list(results)
        assert payload["complete"] == (len(results) == 4)
        assert [r["x (a)"] for r in payload["rows"]] == pytest.approx([100.0 / w for w in list(walls.values())[:len(results)]])
        assert all(r["eval s/trial"] == pytest.approx(2.0) and r["max |d acc| vs (a)"] == 0 for r in payload["rows"])
    assert payload["ratio_d_to_a"] == pytest.approx(5.0) and payload["ratio_d_to_b"] == pytest.approx(2.0)
    partial = measured(dict(list(results.items())[:3]), 2, {}, 2, 2, 1.0, "cpu", Namespace(quick=True))
    assert partial["ratio_d_to_a"] is None and partial["ratio_d_to_b"] is None


@pytest.mark.parametrize(("only", "message"), [
    ("throughput sweeps", "unknown step 'sweeps' in ONLY; steps: efficiency throughput bridge_vs_base sweep"),
    ("throughput sweep", "torch sees no CUDA device"),
])
def test_gpu_script_refuses_a_wrong_step_or_a_machine_without_cuda(tmp_path, only, message):
    import torch

    if torch.cuda.is_available() and "CUDA" in message:
        pytest.skip("this machine has CUDA")
    env = {**os.environ, "ONLY": only, "OUT_DIR": str(tmp_path / "gpu"), "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 2 and message in proc.stdout + proc.stderr
    assert not list((tmp_path / "gpu").glob("*.json"))  # nothing measured, nothing written
