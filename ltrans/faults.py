"""Fault injection for the fault-tolerance tests (in the spirit of Ray's ``RAY_testing_*`` variables).

With ``LTRANS_TESTING_RAISE=field=value`` in the environment (Ray's local workers inherit it), a bridge
whose config has that value in that field raises ``InjectedFault`` as its training starts, packed or
not, as a bug in a trial would. A config that fails every trial is refused when a sweep is read, so the
sweep tests inject their raising trial this way. Unset (always, outside tests) it does nothing.
"""

from __future__ import annotations

import os

ENV = "LTRANS_TESTING_RAISE"


class InjectedFault(RuntimeError):
    """The fault ``LTRANS_TESTING_RAISE`` asked for."""


def check(cfg) -> None:
    """Raise InjectedFault if ``cfg`` (a BridgeConfig) matches ``LTRANS_TESTING_RAISE``; the
    value is read as ``--set`` reads it (1e-3 matches 0.001). A field it does not have is a ValueError,
    so that a typo cannot pass for a fault that never fires."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    from ltrans.config import coerce

    key, _, value = spec.partition("=")
    field = key.removeprefix("bridge.")
    if not hasattr(cfg, field):
        raise ValueError(f"{ENV}={spec}: a bridge config has no field {field!r}")
    if coerce(value, getattr(cfg, field), key) == getattr(cfg, field):
        raise InjectedFault(f"{ENV}: {key}={value}")
