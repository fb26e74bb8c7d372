"""``ltrans cache clear --kind``: only the kinds ltrans writes, a typo refused before anything is removed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
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


def three_kinds(root: Path) -> dict[str, str]:
    """A store holding one latents, one base_model and one classifier artifact; their digests by kind."""
    store = Store(root)
    for kind in ("latents", "base_model", "classifier"):
        store.get_or_create(make_key(kind, "x", n=1), lambda out, kind=kind: (out / "a.txt").write_text(kind))
    return {e.kind: e.digest for e in store.entries()}


def clear(root: Path, *args: str):
    return CliRunner().invoke(cli, ["--cache-dir", str(root), "cache", "clear", *args, "-y"])


@pytest.mark.parametrize("key", ["", "  "])
def test_an_empty_key_is_refused_and_removes_nothing(tmp_path, key):
    digests = three_kinds(tmp_path)
    result = clear(tmp_path, "--key", key)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: --key is empty")
    assert {e.kind: e.digest for e in Store(tmp_path).entries()} == digests  # the whole cache is still there


def test_kind_and_key_together_remove_only_an_artifact_of_that_kind(tmp_path):
    digests = three_kinds(tmp_path)
    result = clear(tmp_path, "--kind", "latents", "--key", digests["base_model"][:6])
    assert result.exit_code == 2 and "no cached latents artifact has a key starting with" in result.output
    assert {e.kind for e in Store(tmp_path).entries()} == {"latents", "base_model", "classifier"}
    result = clear(tmp_path, "--kind", "base_model", "--key", digests["base_model"][:6])
    assert result.exit_code == 0 and "base_model" in result.output
    assert {e.kind for e in Store(tmp_path).entries()} == {"latents", "classifier"}


@pytest.mark.parametrize("command", ["ls", "verify"])
def test_a_missing_cache_dir_is_named_and_not_created_while_an_empty_one_has_none(tmp_path, command):
    missing = tmp_path / "typo"
    result = CliRunner().invoke(cli, ["--cache-dir", str(missing), "cache", command])
    assert result.exit_code == 2 and result.output == f"error: cache dir {missing} does not exist; " \
        "check --cache-dir or $LTRANS_CACHE (ltrans creates it when it first caches something)\n"
    assert not missing.exists()
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(cli, ["--cache-dir", str(tmp_path / "empty"), "cache", command])
    assert result.exit_code == 0 and ("(0 artifacts)" if command == "ls" else "0 ok, 0 corrupted") in result.output


@pytest.mark.parametrize("command", ["ls", "verify"])
def test_the_default_cache_not_made_yet_lists_nothing(tmp_path, monkeypatch, command):
    # A fresh machine: no --cache-dir, no $LTRANS_CACHE, and ~/.cache/ltrans not created yet.
    monkeypatch.delenv("LTRANS_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    result = CliRunner().invoke(cli, ["cache", command])
    assert result.exit_code == 0 and ("(0 artifacts)" if command == "ls" else "0 ok, 0 corrupted") in result.output
    assert not (tmp_path / ".cache").exists()
