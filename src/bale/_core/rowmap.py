"""The row <-> row group map: which row group holds a row, and which rows a group holds.

Written once here; the dataset, the mapped columns, the loader and the operations ask it
instead of searching row starts themselves.

>>> m = RowGroupMap.from_sizes([3, 3, 2])
>>> m.group_of(4), m.rows_of(2), m.groups_of(np.array([7, 0, 3])).tolist()
(1, (6, 8), [2, 0, 1])
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np


class RowGroupMap:
    """Row groups as contiguous row ranges: ``starts[g]`` is the first row of group ``g``."""

    __slots__ = ("_start_list", "counts", "num_rows", "starts")

    def __init__(self, starts: np.ndarray, counts: np.ndarray) -> None:
        self.starts = np.asarray(starts, dtype=np.int64)
        self.counts = np.asarray(counts, dtype=np.int64)
        self._start_list: list[int] = self.starts.tolist()  # one row's lookup: bisect, no NumPy
        self.num_rows = int(self.starts[-1] + self.counts[-1]) if len(self.starts) else 0

    @classmethod
    def from_sizes(cls, sizes: Sequence[int] | np.ndarray) -> RowGroupMap:
        counts = np.asarray(sizes, dtype=np.int64)
        starts = np.zeros(len(counts), dtype=np.int64)
        if len(counts) > 1:
            np.cumsum(counts[:-1], out=starts[1:])
        return cls(starts, counts)

    def __len__(self) -> int:
        return len(self.starts)

    def group_of(self, row: int) -> int:
        """The group holding ``row`` (0 <= row < num_rows)."""
        return bisect.bisect_right(self._start_list, row) - 1

    def groups_of(self, rows: np.ndarray) -> np.ndarray:
        """The group of each row in ``rows`` (an int64 array of the same shape)."""
        groups: np.ndarray = np.searchsorted(self.starts, rows, side="right") - 1
        return groups.astype(np.int64, copy=False)

    def start_of(self, group: int) -> int:
        """The first row of ``group``."""
        return self._start_list[group]

    def rows_of(self, group: int) -> tuple[int, int]:
        """``(start, stop)``: the rows of ``group``."""
        start = int(self.starts[group])
        return start, start + int(self.counts[group])

    def sizes(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.counts)
