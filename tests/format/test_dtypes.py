"""The permanent table of element-type names and its NumPy dtypes."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

import bale
from bale.format.dtypes import DTYPES_BY_NAME, dtype_from_name, dtype_name

NUMPY_NAMES = [
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
]
# Present in every ml_dtypes release bale supports (>= 0.3).
ML_NAMES = ["bfloat16", "float8_e4m3fn", "float8_e4m3b11fnuz", "float8_e5m2"]


def test_table_holds_every_numpy_numeric_type_and_the_ml_types() -> None:
    for name in NUMPY_NAMES + ML_NAMES:
        assert name in DTYPES_BY_NAME


def test_table_names_are_in_a_fixed_order() -> None:
    # The names are part of the format; the numpy ones come first, in this order.
    assert list(DTYPES_BY_NAME)[: len(NUMPY_NAMES)] == NUMPY_NAMES


@pytest.mark.parametrize("name", NUMPY_NAMES)
def test_numpy_name_maps_to_the_little_endian_numpy_dtype(name: str) -> None:
    dt = dtype_from_name(name)
    assert dt == np.dtype(name)
    assert dt.byteorder in "<|="  # little-endian or single byte
    if dt.itemsize > 1:
        assert dt.str.startswith("<")


@pytest.mark.parametrize("name", ML_NAMES)
def test_ml_name_maps_to_the_ml_dtypes_type(name: str) -> None:
    dt = dtype_from_name(name)
    assert dt == np.dtype(getattr(ml_dtypes, name))
    assert dt.itemsize == (2 if name == "bfloat16" else 1)


@pytest.mark.parametrize("name", list(DTYPES_BY_NAME))
def test_every_name_round_trips(name: str) -> None:
    dt = dtype_from_name(name)
    assert dtype_name(dt) == name
    assert dtype_name(dt.type) == name
    column = bale.Array(name)
    assert column.dtype == name
    assert column.numpy_dtype == dt


def test_names_are_distinct_dtypes() -> None:
    # Two names sharing a dtype would make dtype_name ambiguous (float8 variants in particular).
    dtypes = list(DTYPES_BY_NAME.values())
    for i, a in enumerate(dtypes):
        for b in dtypes[i + 1 :]:
            assert a != b


@pytest.mark.parametrize(
    ("given", "name"),
    [
        (np.float32, "float32"),
        ("f4", "float32"),
        ("<f4", "float32"),
        (">f4", "float32"),
        ("=f8", "float64"),
        (">i8", "int64"),
        (">u2", "uint16"),
        (">c16", "complex128"),
        (">c8", "complex64"),
        (">f2", "float16"),
        ("?", "bool"),
        (bool, "bool"),
        (np.dtype(">i4"), "int32"),
        (ml_dtypes.bfloat16, "bfloat16"),
        (np.dtype(ml_dtypes.float8_e4m3fn), "float8_e4m3fn"),
    ],
)
def test_aliases_and_byte_orders_are_canonicalised(given: object, name: str) -> None:
    assert dtype_name(given) == name  # type: ignore[arg-type]
    assert bale.Array(given).dtype == name  # type: ignore[arg-type]


def test_big_endian_array_column_stores_little_endian() -> None:
    column = bale.Array(">f8", (2,))
    assert column.dtype == "float64"
    assert column.numpy_dtype.str == "<f8"
    assert column == bale.Array("float64", (2,))


@pytest.mark.parametrize(
    "bad",
    [
        object,
        "O",
        "datetime64[ns]",
        "M8[s]",
        "timedelta64[s]",
        "U5",
        str,
        "S3",
        bytes,
        "V8",
        np.dtype([("a", "<i4"), ("b", "<f4")]),
        np.dtype(("<i4", (2,))),
    ],
)
def test_unstorable_dtypes_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="cannot be stored"):
        dtype_name(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        bale.Array(bad)  # type: ignore[arg-type]


def test_unknown_format_name_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        dtype_from_name("float128")
    with pytest.raises(KeyError):
        dtype_from_name("<f4")  # the table holds canonical names only


def test_misspelt_dtype_name_raises_value_error() -> None:
    with pytest.raises(ValueError):
        bale.Array("flaot32")


@pytest.mark.parametrize("name", ML_NAMES)
def test_ml_names_given_as_strings_are_understood(name: str) -> None:
    assert dtype_name(name) == name
    assert bale.Array(name).numpy_dtype == dtype_from_name(name)


def test_table_is_built_once_and_other_attributes_do_not_exist() -> None:
    import bale.format.dtypes as dtypes

    assert dtypes.DTYPES_BY_NAME is DTYPES_BY_NAME
    with pytest.raises(AttributeError, match="NO_SUCH_TABLE"):
        dtypes.NO_SUCH_TABLE  # noqa: B018


@pytest.mark.parametrize(
    "call",
    [
        'dtype_name("flaot32")',
        "dtype_name(object)",
        'dtype_name("V8")',
        'dtype_from_name("float128")',
        'dtype_from_name("bfloat17")',
    ],
)
def test_errors_are_the_same_before_ml_dtypes_is_loaded(call: str) -> None:
    # ml_dtypes is imported lazily; a fresh interpreter must say what this one (which has it) says.
    code = (
        "from bale.format.dtypes import dtype_from_name, dtype_name\n"
        f"try:\n    {call}\nexcept (KeyError, ValueError) as exc:\n"
        "    print(type(exc).__name__, exc)"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    namespace: dict[str, object] = {}
    with contextlib.redirect_stdout(io.StringIO()) as here:
        exec(code, namespace)
    assert fresh == here.getvalue().strip()
    assert fresh.startswith(("KeyError", "ValueError"))
