"""Reading numpy arrays from pickles without running code from the file.

A pickle can name any importable callable and have it called while loading; ``NumpyOnlyUnpickler``
resolves only the few numpy names that rebuild a plain array, so a tampered file fails to load instead
of executing (https://docs.python.org/3/library/pickle.html#restricting-globals). The animals domain
reads animal-mnist's gzip-pickled arrays with it.
"""

from __future__ import annotations

import io
import pickle

import numpy as np


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild plain numpy arrays and nothing else: no code runs from the file."""

    @staticmethod
    def _allowed() -> dict[tuple[str, str], object]:
        core = getattr(np, "_core", None) or np.core  # numpy 2 moved numpy.core to numpy._core
        reconstruct = core.multiarray._reconstruct
        return {
            ("numpy.core.multiarray", "_reconstruct"): reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): reconstruct,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            # protocol 5 pickles rebuild from a raw buffer instead of _reconstruct + __setstate__
            ("numpy.core.numeric", "_frombuffer"): core.numeric._frombuffer,
            ("numpy._core.numeric", "_frombuffer"): core.numeric._frombuffer,
        }

    def find_class(self, module: str, name: str) -> object:
        found = self._allowed().get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        return found


def load_numpy_pickle(data: bytes) -> np.ndarray:
    """The numpy array pickled in ``data``; any other object, or an object array, is refused."""
    obj = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    if not isinstance(obj, np.ndarray) or obj.dtype.hasobject:
        raise pickle.UnpicklingError(f"expected a numpy array of numbers, got {type(obj).__name__}")
    return obj
