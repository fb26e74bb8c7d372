"""Run and resume a sweep: prepare stage, Ray, our Optuna searcher, ASHA, the Tuner, the run folder.

A run folder holds ``sweep.yaml`` (resolved), ``state.json`` (code version, attempts),
``provenance.json``, ``optuna.db``, ``ledger/``, ``tune/attempt-N/`` (Ray Tune's standard layout, one
experiment per start or resume, and one more for trials Ray Tune gave up on before their retries were
spent: ``OptunaSearcher.worker_error``), ``trials.parquet`` and ``curves.parquet``.

Resume is ours, not ``Tuner.restore``: every start is a fresh Tune experiment whose searcher skips what
the ledger says is finished and re-runs, with the same parameters, the trials a killed driver left
RUNNING in Optuna. So a resume never re-runs a finished trial and ends at exactly the budget; with ASHA,
its rungs start with the values the finished trials recorded (replayed from the ledger's curves).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ltrans.errors import UserError, one_line
from ltrans.files import atomic_write_json, atomic_write_text
from ltrans.sweep import results
from ltrans.sweep.spec import SweepSpec, load_spec

STATE = results.STATE
# What a run folder holds besides STATE (create_run writes the first three, a start the rest).
RUN_FILES = ("sweep.yaml", "provenance.json", "ledger", "optuna.db", "tune", "trials.parquet", "curves.parquet")
Echo = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    """How a start or resume ended."""

    run: Path
    budget: int
    counts: dict[str, int]
    best: list[dict] = field(default_factory=list)

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    @property
    def interrupted(self) -> bool:
        return self.finished < self.budget


def create_run(spec_path: Path, out: Path | None, smoke: bool, argv: list[str]) -> Path:
    """Validate the sweep and lay out a new run folder (nothing runs yet)."""
    from ltrans.metrics.row import git_sha

    spec = load_spec(spec_path, smoke=smoke)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run = Path(out) if out else Path("runs") / "sweeps" / f"{spec.name}{'-smoke' if spec.smoke else ''}-{stamp}"
    run = run.expanduser().resolve()  # Tune needs absolute storage paths
    if (run / STATE).exists():
        raise UserError(f"{run} already holds a sweep; continue it with `ltrans sweep resume {run}`")
    if odd := sorted(set("?#%") & set(str(run))):  # the study's sqlite:/// URL would cut or decode the path
        raise UserError(f"the run folder {run} has {' '.join(odd)} in its path, which the study's SQLite URL "
                        "cannot hold; choose an -o path without ?, # and %")
    if clash := [name for name in RUN_FILES if (run / name).exists()]:  # never overwrite (or later discard) them
        raise UserError(f"{run} already holds {', '.join(clash)} but is no sweep run folder; choose a new or empty "
                        "-o folder")
    made_folder = not run.exists()
    (run / "ledger").mkdir(parents=True, exist_ok=True)
    atomic_write_text(run / "sweep.yaml", f"# resolved from {spec_path}\n"
                      + yaml.safe_dump(spec.to_dict(), sort_keys=False))
    # The code version is fixed at the first start: content keys stay stable across resumes.
    state = {"code_version": git_sha(), "source": str(spec_path), "attempts": 0, "made_folder": made_folder}
    atomic_write_json(run / STATE, state)
    results.write_provenance(run, state["code_version"], argv)
    return run


def load_run(run: Path) -> tuple[SweepSpec, dict]:
    """The resolved spec and state of an existing run folder."""
    run = Path(run)
    if not (run / STATE).exists():
        raise UserError(f"{run} is not a sweep run folder (no {STATE}); start one with `ltrans sweep run FILE`")
    return load_spec(run / "sweep.yaml"), results.read_state(run)


def discard_unstarted(run: Path) -> bool:
    """Remove what create_run wrote when no start got as far as preparing (0 attempts, no finished trial),
    so that the same ``ltrans sweep run -o`` works again; True if it did. Files of the user's in the
    folder stay, and so does a folder that existed before (create_run refuses one holding RUN_FILES)."""
    run = Path(run)
    try:
        state = results.read_state(run)
    except UserError:
        return False
    if state["attempts"] > 0 or results.Ledger(run).trials():
        return False
    for name in (STATE, "sweep.yaml", "provenance.json"):  # state.json first: without it this is no sweep
        (run / name).unlink(missing_ok=True)
    for folder in (run / "ledger", run) if state.get("made_folder") else (run / "ledger",):
        with suppress(OSError):  # not empty: it holds something create_run did not write
            folder.rmdir()
    return True


def execute(run: Path, *, address: str | None = None, echo: Echo = print, cache_root: Path | None = None,
            argv: list[str] | None = None) -> Outcome:
    """Run the trials a run folder still owes, then write trials.parquet and curves.parquet."""
    run = Path(run).resolve()
    spec, state = load_run(run)
    ledger = results.Ledger(run)
    if len(ledger.trials()) < spec.budget:  # a finished run is not started again: no attempt, no provenance
        results.check_study(run, spec.name, ledger.trials())  # a study that lost its trials cannot go on
        started = init_ray(address)  # before prepare: a wrong address or missing resources fail in seconds
        try:
            import ray

            _check_resources(spec, ray.cluster_resources() if started else None)
            state["attempts"] += 1
            atomic_write_json(run / STATE, state)
            if state["attempts"] > 1:
                results.write_provenance(run, state["code_version"], argv or sys.argv)
            pairs = prepare(spec, cache_root, echo)
            owed = _fit(run, spec, state, ledger, pairs, echo)
            for _ in range(spec.max_failures):  # trials Tune gave up on early: a new attempt runs them
                if not owed:
                    break
                state["attempts"] += 1
                atomic_write_json(run / STATE, state)
                echo(f"sweep {spec.name}: attempt {state['attempts']} runs trial "
                     f"{', '.join(f'#{n}' for n in owed)} again (Ray Tune gave up on it early)")
                owed = _fit(run, spec, state, ledger, pairs, echo)
        finally:
            if started:
                import ray

                ray.shutdown()
    results.write_parquets(run)
    trials = ledger.trials()
    return Outcome(run, spec.budget, results.counts(trials), results.best_entries(trials, spec.objectives))


def prepare(spec: SweepSpec, cache_root: Path | None, echo: Echo) -> dict:
    """Load every pair's frozen models and latents once (trained and cached on first use)."""
    from ltrans.artifacts import Store
    from ltrans.pipeline import load_pair
    from ltrans.sweep.trials import base_config

    store = Store(cache_root)
    bases = {d.key: d.choices for d in spec.space}.get("base", ())
    out = {}
    for pair in spec.pairs:
        for base in sorted({base_config(spec, pair).base, *bases}):
            echo(f"preparing {pair} ({base} base models, classifiers, latents; cached in {store.root})")
            start = time.perf_counter()
            # First use trains the base models (minutes): show their progress bars in a terminal.
            out[f"{pair}/{base}"] = load_pair(pair, store=store, preset=base, progress=sys.stderr.isatty())
            echo(f"  ready in {time.perf_counter() - start:.1f} s")
    return out


def init_ray(address: str | None) -> bool:
    """Join ``address`` or start a local Ray on 127.0.0.1 without dashboard; True if we started it.

    A local Ray requires token authentication with a token of this process only (``local_auth``), so
    other users of the machine cannot submit work through its loopback ports."""
    if address:
        import ray
        from ray.exceptions import AuthenticationError

        if not ray.is_initialized():
            _probe(address)
            try:  # Ray's INFO lines would advise `ray stop` for what is often a missing token
                ray.init(address=address, logging_level=logging.WARNING)
            except AuthenticationError:  # RAY_AUTH_MODE=token here, but no token to send
                raise UserError(f"cannot join the Ray cluster at --address {address}: token authentication is on "
                                f"here but no token was found; {_TOKEN_FIX}") from None
            except ValueError as err:  # not an address Ray can parse
                raise UserError(f"cannot join a Ray cluster at --address {address} ({one_line(err, 300)}); "
                                f"{_ADDRESS_FIX}") from None
            except ConnectionError as err:  # something answered (the probe), but no Ray let us in
                raise UserError(f"cannot join a Ray cluster at --address {address} ({one_line(err, 300)}); if it "
                                f"is a Ray head started with token authentication (cluster.yaml starts one so), "
                                f"{_TOKEN_FIX}; else {_ADDRESS_FIX}") from None
        return False
    if local_auth(os.environ) and "ray" in sys.modules:
        from ray._raylet import Config

        Config.initialize("")  # Ray reads RAY_AUTH_MODE once, on import: re-read it (as Ray's own switch does)
    # _node_ip_address="127.0.0.1" alone is turned into the host's routable IP on Linux and every
    # server listens on all interfaces; this switch makes Ray bind to loopback (measured with `ss`).
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # read from the environment when ray was first imported
    if ray.is_initialized():
        return False
    # address="local": a new instance even where `ray start` left one (ray.init would join that one).
    ray.init(address="local", num_cpus=int(os.environ.get("LTRANS_RAY_CPUS", os.cpu_count() or 1)),
             include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    return True


def local_auth(env: dict[str, str]) -> bool:
    """Set ``env`` (os.environ) for a local Ray with token authentication: RAY_AUTH_MODE=token and, unless
    a token is given (RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH), a fresh random one in RAY_AUTH_TOKEN that
    the workers inherit and nothing writes to disk (Ray's own default would save one to ~/.ray/auth_token).
    A RAY_AUTH_MODE the user set is kept: ``RAY_AUTH_MODE=disabled`` turns authentication off. True if it
    changed ``env``."""
    if "RAY_AUTH_MODE" in env:
        return False
    env["RAY_AUTH_MODE"] = "token"
    if not env.get("RAY_AUTH_TOKEN") and not env.get("RAY_AUTH_TOKEN_PATH"):
        env["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    return True


_ADDRESS_FIX = ("start one with `ray start --head` or give its head's address (host:port, or 'auto' on the head "
                "node), or leave out --address for a local Ray")
_TOKEN_FIX = ("run with RAY_AUTH_MODE=token and the cluster's token in ~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or "
              "RAY_AUTH_TOKEN (`ray get-auth-token` on the head prints it)")
PROBE_TIMEOUT_S = 5.0  # a head that answers does so in milliseconds; ray.init would retry for minutes


def _probe(address: str) -> None:
    """UserError unless something accepts a TCP connection at a host:port address within PROBE_TIMEOUT_S
    (ray.init keeps retrying an unreachable GCS for minutes). 'auto', a bare IPv6 address and other forms
    than host:port are left to Ray; a port outside 1..65535 is refused (the C library would wrap it)."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit() or (":" in host and not host.startswith("[")):
        return
    if not 0 < int(port) < 65536:
        raise UserError(f"--address {address} has port {port}, outside 1-65535; {_ADDRESS_FIX}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as err:  # refused, timed out, unknown host
        why = err.strerror or str(err) or type(err).__name__
        raise UserError(f"nothing answers at --address {address} ({why}); {_ADDRESS_FIX}") from None


def _check_resources(spec: SweepSpec, available: dict[str, float] | None) -> None:
    """UserError when one trial (a pack is one trial) asks for more CPUs or GPUs than a local Ray has, as
    it would wait for them forever. ``available``: ``ray.cluster_resources()`` of a local Ray; None for a
    cluster (``--address``), which may add nodes."""
    if available is None:
        return
    unit = "pack" if spec.pack > 1 else "trial"
    gpus, cpus = available.get("GPU", 0), available.get("CPU", 0)
    if spec.resources.gpus > 0 and gpus == 0:
        raise UserError(f"sweep {spec.name} asks for {spec.resources.gpus:g} GPU per {unit} but this machine has "
                        "none; set resources.gpus: 0, use --smoke-test, or join a GPU cluster with --address")
    if spec.resources.gpus > gpus:
        raise UserError(f"sweep {spec.name} asks for {spec.resources.gpus:g} GPUs per {unit} but this machine "
                        f"has {gpus:g}; set resources.gpus to at most {gpus:g}, or join a cluster with --address")
    if spec.resources.cpus > cpus:
        more = " or raise LTRANS_RAY_CPUS" if "LTRANS_RAY_CPUS" in os.environ else ""
        raise UserError(f"sweep {spec.name} asks for {spec.resources.cpus:g} CPUs per {unit} (resources.cpus) "
                        f"but the local Ray has {cpus:g}; set resources.cpus to at most {cpus:g}{more}, or join "
                        "a bigger cluster with --address")


def _fit(run: Path, spec: SweepSpec, state: dict, ledger: results.Ledger, pairs: dict,
         echo: Echo) -> list[int]:
    """One Tune experiment (``tune/attempt-N``) over the trials still owed; the numbers of those Tune gave
    up on before their retries were spent (``OptunaSearcher.worker_error``), to run again."""
    from ray import tune

    from ltrans.sweep.progress import Progress
    from ltrans.sweep.searcher import open_study

    study = open_study(spec, f"sqlite:///{run}/optuna.db")
    history = _rung_history(spec, ledger)
    searcher, trainable, scheduler = _search(spec, study, ledger, state, history)
    if searcher.remaining == 0:
        return []
    echo(f"sweep {spec.name}: {searcher.finished} of {spec.budget} trials finished, "
         f"{searcher.remaining} to run ({len(searcher.orphans)} interrupted ones again)"
         + (f", up to {spec.pack} per pack" if spec.pack > 1 else ""))
    if history:
        echo(f"  ASHA's rungs resume with the {sum(map(len, history.values()))} values the finished trials "
             "recorded at them")
    resources = {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus}
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, pairs=pairs), resources),
        param_space={"device": "cuda" if spec.resources.gpus > 0 else "cpu"},
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, num_samples=searcher.remaining,
            max_concurrent_trials=spec.max_concurrent, reuse_actors=True,
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}"),
        run_config=tune.RunConfig(
            name=f"attempt-{state['attempts']}", storage_path=str(run / "tune"), verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            callbacks=[Progress(spec, searcher, ledger, run, echo)]),
    )
    logging.getLogger("ray.tune.tune").addFilter(_no_restore_hint)  # added once: the same function each time
    tuner.fit()
    return searcher.owed()


def _no_restore_hint(record: logging.LogRecord) -> bool:
    """Drop Ray Tune's "Resume experiment with: Tuner.restore(...)" on Ctrl-C: a run folder is resumed with
    `ltrans sweep resume`, which the CLI says next (see the module docstring)."""
    return "Tuner.restore" not in record.getMessage()


def _rung_history(spec: SweepSpec, ledger: results.Ledger) -> dict[float, list[float]]:
    """The metric values ASHA recorded by milestone for the trials finished before this start (none
    without ASHA or on a first start): replayed from the ledger so that a resumed sweep prunes as an
    uninterrupted one would (``packing.rung_history``)."""
    from ltrans.sweep.packing import Rungs, rung_history
    from ltrans.sweep.trials import max_steps

    asha = spec.scheduler
    if asha is None:
        return {}
    rungs = Rungs(asha.grace_period, asha.reduction_factor, max_steps(spec), asha.mode)
    # Ray's scheduler (one trial per Tune trial) also saw the final reports; in-pack rungs did not.
    return rung_history(ledger.trials(), ledger.curves(), asha.metric, rungs, finals=spec.pack <= 1)


def _search(spec: SweepSpec, study, ledger: results.Ledger, state: dict, history: dict[float, list[float]]):
    """Searcher, trainable and Tune scheduler: one trial per Tune trial, or packs (``pack: K``) whose
    members ASHA judges inside the pack, so Tune itself runs each pack to its end. ``history``: the
    rung values of earlier trials (``_rung_history``), which ASHA starts from."""
    from ray.tune.schedulers import FIFOScheduler

    from ltrans.sweep.searcher import OptunaSearcher, PruneAwareASHA, PruneNotes
    from ltrans.sweep.trainable import bridge_pack, bridge_trial
    from ltrans.sweep.trials import max_steps

    keys = {"code_version": state["code_version"], "attempt": state["attempts"]}
    asha, max_t = spec.scheduler, max_steps(spec)
    if spec.pack > 1:
        from ltrans.sweep.pack_searcher import PackSearcher

        rungs = None if asha is None else {"grace_period": asha.grace_period, "max_t": max_t, "mode": asha.mode,
                                           "reduction_factor": asha.reduction_factor, "metric": asha.metric}
        return PackSearcher(spec, study, ledger, asha=rungs, history=history, **keys), bridge_pack, FIFOScheduler()
    notes = PruneNotes()
    searcher = OptunaSearcher(spec, study, ledger, pruned=notes, **keys)
    if asha is None:
        return searcher, bridge_trial, FIFOScheduler()  # every trial runs out
    return searcher, bridge_trial, PruneAwareASHA(
        notes, history, time_attr="step", metric=asha.metric, mode=asha.mode, max_t=max_t,
        grace_period=asha.grace_period, reduction_factor=asha.reduction_factor)
