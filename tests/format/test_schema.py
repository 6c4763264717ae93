"""Column types, columns and schemas, and their JSON form in the format."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import bale
from bale.format.schema import Array, Bytes, Column, Schema, String, Unsupported

ZSTD = {"id": "zstd", "level": 3}


def _json_round_trip(obj: Any) -> Any:
    """Through real JSON text, as the file stores it."""
    return json.loads(json.dumps(obj))


# -- column types -------------------------------------------------------------------------------


def test_public_names_are_the_schema_classes() -> None:
    assert bale.Array is Array
    assert bale.Bytes is Bytes
    assert bale.String is String
    assert bale.Schema is Schema


def test_array_defaults_to_a_scalar() -> None:
    column = Array("int64")
    assert column.shape == ()
    assert column.kind == "array"
    assert column.row_nbytes == 8


@pytest.mark.parametrize(
    ("dtype", "shape", "nbytes"),
    [
        ("uint8", (64, 64, 3), 12288),
        ("float32", (3,), 12),
        ("complex128", (2, 2), 64),
        ("bfloat16", (5,), 10),
        ("float8_e5m2", (7,), 7),
        ("bool", (4,), 4),
        ("float64", (0,), 0),
        ("int16", (3, 0, 2), 0),
    ],
)
def test_array_row_nbytes(dtype: str, shape: tuple[int, ...], nbytes: int) -> None:
    assert Array(dtype, shape).row_nbytes == nbytes


def test_array_shape_is_canonicalised_to_a_tuple_of_ints() -> None:
    column = Array("float32", [np.int64(3), 2])  # type: ignore[arg-type]
    assert column.shape == (3, 2)
    assert all(type(d) is int for d in column.shape)
    assert column == Array("<f4", (3, 2))
    assert hash(column) == hash(Array("float32", (3, 2)))
    assert column != Array("float32", (2, 3))
    assert column != Array("float64", (3, 2))


def test_array_rejects_a_negative_dimension() -> None:
    with pytest.raises(bale.SchemaError, match="negative"):
        Array("float32", (3, -1))


def test_bytes_and_string_kinds() -> None:
    assert Bytes().kind == "bytes"
    assert String().kind == "string"
    assert Bytes() == Bytes()
    assert Bytes() != String()


def test_column_types_are_immutable() -> None:
    column = Array("float32", (3,))
    with pytest.raises(AttributeError):
        column.dtype = "float64"  # type: ignore[misc]


# -- columns ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "column_type",
    [
        Array("float32", (3,)),
        Array("int8"),
        Array("bfloat16", (2, 0, 4)),
        Array("complex64", (1,)),
        Bytes(),
        String(),
    ],
)
def test_column_json_round_trip(column_type: Array | Bytes | String) -> None:
    column = Column("feature", column_type, {"id": "lz4", "acceleration": 1})
    data = _json_round_trip(column.to_json())
    assert data["name"] == "feature"
    assert data["kind"] == column_type.kind
    assert data["codec"] == {"id": "lz4", "acceleration": 1}
    assert Column.from_json(data) == column


def test_array_column_json_form() -> None:
    data = Column("x", Array(">f4", (3, 2)), ZSTD).to_json()
    assert data == {
        "name": "x",
        "kind": "array",
        "codec": ZSTD,
        "dtype": "float32",
        "shape": [3, 2],
    }


def test_bytes_and_string_column_json_form_has_no_dtype() -> None:
    assert Column("b", Bytes(), ZSTD).to_json() == {"name": "b", "kind": "bytes", "codec": ZSTD}
    assert Column("s", String(), ZSTD).to_json() == {"name": "s", "kind": "string", "codec": ZSTD}


def test_column_json_ignores_unknown_fields() -> None:
    data = {**Column("x", Array("int32", (2,)), ZSTD).to_json(), "added_in_1_1": {"a": 1}}
    assert Column.from_json(data) == Column("x", Array("int32", (2,)), ZSTD)


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "x", "kind": 5, "codec": ZSTD},
        {"name": "x", "codec": ZSTD},
        {"kind": "bytes", "codec": ZSTD},
        {"name": "x", "kind": "bytes"},
        {"name": "x", "kind": "array", "codec": ZSTD, "shape": [3]},
        {"name": "x", "kind": "array", "codec": ZSTD, "dtype": "float32"},
        {"name": "x", "kind": "array", "codec": ZSTD, "dtype": 7, "shape": []},
        {"name": "x", "kind": "array", "codec": ZSTD, "dtype": "float32", "shape": [2.0]},
        {"name": "x", "kind": "array", "codec": ZSTD, "dtype": "float32", "shape": [True]},
        {"name": "x", "kind": "array", "codec": ZSTD, "dtype": "float32", "shape": [1 << 63]},
        {"name": "x", "kind": "array", "codec": ZSTD, "dtype": "float64", "shape": [1 << 61]},
        {"name": 3, "kind": "bytes", "codec": ZSTD},
        {"name": "x", "kind": "array", "codec": ZSTD, "dtype": "float32", "shape": [-2]},
        {"name": "x", "kind": "array", "codec": ZSTD, "dtype": "float32", "shape": 3},
        {"name": "x", "kind": "bytes", "codec": "zstd"},
        ["name", "x"],
    ],
)
def test_invalid_column_json_raises_schema_error(bad: Any) -> None:
    with pytest.raises(bale.SchemaError):
        Column.from_json(bad)


@pytest.mark.parametrize(
    ("stored", "what"),
    [
        ({"name": "x", "kind": "tensor", "codec": ZSTD, "rank": 3}, "column kind 'tensor'"),
        (
            {"name": "x", "kind": "array", "codec": ZSTD, "dtype": "float4_e2m1", "shape": [2]},
            "dtype 'float4_e2m1'",
        ),
        (
            {"name": "x", "kind": "array", "codec": ZSTD, "dtype": "object", "shape": []},
            "dtype 'object'",
        ),
    ],
)
def test_unknown_kind_or_dtype_is_listed_as_unsupported(stored: dict[str, Any], what: str) -> None:
    """Format rule 2: a later minor version may add kinds and dtypes; the column is listed, and
    its description is written back unchanged."""
    column = Column.from_json(stored)
    assert isinstance(column.type, Unsupported)
    assert column.type.what == what
    assert column.to_json() == stored
    assert Schema((column,)).describe() == {"x": f"unsupported {what}"}


def test_unknown_column_keys_are_kept() -> None:
    stored = {**Column("x", Array("int32", (2,)), ZSTD).to_json(), "added_in_1_9": {"a": [1]}}
    assert Column.from_json(stored).to_json() == stored


# -- schemas ------------------------------------------------------------------------------------


def _schema() -> Schema:
    return Schema(
        (
            Column("image", Array("uint8", (4, 4, 3)), ZSTD),
            Column("label", Array("int64"), ZSTD),
            Column("jpeg", Bytes(), {"id": "none"}),
            Column("caption", String(), ZSTD),
        )
    )


def test_schema_accessors() -> None:
    schema = _schema()
    assert schema.names == ["image", "label", "jpeg", "caption"]
    assert len(schema) == 4
    assert [c.name for c in schema] == schema.names
    assert schema["label"].type == Array("int64")
    assert schema.index("jpeg") == 2
    assert "caption" in schema
    assert "missing" not in schema
    with pytest.raises(KeyError):
        schema["missing"]


def test_schema_describe() -> None:
    assert _schema().describe() == {
        "image": "uint8[4,4,3]",
        "label": "int64",
        "jpeg": "bytes",
        "caption": "string",
    }


def test_schema_json_round_trip_keeps_order_and_codecs() -> None:
    schema = _schema()
    data = _json_round_trip(schema.to_json())
    assert [c["name"] for c in data] == schema.names
    restored = Schema.from_json(data)
    assert restored == schema
    assert restored["jpeg"].codec == {"id": "none"}


def test_empty_schema_json_round_trip() -> None:
    assert Schema.from_json([]) == Schema(())


def test_duplicate_column_names_are_rejected() -> None:
    columns = (
        Column("a", Bytes(), ZSTD),
        Column("b", String(), ZSTD),
        Column("a", Array("int8"), ZSTD),
    )
    with pytest.raises(bale.SchemaError, match=r"duplicate column names \['a'\]"):
        Schema(columns)
    with pytest.raises(bale.SchemaError, match="duplicate"):
        Schema.from_json([c.to_json() for c in columns])


def test_empty_column_name_is_rejected() -> None:
    with pytest.raises(bale.SchemaError, match="non-empty"):
        Schema((Column("", Bytes(), ZSTD),))


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        (1, "column names must be str, got int 1"),
        (b"x", "column names must be str, got bytes"),
        (None, "column names must be str, got NoneType"),
        ("\ud800", "not valid Unicode text: surrogates not allowed at position 0"),
        ("ok\udfff", "at position 2"),
        ("", "non-empty"),
    ],
)
def test_invalid_column_names_are_schema_errors(name: Any, fragment: str) -> None:
    with pytest.raises(bale.SchemaError) as info:
        Column(name, Bytes(), ZSTD)
    assert fragment in str(info.value)
    if isinstance(name, str) and name:
        assert info.value.column == name


@pytest.mark.parametrize(
    "name", ["image", "label/fine", "a b", " lead", "é", "e\u0301", "日本語", "🙂", "x\x00y", "1"]
)
def test_any_non_empty_unicode_name_is_allowed_and_round_trips(name: str) -> None:
    schema = Schema((Column(name, Bytes(), ZSTD),))
    assert Schema.from_json(_json_round_trip(schema.to_json())).names == [name]


def test_names_are_compared_code_point_by_code_point() -> None:
    # Precomposed and decomposed "é" are different names: bale never normalises.
    schema = Schema((Column("\u00e9", Bytes(), ZSTD), Column("e\u0301", Bytes(), ZSTD)))
    assert len(schema) == 2
    assert "E\u0301" not in schema  # and case matters


@pytest.mark.parametrize("bad", [{"x": {}}, "x", None, 3])
def test_schema_json_must_be_a_list(bad: Any) -> None:
    with pytest.raises(bale.SchemaError):
        Schema.from_json(bad)


def test_schema_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Schema.from_json([{"name": "x", "kind": 5, "codec": ZSTD}])
