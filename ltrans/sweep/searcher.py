"""Our Ray Tune ``Searcher`` around an Optuna study in ``<run>/optuna.db``: Tune schedules, Optuna decides.

Why not Ray's stock ``OptunaSearch``: it tells trials that a scheduler stopped early as COMPLETE with
their partial-budget value, and its study lives in memory (DESIGN.md section 4). Here:

- a trial that reported its final row is told COMPLETE with its objective values (or FAIL when the
  row is ``failed`` or an objective is not finite);
- a trial the ASHA scheduler stopped (``PruneNotes`` knows which) is told PRUNED;
- a trial whose worker kept dying is told FAIL once Tune has spent its ``max_failures`` retries on it;
  one Tune gave up on earlier is run again by the driver in a new attempt (``worker_error``,
  ``runner.execute``): when an actor's death reaches Ray Tune 2.60 twice (seen ~1 lost node in 10),
  the first report requeues the trial and the second finds it PENDING, which
  ``TuneController._process_trial_failure`` ends in error whatever retries are left;
- a trial stopped for any other reason (Ctrl-C, driver shutdown) is told nothing: it stays RUNNING
  in the study and the next ``resume`` runs it again with the same parameters (``orphans``).

Every outcome is written to the ledger before Optuna is told, so the two always agree after resume.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from ray.tune.result import AUTO_RESULT_KEYS, DEBUG_METRICS
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import Searcher

from ltrans.errors import UserError
from ltrans.sweep.results import Ledger, objective_values
from ltrans.sweep.spec import Dimension, SweepSpec, combos
from ltrans.sweep.trials import content_key, flat_config, resolve


def distribution(d: Dimension):
    """The Optuna distribution of one search dimension."""
    if d.kind == "categorical":
        return CategoricalDistribution(list(d.choices))
    if d.kind == "int":
        return IntDistribution(int(d.low), int(d.high), log=d.log, step=int(d.step or 1))
    return FloatDistribution(float(d.low), float(d.high), log=d.log, step=d.step)


class _Grid(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its ``study.stop()`` at the last point: outside ``optimize`` that
    raises inside ``tell`` before the state is stored. The searcher's budget ends the sweep instead."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


def make_sampler(spec: SweepSpec, start: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's Optuna sampler, seeded by ``sampler_seed`` and the trials already in the study.

    A resumed driver must not replay the first run's random draws (it would re-suggest finished
    points), so the seed moves on with ``start``, the number of trials the study holds.
    """
    seed = (spec.sampler_seed + 7919 * start) % 2**32  # numpy's seed range, however long the study
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "grid":
        grid = {d.key: list(d.grid_values()) for d in spec.space}
        grid |= {"pair": list(spec.pairs), "seed": list(spec.seeds)}  # the factorial is the point
        return _Grid(grid, seed=seed)
    if spec.sampler == "cmaes":
        try:
            import cmaes  # noqa: F401  (optuna's CmaEsSampler needs it at the first relative sample)
        except ImportError:
            raise UserError("sampler cmaes needs the `cmaes` package: pip install cmaes") from None
        return optuna.samplers.CmaEsSampler(seed=seed)
    # NSGA-II: a population of a quarter of the budget (4..50) so that small budgets still evolve.
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, spec.budget // 4)))


def open_study(spec: SweepSpec, storage: str) -> optuna.Study:
    """Create or load the run's study (``storage`` like ``sqlite:////abs/run/optuna.db``)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = [o.direction for o in spec.objectives]
    study = optuna.create_study(storage=storage, study_name=spec.name, directions=directions,
                                sampler=make_sampler(spec), load_if_exists=True)
    study.sampler = make_sampler(spec, start=len(study.get_trials(deepcopy=False)))
    return study


class PruneNotes(dict):
    """tune trial id -> step at which the scheduler stopped it (filled by ``PruneAwareASHA``)."""


@dataclass(frozen=True)
class _Live:
    """A running trial: its Optuna number and sampled params, the resolved config and its key."""

    number: int
    params: dict[str, Any]
    content_key: str
    pair: str
    seed: int
    config: dict[str, Any]


class OptunaSearcher(Searcher):
    """Suggests configs from an Optuna study and tells it every outcome (see the module docstring)."""

    def __init__(self, spec: SweepSpec, study: optuna.Study, ledger: Ledger, *, code_version: str,
                 attempt: int, pruned: PruneNotes | None = None) -> None:
        super().__init__(metric=None, mode=None)  # Tune's strict metric check must not apply to us
        self.spec, self.study, self.ledger = spec, study, ledger
        self.code_version, self.attempt = code_version, attempt
        self.pruned = pruned if pruned is not None else PruneNotes()
        self.live: dict[str, _Live] = {}
        self.orphans = collections.deque(reconcile(study, ledger, spec.objectives))
        self.errored: dict[str, list[_Live]] = {}  # tune trial id -> its unfinished trials, awaiting worker_error
        self.held: list[_Live] = []  # trials Tune gave up on early: the next attempt runs them again
        self.entries = ledger.trials()  # finished trials by number, kept in memory for the display
        self.finished = len(self.entries)

    @property
    def remaining(self) -> int:
        """Trials still to start: the budget minus finished, running, errored and held ones."""
        errored = sum(len(lives) for lives in self.errored.values())
        return max(0, self.spec.budget - self.finished - len(self.live) - errored - len(self.held))

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # objectives come from the sweep file, not from Tune

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.remaining == 0:
            return Searcher.FINISHED
        for _ in range(20):  # a sampled point that makes no valid config is recorded failed; try again
            live = self._next(trial_id)
            if live is not None:
                self.live[trial_id] = live
                return {"trial": live.config, "number": live.number, "content_key": live.content_key}
            if self.remaining == 0:
                return Searcher.FINISHED
        raise UserError("20 sampled points in a row made invalid trial configs; check the search space")

    def _next(self, trial_id: str) -> _Live | None:
        """Re-run an orphan of a killed run, else ask Optuna for a new point."""
        if self.orphans:
            frozen = self.orphans.popleft()
            return self._live(frozen.number, frozen.params, trial_id, None)
        trial = self.study.ask({d.key: distribution(d) for d in self.spec.space} | self._grid_axes())
        return self._live(trial.number, trial.params, trial_id, trial)

    def _grid_axes(self) -> dict:
        if self.spec.sampler != "grid":
            return {}
        return {"pair": CategoricalDistribution(list(self.spec.pairs)),
                "seed": CategoricalDistribution(list(self.spec.seeds))}

    def _live(self, number: int, params: dict, trial_id: str, trial) -> _Live | None:
        pair, seed = params.get("pair"), params.get("seed")
        if pair is None:  # not a grid: (pair, seed) cycle with the trial number, they are not searched
            pair, seed = combos(self.spec)[number % len(combos(self.spec))]
        try:
            cfg = resolve(self.spec, params, pair, seed)
        except UserError as err:
            self._finish(number, trial_id, "failed", f"invalid config: {err}", {}, {}, pair, seed, "")
            return None
        key = content_key(cfg, self.code_version)
        if trial is not None:
            for name, value in (("content_key", key), ("pair", pair), ("seed", seed)):
                trial.set_user_attr(name, value)
        return _Live(number, dict(params), key, pair, seed, flat_config(cfg))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        live = self.live.pop(trial_id, None)
        if live is None:
            return
        if error:  # Tune's word on the error follows at once (``Progress.on_trial_error``)
            self.errored[trial_id] = [live]
            return
        outcome = classify(result, self.pruned.get(trial_id))
        if outcome is None:  # interrupted: stays RUNNING in Optuna; run it again if Tune asks for more
            self.orphans.append(live)
            return
        status, reason = outcome
        metrics = {k: v for k, v in (result or {}).items() if k not in _TUNE_KEYS and not k.startswith("config/")}
        self._finish(live.number, trial_id, status, reason, metrics, live.config, live.pair, live.seed,
                     live.content_key, result or {})

    def worker_error(self, trial_id: str, exhausted: bool, reason: str) -> list[int]:
        """Settle the trials of a Tune trial that ended in error; their numbers.

        ``exhausted``: Tune spent every retry the sweep allows, so they fail with ``reason``. Otherwise
        Tune gave up early (see the module docstring): they stay RUNNING in Optuna, held out of this
        attempt (its Tune trial count is spent) for the next one, whose ``reconcile`` finds them.
        """
        lives = self.errored.pop(trial_id, [])
        for live in lives:
            if exhausted:
                self._finish(live.number, trial_id, "failed", reason, {}, live.config, live.pair, live.seed,
                             live.content_key)
            else:
                self.held.append(live)
        return [live.number for live in lives]

    def owed(self) -> list[int]:
        """The held trials, when they are all this attempt left undone (not after a Ctrl-C)."""
        return sorted(h.number for h in self.held) if self.remaining == 0 and not self.live else []

    def _finish(self, number: int, trial_id: str, status: str, reason: str, metrics: dict, config: dict,
                pair: str, seed: int, key: str, result: dict | None = None) -> None:
        """Ledger first (fsynced), then Optuna: a crash in between is repaired by ``reconcile``."""
        result = result or {}
        entry = {"number": number, "tune_trial_id": trial_id, "content_key": key, "status": status,
                 "reason": reason, "pair": pair, "seed": seed, "attempt": self.attempt,
                 "wall_s": result.get("time_total_s"), "node_ip": result.get("node_ip"),
                 "finished_at": time.time(), "metrics": metrics, "config": config}
        values = objective_values(entry, self.spec.objectives)
        if status == "ok" and values is None:
            entry |= {"status": "failed", "reason": "an objective is missing or not finite"}
        self.ledger.record_trial(entry)
        self.entries[number] = entry
        tell(self.study, number, entry["status"], values)
        self.finished += 1

    def save(self, checkpoint_path: str) -> None:
        """Nothing to pickle: the state is optuna.db plus the ledger, both on disk already."""
        with open(checkpoint_path, "w") as f:
            f.write("state: optuna.db and ledger/ in the run folder\n")

    def restore(self, checkpoint_path: str) -> None:
        pass


def classify(result: dict | None, pruned_at: int | None) -> tuple[str, str] | None:
    """(status, reason) of a trial Tune says is complete (not in error); None when it was interrupted."""
    if result and result.get("final"):
        return result.get("status", "failed"), result.get("reason", "")
    if pruned_at is not None:
        return "pruned", f"ASHA stopped it at bridge step {pruned_at}"
    return None


# Keys of a Tune result that are Tune's bookkeeping or our row's identity, not trial figures.
_TUNE_KEYS = frozenset(AUTO_RESULT_KEYS) | frozenset(DEBUG_METRICS) | {
    "done", "should_checkpoint", "experiment_tag", "final", "status", "reason", "number", "content_key"}


def tell(study: optuna.Study, number: int, status: str, values: list[float] | None) -> None:
    """Tell Optuna a finished trial: COMPLETE with values, PRUNED or FAIL (never partial values)."""
    if status == "ok" and values is not None:
        study.tell(number, values, skip_if_finished=True)
    else:
        state = TrialState.PRUNED if status == "pruned" else TrialState.FAIL
        study.tell(number, state=state, skip_if_finished=True)


def reconcile(study: optuna.Study, ledger: Ledger, objectives) -> list:
    """Make the study agree with the ledger after a killed driver; the RUNNING trials to re-run."""
    done = ledger.trials()
    orphans = []
    for frozen in study.get_trials(deepcopy=False):
        entry = done.get(frozen.number)
        if frozen.state == TrialState.RUNNING and entry is not None:  # killed between ledger and tell
            tell(study, frozen.number, entry["status"], objective_values(entry, objectives))
        elif frozen.state == TrialState.RUNNING:
            orphans.append(frozen)
        elif entry is None:  # told but its ledger line was torn: rebuild the line from the study
            values = frozen.values if frozen.state == TrialState.COMPLETE else None
            status = {TrialState.COMPLETE: "ok", TrialState.PRUNED: "pruned"}.get(frozen.state, "failed")
            metrics = {o.name: v for o, v in zip(objectives, values or [])}
            ledger.record_trial({"number": frozen.number, "status": status, "reason": "recovered from optuna.db",
                                 "content_key": frozen.user_attrs.get("content_key"), "metrics": metrics,
                                 "pair": frozen.user_attrs.get("pair"), "seed": frozen.user_attrs.get("seed"),
                                 "tune_trial_id": None, "config": {}})
    return orphans


class PruneAwareASHA(ASHAScheduler):
    """Ray's ASHA that notes which trials it stopped, so the searcher can tell them PRUNED.

    Tune tells a searcher the same ``on_trial_complete(result)`` for a scheduler stop and for a
    shutdown; only the scheduler knows which it was.
    """

    def __init__(self, notes: PruneNotes, history: dict[float, list[float]] | None = None, **kwargs: Any) -> None:
        # stop_last_trials=False: a trial reaching max_t must go on to its final evaluation.
        super().__init__(stop_last_trials=False, **kwargs)
        self.notes = notes
        self._remember(history or {})

    def _remember(self, history: dict[float, list[float]]) -> None:
        """Record earlier trials' metric values by milestone (``packing.rung_history``, on resume) in the
        one bracket, as Ray records a reporting trial's: reward = metric_op * value, keyed by a name no
        Tune trial has. (Ray 2.60's bracket keeps ``_rungs``: [(milestone, {trial_id: reward})].)"""
        if not history:
            return
        if len(self._brackets) != 1:
            raise RuntimeError("resuming ASHA's rungs needs its single-bracket form")
        for milestone, recorded in self._brackets[0]._rungs:
            for i, value in enumerate(history.get(float(milestone), [])):
                recorded[f"earlier-{milestone}-{i}"] = self._metric_op * value

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and not result.get("final"):
            self.notes[trial.trial_id] = int(result.get("step", -1))
        return action
