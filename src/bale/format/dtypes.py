"""The permanent names of element types in a bale file, and their NumPy dtypes (little-endian)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import numpy as np

# Names are part of the format: never rename or reuse one. All multi-byte types are stored
# little-endian. ml_dtypes' types (bfloat16, float8_*) are named as ml_dtypes names them.
_NUMPY_NAMES: Final[tuple[str, ...]] = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
)
_ML_NAMES: Final[tuple[str, ...]] = (
    "bfloat16",
    "float8_e4m3fn",
    "float8_e4m3fnuz",
    "float8_e4m3b11fnuz",
    "float8_e5m2",
    "float8_e5m2fnuz",
)

_NUMPY_DTYPES: Final[dict[str, np.dtype[np.generic]]] = {
    n: np.dtype(n).newbyteorder("<") for n in _NUMPY_NAMES
}

if TYPE_CHECKING:
    # Every name, NumPy's then ml_dtypes'. Built on first access (module __getattr__ below).
    DTYPES_BY_NAME: Mapping[str, np.dtype[np.generic]]


@functools.cache
def _all_dtypes() -> Mapping[str, np.dtype[np.generic]]:
    """Every name -> dtype. Imports ml_dtypes (half a second), so it is called only when a name,
    dtype or error message needs the ml_dtypes types, never by ``import bale``."""
    try:
        import ml_dtypes
    except ImportError as exc:
        raise ImportError(
            f"the dtypes {', '.join(_ML_NAMES)} need ml_dtypes, a dependency of bale that is not "
            "installed: pip install ml-dtypes"
        ) from exc
    table = dict(_NUMPY_DTYPES)
    for name in _ML_NAMES:
        scalar_type = getattr(ml_dtypes, name, None)
        if scalar_type is not None:  # older ml_dtypes releases lack some float8 variants
            table[name] = np.dtype(scalar_type)
    return table


def __getattr__(name: str) -> object:
    if name == "DTYPES_BY_NAME":
        return _all_dtypes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def dtype_from_name(name: str) -> np.dtype[np.generic]:
    """The NumPy dtype (little-endian) for a format dtype name; KeyError if unknown."""
    if name in _NUMPY_DTYPES:
        return _NUMPY_DTYPES[name]
    if name in _ML_NAMES:
        return _all_dtypes()[name]
    raise KeyError(name)


def _matches(dt: np.dtype[np.generic], known: np.dtype[np.generic]) -> bool:
    return dt == known or (dt.kind in "biufc" and dt.newbyteorder("<") == known)


def dtype_name(dtype: np.dtype[np.generic] | type | str) -> str:
    """The format name of a NumPy dtype, whatever its byte order; ValueError if not storable."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        # NumPy understands a name like "bfloat16" only once ml_dtypes has registered its types.
        _all_dtypes()
        try:
            dt = np.dtype(dtype)
        except TypeError as exc:
            raise ValueError(
                f"unknown dtype {dtype!r}; expected one of {', '.join(_all_dtypes())}"
            ) from exc
    for name, known in _NUMPY_DTYPES.items():
        if _matches(dt, known):
            return name
    # Not a NumPy type: an ml_dtypes one (then ml_dtypes is loaded already), or not storable.
    for name, known in _all_dtypes().items():
        if _matches(dt, known):
            return name
    raise ValueError(
        f"dtype {dt!r} cannot be stored in a bale array column; expected one of "
        f"{', '.join(_all_dtypes())} (use a bytes or string column for other data)"
    )
