"""Spark adapter: ``to_bale`` (a Spark DataFrame -> one part per partition, written by the
executors through ``mapInArrow``, merged on the driver into one file) and ``read_bale`` (bale
files -> a Spark DataFrame, one task per run of row groups).

>>> from bale.adapters.spark import read_bale, to_bale                   # doctest: +SKIP
>>> to_bale(df.sortWithinPartitions("id"), "s3://bucket/emb.bale", storage_options=opts)
>>> read_bale(spark, "s3://bucket/emb.bale", storage_options=opts).count()

PySpark and pyarrow are imported when a function here is called, never with this module.
Every executor needs bale installed, and the same paths (a shared file system, or URLs).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bale._core.dataset import Dataset
from bale.errors import BaleError, SchemaError, TargetExistsError
from bale.format.schema import Array, Bytes, Column, ColumnType, String
from bale.io.listing import expand_paths
from bale.io.remote_url import is_remote, redact_url
from bale.ops.parts import MergeReport, PartSet

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import DataType

__all__ = ["read_bale", "to_bale"]

_INSTALL_HINT = "bale.adapters.spark needs PySpark with pyarrow: pip install pyspark pyarrow"

#: The result of each write task: one row per partition, so the driver knows every part.
_WRITTEN = "index long, rows long"


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return pyarrow


# -- writing ----------------------------------------------------------------------------------


def to_bale(
    df: DataFrame,
    target: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    metadata: Mapping[str, Any] | None = None,
    **writer_kwargs: Any,
) -> MergeReport:
    """Write a Spark DataFrame to ONE ``.bale`` file: partition ``i`` becomes part ``i``
    (``{target}.parts/part-{i:06d}.bale``, a ``bale.PartSet``) on the executors, then the
    driver merges the parts in partition order, copying row groups as stored.

    >>> report = to_bale(df, "train.bale", codecs={"image": "none"})      # doctest: +SKIP

    Columns: integers, floats and booleans become scalar columns, strings strings, binary
    bytes (encoded images), and arrays of numbers whose rows all have the same length (nested
    arrays: the same shape) fixed-shape array columns, e.g. ``array<float>`` of 128 per row ->
    ``(rows, 128)`` float32. Other types (decimal, date, timestamp, map, struct) are refused on
    the driver, nulls and ragged arrays in the task, naming the column (and partition and row).

    - The part index is Spark's partition id, the same in every attempt of a task: a retried
      (``spark.task.maxFailures``) or speculative (``spark.speculation``) task publishes the
      same part whole, so no row is written twice.
    - The file's rows are in partition order, then in each partition's order. The same
      DataFrame partitioned the same way gives the same bytes whatever the number of executors;
      after a shuffle (``repartition``, joins, ``groupBy``) the order within a partition is not
      fixed: ``sortWithinPartitions(key)`` (or ``orderBy(key)``) fixes it.
    - A failed job leaves nothing under ``target`` and removes its parts, unless ``resume``:
      then a re-run of the same job keeps the parts already complete (their tasks still run,
      but write nothing). Without it, leftover parts are removed before the job starts.
    ``writer_kwargs`` go to each part's ``bale.Writer`` (``codecs``, ``row_group_bytes``,
    ``schema``, ``random_access`` with an explicit ``segment_bytes``); ``metadata`` goes to
    the merged file. Returns the merge's ``bale.MergeReport``.
    """
    if writer_kwargs.get("random_access") and writer_kwargs.get("segment_bytes") is None:
        raise ValueError(
            "random_access=True fits the frame size to each part's first rows, and parts "
            "framed differently cannot be merged as stored: pass segment_bytes= too "
            "(16384 is the usual size)"
        )
    parts = PartSet(target, storage_options=storage_options, overwrite=overwrite)
    shown = redact_url(parts.target) if parts.remote else parts.target
    if not overwrite and not is_remote(parts.target) and os.path.exists(parts.target):
        raise TargetExistsError("the file exists; pass overwrite=True to replace it", path=shown)
    for field in df.schema.fields:
        _check_spark_type(field.name, field.dataType, shown)
    if not resume:
        parts.remove_parts()  # leftovers of another run hold other rows
    task = functools.partial(_write_partition, parts, dict(writer_kwargs))
    try:
        written = sorted(
            (int(r["index"]), int(r["rows"])) for r in df.mapInArrow(task, _WRITTEN).collect()
        )
    except BaseException:
        if not resume:
            parts.remove_parts()
        raise
    count = len(written)
    if [index for index, _ in written] != list(range(count)):
        raise BaleError(
            f"{count} write tasks reported parts {[i for i, _ in written]}, not 0..{count - 1}: "
            "not merging",
            path=shown,
        )
    if count == 0 or (not any(rows for _, rows in written) and writer_kwargs.get("schema") is None):
        parts.remove_parts()
        raise BaleError(
            "the DataFrame has no rows: nothing written (pass schema= for an empty file)",
            path=shown,
        )
    try:
        return parts.merge(count, metadata=metadata)
    except BaseException:
        if not resume:
            parts.remove_parts()
        raise


def _check_spark_type(name: str, kind: DataType, target: str) -> None:
    """Refuse, before any task runs, a column bale cannot store."""
    from pyspark.sql import types as T

    element = kind
    while isinstance(element, T.ArrayType):
        element = element.elementType
    numeric: tuple[type[DataType], ...] = (T.BooleanType, T.ByteType, T.ShortType)
    numeric += (T.IntegerType, T.LongType, T.FloatType, T.DoubleType)
    if isinstance(element, numeric) or (
        element is kind and isinstance(kind, (T.StringType, T.BinaryType))
    ):
        return
    what = "an array of " + element.simpleString() if element is not kind else kind.simpleString()
    raise SchemaError(
        f"bale stores numbers, booleans, strings, binary and fixed-length arrays of numbers, "
        f"not {what}: cast or convert the column first (e.g. a timestamp to long)",
        path=target,
        column=name,
    )


def _write_partition(
    parts: PartSet, writer_kwargs: dict[str, Any], batches: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    """One Spark task: its Arrow batches, in order, as part ``partitionId()``; yields the one
    row ``(index, rows)`` the driver counts parts with. A partition without rows writes an
    empty part (with ``schema=``) or an empty-part marker."""
    from pyspark import TaskContext

    arrow = _pyarrow()
    context = TaskContext.get()
    if context is None:
        raise RuntimeError("bale's Spark write task runs inside a Spark task only")
    index = context.partitionId()
    kwargs = dict(writer_kwargs)  # the task's own copy: never change what Spark shipped
    given = kwargs.pop("schema", None)
    converted = _bale_batches(batches, index, parts.target)
    first = next(converted, None)
    if first is None:
        info = parts.write_part(index, [], schema=given, **kwargs)
    else:
        types, batch = first

        def rest() -> Iterator[dict[str, Any]]:
            yield batch
            for more_types, more in converted:
                if more_types != types:
                    name = next(n for n in types if types[n] != more_types[n])
                    raise SchemaError(
                        f"partition {index}: {types[name]} in its first rows, "
                        f"{more_types[name]} later (a column holds one shape)",
                        path=parts.target,
                        column=name,
                    )
                yield more

        schema = given if given is not None else types
        info = parts.write_part(index, rest(), schema=schema, **kwargs)
    yield arrow.RecordBatch.from_pydict(
        {"index": [info.index], "rows": [info.rows]}, schema=_written_schema(arrow)
    )


def _written_schema(arrow: Any) -> pa.Schema:
    schema: pa.Schema = arrow.schema([("index", arrow.int64()), ("rows", arrow.int64())])
    return schema


def _bale_batches(
    batches: Iterator[pa.RecordBatch], index: int, target: str
) -> Iterator[tuple[dict[str, ColumnType], dict[str, Any]]]:
    """The partition's non-empty Arrow batches as (column types, a batch the Writer takes)."""
    first_row = 0
    for record in batches:
        if record.num_rows == 0:
            continue
        types: dict[str, ColumnType] = {}
        batch: dict[str, Any] = {}
        for name, values in zip(record.schema.names, record.columns, strict=True):
            types[name], batch[name] = _bale_column(values, name, index, first_row, target)
        yield types, batch
        first_row += record.num_rows


def _bale_column(
    values: pa.Array, name: str, index: int, first_row: int, target: str
) -> tuple[ColumnType, Any]:
    arrow = _pyarrow()

    def refuse(message: str, row: int | None = None) -> SchemaError:
        where = f"partition {index}" + (f", its row {first_row + row}" if row is not None else "")
        return SchemaError(f"{where}: {message}", path=target, column=name)

    def check_nulls(array: pa.Array, per_row: int, what: str) -> None:
        if array.null_count:
            row = int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])
            raise refuse(f"{what} (bale has no nulls: fill or drop them first)", row // per_row)

    check_nulls(values, 1, "a null value")
    kind = values.type
    if arrow.types.is_string(kind) or arrow.types.is_large_string(kind):
        return String(), values.to_pylist()
    if arrow.types.is_binary(kind) or arrow.types.is_large_binary(kind):
        return Bytes(), values.to_pylist()
    shape: list[int] = []
    flat = values
    while arrow.types.is_list(flat.type) or arrow.types.is_large_list(flat.type):
        per_row = math.prod(shape)
        check_nulls(flat, per_row, "a null array")
        lengths = flat.value_lengths().to_numpy(zero_copy_only=False)
        ragged = np.flatnonzero(lengths != lengths[0])
        if ragged.size:
            at = int(ragged[0])
            raise refuse(
                f"arrays of {int(lengths[at])} elements here, {int(lengths[0])} in the batch's "
                "first row (a column holds one shape: pad or cut them first)",
                at // per_row,
            )
        shape.append(int(lengths[0]))
        flat = flat.flatten()
    element = flat.type
    if not (arrow.types.is_integer(element) or arrow.types.is_floating(element)) and not (
        arrow.types.is_boolean(element)
    ):
        raise refuse(f"unsupported Arrow type {values.type}")
    check_nulls(flat, max(1, math.prod(shape)), "a null element")
    data = flat.to_numpy(zero_copy_only=False).reshape(len(values), *shape)
    return Array(data.dtype.name, tuple(shape)), data


# -- reading ----------------------------------------------------------------------------------


def read_bale(
    spark: SparkSession,
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    columns: Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    groups_per_task: int = 64,
) -> DataFrame:
    """bale files as a lazy Spark DataFrame: one task per run of ``groups_per_task`` row
    groups of one file (about 64 MiB of raw rows at the default row group size), in file order.

    >>> df = read_bale(spark, "data/train-*.bale", columns=["label", "embedding"])  # doctest: +SKIP

    Scalars become Spark numbers (unsigned integers the next wider signed type, float16
    float), strings strings, bytes binary, fixed-shape arrays (nested) arrays of numbers.
    complex and ml_dtypes columns have no Spark type: leave them out with ``columns=``.
    ``paths``: a path or URL, a glob, a prefix ending in ``/``, or a list of them.
    """
    if groups_per_task < 1:
        raise ValueError(f"groups_per_task must be positive, not {groups_per_task}")
    if isinstance(columns, str):
        raise TypeError("columns must be a list of names, not a single string")
    options = dict(storage_options) if storage_options else None
    given = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files = expand_paths(given, options)
    if not files:
        raise BaleError("read_bale was given no paths")
    tasks: list[tuple[str, int, int]] = []
    selected: list[Column] | None = None
    for path in files:
        with Dataset(path, cache_bytes=0, storage_options=options) as dataset:
            names = list(columns) if columns is not None else list(dataset.columns)
            these = [dataset.schema[n] for n in names if n in dataset.schema]
            missing = [n for n in names if n not in dataset.schema]
            if missing:
                raise SchemaError(f"no column {missing[0]!r} in the file", path=path)
            if selected is None:
                selected = these
            elif [(c.name, c.type) for c in these] != [(c.name, c.type) for c in selected]:
                raise SchemaError(
                    f"the columns differ from those of {files[0]!r}: "
                    f"{[str(c.type) for c in these]} != {[str(c.type) for c in selected]}",
                    path=path,
                )
            groups = dataset.num_row_groups
            tasks += [
                (path, first, min(first + groups_per_task, groups))
                for first in range(0, groups, groups_per_task)
            ]
    if selected is None or not tasks:
        raise BaleError("the files have no rows", path=files[0])
    from pyspark.sql import types as T

    spark_schema = T.StructType([T.StructField(c.name, _spark_type(c, files[0])) for c in selected])
    runs = spark.sparkContext.parallelize(tasks, len(tasks))  # one task per run, in order
    plan = spark.createDataFrame(runs, "path string, first long, stop long")
    task = functools.partial(_read_runs, tuple(selected), options)
    return plan.mapInArrow(task, spark_schema)


#: A numpy dtype's Spark type (unsigned integers widened, float16 as float) ...
_SPARK_NUMBER = {
    "bool": "BooleanType",
    "int8": "ByteType",
    "int16": "ShortType",
    "int32": "IntegerType",
    "int64": "LongType",
    "uint8": "ShortType",
    "uint16": "IntegerType",
    "uint32": "LongType",
    "float16": "FloatType",
    "float32": "FloatType",
    "float64": "DoubleType",
}
#: ... and the numpy dtype of the Arrow data Spark takes for that type.
_ARROW_NUMBER = {"ByteType": "int8", "ShortType": "int16", "IntegerType": "int32"}
_ARROW_NUMBER |= {"LongType": "int64", "BooleanType": "bool", "FloatType": "float32"}
_ARROW_NUMBER |= {"DoubleType": "float64"}


def _spark_type(column: Column, path: str) -> DataType:
    from pyspark.sql import types as T

    kind = column.type
    if isinstance(kind, String):
        return T.StringType()
    if isinstance(kind, Bytes):
        return T.BinaryType()
    name = _SPARK_NUMBER.get(kind.numpy_dtype.name)
    if name is None:
        raise SchemaError(
            f"Spark has no {kind.dtype} type: leave the column out with columns=[...]",
            path=path,
            column=column.name,
        )
    spark_type: DataType = getattr(T, name)()
    for _ in kind.shape:
        spark_type = T.ArrayType(spark_type, containsNull=False)
    return spark_type


def _arrow_column(column: Column, values: Any) -> pa.Array:
    arrow = _pyarrow()
    kind = column.type
    if isinstance(kind, String):
        return arrow.array(values, arrow.string())
    if isinstance(kind, Bytes):
        return arrow.array(values, arrow.binary())
    dtype = _ARROW_NUMBER[_SPARK_NUMBER[kind.numpy_dtype.name]]
    data = np.ascontiguousarray(values, dtype=dtype)
    out = arrow.array(data.reshape(-1))
    for depth in range(len(kind.shape), 0, -1):  # innermost dimension first
        size = kind.shape[depth - 1]
        lists = math.prod(data.shape[:depth])
        offsets = arrow.array(np.arange(lists + 1, dtype=np.int32) * size)
        out = arrow.ListArray.from_arrays(offsets, out)
    return out


def _read_runs(
    columns: tuple[Column, ...],
    storage_options: dict[str, Any] | None,
    tasks: Iterator[pa.RecordBatch],
) -> Iterator[pa.RecordBatch]:
    """One Spark read task: each (path, first, stop) run's row groups as Arrow batches."""
    arrow = _pyarrow()
    names = [c.name for c in columns]
    for record in tasks:
        for path, first, stop in zip(
            *(record.column(i).to_pylist() for i in range(3)), strict=True
        ):
            with Dataset(path, cache_bytes=0, storage_options=storage_options) as dataset:
                for group in range(first, stop):
                    batch = dataset.read_row_group(group, names)
                    yield arrow.RecordBatch.from_arrays(
                        [_arrow_column(c, batch[c.name]) for c in columns], names=names
                    )
