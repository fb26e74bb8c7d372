"""Packed sweeps on a real local Ray: each member one Optuna trial and one ledger line, in-pack ASHA, and
the fault behaviour of tests/test_sweep_faults.py (killed driver, raising and diverging members)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from test_sweep_faults import (
    assert_consistent,
    finish,
    run_faulty_grid,
    sigkill_mid_sweep,
    start_cli,
    sweep_file,
)

ASHA = {"type": "asha", "grace_period": 50, "reduction_factor": 2, "metric": "loss_recon", "mode": "min"}


@pytest.mark.slow
def test_a_packed_sweep_records_every_member_as_its_own_trial(tmp_path, _session_cache):
    run = tmp_path / "run"
    path = sweep_file(tmp_path, "packed", budget=6, pack=3, scheduler=ASHA, max_concurrent=2)
    code, out = finish(start_cli("run", str(path), "--out", str(run)))
    assert code == 0, out
    assert "6/6 finished" in out and "up to 3 per pack" in out
    trials = assert_consistent(run, "packed", 6).set_index("number")
    assert (trials["pack_size"] == 3).all() and trials["tune_trial_id"].nunique() == 2
    assert len(list((run / "tune" / "attempt-1").glob("trial_*/params.json"))) == 2  # two packs, two Tune trials
    assert (trials["status"] == "ok").any() and (trials["status"] == "pruned").any()  # rungs inside packs
    last = pd.read_parquet(run / "curves.parquet").groupby("number")["step"].max()
    for number, row in trials.iterrows():
        if row.status == "ok":
            assert last[number] == row["config/bridge.steps"] and 0 <= row.transfer_mean <= 1
        else:
            assert row.status == "pruned" and row.reason == f"ASHA stopped it at bridge step {last[number]}"
    code, out = finish(start_cli("resume", str(run)))
    assert code == 0 and "6/6 trials finished" in out and not (run / "tune" / "attempt-2").exists()


@pytest.mark.slow
def test_sigkill_mid_packed_sweep_then_resume_keeps_finished_members(tmp_path, _session_cache):
    run = tmp_path / "run"
    before = sigkill_mid_sweep(sweep_file(tmp_path, "killed", pack=2), run)  # the first pack has ended
    code, out = finish(start_cli("resume", str(run)))
    assert code == 0, out
    after = assert_consistent(run, "killed", 4).set_index("number")
    for number, entry in before.items():  # kept as they were, from the first attempt
        assert after.loc[number, "tune_trial_id"] == entry["tune_trial_id"] and after.loc[number, "attempt"] == 1
    packs = [json.loads(p.read_text())["members"] for p in (run / "tune").glob("attempt-2/trial_*/params.json")]
    again = [m["content_key"] for pack in packs for m in pack]  # what the resume's packs trained
    assert len(again) == 4 - len(before) and not set(again) & {e["content_key"] for e in before.values()}


@pytest.mark.slow
def test_raising_and_diverging_members_fail_alone_with_their_reason(tmp_path, _session_cache):
    # The faults of test_sweep_faults, now as one pack of four: each member ends as it does unpacked.
    trials = run_faulty_grid(tmp_path, pack=4)
    assert trials["tune_trial_id"].nunique() == 1
