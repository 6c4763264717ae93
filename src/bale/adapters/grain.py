"""Grain adapter: a bale file as a random-access data source for ``grain`` pipelines.

>>> import grain                                                        # doctest: +SKIP
>>> from bale.adapters.grain import GrainSource
>>> source = GrainSource("train.bale", columns=["image", "label"])
>>> ds = grain.MapDataset.source(source).shuffle(seed=0).batch(64)
>>> loader = grain.python.DataLoader(
...     data_source=source,
...     sampler=grain.python.IndexSampler(len(source), shuffle=True, seed=0, num_epochs=1),
...     worker_count=4,
... )

Grain's source protocol is structural (``__len__``, ``__getitem__``, a stable ``__repr__``,
picklable), so this module never imports grain.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Sequence
from typing import Any, SupportsIndex

import numpy as np

from bale._core.dataset import Dataset, reader_of

__all__ = ["GrainSource"]

Row = dict[str, Any]


class GrainSource:
    """Rows of a bale file by index, as dicts (arrays, NumPy scalars, bytes, str).

    >>> source = GrainSource("train.bale")                             # doctest: +SKIP
    >>> len(source), source[3]["label"]
    (50000, np.int64(7))

    Each row is a fresh copy (never a view of bale's block cache), so grain transforms may
    modify it in place. Batched reads (grain's ``_getitems``) decode each row group a batch
    touches once. Pickles by path: grain worker processes reopen the file.
    """

    def __init__(self, path: str | os.PathLike[str], columns: Sequence[str] | None = None) -> None:
        self.dataset = Dataset(path)
        self.columns = list(columns) if columns is not None else None
        reader_of(self.dataset).check_columns(self.columns)

    @property
    def path(self) -> str:
        return self.dataset.path

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: SupportsIndex) -> Row:
        return self._getitems([operator.index(index)])[0]

    def _getitems(self, indices: Sequence[int]) -> list[Row]:
        """Rows at ``indices``, in that order (grain calls this for batched reads)."""
        batch = self.dataset.take(np.asarray(indices, dtype=np.int64), self.columns)
        return [{key: values[i] for key, values in batch.items()} for i in range(len(indices))]

    def __repr__(self) -> str:
        # Grain stores this in checkpoints to check that a resumed pipeline reads the same data.
        return f"GrainSource(path={self.path!r}, columns={self.columns!r}, rows={len(self)})"
