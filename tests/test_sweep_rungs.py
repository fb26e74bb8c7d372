"""ASHA's rungs: ours (``packing.Rungs``, inside packs) decides as Ray's scheduler does, and a resumed
sweep's ASHA, either kind, starts from the values the finished trials recorded (``packing.rung_history``)."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest
from ray.tune.schedulers import TrialScheduler

from ltrans.sweep.packing import Rungs, rung_history
from ltrans.sweep.results import Ledger
from ltrans.sweep.searcher import PruneAwareASHA, PruneNotes

# A milestone whose values so far are all NaN: Ray's cutoff (np.nanpercentile) warns and stops nothing.
pytestmark = pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning")

ASHA = {"grace_period": 50, "reduction_factor": 2.0, "max_t": 400, "mode": "min"}


def ray_asha(history=None) -> PruneAwareASHA:
    return PruneAwareASHA(PruneNotes(), history, time_attr="step", metric="loss", mode=ASHA["mode"],
                          max_t=ASHA["max_t"], grace_period=ASHA["grace_period"],
                          reduction_factor=ASHA["reduction_factor"])


def streams(seed: int, n_trials: int) -> list[tuple[int, int, float]]:
    """(trial, step, value) reports, interleaved as concurrent trials send them; each trial reports every
    ``every`` steps (some skip milestones: 130 > 100 - 50) and a few values are NaN."""
    rng = random.Random(seed)
    events = []
    for t in range(n_trials):
        every, start = rng.choice([25, 50, 70, 130]), rng.uniform(0, 300)
        for step in range(every, ASHA["max_t"] + 1, every):
            value = float("nan") if rng.random() < 0.05 else rng.uniform(0.0, 1.0) + 1.0 / step
            events.append((start + step, t, step, value))
    return [(t, step, value) for _, t, step, value in sorted(events)]


def replay_live(events, scheduler: PruneAwareASHA, ledger: Ledger | None = None, dead: frozenset = frozenset()):
    """Feed ``events`` to a live Ray scheduler; the actions per report, and (into ``ledger``) the curve
    points and the finished trials, as the sweep's callback and searcher record them."""
    trials, actions, stopped = {}, [], set()
    for t, step, value in events:
        if t in stopped:
            continue
        if t not in trials:
            trials[t] = SimpleNamespace(trial_id=f"tune-{t}")
            scheduler.on_trial_add(None, trials[t])
        action = scheduler.on_trial_result(None, trials[t], {"step": step, "loss": value})
        actions.append((t, step, action == TrialScheduler.STOP))
        if ledger is not None:
            point = {"number": t, "tune_trial_id": trials[t].trial_id, "step": step}
            ledger.record_curve(point | ({} if math.isnan(value) else {"loss": value}))
        if action == TrialScheduler.STOP:
            stopped.add(t)
    if ledger is not None:
        for t in sorted(trials):
            if t not in dead:
                ledger.record_trial({"number": t, "tune_trial_id": trials[t].trial_id,
                                     "status": "pruned" if t in stopped else "ok"})
    return actions


def recorded(scheduler: PruneAwareASHA, leave_out: set[str] = frozenset()) -> dict[float, list[float]]:
    """The rewards the scheduler's bracket holds by milestone (NaN left out), sorted."""
    return {float(m): sorted(v for k, v in rec.items() if k not in leave_out and not math.isnan(v))
            for m, rec in scheduler._brackets[0]._rungs}


@pytest.mark.parametrize("seed", range(6))
def test_our_rungs_record_each_report_at_the_milestone_rays_asha_does(seed):
    # The cutoffs differ by design (ours judges a member against its rung including itself, as the ASHA
    # paper does, so that a pack's members reach a milestone together); where a value is recorded must
    # not. Both see the reports Ray lets through.
    events, live = streams(seed, n_trials=12), ray_asha()
    actions = replay_live(events, live)
    ours = Rungs(**ASHA)
    for (t, step, stop), (_, _, value) in zip(actions, [e for e in events if (e[0], e[1]) in
                                                         {(a[0], a[1]) for a in actions}], strict=True):
        ours.judge({t: value}, step)
    assert {m: sorted(v for v in r if not math.isnan(v)) for m, r in ours.recorded.items()} == recorded(live)
    assert any(stop for *_, stop in actions) and not all(stop for *_, stop in actions)


def test_a_report_that_skipped_a_milestone_is_never_judged_at_it_later():
    rungs = Rungs(grace_period=50, reduction_factor=2, max_t=400, mode="min", history={50.0: [0.0, 0.0]})
    assert rungs.milestone("m", 130) == 100  # 50 and 100 reached: the higher one
    rungs.judge({"m": 1.0}, 130)
    assert rungs.milestone("m", 199) is None  # 100 was judged; 50 is passed over, as Ray does
    assert rungs.judge({"m": 5.0}, 199) == (set(), [])


@pytest.mark.parametrize("seed", range(3))
def test_a_resumed_asha_holds_what_the_finished_trials_recorded_and_decides_as_the_live_one(tmp_path, seed):
    events = streams(seed, n_trials=10)
    live, ledger = ray_asha(), Ledger(tmp_path)
    replay_live(events, live, ledger)
    history = rung_history(ledger.trials(), ledger.curves(), "loss", Rungs(**ASHA))
    resumed = ray_asha(history)
    assert recorded(resumed) == recorded(live) and sum(map(len, history.values())) > 10
    # In-pack ASHA resumes from the same history (Rungs keeps rewards as Ray does: -loss for "min").
    assert {m: sorted(r) for m, r in Rungs(**ASHA, history=history).recorded.items()} == recorded(live)
    # The same new trial is stopped at the same report by both.
    new = [(99, step, value) for _, step, value in streams(seed + 100, n_trials=1)]
    assert replay_live(new, resumed) == replay_live(new, live)


def test_unfinished_trials_and_earlier_tune_trials_of_a_trial_are_not_replayed(tmp_path):
    live, ledger = ray_asha(), Ledger(tmp_path)
    replay_live(streams(7, n_trials=8), live, ledger, dead=frozenset({3}))  # 3 ran when the driver died
    ledger.record_curve({"number": 4, "tune_trial_id": "a-tune-trial-given-up-on", "step": 50, "loss": -9.0})
    resumed = ray_asha(rung_history(ledger.trials(), ledger.curves(), "loss", Rungs(**ASHA)))
    assert recorded(resumed) == recorded(live, leave_out={"tune-3"})
    assert recorded(resumed) != recorded(live)


def test_a_first_start_has_no_history_and_a_sweep_without_asha_none_at_all(tmp_path):
    ledger = Ledger(tmp_path)
    assert rung_history(ledger.trials(), ledger.curves(), "loss", Rungs(**ASHA)) == {}
    assert recorded(ray_asha({})) == recorded(ray_asha())


def test_a_trials_final_report_is_replayed_where_rays_asha_saw_it(tmp_path):
    # Eval points every 100 steps, milestones 50, 100, 200: a trial that failed at step 170 reported 100
    # (recorded at 100), then its final report at 170 (no new milestone), one at 230 (recorded at 200).
    live, ledger = ray_asha(), Ledger(tmp_path)
    for t, (last, value) in enumerate([(170, 0.4), (230, 0.7)]):
        trial = SimpleNamespace(trial_id=f"tune-{t}")
        live.on_trial_add(None, trial)
        live.on_trial_result(None, trial, {"step": 100, "loss": 0.5})
        ledger.record_curve({"number": t, "tune_trial_id": trial.trial_id, "step": 100, "loss": 0.5})
        live.on_trial_complete(None, trial, {"step": last, "loss": value})
        ledger.record_trial({"number": t, "tune_trial_id": trial.trial_id, "status": "failed",
                             "metrics": {"steps": last, "loss": value}})
    with_finals = rung_history(ledger.trials(), ledger.curves(), "loss", Rungs(**ASHA), finals=True)
    assert recorded(ray_asha(with_finals)) == recorded(live)
    assert with_finals[200.0] == [0.7]
    assert 200.0 not in rung_history(ledger.trials(), ledger.curves(), "loss", Rungs(**ASHA))  # in-pack


def test_in_pack_asha_judges_every_group_of_a_pack_at_a_milestone():
    # A pack trial runs its groups (pairs, or members re-run one by one) after one another: members of a
    # later group reaching step 50 are judged there too, not skipped because an earlier group was.
    from ltrans.sweep.trainable import PackEvents

    asha = {**ASHA, "metric": "loss_recon", "history": {"50.0": [0.1, 0.2, 0.3]}}
    events = PackEvents([0, 1, 2, 3], asha)
    for group, losses in (((0, 1), (0.15, 0.25)), ((2, 3), (9.0, 0.05))):
        for number, loss in zip(group, losses):
            events.curve(number, 50, {"step": 50.0, "wall_s": 1.0, "recon": loss, "total": loss})
        stops = {number for number in group if events.should_stop(number, 50)}
        assert stops == {n for n, loss in zip(group, losses) if loss > 0.2}, group
    assert events.rungs.passed == {n: {50.0} for n in range(4)}
