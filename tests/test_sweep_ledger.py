"""The run folder's ledger: append-only JSON lines that survive a driver killed mid-write."""

from __future__ import annotations

import pytest

from ltrans.sweep.results import (
    CURVES_LEDGER,
    IDENTITY,
    TRIALS_LEDGER,
    Ledger,
    best_entries,
    cpu_model,
    provenance,
    trial_row,
    write_parquets,
)
from ltrans.sweep.spec import Objective


def entry(number: int) -> dict:
    return {"number": number, "status": "ok", "metrics": {"transfer_mean": 0.5}, "tune_trial_id": f"t{number}"}


@pytest.mark.parametrize("torn", ['{"kind": "trial", "number": 1, "sta', "{", "x"])
def test_a_torn_line_loses_only_itself(tmp_path, torn):
    ledger = Ledger(tmp_path)
    ledger.record_trial(entry(0))
    with open(tmp_path / TRIALS_LEDGER, "a") as f:
        f.write(torn)  # a driver killed mid-write
    ledger.record_trial(entry(1))  # the resume runs #1 again
    ledger.record_trial(entry(2))
    trials = Ledger(tmp_path).trials()
    assert sorted(trials) == [0, 1, 2]
    assert trials[1]["tune_trial_id"] == "t1" and trials[2]["metrics"] == {"transfer_mean": 0.5}


def test_a_torn_curve_point_loses_only_itself(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.record_curve({"number": 0, "step": 50})
    with open(tmp_path / CURVES_LEDGER, "a") as f:
        f.write('{"number": 0, "st')
    ledger.record_curve({"number": 0, "step": 100})
    assert [p["step"] for p in ledger.curves()] == [50, 100]


def test_whole_lines_are_appended_without_blank_ones(tmp_path):
    ledger = Ledger(tmp_path)
    for number in range(3):
        ledger.record_trial(entry(number))
    lines = (tmp_path / TRIALS_LEDGER).read_text().split("\n")
    assert len(lines) == 4 and lines[-1] == "" and all(lines[:3])  # one record a line, no empty lines


def test_one_objective_has_one_best_even_when_tied(tmp_path):
    trials = {n: {"number": n, "status": "ok", "metrics": {"transfer_mean": v, "fid_a_to_b": f}}
              for n, v, f in [(0, 0.2, 5.0), (1, 0.32, 4.0), (2, 0.32, 3.0), (3, 0.1, 1.0)]}
    best = best_entries(trials, [Objective("transfer_mean", "maximize")])
    assert [e["number"] for e in best] == [1]  # the first trial to reach the best value
    front = best_entries(trials, [Objective("transfer_mean", "maximize"), Objective("fid_a_to_b", "minimize")])
    assert [e["number"] for e in front] == [2, 3]  # #1 is dominated by #2 (same transfer, lower FID)


def test_reading_a_ledger_writes_nothing(tmp_path):
    ledger = Ledger(tmp_path)
    assert ledger.trials() == {} and ledger.curves() == []
    assert list(tmp_path.iterdir()) == []  # `sweep status|trials|best` only read the run folder
    ledger.record_trial(entry(0))
    assert list(Ledger(tmp_path).trials()) == [0]


def test_parquets_of_a_run_where_no_trial_has_finished_still_have_their_columns(tmp_path):
    import pandas as pd

    assert write_parquets(tmp_path) == (0, 0)
    trials = pd.read_parquet(tmp_path / "trials.parquet")
    assert trials.empty and list(trials.columns) == list(IDENTITY)  # `ltrans report` reads status and pair
    assert trial_row(entry(0)).keys() >= set(IDENTITY)  # the same columns as when rows exist
    assert {"number", "step"} <= set(pd.read_parquet(tmp_path / "curves.parquet").columns)


X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7B13
stepping\t: 1

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
"""
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32
CPU implementer\t: 0x41
"""


def test_cpu_model_reads_the_model_name_of_proc_cpuinfo_and_falls_back_without_one(tmp_path):
    x86, arm = tmp_path / "x86", tmp_path / "arm"
    x86.write_text(X86_CPUINFO)
    arm.write_text(ARM_CPUINFO)  # aarch64 Linux has no "model name" line
    assert cpu_model(x86) == "AMD EPYC 7B13"
    fallback = cpu_model(tmp_path / "missing")
    assert fallback and fallback == cpu_model(arm)  # platform's answer, the same whichever way it is reached
    assert provenance("sha", [])["machine"]["cpu"] == cpu_model()
