"""Reader and writer for the IDX format of the MNIST and Fashion-MNIST files, plain or gzip-compressed.

Layout (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"): two zero bytes, a type code, the number of
dimensions, then one big-endian uint32 per dimension, then the values in C order, big-endian.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np

from ltrans.errors import UserError

GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> big-endian numpy dtype.
TYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF_KIND = {(dt.kind, dt.itemsize): code for code, dt in TYPE_CODES.items()}


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzip detected by its magic bytes), in native byte order."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise UserError(f"{path}: not an IDX file: {len(raw)} bytes, shorter than the 4-byte header")
    zero, code, ndim = raw[:2], raw[2], raw[3]
    if zero != b"\x00\x00" or code not in TYPE_CODES:
        raise UserError(
            f"{path}: not an IDX file: magic bytes {raw[:4].hex()} (expected 0000 + a type code in "
            f"{', '.join(f'{c:02x}' for c in TYPE_CODES)} + ndim)"
        )
    if ndim == 0:
        raise UserError(f"{path}: IDX header says 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: truncated: {len(raw)} bytes, shorter than its {header}-byte header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = TYPE_CODES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise UserError(
            f"{path}: {what}: header says shape {shape} of {dtype.name} ({expected} bytes), file has {len(raw)}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))  # a native-order, writeable copy


def write_idx(path: str | Path, array: np.ndarray, compress: bool = False) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed if ``compress``), atomically; returns ``path``."""
    path = Path(path)
    array = np.asarray(array)
    code = _CODE_OF_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise ValueError(
            f"IDX cannot store dtype {array.dtype}; use one of uint8, int8, int16, int32, float32/64"
        )
    if not 1 <= array.ndim <= 255 or any(d >= 2**32 for d in array.shape):
        raise ValueError(f"IDX cannot store shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=TYPE_CODES[code]).tobytes()
    if compress:
        payload = gzip.compress(payload, mtime=0)  # mtime=0: same array, same bytes
    _write_atomically(path, payload)
    return path


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot read: {err.strerror or err}") from None
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise UserError(f"{path}: corrupt or truncated gzip data: {err}") from None


def _write_atomically(path: Path, payload: bytes) -> None:
    # A reader never sees half a file: write beside the target, then rename over it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
