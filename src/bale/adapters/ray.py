"""Ray Data adapter: ``BaleDatasource`` (bale files -> a Ray Dataset, one read task per run of
row groups) and ``BaleDatasink`` (a Ray Dataset -> one part per write task, merged into one file).

>>> import ray, bale.ray                                                 # doctest: +SKIP
>>> ds = bale.ray.read_bale("s3://bucket/train-*.bale", columns=["image", "label"])
>>> ds.map_batches(preprocess).write_datasink(bale.ray.BaleDatasink("features.bale"))

This module imports Ray (and pyarrow) when it is imported; ``import bale`` and
``import bale.ray`` never do.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bale._core.dataset import Dataset
from bale.errors import BaleError, SchemaError, TargetExistsError
from bale.format.schema import Array, Bytes, Column, ColumnType, Schema, String
from bale.io.listing import expand_paths
from bale.io.remote_url import is_remote, redact_url
from bale.ops.merge import MergeReport
from bale.ops.parts import PartInfo, PartSet

try:
    import pyarrow as pa
    import ray.data
    from ray.data.block import Block, BlockAccessor, BlockMetadata
    from ray.data.datasource import Datasink, Datasource, ReadTask, WriteResult
    from ray.data.extensions import ArrowTensorArray
except ImportError as exc:  # pragma: no cover - the extra is installed where this is tested
    raise ImportError("bale.ray needs Ray Data: pip install 'ray[data]'") from exc

__all__ = ["BaleDatasink", "BaleDatasource", "read_bale"]


# -- bale <-> Arrow ---------------------------------------------------------------------------


def _arrow_column(column: Column, values: Any, path: str) -> pa.Array:
    """One column of a bale batch as Arrow: scalars as plain arrays, fixed-shape arrays as Ray's
    tensor extension (``to_numpy`` gives back ``(rows, *shape)``), bytes as binary, strings as
    strings."""
    kind = column.type
    if isinstance(kind, Bytes):
        return pa.array(values, pa.binary())
    if isinstance(kind, String):
        return pa.array(values, pa.string())
    try:
        if kind.shape:
            return ArrowTensorArray.from_numpy(np.ascontiguousarray(values))
        return pa.array(values)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise SchemaError(
            f"Arrow (and so Ray Data) has no {kind.dtype} type ({type(exc).__name__}): leave "
            "the column out with columns=[...]",
            path=path,
            column=column.name,
        ) from exc


def arrow_table(columns: Sequence[Column], batch: Mapping[str, Any], path: str) -> pa.Table:
    """A bale batch (arrays, lists of bytes or str) as an Arrow table Ray Data reads."""
    return pa.Table.from_arrays(
        [_arrow_column(c, batch[c.name], path) for c in columns], names=[c.name for c in columns]
    )


def _empty_values(column: Column) -> Any:
    if isinstance(column.type, Array):
        return np.empty((0, *column.type.shape), column.type.numpy_dtype)
    return []


def arrow_schema(columns: Sequence[Column], path: str) -> pa.Schema:
    """The Arrow schema the read tasks' blocks have (from the footer alone)."""
    return arrow_table(columns, {c.name: _empty_values(c) for c in columns}, path).schema


def column_type_of(field: pa.Field) -> ColumnType:
    """The bale column type of an Arrow field of a Ray block: a fixed-shape tensor or a fixed-size
    list -> Array of that shape, a number or bool -> scalar Array, binary -> Bytes, a string ->
    String. Anything else (variable-shaped tensors, lists, structs, timestamps) is a SchemaError
    naming the column."""
    kind = field.type
    shape: list[int] = []
    if isinstance(kind, pa.ExtensionType):
        # Ray's fixed-shape tensors store each row as a list of its elements: value_type.
        fixed = getattr(kind, "shape", None)
        if fixed is None or any(d is None for d in fixed):
            return _unsupported(field, f"{kind.extension_name} (rows of different shapes?)")
        shape, kind = [int(d) for d in fixed], kind.storage_type.value_type
    while pa.types.is_fixed_size_list(kind):
        shape.append(kind.list_size)
        kind = kind.value_type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return Bytes() if not shape else _unsupported(field, "a list of bytes")
    if pa.types.is_fixed_size_binary(kind) and not shape:
        return Bytes()
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return String() if not shape else _unsupported(field, "a list of strings")
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return Array(np.dtype(kind.to_pandas_dtype()).name, tuple(shape))
    return _unsupported(field, f"Arrow type {field.type}")


def _unsupported(field: pa.Field, what: str) -> ColumnType:
    raise SchemaError(
        f"bale stores fixed-shape arrays, bytes and strings, not {what}: convert the column "
        "in map_batches (e.g. stack equal-shaped rows into one array)",
        column=field.name,
    )


def bale_batch(block: Block) -> tuple[dict[str, ColumnType], dict[str, Any]]:
    """A Ray block (Arrow or pandas) as bale column types and a batch the Writer takes."""
    table = BlockAccessor.for_block(block).to_arrow()
    types = {field.name: column_type_of(field) for field in table.schema}
    batch = BlockAccessor.for_block(table).to_batch_format("numpy")
    for name, kind in types.items():
        column = table.column(name)
        if isinstance(kind, Array) and pa.types.is_fixed_size_list(column.type):
            flat = column.combine_chunks()
            while pa.types.is_fixed_size_list(flat.type):
                flat = flat.flatten()  # honours a sliced array's offset, unlike .values
            values = flat.to_numpy(zero_copy_only=False)
            batch[name] = values.reshape(len(column), *kind.shape)
    return types, batch


# -- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupRun:
    """Row groups ``first..stop-1`` of one file: what a read task reads from that file."""

    path: str
    first: int
    stop: int


def split_runs(weights: Sequence[int], parts: int) -> list[tuple[int, int]]:
    """``parts`` (at most one per item) contiguous ranges of items, cut where the running total
    of ``weights`` crosses each equal share, every range non-empty.

    >>> split_runs([10, 10, 10, 10], 2)
    [(0, 2), (2, 4)]
    >>> split_runs([100, 1, 1, 1], 3)
    [(0, 1), (1, 2), (2, 4)]
    """
    count = len(weights)
    parts = max(1, min(parts, count))
    totals = np.cumsum(np.maximum(np.asarray(weights, np.float64), 1.0))
    shares = totals[-1] * np.arange(1, parts) / parts
    cuts = np.searchsorted(totals, shares, side="left") + 1
    bounds = [0]
    for k, cut in enumerate(cuts.tolist(), start=1):
        # at least one item per range before, enough left for the ranges after
        bounds.append(min(max(cut, bounds[-1] + 1), count - (parts - k)))
    bounds.append(count)
    return list(itertools.pairwise(bounds))


class BaleDatasource(Datasource):
    """bale files as a Ray Data source: footers are read once, on the driver; each read task
    reads a contiguous run of row groups (across files) and yields one Arrow block per group.

    >>> ds = ray.data.read_datasource(BaleDatasource(["a.bale", "b.bale"]))   # doctest: +SKIP

    ``paths``: a path or URL, a glob (``data/train-*.bale``, ``s3://bucket/train-*.bale``), a
    prefix ending in ``/``, or a list of them; files are read in the order given, patterns in
    name order. All files must have the selected columns with the same types. ``columns``
    selects columns (Ray's projection pushdown, ``ds.select_columns``, narrows them further).
    Metadata (rows, decoded bytes, schema) comes from the footers, no data is read until the
    tasks run; the tasks reopen each file in the worker (``storage_options`` travel with them).
    """

    def __init__(
        self,
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        columns: Sequence[str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        given = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        if isinstance(columns, str):
            raise TypeError("columns must be a list of names, not a single string")
        self._storage_options = dict(storage_options) if storage_options else None
        self._paths = expand_paths(given, self._storage_options)
        if not self._paths:
            raise BaleError("read_bale was given no paths")
        self._schema: Schema | None = None
        rows: list[np.ndarray] = []
        raw: list[np.ndarray] = []
        for path in self._paths:
            with Dataset(path, cache_bytes=0, storage_options=self._storage_options) as dataset:
                self._check_schema(dataset, columns)
                index = dataset.index
                rows.append(index.groups["num_rows"].astype(np.int64))
                raw.append(index.blocks["raw_size"].astype(np.int64).reshape(len(index.groups), -1))
        if self._schema is None:  # pragma: no cover - expand_paths never returns nothing
            raise BaleError("read_bale was given no paths")
        #: one row per row group of every file: (file, group, rows); raw bytes per column
        self._file: np.ndarray = np.concatenate(
            [np.full(len(r), i, np.int64) for i, r in enumerate(rows)]
        )
        self._group: np.ndarray = np.concatenate([np.arange(len(r), dtype=np.int64) for r in rows])
        self._rows: np.ndarray = np.concatenate(rows)
        self._raw: np.ndarray = (
            np.concatenate(raw) if raw else np.zeros((0, len(self._schema)), np.int64)
        )
        self._projection_map = {name: name for name in columns} if columns is not None else None

    def _check_schema(self, dataset: Dataset, columns: Sequence[str] | None) -> None:
        schema = dataset.schema
        for name in columns or ():
            if name not in schema:
                raise KeyError(
                    f"no column {name!r} in {dataset.path!r}; columns are {schema.names}"
                )
        if self._schema is None:
            self._schema = schema
            return
        first = redact_url(self._paths[0])
        wanted = columns if columns is not None else self._schema.names
        for name in wanted:
            if name not in schema:
                raise SchemaError(
                    f"the file has no such column, but {first!r} has",
                    path=dataset.path,
                    column=name,
                )
            if schema[name].type != self._schema[name].type:
                raise SchemaError(
                    f"holds {schema.describe()[name]}, but {first!r} holds "
                    f"{self._schema.describe()[name]}: every file read together needs the same type",
                    path=dataset.path,
                    column=name,
                )
        if columns is None and schema.names != self._schema.names:
            raise SchemaError(
                f"has the columns {schema.names}, but {first!r} has {self._schema.names}: "
                "pass columns=[...] to read the ones they share",
                path=dataset.path,
            )

    # -- Ray's Datasource API -------------------------------------------------------------------

    def _columns(self) -> list[Column]:
        if self._schema is None:  # pragma: no cover - set by __init__
            raise BaleError("the datasource has no schema")
        names = self._get_data_columns()
        selected = self._schema.names if names is None else names
        return [self._schema[name] for name in selected]

    def _group_bytes(self, columns: Sequence[Column]) -> np.ndarray:
        if self._schema is None:  # pragma: no cover - set by __init__
            raise BaleError("the datasource has no schema")
        positions = [self._schema.index(c.name) for c in columns]
        out: np.ndarray = self._raw[:, positions].sum(axis=1)
        return out

    def supports_projection_pushdown(self) -> bool:
        return True

    def estimate_inmemory_data_size(self) -> int:
        return int(self._group_bytes(self._columns()).sum())

    def get_read_tasks(
        self,
        parallelism: int,
        per_task_row_limit: int | None = None,
        data_context: Any = None,
    ) -> list[ReadTask]:
        columns = self._columns()
        schema = arrow_schema(columns, self._paths[0])
        group_bytes = self._group_bytes(columns)
        storage_options = self._storage_options
        if not len(
            self._rows
        ):  # no rows anywhere: one task of one empty block, so the schema holds
            empty = schema.empty_table()
            meta = BlockMetadata(num_rows=0, size_bytes=0, input_files=None, exec_stats=None)
            return [ReadTask(lambda: [empty], meta, schema=schema)]
        tasks = []
        for lo, hi in split_runs(group_bytes.tolist(), parallelism):
            runs = self._runs(lo, hi)
            meta = BlockMetadata(
                num_rows=int(self._rows[lo:hi].sum()),
                size_bytes=int(group_bytes[lo:hi].sum()),
                input_files=tuple(run.path for run in runs),
                exec_stats=None,
            )
            tasks.append(
                ReadTask(
                    functools.partial(_read_runs, runs, columns, storage_options),
                    meta,
                    schema=schema,
                    per_task_row_limit=per_task_row_limit,
                )
            )
        return tasks

    def _runs(self, lo: int, hi: int) -> list[GroupRun]:
        """Items lo..hi-1 of the flat group table as one run per file."""
        out = []
        files = self._file[lo:hi]
        for i in np.unique(files).tolist():
            groups = self._group[lo:hi][files == i]
            out.append(GroupRun(self._paths[i], int(groups[0]), int(groups[-1]) + 1))
        return out


def _read_runs(
    runs: Sequence[GroupRun], columns: Sequence[Column], storage_options: Mapping[str, Any] | None
) -> Iterator[pa.Table]:
    """A read task's work, in the worker: each row group of its runs as one Arrow block."""
    names = [c.name for c in columns]
    for run in runs:
        # No block cache: each block is decoded once, and the blocks handed to Ray are new
        # arrays, never views of a cache that later reads would evict.
        with Dataset(run.path, cache_bytes=0, storage_options=storage_options) as dataset:
            for group in range(run.first, run.stop):
                yield arrow_table(columns, dataset.read_row_group(group, names), dataset.path)


def read_bale(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    columns: Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    override_num_blocks: int | None = None,
    ray_remote_args: Mapping[str, Any] | None = None,
    concurrency: int | None = None,
) -> ray.data.Dataset:
    """bale files as a lazy ``ray.data.Dataset``, one read task per run of row groups.

    >>> ds = read_bale("data/train-*.bale", columns=["image", "label"])  # doctest: +SKIP
    >>> ds.count(), ds.schema()       # from the footers: no data read yet
    >>> ds.map_batches(normalise, batch_format="numpy").iter_torch_batches(batch_size=256)

    Fixed-shape array columns come out as Ray tensor columns (``batch["image"]`` is an array
    of ``(rows, *shape)`` in numpy batches), scalar columns as Arrow numbers, bytes columns as
    binary, string columns as strings. ``override_num_blocks`` sets the number of read tasks
    (at most one per row group; Ray picks one from the cluster's CPUs otherwise); every task
    reads a contiguous run of row groups of about the same decoded size, in file order. See
    ``BaleDatasource`` for the paths and columns accepted.
    """
    source = BaleDatasource(paths, columns=columns, storage_options=storage_options)
    dataset: ray.data.Dataset = ray.data.read_datasource(
        source,
        override_num_blocks=override_num_blocks,
        ray_remote_args=dict(ray_remote_args) if ray_remote_args else None,
        concurrency=concurrency,
    )
    return dataset


# -- writing ----------------------------------------------------------------------------------


class BaleDatasink(Datasink[PartInfo]):
    """A Ray Data sink that writes ONE ``.bale`` file: each write task writes its blocks to
    one part (``{target}.parts/part-{task index}.bale``), and when every task has finished the
    parts' row groups are copied, in task order, into ``target`` (nothing is decoded or
    recompressed) and the parts removed.

    >>> ds = ray.data.read_images("s3://bucket/raw/", size=(224, 224))    # doctest: +SKIP
    >>> ds.map_batches(preprocess).write_datasink(BaleDatasink("train.bale"))

    Columns: Ray tensor columns of fixed shape and fixed-size lists become array columns,
    numbers and booleans scalar columns, binary bytes columns and strings string columns;
    anything else (ragged tensors, variable lists, structs) is a ``SchemaError`` naming the
    column. ``writer_kwargs`` go to ``bale.Writer`` for every part (``codecs``,
    ``row_group_bytes``, ``row_group_rows``, ``segment_bytes``, ``random_access`` with an
    explicit ``segment_bytes``); ``metadata`` goes to the merged file.

    - A failed task retried by Ray (``ray_remote_args={"max_retries": ...,
      "retry_exceptions": True}`` for exceptions; a dead worker is retried by default) never
      duplicates rows: a part is published whole, under its task's index, and a retry of a task
      whose part is complete keeps it.
    - A failed job leaves nothing under ``target`` (the merge publishes the file whole, or
      nothing); its parts are removed, unless ``resume=True``.
    - ``resume=True`` keeps the complete parts of an earlier, failed run and skips writing
      them (Ray still runs the steps before the write for their blocks): only for the same
      dataset split into the same blocks (same source, same ``override_num_blocks``,
      ``preserve_order=True``). Without it, leftover parts are removed when the write starts.
    - Deterministic: the file's rows are in task order. Tasks fused with the reads (the usual
      ``read -> map_batches -> write``) follow the read order; for any plan, set
      ``ray.data.DataContext.get_current().execution_options.preserve_order = True`` so that
      write tasks get blocks in the dataset's order. The same rows split into the same blocks
      give the same bytes whatever the number of workers.
    - ``min_rows_per_part``: Ray bundles blocks so that each write task (part) gets at least
      that many rows: fewer, fuller parts (each part ends in a partly filled row group).

    After ``write_datasink`` returns, ``sink.report`` is the merge's ``MergeReport``.
    """

    def __init__(
        self,
        target: str | os.PathLike[str],
        *,
        storage_options: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        resume: bool = False,
        metadata: Mapping[str, Any] | None = None,
        min_rows_per_part: int | None = None,
        **writer_kwargs: Any,
    ) -> None:
        if writer_kwargs.get("random_access") and writer_kwargs.get("segment_bytes") is None:
            raise ValueError(
                "random_access=True fits the frame size to each part's first rows, and parts "
                "framed differently cannot be merged as stored: pass segment_bytes= too "
                "(16384 is the usual size)"
            )
        if min_rows_per_part is not None and min_rows_per_part < 1:
            raise ValueError(f"min_rows_per_part must be positive, not {min_rows_per_part}")
        self._parts = PartSet(target, storage_options=storage_options, overwrite=overwrite)
        self._resume = resume
        self._metadata = dict(metadata) if metadata is not None else None
        self._min_rows = min_rows_per_part
        self._writer_kwargs = writer_kwargs
        self.report: MergeReport | None = None

    @property
    def target(self) -> str:
        return self._parts.target

    @property
    def min_rows_per_write(self) -> int | None:
        return self._min_rows

    def get_name(self) -> str:
        return "Bale"

    def on_write_start(self, schema: pa.Schema | None = None) -> None:
        target = self._parts.target
        if not self._parts.overwrite and not is_remote(target) and os.path.exists(target):
            raise TargetExistsError(
                "the file exists; pass overwrite=True to replace it", path=target
            )
        if not self._resume:
            self._parts.remove_parts()  # leftovers of another run hold other rows

    def write(self, blocks: Iterable[Block], ctx: Any) -> PartInfo:
        """One write task: its blocks, in order, as part ``ctx.task_idx``. Blocks without rows
        are skipped (Ray gives them no columns, e.g. after a ``filter``); a task without rows
        leaves an empty-part marker, a part of 0 rows for the merge."""
        index = int(ctx.task_idx)
        with_rows = (b for b in blocks if BlockAccessor.for_block(b).num_rows())
        first = next(with_rows, None)
        if first is None:
            return self._parts.write_part(index, [], **self._writer_kwargs)
        types, batch = bale_batch(first)

        def batches() -> Iterator[dict[str, Any]]:
            yield batch
            for block in with_rows:
                more_types, more = bale_batch(block)
                if more_types != types:
                    name = sorted(
                        n for n in {*types, *more_types} if types.get(n) != more_types.get(n)
                    )[0]
                    raise SchemaError(
                        f"write task {index} got blocks with different columns: "
                        f"{types.get(name)} first, then {more_types.get(name)}",
                        path=self._parts.part_path(index),
                        column=name,
                    )
                yield more

        return self._parts.write_part(index, batches(), schema=types, **self._writer_kwargs)

    def on_write_complete(self, write_result: WriteResult[PartInfo]) -> None:
        infos = [info for info in write_result.write_returns if info is not None]
        count = len(write_result.write_returns)
        if count == 0:
            raise BaleError("the dataset has no blocks: nothing to write", path=self._shown())
        if not any(info.rows for info in infos):
            raise BaleError(
                "the dataset has no rows: nothing written (bale needs a row to learn the columns)",
                path=self._shown(),
            )
        if sorted(info.index for info in infos) != list(range(count)):
            raise BaleError(
                f"{count} write tasks returned parts {sorted(i.index for i in infos)}, not "
                f"0..{count - 1}: not merging",
                path=self._shown(),
            )
        self.report = self._parts.merge(count, metadata=self._metadata)

    def on_write_failed(self, error: Exception) -> None:
        if not self._resume:
            self._parts.remove_parts()

    def _shown(self) -> str:
        target = self._parts.target
        return redact_url(target) if is_remote(target) else target
