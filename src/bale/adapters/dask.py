"""Dask adapter: one column of a bale file as a ``dask.array.Array``, one chunk per row group.

>>> from bale.dask import from_bale                                     # doctest: +SKIP
>>> x = from_bale("train.bale", "embedding")
>>> x.chunks[0] == bale.open("train.bale").row_group_sizes
True
>>> x.mean(axis=0).compute()

Dask is imported when ``from_bale`` is called, not when this module is imported.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from bale._core.dataset import Dataset
from bale.errors import SchemaError
from bale.format.schema import Array

if TYPE_CHECKING:
    import dask.array

__all__ = ["from_bale"]

_INSTALL_HINT = "bale.dask needs Dask: pip install 'bale[dask]'"


def from_bale(path: str | os.PathLike[str], column: str) -> dask.array.Array:
    """A lazy dask array of an array column, chunked by row group.

    >>> labels = from_bale("train.bale", "label")                      # doctest: +SKIP
    >>> labels.chunks
    ((4096, 4096, 1808),)
    >>> int(labels.sum().compute())

    Each chunk is exactly one row group (trailing dimensions whole), read, checked and decoded
    by one task (``Dataset.read_row_group``), so a computation reads every block at most once.
    Works with every scheduler: the file is reopened by path in other processes or machines.
    The graph's name depends on the file's path, size and modification time, so a rewritten
    file never reuses results cached for the old one. Bytes and string columns are not arrays:
    read them with ``bale.open(path)[column]`` instead.
    """
    try:
        import dask
        import dask.array as da
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc

    # No block cache: each chunk is decoded once by its task, and results never alias a cache.
    dataset = Dataset(path, cache_bytes=0)
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
    dtype, shape = kind.numpy_dtype, tuple(kind.shape)
    if not dataset.num_row_groups:
        empty: dask.array.Array = da.zeros((0, *shape), dtype=dtype)
        return empty
    stat = os.stat(dataset.path)
    token = dask.base.tokenize(dataset.path, stat.st_size, stat.st_mtime_ns, column)
    array: dask.array.Array = da.map_blocks(  # type: ignore[no-untyped-call]
        _read_row_group,
        name=f"bale-{column}-{token}",
        chunks=(dataset.row_group_sizes, *((n,) for n in shape)),
        dtype=dtype,
        meta=np.empty((0,) * (1 + len(shape)), dtype),
        dataset=dataset,
        column=column,
    )
    return array


def _read_row_group(*, dataset: Dataset, column: str, block_id: tuple[int, ...]) -> Any:
    return dataset.read_row_group(block_id[0], [column])[column]
