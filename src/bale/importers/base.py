"""The contract every importer meets: a RowSource that `bale.pack` streams into a .bale file."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bale.format.schema import ColumnType


@dataclass(frozen=True)
class SkippedRow:
    """A source row that could not be read (a corrupt image, a missing file): skipped and counted."""

    row: int
    where: str  # the file (and member) the row came from
    reason: str


@dataclass
class SourceBatch:
    """Rows read from a source: ``columns`` holds one entry per row that was read; ``rows`` the
    source row numbers they came from (same order); ``skipped`` the rows that could not be read."""

    columns: dict[str, Any]
    rows: np.ndarray
    skipped: list[SkippedRow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)


class RowSource(abc.ABC):
    """Rows of something users already have (an image folder, .npy, HDF5, zarr, pickle, bcolz).

    A source knows its length up front. ``read(start, stop)`` returns rows in source order and
    must stay cheap for large sequential ranges; ``take(rows)`` returns the given rows (sorted or
    not, in the order given) and is only called when ``random_access`` is True. When
    ``picklable`` is True, ``bale.pack`` may send the source to worker processes and call
    ``read``/``take`` there (for parallel decoding); otherwise it reads in the calling process.
    Sources never load the whole input into memory.
    """

    path: str

    @property
    @abc.abstractmethod
    def num_rows(self) -> int: ...

    @property
    def column_types(self) -> Mapping[str, ColumnType] | None:
        """Every column's type when the source knows them all (None: inferred from the first
        batch). A column missing from the mapping is typed from the first batch by ``pack``."""
        return None

    @property
    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable facts recorded in the output file (class names, source kind, ...)."""
        return {}

    @property
    def random_access(self) -> bool:
        """True when ``take`` of scattered rows costs about what reading them in order does."""
        return False

    @property
    def picklable(self) -> bool:
        return False

    @property
    def row_nbytes_hint(self) -> int:
        """About how many bytes one row takes once read (sizes batches and pack-time buckets)."""
        return 1 << 12

    @abc.abstractmethod
    def read(self, start: int, stop: int) -> SourceBatch: ...

    def take(self, rows: Sequence[int] | np.ndarray) -> SourceBatch:
        raise NotImplementedError(f"{type(self).__name__} does not support random access")

    def close(self) -> None:  # noqa: B027 - most sources hold nothing to release
        """Release open files."""

    def __enter__(self) -> RowSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
