"""bcolz's on-disk layout: a carray's metadata (``meta/sizes``, ``meta/storage``, ``__attrs__``).

Which file holds which rows (``Carray.chunk_file``, ``Carray.chunk_rows``) is decided here; the
chunk files' bytes are decoded by bcolz_chunks.py. bcolz.py describes the whole layout.
"""

from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from bale.errors import BaleError, CorruptFileError, SchemaError


def read_json(path: str, what: str) -> Any:
    """A bcolz JSON file (``what`` names it in errors); an empty file reads as ``{}``."""
    try:
        with open(path, "rb") as fp:
            text = fp.read().decode("utf-8").strip()
    except FileNotFoundError:
        raise BaleError(f"missing {what} file {path!r}: not a bcolz directory?") from None
    if not text:  # bcolz writes an empty __attrs__ when a carray has no attributes
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CorruptFileError(f"{what} is not valid JSON: {exc}", path=path) from None


def _parse_dtype(text: Any, where: str) -> np.dtype[Any]:
    """bcolz stores ``str(dtype)``: ``"int32"``, ``"<U8"``, or for records the repr of a list."""
    dtype: np.dtype[Any]
    try:
        dtype = np.dtype(text)
    except TypeError:
        try:
            dtype = np.dtype(ast.literal_eval(str(text)))
        except (ValueError, SyntaxError, TypeError) as exc:
            raise CorruptFileError(
                f"unreadable dtype {text!r} in meta/storage: {exc}", path=where
            ) from None
    return dtype


@dataclass(frozen=True)
class Carray:
    """One carray directory, as its metadata describes it."""

    rootdir: str
    dtype: np.dtype[Any]  # of one element (bcolz's ``dtype.base``); may be a record dtype
    row_shape: tuple[int, ...]
    length: int
    chunklen: int
    storage: dict[str, Any]
    attrs: dict[str, Any]

    @property
    def row_nbytes(self) -> int:
        return self.dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64))

    @property
    def is_object(self) -> bool:
        return self.dtype.hasobject

    @property
    def num_chunks(self) -> int:
        if self.is_object:
            return self.length  # one pickled object per chunk
        return -(-self.length // self.chunklen)

    def chunk_file(self, i: int) -> str:
        """The file of chunk ``i``: ``data/__<i>.blp``."""
        return os.path.join(self.rootdir, "data", f"__{i}.blp")

    def chunk_rows(self, i: int) -> tuple[int, int]:
        """The rows ``(first, stop)`` chunk ``i`` holds (one row per chunk for objects)."""
        if self.is_object:
            return i, i + 1
        return i * self.chunklen, min((i + 1) * self.chunklen, self.length)

    def describe(self) -> dict[str, Any]:
        out = {
            "dtype": str(self.dtype),
            "shape": [self.length, *self.row_shape],
            "chunklen": self.chunklen,
            "cparams": self.storage.get("cparams"),
        }
        if self.attrs:
            out["attrs"] = self.attrs
        return out


def open_carray(rootdir: str) -> Carray:
    """The carray in ``rootdir``, from its ``meta/sizes``, ``meta/storage`` and ``__attrs__``."""
    sizes = read_json(os.path.join(rootdir, "meta", "sizes"), "meta/sizes")
    storage = read_json(os.path.join(rootdir, "meta", "storage"), "meta/storage")
    attrs_path = os.path.join(rootdir, "__attrs__")
    attrs = read_json(attrs_path, "__attrs__") if os.path.exists(attrs_path) else {}
    try:
        shape = tuple(int(d) for d in sizes["shape"])
        chunklen = int(storage["chunklen"])
        dtype = _parse_dtype(storage["dtype"], rootdir)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, BaleError):
            raise
        raise CorruptFileError(
            f"meta/sizes or meta/storage lacks a valid field ({exc!r})", path=rootdir
        ) from None
    if not shape or min(shape) < 0 or chunklen < 1:
        raise CorruptFileError(
            f"invalid shape {list(shape)} or chunklen {chunklen} in meta", path=rootdir
        )
    row_shape = shape[1:]
    if dtype.subdtype is not None:  # bcolz 1.x stores the scalar dtype, but be lenient
        base, sub_shape = dtype.subdtype
        dtype, row_shape = base, tuple(sub_shape) + row_shape
    if dtype.hasobject and (dtype != np.dtype(object) or row_shape):
        raise SchemaError(f"unsupported bcolz dtype {dtype} with shape {list(shape)}", path=rootdir)
    return Carray(rootdir, dtype, row_shape, shape[0], chunklen, dict(storage), dict(attrs))
