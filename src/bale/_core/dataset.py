"""File -> footer -> blocks -> arrays: random access, slices, batched gathers and column views."""

from __future__ import annotations

import mmap
import os
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

import numpy as np

from bale._core.blocks import (
    BlockCache,
    Decoded,
    StoredBlock,
    StoredGroup,
    VarRows,
    check_block,
    decode_column_block,
)
from bale._core.layout import read_index
from bale._core.mapped import MappedColumn, can_map, map_file, unmap
from bale.codecs import codec_from_config
from bale.errors import BaleError, CorruptFileError
from bale.format.footer import FileIndex
from bale.format.schema import Array, Column, Schema, String
from bale.io.source import LocalSource

DEFAULT_CACHE_BYTES = 64 << 20
#: Row groups requested from the kernel ahead of a sequential read, so disk reads overlap decoding.
_READ_AHEAD_GROUPS = 2
Row = dict[str, Any]
Batch = dict[str, Any]


class Dataset:
    """An open ``.bale`` file. Opening reads only the trailer and footer.

    >>> ds = bale.open("train.bale")  # doctest: +SKIP
    >>> len(ds), ds.schema.names, ds.metadata
    >>> ds[0]              # one row: {"image": array(...), "label": 3}
    >>> ds[10:20]          # a batch: {"image": array (10, ...), "label": array (10,)}
    >>> ds[[5, 1, 99]]     # a gather: each row group decoded once, rows in the order asked
    >>> ds["label"][:100]  # a lazy column with NumPy-style indexing

    Safe to share between threads (positional reads, locked cache) and across processes: a
    dataset pickled into a spawn/forkserver worker reopens by path, a forked one reopens its own
    descriptor. Every block's checksum is verified when it is read (``verify=False`` skips it).
    Rows and single-group slices are read-only views of cached blocks; copy them to modify.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        verify: bool = True,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.path = os.fspath(path)
        self.verify = verify
        self._cache_bytes = cache_bytes
        self._source = LocalSource(self.path)
        try:
            self._index, _ = read_index(self._source)
        except BaseException:
            self._source.close()
            raise
        self._cache = BlockCache(cache_bytes)
        # Codec objects are built once per file, not per block: the hot path stays allocation-free.
        self._codecs = [codec_from_config(c) for c in self._index.codecs]
        self._starts = self._index.groups["row_start"].astype(np.int64)
        self._counts = self._index.groups["num_rows"].astype(np.int64)
        # Uncompressed array columns are read from a mapping of the file (made on first use).
        self._mappable = {p for p in range(len(self.schema)) if can_map(self._index, p)}
        self._mapping: Any = None
        self._mapped: dict[int, MappedColumn] = {}
        self._map_lock = threading.Lock()

    # -- description --------------------------------------------------------------------------

    @property
    def schema(self) -> Schema:
        return self._index.schema

    @property
    def metadata(self) -> dict[str, Any]:
        return self._index.metadata

    @property
    def index(self) -> FileIndex:
        """The footer's index: row groups, blocks, codecs (read-only use)."""
        return self._index

    @property
    def num_row_groups(self) -> int:
        return len(self._starts)

    @property
    def row_group_sizes(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self._counts)

    def __len__(self) -> int:
        return self._index.num_rows

    def __repr__(self) -> str:
        return f"<bale.Dataset {self.path!r}: {len(self)} rows, {self.schema.describe()}>"

    # -- indexing -----------------------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self.column(key)
        if isinstance(key, (bool, np.bool_)):
            raise TypeError("a bool is not a row number (use a boolean mask array to select rows)")
        if isinstance(key, np.ndarray) and key.ndim == 0 and key.dtype.kind in "iu":
            key = int(key)
        if isinstance(key, (int, np.integer)):
            return self.row(int(key))
        if isinstance(key, slice):
            return self.read(key)
        return self.take(key)

    def column(self, name: str) -> ColumnView:
        if name not in self.schema:
            raise KeyError(f"no column {name!r} in {self.path!r}; columns are {self.schema.names}")
        return ColumnView(self, name)

    def row(self, i: int, columns: Sequence[str] | None = None) -> Row:
        i = self._normalise(i)
        group = int(np.searchsorted(self._starts, i, side="right") - 1)
        local = i - int(self._starts[group])
        out: Row = {}
        for position, column in self._select(columns):
            mapped = self.mapped_column(position)
            if mapped is not None:
                value = mapped.gather(np.array([i]))[0]
                out[column.name] = value if value.ndim else value[()]
                continue
            block = self._block(group, position, column)
            out[column.name] = _row_of(block, local, column)
        return out

    def read(self, rows: slice | None = None, columns: Sequence[str] | None = None) -> Batch:
        """Contiguous rows (a slice, default all) as a batch: arrays, or lists for bytes/strings."""
        start, stop, step = (rows or slice(None)).indices(len(self))
        if step != 1:
            return self.take(np.arange(start, stop, step), columns)
        selected = self._select(columns)
        if stop <= start:
            return {c.name: _empty(c) for _, c in selected}
        first = int(np.searchsorted(self._starts, start, side="right") - 1)
        last = int(np.searchsorted(self._starts, stop - 1, side="right") - 1)
        out: Batch = {}
        for position, column in selected:
            mapped = self.mapped_column(position)
            if mapped is not None:
                out[column.name] = mapped.read(start, stop)
                continue
            pieces = []
            for group in range(first, last + 1):
                block = self._block(group, position, column)
                g_start = int(self._starts[group])
                lo, hi = (
                    max(start, g_start) - g_start,
                    min(stop, g_start + int(self._counts[group])) - g_start,
                )
                pieces.append(_slice_of(block, lo, hi, column))
            out[column.name] = _join(pieces, column)
        return out

    def take(self, indices: Any, columns: Sequence[str] | None = None) -> Batch:
        """Rows at ``indices`` (ints or a boolean mask), in that order. Indices are grouped by row
        group so each needed block is read and decoded once."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise IndexError(f"boolean mask of shape {idx.shape} for {len(self)} rows")
            idx = np.flatnonzero(idx)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise IndexError(f"expected a 1-d sequence of row numbers, got {idx.dtype} {idx.shape}")
        n = len(self)
        if idx.size and idx.dtype.kind == "u" and int(idx.max()) >= n:
            raise IndexError(f"row index out of range for {n} rows in {self.path!r}")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for {n} rows in {self.path!r}")
        idx = np.where(idx < 0, idx + n, idx)
        selected = self._select(columns)
        out: Batch = {}
        for position, column in selected:
            mapped = self.mapped_column(position)
            if mapped is not None:
                out[column.name] = mapped.gather(idx)
        decoded = [(p, c) for p, c in selected if c.name not in out]
        if not decoded:
            return out
        groups = np.searchsorted(self._starts, idx, side="right") - 1
        order = np.argsort(groups, kind="stable")
        bounds = np.flatnonzero(np.diff(groups[order])) + 1
        runs = np.split(order, bounds) if idx.size else []
        for position, column in decoded:
            if isinstance(column.type, Array):
                result: Any = np.empty((idx.size, *column.type.shape), column.type.numpy_dtype)
            else:
                result = [None] * idx.size
            for run in runs:
                group = int(groups[run[0]])
                block = self._block(group, position, column)
                local = idx[run] - self._starts[group]
                if isinstance(block, np.ndarray):
                    result[run] = block[local]
                else:
                    for dest, row in zip(run.tolist(), local.tolist(), strict=True):
                        result[dest] = _var_value(block, row, column)
            out[column.name] = result
        return {c.name: out[c.name] for _, c in selected}  # the columns in the order asked

    def iter_row_groups(
        self, columns: Sequence[str] | None = None, *, threads: int = 1
    ) -> Iterator[Batch]:
        """Each row group in order as a batch: one read per group when its columns are adjacent,
        the next groups requested from the kernel ahead of time. With ``threads`` > 1, that many
        groups are read and decoded in parallel ahead of the consumer (codecs release the GIL)."""
        groups = self._index.groups
        requested = 0  # groups up to this one have been asked of the kernel

        def read(group: int) -> Batch:
            return self.read_row_group(group, columns)

        if threads <= 1:
            for group in range(self.num_row_groups):
                requested = self._read_ahead(groups, group, requested)
                yield read(group)
            return
        with ThreadPoolExecutor(threads, thread_name_prefix="bale-read") as pool:
            pending: deque[Future[Batch]] = deque()
            next_group = 0
            try:
                while next_group < self.num_row_groups or pending:
                    while next_group < self.num_row_groups and len(pending) < threads:
                        requested = self._read_ahead(groups, next_group, requested)
                        pending.append(pool.submit(read, next_group))
                        next_group += 1
                    yield pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()

    def _read_ahead(self, groups: np.ndarray, group: int, requested: int) -> int:
        while requested < min(group + _READ_AHEAD_GROUPS, self.num_row_groups - 1):
            requested += 1
            self._source.will_need(
                int(groups[requested]["offset"]), int(groups[requested]["length"])
            )
        return requested

    def read_row_group(self, group: int, columns: Sequence[str] | None = None) -> Batch:
        selected = self._select(columns)
        payloads = self._read_group_span(group, [p for p, _ in selected if p not in self._mappable])
        out: Batch = {}
        for position, column in selected:
            mapped = self.mapped_column(position)
            if mapped is not None:
                start, stop = self._rows_of(group)
                out[column.name] = mapped.read(start, stop)
                continue
            block = self._decode(group, position, column, payloads.get(position))
            out[column.name] = _slice_of(block, 0, int(self._counts[group]), column)
        return out

    def mapped_column(self, column: int | str) -> MappedColumn | None:
        """Zero-copy access to an uncompressed array column (codec ``none``), or None for any
        other column. Its rows are gathered straight from a read-only mapping of the file, and
        each block's checksum is verified the first time its rows are read. ``take``, ``read``
        and ``row`` use it automatically."""
        position = column if isinstance(column, int) else self.schema.index(column)
        if position not in self._mappable:
            return None
        mapped = self._mapped.get(position)
        if mapped is not None:
            return mapped
        with self._map_lock:
            if position not in self._mapped:
                if self._mapping is None:
                    self._mapping = map_file(self._source.fileno())
                self._mapped[position] = MappedColumn(
                    self._mapping, self._index, position, path=self.path, verify=self.verify
                )
            return self._mapped[position]

    def stored_group(self, group: int) -> StoredGroup:
        """Row group ``group`` as stored (compressed), every block's checksum verified, for
        ``Writer.write_stored_group``: copying between files without recompressing."""
        if not 0 <= group < self.num_row_groups:
            raise IndexError(f"row group {group} out of range for {self.num_row_groups} groups")
        positions = list(range(len(self.schema)))
        spans = self._read_group_span(group, positions, use_cache=False)
        blocks = {}
        for position, column in enumerate(self.schema.columns):
            record = self._index.blocks[group, position]
            payload = spans.get(position)
            if payload is None:
                payload = memoryview(self._read_payload(record, column, group))
            check_block(
                payload,
                int(record["checksum"]),
                path=self.path,
                column=column.name,
                rows=self._rows_of(group),
            )
            blocks[column.name] = StoredBlock(
                [payload],
                int(record["raw_size"]),
                int(record["checksum"]),
                dict(self._index.codecs[int(record["codec"])]),
            )
        return StoredGroup(int(self._counts[group]), blocks, self._index.segment_bytes)

    def load_block(self, group: int, column: str) -> Decoded:
        """One column's decoded block of one row group: an array of shape (rows, ...), or
        ``VarRows`` for bytes/strings. Reads, checks and decodes it (or takes it from the cache)."""
        if not 0 <= group < self.num_row_groups:
            raise IndexError(f"row group {group} out of range for {self.num_row_groups} groups")
        position = self.schema.index(column)
        return self._block(group, position, self.schema.columns[position])

    def prefetch_group(self, group: int, columns: Sequence[str] | None = None) -> int:
        """Read (one read when the blocks are adjacent), check and decode a row group's blocks
        into the block cache, ahead of use. Returns the decoded bytes now cached."""
        selected = self._select(columns)
        payloads = self._read_group_span(group, [p for p, _ in selected])
        return sum(
            self._decode(group, position, column, payloads.get(position)).nbytes
            for position, column in selected
        )

    @property
    def cache_bytes(self) -> int:
        return self._cache.capacity_bytes

    @cache_bytes.setter
    def cache_bytes(self, value: int) -> None:
        self._cache.capacity_bytes = value
        self._cache_bytes = value

    def decoded_group_bytes(self, columns: Sequence[str] | None = None) -> int:
        """Decoded size of an average row group for these columns (to size memory budgets)."""
        if not self.num_row_groups:
            return 0
        positions = [p for p, _ in self._select(columns)]
        return int(self._index.blocks[:, positions]["raw_size"].sum()) // self.num_row_groups

    # -- blocks -------------------------------------------------------------------------------

    def check_columns(self, columns: Sequence[str] | None) -> None:
        """Raise KeyError naming the file and its columns if any of ``columns`` is unknown
        (TypeError for a bare string). ``None`` means all columns."""
        self._select(columns)

    def _select(self, columns: Sequence[str] | None) -> list[tuple[int, Column]]:
        if columns is None:
            return list(enumerate(self.schema.columns))
        if isinstance(columns, str):
            raise TypeError("columns must be a list of names, not a single string")
        out = []
        for name in columns:
            if name not in self.schema:
                raise KeyError(
                    f"no column {name!r} in {self.path!r}; columns are {self.schema.names}"
                )
            out.append((self.schema.index(name), self.schema[name]))
        return out

    def _normalise(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"row {i} out of range for {n} rows in {self.path!r}")
        return i + n if i < 0 else i

    def _rows_of(self, group: int) -> tuple[int, int]:
        start = int(self._starts[group])
        return start, start + int(self._counts[group])

    def _block(self, group: int, position: int, column: Column) -> Decoded:
        cached = self._cache.get((group, position))
        if cached is not None:
            return cached
        return self._decode(group, position, column, None)

    def _decode(self, group: int, position: int, column: Column, payload: Any) -> Decoded:
        cached = self._cache.get((group, position))
        if cached is not None:
            return cached
        record = self._index.blocks[group, position]
        if payload is None:
            payload = self._read_payload(record, column, group)
        block = decode_column_block(
            payload,
            record,
            self._codecs[int(record["codec"])],
            column,
            int(self._counts[group]),
            segment_bytes=self._index.segment_bytes,
            verify=self.verify,
            path=self.path,
            rows=self._rows_of(group),
        )
        self._cache.put((group, position), block)
        return block

    def _read_payload(self, record: Any, column: Column, group: int) -> bytes | bytearray:
        try:
            return self._source.read(int(record["offset"]), int(record["stored_size"]))
        except BaleError as exc:
            raise CorruptFileError(
                exc.detail, path=self.path, column=column.name, rows=self._rows_of(group)
            ) from exc

    def _read_group_span(
        self, group: int, positions: list[int], *, use_cache: bool = True
    ) -> dict[int, memoryview]:
        """Payloads of several blocks of one group with a single read, when they lie close."""
        needed = [p for p in positions if not use_cache or self._cache.get((group, p)) is None]
        if len(needed) < 2:
            return {}
        records = self._index.blocks[group, needed]
        start = int(records["offset"].min())
        end = int((records["offset"] + records["stored_size"]).max())
        if end - start > 2 * int(records["stored_size"].sum()) + (1 << 16):
            return {}  # far apart: separate reads move less data
        try:
            span = memoryview(self._source.read(start, end - start))
        except BaleError as exc:
            raise CorruptFileError(exc.detail, path=self.path, rows=self._rows_of(group)) from exc
        return {
            p: span[int(r["offset"]) - start : int(r["offset"]) - start + int(r["stored_size"])]
            for p, r in zip(needed, records, strict=True)
        }

    # -- lifecycle ----------------------------------------------------------------------------

    def evict_from_page_cache(self) -> None:
        """Drop this file from the OS page cache and bale's block cache (cold-read measurements)."""
        self._cache.clear()
        if self._mapping is not None:  # mapped pages are not dropped while a process maps them
            self._mapping.madvise(mmap.MADV_DONTNEED)
        self._source.evict_from_page_cache()

    def close(self) -> None:
        self._cache.clear()
        with self._map_lock:
            self._mapped.clear()
            if self._mapping is not None:
                unmap(self._mapping)
                self._mapping = None
        self._source.close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        # A worker process re-reads the small footer rather than receiving a pickled index.
        return {"path": self.path, "verify": self.verify, "cache_bytes": self._cache_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], verify=state["verify"], cache_bytes=state["cache_bytes"])  # type: ignore[misc]


class ColumnView:
    """One column as a lazy array: ``len``, ``shape``, ``dtype``, NumPy-style indexing, chunks.

    >>> labels = ds["label"]       # doctest: +SKIP
    >>> labels[5], labels[10:20], labels[[3, 1, 2]], labels[:, ...]
    >>> np.asarray(labels)         # reads the whole column, one block per row group
    """

    def __init__(self, dataset: Dataset, name: str) -> None:
        self.dataset = dataset
        self.name = name
        self.column = dataset.schema[name]

    @property
    def dtype(self) -> np.dtype[Any]:
        t = self.column.type
        return t.numpy_dtype if isinstance(t, Array) else np.dtype(object)

    @property
    def shape(self) -> tuple[int, ...]:
        t = self.column.type
        return (len(self.dataset), *(t.shape if isinstance(t, Array) else ()))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def chunks(self) -> tuple[int, ...]:
        """Rows per row group: the natural chunking for dask and for sequential reads."""
        return self.dataset.row_group_sizes

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> Any:
        rest: tuple[Any, ...] = ()
        if isinstance(key, tuple) and key and key[0] is Ellipsis:
            value = self[:]  # `...` may stand for the row axis too: let NumPy resolve it
            if not isinstance(value, np.ndarray):
                raise IndexError(
                    f"column {self.name!r} holds {self.column.type.kind}: only rows can be indexed"
                )
            return value[key]
        if isinstance(key, (bool, np.bool_)):
            raise TypeError("a bool is not a row number")
        if isinstance(key, np.ndarray) and key.ndim == 0 and key.dtype.kind in "iu":
            key = int(key)
        if isinstance(key, tuple):
            key, rest = (key[0] if key else slice(None)), key[1:]
        if isinstance(key, (int, np.integer)):
            value = self.dataset.row(int(key), [self.name])[self.name]
            return value[rest] if rest else value
        if isinstance(key, slice) or key is Ellipsis:
            value = self.dataset.read(key if isinstance(key, slice) else None, [self.name])[
                self.name
            ]
        else:
            value = self.dataset.take(key, [self.name])[self.name]
        if rest:
            if not isinstance(value, np.ndarray):
                raise IndexError(
                    f"column {self.name!r} holds {self.column.type.kind}: only rows can be indexed"
                )
            value = value[(slice(None), *rest)]
        return value

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        value = self[:]
        array = np.asarray(value, dtype=object) if isinstance(value, list) else value
        return array.astype(dtype, copy=False) if dtype is not None else array

    def iter_chunks(self) -> Iterator[Any]:
        for group in range(self.dataset.num_row_groups):
            yield self.dataset.read_row_group(group, [self.name])[self.name]

    def __repr__(self) -> str:
        return f"<bale column {self.name!r}: {self.column.type} x {len(self)}>"


def _row_of(block: Decoded, local: int, column: Column) -> Any:
    if isinstance(block, np.ndarray):
        return block[local]
    return _var_value(block, local, column)


def _var_value(block: VarRows, local: int, column: Column) -> Any:
    raw = block.row(local)
    return raw.decode("utf-8", "surrogatepass") if isinstance(column.type, String) else raw


def _slice_of(block: Decoded, lo: int, hi: int, column: Column) -> Any:
    if isinstance(block, np.ndarray):
        return block[lo:hi]
    return [_var_value(block, i, column) for i in range(lo, hi)]


def _join(pieces: list[Any], column: Column) -> Any:
    if isinstance(column.type, Array):
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
    return [value for piece in pieces for value in piece]


def _empty(column: Column) -> Any:
    if isinstance(column.type, Array):
        return np.empty((0, *column.type.shape), column.type.numpy_dtype)
    return []


def open(
    path: str | os.PathLike[str], *, verify: bool = True, cache_bytes: int = DEFAULT_CACHE_BYTES
) -> Dataset:
    """Open a ``.bale`` file for reading. See ``Dataset``."""
    return Dataset(path, verify=verify, cache_bytes=cache_bytes)


def reader_of(dataset: Dataset) -> Dataset:
    """The engine behind a Dataset: block-level reads, stored groups, mapped columns and sizing,
    for bale's own layers (loader, operations, adapters, CLI). Not user API."""
    return dataset
