"""Dask adapter: one array column of a bale file as a ``dask.array.Array`` whose chunks are whole
row groups, and whose row gathers (``x[indices]``) read only the rows they need.

>>> from bale.dask import from_bale                                     # doctest: +SKIP
>>> x = from_bale("train.bale", "embedding")   # chunks of whole row groups, ~128 MiB each
>>> x.mean(axis=0).compute()                   # each row group read and decoded once
>>> x[perm[:64]].compute()                     # Dataset.take of just those 64 rows

Dask is imported when ``from_bale`` is called, not when this module is imported.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from bale._core.dataset import Dataset, reader_of
from bale.errors import SchemaError
from bale.format.constants import TRAILER_SIZE
from bale.format.schema import Array
from bale.io.remote_url import is_remote

if TYPE_CHECKING:
    import dask.array

__all__ = ["from_bale"]

DecodeBytes = Callable[[np.ndarray, np.ndarray], np.ndarray]

_INSTALL_HINT = "bale.dask needs Dask: pip install 'bale[dask]'"
#: Bytes one task of a gather aims to decode: a batch scattered over many whole blocks is read
#: by several tasks in parallel, one that needs little (frames of random_access files) by one.
PART_BYTES = 8 << 20


def from_bale(
    path: str | os.PathLike[str],
    column: str,
    *,
    chunks: int | Literal["auto"] = "auto",
    storage_options: Mapping[str, Any] | None = None,
) -> dask.array.Array:
    """A lazy dask array of an array column, chunked by whole row groups.

    >>> x = from_bale("train.bale", "image")                            # doctest: +SKIP
    >>> x.mean(axis=0).compute()          # chunks of row groups, about array.chunk-size each
    >>> x[np.random.permutation(len(x))[:64]].compute()   # reads only those 64 rows
    >>> from_bale("train.bale", "image", chunks=1).chunks[0] == bale.open(...).row_group_sizes

    ``chunks="auto"`` makes chunks of consecutive row groups of at most dask's
    ``array.chunk-size`` (128 MiB by default) of decoded data each, as even as whole groups
    allow, a single larger group alone; an int ``chunks`` aims at that many rows instead
    (``chunks=1``: one row group per chunk). A row group is never split, so a whole-array
    computation reads and decodes every block once. Slices (``x[a:b]``, ``x[i]``) read only the
    row groups they touch. A gather by an integer array or boolean mask on the first axis
    (``x[indices]``, ``x[indices, 2:5]``) becomes ``Dataset.take`` tasks of just those rows,
    each decoding about ``PART_BYTES`` (a scattered batch is decoded in parallel), which read
    only the needed row groups (only the needed frames in files written with
    ``random_access=True``) instead of whole chunks; a gather that would read a row group for
    two output chunks, or one on a derived array (``x[10:][indices]``), goes through dask's
    own indexing instead.

    Works with every scheduler: the file is reopened by path in other processes or machines.
    ``path`` may be a URL (``s3://``, ``gs://``, ``https://``, ...) read with
    ``storage_options`` (see ``bale.open``); the graph carries them (in its pickles, never in
    its names or reprs) so that workers reopen the URL. Chunks are new arrays, never views of a
    cache. The graph's name depends on the file's path, size and modification time (for a URL:
    its size and trailer, which holds the footer's checksum) and on the chunking, so a rewritten
    file never reuses results cached for the old one. Bytes and string columns are not arrays: read them with
    ``bale.open(path)[column]`` instead.
    """
    try:
        import dask
        import dask.array as da
        from dask.utils import parse_bytes
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc

    # No block cache: each row group is decoded once by the task that needs it, and results
    # never alias a cache.
    dataset = Dataset(path, cache_bytes=0, storage_options=storage_options)
    if column not in dataset.schema:
        names = dataset.schema.names
        dataset.close()
        raise KeyError(f"no column {column!r} in {dataset.path!r}; columns are {names}")
    kind = dataset.schema[column].type
    if not isinstance(kind, Array):
        dataset.close()
        raise SchemaError(
            f"from_bale reads array columns; this one holds {kind.kind} (variable-length "
            "values are no dask array): read it with bale.open(path)[column]",
            path=dataset.path,
            column=column,
        )
    if chunks == "auto":
        limit = parse_bytes(dask.config.get("array.chunk-size"))
        target = limit // kind.row_nbytes if kind.row_nbytes else len(dataset)
    elif isinstance(chunks, (int, np.integer)) and not isinstance(chunks, bool) and chunks >= 1:
        target = int(chunks)
    else:
        dataset.close()
        raise ValueError(f"chunks must be 'auto' or a positive number of rows, not {chunks!r}")
    dtype, shape = kind.numpy_dtype, tuple(kind.shape)
    if not len(dataset):
        empty: dask.array.Array = da.zeros((0, *shape), dtype=dtype)
        return empty
    row_chunks = whole_group_chunks(dataset.row_group_sizes, target)
    token = dask.base.tokenize(dataset.path, *_version_of(dataset), column, row_chunks)
    source = ColumnSource(dataset, column)
    plain = da.from_array(  # type: ignore[no-untyped-call]
        source,
        chunks=(row_chunks, *((n,) for n in shape)),
        name=f"bale-{column}-{token}",
        fancy=True,
        asarray=False,
        meta=np.empty((0,) * source.ndim, dtype),
    )
    return _gathering(plain, source)


def _version_of(dataset: Dataset) -> tuple[Any, ...]:
    """What tells this version of the file from a rewritten one: a local file's size and
    modification time; an object's size and trailer (the footer's offset, length and checksum:
    the object's own cached tail, no request), as object stores have no portable mtime."""
    if not is_remote(dataset.path):
        stat = os.stat(dataset.path)
        return stat.st_size, stat.st_mtime_ns
    source = reader_of(dataset).source
    size = source.size()
    return size, bytes(source.read(size - TRAILER_SIZE, TRAILER_SIZE))


def whole_group_chunks(group_sizes: Sequence[int], target_rows: int) -> tuple[int, ...]:
    """Rows per chunk: runs of consecutive row groups, none over ``target_rows`` unless it is a
    single group, as few as that allows and as even as whole groups allow (even chunks keep
    more workers busy to the end of a computation).

    >>> whole_group_chunks((300, 300, 100, 300), 650)
    (600, 400)
    >>> whole_group_chunks((100,) * 10, 800)  # two chunks of 500 rows, not 800 and 200
    (500, 500)
    """
    count = len(_runs(group_sizes, lambda rows, size, done: rows + size > target_rows))
    total = sum(group_sizes)

    def full(rows: int, size: int, done: list[int]) -> bool:
        # over the limit, or most of the group beyond this chunk's share of what remains
        share = (total - sum(done)) / max(count - len(done), 1)
        return rows + size > target_rows or rows + size / 2 > share

    return _runs(group_sizes, full)


def _runs(
    group_sizes: Sequence[int], full: Callable[[int, int, list[int]], bool]
) -> tuple[int, ...]:
    """Rows per run of consecutive groups, a run closed before a group when ``full(rows so far,
    group size, runs so far)``; every run holds at least one group."""
    out: list[int] = []
    rows = 0
    for size in group_sizes:
        if rows and full(rows, size, out):
            out.append(rows)
            rows = 0
        rows += size
    if rows or not out:
        out.append(rows)
    return tuple(out)


class ColumnSource:
    """One array column as the array-like that ``dask.array.from_array`` slices: ``shape``,
    ``dtype``, ``ndim`` and ``source[key]`` for a row slice, row number, integer array or mask,
    optionally followed by keys for the trailing dimensions. Pickles by path (``Dataset`` does,
    a URL with its storage options).
    """

    def __init__(self, dataset: Dataset, column: str) -> None:
        kind = dataset.schema[column].type
        if not isinstance(kind, Array):
            raise SchemaError("not an array column", path=dataset.path, column=column)
        self.dataset = dataset
        self.column = column
        self.dtype: np.dtype[Any] = kind.numpy_dtype
        self.shape: tuple[int, ...] = (len(dataset), *kind.shape)
        self.ndim = len(self.shape)
        self.group_starts = np.cumsum((0, *dataset.row_group_sizes), dtype=np.int64)
        index = dataset.index
        blocks = index.blocks[:, dataset.schema.index(column)]
        self._block_bytes = blocks["raw_size"].astype(np.int64)
        if {index.codecs[int(c)].get("id") for c in np.unique(blocks["codec"])} == {"none"}:
            self._row_bytes = np.full(len(blocks), kind.row_nbytes, np.int64)  # copied, not decoded
        else:  # a row decodes its frame (random_access files) or else its whole block
            self._row_bytes = np.minimum(self._block_bytes, int(index.segment_bytes))

    def decode_bytes(self, groups: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """About how many bytes reading ``counts`` rows of each of ``groups`` decodes."""
        out: np.ndarray = np.minimum(self._block_bytes[groups], counts * self._row_bytes[groups])
        return out

    def __getitem__(self, key: Any) -> Any:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):  # rare: dask hands over explicit keys
            return self[:][key]
        rows, rest = (key[0], key[1:]) if key else (slice(None), ())
        if isinstance(rows, np.ndarray) and rows.ndim == 0:
            rows = rows.item()
        if isinstance(rows, (int, np.integer)) and not isinstance(rows, bool):
            value = self.dataset.take([int(rows)], [self.column])[self.column][0]
        elif isinstance(rows, slice):
            value = self._read(rows)
            rest = (slice(None), *rest) if rest else ()
        else:
            value = self.dataset.take(rows, [self.column])[self.column]
            rest = (slice(None), *rest) if rest else ()
        if rest:
            value = value[rest]
        if isinstance(value, np.ndarray) and not value.flags.writeable:
            value = value.copy()  # a view of a decoded block: give the caller its own array
        return value

    def _read(self, rows: slice) -> np.ndarray:
        start, stop, step = rows.indices(self.shape[0])
        column = self.column
        if step != 1:
            taken: np.ndarray = self.dataset.take(np.arange(start, stop, step), [column])[column]
            return taken
        # Filled one row group at a time: a chunk of many groups peaks at its own size plus one
        # decoded block, not twice its size as when decoded pieces are concatenated.
        cuts = self.group_starts[(self.group_starts > start) & (self.group_starts < stop)]
        bounds = [start, *cuts.tolist(), stop]
        if len(bounds) == 2:
            read: np.ndarray = self.dataset.read(slice(start, stop), [column])[column]
            return read
        out = np.empty((stop - start, *self.shape[1:]), self.dtype)
        for lo, hi in itertools.pairwise(bounds):
            out[lo - start : hi - start] = self.dataset.read(slice(lo, hi), [column])[column]
        return out

    def __repr__(self) -> str:
        return f"<bale column {self.column!r} of {self.dataset.path!r}: {self.shape} {self.dtype}>"


def gather_rows(key: Any, num_rows: int) -> tuple[np.ndarray, tuple[Any, ...]] | None:
    """(row numbers, trailing key) when ``key`` gathers rows by an integer array or a boolean
    mask on the first axis and indexes the rest by slices and integers only; None otherwise
    (then dask's own indexing handles the key, and raises for a bad one)."""
    key = key if isinstance(key, tuple) else (key,)
    if not key or not isinstance(key[0], (list, np.ndarray)):
        return None
    rest = key[1:]
    if any(isinstance(k, (list, np.ndarray)) or hasattr(k, "__dask_graph__") for k in rest):
        return None
    rows = np.asarray(key[0])
    if rows.dtype == bool and rows.shape == (num_rows,):
        rows = np.flatnonzero(rows)
    if rows.ndim != 1 or not rows.size or rows.dtype.kind not in "iu":
        return None
    rows = rows.astype(np.int64)
    if int(rows.min()) < -num_rows or int(rows.max()) >= num_rows:
        return None
    return np.where(rows < 0, rows + num_rows, rows), rest


def pieces_of(rows: np.ndarray, piece_rows: int, group_starts: np.ndarray) -> list[np.ndarray]:
    """``rows`` cut, in order, into output chunks of ``piece_rows``; an empty list when some row
    group would then be read for two chunks (dask's indexing reads each chunk once instead)."""
    pieces = [rows[i : i + piece_rows] for i in range(0, len(rows), piece_rows)]
    if len(pieces) > 1:
        groups = np.searchsorted(group_starts, rows, side="right") - 1
        pairs = sum(
            len(np.unique(groups[i : i + piece_rows])) for i in range(0, len(rows), piece_rows)
        )
        if pairs > len(np.unique(groups)):
            return []
    return pieces


def parts_of(
    rows: np.ndarray, group_starts: np.ndarray, decode_bytes: DecodeBytes, part_bytes: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """``rows`` split into takes of whole row groups (rows of one group together, in order) that
    decode about ``part_bytes`` each, and the permutation that puts the takes' rows back in
    ``rows``' order."""
    groups = np.searchsorted(group_starts, rows, side="right") - 1
    order = np.argsort(groups, kind="stable")
    touched, counts = np.unique(groups, return_counts=True)
    costs = decode_bytes(touched, counts)
    part_of_group = (np.cumsum(costs) - costs) // max(part_bytes, 1)  # by where each one starts
    part = np.repeat(part_of_group, counts)  # rows in group order, as rows[order] lists them
    parts = np.split(rows[order], np.flatnonzero(np.diff(part)) + 1)
    return parts, np.argsort(order)


def _merge(parts: list[np.ndarray], inverse: np.ndarray) -> np.ndarray:
    merged: np.ndarray = np.concatenate(parts)[inverse]
    return merged


@functools.cache
def _gathering_type() -> type[dask.array.Array]:
    # Built on first use: a subclass of dask's Array must not import dask with this module.
    import dask.array as da
    from dask.array.core import getter
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    class GatheringArray(da.Array):
        """A from_bale array: a row gather by an integer array becomes ``Dataset.take`` tasks
        rather than whole chunks read and then indexed. Anything derived is a plain Array."""

        _bale_source: ColumnSource

        def __getitem__(self, index: Any) -> Any:
            source = self.__dict__.get("_bale_source")
            plan = None if source is None else gather_rows(index, self.shape[0])
            if source is None or plan is None:
                return super().__getitem__(index)  # type: ignore[no-untyped-call]
            rows, rest = plan
            pieces = pieces_of(rows, max(self.chunks[0]), source.group_starts)
            if not pieces:
                return super().__getitem__(index)  # type: ignore[no-untyped-call]
            name = f"bale-take-{source.column}-{tokenize(self.name, rows)}"
            trailing = (0,) * (self.ndim - 1)
            # The source under a key of its own, as from_array does: dask's slice fusion
            # expects a getter's array to be a graph node.
            origin = f"original-{name}"
            layer: dict[Any, Any] = {origin: source}
            for i, piece in enumerate(pieces):
                parts, inverse = parts_of(
                    piece, source.group_starts, source.decode_bytes, PART_BYTES
                )
                if len(parts) == 1:
                    layer[(name, i, *trailing)] = (getter, origin, piece, False, None)
                    continue
                for j, part in enumerate(parts):
                    layer[(f"part-{name}", i, j)] = (getter, origin, part, False, None)
                part_keys = [(f"part-{name}", i, j) for j in range(len(parts))]
                layer[(name, i, *trailing)] = (_merge, part_keys, inverse)
            graph = HighLevelGraph.from_collections(name, layer, dependencies=())
            chunks = (tuple(len(p) for p in pieces), *self.chunks[1:])
            taken = da.Array(graph, name, chunks, meta=self._meta)  # type: ignore[no-untyped-call]
            return taken[(slice(None), *rest)] if rest else taken

        def __reduce__(self) -> Any:
            return _rebuild, (self.dask, self.name, self.chunks, self._meta, self._bale_source)

    return GatheringArray


def _gathering(plain: dask.array.Array, source: ColumnSource) -> dask.array.Array:
    array = _gathering_type()(plain.dask, plain.name, plain.chunks, meta=plain._meta)
    array._bale_source = source  # type: ignore[attr-defined]
    return array


def _rebuild(graph: Any, name: str, chunks: Any, meta: Any, source: ColumnSource) -> Any:
    import dask.array as da

    plain = da.Array(graph, name, chunks, meta=meta)  # type: ignore[no-untyped-call]
    return _gathering(plain, source)
