"""Our Tune searcher against a real Optuna study on sqlite: what each trial outcome is told as."""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from ray.tune.search import Searcher

from ltrans.sweep.results import Ledger
from ltrans.sweep.searcher import OptunaSearcher, PruneNotes, classify, distribution, make_sampler, open_study
from ltrans.sweep.spec import MAX_SAMPLER_SEED, load_spec
from ltrans.sweep.trials import config_from_flat, content_key


def make_spec(tmp_path, **changes):
    doc = {"name": "unit", "preset": "smoke", "pairs": ["mnist_mnist"], "budget": 4,
           "objectives": [{"name": "transfer_mean", "direction": "maximize"}],
           "space": {"bridge.beta_swd": {"type": "float", "low": 0.1, "high": 10.0, "log": True},
                     "bridge.width": {"type": "categorical", "choices": [32, 64]}}} | changes
    path = tmp_path / "unit.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_spec(path)


def searcher_for(tmp_path, spec, notes=None, attempt=1):
    study = open_study(spec, f"sqlite:///{tmp_path}/optuna.db")
    return OptunaSearcher(spec, study, Ledger(tmp_path), code_version="test", attempt=attempt, pruned=notes), study


def final(value: float, status: str = "ok", reason: str = "") -> dict:
    return {"final": True, "status": status, "reason": reason, "transfer_mean": value,
            "transfer_a_to_b": value, "transfer_b_to_a": value, "time_total_s": 1.5, "node_ip": "127.0.0.1"}


def states(study) -> dict[int, TrialState]:
    return {t.number: t.state for t in optuna.load_study(study_name=study.study_name,
                                                         storage=study._storage).get_trials()}


def test_suggest_resolves_a_config_and_records_its_key_in_the_study(tmp_path):
    spec = make_spec(tmp_path)
    searcher, study = searcher_for(tmp_path, spec)
    config = searcher.suggest("t0")
    cfg = config_from_flat(config["trial"])
    assert cfg.bridge.width in (32, 64) and 0.1 <= cfg.bridge.beta_swd <= 10.0 and cfg.base == "tiny"
    assert config["content_key"] == content_key(cfg, "test")
    frozen = study.trials[config["number"]]
    assert frozen.state == TrialState.RUNNING and frozen.user_attrs["content_key"] == config["content_key"]
    assert frozen.params["bridge.beta_swd"] == cfg.bridge.beta_swd


def test_each_outcome_is_told_as_itself_and_ledger_agrees(tmp_path):
    spec = make_spec(tmp_path)
    notes = PruneNotes()
    searcher, study = searcher_for(tmp_path, spec, notes)
    numbers = {tid: searcher.suggest(tid)["number"] for tid in ("ok", "pruned", "failed", "crashed")}
    began = time.time()
    searcher.on_trial_complete("ok", final(0.75))
    notes["pruned"] = 100
    searcher.on_trial_complete("pruned", {"final": False, "step": 100, "loss_recon": 0.3, "transfer_mean": 0.99})
    searcher.on_trial_complete("failed", final(math.nan, "failed", "loss became nan at step 7"))
    searcher.on_trial_complete("crashed", None, error=True)
    assert searcher.worker_error("crashed", exhausted=True, reason="Ray error after 2 retries: boom") \
        == [numbers["crashed"]]
    told = states(study)
    assert told == {numbers["ok"]: TrialState.COMPLETE, numbers["pruned"]: TrialState.PRUNED,
                    numbers["failed"]: TrialState.FAIL, numbers["crashed"]: TrialState.FAIL}
    assert study.trials[numbers["ok"]].values == [0.75]
    assert study.trials[numbers["pruned"]].values is None  # never a partial value as if complete
    ledger = Ledger(tmp_path).trials()
    assert {n: ledger[n]["status"] for n in ledger} == {
        numbers["ok"]: "ok", numbers["pruned"]: "pruned", numbers["failed"]: "failed", numbers["crashed"]: "failed"}
    assert ledger[numbers["failed"]]["reason"] == "loss became nan at step 7"
    assert ledger[numbers["crashed"]]["reason"] == "Ray error after 2 retries: boom"
    assert "bridge step 100" in ledger[numbers["pruned"]]["reason"]
    finished_at = [ledger[numbers[tid]]["finished_at"] for tid in ("ok", "pruned", "failed", "crashed")]
    # the report's finishing order: the clock when each was told, in the order they ended
    assert began <= finished_at[0] < finished_at[1] < finished_at[2] < finished_at[3] <= time.time()
    assert searcher.suggest("more") == Searcher.FINISHED  # the budget of 4 is spent


def test_ok_row_with_non_finite_objective_is_a_failure_not_a_value(tmp_path):
    searcher, study = searcher_for(tmp_path, make_spec(tmp_path))
    number = searcher.suggest("t")["number"]
    searcher.on_trial_complete("t", final(math.inf))
    assert states(study)[number] == TrialState.FAIL
    assert Ledger(tmp_path).trials()[number]["status"] == "failed"


def test_interrupted_trial_stays_running_and_a_resume_reruns_exactly_it(tmp_path):
    spec = make_spec(tmp_path)
    searcher, study = searcher_for(tmp_path, spec)
    done = searcher.suggest("a")
    cut = searcher.suggest("b")
    searcher.on_trial_complete("a", final(0.5))
    searcher.on_trial_complete("b", {"final": False, "step": 50})  # shutdown, not the scheduler
    assert states(study)[cut["number"]] == TrialState.RUNNING
    assert cut["number"] not in Ledger(tmp_path).trials()
    # A new driver (resume): the finished trial is kept, the cut one comes back with the same key.
    again, _ = searcher_for(tmp_path, spec, attempt=2)
    assert again.finished == 1 and again.remaining == 3
    rerun = again.suggest("c")
    assert (rerun["number"], rerun["content_key"]) == (cut["number"], cut["content_key"])
    assert again.suggest("d")["content_key"] not in {done["content_key"], cut["content_key"]}


def test_resume_repairs_a_study_that_missed_a_tell(tmp_path):
    spec = make_spec(tmp_path)
    searcher, study = searcher_for(tmp_path, spec)
    number = searcher.suggest("a")["number"]
    entry = {"number": number, "tune_trial_id": "a", "content_key": "k", "status": "ok", "reason": "",
             "metrics": {"transfer_mean": 0.6}, "config": {}, "pair": "mnist_mnist", "seed": 0}
    Ledger(tmp_path).record_trial(entry)  # the driver died right after the ledger line
    searcher_for(tmp_path, spec, attempt=2)
    assert states(study)[number] == TrialState.COMPLETE and study.trials[number].values == [0.6]


def test_grid_covers_pairs_and_seeds_once_each(tmp_path):
    spec = make_spec(tmp_path, sampler="grid", seeds=[0, 1], budget=None,
                     space={"bridge.width": {"type": "categorical", "choices": [32, 64]}})
    assert spec.budget == 4
    searcher, _ = searcher_for(tmp_path, spec)
    seen = set()
    for i in range(4):
        cfg = config_from_flat(searcher.suggest(f"t{i}")["trial"])
        seen.add((cfg.seed, cfg.bridge.width))
        searcher.on_trial_complete(f"t{i}", final(0.5))
    assert seen == {(0, 32), (0, 64), (1, 32), (1, 64)}


def test_nsga2_tells_several_objectives(tmp_path):
    spec = make_spec(tmp_path, sampler="nsga2", objectives=[
        {"name": "transfer_a_to_b", "direction": "maximize"}, {"name": "fid_a_to_b", "direction": "minimize"}])
    searcher, study = searcher_for(tmp_path, spec)
    number = searcher.suggest("t")["number"]
    searcher.on_trial_complete("t", {**final(0.8), "fid_a_to_b": 12.5})
    assert study.trials[number].values == [0.8, 12.5]


@pytest.mark.parametrize("result, pruned_at, expected", [
    ({"final": True, "status": "ok"}, None, "ok"),
    ({"final": True, "status": "failed"}, None, "failed"),
    ({"final": True, "status": "ok"}, 50, "ok"),  # ASHA said stop on the final report: it finished
    ({"final": False, "step": 50}, 50, "pruned"),
    ({"final": False, "step": 50}, None, None),
    (None, None, None),
])
def test_classify(result, pruned_at, expected):
    outcome = classify(result, pruned_at)
    assert (outcome[0] if outcome else None) == expected


def _errored_trial(trial_id: str, number: int, failures: int, error_file) -> SimpleNamespace:
    """What Progress reads of a Tune trial that ended in error (a stand-in to inject the fault)."""
    return SimpleNamespace(trial_id=trial_id, config={"number": number}, error_file=str(error_file),
                           run_metadata=SimpleNamespace(num_failures=failures))


@pytest.mark.parametrize("failures, exhausted", [(1, False), (2, False), (3, True)])
def test_a_trial_tune_gave_up_on_early_runs_again_and_one_out_of_retries_fails(tmp_path, failures, exhausted):
    from ltrans.sweep.progress import Progress

    spec = make_spec(tmp_path, max_failures=2)
    searcher, study = searcher_for(tmp_path, spec)
    lines = []
    progress = Progress(spec, searcher, Ledger(tmp_path), tmp_path, lines.append)
    first = searcher.suggest("t0")
    (tmp_path / "error.txt").write_text("Failure # 1\nActorDiedError: its node was terminated\n")
    searcher.on_trial_complete("t0", None, error=True)
    assert searcher.remaining == 3  # awaiting Tune's word, it still holds its place in the budget
    progress.on_trial_error(0, [], _errored_trial("t0", first["number"], failures, tmp_path / "error.txt"))
    ledger = Ledger(tmp_path).trials()
    if exhausted:  # Tune spent max_failures retries: failed, with Ray's last error line as its reason
        assert states(study)[first["number"]] == TrialState.FAIL and searcher.owed() == []
        assert ledger[first["number"]]["reason"] == "Ray error after 2 retries: ActorDiedError: its node was terminated"
        assert "1/4 finished" in lines[-1] and "failed 1" in lines[-1]
        return
    # retries left: told nothing, not in the ledger, held out of this attempt, owed once the rest is done
    assert states(study)[first["number"]] == TrialState.RUNNING and ledger == {} and "runs again" in lines[-1]
    assert searcher.remaining == 3 and searcher.owed() == []
    for tid in ("t1", "t2", "t3"):
        assert searcher.suggest(tid)["number"] != first["number"]
        assert searcher.owed() == []  # a trial still running: not all done
        searcher.on_trial_complete(tid, final(0.5))
    assert searcher.suggest("t4") == Searcher.FINISHED and searcher.owed() == [first["number"]]
    # the next attempt (a new searcher on the same study and ledger) runs exactly that trial again
    again, _ = searcher_for(tmp_path, spec, attempt=2)
    assert again.remaining == 1
    rerun = again.suggest("t5")
    assert (rerun["number"], rerun["content_key"], rerun["trial"]) == \
        (first["number"], first["content_key"], first["trial"])
    again.on_trial_complete("t5", final(0.6))
    assert states(study)[first["number"]] == TrialState.COMPLETE and again.remaining == 0 and again.owed() == []


def test_cmaes_samples_within_bounds_and_moves_towards_the_optimum(tmp_path):
    space = {"bridge.beta_swd": {"type": "float", "low": 0.1, "high": 10.0, "log": True},
             "bridge.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True}}
    spec = make_spec(tmp_path, sampler="cmaes", budget=24, space=space)
    searcher, study = searcher_for(tmp_path, spec)
    assert isinstance(study.sampler, optuna.samplers.CmaEsSampler)
    distance = []
    for i in range(24):  # the objective peaks at beta_swd = 1, lr = 1e-3
        cfg = config_from_flat(searcher.suggest(f"t{i}")["trial"])
        assert 0.1 <= cfg.bridge.beta_swd <= 10.0 and 1e-4 <= cfg.bridge.lr <= 1e-2
        d = math.log10(cfg.bridge.beta_swd) ** 2 + (math.log10(cfg.bridge.lr) + 3) ** 2
        distance.append(d)
        searcher.on_trial_complete(f"t{i}", final(1.0 - d))
    cma = [t for t in study.trials if any(k.startswith("cma:") for k in t.system_attrs)]
    assert len(cma) >= 12  # after its start-up trial, CMA-ES itself proposes the points
    assert sum(distance[-8:]) < sum(distance[:8])


def first_suggestions(spec, start: int, n: int = 5) -> list[tuple]:
    """The first n points a fresh study asks of ``make_sampler(spec, start)``, each told the same value."""
    axes = {d.key: distribution(d) for d in spec.space}
    if spec.sampler == "grid":  # the grid sampler's grid also spans pairs and seeds (as the searcher asks)
        axes |= {"pair": optuna.distributions.CategoricalDistribution(list(spec.pairs)),
                 "seed": optuna.distributions.CategoricalDistribution(list(spec.seeds))}
    study = optuna.create_study(sampler=make_sampler(spec, start=start), direction="maximize")
    points = []
    for _ in range(n):
        trial = study.ask(axes)
        points.append(tuple(sorted(trial.params.items())))
        study.tell(trial, 0.5)
    return points


SEED_SPACES = {  # a grid needs steps; the others search a continuous log-scale square
    "grid": {"bridge.beta_swd": {"type": "float", "low": 0.1, "high": 10.0, "step": 0.1}},
    "other": {"bridge.beta_swd": {"type": "float", "low": 0.1, "high": 10.0, "log": True},
              "bridge.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True}},
}


@pytest.mark.parametrize("sampler", ["tpe", "random", "grid", "cmaes", "nsga2"])
@pytest.mark.parametrize("sampler_seed", [0, MAX_SAMPLER_SEED])
def test_sampler_seed_and_start_fix_the_suggestions_and_each_changes_them(tmp_path, sampler, sampler_seed):
    # A sweep repeats itself from its sampler_seed; a resume (start = trials so far) and another
    # sampler_seed each draw other points. At the largest seed too, where the seed wraps modulo 2**32.
    space = SEED_SPACES["grid" if sampler == "grid" else "other"]
    budget = {"budget": None} if sampler == "grid" else {"budget": 20}
    spec = make_spec(tmp_path, sampler=sampler, sampler_seed=sampler_seed, space=space, **budget)
    other_seed = sampler_seed - 1 if sampler_seed else 1
    neighbour = make_spec(tmp_path, sampler=sampler, sampler_seed=other_seed, space=space, **budget)
    first = first_suggestions(spec, start=0)
    assert len(set(first)) == 5 and first_suggestions(spec, start=0) == first  # same seed, same points
    for start in (1, 10**6):
        resumed = first_suggestions(spec, start=start)
        assert resumed == first_suggestions(spec, start=start) and resumed != first
    assert first_suggestions(neighbour, start=0) != first
