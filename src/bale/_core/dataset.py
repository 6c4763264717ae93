"""The user's view of a file: Dataset (rows, slices, gathers, row groups) and ColumnView (one
column as a lazy array). Block-level work is the engine's, in ``_core/reader.py``."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from bale._core.blocks import Decoded
from bale._core.columns import concat_values
from bale._core.parallel import run_split
from bale._core.reader import DEFAULT_CACHE_BYTES, FileReader
from bale.errors import CorruptFileError
from bale.format.footer import FileIndex
from bale.format.schema import Array, Column, Schema, String

if TYPE_CHECKING:
    from concurrent.futures import Future

    from bale.io.remote_client import RemoteOptions

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

    ``close()`` or ``with bale.open(...) as ds:`` releases the file at once; a Dataset dropped
    without ``close()`` releases it when collected, quietly (reading loses nothing, so there is
    no ResourceWarning). A forked child closes only the descriptor it opened itself.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        verify: bool = True,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        storage_options: Mapping[str, Any] | None = None,
        remote_options: RemoteOptions | None = None,
    ) -> None:
        self._reader = FileReader(
            path,
            verify=verify,
            cache_bytes=cache_bytes,
            storage_options=storage_options,
            remote_options=remote_options,
        )
        self.path = self._reader.path  # a URL is shown without its credentials
        self._location = os.fspath(path)
        self._storage_options = dict(storage_options) if storage_options else None
        self._remote_options = remote_options
        self.verify = verify

    # -- description --------------------------------------------------------------------------

    @property
    def schema(self) -> Schema:
        return self._reader.schema

    @property
    def metadata(self) -> dict[str, Any]:
        return self._reader.index.metadata

    @property
    def index(self) -> FileIndex:
        """The footer's index: row groups, blocks, codecs (read-only use)."""
        return self._reader.index

    @property
    def num_row_groups(self) -> int:
        return self._reader.num_row_groups

    @property
    def row_group_sizes(self) -> tuple[int, ...]:
        return self._reader.groups.sizes()

    @property
    def cache_bytes(self) -> int:
        """Capacity of the decoded-block cache (settable)."""
        return self._reader.cache_bytes

    @cache_bytes.setter
    def cache_bytes(self, value: int) -> None:
        self._reader.cache_bytes = value

    @property
    def columns(self) -> tuple[str, ...]:
        """The column names, in the file's order (from the schema; reads no data)."""
        return tuple(self.schema.names)

    def keys(self) -> tuple[str, ...]:
        """The column names, as a mapping's keys: ``ds[name]`` is that column."""
        return self.columns

    def __contains__(self, name: object) -> bool:
        """``"image" in ds``: whether the file has that column (from the schema; reads no data)."""
        if not isinstance(name, str):
            raise TypeError(
                f"'in' asks for a column name, got {type(name).__name__}; rows are 0..len(ds)-1"
            )
        return name in self.schema

    def __iter__(self) -> Iterator[Row]:
        """Every row in order, as ``ds[i]`` gives it (one row group decoded at a time)."""
        for batch in self.iter_row_groups():
            names = list(batch)
            for values in zip(*(batch[n] for n in names), strict=True):
                yield dict(zip(names, values, strict=True))

    def __len__(self) -> int:
        return self._reader.index.num_rows

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
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"row {i} out of range for {n} rows in {self.path!r}")
        i = i + n if i < 0 else i
        reader = self._reader
        group = reader.groups.group_of(i)
        local = i - reader.groups.start_of(group)
        out: Row = {}
        for position, column in reader.select(columns):
            mapped = reader.mapped_column(position)
            if mapped is not None:
                value = mapped.row(i)
                out[column.name] = value if value.ndim else value[()]
                continue
            value = reader.row(group, position, column, local)
            if isinstance(value, np.ndarray):
                value.flags.writeable = False  # rows are read-only, like views of the cache
            out[column.name] = (
                value if isinstance(column.type, Array) else _text(value, column, self.path, i)
            )
        return out

    def read(self, rows: slice | None = None, columns: Sequence[str] | None = None) -> Batch:
        """Contiguous rows (a slice, default all) as a batch: arrays, or lists for bytes/strings."""
        start, stop, step = (rows or slice(None)).indices(len(self))
        if step != 1:
            return self.take(np.arange(start, stop, step), columns)
        reader = self._reader
        selected = reader.select(columns)
        if stop <= start:
            return {c.name: _empty(c) for _, c in selected}
        first, last = reader.groups.group_of(start), reader.groups.group_of(stop - 1)
        out: Batch = {}
        for position, column in selected:
            mapped = reader.mapped_column(position)
            if mapped is not None:
                out[column.name] = mapped.read(start, stop)
                continue
            pieces = []
            for group in range(first, last + 1):
                block = reader.block(group, position, column)
                g_start, g_stop = reader.groups.rows_of(group)
                lo, hi = max(start, g_start) - g_start, min(stop, g_stop) - g_start
                pieces.append(_slice_of(block, lo, hi, column, self.path, g_start))
            out[column.name] = concat_values(pieces)
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
        reader = self._reader
        selected = reader.select(columns)
        out: Batch = {}
        for position, column in selected:
            mapped = reader.mapped_column(position)
            if mapped is not None:
                out[column.name] = mapped.gather(idx)
        decoded = [(p, c) for p, c in selected if c.name not in out]
        if not decoded:
            return out
        runs = _runs_by_group(reader.groups.groups_of(idx))
        reader.frames.expect_blocks(len(runs) * len(decoded))
        rows = idx.tolist()
        results: dict[int, Any] = {}
        for position, column in decoded:
            if isinstance(column.type, Array):
                results[position] = np.empty(
                    (idx.size, *column.type.shape), column.type.numpy_dtype
                )
            else:
                results[position] = [None] * idx.size

        path = self.path

        def fill(task: tuple[int, Column, int, list[int]]) -> None:
            position, column, group, dests = task
            start = reader.groups.start_of(group)
            result = results[position]
            is_array = isinstance(column.type, Array)
            if len(dests) == 1:  # the common case of a scattered gather: no batch arithmetic
                value = reader.row(group, position, column, rows[dests[0]] - start)
                result[dests[0]] = value if is_array else _text(value, column, path, rows[dests[0]])
                return
            values = reader.rows(group, position, column, [rows[d] - start for d in dests])
            if is_array:
                result[dests] = values
            else:
                for dest, value in zip(dests, values, strict=True):
                    result[dest] = _text(value, column, path, rows[dest])

        # Each (column, row group) is decoded once. Whole blocks are decoded in parallel threads;
        # reads of single frames stay in this thread (measured: threads only add GIL contention
        # to work that small, docs/DECISIONS.md).
        heavy: list[tuple[int, Column, int, list[int]]] = []
        light: list[tuple[int, Column, int, list[int]]] = []
        for p, c in decoded:
            for g, dests in runs:
                whole = reader.decodes_whole_block(g, p, len(dests))
                (heavy if whole else light).append((p, c, g, dests))
        if len(heavy) > 1:
            run_split(fill, heavy)
        else:
            light += heavy
        for task in light:
            fill(task)
        for position, column in decoded:
            out[column.name] = results[position]
        return {c.name: out[c.name] for _, c in selected}  # the columns in the order asked

    def iter_row_groups(
        self, columns: Sequence[str] | None = None, *, threads: int = 1
    ) -> Iterator[Batch]:
        """Each row group in order as a batch: one read per group when its columns are adjacent,
        the next groups requested from the kernel ahead of time. With ``threads`` > 1, that many
        groups are read and decoded in parallel ahead of the consumer (codecs release the GIL)."""
        reader = self._reader
        requested = 0  # groups up to this one have been asked of the kernel

        def read(group: int) -> Batch:
            return self.read_row_group(group, columns)

        if threads <= 1:
            for group in range(self.num_row_groups):
                requested = reader.read_ahead(group, requested)
                yield read(group)
            return
        # Imported here: concurrent.futures pulls in logging, a cost `import bale` need not pay.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads, thread_name_prefix="bale-read") as pool:
            pending: deque[Future[Batch]] = deque()
            next_group = 0
            try:
                while next_group < self.num_row_groups or pending:
                    while next_group < self.num_row_groups and len(pending) < threads:
                        requested = reader.read_ahead(next_group, requested)
                        pending.append(pool.submit(read, next_group))
                        next_group += 1
                    yield pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()

    def read_row_group(self, group: int, columns: Sequence[str] | None = None) -> Batch:
        """Row group ``group`` as a batch."""
        reader = self._reader
        selected = reader.select(columns)
        payloads = reader.read_group_span(
            group, [p for p, _ in selected if p not in reader.mappable]
        )
        start, stop = reader.groups.rows_of(group)
        out: Batch = {}
        for position, column in selected:
            mapped = reader.mapped_column(position)
            if mapped is not None:
                out[column.name] = mapped.read(start, stop)
                continue
            block = reader.decode(group, position, column, payloads.get(position))
            out[column.name] = _slice_of(block, 0, stop - start, column, self.path, start)
        return out

    # -- lifecycle ----------------------------------------------------------------------------

    def evict_from_page_cache(self) -> None:
        """Drop this file from the OS page cache and bale's block cache (cold-read measurements)."""
        self._reader.evict_from_page_cache()

    def close(self) -> None:
        self._reader.close()

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
        return {
            "path": self._location,
            "verify": self.verify,
            "cache_bytes": self.cache_bytes,
            "storage_options": self._storage_options,
            "remote_options": self._remote_options,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["path"],
            verify=state["verify"],
            cache_bytes=state["cache_bytes"],
            storage_options=state.get("storage_options"),
            remote_options=state.get("remote_options"),
        )


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


def _runs_by_group(groups: np.ndarray) -> list[tuple[int, list[int]]]:
    """(group, positions in the request of the rows it holds) for each group asked, in the order
    groups were first asked."""
    if len(groups) <= 4096:  # a dict of lists beats sorting for the gathers of a training batch
        runs: dict[int, list[int]] = {}
        for dest, group in enumerate(groups.tolist()):
            runs.setdefault(group, []).append(dest)
        return list(runs.items())
    order = np.argsort(groups, kind="stable")
    bounds = np.flatnonzero(np.diff(groups[order])) + 1
    return [(int(groups[run[0]]), run.tolist()) for run in np.split(order, bounds)]


def _text(raw: bytes, column: Column, path: str, row: int) -> Any:
    """A string column's value as str (bytes columns: as stored). Bytes that are not UTF-8 can
    only come from damage read with ``verify=False``: a CorruptFileError, not a UnicodeError."""
    if not isinstance(column.type, String):
        return raw
    try:
        return raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise CorruptFileError(
            f"the stored string is not UTF-8 ({exc.reason} at byte {exc.start}): the file is "
            "damaged (verify=True reports where)",
            path=path,
            column=column.name,
            rows=(row, row + 1),
        ) from exc


def _slice_of(block: Decoded, lo: int, hi: int, column: Column, path: str, first: int) -> Any:
    """Rows lo..hi-1 of a block whose row 0 is the file's row ``first``."""
    if isinstance(block, np.ndarray):
        return block[lo:hi]
    return [_text(block.row(i), column, path, first + i) for i in range(lo, hi)]


def _empty(column: Column) -> Any:
    if isinstance(column.type, Array):
        return np.empty((0, *column.type.shape), column.type.numpy_dtype)
    return []


def open(
    path: str | os.PathLike[str],
    *,
    verify: bool = True,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    storage_options: Mapping[str, Any] | None = None,
    remote_options: RemoteOptions | None = None,
) -> Dataset:
    """Open a ``.bale`` file for reading: a local path, or a URL (``s3://``, ``gs://``,
    ``az://``, ``https://``, any fsspec URL) with ``storage_options`` for its client
    (credentials, endpoint, region; the usual environment variables and config files apply
    too), and ``remote_options`` (``bale.io.remote.RemoteOptions``: time limits, retries,
    read-ahead, the local disk cache ``cache_dir``/``cache_bytes``; the bale repository's
    docs/REMOTE.md). URLs need a client: ``pip install obstore`` reads S3, GCS, Azure and HTTP;
    fsspec reads the others and in forked workers (``pip install fsspec`` with ``s3fs``,
    ``gcsfs``, ``adlfs`` or ``aiohttp``). See ``Dataset``."""
    return Dataset(
        path,
        verify=verify,
        cache_bytes=cache_bytes,
        storage_options=storage_options,
        remote_options=remote_options,
    )


def reader_of(dataset: Dataset) -> FileReader:
    """The engine behind a Dataset: block-level reads, stored groups, mapped columns and sizing,
    for bale's own layers (loader, operations, adapters, CLI). Not user API."""
    return dataset._reader
