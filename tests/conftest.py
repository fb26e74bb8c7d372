"""Shared fixtures. Every test session gets its own artifact cache, so tests never touch
~/.cache/ltrans and never depend on what an earlier run left there."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ltrans-cache")
    old = os.environ.get("LTRANS_CACHE")
    os.environ["LTRANS_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("LTRANS_CACHE", None)
    else:
        os.environ["LTRANS_CACHE"] = old


@pytest.fixture(scope="session")
def store(_session_cache):
    from ltrans.artifacts import Store

    return Store(_session_cache)


@pytest.fixture
def one_thread():
    """Train on one torch thread (the machine is shared, and a result is then the same whatever the
    core count), then restore the count for later tests."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
