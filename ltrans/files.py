"""Single files written so that a reader sees the old file or the new one, never a part: the atomic
writers that every ltrans output goes through, the ``.npz`` array format (no pickle), and streaming
sha256 of a file. The artifact store (``ltrans.artifacts``) builds on these."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

_CHUNK = 1 << 20  # 1 MiB reads keep hashing streaming and memory flat for any file size


def fsync_dir(path: Path) -> None:
    """Make a rename or create inside path durable (POSIX needs the directory itself synced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path: Path) -> Iterator[io.BufferedWriter]:
    """A binary file that replaces path only if the with-block finishes; else path is untouched.

    For writers that want a file object, e.g. ``with atomic_open(p) as f: torch.save(state, f)``.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write data to path so that readers see the old file or the new one, never a part."""
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: object) -> None:
    """obj as JSON (indent=2, sorted keys, trailing newline); serialised before path is touched."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    """Arrays to an uncompressed .npz at exactly path; object arrays are refused (they need pickle)."""
    values = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in values.items():
        if v.dtype.hasobject:
            raise TypeError(f"array {k!r} has dtype {v.dtype}; object arrays cannot be stored without pickle")
    with atomic_open(Path(path)) as f:  # a file object keeps numpy from appending ".npz"
        np.savez(f, allow_pickle=False, **values)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a save_arrays file, read fully into memory (no pickle, no open file left)."""
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def file_sha256(path: Path) -> str:
    """sha256 hex of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()
