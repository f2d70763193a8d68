"""A restricted unpickler for pickled NumPy arrays from third-party data files.

Unpickling runs arbitrary code named by the file. :class:`NumpyArrayUnpickler` resolves only the
globals that rebuild a plain ``numpy.ndarray`` and refuses everything else, so a tampered file
cannot execute code. Callers should still verify a file's sha256 before unpickling it.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

# ndarray.__reduce__ names numpy's reconstruct helper; fetching it this way works on NumPy 1 and 2.
_RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]

_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class NumpyArrayUnpickler(pickle.Unpickler):
    """Unpickler that can only construct NumPy arrays and dtypes."""

    def find_class(self, module: str, name: str) -> Any:
        """Resolve ``module.name`` only if it is an array-reconstruction global."""
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to unpickle global {module}.{name}: only NumPy arrays are allowed"
            ) from None


def load_array(data: bytes) -> np.ndarray:
    """Unpickle ``data`` with :class:`NumpyArrayUnpickler`; the result must be an ndarray.

    Raises
    ------
    pickle.UnpicklingError
        If the pickle names any other global or does not hold an ndarray.
    """
    obj = NumpyArrayUnpickler(io.BytesIO(data)).load()
    if not isinstance(obj, np.ndarray) or obj.dtype == object:
        raise pickle.UnpicklingError(f"expected a numeric numpy array, got {type(obj).__name__}")
    return obj
