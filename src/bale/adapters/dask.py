"""Dask adapter: one array column of a bale file as a ``dask.array.Array`` whose chunks are whole
row groups, and whose row gathers (``x[indices]``) read only the rows they need.

>>> from bale.dask import from_bale                                     # doctest: +SKIP
>>> x = from_bale("train.bale", "embedding")   # chunks of whole row groups, ~128 MiB each
>>> x.mean(axis=0).compute()                   # each row group read and decoded once
>>> x[perm[:64]].compute()                     # Dataset.take of just those 64 rows

Dask is imported when ``from_bale`` is called, not when this module is imported.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from bale._core.dataset import Dataset, reader_of
from bale.errors import SchemaError, TargetExistsError
from bale.format.constants import TRAILER_SIZE
from bale.format.schema import Array, Bytes, ColumnType, String
from bale.io.remote_url import is_remote
from bale.ops.parts import MergeReport, PartInfo, PartSet

if TYPE_CHECKING:
    import dask.array
    from dask.delayed import Delayed

__all__ = ["from_bale", "read_bale_dataframe", "to_bale"]

DecodeBytes = Callable[[np.ndarray, np.ndarray], np.ndarray]

_INSTALL_HINT = "bale.dask needs Dask: pip install 'dask[array,dataframe]' distributed"
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


# -- writing: to_bale -------------------------------------------------------------------------


def to_bale(
    collection: Any,
    target: str | os.PathLike[str],
    *,
    column: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    compute: bool = True,
    retries: int = 2,
    **writer_kwargs: Any,
) -> MergeReport | Delayed:
    """Write a dask collection to one ``.bale`` file: one part per partition, written by the
    workers, then merged (row groups copied as stored) into ``target``.

    >>> x = da.random.random((100_000, 128), chunks=(10_000, 128))      # doctest: +SKIP
    >>> to_bale(x, "emb.bale", column="embedding")          # rows along axis 0
    >>> to_bale({"image": images, "label": labels}, "train.bale")   # equal lengths
    >>> to_bale(bag_of_row_dicts, "train.bale")             # {"image": array, "label": 3}
    >>> to_bale(dataframe, "table.bale")    # numbers stay scalars, strings become strings

    ``collection`` is a dask array (``column`` names it, "x" by default), a dict of dask arrays
    of equal lengths (rechunked to the first one's row chunks where they differ), a dask bag of
    row dicts (the same keys in every row) or a dask DataFrame (its index is not written).
    Partition ``i`` becomes part ``i`` (``bale.ops.parts.PartSet``), so the file is the same
    whatever the number of workers or the order tasks finish. It runs on the active scheduler
    (threads, processes, a ``dask.distributed`` Client); on a distributed cluster a failed or
    lost task is retried up to ``retries`` times and never writes its rows twice. Parts already
    complete from an earlier, interrupted run with the same target are not computed again
    (those of another length than their partition, where dask knows it, are; remove
    ``{target}.parts`` to start a different job afresh).
    ``writer_kwargs`` go to each part's ``bale.Writer`` (``codecs``, ``row_group_bytes``,
    ``random_access``, ``schema``, ...) except ``metadata``, which goes to the merged file.
    Returns the merge's report; ``compute=False`` returns a ``dask.delayed`` job instead.
    """
    try:
        from dask.base import annotate, tokenize
        from dask.base import compute as compute_all
        from dask.delayed import delayed
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc

    metadata = writer_kwargs.pop("metadata", None)
    given = writer_kwargs.pop("schema", None)
    layout, inputs, lengths = _write_plan(collection, column, os.fspath(target))
    offsets = np.cumsum([0, *lengths]).tolist() if lengths is not None else None
    schema = given if given is not None else layout.schema
    parts = PartSet(target, storage_options=storage_options, overwrite=overwrite)
    if not overwrite and not is_remote(parts.target) and os.path.exists(parts.target):
        # Before any work: the merge at the end would refuse it.
        raise TargetExistsError("the file exists; pass overwrite=True to replace it", path=target)
    # A part of an earlier run is kept only if it holds as many rows as its partition (where
    # dask knows that): parts of some other job under the same name are written again.
    done = {
        index
        for index, info in parts.completed().items()
        if index < len(inputs) and (lengths is None or info.rows == lengths[index])
    }
    keys = [data.key for data in inputs]
    name = f"bale-to-bale-{tokenize(os.fspath(target), layout.kind, keys, schema)}"
    finish = functools.partial(_finish, parts, len(inputs), metadata)
    with annotate(retries=retries):
        writes = [
            delayed(_write_partition)(
                parts,
                index,
                offsets[index] if offsets is not None else None,
                lengths[index] if lengths is not None else None,
                layout,
                schema,
                writer_kwargs,
                data,
                dask_key_name=f"{name}-{index}",
            )
            for index, data in enumerate(inputs)
            if index not in done
        ]
        job: Delayed = delayed(finish)(writes, dask_key_name=name)
    if not compute:
        return job
    written = compute_all(*writes, retries=retries) if writes else ()  # type: ignore[no-untyped-call]
    return finish(list(written))


@dataclasses.dataclass(frozen=True)
class PartLayout:
    """What turns a partition's data into a batch: the collection's ``kind``, the ``schema`` its
    metadata implies (None for a bag: each part infers its own), the column names, and the
    target (for messages). Every write task carries it: it stays small."""

    kind: Literal["array", "arrays", "bag", "frame"]
    schema: dict[str, ColumnType] | None
    names: tuple[str, ...]
    target: str


Plan = tuple[PartLayout, list[Any], list[int] | None]


def _write_plan(collection: Any, column: str | None, target: str) -> Plan:
    """The collection's layout, one dask object per partition computing to its data, and the
    rows of each partition where dask knows them."""
    import dask.array as da
    import dask.bag as db

    if isinstance(collection, da.Array):
        name = column if column is not None else "x"
        return _arrays_plan({name: collection}, "array", target)
    if isinstance(collection, Mapping):
        if column is not None:
            raise ValueError("column names a single array; a dict names its arrays itself")
        if not collection or not all(isinstance(a, da.Array) for a in collection.values()):
            raise TypeError("to_bale takes a dict of dask arrays (name -> array), at least one")
        return _arrays_plan(dict(collection), "arrays", target)
    if column is not None:
        raise ValueError("column names the array of a dask array; bags and frames name theirs")
    if isinstance(collection, db.Bag):
        bag_parts = collection.to_delayed()  # type: ignore[no-untyped-call]
        return PartLayout("bag", None, (), target), list(bag_parts), None
    if _is_frame(collection):
        schema = {
            str(n): _frame_column_type(str(n), t, target) for n, t in collection.dtypes.items()
        }
        if len(schema) != len(collection.columns):
            raise SchemaError("two columns have the same name as strings", path=target)
        frame_parts = collection.to_delayed()
        return PartLayout("frame", schema, tuple(schema), target), list(frame_parts), None
    raise TypeError(
        "to_bale writes a dask array, a dict of dask arrays, a dask bag of row dicts or a dask "
        f"DataFrame, not {type(collection).__name__}"
    )


def _is_frame(collection: Any) -> bool:
    try:
        import dask.dataframe as dd
    except ImportError:  # no pandas: nothing can be a dask DataFrame
        return False
    return isinstance(collection, dd.DataFrame)


def _arrays_plan(arrays: dict[str, Any], kind: Literal["array", "arrays"], target: str) -> Plan:
    schema = {name: _array_column_type(name, a, target) for name, a in arrays.items()}
    first = next(iter(arrays.values()))
    sizes = {name: a.shape[0] for name, a in arrays.items()}
    known = not any(math.isnan(n) for a in arrays.values() for n in a.chunks[0])
    if known and len(set(sizes.values())) > 1:
        raise SchemaError(
            f"the arrays have different numbers of rows: {sizes}; every column needs one "
            "entry per row",
            path=target,
        )
    if not known and len({a.numblocks[0] for a in arrays.values()}) > 1:
        raise SchemaError(
            "arrays of unknown chunk sizes must have the same number of row chunks (their "
            "lengths are checked per partition): call .compute_chunk_sizes() on them first",
            path=target,
        )
    rows = first.chunks[0]
    columns = []
    for name, a in arrays.items():
        if any(math.isnan(n) for n in a.shape[1:]):
            raise SchemaError(
                f"unknown size of a dimension after the first: {a.shape}", path=target, column=name
            )
        wanted = {i: -1 for i in range(1, a.ndim)}  # a part holds whole rows
        if known:
            wanted[0] = rows
        columns.append(a.rechunk(wanted) if wanted else a)
    blocks = [c.to_delayed().reshape(-1) for c in columns]
    inputs = [_row_blocks(*row) if len(row) > 1 else row[0] for row in zip(*blocks, strict=True)]
    lengths = [int(n) for n in rows] if known else None
    return PartLayout(kind, schema, tuple(arrays), target), inputs, lengths


def _row_blocks(*blocks: Any) -> Any:
    from dask.delayed import delayed

    return delayed(list, pure=True)(blocks)


def _array_column_type(name: str, array: Any, target: str) -> ColumnType:
    dtype = np.dtype(array.dtype)
    if array.ndim == 0:
        raise SchemaError("a 0-d array has no rows", path=target, column=name)
    if dtype.kind in "US":
        if array.ndim != 1:
            raise SchemaError(
                f"an array of {dtype} must be one string per row, got shape {array.shape}",
                path=target,
                column=name,
            )
        return String() if dtype.kind == "U" else Bytes()
    if dtype.kind not in "biufc" and dtype.name not in _ML_DTYPE_NAMES:
        raise SchemaError(
            f"unsupported dtype {dtype} (bale stores bool, integers, floats, complex numbers, "
            "str and bytes): convert it first, or write row dicts from a dask bag",
            path=target,
            column=name,
        )
    return Array(dtype.name, tuple(int(n) for n in array.shape[1:]))


_ML_DTYPE_NAMES = frozenset({"bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz"})


def _frame_column_type(name: str, dtype: Any, target: str) -> ColumnType:
    import pandas as pd
    from pandas.api import types

    if types.is_bool_dtype(dtype) or types.is_integer_dtype(dtype) or types.is_float_dtype(dtype):
        numpy_dtype = dtype if isinstance(dtype, np.dtype) else getattr(dtype, "numpy_dtype", None)
        if numpy_dtype is not None and np.dtype(numpy_dtype).kind in "biuf":
            return Array(np.dtype(numpy_dtype).name)
    if isinstance(dtype, pd.StringDtype) or dtype == np.dtype(object):
        return String()
    if isinstance(dtype, pd.ArrowDtype):
        import pyarrow as pa

        if pa.types.is_string(dtype.pyarrow_dtype) or pa.types.is_large_string(dtype.pyarrow_dtype):
            return String()
        if pa.types.is_binary(dtype.pyarrow_dtype) or pa.types.is_large_binary(dtype.pyarrow_dtype):
            return Bytes()
    raise SchemaError(
        f"unsupported dtype {dtype} (bale stores numbers, booleans, strings and bytes): "
        "convert the column first (for example .astype('int64') for datetimes)",
        path=target,
        column=name,
    )


def _write_partition(
    parts: PartSet,
    index: int,
    offset: int | None,
    rows: int | None,
    layout: PartLayout,
    schema: Any,
    writer_kwargs: dict[str, Any],
    data: Any,
) -> PartInfo:
    """Write partition ``index`` as part ``index`` (a no-op when that part is complete; an
    empty partition of a bag, whose columns nothing tells, as an empty-part marker). ``offset``:
    the partition's first row in the whole collection and ``rows`` its length, where dask knows
    them: a part already there (a retried or speculative attempt's) of another length is an
    earlier job's, and is written again."""
    batch = _batch_of(layout, index, offset, data)
    try:
        batches = [batch] if batch else []
        info = parts.write_part(index, batches, schema=schema, **writer_kwargs)
        if rows is not None and info.rows != rows:
            info = parts.write_part(
                index, batches, schema=schema, skip_complete=False, **writer_kwargs
            )
        return info
    except SchemaError as exc:
        local = exc.rows if exc.rows is not None and offset is None else None
        shifted = (
            (exc.rows[0] + offset, exc.rows[1] + offset)
            if exc.rows and offset is not None
            else None
        )
        where = f"partition {index}"
        if local:
            first, stop = local
            where += (
                f", its row {first}" if stop - first == 1 else f", its rows {first}..{stop - 1}"
            )
        raise SchemaError(
            f"{where}: {exc.detail}", path=layout.target, column=exc.column, rows=shifted
        ) from exc


def _batch_of(
    layout: PartLayout, index: int, offset: int | None, data: Any
) -> dict[str, Any] | None:
    """The partition's rows as a batch of columns; None when it has no rows and no batch can
    say which columns it would have (an empty partition of a bag)."""
    if layout.kind == "array":
        return {layout.names[0]: data}
    if layout.kind == "arrays":
        lengths = {name: len(block) for name, block in zip(layout.names, data, strict=True)}
        if len(set(lengths.values())) > 1:
            raise SchemaError(
                f"partition {index}: the arrays have different numbers of rows {lengths}",
                path=layout.target,
            )
        return dict(zip(layout.names, data, strict=True))
    if layout.kind == "frame":
        return _frame_batch(data, index, layout)
    return _bag_batch(list(data), index, layout.target)


def _part_error(
    message: str, index: int, target: str, column: str | None = None, row: int | None = None
) -> SchemaError:
    where = f"partition {index}" + (f", its row {row}" if row is not None else "")
    return SchemaError(f"{where}: {message}", path=target, column=column)


def _bag_batch(rows: list[Any], index: int, target: str) -> dict[str, Any] | None:
    if not rows:
        return None
    if not isinstance(rows[0], Mapping):
        raise _part_error(
            f"a bag written to bale holds row dicts, got {type(rows[0]).__name__}",
            index,
            target,
            row=0,
        )
    names = list(rows[0])
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or set(row) != set(names):
            got = sorted(row) if isinstance(row, Mapping) else type(row).__name__
            raise _part_error(
                f"ragged rows: this row has {got}, the partition's first row {sorted(names)}",
                index,
                target,
                row=i,
            )
    return {name: _bag_column([row[name] for row in rows], name, index, target) for name in names}


def _bag_column(values: list[Any], name: str, index: int, target: str) -> Any:
    first = values[0]
    if isinstance(first, (str, bytes, bytearray, memoryview, np.bytes_)):
        want = str if isinstance(first, str) else (bytes, bytearray, memoryview, np.bytes_)
        for i, value in enumerate(values):
            if not isinstance(value, want):
                kind = "str" if want is str else "bytes"
                raise _part_error(
                    f"expected {kind} (as in the partition's first row), got "
                    f"{type(value).__name__}",
                    index,
                    target,
                    column=name,
                    row=i,
                )
        return values
    arrays = [np.asarray(v) for v in values]
    shape = arrays[0].shape
    for i, a in enumerate(arrays):
        if a.dtype.kind not in "biufc" and a.dtype.name not in _ML_DTYPE_NAMES:
            raise _part_error(
                f"unsupported value {type(values[i]).__name__} (of dtype {a.dtype}): rows hold "
                "numbers, arrays, str or bytes",
                index,
                target,
                column=name,
                row=i,
            )
        if a.shape != shape:
            raise _part_error(
                f"ragged values: shape {list(a.shape)} here, {list(shape)} in the partition's "
                "first row (a column holds one shape)",
                index,
                target,
                column=name,
                row=i,
            )
    return np.stack(arrays)


def _frame_batch(frame: Any, index: int, layout: PartLayout) -> dict[str, Any]:
    out: dict[str, Any] = {}
    schema = layout.schema or {}
    for name, series in zip(layout.names, (frame[c] for c in frame.columns), strict=True):
        kind = schema[name]
        missing = series.isna().to_numpy()
        if (
            isinstance(kind, Array)
            and kind.numpy_dtype.kind == "f"
            and isinstance(series.dtype, np.dtype)
        ):
            missing = np.zeros(len(series), bool)  # NaN is a float like any other
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise _part_error(
                f"missing value ({series.iloc[row]!r}): bale has no nulls; fill or drop them first",
                index,
                layout.target,
                column=name,
                row=row,
            )
        if isinstance(kind, Array):
            out[name] = series.to_numpy(dtype=kind.numpy_dtype)
        else:
            values = series.tolist()
            want = str if isinstance(kind, String) else (bytes, bytearray)
            for row, value in enumerate(values):
                if not isinstance(value, want):
                    raise _part_error(
                        f"expected {kind.kind}, got {type(value).__name__} ({value!r:.40})",
                        index,
                        layout.target,
                        column=name,
                        row=row,
                    )
            out[name] = values
    return out


def _finish(
    parts: PartSet, count: int, metadata: Mapping[str, Any] | None, written: Sequence[PartInfo]
) -> MergeReport:
    """Every part merged, in partition order, into the target (``written``: what the write
    tasks returned, a dependency rather than an input)."""
    return parts.merge(count, metadata=metadata)


# -- reading tables: read_bale_dataframe ------------------------------------------------------


def read_bale_dataframe(
    path_or_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    columns: Sequence[str] | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> Any:
    """The scalar, string and bytes columns of one or more bale files as a dask DataFrame.

    >>> df = read_bale_dataframe(["train-0.bale", "train-1.bale"], ["label", "path"])  # doctest: +SKIP
    >>> df.label.value_counts().compute()
    >>> df.loc[1_000:1_999].compute()             # index: row numbers across the files

    A partition is a run of whole row groups of one file, about dask's ``array.chunk-size``
    (128 MiB) of raw data; the index counts rows across the files in order, so the divisions
    are known (from the footers: nothing else is read until a partition is computed). Strings
    are pandas' ``string[pyarrow]``, bytes pyarrow ``binary``. Array columns of several values
    per row are refused: read them with ``from_bale(path, column)``. Paths may be URLs read with
    ``storage_options`` (see ``bale.open``).
    """
    try:
        import dask
        import dask.dataframe as dd
        from dask.utils import parse_bytes
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc

    paths: list[str | os.PathLike[str]]
    if isinstance(path_or_paths, (str, os.PathLike)):
        paths = [path_or_paths]
    else:
        paths = list(path_or_paths)
    if not paths:
        raise ValueError("read_bale_dataframe needs at least one path")
    datasets = [Dataset(p, cache_bytes=0, storage_options=storage_options) for p in paths]
    first = datasets[0]
    names = list(columns) if columns is not None else first.schema.names
    for name in names:
        if name not in first.schema:
            raise KeyError(
                f"no column {name!r} in {first.path!r}; columns are {first.schema.names}"
            )
        kind = first.schema[name].type
        if isinstance(kind, Array) and kind.shape:
            raise SchemaError(
                f"read_bale_dataframe reads scalar, string and bytes columns; this one holds "
                f"{kind.dtype}{list(kind.shape)} per row: read it as an array with "
                "bale.dask.from_bale(path, column)",
                path=first.path,
                column=name,
            )
    for other in datasets[1:]:
        for name in names:
            theirs = other.schema[name].type if name in other.schema else None
            if theirs != first.schema[name].type:
                raise SchemaError(
                    f"holds {theirs.kind if theirs else 'no such column'}"
                    f"{'' if not isinstance(theirs, Array) else ' ' + theirs.dtype}, while "
                    f"{first.path!r} holds {first.schema[name].type}: the files of one "
                    "DataFrame need the same columns",
                    path=other.path,
                    column=name,
                )
    limit = parse_bytes(dask.config.get("array.chunk-size"))
    pieces: list[tuple[int, int, int, int]] = []  # (file, first row, stop, first row overall)
    total = 0
    for number, dataset in enumerate(datasets):
        row_bytes = _raw_row_bytes(dataset, names)
        target = max(1, int(limit // row_bytes)) if row_bytes else max(1, len(dataset))
        start = 0
        for rows in whole_group_chunks(dataset.row_group_sizes, target):
            if rows:
                pieces.append((number, start, start + rows, total + start))
            start += rows
        total += len(dataset)
    reader = FrameReader(tuple(datasets), tuple(names))
    meta = reader.empty()
    if not pieces:
        return dd.from_pandas(meta, npartitions=1)  # type: ignore[no-untyped-call]
    divisions = (*(piece[3] for piece in pieces), total - 1)
    return dd.from_map(  # type: ignore[no-untyped-call]
        reader,
        pieces,
        meta=meta,
        divisions=divisions,
        label="read-bale",
        enforce_metadata=False,
    )


def _raw_row_bytes(dataset: Dataset, names: Sequence[str]) -> float:
    """Raw (decoded) bytes per row of these columns, from the footer's block sizes."""
    if not len(dataset):
        return 0.0
    blocks = dataset.index.blocks
    raw = sum(int(blocks[:, dataset.schema.index(n)]["raw_size"].sum()) for n in names)
    return raw / len(dataset)


class FrameReader:
    """One partition of ``read_bale_dataframe``: rows ``[start, stop)`` of one file as a pandas
    DataFrame indexed by row number across the files. Pickles by path (``Dataset`` does)."""

    def __init__(self, datasets: tuple[Dataset, ...], names: tuple[str, ...]) -> None:
        self.datasets = datasets
        self.names = names
        # The graph's names: a rewritten file never reuses results cached for the old one.
        self._token = [(d.path, *_version_of(d)) for d in datasets], names

    def __dask_tokenize__(self) -> Any:
        return self._token

    def __call__(self, piece: tuple[int, int, int, int]) -> Any:
        number, start, stop, first = piece
        batch = self.datasets[number].read(slice(start, stop), self.names)
        return self._frame(batch, first, stop - start)

    def empty(self) -> Any:
        dataset = self.datasets[0]
        return self._frame({n: _empty_of(dataset, n) for n in self.names}, 0, 0)

    def _frame(self, batch: Mapping[str, Any], first: int, rows: int) -> Any:
        import pandas as pd
        import pyarrow as pa

        schema = self.datasets[0].schema
        index = pd.RangeIndex(first, first + rows)
        data = {}
        for name in self.names:
            kind = schema[name].type
            if isinstance(kind, String):
                dtype: Any = pd.StringDtype("pyarrow")
            elif isinstance(kind, Bytes):
                dtype = pd.ArrowDtype(pa.binary())
            else:
                dtype = None
            values = batch[name]
            if isinstance(values, np.ndarray) and not values.flags.writeable:
                values = values.copy()  # a view of the file's mapping or of a decoded block
            data[name] = pd.Series(values, index=index, dtype=dtype, copy=False)
        return pd.DataFrame(data, index=index, columns=list(self.names))


def _empty_of(dataset: Dataset, name: str) -> Any:
    kind = dataset.schema[name].type
    return np.empty(0, kind.numpy_dtype) if isinstance(kind, Array) else []
