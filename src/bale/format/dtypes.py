"""The permanent names of element types in a bale file, and their NumPy dtypes (little-endian)."""

from __future__ import annotations

from typing import Final

import ml_dtypes
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


def _build_table() -> dict[str, np.dtype[np.generic]]:
    table: dict[str, np.dtype[np.generic]] = {
        n: np.dtype(n).newbyteorder("<") for n in _NUMPY_NAMES
    }
    for name in _ML_NAMES:
        scalar_type = getattr(ml_dtypes, name, None)
        if scalar_type is not None:  # older ml_dtypes releases lack some float8 variants
            table[name] = np.dtype(scalar_type)
    return table


DTYPES_BY_NAME: Final[dict[str, np.dtype[np.generic]]] = _build_table()


def dtype_from_name(name: str) -> np.dtype[np.generic]:
    """The NumPy dtype (little-endian) for a format dtype name; KeyError if unknown."""
    return DTYPES_BY_NAME[name]


def dtype_name(dtype: np.dtype[np.generic] | type | str) -> str:
    """The format name of a NumPy dtype, whatever its byte order; ValueError if not storable."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(
            f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES_BY_NAME)}"
        ) from exc
    for name, known in DTYPES_BY_NAME.items():
        if dt == known or (dt.kind in "biufc" and dt.newbyteorder("<") == known):
            return name
    raise ValueError(
        f"dtype {dt!r} cannot be stored in a bale array column; expected one of "
        f"{', '.join(DTYPES_BY_NAME)} (use a bytes or string column for other data)"
    )
