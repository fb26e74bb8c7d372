"""The numpy-only unpickler: arrays come back exactly, anything that would run code is refused."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from ltrans.data import safe_pickle


def test_unpickler_rebuilds_numpy_arrays():
    for array in (np.arange(12, dtype=np.uint8).reshape(3, 4), np.array([1.5, -2.0]), np.arange(3)):
        for protocol in range(3, pickle.HIGHEST_PROTOCOL + 1):  # the packaged files use 4
            back = safe_pickle.load_numpy_pickle(pickle.dumps(array, protocol=protocol))
            assert back.dtype == array.dtype and np.array_equal(back, array)


@pytest.mark.parametrize(
    "payload",
    [
        b"cos\nsystem\n(S'echo pwned'\ntR.",  # protocol 0: os.system("echo pwned")
        b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c\x031+1\x85R.",  # protocol 4: eval("1+1")
    ],
    ids=["os.system", "builtins.eval"],
)
def test_unpickler_refuses_anything_but_numpy(payload):
    with pytest.raises(pickle.UnpicklingError, match="refusing to load (os.system|builtins.eval)"):
        safe_pickle.load_numpy_pickle(payload)


def test_unpickler_refuses_object_arrays():
    with pytest.raises(pickle.UnpicklingError, match="numpy array of numbers"):
        safe_pickle.load_numpy_pickle(pickle.dumps(np.array([1, "a"], dtype=object)))
