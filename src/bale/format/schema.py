"""Column descriptions (array, bytes, string) and the schema, with their JSON form in the format."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from bale.errors import SchemaError
from bale.format.dtypes import dtype_from_name, dtype_name

ColumnKind = Literal["array", "bytes", "string"]


@dataclass(frozen=True)
class Array:
    """A fixed-shape column: every row is an array of ``shape`` (``()`` for scalars) and ``dtype``.

    >>> Array("uint8", (64, 64, 3)).row_nbytes
    12288
    """

    dtype: str
    shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        name = dtype_name(self.dtype)  # validates, and canonicalises "<f4" -> "float32"
        object.__setattr__(self, "dtype", name)
        shape = tuple(int(d) for d in self.shape)
        if any(d < 0 for d in shape):
            raise SchemaError(f"array shape {shape} has a negative dimension")
        if len(shape) > MAX_ROW_DIMS:
            raise SchemaError(
                f"array rows of {len(shape)} dimensions: at most {MAX_ROW_DIMS} are allowed"
            )
        object.__setattr__(self, "shape", shape)

    kind: Literal["array"] = field(default="array", init=False)

    @property
    def numpy_dtype(self) -> np.dtype[Any]:
        return dtype_from_name(self.dtype)

    @property
    def row_nbytes(self) -> int:
        return self.numpy_dtype.itemsize * math.prod(self.shape)


@dataclass(frozen=True)
class Bytes:
    """A variable-length bytes column: encoded JPEG/PNG, audio, any blob. Rows are ``bytes``."""

    kind: Literal["bytes"] = field(default="bytes", init=False)


@dataclass(frozen=True)
class String:
    """A variable-length UTF-8 text column. Rows are ``str``."""

    kind: Literal["string"] = field(default="string", init=False)


@dataclass(frozen=True)
class Unsupported(Bytes):
    """A stored column this bale cannot read: its kind, or its array dtype, was added by a later
    minor version of the format. The file opens and lists the column; reading it raises
    UnsupportedFeatureError. Never written by this bale. A ``Bytes`` to code that only tells
    arrays from variable-length rows; ``stored_kind`` is the kind the file names.

    >>> Unsupported("array", "dtype 'float4_e2m1'").stored_kind
    'array'
    """

    stored_kind: str = ""
    what: str = ""  # what is unknown, for messages: "dtype 'float4_e2m1'", "column kind 'x'"
    #: What listings show (``bale info``): not "bytes", which it is only to the code paths.
    kind: Literal["unsupported"] = field(default="unsupported", init=False)  # type: ignore[assignment]


ColumnType = Array | Bytes | String

#: The largest dimension, and row size in bytes, an array column may have: rows are addressed
#: with signed 64-bit integers.
MAX_ROW_BYTES = (1 << 63) - 1
#: The most dimensions a row may have: with the row dimension they fit NumPy's 64.
MAX_ROW_DIMS = 63


def check_column_name(name: object) -> str:
    """``name`` if it may name a column: a non-empty ``str`` that encodes as UTF-8 (no lone
    surrogates). Any other text is allowed; names are compared code point by code point.

    >>> check_column_name("image")
    'image'
    """
    if not isinstance(name, str):
        raise SchemaError(
            f"column names must be str, got {type(name).__name__} {name!r} "
            f"(write {str(name)!r} if that is the name meant)"
        )
    if not name:
        raise SchemaError("column names must be non-empty strings")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SchemaError(
            f"column name {name!r} is not valid Unicode text: {exc.reason} at position "
            f"{exc.start} (names are stored as UTF-8)",
            column=name,
        ) from None
    return name


@dataclass(frozen=True)
class Column:
    """One named column of a schema, with the codec its blocks are written with by default."""

    name: str
    type: ColumnType
    codec: Mapping[str, Any]
    #: Keys of the stored column description this bale does not know (a later minor version
    #: added them), kept as they were so that an append writes them back.
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_column_name(self.name)

    def to_json(self) -> dict[str, Any]:
        kind = self.type.stored_kind if isinstance(self.type, Unsupported) else self.type.kind
        out: dict[str, Any] = {**self.extra, "name": self.name, "kind": kind}
        out["codec"] = dict(self.codec)
        if isinstance(self.type, Array):
            out["dtype"] = self.type.dtype
            out["shape"] = list(self.type.shape)
        return out

    @classmethod
    def from_json(cls, obj: object) -> Column:
        """A stored column description. SchemaError unless it is a JSON object with a name, a
        kind and a codec object, and an array's dtype and shape are well formed; a kind or dtype
        this bale does not know gives an ``Unsupported`` type (a later minor version's column)."""
        if not isinstance(obj, Mapping):
            raise SchemaError(f"a column description must be a JSON object, got {obj!r}")
        name, kind, codec = obj.get("name"), obj.get("kind"), obj.get("codec")
        if not isinstance(name, str):
            raise SchemaError(f"a column description needs a string name, got {obj!r}")
        if not isinstance(kind, str) or not isinstance(codec, Mapping):
            raise SchemaError(
                f"column {name!r} needs a string kind and a codec object", column=name
            )
        known = {"name", "kind", "codec"}
        col_type: ColumnType
        if kind == "array":
            known |= {"dtype", "shape"}
            col_type = _array_from_json(name, obj.get("dtype"), obj.get("shape"))
        elif kind == "bytes":
            col_type = Bytes()
        elif kind == "string":
            col_type = String()
        else:
            col_type = Unsupported(kind, f"column kind {kind!r}")
        if isinstance(col_type, Unsupported):
            known = {"name", "kind", "codec"}  # its other keys are written back as they were
        extra = {k: v for k, v in obj.items() if k not in known}
        return cls(name, col_type, dict(codec), extra)


def _array_from_json(name: str, dtype: object, shape: object) -> Array | Unsupported:
    """An array column's type from its stored dtype and shape; ``Unsupported`` for a dtype name
    this bale does not know. SchemaError for a shape that is not a list of non-negative integers
    or a row size that could not be addressed."""
    if not isinstance(dtype, str):
        raise SchemaError(f"array column {name!r} needs a dtype name, got {dtype!r}", column=name)
    if not isinstance(shape, list) or not all(
        type(d) is int and 0 <= d <= MAX_ROW_BYTES for d in shape
    ):
        raise SchemaError(
            f"array column {name!r} needs a shape of non-negative integers, got {shape!r}",
            column=name,
        )
    if len(shape) > MAX_ROW_DIMS:
        raise SchemaError(
            f"array column {name!r} has a shape of {len(shape)} dimensions, at most "
            f"{MAX_ROW_DIMS} are allowed",
            column=name,
        )
    try:
        dtype_from_name(dtype)
    except KeyError:
        return Unsupported("array", f"dtype {dtype!r}")
    array = Array(dtype, tuple(shape))
    if array.row_nbytes > MAX_ROW_BYTES:
        raise SchemaError(
            f"array column {name!r} has rows of {array.row_nbytes} bytes, more than any file "
            "can hold",
            column=name,
        )
    return array


@dataclass(frozen=True)
class Schema:
    """The ordered columns of a file. Column order is the order of blocks inside a row group."""

    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise SchemaError(f"duplicate column names {duplicates}")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def __getitem__(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.columns)

    def __iter__(self) -> Iterator[Column]:
        return iter(self.columns)

    def __len__(self) -> int:
        return len(self.columns)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def to_json(self) -> list[dict[str, Any]]:
        return [c.to_json() for c in self.columns]

    @classmethod
    def from_json(cls, obj: object) -> Schema:
        if not isinstance(obj, list):
            raise SchemaError(f"schema must be a JSON list of columns, got {type(obj).__name__}")
        return cls(tuple(Column.from_json(c) for c in obj))

    def describe(self) -> dict[str, str]:
        """One human-readable type per column, e.g. ``{"image": "uint8[64,64,3]"}``."""
        out = {}
        for c in self.columns:
            if isinstance(c.type, Array):
                dims = ",".join(str(d) for d in c.type.shape)
                out[c.name] = f"{c.type.dtype}[{dims}]" if dims else c.type.dtype
            elif isinstance(c.type, Unsupported):
                out[c.name] = f"unsupported {c.type.what}"
            else:
                out[c.name] = c.type.kind
        return out
