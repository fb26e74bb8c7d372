"""The sweep's progress display and learning-curve recorder: a Tune ``Callback`` on the driver.

One line per finished trial: finished/budget, ok/pruned/failed, running, best so far. It also
appends every intermediate report to the curves ledger and refreshes the parquet files now and then.
A packed sweep's reports carry member events (``trainable.bridge_pack``): one line and one curve per
member, as if it had been a Tune trial of its own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

from ray import tune

from ltrans.sweep import results

PARQUET_EVERY_S = 10.0  # trials.parquet is a view: refresh it at most this often while running


class Progress(tune.Callback):
    """Prints progress and records curves; the searcher records the trials themselves."""

    def __init__(self, spec, searcher, ledger: results.Ledger, run: Path, echo: Callable[[str], None]) -> None:
        self.spec, self.searcher, self.ledger, self.run, self.echo = spec, searcher, ledger, run, echo
        self.last_write = 0.0
        self.closed: set[int] = set()  # pack members whose end was reported (a retried pack repeats them)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if "events" in result:
            self._pack_result(trial, result)
            return
        if result.get("final") or "step" not in result:
            return
        self._curve(trial.config.get("number"), trial.trial_id, result)

    def _curve(self, number, trial_id: str, result: dict) -> None:
        point = {k: v for k, v in result.items() if k.startswith("loss_") and _finite(v)}
        self.ledger.record_curve({"number": number, "tune_trial_id": trial_id, "step": result["step"],
                                  "wall_s": result.get("wall_s"), **point})

    def _pack_result(self, trial, result: dict) -> None:
        from ltrans.sweep.pack_searcher import pack_events

        ended = []
        for event in pack_events(result):
            if event["kind"] == "curve" and event["number"] not in self.closed:
                self._curve(event["number"], trial.trial_id, event)
            elif event["kind"] == "end" and event["number"] not in self.closed:
                ended.append(event["number"])
        self.closed.update(ended)
        for number in ended:
            self._report(trial, number)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if "members" not in trial.config:  # a pack's members were reported as they ended
            self._report(trial, trial.config.get("number"))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        # Tune ends a trial in error after its last allowed retry, or earlier when its actor's death
        # reaches it twice (searcher module docstring); the failure count tells which.
        failures = trial.run_metadata.num_failures
        exhausted = failures > self.spec.max_failures
        reason = f"Ray error after {self.spec.max_failures} retries: {_error(trial)}"
        numbers = self.searcher.worker_error(trial.trial_id, exhausted, reason)
        if exhausted:
            for number in numbers:
                self._report(trial, number)
        elif numbers:
            self.echo(f"[{self.spec.name}] trial {', '.join(f'#{n}' for n in numbers)} lost its Ray worker and "
                      f"Ray Tune gave up on it after {failures} failure(s), with {self.spec.max_failures} retries "
                      "allowed: it runs again")

    def on_experiment_end(self, trials, **info) -> None:
        results.write_parquets(self.run)

    def _report(self, trial, number) -> None:
        self.entries = self.searcher.entries
        entry = self.entries.get(number)
        if entry is None or entry["tune_trial_id"] != trial.trial_id:
            return  # interrupted, not finished: resume runs it again
        c = results.counts(self.entries)
        running = len(self.searcher.live)
        line = (f"[{self.spec.name}] {sum(c.values())}/{self.spec.budget} finished (ok {c['ok']}, pruned "
                f"{c['pruned']}, failed {c['failed']}), {running} running | trial #{entry['number']} "
                f"{entry['status']}{self._value(entry)}{self._best()}")
        self.echo(line)
        if time.monotonic() - self.last_write > PARQUET_EVERY_S:
            results.write_parquets(self.run)
            self.last_write = time.monotonic()

    def _value(self, entry: dict) -> str:
        if entry["status"] != "ok":
            return f" ({entry['reason']})" if entry.get("reason") else ""
        name = self.spec.objectives[0].name
        return f" {name}={entry['metrics'].get(name, math.nan):.4g}"

    def _best(self) -> str:
        objective = self.spec.objectives[0]
        scored = [(e["metrics"].get(objective.name), n) for n, e in self.entries.items()
                  if e["status"] == "ok" and _finite(e["metrics"].get(objective.name))]
        if not scored:
            return ""
        value, number = (max if objective.direction == "maximize" else min)(scored)
        return f" | best {objective.name} {value:.4g} (trial #{number})"


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _error(trial) -> str:
    """The last line of the trial's error text (the exception), or a pointer to the file."""
    try:
        text = Path(trial.error_file).read_text().strip().splitlines()
        return text[-1][:300] if text else "unknown"
    except (OSError, TypeError):
        return f"see {trial.error_file}"
