"""The single-file layer: atomic writes leave the old file or the new one, arrays round-trip without
pickle, file hashes stream."""

from __future__ import annotations

import hashlib
import json
import os
import stat

import numpy as np
import pytest

from ltrans.files import (
    atomic_open,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    file_sha256,
    load_arrays,
    save_arrays,
    umask,
    writable_dir,
)


def test_arrays_round_trip_exact_bytes(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"mu": rng.standard_normal((50, 8)).astype(np.float32), "y": rng.integers(0, 10, 50)}
    save_arrays(tmp_path / "latents.npz", **arrays)
    back = load_arrays(tmp_path / "latents.npz")
    assert back.keys() == arrays.keys()
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and back[k].tobytes() == v.tobytes()
    assert back["y"].dtype == np.int64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latents.npz"]


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(TypeError, match="object"):
        save_arrays(tmp_path / "x.npz", bad=np.array([{"a": 1}, None], dtype=object))
    assert not list(tmp_path.iterdir())


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old" * 1000)
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and list(tmp_path.iterdir()) == [target]


def test_failed_atomic_write_keeps_the_old_content(tmp_path):
    target = tmp_path / "row.json"
    atomic_write_json(target, {"b": 1, "a": [1, 2]})
    assert target.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    with pytest.raises(TypeError):
        atomic_write_json(target, {"a": object()})

    with pytest.raises(OSError, match="disk full"), atomic_open(target) as f:
        f.write(b'{"half": ')  # a writer that dies midway, like torch.save on a full disk
        raise OSError("disk full")
    assert json.loads(target.read_text()) == {"a": [1, 2], "b": 1}
    assert list(tmp_path.iterdir()) == [target]


def test_file_sha256_streams_across_chunks(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (1 << 20) * 2 + 17, dtype=np.uint8).tobytes()  # 3 chunks
    (tmp_path / "big.bin").write_bytes(data)
    assert file_sha256(tmp_path / "big.bin") == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_written_files_get_the_mode_the_umask_allows(tmp_path, mask):
    # mkstemp alone gives 0600: a shared cache or report would be unreadable by the group.
    old = os.umask(mask)
    try:
        assert umask() == mask and os.umask(mask) == mask  # reading it leaves it as it was
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        save_arrays(tmp_path / "b.npz", y=np.arange(3))
        (tmp_path / "c.json").write_text("{}")
        atomic_write_json(tmp_path / "c.json", {})  # replacing a file gives the new file's mode too
    finally:
        os.umask(old)
    for name in ("a.bin", "b.npz", "c.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask, name


def test_writable_dir_creates_the_folder_and_refuses_a_path_under_a_file(tmp_path):
    assert writable_dir(tmp_path / "a" / "b").is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the probe leaves nothing behind
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        writable_dir(tmp_path / "file" / "out")


def test_writable_dir_names_the_file_in_the_way_as_a_file_not_a_folder(tmp_path):
    (tmp_path / "file").write_text("mine")
    for path in (tmp_path / "file", tmp_path / "file" / "out"):
        with pytest.raises(NotADirectoryError) as err:
            writable_dir(path)
        assert (err.value.filename, err.value.strerror) == (str(tmp_path / "file"), "is a file, not a folder")
    assert (tmp_path / "file").read_text() == "mine"


def test_a_failed_atomic_write_names_the_target_not_its_temp_file(tmp_path):
    target = tmp_path / "missing" / "r.html"
    with pytest.raises(FileNotFoundError) as err:
        atomic_write_text(target, "x")
    assert err.value.filename == str(target)  # not missing/.r.html.<random>.tmp, which the user never asked for
