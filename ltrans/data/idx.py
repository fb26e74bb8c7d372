"""Reader and writer for the IDX format of the MNIST and Fashion-MNIST files, plain or gzip-compressed,
and the lookup of the four official files of such a dataset in a data dir.

Layout (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"): two zero bytes, a type code, the number of
dimensions, then one big-endian uint32 per dimension, then the values in C order, big-endian.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ltrans.errors import UserError
from ltrans.files import atomic_write_bytes

GZIP_MAGIC = b"\x1f\x8b"

# The four official files; each may also end in .gz, and "-images-idx3" may be spelled ".idx3".
IDX_FILES = {
    "train_x": ("train-images", 3),
    "train_y": ("train-labels", 1),
    "test_x": ("t10k-images", 3),
    "test_y": ("t10k-labels", 1),
}

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
    atomic_write_bytes(path, payload)
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


# ---------------------------------------------------------------- the four files of a dataset


def find_idx_files(data_dir: Path, dataset: str, fallback: str) -> dict[str, Path]:
    """The four IDX files under ``data_dir``, by key of IDX_FILES; a UserError names any missing."""
    if not data_dir.is_dir():
        what = "is a file, not a folder" if data_dir.exists() else "does not exist"
        raise UserError(
            f"{dataset} data dir {data_dir} {what}; put the four {dataset} idx files in a folder "
            f"({', '.join(_plain_names())}, optionally .gz), or {fallback}"
        )
    found, missing = {}, []
    for key, (stem, ndim) in IDX_FILES.items():
        names = [f"{stem}{sep}idx{ndim}-ubyte{gz}" for sep in ("-", ".") for gz in ("", ".gz")]
        hits = [data_dir / n for n in names if (data_dir / n).is_file()]
        if hits:
            found[key] = hits[0]  # plain before .gz, the official "-" spelling before "."
        else:
            missing.append(names[0])
    if missing:
        raise UserError(
            f"{dataset} data dir {data_dir} lacks {', '.join(missing)} (or the same with .gz); "
            f"put the four {dataset} idx files there, or {fallback}"
        )
    return found


def read_idx_examples(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, 28, 28) and int64 labels (n,) in 0..9 from an MNIST-format pair of IDX files."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.shape[1:] != (28, 28):
        raise UserError(
            f"{images_path}: expected uint8 images of shape (n, 28, 28), got {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise UserError(
            f"{labels_path}: expected a 1-d uint8 label vector, got {labels.dtype} {labels.shape}"
        )
    if len(labels) != len(images):
        raise UserError(f"{labels_path} has {len(labels)} labels but {images_path} has {len(images)} images")
    if len(labels) and labels.max() > 9:
        raise UserError(f"{labels_path}: labels must be 0..9, found {int(labels.max())}")
    return images, labels.astype(np.int64)


def _plain_names() -> list[str]:
    return [f"{stem}-idx{ndim}-ubyte" for stem, ndim in IDX_FILES.values()]
