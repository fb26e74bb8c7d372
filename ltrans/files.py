"""Single files written so that a reader sees the old file or the new one, never a part: the atomic
writers that every ltrans output goes through (with the mode the umask gives, as open() would), the
``.npz`` array format (no pickle), and streaming sha256 of a file. The artifact store
(``ltrans.artifacts``) builds on these."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np

_CHUNK = 1 << 20  # 1 MiB reads keep hashing streaming and memory flat for any file size


def umask() -> int:
    """The process umask, read without loosening it even for a moment.

    Linux shows it in /proc/self/status; elsewhere it is swapped for 0o077 and put back, so that a file
    another thread creates in between is at worst private, never world-writable.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def writable_dir(path: Path) -> Path:
    """path as a folder, created if missing and proven writable by a probe file; OSError otherwise.

    Commands call it before hours of work, not after, so that a bad output path costs nothing. The error
    names path, or the file standing where a folder of it should be, never the probe.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        in_the_way = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
        raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder", str(in_the_way)) from None
    try:
        with tempfile.TemporaryFile(dir=path, prefix=".write-probe."):
            pass
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from None
    return path


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
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:  # name the file the caller asked for, not the temp name it never saw
        raise OSError(err.errno, err.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            # mkstemp makes the file 0600 whatever the umask; give it the mode open() would have, so that
            # a shared cache or a report is readable by whoever the umask lets in.
            with suppress(OSError):  # a file system without modes (some FUSE/SMB mounts) keeps its own
                os.fchmod(f.fileno(), 0o666 & ~umask())
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
