"""End to end: `ltrans sweep run sweeps/demo.yaml --smoke-test` on a real local Ray, and its run folder."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLI = "import ltrans.cli_sweep; from ltrans.cli import main; main()"


def sweep_cli(*args: str, timeout: int = 600, cpus: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "LTRANS_RAY_CPUS": str(cpus)}
    return subprocess.run([sys.executable, "-c", CLI, "sweep", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT, check=False)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, _session_cache):
    run = tmp_path_factory.mktemp("sweep") / "demo-smoke"
    proc = sweep_cli("run", "sweeps/demo.yaml", "--smoke-test", "--out", str(run))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run, proc


def study_of(run: Path, name: str = "demo") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{run}/optuna.db")


@pytest.mark.slow
def test_smoke_sweep_leaves_a_complete_run_folder(smoke_run):
    run, proc = smoke_run
    for name in ("sweep.yaml", "provenance.json", "optuna.db", "trials.parquet", "curves.parquet", "state.json"):
        assert (run / name).is_file(), name
    assert list((run / "tune" / "attempt-1").glob("trial_*/params.json"))  # Tune's own layout
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["git_sha"] and prov["packages"]["ray"].startswith("2.60") and prov["machine"]["cpus"] >= 1
    assert "4/4 finished" in proc.stdout and "best transfer_mean" in proc.stdout  # the progress display


@pytest.mark.slow
def test_trials_parquet_agrees_with_the_optuna_study(smoke_run):
    run, _ = smoke_run
    trials = pd.read_parquet(run / "trials.parquet")
    assert len(trials) == 4 and trials["number"].is_unique and trials["content_key"].is_unique
    assert set(trials["status"]) <= {"ok", "pruned", "failed"} and (trials["status"] == "ok").any()
    assert {"config/bridge.beta_swd", "config/bridge.lr", "config/seed", "wall_s", "node_ip"} <= set(trials.columns)
    study = study_of(run)
    told = {t.number: t for t in study.trials}
    assert set(told) == set(trials["number"])
    to_state = {"ok": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL"}
    for _, row in trials.iterrows():
        frozen = told[row.number]
        assert frozen.state.name == to_state[row.status]
        assert frozen.user_attrs["content_key"] == row.content_key
        assert frozen.params["bridge.beta_swd"] == row["config/bridge.beta_swd"]
        if row.status == "ok":
            assert frozen.values == [pytest.approx(row.transfer_mean)]
            assert row.transfer_mean == pytest.approx((row.transfer_a_to_b + row.transfer_b_to_a) / 2)


@pytest.mark.slow
def test_curves_cover_each_trial_up_to_where_it_stopped(smoke_run):
    run, _ = smoke_run
    trials = pd.read_parquet(run / "trials.parquet").set_index("number")
    curves = pd.read_parquet(run / "curves.parquet")
    assert {"number", "step", "wall_s", "loss_recon", "loss_total"} <= set(curves.columns)
    last = curves.groupby("number")["step"].max()
    for number, row in trials.iterrows():
        if row.status == "ok":
            assert last[number] == row["config/bridge.steps"]
        elif row.status == "pruned":
            assert last[number] < row["config/bridge.steps"] and f"step {last[number]}" in row.reason


@pytest.mark.slow
def test_read_commands_and_an_idempotent_resume(smoke_run):
    run, _ = smoke_run
    status = sweep_cli("status", str(run))
    assert status.returncode == 0 and "finished 4/4" in status.stdout
    rows = json.loads(sweep_cli("trials", str(run), "-f", "json").stdout)
    assert sorted(r["number"] for r in rows) == [0, 1, 2, 3]
    csv = sweep_cli("trials", str(run), "-f", "csv").stdout
    assert csv.splitlines()[0].startswith("number,") and len(csv.splitlines()) == 5
    best = json.loads(sweep_cli("best", str(run)).stdout)
    ok = [r for r in rows if r["status"] == "ok"]
    assert best["objectives"]["transfer_mean"] == max(r["transfer_mean"] for r in ok)
    again = sweep_cli("resume", str(run))
    assert again.returncode == 0 and "4/4 trials finished" in again.stdout
    assert not (run / "tune" / "attempt-2").exists()  # nothing was owed: Ray did not even start


def tiny_sweep(tmp_path: Path, **changes) -> Path:
    doc = {"name": "tiny", "preset": "smoke", "pairs": ["mnist_mnist"], "budget": 2, "sampler": "random",
           "objectives": [{"name": "transfer_mean", "direction": "maximize"}],
           "space": {"bridge.beta_swd": {"type": "float", "low": 0.1, "high": 10.0, "log": True}}} | changes
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_no_cluster_at_address_is_one_error_before_any_model_is_prepared(tmp_path):
    from ray._private.services import find_bootstrap_address, find_gcs_addresses

    if find_gcs_addresses() or find_bootstrap_address(None):
        pytest.skip("a Ray cluster runs on this machine: --address auto would join it")
    proc = sweep_cli("run", str(tiny_sweep(tmp_path)), "--address", "auto", "--out", str(tmp_path / "run"),
                     timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "ray start --head" in proc.stderr and "--address auto" in proc.stderr
    assert "preparing" not in proc.stdout  # it failed before training or loading any base model
    assert not (tmp_path / "run").exists()  # so the same command works once a cluster runs


def test_gpu_sweep_without_a_gpu_is_one_error_before_any_model_is_prepared(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    path = tiny_sweep(tmp_path, resources={"cpus": 1, "gpus": 1})
    proc = sweep_cli("run", str(path), "--out", str(tmp_path / "run"), timeout=180)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.splitlines()[-1]  # after Ray's own "Started a local Ray instance."
    assert last.startswith("error: ") and "asks for 1 GPU" in last and "resources.gpus: 0" in last
    assert "preparing" not in proc.stdout and not (tmp_path / "run").exists()


def test_more_cpus_per_trial_than_the_local_ray_has_is_one_error_not_a_hang(tmp_path):
    proc = sweep_cli("run", str(tiny_sweep(tmp_path, resources={"cpus": 2, "gpus": 0})), "--out",
                     str(tmp_path / "run"), timeout=180, cpus=1)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.splitlines()[-1]
    assert last == ("error: sweep tiny asks for 2 CPUs per trial (resources.cpus) but the local Ray has 1; set "
                    "resources.cpus to at most 1 or raise LTRANS_RAY_CPUS, or join a bigger cluster with --address")
    assert "preparing" not in proc.stdout and not (tmp_path / "run").exists()


@pytest.mark.parametrize(("pack", "cpus", "problem"), [
    (1, 4, "4 CPUs per trial (resources.cpus) but the local Ray has 2"),
    (2, 4, "4 CPUs per pack (resources.cpus) but the local Ray has 2"),  # a pack is one Tune trial
    (2, 2, None), (1, 0.5, None)])
def test_the_resource_check_compares_one_trial_or_pack_with_the_local_ray(tmp_path, pack, cpus, problem):
    from ltrans.errors import UserError
    from ltrans.sweep.runner import _check_resources
    from ltrans.sweep.spec import load_spec

    spec = load_spec(tiny_sweep(tmp_path, pack=pack, resources={"cpus": cpus, "gpus": 0}))
    _check_resources(spec, None)  # a cluster (--address) may add nodes: never refused
    if problem is None:
        _check_resources(spec, {"CPU": 2.0, "memory": 1e9})
        return
    with pytest.raises(UserError, match=re.escape(problem)):
        _check_resources(spec, {"CPU": 2.0, "memory": 1e9})


def refusing_address() -> tuple[socket.socket, str]:
    """A bound but not listening local port: connecting to it is refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, f"127.0.0.1:{sock.getsockname()[1]}"


def test_an_unreachable_address_fails_in_seconds_and_leaves_the_out_folder_as_it_was(tmp_path):
    from click.testing import CliRunner

    from ltrans.cli import cli

    sock, address = refusing_address()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with sock:
        for out in (tmp_path / "run", tmp_path / "run", tmp_path / "mine"):  # twice: the rerun is no resume
            start = time.monotonic()
            result = CliRunner().invoke(cli, ["sweep", "run", str(tiny_sweep(tmp_path)), "--address", address,
                                              "-o", str(out)], obj={})
            assert time.monotonic() - start < 30  # ray.init alone retries for minutes
            last = result.output.strip().splitlines()[-1]
            assert result.exit_code == 2 and last.startswith(f"error: nothing answers at --address {address} ("), \
                result.output
            assert "ray start --head" in last
    assert not (tmp_path / "run").exists()
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]  # only the sweep's files went


def test_an_out_folder_with_run_files_of_the_users_is_refused_and_an_existing_one_is_kept(tmp_path):
    from click.testing import CliRunner

    from ltrans.cli import cli

    sock, address = refusing_address()
    spec = tiny_sweep(tmp_path)
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "sweep.yaml").write_bytes(spec.read_bytes())  # `cd exp; ltrans sweep run sweep.yaml -o .`
    (tmp_path / "empty").mkdir()
    with sock:
        mine = CliRunner().invoke(cli, ["sweep", "run", str(tmp_path / "exp" / "sweep.yaml"), "--address", address,
                                        "-o", str(tmp_path / "exp")], obj={})
        empty = CliRunner().invoke(cli, ["sweep", "run", str(spec), "--address", address,
                                         "-o", str(tmp_path / "empty")], obj={})
    assert mine.exit_code == 2 and mine.output == f"error: {tmp_path / 'exp'} already holds sweep.yaml but is no " \
        "sweep run folder; choose a new or empty -o folder\n"
    assert (tmp_path / "exp" / "sweep.yaml").read_bytes() == spec.read_bytes()  # neither overwritten nor deleted
    assert empty.exit_code == 2 and "nothing answers" in empty.output
    assert (tmp_path / "empty").is_dir() and not any((tmp_path / "empty").iterdir())  # there before: it stays


def test_a_malformed_address_is_one_error_naming_it(tmp_path):
    proc = sweep_cli("run", str(tiny_sweep(tmp_path)), "--address", "bogus", "--out", str(tmp_path / "run"),
                     timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: cannot join a Ray cluster at --address bogus (Invalid address format")
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "run").exists()


def test_a_run_that_started_is_never_discarded(tmp_path):
    from ltrans.sweep.runner import create_run, discard_unstarted

    run = create_run(tiny_sweep(tmp_path), tmp_path / "run", smoke=False, argv=["test"])
    state = json.loads((run / "state.json").read_text())
    (run / "state.json").write_text(json.dumps(state | {"attempts": 1}))
    assert not discard_unstarted(run) and (run / "state.json").is_file()
    assert discard_unstarted(create_run(tiny_sweep(tmp_path), tmp_path / "new", smoke=False, argv=["test"]))
    assert not (tmp_path / "new").exists()


def test_resuming_a_finished_run_starts_nothing_and_records_no_attempt(tmp_path):
    from ltrans.sweep.results import Ledger
    from ltrans.sweep.runner import create_run, execute

    run = create_run(tiny_sweep(tmp_path), tmp_path / "run", smoke=False, argv=["test"])
    state = json.loads((run / "state.json").read_text()) | {"attempts": 1}  # as after the first start
    (run / "state.json").write_text(json.dumps(state))
    provenance = (run / "provenance.json").read_text()
    for number, value in enumerate((0.6, 0.8)):
        Ledger(run).record_trial({"number": number, "status": "ok", "tune_trial_id": f"t{number}",
                                  "metrics": {"transfer_mean": value}, "config": {}})
    lines: list[str] = []
    outcome = execute(run, echo=lines.append, argv=["resume"])
    assert (outcome.finished, outcome.interrupted, outcome.best[0]["number"]) == (2, False, 1)
    assert json.loads((run / "state.json").read_text()) == state
    assert (run / "provenance.json").read_text() == provenance and not lines
    assert not (run / "tune").exists() and len(pd.read_parquet(run / "trials.parquet")) == 2


def test_ray_tunes_own_resume_hint_is_not_shown(caplog):
    import logging

    from ltrans.sweep.runner import _no_restore_hint

    tune_log = logging.getLogger("ray.tune.tune")  # where Ray 2.60 logs it (ray/tune/tune.py)
    tune_log.addFilter(_no_restore_hint)
    try:
        with caplog.at_level(logging.WARNING, logger="ray.tune.tune"):
            tune_log.warning("Experiment has been interrupted, but the most recent state was saved.\n"
                             "Resume experiment with: Tuner.restore(path='/x', trainable=...)")
            tune_log.warning("another warning")
    finally:
        tune_log.removeFilter(_no_restore_hint)
    assert [r.getMessage() for r in caplog.records] == ["another warning"]


def test_the_address_probe_parses_what_ray_takes_and_refuses_impossible_ports():
    from ltrans.errors import UserError
    from ltrans.sweep.runner import _probe

    sock, address = refusing_address()
    port = address.rsplit(":", 1)[1]
    with sock:
        for form in (address, f"ray://{address}", f"localhost:{port}"):  # each one is probed: refused
            with pytest.raises(UserError, match=f"nothing answers at --address {re.escape(form)}"):
                _probe(form)
    for left_to_ray in ("auto", "bogus", "::1", "fe80::1:6379"):  # no host:port to probe
        _probe(left_to_ray)
    for bad in ("127.0.0.1:99999", "127.0.0.1:0"):  # 99999 would be wrapped to another port
        with pytest.raises(UserError, match="outside 1-65535"):
            _probe(bad)


def test_a_run_folder_whose_path_the_study_url_cannot_hold_is_refused_before_anything_is_written(tmp_path):
    from ltrans.errors import UserError
    from ltrans.sweep.runner import create_run

    for name in ("a?b", "a#b", "a%41b"):
        with pytest.raises(UserError, match="cannot hold; choose an -o path without"):
            create_run(tiny_sweep(tmp_path), tmp_path / name, smoke=False, argv=["test"])
        assert not (tmp_path / name).exists()
