"""The artifact store: stable keys, build-once under concurrency, atomic writes, corruption caught on read."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ltrans.artifacts import Store, default_root, make_key
from ltrans.errors import CorruptArtifact, UserError


def _write_two_files(d: Path) -> None:
    (d / "weights.bin").write_bytes(bytes(range(256)) * 8)
    (d / "sub").mkdir()
    (d / "sub" / "record.json").write_text('{"loss": 0.5}\n')


def _tree_hashes(path: Path) -> dict[str, str]:
    return {p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- keys


def test_key_digest_is_stable_and_ignores_dict_order():
    a = make_key("latents", "mnist_vae", config={"x": 1, "y": [1, 2]}, seed=0)
    b = make_key("latents", "mnist_vae", seed=0, config={"y": (1, 2), "x": 1})  # tuple == list
    assert a.digest == b.digest and a == b
    assert len(a.digest) == 64 and a.short == f"mnist_vae-{a.digest[:12]}"
    # pinned to `printf '%s' '{"format":1,"kind":"dataset","name":"toy","parts":{"cfg":{"a":"x",'\
    # '"b":[1.5,null,true]},"n":1}}' | sha256sum`: a change to the canonical form invalidates every cache.
    pinned = make_key("dataset", "toy", n=1, cfg={"b": (1.5, None, True), "a": "x"})
    assert pinned.digest == "90b1f2f22273b67f4d649f42ce386fd0be3c7bff4e95736b76c3d122f9b0d9b8"


@pytest.mark.parametrize("changed", [
    {"kind": "classifier"}, {"name": "other"}, {"seed": 1}, {"config": {"x": 2, "y": [1, 2]}},
    {"config": {"x": 1, "y": [2, 1]}}, {"config": {"x": 1.0, "y": [1, 2]}}, {"extra": None},
])
def test_key_digest_changes_with_any_part(changed):
    base = {"kind": "latents", "name": "mnist_vae", "config": {"x": 1, "y": [1, 2]}, "seed": 0}
    assert make_key(**{**base, **changed}).digest != make_key(**base).digest


@pytest.mark.parametrize("bad", [{"w": object()}, {"w": {1: "int key"}}, {"w": float("nan")},
                                 {"w": np.float32(1.0)}, {"w": Path("x")}])
def test_key_rejects_non_json_parts_naming_the_part(bad):
    with pytest.raises(TypeError, match="w"):
        make_key("dataset", "toy", config={"ok": 1}, **bad)


@pytest.mark.parametrize("kind,name", [("Dataset", "toy"), ("dataset", "to-y"), ("", "toy"),
                                       ("dataset", "../x"), ("dataset", "")])
def test_key_rejects_bad_names(kind, name):
    with pytest.raises(ValueError, match=r"\[a-z0-9_\]"):
        make_key(kind, name)


# ---------------------------------------------------------------- build once


def test_get_or_create_builds_once_then_returns_the_same_files(tmp_path):
    store, calls = Store(tmp_path), []
    key = make_key("base_model", "toy", seed=0)
    build = lambda d: (calls.append(d), _write_two_files(d))
    first = store.get_or_create(key, build)
    again = store.get_or_create(key, build)
    assert first == again == store.path(key) == tmp_path / "base_model" / key.short
    assert len(calls) == 1 and store.exists(key) and store.open(key) == first
    manifest = json.loads((first / "manifest.json").read_text())
    assert set(manifest["files"]) == {"weights.bin", "sub/record.json"}
    assert manifest["digest"] == key.digest and manifest["parts"] == {"seed": 0}
    assert manifest["files"]["weights.bin"]["sha256"] == hashlib.sha256(bytes(range(256)) * 8).hexdigest()


_CHILD = textwrap.dedent("""
    import hashlib, json, os, sys, time
    from pathlib import Path
    from ltrans.artifacts import Store, make_key
    root, counter, go = map(Path, sys.argv[1:4])
    def build(d):
        with open(counter, "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(1.0)
        (d / "data.bin").write_bytes(os.urandom(4096))  # random: identical bytes prove one build
    (root / f"ready-{os.getpid()}").touch()
    while not go.exists():
        time.sleep(0.005)
    path = Store(root).get_or_create(make_key("latents", "race", n=1), build)
    sha = hashlib.sha256((path / "data.bin").read_bytes()).hexdigest()
    print(json.dumps({"path": str(path), "sha": sha}))
""")


def test_two_processes_build_a_missing_key_exactly_once(tmp_path):
    counter, go = tmp_path / "counter.txt", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path), str(counter), str(go)],
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # both are past their imports: they ask for the key within milliseconds of each other
    results = [json.loads(p.communicate(timeout=30)[0]) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert len(counter.read_text().splitlines()) == 1
    assert results[0] == results[1]
    assert not list((tmp_path / "latents").glob(".tmp-*"))


def test_two_threads_build_a_missing_key_exactly_once(tmp_path):
    store, key, barrier, calls = Store(tmp_path), make_key("latents", "race", n=2), threading.Barrier(2), []
    results: list[Path] = []

    def build(d: Path) -> None:
        calls.append(1)
        time.sleep(0.3)
        (d / "data.bin").write_bytes(np.random.default_rng(len(calls)).bytes(1024))

    def ask() -> None:
        barrier.wait()
        results.append(store.get_or_create(key, build))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(calls) == 1 and len(results) == 2 and results[0] == results[1]


def test_failing_build_leaves_nothing_and_the_next_call_builds(tmp_path):
    store, key = Store(tmp_path), make_key("dataset", "flaky")

    def fail(d: Path) -> None:
        (d / "half.bin").write_bytes(b"x" * 100)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        store.get_or_create(key, fail)
    assert not store.path(key).exists() and not store.exists(key)
    assert not list((tmp_path / "dataset").glob(".tmp-*"))
    path = store.get_or_create(key, _write_two_files)
    assert _tree_hashes(path).keys() == {"manifest.json", "weights.bin", "sub/record.json"}


def test_directory_without_manifest_is_absent_and_replaced(tmp_path):
    store, key = Store(tmp_path), make_key("dataset", "junk")
    store.path(key).mkdir(parents=True)
    (store.path(key) / "leftover").write_text("not ours")
    assert not store.exists(key)
    with pytest.raises(UserError, match="not in the cache at"):
        store.open(key)
    path = store.get_or_create(key, _write_two_files)
    assert not (path / "leftover").exists() and store.exists(key)


def test_build_that_writes_a_symlink_is_refused(tmp_path):
    store, key = Store(tmp_path), make_key("dataset", "linky")
    with pytest.raises(ValueError, match="not a regular file"):
        store.get_or_create(key, lambda d: (d / "link").symlink_to(tmp_path))
    assert not store.path(key).exists()


# ---------------------------------------------------------------- corruption


def _flip_byte(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[100] ^= 0xFF
    p.write_bytes(bytes(data))


@pytest.mark.parametrize("damage,message", [
    (lambda p: _flip_byte(p / "weights.bin"), r"weights\.bin has changed content"),
    (lambda p: (p / "sub" / "record.json").unlink(), r"sub/record\.json is missing"),
    (lambda p: (p / "sub" / "new.txt").write_text("hi"), r"sub/new\.txt is not in the manifest"),
    (lambda p: (p / "weights.bin").write_bytes(b"\0" * 10), r"weights\.bin has 10 bytes.*truncated"),
    (lambda p: (p / "manifest.json").write_text("{"), r"manifest\.json is unreadable"),
])
def test_corruption_is_caught_on_every_read(tmp_path, damage, message):
    store = Store(tmp_path)
    good, bad = make_key("base_model", "good"), make_key("base_model", "bad")
    store.get_or_create(good, _write_two_files)
    path = store.get_or_create(bad, _write_two_files)
    damage(path)
    for read in (lambda: store.open(bad), lambda: store.get_or_create(bad, _write_two_files),
                 lambda: store.verify(bad), lambda: store.verify(path)):
        with pytest.raises(CorruptArtifact, match=message) as err:
            read()
        text = str(err.value)
        assert "\n" not in text and f"base_model/{bad.short}" in text
        assert f"ltrans cache clear --key {bad.digest[:12]}" in text
    problems = {e.name: (e, p) for e, p in store.verify_all()}
    assert problems["good"][1] is None and problems["bad"][1] and "\n" not in problems["bad"][1]
    assert store.remove(problems["bad"][0].digest) == path  # what `cache verify --fix` does
    assert [e.name for e in store.entries()] == ["good"]


def test_remove_then_get_or_create_rebuilds(tmp_path):
    store, key = Store(tmp_path), make_key("latents", "again")
    path = store.get_or_create(key, _write_two_files)
    _flip_byte(path / "weights.bin")
    assert store.remove(key.digest[:12]) == path and not path.exists()
    assert store.remove(key.digest[:12]) is None
    store.get_or_create(key, _write_two_files)
    store.verify(key)
    assert store.remove(key) == path and not store.exists(key)


def test_remove_refuses_an_ambiguous_or_empty_prefix(tmp_path):
    store = Store(tmp_path)
    keys = [make_key("dataset", "d", i=i) for i in range(17)]  # 17 > 16 hex digits: two share the first
    for key in keys:
        store.get_or_create(key, lambda d: (d / "x").write_text("x"))
    shared = next(k.digest[0] for k in keys if sum(j.digest[0] == k.digest[0] for j in keys) > 1)
    with pytest.raises(UserError, match="matches"):
        store.remove(shared)
    with pytest.raises(UserError, match="empty"):
        store.remove("")
    assert len(store.entries()) == 17


# ---------------------------------------------------------------- listing and clearing


def test_entries_list_what_was_built(tmp_path):
    store = Store(tmp_path)
    key = make_key("classifier", "digits", epochs=3)
    path = store.get_or_create(key, _write_two_files)
    (entry,) = store.entries()
    assert (entry.kind, entry.name, entry.digest, entry.path, entry.parts) == (
        "classifier", "digits", key.digest, path, {"epochs": 3})
    assert entry.size_bytes == sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    assert entry.created.endswith("+00:00")


def test_clear_removes_only_the_kind_asked_and_stale_temps(tmp_path):
    store = Store(tmp_path)
    for kind in ("dataset", "latents"):
        for name in ("a", "b"):
            store.get_or_create(make_key(kind, name), _write_two_files)
    stale = tmp_path / "latents" / f".tmp-a-{'0' * 12}-999-abcd"
    stale.mkdir()
    (tmp_path / "notes").mkdir()  # not ours: a folder without manifests or lock files
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    assert store.clear(kind="latents", name="a") == 1
    assert store.clear(kind="latents") == 1 and not stale.exists()
    assert sorted(e.name for e in store.entries()) == ["a", "b"]
    assert {e.kind for e in store.entries()} == {"dataset"}
    assert store.clear() == 2 and store.entries() == []
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def test_clear_keeps_a_temp_dir_whose_build_is_running(tmp_path):
    store, key = Store(tmp_path), make_key("latents", "busy")
    seen: list[int] = []

    def build(d: Path) -> None:
        seen.append(store.clear())  # the lock of this key is held: its temp dir is not stale
        (d / "x").write_text("x")

    store.get_or_create(key, build)  # would fail on rename if clear had deleted the temp dir
    assert seen == [0] and store.exists(key)


# ---------------------------------------------------------------- root


def test_default_root_honours_ltrans_cache_and_home(monkeypatch, tmp_path):
    monkeypatch.setenv("LTRANS_CACHE", str(tmp_path / "c"))
    assert default_root() == tmp_path / "c" and Store().root == (tmp_path / "c").resolve()
    monkeypatch.setenv("LTRANS_CACHE", "~/elsewhere")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_root() == tmp_path / "home" / "elsewhere"
    monkeypatch.delenv("LTRANS_CACHE")
    assert default_root() == tmp_path / "home" / ".cache" / "ltrans"


def test_remove_by_prefix_and_kind_matches_only_that_kind(tmp_path):
    store = Store(tmp_path)
    keys = {kind: make_key(kind, "x") for kind in ("latents", "classifier")}
    for key in keys.values():
        store.get_or_create(key, lambda d: (d / "x").write_text("x"))
    assert store.remove(keys["classifier"].digest[:8], kind="latents") is None
    assert store.exists(keys["classifier"]) and store.exists(keys["latents"])
    assert store.remove(keys["classifier"].digest[:8], kind="classifier") == store.path(keys["classifier"])
    assert not store.exists(keys["classifier"]) and store.exists(keys["latents"])
