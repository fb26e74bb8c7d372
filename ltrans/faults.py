"""Fault injection for the fault-tolerance tests (in the spirit of Ray's ``RAY_testing_*`` variables).

With ``LTRANS_TESTING_RAISE=field=value`` in the environment (Ray's local workers inherit it), a bridge
whose config has that value in that field raises ``InjectedFault`` at its first training step, packed or
not, as a bug in a trial would. A config that fails every trial is refused when a sweep is read, so the
sweep tests inject their raising trial this way. Unset (always, outside tests) it does nothing.
"""

from __future__ import annotations

import os

ENV = "LTRANS_TESTING_RAISE"


class InjectedFault(RuntimeError):
    """The fault ``LTRANS_TESTING_RAISE`` asked for."""


def check(cfg, step: int) -> None:
    """Raise InjectedFault at step 1 if ``cfg`` (a BridgeConfig) matches ``LTRANS_TESTING_RAISE``."""
    spec = os.environ.get(ENV)
    if not spec or step != 1:
        return
    field, _, value = spec.partition("=")
    if str(getattr(cfg, field.removeprefix("bridge."), None)) == value:
        raise InjectedFault(f"{ENV}: {field}={value} at step {step}")
