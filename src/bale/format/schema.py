"""Column descriptions (array, bytes, string) and the schema, with their JSON form in the format."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
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


ColumnType = Array | Bytes | String


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

    def __post_init__(self) -> None:
        check_column_name(self.name)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.type.kind, "codec": dict(self.codec)}
        if isinstance(self.type, Array):
            out["dtype"] = self.type.dtype
            out["shape"] = list(self.type.shape)
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Column:
        try:
            kind = obj["kind"]
            name = str(obj["name"])
            codec = dict(obj["codec"])
            if kind == "array":
                col_type: ColumnType = Array(str(obj["dtype"]), tuple(obj["shape"]))
            elif kind == "bytes":
                col_type = Bytes()
            elif kind == "string":
                col_type = String()
            else:
                raise SchemaError(f"unknown column kind {kind!r}; expected array, bytes or string")
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, SchemaError):
                raise
            raise SchemaError(f"invalid column description {obj!r}: {exc}") from exc
        return cls(name, col_type, codec)


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
    def from_json(cls, obj: Sequence[Mapping[str, Any]]) -> Schema:
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
            else:
                out[c.name] = c.type.kind
        return out
