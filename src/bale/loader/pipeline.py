"""The Loader: batches from one or more .bale files, read and transformed ahead in threads."""

from __future__ import annotations

import inspect
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from bale._core.dataset import Batch, Dataset, reader_of
from bale._core.mapped import MappedColumn
from bale.errors import BaleError, CorruptFileError
from bale.format.schema import Array
from bale.loader.order import EpochOrder, Partition, Phase, ShuffleMode, epoch_order

RowTransform = Callable[[dict[str, Any]], dict[str, Any]]
BatchTransform = Callable[[Batch], Batch]
OnError = Literal["raise", "skip"]

DEFAULT_MEMORY_BUDGET = 1 << 30
#: Memory the loader uses whatever the window size (measured: about 16 MiB of growth beyond the
#: windows and buffers with 2 threads).
_FIXED_OVERHEAD_BYTES = 16 << 20
_INDEX_BYTES_PER_ROW = 2 * (8 + 8 + 1) + 4 * 8
#: Decoded bytes of a default shuffle window ("chunks"), counted over all of a file's columns.
#: A function of the data only, so that the order never depends on memory or speed settings.
DEFAULT_WINDOW_BYTES = 256 << 20
_STATE_VERSION = 2


def detect_distributed() -> tuple[int, int]:
    """(rank, world_size): from an initialised torch.distributed, else the RANK / WORLD_SIZE
    variables torchrun and most launchers set, else (0, 1). Called when a Loader is built.

    Inconsistent sources are an error, never a silent (0, 1) that would make every rank read
    the whole epoch: RANK without WORLD_SIZE (or the reverse), values that are not integers or
    out of range, or variables that disagree with the initialised process group."""
    env = os.environ
    from_env: tuple[int, int] | None = None
    if "RANK" in env or "WORLD_SIZE" in env:
        if "RANK" not in env or "WORLD_SIZE" not in env:
            raise ValueError(
                "RANK and WORLD_SIZE must be set together (found only "
                f"{'RANK' if 'RANK' in env else 'WORLD_SIZE'}); or pass rank= and world_size="
            )
        try:
            from_env = int(env["RANK"]), int(env["WORLD_SIZE"])
        except ValueError:
            raise ValueError(
                f"RANK={env['RANK']!r} and WORLD_SIZE={env['WORLD_SIZE']!r} must be integers"
            ) from None
        if from_env[1] < 1 or not 0 <= from_env[0] < from_env[1]:
            raise ValueError(f"RANK={from_env[0]} is not in 0..WORLD_SIZE-1={from_env[1] - 1}")
    # Only a program that already imported torch.distributed can have initialised it; importing
    # torch here just to ask would cost every Loader seconds.
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        from_group = int(dist.get_rank()), int(dist.get_world_size())
        if from_env is not None and from_env != from_group:
            raise ValueError(
                f"torch.distributed says rank {from_group[0]} of {from_group[1]} but RANK and "
                f"WORLD_SIZE say {from_env[0]} of {from_env[1]}; pass rank= and world_size= to "
                "say which is meant"
            )
        return from_group
    return from_env if from_env is not None else (0, 1)


@dataclass(frozen=True)
class _Files:
    """Several files read as one dataset: global row numbers and row groups across files."""

    datasets: list[Dataset]
    row_starts: np.ndarray  # first global row of each file
    group_file: np.ndarray  # file of each global row group
    group_local: np.ndarray  # row group number inside its file

    @classmethod
    def open(cls, paths: Sequence[str], columns: Sequence[str] | None, cache_bytes: int) -> _Files:
        datasets: list[Dataset] = []
        try:
            for path in paths:
                datasets.append(Dataset(path, cache_bytes=cache_bytes))
            first = datasets[0].schema
            for ds in datasets[1:]:
                if ds.schema.describe() != first.describe():
                    raise BaleError(
                        f"all files of one Loader need the same columns: {ds.schema.describe()} "
                        f"differs from {first.describe()} in {datasets[0].path!r}",
                        path=ds.path,
                    )
            reader_of(datasets[0]).check_columns(columns)
        except BaseException:
            for ds in datasets:
                ds.close()
            raise
        sizes = [len(ds) for ds in datasets]
        row_starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        group_file = np.concatenate(
            [np.full(ds.num_row_groups, i, np.int64) for i, ds in enumerate(datasets)]
        )
        group_local = np.concatenate([np.arange(ds.num_row_groups) for ds in datasets])
        return cls(datasets, row_starts, group_file, group_local.astype(np.int64))

    @property
    def group_sizes(self) -> np.ndarray:
        return np.concatenate([np.asarray(ds.row_group_sizes, np.int64) for ds in self.datasets])

    def mapped(self, name: str) -> bool:
        """Whether column ``name`` is uncompressed (read from the mapped file) in every file."""
        return all(reader_of(ds).mapped_column(name) is not None for ds in self.datasets)

    def gather_mapped(self, names: Sequence[str], rows: np.ndarray) -> Batch:
        """Mapped columns' values of these global rows, in this order: one gather per file."""
        files, local = self.locate(rows)
        out: Batch = {}
        for name in names:
            if len(self.datasets) == 1:
                out[name] = self.mapped_column(0, name).gather(local)
                continue
            parts = []
            for f in np.unique(files).tolist():
                positions = np.flatnonzero(files == f)
                parts.append(
                    (positions, {name: self.mapped_column(f, name).gather(local[positions])})
                )
            out[name] = _merge(parts, len(rows))[name]
        return out

    def release_mapped(self, names: Sequence[str], rows: np.ndarray) -> None:
        """Unmap the row groups these rows lie in (served windows) from this process."""
        files, local = self.locate(rows)
        for f in np.unique(files).tolist():
            ds = self.datasets[f]
            groups = np.unique(reader_of(ds).groups.groups_of(local[files == f]))
            for name in names:
                self.mapped_column(f, name).release(groups)

    def mapped_column(self, file: int, name: str) -> MappedColumn:
        mapped = reader_of(self.datasets[file]).mapped_column(name)
        if mapped is None:
            raise RuntimeError(f"internal error: column {name!r} is not mapped")
        return mapped

    def locate(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        file = np.searchsorted(self.row_starts, rows, side="right") - 1
        return file, rows - self.row_starts[file]

    def close(self) -> None:
        for ds in self.datasets:
            ds.close()


def default_window_groups(datasets: Sequence[Dataset]) -> int:
    """Row groups in a default "chunks" window: DEFAULT_WINDOW_BYTES of decoded data, counted
    over all columns. A function of the files only (not of the columns read or the memory
    budget), so the same files always give the same order."""
    group_bytes = max(1, max(reader_of(ds).decoded_group_bytes() for ds in datasets))
    return max(2, DEFAULT_WINDOW_BYTES // group_bytes)


class Loader:
    """Batches for training, read ahead in a thread pool so the accelerator never waits.

    >>> loader = bale.Loader("train.bale", batch_size=256, shuffle="chunks", seed=0)  # doctest: +SKIP
    >>> for epoch in range(10):
    ...     loader.set_epoch(epoch)
    ...     for batch in loader:        # {"image": uint8 (256, ...), "label": int64 (256,)}
    ...         train_step(batch)

    Shuffle modes: ``"chunks"`` (default) shuffles the order of row groups every epoch and rows
    within a window of ``window_groups`` row groups held in memory; ``"full"`` is a uniform
    permutation read by random access (small data or fast disks); ``"none"`` keeps file order.
    The order is a pure function of (seed, epoch, rank, world_size): see ``bale.loader.order``.

    ``transform`` runs on each row (a dict) and ``batch_transform`` on each collated batch, both
    in the worker threads. Use functions that release the GIL (NumPy, simplejpeg, Pillow) for
    parallel speed. ``state_dict()`` / ``load_state_dict()`` resume exactly at the next unseen
    row. With ``rank``/``world_size`` (detected from torch.distributed or RANK/WORLD_SIZE when not
    given) each rank gets a disjoint, equal share of every epoch.
    """

    def __init__(
        self,
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        batch_size: int,
        *,
        shuffle: ShuffleMode | bool = "chunks",
        seed: int = 0,
        columns: Sequence[str] | None = None,
        transform: RowTransform | None = None,
        batch_transform: BatchTransform | None = None,
        drop_last: bool = False,
        num_threads: int = 4,
        prefetch: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        partition: Partition = "drop",
        window_groups: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        on_error: OnError = "raise",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if shuffle is True:
            shuffle = "chunks"
        elif shuffle is False:
            shuffle = "none"
        if shuffle not in ("chunks", "full", "none"):
            raise ValueError(f"shuffle must be 'chunks', 'full', 'none' or a bool, got {shuffle!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = [os.fspath(p) for p in paths]
        if not self.paths:
            raise ValueError("Loader needs at least one file")
        self.batch_size = batch_size
        self.shuffle: ShuffleMode = shuffle
        self.seed = seed
        self.columns = list(columns) if columns is not None else None
        self.transform = transform
        self.batch_transform = batch_transform
        self.drop_last = drop_last
        self.num_threads = max(1, num_threads)
        self.prefetch = prefetch if prefetch is not None else 2 * self.num_threads
        if self.prefetch < 1:
            raise ValueError(f"prefetch must be >= 1 batch, got {prefetch}")
        if rank is None or world_size is None:
            detected_rank, detected_world = detect_distributed()
            rank = detected_rank if rank is None else rank
            world_size = detected_world if world_size is None else world_size
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"rank must be in 0..world_size-1, got rank={rank}, world_size={world_size}"
            )
        self.rank, self.world_size = rank, world_size
        self.partition: Partition = partition
        self.memory_budget = memory_budget
        self.on_error: OnError = on_error
        self.skipped_rows = 0
        self._files = _Files.open(self.paths, self.columns, cache_bytes=0)
        self._transform_takes_rows = _accepts_rows(batch_transform)
        self.window_groups = window_groups or default_window_groups(self._files.datasets)
        if self.window_groups < 1:
            raise ValueError(f"window_groups must be >= 1, got {window_groups}")
        window_budget = self._plan_memory()
        # "full" mode reads batches straight from the files: its block cache gets the budget.
        # "chunks" decodes each row group once per window and needs no cache.
        if shuffle == "full":
            per_file_cache = window_budget // len(self._files.datasets)
        elif shuffle == "none":  # a row group spans several batches: decode it once
            per_file_cache = (self.num_threads + 2) * self._group_bytes
        else:
            per_file_cache = 0
        for ds in self._files.datasets:
            ds.cache_bytes = per_file_cache
        self.epoch = 0
        self._history: list[Phase] = []  # how earlier runs consumed the start of this epoch
        self._position = 0  # rows of this run's sequence already handed out
        self._resumed = False
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._order_cache: tuple[tuple[Any, ...], EpochOrder] | None = None
        self._spare_buffers: list[dict[str, np.ndarray]] = []  # arrays of a served window
        # Uncompressed columns are read from the mapped files. Their pages are page cache, not
        # memory the loader allocates; still, when they would not fit in the windows' share of
        # the budget, served windows are unmapped so the process's RSS stays within it (at the
        # cost of mapping the pages again next epoch).
        mapped_bytes = sum(
            reader_of(ds).decoded_group_bytes([n]) * ds.num_row_groups
            for ds in self._files.datasets
            for n in (self.columns or ds.schema.names)
            if reader_of(ds).mapped_column(n) is not None
        )
        self._unmap_served_windows = mapped_bytes > window_budget

    def _plan_memory(self) -> int:
        """Split the memory budget; returns the bytes left for windows (or the block cache) and
        mapped pages once batches in flight and thread buffers are counted.

        The budget holds the windows (the one served and, when it fits, the next one read
        ahead), the batches in flight, each thread's compressed and decoded row group while it
        fills a window, and a fixed allowance for the rest. It changes how much is read ahead
        (windows, then prefetched batches), never the order: a budget too small for one window
        is an error that says what to change."""
        files = self._files
        self._group_bytes = max(
            1, max(reader_of(ds).decoded_group_bytes(self.columns) for ds in files.datasets)
        )
        # Uncompressed columns are gathered from the mapped files: windows do not hold them.
        held = [n for n in self.columns or files.datasets[0].schema.names if not files.mapped(n)]
        held_bytes = max(reader_of(ds).decoded_group_bytes(held) for ds in files.datasets)
        rows_per_group = max(1, int(np.median(files.group_sizes))) if self.num_rows else 1
        batch_bytes = self.batch_size * self._group_bytes // rows_per_group
        threads = self.num_threads * 2 * self._group_bytes
        free = self.memory_budget - _FIXED_OVERHEAD_BYTES - threads
        self._windows_ahead = 1
        if self.shuffle != "chunks":
            return max(0, free - self.prefetch * batch_bytes)
        # Each row of a window also costs index entries: its row number and serving position
        # in the two windows (17 bytes) and in the order's cache of 4 windows (32 bytes).
        group_cost = held_bytes + _INDEX_BYTES_PER_ROW * rows_per_group
        window_groups = min(self.window_groups, len(files.group_sizes))
        window_bytes = window_groups * group_cost
        for windows in (2, 1):
            prefetch = (free - windows * window_bytes) // max(1, batch_bytes)
            if prefetch >= 1:
                self._windows_ahead = windows
                self.prefetch = int(min(self.prefetch, prefetch))
                return max(0, free - self.prefetch * batch_bytes)
        need = window_bytes + batch_bytes + threads + _FIXED_OVERHEAD_BYTES
        raise ValueError(
            f"memory_budget={self.memory_budget} bytes cannot hold one shuffle window of "
            f"{window_groups} row groups ({window_bytes} bytes decoded) and a batch: give "
            f"memory_budget >= {need}, or a smaller window_groups= (which changes the order: "
            "resume with the same value)"
        )

    # -- order and state ----------------------------------------------------------------------

    def _order(self, epoch: int, worker: int = 0, workers: int = 1) -> EpochOrder:
        """What this rank (as DataLoader worker ``worker`` of ``workers``) reads in ``epoch``:
        in the current epoch, what earlier runs left (the resumed history)."""
        history = tuple(self._history) if epoch == self.epoch else ()
        key = (epoch, worker, workers, history)
        cached = self._order_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        order = epoch_order(
            self._files.group_sizes,
            mode=self.shuffle,
            seed=self.seed,
            epoch=epoch,
            rank=self.rank,
            world_size=self.world_size,
            worker=worker,
            workers=workers,
            partition=self.partition,
            window_groups=self.window_groups,
            history=history,
        )
        self._order_cache = (key, order)
        return order

    @property
    def num_rows(self) -> int:
        """Rows in all files together."""
        return int(self._files.row_starts[-1] + len(self._files.datasets[-1]))

    def rows_per_epoch(self) -> int:
        """Rows this rank reads in the current epoch (before drop_last; after a resume, what is
        left of it)."""
        return len(self._order(self.epoch))

    def __len__(self) -> int:
        """Batches this rank yields in the current epoch (after a resume, those left)."""
        rows = self.rows_per_epoch()
        return rows // self.batch_size if self.drop_last else -(-rows // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` at its beginning on the next iteration (as DistributedSampler); right
        after ``load_state_dict`` with the saved epoch, continue where the saved run stopped."""
        if not (self._resumed and epoch == self.epoch):
            self._history, self._position = [], 0
        self.epoch = epoch
        self._resumed = False

    def epoch_end(self, start: int = 0) -> int:
        """The position where an epoch iterated from ``start`` stops: all of this rank's rows, or
        with drop_last the end of the last whole batch counted from ``start``."""
        total = self.rows_per_epoch()
        if self.drop_last and total > start:
            total -= (total - start) % self.batch_size
        return total

    def state_dict(self) -> dict[str, Any]:
        """Where the next batch starts, for all ranks together: the epoch and how it was consumed
        so far (a few numbers per resume). Taken right after an epoch's last batch, it points at
        the start of the next epoch. Any rank's state is every rank's: ranks move in step."""
        phases = list(self._history)
        epoch = self.epoch
        if self._position and self._position >= self.epoch_end(0):
            epoch, phases = epoch + 1, []
        elif self._position:
            batches = -(-self._position // self.batch_size)
            phases.append(Phase(self.world_size, 1, self.batch_size, batches))
        return {
            "version": _STATE_VERSION,
            "epoch": epoch,
            "phases": [[p.world_size, p.workers, p.batch_size, p.batches] for p in phases],
            "seed": self.seed,
            "shuffle": self.shuffle,
            "partition": self.partition,
            "window_groups": self.window_groups,
            "num_rows": self.num_rows,
            "num_row_groups": len(self._files.group_sizes),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume where ``state_dict()`` was taken: the rows not yet served are shared among the
        ranks (and workers) of this run, whatever their number, batch size or threads. Settings
        that shape the order (seed, shuffle, partition, window size, the data) must match."""
        if state.get("version") != _STATE_VERSION:
            raise ValueError(
                f"cannot resume from a loader state of version {state.get('version')!r}; this "
                f"bale writes and reads version {_STATE_VERSION}"
            )
        current = {
            "seed": self.seed,
            "shuffle": self.shuffle,
            "partition": self.partition,
            "window_groups": self.window_groups,
            "num_rows": self.num_rows,
            "num_row_groups": len(self._files.group_sizes),
        }
        mismatched = {k: (state.get(k), v) for k, v in current.items() if state.get(k) != v}
        if mismatched:
            raise ValueError(
                f"cannot resume: the saved state was taken with different settings {mismatched} "
                "(saved, current); the order would differ"
            )
        try:
            phases = [Phase(*(int(x) for x in p)) for p in state["phases"]]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"cannot resume: malformed phases {state.get('phases')!r}") from exc
        self.epoch = int(state["epoch"])
        self._history = phases
        self._position = 0
        self._resumed = True

    # -- iteration ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Batch]:
        """One epoch from the current position. When it ends, the next iteration is the next
        epoch (unless ``set_epoch`` says otherwise)."""
        self._resumed = False
        yield from self.iter_batches(self.epoch, start=self._position)
        self.epoch += 1
        self._history, self._position = [], 0

    def iter_batches(
        self, epoch: int, *, start: int = 0, worker: int = 0, num_workers: int = 1
    ) -> Iterator[Batch]:
        """The batches of ``epoch`` from row position ``start`` of this consumer's sequence; with
        ``num_workers`` > 1, those of DataLoader worker ``worker``: the workers of a rank split
        its rows (each reads only its own row groups), and together serve every row once."""
        if not 0 <= worker < num_workers:
            raise ValueError(f"worker must be in 0..num_workers-1, got {worker}/{num_workers}")
        order = self._order(epoch, worker, num_workers)
        total = len(order)
        if self.drop_last and total > start:
            total -= (total - start) % self.batch_size
        starts = list(range(start, total, self.batch_size))
        yield from self._run(order, starts, total)

    def _run(self, order: EpochOrder, starts: list[int], total: int) -> Iterator[Batch]:
        """Batches starting at ``starts``, made ``prefetch`` ahead in the pool. In "chunks" mode
        rows come from windows read whole (each row group read and decoded once per window, in
        parallel) while the previous window is served; "none" and "full" read each batch
        directly (contiguous rows in "none", through the block cache)."""
        pool = self._ensure_pool()
        pending: deque[tuple[int, Future[Batch]]] = deque()
        windows: dict[int, _Window] = {}
        next_start = 0
        try:
            while next_start < len(starts) or pending:
                while next_start < len(starts) and len(pending) < self.prefetch:
                    a = starts[next_start]
                    b = min(a + self.batch_size, total)
                    if order.mode != "chunks":
                        task = pool.submit(self._make_batch, order, a, b)
                    else:
                        needed = self._windows_for(order, a, b, windows, pool)
                        task = pool.submit(self._make_window_batch, needed, a, b, order.epoch)
                    pending.append((b, task))
                    next_start += 1
                end, future = pending.popleft()
                batch = future.result()  # re-raises a worker's exception with its traceback
                self._position = end
                for w in [w for w in windows if windows[w].stop <= end]:
                    windows.pop(w).recycle(self._spare_buffers)  # fully served
                if order.mode == "chunks" and end < total:
                    self._read_next_window(order, end, windows, pool)
                yield batch
        finally:
            for _, future in pending:
                future.cancel()
            for window in windows.values():
                window.cancel()

    def _windows_for(
        self,
        order: EpochOrder,
        a: int,
        b: int,
        windows: dict[int, _Window],
        pool: ThreadPoolExecutor,
    ) -> list[_Window]:
        """The windows a batch of positions a..b-1 needs, starting any not yet read."""
        first, last = order.window_at(a), order.window_at(b - 1)
        for w in range(first, last + 1):
            if w not in windows:
                windows[w] = _Window(self, order, w, pool, self._spare_buffers)
        return [windows[w] for w in range(first, last + 1)]

    def _read_next_window(
        self,
        order: EpochOrder,
        position: int,
        windows: dict[int, _Window],
        pool: ThreadPoolExecutor,
    ) -> None:
        """Start reading the window after the one being served, so it is ready when needed;
        never more windows at once than the memory budget holds (two, or one)."""
        upcoming = order.window_at(position) + 1
        if (
            upcoming < order.num_windows
            and upcoming not in windows
            and len(windows) < self._windows_ahead
        ):
            windows[upcoming] = _Window(self, order, upcoming, pool, self._spare_buffers)

    def _make_window_batch(self, windows: list[_Window], a: int, b: int, epoch: int) -> Batch:
        pieces = [w.take(max(a, w.start), min(b, w.stop)) for w in windows]
        if len(pieces) == 1:
            batch, rows = pieces[0]
        else:
            rows = np.concatenate([r for _, r in pieces])
            batch = {k: _concat([p[k] for p, _ in pieces]) for k in pieces[0][0]}
        return self._finish_batch(batch, rows, epoch)

    def _make_batch(self, order: EpochOrder, a: int, b: int) -> Batch:
        batch, rows = self._gather(order.rows(a, b))
        return self._finish_batch(batch, rows, order.epoch)

    def _finish_batch(self, batch: Batch, rows: np.ndarray, epoch: int) -> Batch:
        if self.transform is not None:
            batch, rows = self._apply_row_transform(batch, rows)
        if self.batch_transform is not None:
            batch = self._apply_batch_transform(self.batch_transform, batch, rows, epoch)
        return batch

    def _apply_batch_transform(
        self, transform: BatchTransform, batch: Batch, rows: np.ndarray, epoch: int
    ) -> Batch:
        """Run the batch transform; a failure names the file and row it came from (transforms
        such as DecodeImages tag errors with ``batch_index``). In skip mode that row is dropped
        and the transform retried."""
        while True:
            try:
                if self._transform_takes_rows:
                    return transform(batch, rows=rows, epoch=epoch)  # type: ignore[call-arg]
                return transform(batch)
            except Exception as exc:
                index = getattr(exc, "batch_index", None)
                if index is None or not 0 <= index < len(rows):
                    raise
                if self.on_error == "raise":
                    raise self._row_error(int(rows[index]), exc) from exc
                with self._lock:
                    self.skipped_rows += 1
                keep = np.arange(len(rows)) != index
                rows = rows[keep]
                batch = {k: _select(v, keep) for k, v in batch.items()}

    def _row_error(self, row: int, exc: Exception) -> BaleError:
        file, local = self._files.locate(np.array([row]))
        detail = exc.detail if isinstance(exc, BaleError) else f"{type(exc).__name__}: {exc}"
        column = exc.column if isinstance(exc, BaleError) else None
        return BaleError(
            f"{detail} (use on_error='skip' to skip such rows)",
            path=self._files.datasets[int(file[0])].path,
            column=column,
            rows=(int(local[0]), int(local[0]) + 1),
        )

    def _gather(self, rows: np.ndarray) -> tuple[Batch, np.ndarray]:
        """The batch for these global rows, and the rows it holds (fewer in skip mode)."""
        batch, kept = self._gather_mask(rows)
        return batch, rows[kept]

    def _gather_mask(self, rows: np.ndarray) -> tuple[Batch, np.ndarray]:
        """The batch for these global rows and a mask of the rows it holds (skip mode drops
        rows of damaged row groups)."""
        files, local = self._files.locate(rows)
        if len(self._files.datasets) == 1:
            return self._take(self._files.datasets[0], local)
        parts = []
        kept = np.zeros(len(rows), bool)
        for f in np.unique(files).tolist():
            positions = np.flatnonzero(files == f)
            batch, keep = self._take(self._files.datasets[f], local[positions])
            kept[positions[keep]] = True
            parts.append((positions[keep], batch))
        # Positions in the merged batch: rank of each kept position among all kept ones.
        new_position = np.cumsum(kept) - 1
        parts = [(new_position[p], b) for p, b in parts]
        return _merge(parts, int(kept.sum())), kept

    def _take(self, ds: Dataset, local: np.ndarray) -> tuple[Batch, np.ndarray]:
        everything = np.ones(len(local), bool)
        contiguous = len(local) > 0 and int(local[-1]) - int(local[0]) == len(local) - 1
        if contiguous and bool((np.diff(local) == 1).all()):
            rows = slice(int(local[0]), int(local[-1]) + 1)
            read: Callable[[], Batch] = lambda: _own(ds.read(rows, self.columns))  # noqa: E731
        else:
            read = lambda: ds.take(local, self.columns)  # noqa: E731
        if self.on_error == "raise":
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
                reader_of(ds).prefetch_group(g, self.columns)
            except CorruptFileError:
                keep = keep & (groups != g)
        with self._lock:
            self.skipped_rows += int((~keep).sum())
        return ds.take(local[keep], self.columns), keep

    def _apply_row_transform(self, batch: Batch, rows: np.ndarray) -> tuple[Batch, np.ndarray]:
        transform = self.transform
        if transform is None:
            return batch, rows
        out_rows = []
        kept = []
        for i in range(len(rows)):
            row = {k: v[i] for k, v in batch.items()}
            try:
                out_rows.append(transform(row))
                kept.append(i)
            except Exception as exc:
                if self.on_error == "raise":
                    raise self._row_error(int(rows[i]), exc) from exc
                with self._lock:
                    self.skipped_rows += 1
        return collate(out_rows), rows[kept]

    def _ensure_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.num_threads, thread_name_prefix="bale-loader")
        return self._pool

    def evict_from_page_cache(self) -> None:
        """Drop the files from the OS page cache, this process's mappings of them included
        (mapped pages cannot be evicted): for cold-cache measurements."""
        for ds in self._files.datasets:
            ds.evict_from_page_cache()

    def close(self) -> None:
        """Stop the worker threads and close the files."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._spare_buffers.clear()
        self._files.close()

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pool"] = None
        state["_lock"] = None
        state["_spare_buffers"] = []
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class _Window:
    """One window of an epoch held in memory, for the "chunks" shuffle.

    Rows are stored in stream order, where they form runs of consecutive rows of one row group:
    filling the window is a series of contiguous copies out of decoded blocks, split by row
    group into one part per loader thread, so each row group is read and decoded exactly once
    and the parts run in parallel. A batch applies the window's permutation as one gather of
    its rows, a copy, so a batch kept by the training loop does not pin the window.
    """

    def __init__(
        self,
        loader: Loader,
        order: EpochOrder,
        window: int,
        pool: ThreadPoolExecutor,
        spares: list[dict[str, np.ndarray]],
    ):
        self.start, self.stop = order.window_bounds(window)
        self.rows, self.served = order.window_stream(window)
        n = len(self.rows)
        self.kept = np.ones(n, bool)
        self.data: Batch = {}
        files = loader._files
        schema = files.datasets[0].schema
        columns = list(loader.columns or schema.names)
        # Uncompressed array columns are gathered per batch straight from the mapped files:
        # the window neither copies nor holds them.
        self._mapped = [name for name in columns if files.mapped(name)]
        self._columns = [name for name in columns if name not in self._mapped]
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
        parts = min(loader.num_threads, max(1, len(np.unique(run_groups))))
        self._loader = loader
        self._group_starts = order.group_starts
        self._futures = [
            pool.submit(self._fill, run_starts[sel], run_stops[sel], run_groups[sel])
            for sel in (run_groups % parts == p for p in range(parts))
            if sel.any()
        ]

    def _fill(self, run_starts: np.ndarray, run_stops: np.ndarray, run_groups: np.ndarray) -> None:
        loader = self._loader
        files = loader._files
        for start, stop, group in zip(
            run_starts.tolist(), run_stops.tolist(), run_groups.tolist(), strict=True
        ):
            ds = files.datasets[int(files.group_file[group])]
            local = int(files.group_local[group])
            try:
                for name in self._mapped:
                    mapped = files.mapped_column(int(files.group_file[group]), name)
                    if loader.on_error == "skip":  # find damage now, where rows can be dropped
                        mapped.verify_groups(np.array([local]))
                    else:  # gathered and checked per batch; start reading it now
                        mapped.will_need(local)
                block = ds.read_row_group(local, self._columns) if self._columns else {}
            except CorruptFileError:
                if loader.on_error == "raise":
                    raise
                self.kept[start:stop] = False
                with loader._lock:
                    loader.skipped_rows += stop - start
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
            batch.update(self._loader._files.gather_mapped(self._mapped, rows))
        return batch, rows

    def cancel(self) -> None:
        for future in self._futures:
            future.cancel()

    def recycle(self, spares: list[dict[str, np.ndarray]]) -> None:
        """Hand this window's arrays to the next window (batches hold copies, never views)."""
        arrays = {
            k: v.base if v.base is not None else v
            for k, v in self.data.items()
            if isinstance(v, np.ndarray)
        }
        if arrays and len(spares) < 1:
            spares.append(arrays)
        self.data = {}
        if self._mapped and self._loader._unmap_served_windows:
            self._loader._files.release_mapped(self._mapped, self.rows)


def _own(batch: Batch) -> Batch:
    """Copies of arrays that are views of cached blocks (read-only, shared between callers)."""
    return {
        k: v.copy() if isinstance(v, np.ndarray) and not v.flags.writeable else v
        for k, v in batch.items()
    }


def _concat(pieces: list[Any]) -> Any:
    if isinstance(pieces[0], np.ndarray):
        return np.concatenate(pieces)
    return [value for piece in pieces for value in piece]


def collate(rows: Sequence[Mapping[str, Any]]) -> Batch:
    """Rows (dicts) -> a batch: NumPy values stacked into one array, anything else as a list."""
    if not rows:
        return {}
    out: Batch = {}
    for key in rows[0]:
        values = [row[key] for row in rows]
        first = values[0]
        if isinstance(first, (np.ndarray, np.generic, int, float, bool)):
            out[key] = np.stack([np.asarray(v) for v in values])
        else:
            out[key] = values
    return out


def _accepts_rows(transform: Any) -> bool:
    """Whether a batch transform takes ``rows=`` and ``epoch=`` keywords (global row numbers of
    the batch and the epoch), as DecodeImages does to seed augmentations reproducibly."""
    if transform is None:
        return False
    try:
        parameters = inspect.signature(transform).parameters
    except (TypeError, ValueError):
        return False
    return "rows" in parameters and "epoch" in parameters


def _select(values: Any, keep: np.ndarray) -> Any:
    if isinstance(values, np.ndarray):
        return values[keep]
    return [v for v, k in zip(values, keep.tolist(), strict=True) if k]


def _merge(parts: list[tuple[np.ndarray, Batch]], n: int) -> Batch:
    out: Batch = {}
    for key in parts[0][1]:
        first = parts[0][1][key]
        if isinstance(first, np.ndarray):
            result: Any = np.empty((n, *first.shape[1:]), first.dtype)
        else:
            result = [None] * n
        for positions, batch in parts:
            if isinstance(result, np.ndarray):
                result[positions] = batch[key]
            else:
                for p, v in zip(positions.tolist(), batch[key], strict=True):
                    result[p] = v
        out[key] = result
    return out
