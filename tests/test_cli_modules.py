"""The CLI's modules: each one's docstring names the commands that module defines."""

from __future__ import annotations

import importlib
import re

import pytest

from ltrans.cli import cli

MODULES = ["ltrans.cli_bridge", "ltrans.cli_cache", "ltrans.cli_data", "ltrans.cli_models", "ltrans.cli_report",
           "ltrans.cli_sweep"]


@pytest.mark.parametrize("module_name", MODULES)
def test_a_cli_module_docstring_names_only_its_own_commands(module_name):
    # A reader looking for `ltrans translate` opens the module whose docstring names it.
    named = set(re.findall(r"``ltrans (\w+)", importlib.import_module(module_name).__doc__))
    own = {name for name, command in cli.commands.items() if command.callback.__module__ == module_name}
    assert named and named <= own, f"named {sorted(named)}, defined here {sorted(own)}"
