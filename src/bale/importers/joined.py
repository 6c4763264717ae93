"""Several aligned sources as the columns of one RowSource: row i of each becomes row i of the file.

The fast.ai pattern keeps ``X`` and ``y`` apart (two bcolz carrays, two .npy files), aligned
only by their row numbers. ``JoinedSource`` reads the same rows of every source into one
batch, so a pack writes (and shuffles) them together, never apart. The sources must have the
same number of rows; a row skipped by one source (an unreadable image) is dropped from all.

>>> from bale.importers.npy import NpySource
>>> src = JoinedSource({"x": NpySource("X.npy"), "y": NpySource("y.npy")})   # doctest: +SKIP
>>> src = JoinedSource([NpySource("X.npy"), NpySource("y.npy")])   # columns X, y  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bale._core.columns import take_batch_rows
from bale.errors import SchemaError
from bale.format.schema import ColumnType
from bale.importers.base import RowSource, SkippedRow, SourceBatch

__all__ = ["JoinedSource"]


class JoinedSource(RowSource):
    """The columns of several sources of equal length, read row for row together.

    ``sources`` is a list (each source's columns keep their names) or a mapping ``{name:
    source}``: a source with one column gives the column ``name``, one with several gives
    ``name.column``. Column names that clash, and sources of different lengths, are a
    ``SchemaError`` naming the sources. ``close()`` closes the sources in ``owned`` (by
    default all of them).
    """

    def __init__(
        self,
        sources: Mapping[str, RowSource] | Sequence[RowSource],
        *,
        owned: Sequence[RowSource] | None = None,
    ) -> None:
        if isinstance(sources, Mapping):
            self._parts: list[tuple[str | None, RowSource]] = [
                (str(name), source) for name, source in sources.items()
            ]
        else:
            self._parts = [(None, source) for source in sources]
        if not self._parts:
            raise ValueError("JoinedSource needs at least one source")
        self._owned = list(owned) if owned is not None else [s for _, s in self._parts]
        self.path = " + ".join(source.path for _, source in self._parts)
        lengths = [(source.path, source.num_rows) for _, source in self._parts]
        if len({n for _, n in lengths}) > 1:
            shown = ", ".join(f"{path!r} has {n} rows" for path, n in lengths)
            raise SchemaError(
                f"sources joined as columns must have the same number of rows: {shown}",
                path=self.path,
            )
        self._num_rows = lengths[0][1]
        self._names: list[dict[str, str]] | None = None  # per source: its column -> ours
        types = [source.column_types for _, source in self._parts]
        if all(t is not None for t in types):
            self._names = self._rename([list(t or {}) for t in types])

    def _rename(self, columns: list[list[str]]) -> list[dict[str, str]]:
        """Each source's column names -> the joined ones; clashes named with their sources."""
        names: list[dict[str, str]] = []
        owner: dict[str, str] = {}
        for (name, source), own in zip(self._parts, columns, strict=True):
            if name is None:
                mapping = {c: c for c in own}
            elif len(own) == 1:
                mapping = {own[0]: name}
            else:
                mapping = {c: f"{name}.{c}" for c in own}
            for ours in mapping.values():
                if ours in owner:
                    raise SchemaError(
                        f"column {ours!r} comes from both {owner[ours]!r} and {source.path!r}; "
                        "name the sources' columns (e.g. {'x': 'X.npy', 'y': 'y.npy'}, or "
                        "`bale pack --column x=X.npy --column y=y.npy OUT`)",
                        path=self.path,
                        column=ours,
                    )
                owner[ours] = source.path
            names.append(mapping)
        return names

    @property
    def num_rows(self) -> int:
        return self._num_rows

    @property
    def column_types(self) -> Mapping[str, ColumnType] | None:
        if self._names is None:
            return None
        out: dict[str, ColumnType] = {}
        for (_, source), mapping in zip(self._parts, self._names, strict=True):
            for column, column_type in (source.column_types or {}).items():
                out[mapping[column]] = column_type
        return out

    @property
    def metadata(self) -> dict[str, Any]:
        parts = [{"path": source.path, **source.metadata} for _, source in self._parts]
        out: dict[str, Any] = {"source": "joined", "sources": parts}
        classes = [p["classes"] for p in parts if "classes" in p]
        if len(classes) == 1:  # one labelled source: its class names name the file's labels
            out["classes"] = classes[0]
        return out

    @property
    def random_access(self) -> bool:
        return all(source.random_access for _, source in self._parts)

    @property
    def picklable(self) -> bool:
        return all(source.picklable for _, source in self._parts)

    @property
    def row_nbytes_hint(self) -> int:
        return sum(source.row_nbytes_hint for _, source in self._parts)

    def read(self, start: int, stop: int) -> SourceBatch:
        return self._join([source.read(start, stop) for _, source in self._parts])

    def take(self, rows: Sequence[int] | np.ndarray) -> SourceBatch:
        return self._join([source.take(rows) for _, source in self._parts])

    def _join(self, batches: list[SourceBatch]) -> SourceBatch:
        if self._names is None:
            self._names = self._rename([list(b.columns) for b in batches])
        rows = batches[0].rows
        if any(not np.array_equal(b.rows, rows) for b in batches[1:]):
            # a row one source skipped (an unreadable image) is dropped from every source;
            # each batch lists its rows in the order asked for, so the kept ones line up
            for b in batches[1:]:
                rows = rows[np.isin(rows, b.rows)]
            batches = [_only(b, rows) for b in batches]
        columns: dict[str, Any] = {}
        skipped: dict[int, SkippedRow] = {}  # one reason per row, from the first source
        for batch, mapping in zip(batches, self._names, strict=True):
            for column, values in batch.columns.items():
                if column not in mapping:
                    raise SchemaError(
                        f"a batch has column {column!r}, not in the source's first batch",
                        path=self.path,
                        column=column,
                    )
                columns[mapping[column]] = values
            for row in batch.skipped:
                skipped.setdefault(row.row, row)
        return SourceBatch(columns=columns, rows=rows, skipped=sorted(skipped.values(), key=_row))

    def close(self) -> None:
        for source in self._owned:
            source.close()


def _row(skipped: SkippedRow) -> int:
    return skipped.row


def _only(batch: SourceBatch, rows: np.ndarray) -> SourceBatch:
    keep = np.flatnonzero(np.isin(batch.rows, rows))
    return SourceBatch(take_batch_rows(batch.columns, keep), batch.rows[keep], batch.skipped)
