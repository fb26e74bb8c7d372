"""IDX reader/writer: exact bytes, round trips plain and gzip, and helpful errors on malformed files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from ltrans.data.idx import read_idx, write_idx
from ltrans.errors import UserError


def _images(n: int = 5) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def test_header_is_the_documented_big_endian_layout(tmp_path):
    path = write_idx(tmp_path / "a-idx2-ubyte", np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert path.read_bytes() == bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 1, 2, 3, 4, 5])


def test_int32_values_are_written_big_endian(tmp_path):
    path = write_idx(tmp_path / "v", np.array([1, -2], dtype=np.int32))
    assert path.read_bytes()[2:4] == bytes([0x0C, 1])
    assert path.read_bytes()[8:] == b"\x00\x00\x00\x01\xff\xff\xff\xfe"


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    "array",
    [
        _images(),
        np.arange(10, dtype=np.uint8),
        np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
        np.array([-300, 0, 300], dtype=np.int16),
        np.array([[-5, 7]], dtype=np.int8),
        np.array([0.1, 2e300]),
    ],
    ids=["uint8-images", "uint8-labels", "float32", "int16", "int8", "float64"],
)
def test_round_trip_is_exact(tmp_path, array, compress):
    back = read_idx(write_idx(tmp_path / "f", array, compress=compress))
    assert back.dtype == array.dtype and back.dtype.isnative
    assert back.shape == array.shape and np.array_equal(back, array)
    back[...] = 0  # a writeable copy, not a view of the file's bytes


def test_gzip_is_detected_by_magic_not_by_name(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    compressed = write_idx(tmp_path / "labels-no-suffix", labels, compress=True)
    plain = write_idx(tmp_path / "labels-plain.gz", labels)
    assert compressed.read_bytes()[:2] == b"\x1f\x8b" and plain.read_bytes()[:2] == b"\x00\x00"
    assert np.array_equal(read_idx(compressed), labels) and np.array_equal(read_idx(plain), labels)


def test_compressed_output_is_deterministic(tmp_path):
    a = write_idx(tmp_path / "a.gz", _images(), compress=True).read_bytes()
    b = write_idx(tmp_path / "b.gz", _images(), compress=True).read_bytes()
    assert a == b


def test_write_replaces_atomically_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    write_idx(path, _images(3))
    write_idx(path, _images(2))
    assert read_idx(path).shape == (2, 28, 28)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_unsupported_dtype_is_refused_without_leaving_a_file(tmp_path):
    with pytest.raises(ValueError, match="uint16"):
        write_idx(tmp_path / "bad", np.zeros(3, dtype=np.uint16))
    assert list(tmp_path.iterdir()) == []


def _corrupt(tmp_path, name: str, raw: bytes):
    path = tmp_path / name
    path.write_bytes(raw)
    with pytest.raises(UserError) as err:
        read_idx(path)
    assert str(path) in str(err.value)
    return str(err.value)


def test_truncated_file_names_file_and_sizes(tmp_path):
    raw = write_idx(tmp_path / "ok", _images(2)).read_bytes()
    msg = _corrupt(tmp_path, "train-images-idx3-ubyte", raw[:-1])
    assert "truncated" in msg and "(2, 28, 28)" in msg and str(len(raw) - 1) in msg


def test_trailing_bytes_are_reported(tmp_path):
    raw = write_idx(tmp_path / "ok", np.arange(4, dtype=np.uint8)).read_bytes()
    assert "trailing" in _corrupt(tmp_path, "labels", raw + b"\x00")


def test_truncated_header_is_reported(tmp_path):
    assert "header" in _corrupt(tmp_path, "short", bytes([0, 0, 8, 3, 0, 0]))
    assert "header" in _corrupt(tmp_path, "tiny", b"\x00\x00")


@pytest.mark.parametrize("head", [b"\x01\x00\x08\x01", b"\x00\x00\x07\x01", b"PK\x03\x04"])
def test_wrong_magic_is_reported(tmp_path, head):
    msg = _corrupt(tmp_path, "not-idx", head + b"\x00\x00\x00\x01\x05")
    assert "not an IDX file" in msg and head.hex() in msg


def test_zero_dimensions_is_reported(tmp_path):
    assert "0 dimensions" in _corrupt(tmp_path, "zero-d", b"\x00\x00\x08\x00")


def test_truncated_gzip_is_reported(tmp_path):
    raw = gzip.compress(write_idx(tmp_path / "ok", _images(4)).read_bytes())
    assert "gzip" in _corrupt(tmp_path, "t10k-images-idx3-ubyte.gz", raw[: len(raw) // 2])


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        read_idx(tmp_path / "absent")
