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

import atexit
import operator
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any, SupportsIndex

import numpy as np

from bale._core.dataset import Dataset, reader_of
from bale.loader.distributed import resolve_rank
from bale.loader.order import ConsumerOrders, Partition, ShuffleMode
from bale.loader.pipeline import default_window_groups

__all__ = ["ChunkIndexSampler", "GrainSource"]

Row = dict[str, Any]


class GrainSource:
    """Rows of a bale file by index, as dicts (arrays, NumPy scalars, bytes, str).

    >>> source = GrainSource("train.bale")                             # doctest: +SKIP
    >>> len(source), source[3]["label"]
    (50000, np.int64(7))

    Each row is a fresh copy (never a view of bale's block cache), so grain transforms may
    modify it in place. Batched reads (grain's ``_getitems``) decode each row group a batch
    touches once. Pickles by path: grain worker processes reopen the file (a URL, with its
    ``storage_options``: see ``bale.open``). Its repr, which grain keeps in checkpoints, shows
    a URL without credentials and never the options.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        columns: Sequence[str] | None = None,
        *,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.dataset = Dataset(path, storage_options=storage_options)
        self.columns = list(columns) if columns is not None else None
        reader_of(self.dataset).check_columns(self.columns)
        _release_shared_memory_at_exit()

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


_GRAIN_SHARED_MEMORY = "grain._src.python.ipc.shared_memory_array"
_at_exit_lock = threading.Lock()
_at_exit_pid: int | None = None  # the process that registered the exit step


def _release_shared_memory_at_exit() -> None:
    """Once per process: free grain's dropped shared-memory batches before Python exits."""
    global _at_exit_pid
    with _at_exit_lock:
        if _at_exit_pid != os.getpid():  # a forked child registers its own
            atexit.register(_release_at_exit)
            _at_exit_pid = os.getpid()


def _release_at_exit() -> None:
    # A forked child inherits the registration but not the pool's thread: waiting there would
    # only run out the timeout.
    if os.getpid() == _at_exit_pid:
        _release_grain_shared_memory()


def _release_grain_shared_memory(timeout: float = 30.0) -> None:
    """Wait (at most ``timeout`` seconds) until grain has freed the batches already dropped.

    With worker processes, grain's DataLoader hands batches over in shared memory, and the main
    process frees a dropped batch in a background thread (``SharedMemoryArray`` with async
    deletion, up to 50 requests queued). That thread is a daemon: at exit it dies with its queue,
    and Python's resource tracker then reports ``There appear to be 50 leaked shared_memory
    objects to clean up at shutdown`` (google/grain#1031), for batches the program held until
    its end. ``GrainSource`` registers this at exit; afterwards grain frees batches at once.
    Does nothing when grain has not handed over batches in shared memory.
    """
    module = sys.modules.get(_GRAIN_SHARED_MEMORY)
    shared = getattr(module, "SharedMemoryArray", None)
    pool = getattr(shared, "_del_thread_pool", None)
    if pool is None:
        return
    try:
        # The pool runs its queue in order (one thread): once this no-op ran, so did the frees.
        pool.apply_async(int).wait(timeout)
    except ValueError:  # the pool was closed: nothing queued can run any more
        return
    disable = getattr(shared, "_disable_async_del", None)
    if disable is not None:
        disable()  # arrays dropped from here on (module globals at teardown) are freed at once


class ChunkIndexSampler:
    """A grain sampler that serves ``bale.Loader``'s chunk-aware order (instead of
    ``grain.python.IndexSampler(shuffle=True)``, whose uniform order reads a row group per row).

    >>> source = GrainSource("train.bale")                             # doctest: +SKIP
    >>> sampler = ChunkIndexSampler(source, seed=0, num_epochs=10)
    >>> loader = grain.python.DataLoader(data_source=source, sampler=sampler, worker_count=2,
    ...                                  shard_options=grain.python.NoSharding())

    Index ``i`` is row ``i % n`` of epoch ``i // n`` of this rank's sequence (``n = len`` of one
    epoch): the order of ``bale.loader.order.epoch_order`` with the same seed, window and rank,
    so ``bale.Loader``, the PyTorch and Keras adapters and grain see the same rows in the same
    order. The sampler shares the epoch among ranks itself, each rank reading its own row groups
    (rank and world size detected as the Loader does when not given): give grain's DataLoader
    ``shard_options=NoSharding()`` rather than striping indices across hosts.
    """

    def __init__(
        self,
        source: GrainSource | str | os.PathLike[str],
        *,
        seed: int = 0,
        num_epochs: int = 1,
        shuffle: ShuffleMode = "chunks",
        rank: int | None = None,
        world_size: int | None = None,
        partition: Partition = "drop",
        window_groups: int | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(source, GrainSource):  # its open file: no second open, nor its URL
            sizes = source.dataset.row_group_sizes
            window_groups = window_groups or default_window_groups([source.dataset])
        else:
            with Dataset(source, storage_options=storage_options) as ds:
                sizes = ds.row_group_sizes
                window_groups = window_groups or default_window_groups([ds])
        rank, world_size = resolve_rank(rank, world_size)
        if num_epochs < 1:
            raise ValueError(f"num_epochs must be >= 1, got {num_epochs}")
        self.num_epochs = num_epochs
        self._orders = ConsumerOrders(
            sizes,
            mode=shuffle,
            seed=seed,
            rank=rank,
            world_size=world_size,
            partition=partition,
            window_groups=window_groups,
        )
        self._per_epoch = len(self._orders.epoch(0))

    def __len__(self) -> int:
        return self._per_epoch * self.num_epochs

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < len(self):
            raise IndexError(f"sampler index {index} out of range for {len(self)} records")
        epoch, position = divmod(index, self._per_epoch)
        order = self._orders.epoch(epoch)
        window = order.window_at(position)
        start, _ = order.window_bounds(window)
        row = int(order.window(window)[position - start])  # windows are cached by the order
        from grain.python import RecordMetadata  # grain is installed when grain calls this

        return RecordMetadata(index=index, record_key=row, rng=None)

    def __repr__(self) -> str:
        o = self._orders
        return (
            f"ChunkIndexSampler(rows={int(o.group_sizes.sum())}, seed={o.seed}, "
            f"num_epochs={self.num_epochs}, shuffle={o.mode!r}, rank={o.rank}, "
            f"world_size={o.world_size}, window_groups={o.window_groups})"
        )
