"""Rows a Writer has accepted but not yet written: per-column chunks, taken from the front one
row group at a time."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from bale._core.batches import ColumnData


class RowBuffer:
    """Validated column data waiting to fill a row group; ``rows`` counts it.

    >>> buffer = RowBuffer()
    >>> buffer.add({"x": np.arange(5)}, 5)
    >>> buffer.take(3)["x"].tolist(), buffer.rows
    ([0, 1, 2], 2)
    """

    def __init__(self) -> None:
        self._chunks: dict[str, list[ColumnData]] = {}
        self.rows = 0

    def add(self, columns: Mapping[str, ColumnData], n: int) -> None:
        """Buffer ``n`` rows of every column (the arrays are kept, not copied: see
        ``own_last_chunks``)."""
        for name, data in columns.items():
            self._chunks.setdefault(name, []).append(data)
        self.rows += n

    def own_last_chunks(self) -> None:
        """Copy what is left of the batch added last (always the last chunk of each column), so
        the caller may reuse its arrays."""
        if not self.rows:
            return
        for chunks in self._chunks.values():
            if chunks and isinstance(chunks[-1], np.ndarray):
                chunks[-1] = chunks[-1].copy()

    def take(self, n: int) -> dict[str, ColumnData]:
        """The first ``n`` buffered rows of every column, removed from the buffer."""
        taken: dict[str, ColumnData] = {}
        for name, chunks in self._chunks.items():
            parts: list[ColumnData] = []
            need = n
            while need:
                chunk = chunks[0]
                if len(chunk) <= need:
                    parts.append(chunks.pop(0))
                    need -= len(chunk)
                else:
                    parts.append(chunk[:need])
                    chunks[0] = chunk[need:]
                    need = 0
            if parts and isinstance(parts[0], np.ndarray):
                taken[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)  # type: ignore[arg-type]
            else:
                taken[name] = [row for part in parts for row in part]
        self.rows -= n
        return taken

    def clear(self) -> None:
        self._chunks.clear()
