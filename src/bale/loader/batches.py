"""Batch assembly: rows read from the files, row and batch transforms, and what a bad row does."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from bale._core.dataset import Batch, Dataset, reader_of
from bale.errors import BaleError, CorruptFileError
from bale.loader.collate import collate, merge, own, select
from bale.loader.files import Files

RowTransform = Callable[[dict[str, Any]], dict[str, Any]]
BatchTransform = Callable[[Batch], Batch]
OnError = Literal["raise", "skip"]


class ErrorPolicy:
    """What a row that cannot be read or transformed does: raise an error naming its file, column
    and row, or (``on_error="skip"``) leave the batch, counted in ``skipped_rows``. Shared by the
    threads that make batches and fill windows."""

    def __init__(self, on_error: OnError, files: Files) -> None:
        self.on_error: OnError = on_error
        self._files = files
        self.skipped_rows = 0
        self._lock = threading.Lock()

    @property
    def skipping(self) -> bool:
        return self.on_error == "skip"

    def skip(self, rows: int) -> None:
        """Count rows left out."""
        with self._lock:
            self.skipped_rows += rows

    def row_failed(self, row: int, exc: Exception) -> None:
        """Global row ``row`` failed with ``exc``: raise naming it, or count it skipped."""
        if self.on_error == "raise":
            raise self.row_error(row, exc) from exc
        self.skip(1)

    def row_error(self, row: int, exc: Exception) -> BaleError:
        file, local = self._files.locate(np.array([row]))
        detail = exc.detail if isinstance(exc, BaleError) else f"{type(exc).__name__}: {exc}"
        column = exc.column if isinstance(exc, BaleError) else None
        return BaleError(
            f"{detail} (use on_error='skip' to skip such rows)",
            path=self._files.datasets[int(file[0])].path,
            column=column,
            rows=(int(local[0]), int(local[0]) + 1),
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def gather(
    files: Files, rows: np.ndarray, columns: Sequence[str] | None, errors: ErrorPolicy
) -> tuple[Batch, np.ndarray]:
    """The batch for these global rows, and the rows it holds (fewer in skip mode)."""
    batch, kept = _gather_mask(files, rows, columns, errors)
    return batch, rows[kept]


def _gather_mask(
    files: Files, rows: np.ndarray, columns: Sequence[str] | None, errors: ErrorPolicy
) -> tuple[Batch, np.ndarray]:
    """The batch for these global rows and a mask of the rows it holds (skip mode drops
    rows of damaged row groups)."""
    file_of, local = files.locate(rows)
    if len(files.datasets) == 1:
        return _take(files.datasets[0], local, columns, errors)
    parts = []
    kept = np.zeros(len(rows), bool)
    for f in np.unique(file_of).tolist():
        positions = np.flatnonzero(file_of == f)
        batch, keep = _take(files.datasets[f], local[positions], columns, errors)
        kept[positions[keep]] = True
        parts.append((positions[keep], batch))
    # Positions in the merged batch: rank of each kept position among all kept ones.
    new_position = np.cumsum(kept) - 1
    parts = [(new_position[p], b) for p, b in parts]
    return merge(parts, int(kept.sum())), kept


def _take(
    ds: Dataset, local: np.ndarray, columns: Sequence[str] | None, errors: ErrorPolicy
) -> tuple[Batch, np.ndarray]:
    everything = np.ones(len(local), bool)
    contiguous = len(local) > 0 and int(local[-1]) - int(local[0]) == len(local) - 1
    if contiguous and bool((np.diff(local) == 1).all()):
        rows = slice(int(local[0]), int(local[-1]) + 1)
        read: Callable[[], Batch] = lambda: own(ds.read(rows, columns))  # noqa: E731
    else:
        read = lambda: ds.take(local, columns)  # noqa: E731
    if not errors.skipping:
        return read(), everything
    try:
        return read(), everything
    except CorruptFileError:
        pass
    # Skip mode: find the row groups that fail and drop their rows from this batch.
    groups = reader_of(ds).groups.groups_of(local)
    keep = everything
    for g in np.unique(groups).tolist():
        try:
            reader_of(ds).prefetch_group(g, columns)
        except CorruptFileError:
            keep = keep & (groups != g)
    errors.skip(int((~keep).sum()))
    return ds.take(local[keep], columns), keep


def finish_batch(
    batch: Batch,
    rows: np.ndarray,
    epoch: int,
    *,
    transform: RowTransform | None,
    batch_transform: BatchTransform | None,
    transform_takes_rows: bool,
    errors: ErrorPolicy,
) -> Batch:
    """The batch after the row transform (on each row) and the batch transform."""
    if transform is not None:
        batch, rows = _apply_row_transform(transform, batch, rows, errors)
    if batch_transform is not None:
        batch = _apply_batch_transform(
            batch_transform, batch, rows, epoch, transform_takes_rows, errors
        )
    return batch


def _apply_row_transform(
    transform: RowTransform, batch: Batch, rows: np.ndarray, errors: ErrorPolicy
) -> tuple[Batch, np.ndarray]:
    out_rows = []
    kept = []
    for i in range(len(rows)):
        row = {k: v[i] for k, v in batch.items()}
        try:
            out_rows.append(transform(row))
            kept.append(i)
        except Exception as exc:
            errors.row_failed(int(rows[i]), exc)
    return collate(out_rows), rows[kept]


def _apply_batch_transform(
    transform: BatchTransform,
    batch: Batch,
    rows: np.ndarray,
    epoch: int,
    takes_rows: bool,
    errors: ErrorPolicy,
) -> Batch:
    """Run the batch transform; a failure names the file and row it came from (transforms
    such as DecodeImages tag errors with ``batch_index``). In skip mode that row is dropped
    and the transform retried."""
    while True:
        try:
            if takes_rows:
                return transform(batch, rows=rows, epoch=epoch)  # type: ignore[call-arg]
            return transform(batch)
        except Exception as exc:
            index = getattr(exc, "batch_index", None)
            if index is None or not 0 <= index < len(rows):
                raise
            errors.row_failed(int(rows[index]), exc)
            keep = np.arange(len(rows)) != index
            rows = rows[keep]
            batch = {k: select(v, keep) for k, v in batch.items()}


def accepts_rows(transform: Any) -> bool:
    """Whether a batch transform takes ``rows=`` and ``epoch=`` keywords (global row numbers of
    the batch and the epoch), as DecodeImages does to seed augmentations reproducibly."""
    if transform is None:
        return False
    try:
        parameters = inspect.signature(transform).parameters
    except (TypeError, ValueError):
        return False
    return "rows" in parameters and "epoch" in parameters
