"""``ltrans cache clear --kind``: only the kinds ltrans writes, a typo refused before anything is removed."""

from __future__ import annotations

import ast
from pathlib import Path

from click.testing import CliRunner

import ltrans
from ltrans.artifacts import Store, make_key
from ltrans.cli import cli
from ltrans.cli_cache import CACHE_KINDS


def make_key_kinds() -> set[str]:
    """The literal kinds handed to make_key, directly or through zoo's ``_key`` (its one wrapper)."""
    root = Path(ltrans.__file__).parent
    kinds = set()
    for path in [*root.rglob("*.py"), *(root.parent / "analysis").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            name = getattr(node, "func", None) and getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name in ("make_key", "_key") and node.args and isinstance(node.args[0], ast.Constant):
                kinds.add(node.args[0].value)
    return kinds


def test_the_listed_kinds_are_the_ones_the_code_writes():
    assert make_key_kinds() == set(CACHE_KINDS)


def test_clear_by_kind_removes_that_kind_only_and_refuses_an_unknown_one(tmp_path):
    store = Store(tmp_path)
    for kind in ("latents", "classifier"):
        store.get_or_create(make_key(kind, "x", n=1), lambda out, kind=kind: (out / "a.txt").write_text(kind))
    result = CliRunner().invoke(cli, ["--cache-dir", str(tmp_path), "cache", "clear", "--kind", "latent", "-y"])
    assert result.exit_code == 2 and "latents" in result.output  # the valid kinds are listed
    assert sorted(e.kind for e in store.entries()) == ["classifier", "latents"]
    result = CliRunner().invoke(cli, ["--cache-dir", str(tmp_path), "cache", "clear", "--kind", "latents", "-y"])
    assert result.exit_code == 0 and [e.kind for e in store.entries()] == ["classifier"]
