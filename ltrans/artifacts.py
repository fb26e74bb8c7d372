"""The content-addressed artifact store: every file ltrans caches goes through here (DESIGN.md section 3).

An artifact is a directory ``root/<kind>/<name>-<digest12>`` whose key is the sha256 of everything that
fixes its content. It is built once into a temp directory under a per-key file lock, given a
``manifest.json`` (size and sha256 of every file) and renamed into place, so readers only ever see
complete artifacts. Every read re-hashes the files against the manifest. Single files (atomic writers,
arrays) are ``ltrans.files``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ltrans.errors import CorruptArtifact, UserError
from ltrans.files import atomic_write_json, file_sha256, fsync_dir

FORMAT_VERSION: int = 1  # bump to invalidate every key (it is hashed into each digest)
MANIFEST = "manifest.json"
_NAME = re.compile(r"[a-z0-9_]+")
_ARTIFACT_DIR = re.compile(r"[a-z0-9_]+-[0-9a-f]{12}")
_TMP_PREFIX = ".tmp-"


def default_root() -> Path:
    """$LTRANS_CACHE if set, else ~/.cache/ltrans; read at call time so tests and the CLI can change it."""
    return Path(os.environ.get("LTRANS_CACHE") or "~/.cache/ltrans").expanduser()


# ---------------------------------------------------------------- keys


@dataclass(frozen=True)
class ArtifactKey:
    """What fixes an artifact's content; equal keys (same digest) name the same bytes."""

    kind: str
    name: str
    digest: str  # sha256 hex of the canonical JSON of {"kind", "name", "format", "parts"}
    parts: dict = field(compare=False, hash=False)  # the digest already covers it

    @property
    def short(self) -> str:
        return f"{self.name}-{self.digest[:12]}"


def _canonical(value: object, where: str) -> object:
    """value with tuples as lists, checked to be plain JSON; TypeError names the offending key."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"key part {where} is {value}, which has no canonical JSON form")
        return value
    if isinstance(value, (list, tuple)):
        return [_canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"key part {where} has non-string dict keys: {list(value)!r}")
        return {k: _canonical(v, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(f"key part {where} is a {type(value).__name__}, not JSON-able "
                    "(use str/int/float/bool/None/list/dict)")


def _check_name(what: str, value: str) -> None:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(f"artifact {what} must match [a-z0-9_]+, got {value!r}")


def make_key(kind: str, name: str, **parts: object) -> ArtifactKey:
    """The key of artifact kind/name whose content is fixed by parts (any JSON-able values)."""
    _check_name("kind", kind)
    _check_name("name", name)
    canon = {k: _canonical(v, k) for k, v in parts.items()}
    blob = json.dumps({"kind": kind, "name": name, "format": FORMAT_VERSION, "parts": canon},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return ArtifactKey(kind, name, hashlib.sha256(blob.encode()).hexdigest(), canon)


# ---------------------------------------------------------------- manifests

_FIX = "remove it with `ltrans cache clear --key {d12}` (or `ltrans cache verify --fix`) and run again"


def _files_under(root: Path) -> dict[str, Path]:
    """Every file below root by its '/'-joined relative path, manifest excluded."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            path = Path(dirpath) / entry
            rel = path.relative_to(root).as_posix()
            if path.is_symlink() or (entry in filenames and not path.is_file()):
                out[rel] = path  # recorded so that a build refuses it and verify reports it
            elif entry in filenames and rel != MANIFEST:
                out[rel] = path
    return out


def _record_files(root: Path) -> dict[str, dict]:
    """{relative path: {size, sha256}} for a fresh build; fsyncs each file so the rename is durable."""
    record = {}
    for rel, path in sorted(_files_under(root).items()):
        if path.is_symlink() or not path.is_file():
            raise ValueError(f"artifact build wrote {rel!r}, which is not a regular file "
                             "(links are not stored)")
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        record[rel] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
    return record


class _BadManifest(Exception):
    """The manifest cannot be used; the message says why."""


def _read_manifest(path: Path) -> dict:
    """The manifest of artifact dir path; _BadManifest says why it cannot be used."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        raise _BadManifest(f"{MANIFEST} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _BadManifest(f"{MANIFEST} is unreadable ({err})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise _BadManifest(f"{MANIFEST} has no 'files' table")
    return manifest


def _problems(path: Path, digest: str | None) -> list[str]:
    """What is wrong with artifact dir path (empty when it matches its manifest)."""
    if not path.is_dir():
        return ["the artifact directory is missing"]
    try:
        expected = _read_manifest(path)
    except _BadManifest as err:
        return [str(err)]
    if digest is not None and expected.get("digest") != digest:
        return [f"{MANIFEST} is for key {str(expected.get('digest'))[:12]}, not {digest[:12]}"]
    actual = _files_under(path)
    extra = sorted(set(actual) - set(expected["files"]))
    problems = [f"{rel} is not in the manifest (extra file)" for rel in extra]
    for rel, want in sorted(expected["files"].items()):
        problems += _file_problems(rel, actual.get(rel), want)
    return problems


def _file_problems(rel: str, path: Path | None, want: dict) -> list[str]:
    if path is None:
        return [f"{rel} is missing"]
    if path.is_symlink() or not path.is_file():
        return [f"{rel} is not a regular file"]
    size = path.stat().st_size
    if size != want.get("size"):
        how = "truncated" if size < want.get("size", 0) else "grown"
        return [f"{rel} has {size} bytes, expected {want.get('size')} ({how})"]
    if file_sha256(path) != want.get("sha256"):
        return [f"{rel} has changed content (sha256 differs from the manifest)"]
    return []


# ---------------------------------------------------------------- the store


@dataclass(frozen=True)
class Entry:
    """One complete artifact on disk, as `ltrans cache ls` lists it."""

    kind: str
    name: str
    digest: str  # from the manifest; the directory's 12-character suffix if the manifest is unreadable
    path: Path
    size_bytes: int
    created: str  # ISO 8601 UTC
    parts: dict = field(compare=False)


_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _thread_lock(name: str) -> threading.Lock:
    """A process-wide lock per key: flock alone does not exclude threads on NFS (POSIX-lock emulation)."""
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(name, threading.Lock())


class Store:
    """Artifacts under root, one folder per kind; see the module docstring for the layout."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(default_root() if root is None else root).expanduser().resolve()

    def path(self, key: ArtifactKey) -> Path:
        return self.root / key.kind / key.short

    def exists(self, key: ArtifactKey) -> bool:
        """Complete (has a manifest); the hashes are not checked."""
        return (self.path(key) / MANIFEST).is_file()

    def get_or_create(self, key: ArtifactKey, build: Callable[[Path], object]) -> Path:
        """The verified artifact for key, built once by build(empty_dir) if it is not stored yet."""
        if not self.exists(key):
            with self._locked(key.kind, key.short):
                if not self.exists(key):  # another process may have built it while we waited
                    self._publish(key, build)
                    return self.path(key)  # just hashed while writing the manifest
        self.verify(key)
        return self.path(key)

    def open(self, key: ArtifactKey, build_hint: str = "`ltrans prepare`") -> Path:
        """The verified artifact for key; UserError if it was never built."""
        if not self.exists(key):
            raise UserError(f"{key.kind} {key.name!r} (key {key.digest[:12]}) is not in the cache at "
                            f"{self.path(key)}; build it with {build_hint}")
        self.verify(key)
        return self.path(key)

    def verify(self, key_or_path: ArtifactKey | Path | str) -> None:
        """Re-hash every file against the manifest; CorruptArtifact (one line) on any difference."""
        problems = self._problems(key_or_path)
        if problems:
            path = self._as_path(key_or_path)
            more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
            raise CorruptArtifact(f"corrupt artifact {path.parent.name}/{path.name} at {path}: {problems[0]}"
                                  f"{more}; " + _FIX.format(d12=path.name[-12:]))

    def entries(self) -> list[Entry]:
        """Every complete artifact (those with a manifest), sorted by kind then directory name."""
        return [self._entry(d) for kind_dir in self._kind_dirs() for d in sorted(kind_dir.iterdir())
                if _ARTIFACT_DIR.fullmatch(d.name) and not d.is_symlink() and (d / MANIFEST).is_file()]

    def verify_all(self) -> list[tuple[Entry, str | None]]:
        """Each entry with its problems joined by '; ', or None when it verifies."""
        return [(e, "; ".join(self._problems(e.path)) or None) for e in self.entries()]

    def remove(self, key_or_digest_prefix: ArtifactKey | str, kind: str | None = None) -> Path | None:
        """Delete one artifact, by key or by a prefix of its digest (of that kind only, when given);
        the removed path, None if no match."""
        if isinstance(key_or_digest_prefix, ArtifactKey):
            matches = [self.path(key_or_digest_prefix)] if self.path(key_or_digest_prefix).exists() else []
        else:
            prefix = key_or_digest_prefix.strip().lower()
            if not prefix:
                raise UserError("an empty key prefix would match every artifact; use `ltrans cache clear`")
            matches = [e.path for e in self.entries() if e.digest.startswith(prefix) and kind in (None, e.kind)]
        if len(matches) > 1:
            names = ", ".join(f"{p.parent.name}/{p.name}" for p in matches)
            raise UserError(f"key prefix {key_or_digest_prefix!r} matches {len(matches)} artifacts "
                            f"({names}); give more characters")
        if not matches:
            return None
        self._delete(matches[0])
        return matches[0]

    def clear(self, kind: str | None = None, name: str | None = None) -> int:
        """Delete the artifacts of kind/name (all when None) and every stale temp dir; the number removed."""
        removed = 0
        for kind_dir in self._kind_dirs(kind):
            for d in sorted(kind_dir.iterdir()):
                if d.name.startswith(_TMP_PREFIX) and self._is_stale_temp(d):
                    self._delete(d)
                elif _ARTIFACT_DIR.fullmatch(d.name) and name in (None, d.name.rsplit("-", 1)[0]):
                    self._delete(d)
                    removed += 1
        return removed

    # ------------------------------------------------------------ internals

    def _as_path(self, key_or_path: ArtifactKey | Path | str) -> Path:
        return self.path(key_or_path) if isinstance(key_or_path, ArtifactKey) else Path(key_or_path)

    def _problems(self, key_or_path: ArtifactKey | Path | str) -> list[str]:
        digest = key_or_path.digest if isinstance(key_or_path, ArtifactKey) else None
        return _problems(self._as_path(key_or_path), digest)

    def _publish(self, key: ArtifactKey, build: Callable[[Path], object]) -> None:
        """Build into a temp dir, write its manifest and rename it into place (the caller holds the lock)."""
        kind_dir = self.root / key.kind
        tmp = kind_dir / f"{_TMP_PREFIX}{key.short}-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir(parents=True)
        try:
            build(tmp)
            atomic_write_json(tmp / MANIFEST, self._manifest(key, _record_files(tmp)))
            final = self.path(key)
            if final.exists() or final.is_symlink():  # a directory without a manifest counts as absent
                self._delete(final)
            os.rename(tmp, final)  # atomic: readers see nothing or the complete artifact
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(kind_dir)

    @staticmethod
    def _manifest(key: ArtifactKey, files: dict[str, dict]) -> dict:
        from ltrans import __version__  # at call time: ltrans/__init__ may import this module

        return {"kind": key.kind, "name": key.name, "digest": key.digest, "format": FORMAT_VERSION,
                "parts": key.parts, "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "ltrans_version": __version__, "files": files}

    @contextmanager
    def _locked(self, kind: str, short: str, blocking: bool = True) -> Iterator[bool]:
        """Hold the exclusive lock of one key (across processes and threads); yields False if busy."""
        lock_path = self.root / kind / ".locks" / f"{short}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        thread_lock = _thread_lock(str(lock_path))
        with open(lock_path, "a") as f:  # never unlinked: deleting a lock file breaks mutual exclusion
            held = thread_lock.acquire(blocking)
            if held:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                except BlockingIOError:
                    thread_lock.release()
                    held = False
            try:
                yield held
            finally:
                if held:
                    fcntl.flock(f, fcntl.LOCK_UN)
                    thread_lock.release()

    def _is_stale_temp(self, tmp: Path) -> bool:
        """A temp dir of ours whose key nobody is building now (its lock is free)."""
        m = re.fullmatch(r"\.tmp-([a-z0-9_]+-[0-9a-f]{12})-\d+-[0-9a-f]+", tmp.name)
        if not m:
            return False
        with self._locked(tmp.parent.name, m.group(1), blocking=False) as free:
            return free

    def _kind_dirs(self, kind: str | None = None) -> list[Path]:
        """Kind folders we recognise as ours: a lock folder, a manifest or a temp dir inside."""
        if not self.root.is_dir():
            return []
        dirs = [d for d in sorted(self.root.iterdir())
                if _NAME.fullmatch(d.name) and d.is_dir() and not d.is_symlink() and kind in (None, d.name)]
        return [d for d in dirs if (d / ".locks").is_dir() or any(
            c.name.startswith(_TMP_PREFIX) or (c / MANIFEST).is_file() for c in d.iterdir())]

    def _entry(self, path: Path) -> Entry:
        try:
            manifest = _read_manifest(path)
        except _BadManifest:
            manifest = {}  # still listed, so that `cache verify` reports it and `--fix` removes it
        name, _, d12 = path.name.rpartition("-")
        size = sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir() or p.is_symlink())
        return Entry(kind=path.parent.name, name=manifest.get("name", name),
                     digest=manifest.get("digest", d12), path=path, size_bytes=size,
                     created=manifest.get("created", ""), parts=manifest.get("parts", {}))

    def _delete(self, path: Path) -> None:
        """Remove a file or tree inside root; an artifact first leaves its final name atomically."""
        where = path.parent.resolve() / path.name
        if where == self.root or not where.is_relative_to(self.root):
            raise UserError(f"refusing to delete {path}: it is not inside the cache root {self.root}")
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
            return
        if not path.name.startswith(_TMP_PREFIX):  # a crash mid-delete must not leave a half artifact
            trash = path.with_name(f"{_TMP_PREFIX}{path.name}-{os.getpid()}-{secrets.token_hex(4)}")
            os.rename(path, trash)
            path = trash
        shutil.rmtree(path)
