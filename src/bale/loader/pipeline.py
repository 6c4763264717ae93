"""The Loader: batches from one or more .bale files, read and transformed ahead in threads."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from bale._core.dataset import Batch
from bale.io.listing import expand_paths
from bale.loader.batches import (
    BatchTransform,
    ErrorPolicy,
    OnError,
    RowTransform,
    accepts_rows,
    finish_batch,
    gather,
)
from bale.loader.budget import (
    DEFAULT_MEMORY_BUDGET,
    DEFAULT_WINDOW_BYTES,
    default_window_groups,
    plan_memory,
)
from bale.loader.collate import collate
from bale.loader.distributed import detect_distributed, resolve_rank
from bale.loader.files import Files
from bale.loader.order import EpochOrder, Partition, Phase, ShuffleMode, epoch_order
from bale.loader.state import decode_state, encode_state
from bale.loader.window import OpenWindows, Window, take_from

# Some of these are defined in the modules the Loader is built from: other modules import them
# from here, where they were first defined.
__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "DEFAULT_WINDOW_BYTES",
    "BatchTransform",
    "Loader",
    "OnError",
    "RowTransform",
    "collate",
    "default_window_groups",
    "detect_distributed",
]


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

    ``close()`` (or ``with bale.Loader(...) as loader:``) stops the threads and closes the files
    at once; a Loader dropped without it, after a ``break`` too, releases both when collected.
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
        storage_options: Mapping[str, Any] | None = None,
        remote_options: Any = None,
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
        # Globs and object-store prefixes (s3://bucket/train-*.bale) become their files, sorted.
        self.paths = expand_paths(paths, storage_options)
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
        self.rank, self.world_size = resolve_rank(rank, world_size)
        self.partition: Partition = partition
        self.memory_budget = memory_budget
        if window_groups is not None and window_groups < 1:
            raise ValueError(f"window_groups must be >= 1, got {window_groups}")
        self.storage_options = dict(storage_options) if storage_options else None
        self._files = Files.open(
            self.paths,
            self.columns,
            cache_bytes=0,
            storage_options=self.storage_options,
            remote_options=remote_options,
        )
        try:
            self._errors = ErrorPolicy(on_error, self._files)
            self._transform_takes_rows = accepts_rows(batch_transform)
            self.window_groups = (
                window_groups
                if window_groups is not None
                else default_window_groups(self._files.datasets)
            )
            plan = plan_memory(
                self._files.sizes(self.columns),
                memory_budget=self.memory_budget,
                shuffle=self.shuffle,
                batch_size=self.batch_size,
                prefetch=self.prefetch,
                num_threads=self.num_threads,
                window_groups=self.window_groups,
            )
        except BaseException:
            self._files.close()  # nothing is left open when the Loader cannot be made
            raise
        self.prefetch = plan.prefetch
        self._windows_ahead = plan.windows_ahead
        # Mapped columns' pages that would not fit in the windows' share of the budget are
        # unmapped once their window is served (see budget.plan_memory).
        self._unmap_served_windows = plan.unmap_served_windows
        for ds in self._files.datasets:
            ds.cache_bytes = plan.cache_bytes
        self.epoch = 0
        self._history: list[Phase] = []  # how earlier runs consumed the start of this epoch
        self._position = 0  # rows of this run's sequence already handed out
        self._resumed = False
        self._pool: ThreadPoolExecutor | None = None
        self._order_cache: dict[tuple[Any, ...], EpochOrder] = {}  # this epoch's and the next
        # The next epoch's first window, read while this epoch's last one is served.
        self._early: tuple[tuple[Any, ...], Window] | None = None
        self._passes_finished = 0  # passes run to an epoch's end in this process
        self._spare_buffers: list[dict[str, np.ndarray]] = []  # arrays of a served window

    @property
    def on_error(self) -> OnError:
        """What a row that cannot be read or transformed does: "raise" or "skip"."""
        return self._errors.on_error

    @on_error.setter
    def on_error(self, on_error: OnError) -> None:
        self._errors.on_error = on_error

    @property
    def skipped_rows(self) -> int:
        """Rows left out so far in skip mode (``on_error="skip"``)."""
        return self._errors.skipped_rows

    @skipped_rows.setter
    def skipped_rows(self, rows: int) -> None:
        self._errors.skipped_rows = rows

    # -- order and state ----------------------------------------------------------------------

    def _order(self, epoch: int, worker: int = 0, workers: int = 1) -> EpochOrder:
        """What this rank (as DataLoader worker ``worker`` of ``workers``) reads in ``epoch``:
        in the current epoch, what earlier runs left (the resumed history)."""
        key = self._order_key(epoch, worker, workers)
        cached = self._order_cache.get(key)
        if cached is not None:
            return cached
        history = key[3]
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
        while len(self._order_cache) >= 2:
            self._order_cache.pop(next(iter(self._order_cache)))
        self._order_cache[key] = order
        return order

    def _order_key(self, epoch: int, worker: int, workers: int) -> tuple[Any, ...]:
        history = tuple(self._history) if epoch == self.epoch else ()
        return (epoch, worker, workers, history)

    @property
    def num_rows(self) -> int:
        """Rows in all files together."""
        return self._files.num_rows

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
        return encode_state(epoch, phases, self._order_settings())

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume where ``state_dict()`` was taken: the rows not yet served are shared among the
        ranks (and workers) of this run, whatever their number, batch size or threads. Settings
        that shape the order (seed, shuffle, partition, window size, the data) must match."""
        self.epoch, self._history = decode_state(state, self._order_settings())
        self._position = 0
        self._resumed = True

    def _order_settings(self) -> dict[str, Any]:
        """What shapes the order besides the epoch: a resumed Loader must have the same."""
        return {
            "seed": self.seed,
            "shuffle": self.shuffle,
            "partition": self.partition,
            "window_groups": self.window_groups,
            "num_rows": self.num_rows,
            "num_row_groups": len(self._files.group_sizes),
        }

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
        yield from self._run(order, self._order_key(epoch, worker, num_workers), starts, total)

    def _run(
        self, order: EpochOrder, key: tuple[Any, ...], starts: list[int], total: int
    ) -> Iterator[Batch]:
        """Batches starting at ``starts``, made ``prefetch`` ahead in the pool. In "chunks" mode
        rows come from windows read whole (each row group read and decoded once per window, in
        parallel) while the previous window is served; "none" and "full" read each batch
        directly (contiguous rows in "none", through the block cache)."""
        pool = self._ensure_pool()
        pending: deque[tuple[int, Future[Batch]]] = deque()
        windows = OpenWindows(
            order,
            first=self._take_early(order, key, starts),
            ahead=self._windows_ahead,
            unmap=self._unmap_served_windows,
            **self._window_options(pool),
        )
        next_start = 0
        # The first batch is made alone: made together with the next ones it would share the
        # cores with them and arrive last among equals (the first batch of an epoch is what a
        # training step waits for); the rest are made ``prefetch`` ahead.
        in_flight = 1
        try:
            while next_start < len(starts) or pending:
                while next_start < len(starts) and len(pending) < in_flight:
                    a = starts[next_start]
                    b = min(a + self.batch_size, total)
                    if order.mode != "chunks":
                        task = pool.submit(self._make_batch, order, a, b)
                    else:
                        needed = windows.for_batch(a, b)
                        task = pool.submit(self._make_window_batch, needed, a, b, order.epoch)
                    pending.append((b, task))
                    next_start += 1
                end, future = pending.popleft()
                batch = future.result()  # re-raises a worker's exception with its traceback
                in_flight = self.prefetch
                self._position = end
                windows.recycle_served(end)
                if order.mode == "chunks" and end < total:
                    windows.read_ahead(end)
                # Only a process that already ran an epoch to its end reads the next one early:
                # a DataLoader worker that is not persistent, or a one-epoch run, never uses it.
                if (
                    order.mode == "chunks"
                    and self._passes_finished
                    and (end >= total or windows.last_started())
                    and windows.held() < self._windows_ahead
                ):
                    self._read_next_epoch_early(key, pool)
                if end >= total:
                    self._passes_finished += 1
                if batch and not _batch_rows(batch):
                    continue  # skip mode left out every row of this batch
                yield batch
        finally:
            for _, future in pending:
                future.cancel()
            windows.cancel()

    def _window_options(self, pool: ThreadPoolExecutor) -> dict[str, Any]:
        """What every shuffle window of this Loader is read with."""
        return {
            "files": self._files,
            "columns": self.columns,
            "errors": self._errors,
            "threads": self.num_threads,
            "pool": pool,
            "spares": self._spare_buffers,
        }

    def _read_next_epoch_early(self, key: tuple[Any, ...], pool: ThreadPoolExecutor) -> None:
        """Start reading the next epoch's first window while this epoch's last one is served
        (``key`` is this pass's order key), so the next epoch's first batch does not wait for a
        whole window to be read."""
        epoch, worker, workers, _ = key
        following_key = self._order_key(epoch + 1, worker, workers)
        if self._early is not None or following_key[3]:
            return
        following = self._order(epoch + 1, worker, workers)
        if following.num_windows:
            self._early = (following_key, Window(following, 0, **self._window_options(pool)))

    def _take_early(
        self, order: EpochOrder, key: tuple[Any, ...], starts: list[int]
    ) -> Window | None:
        """The first window read early for this pass, if it is this pass's (same order key) and
        the pass begins in it; an early window that does not fit is dropped."""
        early, self._early = self._early, None
        if early is None:
            return None
        early_key, window = early
        if order.mode == "chunks" and early_key == key and starts and starts[0] < window.stop:
            return window
        window.cancel()
        return None

    def _make_window_batch(self, windows: list[Window], a: int, b: int, epoch: int) -> Batch:
        batch, rows = take_from(windows, a, b)
        return self._finish_batch(batch, rows, epoch)

    def _make_batch(self, order: EpochOrder, a: int, b: int) -> Batch:
        batch, rows = gather(self._files, order.rows(a, b), self.columns, self._errors)
        return self._finish_batch(batch, rows, order.epoch)

    def _finish_batch(self, batch: Batch, rows: np.ndarray, epoch: int) -> Batch:
        return finish_batch(
            batch,
            rows,
            epoch,
            transform=self.transform,
            batch_transform=self.batch_transform,
            transform_takes_rows=self._transform_takes_rows,
            errors=self._errors,
        )

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
        if self._early is not None:
            self._early[1].cancel()
            self._early = None
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
        state["_spare_buffers"] = []
        state["_early"] = None
        return state


def _batch_rows(batch: Batch) -> int:
    """Rows in a batch: the length of its first column (1 if a transform made it unsized)."""
    try:
        return len(next(iter(batch.values())))
    except TypeError:
        return 1
