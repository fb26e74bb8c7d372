"""Our searcher for packed sweeps (``pack: K``): a Tune trial is a pack, each member one Optuna trial.

It is ``OptunaSearcher`` with members in place of trials (DESIGN.md section 4, "Packing"): ``suggest``
asks Optuna for up to K points, the first freely and the rest with the first one's layer shapes fixed
(Optuna's PartialFixedSampler over the sweep's sampler; not for a grid), so that a pack trains as one
even when the search space has shapes in it; each member ends on its own through the events the pack reports
(``trainable.bridge_pack``), is written to the ledger and told COMPLETE, PRUNED (in-pack ASHA) or FAIL
as an unpacked trial would be. A pack whose worker kept dying fails its unfinished members (one Tune
gave up on early runs them again, as ``OptunaSearcher.worker_error`` says); members of an interrupted pack
stay RUNNING in Optuna and run again on resume. Rung values reported by packs are
handed to later packs, so in-pack ASHA judges each member against every member before it (on resume
too: ``history`` holds the finished members' values, ``packing.rung_history``).
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import optuna
from ray.tune.search import Searcher

from ltrans.bridge.packed import PACK_FIELDS
from ltrans.errors import UserError
from ltrans.sweep.results import Ledger
from ltrans.sweep.searcher import _TUNE_KEYS, OptunaSearcher
from ltrans.sweep.spec import SweepSpec

# Searched keys that decide whether two trials can share a pack (see packing.group_key).
SHAPE_KEYS = frozenset({f"bridge.{name}" for name in PACK_FIELDS} | {"base", "method"})


def pack_events(result: dict | None) -> list[dict]:
    """The member events of one pack report (see ``trainable.bridge_pack``)."""
    text = (result or {}).get("events")
    return json.loads(text) if isinstance(text, str) and text else []


class PackSearcher(OptunaSearcher):
    """Suggests packs of up to ``spec.pack`` members and tells Optuna each member's outcome."""

    def __init__(self, spec: SweepSpec, study: optuna.Study, ledger: Ledger, *, code_version: str,
                 attempt: int, asha: dict | None = None, history: dict[float, list[float]] | None = None) -> None:
        super().__init__(spec, study, ledger, code_version=code_version, attempt=attempt)
        self.packs: dict[str, list[int]] = {}  # tune trial id -> member numbers; self.live is by member
        self.asha = asha
        # In-pack ASHA: metric values by milestone, from the start those of the trials finished before.
        self.history: dict[float, list[float]] = {m: list(v) for m, v in (history or {}).items()}
        self.seen: dict[str, tuple[str, int]] = {}  # tune trial id -> (run, report) last processed

    def suggest(self, trial_id: str) -> dict | str | None:
        members, misses, shape = [], 0, {}
        while len(members) < self.spec.pack and self.remaining > 0:
            live = self._next_with(trial_id, shape)  # an invalid point is recorded failed; ask again
            if live is None:
                misses += 1
                if misses == 20:
                    raise UserError("20 sampled points in a row made invalid trial configs; check the search space")
                continue
            self.live[f"{trial_id}/{live.number}"] = live
            members.append(live)
            if len(members) == 1 and self.spec.sampler != "grid":
                shape = {k: v for k, v in live.params.items() if k in SHAPE_KEYS}
        if not members:
            return Searcher.FINISHED
        self.packs[trial_id] = [m.number for m in members]
        asha = None if self.asha is None else self.asha | {"history": {str(m): v for m, v in self.history.items()}}
        return {"members": [{"trial": m.config, "number": m.number, "content_key": m.content_key} for m in members],
                "asha": asha}

    def _next_with(self, trial_id: str, shape: dict[str, Any]):
        """The next member (an orphan first), sampled with ``shape``'s settings fixed."""
        if not shape or self.orphans:
            return self._next(trial_id)
        sampler = self.study.sampler
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.study.sampler = optuna.samplers.PartialFixedSampler(shape, sampler)
        try:
            return self._next(trial_id)
        finally:
            self.study.sampler = sampler

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        mark = (str(result.get("run")), int(result.get("report", -1)))
        if self.seen.get(trial_id) is not None and self.seen[trial_id][0] == mark[0] \
                and self.seen[trial_id][1] >= mark[1]:
            return  # Tune hands the last result over again when a trial ends
        self.seen[trial_id] = mark
        for event in pack_events(result):
            if event["kind"] == "rung":
                self.history.setdefault(float(event["milestone"]), []).append(event["value"])
            elif event["kind"] == "end":
                self._member_end(trial_id, event["number"], event["row"], result)

    def _member_end(self, trial_id: str, number: int, row: dict[str, Any], result: dict) -> None:
        live = self.live.pop(f"{trial_id}/{number}", None)
        if live is None:
            return  # finished already: a retried pack trains it again, its first word stands
        metrics = {k: v for k, v in row.items() if k not in _TUNE_KEYS and not k.startswith("config/")}
        # train_seconds is the member's share of the pack's time (older run folders: the pack's whole time)
        metrics |= {"pack_size": len(self.packs.get(trial_id, ())), "time_share": True}
        self._finish(number, trial_id, row.get("status", "failed"), row.get("reason", ""), metrics, live.config,
                     live.pair, live.seed, live.content_key,
                     {"time_total_s": row.get("trial_seconds"), "node_ip": result.get("node_ip")})

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result and not error:
            self.on_trial_result(trial_id, result)
        final = bool(result and result.get("final"))
        unfinished = [live for number in self.packs.pop(trial_id, [])
                      if (live := self.live.pop(f"{trial_id}/{number}", None)) is not None]
        self.seen.pop(trial_id, None)
        if error:  # Tune's word on the error follows at once (``Progress.on_trial_error``)
            self.errored[trial_id] = unfinished
            return
        for live in unfinished:
            if final:  # final without this member's row cannot happen; never leave it hanging
                self._finish(live.number, trial_id, "failed", "its pack ended without a row for it", {},
                             live.config, live.pair, live.seed, live.content_key, result or {})
            else:  # interrupted: stays RUNNING in Optuna; run it again if Tune asks for more
                self.orphans.append(live)
