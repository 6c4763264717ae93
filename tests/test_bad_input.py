"""Bad batches: each raises SchemaError naming the column, what was expected and what came, and
leaves the file exactly as it was (no row of the bad batch is written)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale

SCHEMA = {
    "x": bale.Array("float32", (3,)),
    "n": bale.Array("int8"),
    "b": bale.Bytes(),
    "s": bale.String(),
}


def good_batch(start: int, rows: int) -> dict[str, Any]:
    ids = np.arange(start, start + rows)
    return {
        "x": np.stack([ids, ids + 0.5, -ids]).T.astype(np.float32),
        "n": (ids % 100).astype(np.int8),
        "b": [f"b{i}".encode() for i in ids],
        "s": [f"s{i} ✓" for i in ids],
    }


def expected_rows(rows: int) -> dict[str, Any]:
    return good_batch(0, rows)


def with_column(rows: int, **replace: Any) -> dict[str, Any]:
    """A good batch (starting after the 5 good rows) with some columns replaced."""
    return {**good_batch(5, rows), **replace}


# (batch, column named by the error, fragments the message must contain, rows of the error)
BAD_BATCHES: dict[str, tuple[dict[str, Any], str | None, list[str], tuple[int, int] | None]] = {
    "wrong_dtype": (
        with_column(3, x=np.zeros((3, 3), np.float64)),
        "x",
        ["wrong dtype", "float32[3]", "got float64"],
        (5, 8),
    ),
    "wrong_dtype_int": (
        with_column(3, n=np.zeros(3, np.int64)),
        "n",
        ["wrong dtype", "int8", "got int64"],
        (5, 8),
    ),
    "unsafe_unsigned_to_signed": (
        with_column(3, n=np.zeros(3, np.uint8)),
        "n",
        ["int8", "got uint8"],
        (5, 8),
    ),
    "wrong_row_shape": (
        with_column(3, x=np.zeros((3, 4), np.float32)),
        "x",
        ["wrong shape", "float32[3]", "got [4]"],
        (5, 8),
    ),
    "wrong_row_rank": (
        with_column(3, x=np.zeros((3, 3, 1), np.float32)),
        "x",
        ["wrong shape", "float32[3]", "got [3, 1]"],
        (5, 8),
    ),
    "scalar_rows_for_vector_column": (
        with_column(3, x=np.zeros(3, np.float32)),
        "x",
        ["wrong shape", "float32[3]", "got []"],
        (5, 8),
    ),
    "ragged_list": (
        with_column(2, x=[[1.0, 2.0, 3.0], [1.0, 2.0]]),
        "x",
        ["cannot convert", "float32[3]"],
        (5, 7),
    ),
    "different_lengths": (
        with_column(3, s=["only", "two"]),
        None,
        ["different numbers of rows", "'s': 2", "'x': 3"],
        (5, 8),
    ),
    "missing_column": (
        {k: v for k, v in good_batch(5, 2).items() if k != "s"},
        None,
        ["missing columns ['s']", "['x', 'n', 'b', 's']"],
        None,
    ),
    "extra_column": (
        with_column(2, extra=[1, 2]),
        None,
        ["unknown columns ['extra']"],
        None,
    ),
    "str_in_bytes_column": (
        with_column(3, b=[b"ok", "not bytes", b"ok"]),
        "b",
        ["expected bytes", "got str"],
        (6, 7),
    ),
    "int_in_bytes_column": (
        with_column(2, b=[b"ok", 5]),
        "b",
        ["expected bytes", "got int"],
        (6, 7),
    ),
    "bytes_in_string_column": (
        with_column(3, s=["ok", "ok", b"bytes"]),
        "s",
        ["expected str", "got bytes"],
        (7, 8),
    ),
    "none_in_string_column": (
        with_column(2, s=[None, "ok"]),
        "s",
        ["expected str", "got NoneType"],
        (5, 6),
    ),
    "int_overflow": (
        with_column(3, n=[1, 1000, 2]),
        "n",
        ["int8", "1000"],
        (6, 7),
    ),
    "negative_overflow": (
        with_column(2, n=[-129, 0]),
        "n",
        ["int8", "-129"],
        (5, 6),
    ),
    "fraction_into_int": (
        with_column(2, n=[1, 2.5]),
        "n",
        ["do not fit int8", "got float64"],
        (5, 7),
    ),
    "text_into_array": (
        with_column(2, n=["a", "b"]),
        "n",
        ["int8", "got str 'a'", "never parsed"],
        (5, 6),
    ),
    # Values numpy would convert silently (issue 14, item 7): each is refused, naming the row.
    "digit_text_into_int": (
        with_column(2, n=[1, "7"]),
        "n",
        ["int8", "got str '7'"],
        (6, 7),
    ),
    "none_in_float_rows": (
        with_column(2, x=[[1.0, 2.0, 3.0], [1.0, None, 3.0]]),
        "x",
        ["float32[3]", "got None", "float('nan')"],
        (6, 7),
    ),
    "float_overflow": (
        with_column(3, x=[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1e39, 0.0]]),
        "x",
        ["overflows float32", "inf"],
        (7, 8),
    ),
    "int_beyond_64_bits_into_float": (
        with_column(1, x=[[1.0, 2.0, 10**40]]),
        "x",
        ["float32[3]", "got int 1000"],
        (5, 6),
    ),
    "int_beyond_64_bits": (
        with_column(2, n=[1, 2**70]),
        "n",
        ["int8", str(2**70)],
        (6, 7),
    ),
    "complex_into_float": (
        with_column(1, x=[[1.0, 2j, 3.0]]),
        "x",
        ["float32[3]", "got complex"],
        (5, 6),
    ),
    "not_a_sequence": (
        with_column(1, n=7),
        "n",
        ["expected an array or list of rows", "got int"],
        None,
    ),
    "zero_d_array": (
        with_column(1, n=np.array(3, np.int8)),
        "n",
        ["0-d"],
        None,
    ),
}


def _write_good_rows(path: Path, **options: Any) -> bale.Writer:
    writer = bale.Writer(path, SCHEMA, **options)
    writer.write(good_batch(0, 5))
    return writer


def _assert_file_holds_the_good_rows(path: Path, rows: int) -> None:
    ds = bale.open(path)
    assert len(ds) == rows
    got, expected = ds.read(), expected_rows(rows)
    assert got["x"].tobytes() == expected["x"].tobytes()
    assert got["n"].tolist() == expected["n"].tolist()
    assert got["b"] == expected["b"]
    assert got["s"] == expected["s"]


@pytest.mark.parametrize("case", list(BAD_BATCHES))
@pytest.mark.parametrize("row_group_rows", [None, 3])
def test_bad_batch_is_refused_and_writes_nothing(
    tmp_path: Path, case: str, row_group_rows: int | None
) -> None:
    batch, column, fragments, rows = BAD_BATCHES[case]
    path = tmp_path / "bad.bale"
    # row_group_rows=3: one group of the good rows is on disk and two are buffered
    writer = _write_good_rows(path, row_group_rows=row_group_rows)
    with pytest.raises(bale.SchemaError) as info:
        writer.write(batch)
    error = info.value
    message = str(error)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert error.path == os.fspath(path)
    assert error.column == column
    if column is not None:
        assert f"column {column!r}" in message
    assert error.rows == rows
    assert writer.rows_written == 5
    writer.close()
    _assert_file_holds_the_good_rows(path, 5)


def test_writing_goes_on_after_a_bad_batch(tmp_path: Path) -> None:
    path = tmp_path / "bad.bale"
    writer = _write_good_rows(path, row_group_rows=4)
    for batch, _, _, _ in BAD_BATCHES.values():
        with pytest.raises(bale.SchemaError):
            writer.write(batch)
    writer.write(good_batch(5, 6))
    assert writer.rows_written == 11
    writer.close()
    _assert_file_holds_the_good_rows(path, 11)
    assert bale.open(path).row_group_sizes == (4, 4, 3)


def test_bad_row_through_write_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.bale"
    writer = _write_good_rows(path)
    with pytest.raises(bale.SchemaError) as info:
        writer.write_row({"x": np.zeros(4, np.float32), "n": np.int8(1), "b": b"", "s": ""})
    assert info.value.column == "x"
    assert info.value.rows == (5, 6)
    writer.close()
    _assert_file_holds_the_good_rows(path, 5)


def test_bad_first_batch_writes_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "bad.bale"
    writer = bale.Writer(path)
    with pytest.raises(bale.SchemaError) as info:
        writer.write({"x": np.zeros((3, 2)), "y": np.zeros(2)})
    assert info.value.rows == (0, 3)
    assert writer.rows_written == 0
    writer.abort()


@pytest.mark.parametrize(
    ("batch", "column"),
    [
        ({"when": np.array(["2020-01-01"], dtype="datetime64[D]")}, "when"),
        ({"obj": np.array([{"a": 1}], dtype=object)}, "obj"),
        ({"mixed": [b"bytes", "str"]}, "mixed"),
        ({"empty": []}, "empty"),
        ({"scalar": 5}, "scalar"),
        ({"zero_d": np.zeros(())}, "zero_d"),
    ],
)
def test_first_batch_whose_type_cannot_be_inferred(
    tmp_path: Path, batch: dict[str, Any], column: str
) -> None:
    path = tmp_path / "bad.bale"
    writer = bale.Writer(path)
    with pytest.raises(bale.SchemaError) as info:
        writer.write(batch)
    assert info.value.column == column
    assert info.value.path == os.fspath(path)
    assert column in str(info.value)
    assert writer.rows_written == 0
    writer.abort()


def test_bad_batch_while_appending_leaves_the_file_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "bad.bale"
    writer = _write_good_rows(path)
    writer.close()
    before = path.read_bytes()
    with bale.Writer(path, mode="a", row_group_rows=2) as writer:
        with pytest.raises(bale.SchemaError) as info:
            writer.write(with_column(3, x=np.zeros((3, 3), np.float64)))
        assert info.value.column == "x"
        assert info.value.rows == (5, 8)
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "metadata",
    [
        {"a": object()},
        {"a": float("nan")},
        {"a": float("inf")},
        {"a": {1, 2}},
        {"a": b"bytes"},
        {"a": np.float32(1.0)},
    ],
)
def test_non_json_metadata_is_refused_before_anything_is_created(
    tmp_path: Path, metadata: dict[str, Any]
) -> None:
    path = tmp_path / "meta.bale"
    with pytest.raises(bale.SchemaError, match="JSON") as info:
        bale.Writer(path, SCHEMA, metadata=metadata)
    assert info.value.path == os.fspath(path)
    assert not path.exists()
    assert not (tmp_path / "meta.bale.partial").exists()


def test_non_json_metadata_is_refused_when_appending(tmp_path: Path) -> None:
    path = tmp_path / "meta.bale"
    _write_good_rows(path).close()
    before = path.read_bytes()
    with pytest.raises(bale.SchemaError, match="JSON"):
        bale.Writer(path, mode="a", metadata={"a": object()})
    assert path.read_bytes() == before


def test_schema_error_attributes_and_pickling(tmp_path: Path) -> None:
    import pickle

    path = tmp_path / "bad.bale"
    writer = _write_good_rows(path)
    with pytest.raises(bale.SchemaError) as info:
        writer.write(with_column(3, x=np.zeros((3, 3), np.float64)))
    writer.close()
    error = info.value
    assert isinstance(error, ValueError)
    assert isinstance(error, bale.BaleError)
    assert str(error).startswith(f"file {os.fspath(path)!r}, column 'x', rows 5..7: ")
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is bale.SchemaError
    assert (clone.path, clone.column, clone.rows) == (error.path, error.column, error.rows)
    assert str(clone) == str(error)


def test_bare_bytes_for_a_bytes_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.bale"
    writer = _write_good_rows(path)
    with pytest.raises(bale.SchemaError) as info:
        writer.write(with_column(3, b=b"abc"))
    assert info.value.column == "b"
    writer.close()
    _assert_file_holds_the_good_rows(path, 5)


def test_bare_str_for_a_string_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.bale"
    writer = _write_good_rows(path)
    try:
        with pytest.raises(bale.SchemaError):
            writer.write(with_column(3, s="abc"))
    finally:
        writer.abort()


def test_metadata_made_non_json_after_opening(tmp_path: Path) -> None:
    writer = _write_good_rows(tmp_path / "meta.bale")
    writer.metadata["bad"] = object()
    with pytest.raises(bale.SchemaError, match="JSON"):
        writer.close()
    # The message promises nothing is lost: fixing the metadata and closing again keeps it.
    del writer.metadata["bad"]
    writer.close()
    _assert_file_holds_the_good_rows(tmp_path / "meta.bale", 5)


@pytest.mark.parametrize(
    ("dtype", "rows", "stored"),
    [
        ("float32", [1.0, float("nan"), float("inf"), -float("inf"), 0.1], None),
        ("float16", [65504.0, -65504], None),
        ("int64", [1, True, -(2**63)], [1, 1, -(2**63)]),
        ("uint64", [2**64 - 1], None),
        ("bool", [0, 1, True], [False, True, True]),
    ],
)
def test_python_values_that_fit_are_kept(
    tmp_path: Path, dtype: str, rows: list[Any], stored: list[Any] | None
) -> None:
    """The checks refuse silent changes only: NaN and inf given as such, the largest finite
    values of a dtype, bools as integers, are all stored as given."""
    path = tmp_path / "ok.bale"
    with bale.Writer(path, {"v": bale.Array(dtype)}) as writer:
        writer.write({"v": rows})
    got = bale.open(path).read()["v"]
    expected = np.asarray(rows if stored is None else stored).astype(dtype)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, expected)


def test_none_in_the_first_batch_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.bale"
    writer = bale.Writer(path)
    with pytest.raises(bale.SchemaError) as info:
        writer.write({"x": [1.0, 2.0, None]})
    assert info.value.column == "x"
    assert info.value.rows == (2, 3)
    assert "got None" in str(info.value)
    writer.abort()


@pytest.mark.parametrize(
    ("dtype", "value"), [("float16", 70000), ("float16", 1e6), ("bfloat16", 1e39)]
)
def test_finite_value_that_would_become_inf_is_refused(
    tmp_path: Path, dtype: str, value: float
) -> None:
    path = tmp_path / "bad.bale"
    writer = bale.Writer(path, {"v": bale.Array(dtype)})
    with pytest.raises(bale.SchemaError) as info:
        writer.write({"v": [1.0, value]})
    assert info.value.rows == (1, 2)
    assert f"overflows {dtype}" in str(info.value)
    writer.abort()


# -- column names (issue 14, item 8) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("batch", "fragment", "column"),
    [
        ({"ok": [1], "\ud800": [1]}, "not valid Unicode text", "\ud800"),
        ({1: [1]}, "column names must be str, got int 1", None),
        ({"": [1]}, "non-empty", None),
    ],
)
def test_bad_column_name_in_the_first_batch(
    tmp_path: Path, batch: dict[Any, Any], fragment: str, column: str | None
) -> None:
    path = tmp_path / "names.bale"
    writer = bale.Writer(path)
    with pytest.raises(bale.SchemaError) as info:
        writer.write(batch)
    assert fragment in str(info.value)
    assert info.value.path == os.fspath(path)
    assert info.value.column == column
    assert writer.schema is None  # nothing was fixed: the next good batch starts the file
    writer.write({"a": [1, 2]})
    writer.close()
    assert bale.open(path).read()["a"].tolist() == [1, 2]


def test_bad_column_name_in_a_given_schema(tmp_path: Path) -> None:
    path = tmp_path / "names.bale"
    writer = bale.Writer(path, {"\udc80x": bale.Array("int8")})
    with pytest.raises(bale.SchemaError, match="not valid Unicode text"):
        writer.write({"\udc80x": [1]})
    writer.abort()


def test_an_int_key_is_never_stored_as_text(tmp_path: Path) -> None:
    """Before: {1: ...} was stored as column "1", and appending {1: ...} was then refused."""
    path = tmp_path / "names.bale"
    with pytest.raises(bale.SchemaError, match="got int 1"):
        bale.write(path, {1: np.arange(3)})
    bale.write(path, {"1": np.arange(3)})
    with bale.Writer(path, mode="a") as writer:
        writer.write({"1": np.arange(3, 5)})
    assert bale.open(path).read()["1"].tolist() == [0, 1, 2, 3, 4]


def test_an_empty_first_batch_is_refused_and_fixes_nothing(tmp_path: Path) -> None:
    """Before: {} made a file with no columns that refused every later batch."""
    path = tmp_path / "names.bale"
    writer = bale.Writer(path)
    with pytest.raises(bale.SchemaError, match="the first batch has no columns") as info:
        writer.write({})
    assert info.value.path == os.fspath(path)
    assert writer.schema is None
    writer.write({"x": [1.5, 2.5]})
    writer.close()
    ds = bale.open(path)
    assert ds.schema.names == ["x"]
    assert ds.read()["x"].tolist() == [1.5, 2.5]
