"""Packed sweeps without a Ray cluster: the `pack` option, in-pack ASHA, run_pack against run_trial, and
the pack searcher telling each member's outcome (tests/test_sweep_packed_run.py runs them on Ray)."""

from __future__ import annotations

import dataclasses
import json
import math

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState
from ray.tune.search import Searcher

from ltrans.config import override
from ltrans.errors import UserError
from ltrans.presets import smoke
from ltrans.sweep.pack_searcher import PackSearcher
from ltrans.sweep.packing import Rungs, pack_groups, run_pack
from ltrans.sweep.results import Ledger
from ltrans.sweep.searcher import open_study
from ltrans.sweep.spec import load_spec, parse_spec
from ltrans.sweep.trials import config_from_flat

SPEC = {"name": "unit", "preset": "smoke", "pairs": ["mnist_mnist"], "budget": 6, "pack": 3, "sampler": "random",
        "objectives": [{"name": "transfer_mean", "direction": "maximize"}],
        "space": {"bridge.beta_swd": {"type": "float", "low": 0.1, "high": 10.0, "log": True}}}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Members are bitwise their unpacked bridges with one intra-op thread (the sweep workers' setting,
    stacked.py); on a busy 2-core machine it is also much the faster setting for these small models."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def spec_of(tmp_path, **changes):
    path = tmp_path / "unit.yaml"
    path.write_text(yaml.safe_dump(SPEC | changes))
    return load_spec(path)


@pytest.mark.parametrize("pack, words", [
    (0, ["pack", "between 1", "1024", "0"]), (-2, ["pack", "between 1"]), (2000, ["pack", "1024", "2000"]),
    ("many", ["pack", "whole number", "'many'"]), (2.5, ["pack", "whole number", "2.5"]),
    (True, ["pack", "whole number"]), (7, ["pack", "7", "budget of 6", "pack <= 6"]),
])
def test_a_bad_pack_is_one_clear_error(pack, words):
    with pytest.raises(UserError) as err:
        parse_spec(SPEC | {"pack": pack}, where="s.yaml")
    assert str(err.value).startswith("s.yaml: pack: ") and all(w in str(err.value) for w in words)


def test_pack_round_trips_and_the_smoke_test_keeps_packing(tmp_path):
    spec = spec_of(tmp_path)
    assert spec.pack == 3 and parse_spec(yaml.safe_load(yaml.safe_dump(spec.to_dict()))) == spec
    assert parse_spec({k: v for k, v in SPEC.items() if k != "pack"}).pack == 1  # default: no packing
    smoke_spec = load_spec(tmp_path / "unit.yaml", smoke=True)
    assert smoke_spec.budget == 4 and smoke_spec.pack == 2  # two packs of two


def test_rungs_stop_the_worse_part_against_earlier_packs_too():
    rungs = Rungs(grace_period=50, reduction_factor=2, max_t=400, mode="min", history={50.0: [0.5, 3.0]})
    assert rungs.milestones == [50, 100, 200, 400]  # grace * rf^k up to max_t, as Ray's ASHA
    stop, records = rungs.judge({"a": 1.0, "b": 2.0, "c": math.nan}, step=50)
    # Rewards -0.5, -3, -1, -2 (c: NaN): the median cutoff is -1.5, so b (loss 2.0) stops, a goes on.
    assert stop == {"b"} and sorted(v for _, v in records if not math.isnan(v)) == [1.0, 2.0]
    assert rungs.judge({"a": 9.0}, step=60) == (set(), [])  # judged once per milestone
    assert rungs.milestone("a", 100) == 100 and rungs.milestone("a", 250) == 200 and rungs.milestone("z", 49) is None


def test_rungs_maximise_too():
    rungs = Rungs(grace_period=10, reduction_factor=3, max_t=90, mode="max")
    stop, _ = rungs.judge({n: float(n) for n in range(9)}, step=10)
    assert stop == set(range(6))  # the top third goes on


def test_pack_groups_split_by_pair_and_shape_and_keep_procrustes_alone():
    base = smoke("mnist_mnist")
    cfgs = [base, override(base, {"bridge.lr": 3e-3}), override(base, {"bridge.width": 32}),
            override(base, {"method": "procrustes"}), override(base, {"seed": 4}),
            override(base, {"method": "procrustes"}), dataclasses.replace(smoke("mnist_animals"))]
    assert pack_groups(cfgs) == [[0, 1, 4], [2], [3], [5], [6]]


@pytest.fixture(scope="module")
def pair(store):
    from ltrans.pipeline import load_pair

    return load_pair("mnist_mnist", store=store, preset="tiny")


def test_packed_rows_are_run_trial_rows(pair):
    from ltrans.pipeline import run_trial

    base = smoke("mnist_mnist")  # the smoke-size bridge, 200 steps
    cfgs = [base, override(base, {"bridge.lr": 3e-3, "seed": 1, "bridge.beta_kl": 0.0}),
            override(base, {"bridge.n_sup": 50, "bridge.beta_cls": 0.3})]
    packed = run_pack(cfgs, pair)
    alone = [run_trial(cfg, pair)[0] for cfg in cfgs]
    untimed = lambda row: {k: v for k, v in row.flat().items() if not k.endswith("_seconds")}
    assert untimed(packed[0]) == untimed(alone[0]) and untimed(packed[1]) == untimed(alone[1])
    subset, want = untimed(packed[2]), untimed(alone[2])  # a label subset: equal to float rounding
    assert subset["status"] == want["status"] == "ok" and subset["config_hash"] == want["config_hash"]
    # Rounding apart for 200 steps moves a few of the 200 evaluation examples across a class boundary
    # (3 on 2026-12-07, 0.015; 5 on an AMD EPYC on 2026-12-08, 0.025, whose kernels round otherwise):
    # agreement to 8 examples, while the losses agree to 1e-3.
    for key in ("transfer_a_to_b", "transfer_b_to_a", "recon_a", "recon_b"):
        assert subset[key] == pytest.approx(want[key], abs=0.04), key
    assert subset["loss_total"] == pytest.approx(want["loss_total"], rel=1e-3)


# The pack searcher against a real Optuna study on sqlite (no Ray cluster needed).

def searcher_for(tmp_path, spec, asha=None, attempt=1):
    study = open_study(spec, f"sqlite:///{tmp_path}/optuna.db")
    return PackSearcher(spec, study, Ledger(tmp_path), code_version="test", attempt=attempt, asha=asha), study


def end(number: int, status: str, value: float = math.nan, reason: str = "") -> dict:
    row = {"status": status, "reason": reason, "transfer_a_to_b": value, "transfer_b_to_a": value,
           "transfer_mean": value, "steps": 200, "trial_seconds": 1.5, "final": True}
    return {"kind": "end", "number": number, "row": row}


def report(events: list[dict], n: int, final: bool = False, run: str = "r1") -> dict:
    return {"events": json.dumps(events), "run": run, "report": n, "final": final, "node_ip": "127.0.0.1"}


def states(study) -> dict[int, TrialState]:
    return {t.number: t.state for t in optuna.load_study(study_name=study.study_name,
                                                         storage=study._storage).get_trials()}


def test_a_pack_is_k_optuna_trials_each_told_its_own_outcome(tmp_path):
    searcher, study = searcher_for(tmp_path, spec_of(tmp_path))
    config = searcher.suggest("t0")
    numbers = [m["number"] for m in config["members"]]
    assert len(numbers) == 3 and len(set(numbers)) == 3 and searcher.remaining == 3
    assert {config_from_flat(m["trial"]).bridge.beta_swd for m in config["members"]} == \
        {study.trials[n].params["bridge.beta_swd"] for n in numbers}
    searcher.on_trial_result("t0", report([end(numbers[1], "pruned", reason="ASHA stopped it at bridge step 50")], 0))
    searcher.on_trial_result("t0", report([end(numbers[0], "ok", 0.75), end(numbers[2], "failed",
                                           reason="loss became nan at step 7")], 1, final=True))
    searcher.on_trial_result("t0", report([end(numbers[0], "failed")], 1, final=True))  # Tune's repeat
    searcher.on_trial_complete("t0", report([], 2, final=True))
    assert states(study) == {numbers[0]: TrialState.COMPLETE, numbers[1]: TrialState.PRUNED,
                             numbers[2]: TrialState.FAIL}
    assert study.trials[numbers[0]].values == [0.75] and study.trials[numbers[1]].values is None
    ledger = Ledger(tmp_path).trials()
    assert [ledger[n]["status"] for n in numbers] == ["ok", "pruned", "failed"]
    assert ledger[numbers[2]]["reason"] == "loss became nan at step 7"
    assert all(ledger[n]["tune_trial_id"] == "t0" and ledger[n]["metrics"]["pack_size"] == 3
               and ledger[n]["metrics"]["time_share"] is True for n in numbers)
    assert ledger[numbers[0]]["wall_s"] == 1.5 and searcher.finished == 3 and searcher.remaining == 3


def test_a_dead_pack_fails_its_unfinished_members_and_keeps_the_finished(tmp_path):
    searcher, study = searcher_for(tmp_path, spec_of(tmp_path))
    numbers = [m["number"] for m in searcher.suggest("t0")["members"]]
    searcher.on_trial_result("t0", report([end(numbers[0], "ok", 0.5)], 0))
    searcher.on_trial_complete("t0", None, error=True)
    assert searcher.worker_error("t0", exhausted=True, reason="Ray error after 2 retries: boom") == numbers[1:]
    ledger = Ledger(tmp_path).trials()
    assert ledger[numbers[0]]["status"] == "ok"
    assert [ledger[n]["reason"] for n in numbers[1:]] == ["Ray error after 2 retries: boom"] * 2
    assert [states(study)[n] for n in numbers] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL]


def test_a_pack_tune_gave_up_on_early_packs_exactly_its_unfinished_members_again(tmp_path):
    searcher, study = searcher_for(tmp_path, spec_of(tmp_path))
    members = searcher.suggest("t0")["members"]
    searcher.on_trial_result("t0", report([end(members[0]["number"], "ok", 0.5)], 0))
    searcher.on_trial_complete("t0", None, error=True)
    cut = [m["number"] for m in members[1:]]
    assert searcher.worker_error("t0", exhausted=False, reason="unused") == cut
    assert all(states(study)[n] == TrialState.RUNNING for n in cut) and set(Ledger(tmp_path).trials()) == \
        {members[0]["number"]}
    rest = searcher.suggest("t1")["members"]  # the held two leave room for three new members, not five
    assert len(rest) == 3 and not {m["number"] for m in rest} & set(cut) and searcher.owed() == []
    searcher.on_trial_complete("t1", report([end(m["number"], "ok", 0.5) for m in rest], 0, final=True))
    assert searcher.suggest("t2") == Searcher.FINISHED and searcher.owed() == cut
    again, _ = searcher_for(tmp_path, spec_of(tmp_path), attempt=2)  # the next attempt packs exactly them
    rerun = again.suggest("t3")["members"]
    assert [(m["number"], m["content_key"]) for m in rerun] == [(m["number"], m["content_key"]) for m in members[1:]]


def test_an_interrupted_pack_leaves_its_members_running_and_a_resume_packs_exactly_them(tmp_path):
    spec = spec_of(tmp_path)
    searcher, study = searcher_for(tmp_path, spec)
    first = searcher.suggest("t0")["members"]
    searcher.on_trial_result("t0", report([end(first[0]["number"], "ok", 0.5)], 0))
    searcher.on_trial_complete("t0", report([], 1))  # shut down mid-pack, no error
    cut = {(m["number"], m["content_key"]) for m in first[1:]}
    assert all(states(study)[n] == TrialState.RUNNING for n, _ in cut)
    again, _ = searcher_for(tmp_path, spec, attempt=2)  # a new driver: the resume
    assert again.finished == 1 and again.remaining == 5
    rerun = again.suggest("t1")["members"]
    assert {(m["number"], m["content_key"]) for m in rerun[:2]} == cut  # the cut members, same points
    assert rerun[2]["number"] not in {n for n, _ in cut} | {first[0]["number"]}


def test_members_of_a_pack_share_its_first_members_shape(tmp_path):
    space = SPEC["space"] | {"bridge.width": {"type": "categorical", "choices": [16, 32, 64]},
                             "bridge.n_layers": {"type": "int", "low": 1, "high": 3}}
    searcher, study = searcher_for(tmp_path, spec_of(tmp_path, space=space, budget=12, pack=4, sampler="tpe"))
    for t in range(3):
        cfgs = [config_from_flat(m["trial"]) for m in searcher.suggest(f"t{t}")["members"]]
        assert len(cfgs) == 4 and len(pack_groups(cfgs)) == 1  # one shape: the pack trains as one
        assert len({c.bridge.beta_swd for c in cfgs}) == 4  # the rest is searched member by member
    assert all(set(t.params) == {"bridge.beta_swd", "bridge.width", "bridge.n_layers"} for t in study.trials)


def test_rung_values_reach_later_packs_and_the_budget_ends_suggestions(tmp_path):
    asha = {"grace_period": 50, "reduction_factor": 3.0, "max_t": 200, "mode": "min", "metric": "loss_recon"}
    searcher, _ = searcher_for(tmp_path, spec_of(tmp_path), asha=asha)
    first = searcher.suggest("t0")
    assert first["asha"] == asha | {"history": {}}
    rung = {"kind": "rung", "milestone": 50.0, "value": 0.25}
    searcher.on_trial_result("t0", report([rung], 0))
    second = searcher.suggest("t1")
    assert second["asha"]["history"] == {"50.0": [0.25]}
    assert searcher.suggest("t2") == Searcher.FINISHED  # 6 of 6 members are out
