"""One shuffle window ("chunks") held in memory: filled in parallel, served as batches."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bale._core.columns import concat_values
from bale._core.dataset import Batch, reader_of
from bale.errors import CorruptFileError
from bale.format.schema import Array
from bale.loader.batches import ErrorPolicy
from bale.loader.files import Files
from bale.loader.order import EpochOrder

#: Row groups a window asks a remote source for ahead of the ones being decoded, at least (more
#: while their bytes fit in half the source's read-ahead, ``FileReader.remote_ahead_bytes``).
REMOTE_AHEAD_GROUPS = 4


class Window:
    """One window of an epoch held in memory, for the "chunks" shuffle.

    Rows are stored in stream order, where they form runs of consecutive rows of one row group:
    filling the window is a series of contiguous copies out of decoded blocks, split by row
    group into one part per loader thread, so each row group is read and decoded exactly once
    and the parts run in parallel. A batch applies the window's permutation as one gather of
    its rows, a copy, so a batch kept by the training loop does not pin the window.
    """

    def __init__(
        self,
        order: EpochOrder,
        window: int,
        *,
        files: Files,
        columns: Sequence[str] | None,
        errors: ErrorPolicy,
        threads: int,
        pool: ThreadPoolExecutor,
        spares: list[dict[str, np.ndarray]],
    ) -> None:
        self.start, self.stop = order.window_bounds(window)
        self.rows, self.served = order.window_stream(window)
        n = len(self.rows)
        self.kept = np.ones(n, bool)
        self.data: Batch = {}
        self._files = files
        self._errors = errors
        schema = files.datasets[0].schema
        names = list(columns or schema.names)
        # Uncompressed array columns are gathered per batch straight from the mapped files:
        # the window neither copies nor holds them.
        self._mapped = [name for name in names if files.mapped(name)]
        self._columns = [name for name in names if name not in self._mapped]
        # Reuse the arrays of a served window: fresh memory costs a page fault per page (and on
        # VMs with free-page reporting, a trip to the host), every window of every epoch.
        spare = spares.pop() if spares else {}
        for name in self._columns:
            column_type = schema[name].type
            if isinstance(column_type, Array):
                buffer = spare.get(name)
                if buffer is None or len(buffer) < n:
                    buffer = np.empty((n, *column_type.shape), column_type.numpy_dtype)
                self.data[name] = buffer[:n]
            else:
                self.data[name] = [None] * n
        groups = np.searchsorted(order.group_starts, self.rows, side="right") - 1
        # Runs of consecutive positions in the same row group: [run_start, run_stop).
        breaks = np.flatnonzero(np.diff(groups)) + 1
        run_starts = np.concatenate([[0], breaks]).astype(np.int64)
        run_stops = np.concatenate([breaks, [n]]).astype(np.int64)
        run_groups = groups[run_starts] if n else np.zeros(0, np.int64)
        parts = min(threads, max(1, len(np.unique(run_groups))))
        self._group_starts = order.group_starts
        # A remote file is asked for the window's groups ahead of the threads decoding them, in
        # the order they will be read: as many as fit in half its bounded read-ahead (more would
        # push out ranges not read yet, fetched twice), so that at 20 ms a request, tens of
        # requests are in flight; a local file's kernel reads ahead.
        self._hint_order = list(dict.fromkeys(run_groups.tolist()))
        self._hinted_bytes = [0]  # bytes asked for by the first k hinted groups, at k
        self._hinted = 0
        self._filled = 0
        self._hint_lock = threading.Lock()
        self._hint_ahead()
        self._futures = [
            pool.submit(self._fill, run_starts[sel], run_stops[sel], run_groups[sel])
            for sel in (run_groups % parts == p for p in range(parts))
            if sel.any()
        ]

    def _hint_ahead(self) -> None:
        files = self._files
        with self._hint_lock:
            filled = min(self._filled, self._hinted)
            outstanding = self._hinted_bytes[-1] - self._hinted_bytes[filled]
            while self._hinted < len(self._hint_order):
                group = self._hint_order[self._hinted]
                reader = reader_of(files.datasets[int(files.group_file[group])])
                if (
                    self._hinted >= filled + REMOTE_AHEAD_GROUPS
                    and outstanding >= reader.remote_ahead_bytes()
                ):
                    break
                # (a local file asks for nothing and allows 0 bytes ahead: it stops above)
                asked = reader.hint_remote_group(int(files.group_local[group]), self._columns)
                self._hinted_bytes.append(self._hinted_bytes[-1] + asked)
                self._hinted += 1
                outstanding += asked

    def _fill(self, run_starts: np.ndarray, run_stops: np.ndarray, run_groups: np.ndarray) -> None:
        files = self._files
        for start, stop, group in zip(
            run_starts.tolist(), run_stops.tolist(), run_groups.tolist(), strict=True
        ):
            with self._hint_lock:
                self._filled += 1
            self._hint_ahead()
            ds = files.datasets[int(files.group_file[group])]
            local = int(files.group_local[group])
            try:
                for name in self._mapped:
                    mapped = files.mapped_column(int(files.group_file[group]), name)
                    if self._errors.skipping:  # find damage now, where rows can be dropped
                        mapped.verify_groups(np.array([local]))
                    else:  # gathered and checked per batch; start reading it now
                        mapped.will_need(local)
                block = ds.read_row_group(local, self._columns) if self._columns else {}
            except CorruptFileError:
                if not self._errors.skipping:
                    raise
                self.kept[start:stop] = False
                self._errors.skip(stop - start)
                continue
            local_rows = self.rows[start:stop] - self._group_starts[group]
            first, last = int(local_rows[0]), int(local_rows[-1])
            if last - first == stop - start - 1:  # consecutive rows: one slice
                for name in self._columns:
                    self.data[name][start:stop] = block[name][first : last + 1]
            else:  # a resumed window: the rows already served are missing
                for name in self._columns:
                    values = block[name]
                    if isinstance(values, np.ndarray):
                        self.data[name][start:stop] = values[local_rows]
                    else:
                        self.data[name][start:stop] = [values[i] for i in local_rows.tolist()]

    def take(self, a: int, b: int) -> tuple[Batch, np.ndarray]:
        """Positions a..b-1 of the epoch (inside this window) and their global rows."""
        for future in self._futures:
            future.result()  # waits for the parts; re-raises a part's error
        picked = self.served[a - self.start : b - self.start]
        picked = picked[self.kept[picked]]
        batch = {
            k: np.take(v, picked, axis=0) if isinstance(v, np.ndarray) else [v[i] for i in picked]
            for k, v in self.data.items()
        }
        rows = self.rows[picked]
        if self._mapped:
            batch.update(self._files.gather_mapped(self._mapped, rows))
        return batch, rows

    def cancel(self) -> None:
        for future in self._futures:
            future.cancel()

    def recycle(self, spares: list[dict[str, np.ndarray]], *, unmap: bool) -> None:
        """Hand this window's arrays to the next window (batches hold copies, never views);
        with ``unmap``, unmap the mapped columns' pages of its rows from this process."""
        arrays = {
            k: v.base if v.base is not None else v
            for k, v in self.data.items()
            if isinstance(v, np.ndarray)
        }
        if arrays and len(spares) < 1:
            spares.append(arrays)
        self.data = {}
        if self._mapped and unmap:
            self._files.release_mapped(self._mapped, self.rows)


class OpenWindows:
    """The windows of one pass over an epoch's order: read when a batch needs them, the next one
    read ahead while one is served (never more than ``ahead`` at once), recycled once served."""

    def __init__(
        self,
        order: EpochOrder,
        *,
        files: Files,
        columns: Sequence[str] | None,
        errors: ErrorPolicy,
        threads: int,
        pool: ThreadPoolExecutor,
        spares: list[dict[str, np.ndarray]],
        ahead: int,
        unmap: bool,
        first: Window | None = None,
    ) -> None:
        self._order = order
        self._files = files
        self._columns = columns
        self._errors = errors
        self._threads = threads
        self._pool = pool
        self._spares = spares
        self._ahead = ahead
        self._unmap = unmap
        self._windows: dict[int, Window] = {} if first is None else {0: first}

    def for_batch(self, a: int, b: int) -> list[Window]:
        """The windows a batch of positions a..b-1 needs, starting any not yet read."""
        first, last = self._order.window_at(a), self._order.window_at(b - 1)
        for w in range(first, last + 1):
            if w not in self._windows:
                self._windows[w] = self._read(w)
        return [self._windows[w] for w in range(first, last + 1)]

    def recycle_served(self, position: int) -> None:
        """Recycle the windows served in full once positions before ``position`` are."""
        for w in [w for w in self._windows if self._windows[w].stop <= position]:
            self._windows.pop(w).recycle(self._spares, unmap=self._unmap)

    def read_ahead(self, position: int) -> None:
        """Start reading the window after the one being served, so it is ready when needed;
        never more windows at once than the memory budget holds (two, or one)."""
        upcoming = self._order.window_at(position) + 1
        if (
            upcoming < self._order.num_windows
            and upcoming not in self._windows
            and len(self._windows) < self._ahead
        ):
            self._windows[upcoming] = self._read(upcoming)

    def last_started(self) -> bool:
        """Whether the order's last window is being read or served (nothing left to read)."""
        return self._order.num_windows - 1 in self._windows

    def held(self) -> int:
        """Windows held now (read or being read)."""
        return len(self._windows)

    def cancel(self) -> None:
        for window in self._windows.values():
            window.cancel()

    def _read(self, window: int) -> Window:
        return Window(
            self._order,
            window,
            files=self._files,
            columns=self._columns,
            errors=self._errors,
            threads=self._threads,
            pool=self._pool,
            spares=self._spares,
        )


def take_from(windows: list[Window], a: int, b: int) -> tuple[Batch, np.ndarray]:
    """Positions a..b-1 of the epoch from the windows they lie in, and their global rows."""
    pieces = [w.take(max(a, w.start), min(b, w.stop)) for w in windows]
    if len(pieces) == 1:
        return pieces[0]
    rows = np.concatenate([r for _, r in pieces])
    batch = {k: concat_values([p[k] for p, _ in pieces]) for k in pieces[0][0]}
    return batch, rows
