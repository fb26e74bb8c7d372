"""``ltrans sweep run|resume|status|trials|best``: sweeps over bridge trials (Ray Tune + Optuna).

Ray is imported only inside ``run`` and ``resume`` (through ``ltrans.sweep.runner``); the read-only
commands read the run folder's ledger and never start Ray.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ltrans.cli import _emit, cli

RUN_DIR = click.Path(exists=True, file_okay=False, path_type=Path)
ADDRESS = click.option("--address", default=None, metavar="ADDR",
                       help="Join a running Ray cluster ('auto' on its head node; a token cluster needs its token, "
                            "see cluster.yaml); default: a local Ray of this sweep's own on 127.0.0.1, without "
                            "dashboard, with a one-off token.")


@cli.group()
def sweep() -> None:
    """Sweeps: Ray Tune schedules bridge trials, Optuna decides which (files in sweeps/)."""


@sweep.command("run")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@ADDRESS
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default runs/sweeps/NAME-TIME).")
@click.option("--smoke-test", is_flag=True, help="The same sweep at toy size: tiny base models, <= 4 short trials.")
@click.pass_context
def sweep_run(ctx: click.Context, file: Path, address: str | None, out: Path | None, smoke_test: bool) -> None:
    """Start the sweep FILE; progress lines as trials finish, results in the run folder."""
    from ltrans.sweep.runner import create_run, discard_unstarted

    run = create_run(file, out, smoke_test, sys.argv)
    click.echo(f"run folder: {run}")
    try:
        _execute(ctx, run, address)
    except BaseException:  # e.g. a wrong --address or too few CPUs: the same command must work once fixed
        if discard_unstarted(run):
            click.echo(f"run folder {run} removed again: no trial had started")
        raise


@sweep.command("resume")
@click.argument("run_dir", type=RUN_DIR)
@ADDRESS
@click.pass_context
def sweep_resume(ctx: click.Context, run_dir: Path, address: str | None) -> None:
    """Finish the sweep in RUN_DIR: finished trials are kept, interrupted ones run again."""
    _execute(ctx, run_dir, address)


def _execute(ctx: click.Context, run: Path, address: str | None) -> None:
    from ltrans.sweep.runner import execute

    outcome = execute(run, address=address, echo=click.echo, cache_root=ctx.obj.get("cache_dir"), argv=sys.argv)
    c = outcome.counts
    click.echo(f"{outcome.finished}/{outcome.budget} trials finished (ok {c['ok']}, pruned {c['pruned']}, "
               f"failed {c['failed']}); results in {outcome.run}")
    if outcome.interrupted:
        click.echo(f"interrupted before the budget; resume with: ltrans sweep resume {outcome.run}", err=True)
        ctx.exit(130)
    for entry in outcome.best[:3]:
        click.echo(f"best: trial #{entry['number']} {_objective_text(run, entry)}")


def _objective_text(run: Path, entry: dict) -> str:
    from ltrans.sweep.runner import load_run

    spec, _ = load_run(run)
    return ", ".join(f"{o.name}={entry['metrics'].get(o.name):.4g}" for o in spec.objectives)


@sweep.command("status")
@click.argument("run_dir", type=RUN_DIR)
def sweep_status(run_dir: Path) -> None:
    """Budget, finished trials by status, Optuna's view, best so far."""
    from ltrans.sweep import results
    from ltrans.sweep.runner import load_run

    spec, state = load_run(run_dir)
    trials = results.Ledger(run_dir).trials()
    c = results.counts(trials)
    click.echo(f"sweep {spec.name}{' (smoke test)' if spec.smoke else ''} in {Path(run_dir).resolve()}")
    click.echo(f"  finished {sum(c.values())}/{spec.budget}: ok {c['ok']}, pruned {c['pruned']}, "
               f"failed {c['failed']}; starts {state['attempts']}; code {state['code_version']}")
    click.echo(f"  optuna.db: {_study_states(run_dir, spec.name)}")
    for entry in results.best_entries(trials, spec.objectives)[:3]:
        click.echo(f"  best: trial #{entry['number']} " + ", ".join(
            f"{o.name}={entry['metrics'][o.name]:.4g}" for o in spec.objectives))
    if sum(c.values()) < spec.budget:
        click.echo(f"  not finished; continue with: ltrans sweep resume {run_dir}")


def _study_states(run: Path, name: str) -> str:
    """Optuna's trial counts by state, or why optuna.db cannot say (the ledger is the record: status goes on)."""
    from ltrans.sweep.results import StudyUnreadable, study_trials

    try:
        trials = study_trials(run, name)
    except StudyUnreadable as err:
        return f"unreadable ({err}); the counts above come from the ledger"
    if trials is None:
        return "not created yet"
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(states.items())) or "no trials"


@sweep.command("trials")
@click.argument("run_dir", type=RUN_DIR)
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True)
def sweep_trials(run_dir: Path, fmt: str) -> None:
    """One row per finished trial: status, objectives, searched settings (json/csv: every column)."""
    from ltrans.sweep import results
    from ltrans.sweep.runner import load_run

    spec, _ = load_run(run_dir)
    rows = [results.trial_row(e) for e in results.Ledger(run_dir).trials().values()]
    if fmt == "csv":
        import pandas as pd

        click.echo(pd.DataFrame(rows).to_csv(index=False), nl=False)
        return
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    columns = ["number", "status", "pair", "seed", *(o.name for o in spec.objectives),
               *(f"config/{d.key}" for d in spec.space), "wall_s", "reason"]
    _emit([{c: _short(r.get(c)) for c in columns} for r in rows], columns, "table")


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


@sweep.command("best")
@click.argument("run_dir", type=RUN_DIR)
def sweep_best(run_dir: Path) -> None:
    """The best trial (one objective) or the Pareto front (several), with its full config (JSON)."""
    from ltrans.sweep import results
    from ltrans.sweep.runner import load_run

    spec, _ = load_run(run_dir)
    best = results.best_entries(results.Ledger(run_dir).trials(), spec.objectives)
    if not best:
        click.echo("no trial has finished ok yet", err=True)
        sys.exit(1)
    out = [{"number": e["number"], "content_key": e["content_key"],
            "objectives": {o.name: e["metrics"][o.name] for o in spec.objectives},
            "config": e["config"]} for e in best]
    click.echo(json.dumps(out[0] if len(out) == 1 else out, indent=2, default=str))
