"""User batches -> validated column data: schema inference, dtype and shape checks, bytes packing."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bale.errors import SchemaError
from bale.format.dtypes import dtype_from_name
from bale.format.schema import Array, Bytes, ColumnType, Schema, String, check_column_name

ColumnData = np.ndarray | list[bytes]  # arrays for Array columns, lists of bytes otherwise

_KDL_CPU = 1  # DLPack's device type of host memory
_NOT_TENSORS = (np.ndarray, list, tuple, str, bytes, bytearray, memoryview)


def as_numpy(name: str, value: Any, path: str | None = None) -> Any:
    """A framework's array (a torch tensor, a JAX or CuPy array, anything with ``__dlpack__`` or
    ``__array__``) as a NumPy array, sharing its memory where the framework allows (DLPack);
    NumPy arrays, lists and everything else are returned as they are.

    >>> as_numpy("x", torch.ones(2, 3)).shape                          # doctest: +SKIP
    (2, 3)

    Refused with a ``SchemaError`` naming the column: a tensor that requires grad (write
    ``tensor.detach()``: bale stores values, not the autograd graph) and memory outside the host
    (a GPU tensor: copy it to the CPU first); bale never moves or detaches data on its own.
    """
    if isinstance(value, _NOT_TENSORS) or not (
        hasattr(value, "__dlpack__") or hasattr(value, "__array__")
    ):
        return value
    kind = f"{type(value).__module__.split('.')[0]}.{type(value).__name__}"
    if getattr(value, "requires_grad", False):
        raise SchemaError(
            f"got a {kind} that requires grad: write tensor.detach() (bale stores the values, "
            "never the autograd graph)",
            path=path,
            column=name,
        )
    if hasattr(value, "__dlpack_device__"):
        device = value.__dlpack_device__()
        if int(device[0]) != _KDL_CPU:
            where = getattr(value, "device", device)
            raise SchemaError(
                f"got a {kind} on device {where}: copy it to the host first "
                "(tensor.cpu(), jax.device_get(x), cupy.asnumpy(x))",
                path=path,
                column=name,
            )
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16:
        # NumPy has no bfloat16 of its own, so neither DLPack nor __array__ can hand it over:
        # the same bytes, seen as ml_dtypes' bfloat16 (the dtype bale stores).
        bits: np.ndarray = np.from_dlpack(value.view(torch.int16))
        return bits.view(dtype_from_name("bfloat16"))  # ml_dtypes' type, with an install hint
    try:
        if hasattr(value, "__dlpack__"):
            return np.from_dlpack(value)
    except (BufferError, RuntimeError, TypeError, ValueError):
        pass  # a dtype or layout DLPack cannot carry: __array__ may still convert it
    try:
        return np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        dtype = getattr(value, "dtype", None)
        raise SchemaError(
            f"cannot convert a {kind}"
            + (f" of {dtype}" if dtype is not None else "")
            + f" to a NumPy array: {exc}",
            path=path,
            column=name,
        ) from exc


def infer_type(name: str, value: Any) -> ColumnType:
    """The column type a batch value implies: arrays -> Array, bytes -> Bytes, str -> String."""
    value = as_numpy(name, value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "S" or (value.dtype == object and _all(value, bytes)):
            return Bytes()
        if value.dtype.kind == "U" or (value.dtype == object and _all(value, str)):
            return String()
        if value.ndim == 0:
            raise SchemaError(
                "a batch value must have one entry per row, got a 0-d array", column=name
            )
        return _array_type(name, value)
    if isinstance(value, (list, tuple)):
        if not value:
            raise SchemaError("cannot infer a column type from an empty batch", column=name)
        if _all(value, (bytes, bytearray, memoryview)):
            return Bytes()
        if _all(value, str):
            return String()
        try:
            array = np.asarray(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise SchemaError(f"cannot infer a column type: {exc}", column=name) from exc
        if array.dtype.kind not in "biufc":
            row, item = _first_non_number(value, "biufc")
            raise SchemaError(
                f"cannot infer a column type: expected numbers (or all str, or all bytes), "
                f"got {_not_a_number(item)}",
                column=name,
                rows=(row, row + 1) if row is not None else None,
            )
        return _array_type(name, array)
    raise SchemaError(
        f"expected an array (NumPy, or anything with __array__ or __dlpack__) or a list of "
        f"rows, got {type(value).__name__}",
        column=name,
    )


def _all(values: Any, kind: type | tuple[type, ...]) -> bool:
    return all(isinstance(v, kind) for v in values)


def _array_type(name: str, value: np.ndarray) -> Array:
    try:
        return Array(
            value.dtype.name if value.dtype.kind in "biufc" else str(value.dtype), value.shape[1:]
        )
    except ValueError as exc:
        raise SchemaError(str(exc), column=name) from exc


def infer_schema_types(batch: Mapping[str, Any]) -> dict[str, ColumnType]:
    """The columns a first batch fixes for a file: its names, checked, and inferred types."""
    if not batch:
        raise SchemaError(
            "the first batch has no columns, so it cannot fix the file's columns; nothing "
            "was written: write a batch with at least one column (or pass schema=)"
        )
    for name in batch:
        check_column_name(name)
    return {name: infer_type(name, value) for name, value in batch.items()}


def batch_length(batch: Mapping[str, Any], schema: Schema, path: str, first_row: int) -> int:
    """Rows in the batch, after checking that it has exactly the schema's columns."""
    missing = [n for n in schema.names if n not in batch]
    extra = [n for n in batch if n not in schema]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing columns {missing}")
        if extra:
            parts.append(f"unknown columns {extra}")
        raise SchemaError(
            f"batch does not match the schema {schema.names}: {'; '.join(parts)}", path=path
        )
    lengths = {n: _length(n, batch[n], path) for n in schema.names}
    if len(set(lengths.values())) > 1:
        raise SchemaError(
            f"columns have different numbers of rows in one batch: {lengths}",
            path=path,
            rows=(first_row, first_row + max(lengths.values())),
        )
    return next(iter(lengths.values()), 0)


def _length(name: str, value: Any, path: str) -> int:
    value = as_numpy(name, value, path)
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        raise SchemaError(
            f"expected a list of rows, got a single {type(value).__name__} (wrap it in a list, "
            "or use writer.write_row for one row)",
            path=path,
            column=name,
        )
    if isinstance(value, np.ndarray) and value.ndim == 0:
        raise SchemaError("expected one entry per row, got a 0-d array", path=path, column=name)
    try:
        return len(value)
    except TypeError:
        raise SchemaError(
            f"expected an array or list of rows, got {type(value).__name__}", path=path, column=name
        ) from None


def to_column_data(
    name: str, column_type: ColumnType, value: Any, path: str, rows: tuple[int, int]
) -> ColumnData:
    """Validate one column of a batch and convert it to its stored form (arrays: C-contiguous,
    little-endian, the column's dtype; bytes/strings: a list of bytes)."""
    value = as_numpy(name, value, path)
    if isinstance(column_type, Array):
        return _to_array(name, column_type, value, path, rows)
    if isinstance(column_type, Bytes):
        out = []
        for i, item in enumerate(value):
            if isinstance(item, np.bytes_):
                item = bytes(item)
            if not isinstance(item, (bytes, bytearray, memoryview)):
                raise SchemaError(
                    f"expected bytes, got {type(item).__name__}",
                    path=path,
                    column=name,
                    rows=(rows[0] + i, rows[0] + i + 1),
                )
            out.append(bytes(item))
        return out
    encoded = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise SchemaError(
                f"expected str, got {type(item).__name__}",
                path=path,
                column=name,
                rows=(rows[0] + i, rows[0] + i + 1),
            )
        encoded.append(item.encode("utf-8", "surrogatepass"))
    return encoded


def _to_array(
    name: str, column_type: Array, value: Any, path: str, rows: tuple[int, int]
) -> np.ndarray:
    target = column_type.numpy_dtype
    expected = f"{column_type.dtype}{list(column_type.shape)} per row"
    if isinstance(value, np.ndarray):
        array = value
        if array.dtype != target and not _safe_cast(array.dtype, target):
            raise SchemaError(
                f"wrong dtype: expected {expected}, got {array.dtype} (cast it explicitly "
                "if the loss of precision is intended)",
                path=path,
                column=name,
                rows=rows,
            )
    else:
        array = _from_python(name, column_type, value, path, rows)
    if array.shape[1:] != column_type.shape:
        raise SchemaError(
            f"wrong shape: expected {expected}, got {list(array.shape[1:])} per row",
            path=path,
            column=name,
            rows=rows,
        )
    return np.ascontiguousarray(array, dtype=target)


def _from_python(
    name: str, column_type: Array, value: Any, path: str, rows: tuple[int, int]
) -> np.ndarray:
    """Python rows (lists, numbers) -> an array of the column's dtype, refusing every silent
    change: None, strings and other objects are not numbers, integer columns take integers
    that fit exactly, and a finite value must not become inf/nan in a narrower float."""
    target = column_type.numpy_dtype
    expected = f"{column_type.dtype}{list(column_type.shape)} per row"
    try:
        loose = np.asarray(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SchemaError(
            f"cannot convert to {expected}: {exc}", path=path, column=name, rows=rows
        ) from exc
    if loose.dtype.kind not in "biufc" or (loose.dtype.kind == "c" and target.kind != "c"):
        row, item = _first_non_number(value, "c" if target.kind == "c" else "biuf")
        raise SchemaError(
            f"expected {expected}, got {_not_a_number(item)}",
            path=path,
            column=name,
            rows=(rows[0] + row, rows[0] + row + 1) if row is not None else rows,
        )
    # Python numbers must fit integer columns exactly; floats may round to the column's
    # precision (writing [0.1] into a float32 column is the common, intended case).
    if loose.dtype.kind == "f" and target.kind in "biu":
        raise SchemaError(
            f"values do not fit {column_type.dtype} exactly (got {loose.dtype})",
            path=path,
            column=name,
            rows=rows,
        )
    with np.errstate(all="ignore"):  # overflow is detected below, not warned about
        array = loose.astype(target)
    if target.kind in "biu":
        changed = array != loose
        if changed.any():
            found = loose.reshape(-1)[np.flatnonzero(changed)[0]].item()
            raise SchemaError(
                f"value {found!r} does not fit {column_type.dtype} exactly (got {loose.dtype})",
                path=path,
                column=name,
                rows=_first_row(changed, rows),
            )
    elif loose.dtype.kind != "b":
        overflowed = np.isfinite(loose) & ~np.isfinite(array)
        if overflowed.any():
            where = _first_row(overflowed, rows)
            raise SchemaError(
                f"a finite value overflows {column_type.dtype} (it would be stored as "
                f"{array.reshape(-1)[np.flatnonzero(overflowed)[0]]}): clip it or use a "
                "wider dtype",
                path=path,
                column=name,
                rows=where,
            )
    return array


def _first_non_number(value: Any, kinds: str) -> tuple[int | None, Any]:
    """(row, item): the first row holding something that is not a number of ``kinds``."""
    for row, item in enumerate(value):
        for leaf in _leaves(item):
            if isinstance(leaf, np.ndarray) and leaf.dtype.kind in kinds:
                continue
            if not isinstance(leaf, (int, float, complex, np.number, np.bool_)) or (
                isinstance(leaf, (complex, np.complexfloating)) and "c" not in kinds
            ):
                return row, leaf
            # An int beyond 64 bits becomes an object, not a number numpy can store.
            if isinstance(leaf, int) and np.asarray(leaf).dtype.kind not in "biu":
                return row, leaf
    return None, None


def _not_a_number(item: Any) -> str:
    """What was found instead of a number, and what to do about it."""
    if item is None:
        return "None (a missing value: write float('nan') explicitly in a float column)"
    found = f"{type(item).__name__} {item!r}"[:80]
    if isinstance(item, (str, bytes, np.str_, np.bytes_)):
        return f"{found} (text is never parsed into numbers: convert it explicitly)"
    return f"{found} (not a number that fits this column: convert it explicitly)"


def _leaves(item: Any) -> Any:
    if isinstance(item, (list, tuple)):
        for sub in item:
            yield from _leaves(sub)
    else:
        yield item


def _first_row(mask: np.ndarray, rows: tuple[int, int]) -> tuple[int, int]:
    """The batch row (as file rows) of the first True in ``mask`` (one entry or more per row)."""
    flat = mask.reshape(len(mask), -1).any(axis=1)
    first = int(np.flatnonzero(flat)[0]) if flat.any() else 0
    return (rows[0] + first, rows[0] + first + 1)


def _safe_cast(source: np.dtype[Any], target: np.dtype[Any]) -> bool:
    if source.kind not in "biufc" or target.kind not in "biufcV":
        return False
    try:
        return bool(np.can_cast(source, target, casting="safe"))
    except TypeError:
        return False


def pack_var_rows(rows: Sequence[bytes]) -> bytes:
    """A bytes/string block's raw form: u64 LE length of each row, then the rows concatenated."""
    lengths = np.fromiter((len(r) for r in rows), dtype="<u8", count=len(rows))
    return lengths.tobytes() + b"".join(rows)


def unpack_var_rows(
    raw: bytes | bytearray | memoryview, num_rows: int
) -> tuple[memoryview, np.ndarray]:
    """(data, offsets): row i is ``data[offsets[i]:offsets[i + 1]]``. Raises ValueError if the
    lengths do not add up to the block's size."""
    view = memoryview(raw).cast("B")
    if len(view) < 8 * num_rows:
        raise ValueError(f"block of {len(view)} bytes cannot hold {num_rows} row lengths")
    lengths = np.frombuffer(view[: 8 * num_rows], dtype="<u8")
    if num_rows and int(lengths.max()) > len(view):
        raise ValueError(f"a row length of {int(lengths.max())} exceeds the block's size")
    offsets = np.zeros(num_rows + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if int(offsets[-1]) != len(view) - 8 * num_rows:
        raise ValueError(
            f"row lengths add up to {int(offsets[-1])} bytes, the block holds {len(view) - 8 * num_rows}"
        )
    return view[8 * num_rows :], offsets
