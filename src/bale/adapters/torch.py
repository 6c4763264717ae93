"""PyTorch adapter: a map-style and an iterable ``torch.utils.data`` dataset over bale files.

>>> from torch.utils.data import DataLoader                            # doctest: +SKIP
>>> from bale.adapters.torch import TorchDataset, TorchIterableDataset
>>> rows = DataLoader(TorchDataset("train.bale"), batch_size=64, shuffle=True, num_workers=4)
>>> batches = TorchIterableDataset("train.bale", 256, shuffle="chunks", seed=0)
>>> loader = DataLoader(batches, batch_size=None, num_workers=4)

``TorchDataset`` is for sampler-driven code (random access, one row per index, collated by the
DataLoader). ``TorchIterableDataset`` hands whole batches from ``bale.Loader`` (chunk-aware
shuffling, read-ahead threads, exact resume) to the DataLoader's worker processes.

This module imports torch when it is imported; ``import bale`` alone never does.
"""

from __future__ import annotations

import operator
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import FrameType
from typing import Any

import numpy as np

from bale._core.dataset import Dataset, reader_of
from bale.io.remote_url import redact_url
from bale.loader.distributed import resolve_rank
from bale.loader.order import ConsumerOrders, EpochOrder, Partition, ShuffleMode
from bale.loader.pipeline import Loader

try:
    import torch
    from torch.utils.data import Dataset as _TorchMapDataset
    from torch.utils.data import IterableDataset as _TorchIterable
    from torch.utils.data import Sampler as _TorchSampler
    from torch.utils.data import get_worker_info
    from torch.utils.data._utils.collate import default_convert
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "bale.adapters.torch needs PyTorch: pip install torch (or see pytorch.org for the "
        "wheel matching your accelerator)"
    ) from exc

from bale.adapters._handover import WorkerHandover

__all__ = ["ChunkSampler", "TorchDataset", "TorchIterableDataset", "to_torch"]

Row = dict[str, Any]
RowTransform = Callable[[Row], Any]

_STATE_VERSION = 1
#: Decoded bytes of ChunkSampler's default window: what TorchDataset's block cache holds (64 MiB).
_SAMPLER_WINDOW_BYTES = 64 << 20
# ml_dtypes types that torch has under the same name: converted bit for bit via an integer view.
_ML_DTYPES = {
    "bfloat16": ("uint16", "bfloat16"),
    "float8_e4m3fn": ("uint8", "float8_e4m3fn"),
    "float8_e4m3fnuz": ("uint8", "float8_e4m3fnuz"),
    "float8_e5m2": ("uint8", "float8_e5m2"),
    "float8_e5m2fnuz": ("uint8", "float8_e5m2fnuz"),
}


def to_torch(batch: Mapping[str, Any], *, pin_memory: bool = False) -> dict[str, Any]:
    """A batch (or row) with NumPy values turned into tensors; lists (bytes, strings) unchanged.

    >>> to_torch({"image": np.zeros((2, 4), "uint8"), "jpeg": [b"..", b".."]})  # doctest: +SKIP
    {'image': tensor([[0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.uint8), 'jpeg': [b'..', b'..']}

    Arrays are shared with the tensors when writable (``torch.from_numpy``), copied otherwise.
    ``pin_memory=True`` pins the tensors in page-locked memory when an accelerator is present
    (a no-op on CPU-only machines).
    """
    pin = pin_memory and torch.accelerator.is_available()
    return {key: _to_tensor(value, pin) for key, value in batch.items()}


def _to_tensor(value: Any, pin: bool) -> Any:
    if isinstance(value, torch.Tensor):
        return value.pin_memory() if pin else value
    if isinstance(value, Mapping):
        return {k: _to_tensor(v, pin) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_to_tensor(v, pin) for v in value)
    if isinstance(value, np.generic):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray) or (value.dtype.kind in "OUSV" and not _is_ml(value)):
        return value  # lists of bytes/strings, Python objects: left as they are
    tensor = _array_to_tensor(value)
    return tensor.pin_memory() if pin else tensor


def _is_ml(array: np.ndarray) -> bool:
    return array.dtype.kind == "V" and array.dtype.name in _ML_DTYPES


def _array_to_tensor(array: np.ndarray) -> torch.Tensor:
    if not array.flags.writeable:
        # A read-only array may be a view of bale's block cache: never alias it.
        array = array.copy()
    if array.dtype.kind == "V":
        name = array.dtype.name
        if name not in _ML_DTYPES:
            raise TypeError(
                f"PyTorch has no dtype for {name!r}; convert it in a transform "
                "(e.g. to float32) before handing batches to torch"
            )
        as_int, torch_name = _ML_DTYPES[name]
        return torch.from_numpy(array.view(as_int)).view(getattr(torch, torch_name))
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if not array.flags.c_contiguous:  # from_numpy rejects negative strides
        array = array.copy(order="C")
    return torch.from_numpy(array)


class TorchDataset(_TorchMapDataset[Row]):
    """One row per index, as a dict of tensors (bytes and strings stay Python values).

    >>> ds = TorchDataset("train.bale", columns=["image", "label"])     # doctest: +SKIP
    >>> ds[3]
    {'image': tensor(...), 'label': tensor(7)}
    >>> loader = DataLoader(ds, batch_size=64, shuffle=True, num_workers=4,
    ...                     multiprocessing_context="spawn")

    Works in DataLoader workers under fork, spawn and forkserver: the underlying
    ``bale.Dataset`` pickles by path and reopens its file in each worker. The DataLoader's batched
    fetch (``__getitems__``) reads each needed row group once per batch.

    ``path`` may be a URL (``s3://``, ``gs://``, ``https://``, ...) read with
    ``storage_options`` (see ``bale.open``); workers reopen it with the same options.

    ``transform`` gets each row as a dict of NumPy values (scalars as NumPy scalars, bytes as
    bytes) and returns what the DataLoader should see; NumPy arrays in its result (a dict, a
    tuple or a single array) become tensors. It must be picklable for spawn/forkserver workers.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        columns: Sequence[str] | None = None,
        transform: RowTransform | None = None,
        *,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.dataset = Dataset(path, storage_options=storage_options)
        self.columns = list(columns) if columns is not None else None
        self.transform = transform
        if self.columns is not None:
            reader_of(self.dataset).check_columns(self.columns)

    @property
    def path(self) -> str:
        return self.dataset.path

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        row = self.dataset.row(operator.index(index), self.columns)
        if self.transform is not None:
            return _to_tensor(self.transform(row), False)
        return to_torch(row)

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        """Rows at ``indices`` (the DataLoader calls this with a batch's indices)."""
        batch = self.dataset.take(np.asarray(indices, dtype=np.int64), self.columns)
        rows = [{key: values[i] for key, values in batch.items()} for i in range(len(indices))]
        if self.transform is not None:
            return [_to_tensor(self.transform(row), False) for row in rows]
        return [to_torch(row) for row in rows]

    def close(self) -> None:
        """Close the file in this process (workers close theirs when they exit)."""
        self.dataset.close()

    def __repr__(self) -> str:
        return f"TorchDataset({self.path!r}, columns={self.columns!r})"


class ChunkSampler(_TorchSampler[int]):
    """Row indices for a map-style dataset in bale's chunk-aware order: the drop-in for
    ``shuffle=True`` / ``DistributedSampler`` that keeps reads large and sequential.

    >>> ds = TorchDataset("train.bale")                                 # doctest: +SKIP
    >>> sampler = ChunkSampler(ds, seed=0)          # rank and world size detected, as the Loader
    >>> loader = DataLoader(ds, batch_size=64, sampler=sampler, num_workers=4)
    >>> for epoch in range(10):
    ...     sampler.set_epoch(epoch)
    ...     for batch in loader: ...

    The order is ``bale.Loader``'s (``bale.loader.order``): row groups shuffled every epoch, rows
    mixed within a window of ``window_groups`` row groups, each rank an equal share of its own
    row groups. With ``shuffle=True`` a DataLoader's batch touches up to ``batch_size`` row
    groups, each decoded again and again; here a batch's rows come from one window, and the
    default window (64 MiB of decoded rows) fits the block cache of ``TorchDataset``'s file, so
    each worker decodes each row group about once per epoch. ``TorchIterableDataset`` does
    better still (each group decoded once in all), but needs the iterable style.

    Given a path rather than a ``TorchDataset``, it opens the file to read its row group sizes
    (a URL with ``storage_options``).
    """

    def __init__(
        self,
        dataset: TorchDataset | str | os.PathLike[str],
        *,
        shuffle: ShuffleMode | bool = "chunks",
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        partition: Partition = "drop",
        window_groups: int | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(dataset, TorchDataset):  # its open file: no second open, nor its URL
            sizes = dataset.dataset.row_group_sizes
            group_bytes = max(1, reader_of(dataset.dataset).decoded_group_bytes())
        else:
            with Dataset(dataset, storage_options=storage_options) as ds:
                sizes = ds.row_group_sizes
                group_bytes = max(1, reader_of(ds).decoded_group_bytes())
        rank, world_size = resolve_rank(rank, world_size)
        if shuffle is True or shuffle is False:
            shuffle = "chunks" if shuffle else "none"
        self._orders = ConsumerOrders(
            sizes,
            mode=shuffle,
            seed=seed,
            rank=rank,
            world_size=world_size,
            partition=partition,
            window_groups=window_groups or max(2, _SAMPLER_WINDOW_BYTES // group_bytes),
        )
        self.epoch = 0
        len(self._order())  # check the arguments now

    def _order(self) -> EpochOrder:
        return self._orders.epoch(self.epoch)

    def set_epoch(self, epoch: int) -> None:
        """A new order for ``epoch`` (as ``DistributedSampler.set_epoch``)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._order())

    def __iter__(self) -> Iterator[int]:
        order = self._order()
        for window in range(order.num_windows):
            yield from order.window(window).tolist()


class TorchIterableDataset(_TorchIterable[dict[str, Any]]):
    """Batches from ``bale.Loader`` as dicts of tensors, shared among DataLoader workers.

    >>> data = TorchIterableDataset("train.bale", 256, shuffle="chunks", seed=0)  # doctest: +SKIP
    >>> loader = DataLoader(data, batch_size=None, num_workers=4, pin_memory=True)
    >>> if checkpoint:
    ...     data.load_state_dict(checkpoint["data"])
    >>> for epoch in range(data.epoch, num_epochs):
    ...     data.set_epoch(epoch)              # a resumed epoch continues where it stopped
    ...     for seen, batch in enumerate(loader, start=1):
    ...         train_step(batch)
    ...         checkpoint = {"data": data.state_dict(seen, num_workers=4), ...}

    Pass ``batch_size=None`` to the DataLoader: batches are made here (a batching DataLoader is
    refused with an error rather than yielding batches of batches). ``loader_kwargs`` are those
    of ``bale.Loader`` (shuffle, seed, columns, transform, batch_transform, drop_last,
    num_threads, rank, world_size, ...); rank and world size are resolved here, in the main
    process, so workers never guess them.

    In a DataLoader worker the Loader's ``num_threads`` defaults to the cores divided by the
    number of workers (the workers share the machine).

    The epoch's order is ``bale.Loader``'s; the rows of each rank are shared among its ``K``
    workers as among ``world_size * K`` consumers (``bale.loader.order``): each worker reads and
    decodes only its own row groups, and the DataLoader takes one batch from each worker in turn.
    Each worker's last batch of an epoch may be short (``drop_last=True`` drops it).

    Epochs work as with ``DistributedSampler``: call ``set_epoch(epoch)`` before each epoch, or
    every epoch repeats the same order. (Workers kept alive by ``persistent_workers=True`` do not
    see ``set_epoch``; they move to the next epoch themselves after each complete one.)

    Resuming, two ways:
    - plain PyTorch: count the batches consumed from the DataLoader in this iteration and call
      ``state_dict(batches_seen, num_workers=K)``; ``load_state_dict`` on a fresh object then
      ``set_epoch`` with the saved epoch yields exactly the rows not yet consumed, with any world
      size, number of workers, batch size or threads.
    - torchdata's ``StatefulDataLoader``: it calls ``state_dict()`` / ``load_state_dict()`` in
      each worker itself (no bookkeeping); that needs the same ``num_workers`` and world size
      when resuming.

    ``pin_memory=True`` pins batches in the process that makes them: useful when iterating this
    object directly (``num_workers=0``); with worker processes use ``DataLoader(pin_memory=True)``.

    URLs (``s3://``, ``gs://``, ``https://``, ...) are read with ``storage_options`` (see
    ``bale.open``); each worker's Loader opens them with the same options. Forked workers read
    through fsspec (obstore's runtime does not survive ``fork``): ``multiprocessing_context=
    "spawn"`` or ``"forkserver"`` keeps them on obstore (the bale repository's docs/REMOTE.md).
    """

    def __init__(
        self,
        path_or_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        batch_size: int,
        *,
        pin_memory: bool = False,
        storage_options: Mapping[str, Any] | None = None,
        **loader_kwargs: Any,
    ) -> None:
        super().__init__()
        if storage_options is not None:
            loader_kwargs["storage_options"] = storage_options
        loader_kwargs["rank"], loader_kwargs["world_size"] = resolve_rank(
            loader_kwargs.get("rank"), loader_kwargs.get("world_size")
        )
        if isinstance(path_or_paths, (str, os.PathLike)):
            self.paths = [os.fspath(path_or_paths)]
        else:
            self.paths = [os.fspath(p) for p in path_or_paths]
        self.batch_size = batch_size
        self.pin_memory = pin_memory
        self.loader_kwargs = loader_kwargs
        self.epoch = 0
        self._state: dict[str, Any] | None = None  # a loaded state, applied where batches are made
        self._resumed = False
        self._worker = (0, 1)  # (worker, workers) of the iteration running in this process
        self._start = 0  # rows of this worker's sequence consumed before this iteration
        self._loader: Loader | None = None
        self._loader_pid = -1
        # A worker's slots of shared memory for handing batches over, kept across the epochs of
        # a persistent worker: (pid, handover).
        self._handover: tuple[int, WorkerHandover] | None = None
        self._process_loader()  # validate the files and arguments now, in the main process

    # -- the Loader of this process ------------------------------------------------------------

    def _process_loader(self) -> Loader:
        """This process's Loader (a worker builds its own: threads do not survive a fork)."""
        if self._loader is None or self._loader_pid != os.getpid():
            kwargs = dict(self.loader_kwargs)
            info = get_worker_info()
            if info is not None and "num_threads" not in kwargs:
                # The workers share the cores: K workers of 4 threads each on 2 cores would
                # make every batch wait for the others' decoding.
                kwargs["num_threads"] = max(1, (os.cpu_count() or 1) // info.num_workers)
            self._loader = Loader(self.paths, self.batch_size, **kwargs)
            self._loader_pid = os.getpid()
            self._sync(self._loader)
        return self._loader

    def _sync(self, loader: Loader) -> None:
        """Point the Loader at this object's epoch, with the loaded history of that epoch."""
        if self._state is not None and int(self._state["epoch"]) == self.epoch:
            loader.load_state_dict(self._state)
        else:
            loader.set_epoch(self.epoch)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_loader"] = None
        state["_loader_pid"] = -1
        state["_handover"] = None
        return state

    # -- epochs and state ----------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Make ``epoch`` the next one iterated, from its start; or, right after
        ``load_state_dict`` with the same epoch, from the saved position."""
        if not (self._resumed and epoch == self.epoch):
            self._state, self._start = None, 0
        self.epoch = epoch
        self._resumed = False
        if self._loader is not None and self._loader_pid == os.getpid():
            self._sync(self._loader)

    def num_batches(self, workers: int = 0) -> int:
        """Batches the next iteration yields with ``workers`` DataLoader workers (all together):
        each worker's last batch of an epoch may be short, so this can exceed ``len(self)``."""
        workers = max(1, workers)
        loader = self._process_loader()
        total = 0
        for worker in range(workers):
            rows = len(loader._order(self.epoch, worker, workers))
            rows -= self._start if workers == self._worker[1] and worker == self._worker[0] else 0
            total += rows // self.batch_size if loader.drop_last else -(-rows // self.batch_size)
        return total

    def __len__(self) -> int:
        """Batches in the next iteration in one process (``num_workers=0``). With K workers
        use ``num_batches(K)``: ``len(DataLoader(...))`` cannot know K here."""
        return self.num_batches(0)

    def state_dict(
        self, batches_seen: int | None = None, *, num_workers: int = 0
    ) -> dict[str, Any]:
        """Where training stands.

        With ``batches_seen`` (plain PyTorch, in the main process): after consuming that many
        batches of the current iteration from a DataLoader with ``num_workers`` workers; the state
        resumes with any world size, workers, batch size or threads.

        Without it (torchdata's ``Stateful`` protocol, called where the batches are made): this
        process's own position; resuming it needs the same workers and world size.
        """
        loader = self._process_loader()
        if batches_seen is None:
            return self._worker_state(loader)
        workers = max(1, num_workers)
        if batches_seen < 0:
            raise ValueError(f"batches_seen must be >= 0, got {batches_seen}")
        total = self.num_batches(workers)
        if batches_seen > total:
            raise ValueError(
                f"batches_seen={batches_seen} but this iteration has only {total} batches with "
                f"num_workers={num_workers}"
            )
        state = loader.state_dict()  # the loaded history of this epoch, if any
        if batches_seen == total:
            state.update(epoch=self.epoch + 1, phases=[])
        elif batches_seen:
            phase = [loader.world_size, workers, self.batch_size, batches_seen]
            state.update(epoch=self.epoch, phases=[*state["phases"], phase])
        state["adapter_version"] = _STATE_VERSION
        return state

    def _worker_state(self, loader: Loader) -> dict[str, Any]:
        worker, workers = self._worker
        state = loader.state_dict()
        state["phases"] = list(self._state["phases"]) if self._state else []
        state["epoch"] = self.epoch
        state["worker"] = [worker, workers, self._start + loader._position]
        state["adapter_version"] = _STATE_VERSION
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at a ``state_dict()``: the next iteration of ``state["epoch"]`` serves the rows
        not consumed yet. Raises ValueError when the files or the order's settings differ."""
        self._loader = None  # rebuilt with the state applied
        state = dict(state)
        worker = state.pop("worker", None)
        self._state = state
        self.epoch = int(state["epoch"])
        self._process_loader()  # checks seed, shuffle, window, data
        self._start = 0
        if worker is not None:
            self._worker = (int(worker[0]), int(worker[1]))
            self._start = int(worker[2])
        self._resumed = True

    # -- iteration -----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        fetcher, direct = _dataloader_fetcher()
        if fetcher is not None and getattr(fetcher, "auto_collation", False):
            raise ValueError(
                "TorchIterableDataset yields whole batches: create the DataLoader with "
                "batch_size=None (a batching DataLoader would stack batches into batches of "
                "batches)"
            )
        info = get_worker_info()
        handover = None
        if info is not None and direct and not self.pin_memory and _converts_only(fetcher):
            # The batch goes from here to the pickler untouched: hand it over through reused
            # shared memory (bale.adapters._handover) rather than new pages per batch.
            if self._handover is None or self._handover[0] != os.getpid():
                self._handover = (os.getpid(), WorkerHandover(info.num_workers))
            handover = self._handover[1]
        for tensors in self._tensor_batches():
            yield tensors if handover is None else handover.place(tensors)

    def _tensor_batches(self) -> Iterator[dict[str, Any]]:
        """This process's batches of the epoch (a worker's share of them), as tensors."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        start = 0
        if self._start:
            if (worker, workers) != self._worker:
                raise ValueError(
                    f"this state was saved by DataLoader worker {self._worker[0]} of "
                    f"{self._worker[1]}; resuming it needs the same num_workers (for any "
                    "other, save with state_dict(batches_seen, num_workers=K))"
                )
            start = self._start
        self._worker, self._start = (worker, workers), start
        loader = self._process_loader()
        self._sync(loader)
        batches = loader.iter_batches(self.epoch, start=start, worker=worker, num_workers=workers)
        for batch in batches:
            yield to_torch(batch, pin_memory=self.pin_memory)
        if info is not None:
            # A persistent worker's copy moves on as bale.Loader would; the main process's copy
            # changes only through set_epoch and load_state_dict.
            self.epoch, self._state, self._start, self._resumed = self.epoch + 1, None, 0, False

    def close(self) -> None:
        """Stop this process's read-ahead threads and close its files."""
        if self._loader is not None and self._loader_pid == os.getpid():
            self._loader.close()
        self._loader = None

    def __repr__(self) -> str:
        paths = [redact_url(p) for p in self.paths]  # a URL's credentials are never shown
        return f"TorchIterableDataset({paths!r}, batch_size={self.batch_size}, epoch={self.epoch})"


def _dataloader_fetcher() -> tuple[Any, bool]:
    """The DataLoader fetcher iterating this dataset (or None: iterated directly), and whether it
    is the direct caller of ``__iter__``'s generator (no user code in between).

    PyTorch gives an iterable dataset no way to know how it is loaded; its fetcher is the caller
    of the generator's first step, so it is looked for there, through at most two wrapping
    generators (and None is the answer if PyTorch ever calls differently)."""
    frame: FrameType | None = sys._getframe(2)  # this <- __iter__'s body <- its caller
    for depth in range(3):
        if frame is None:
            return None, False
        fetcher = frame.f_locals.get("self")
        if type(fetcher).__name__ == "_IterableDatasetFetcher":
            return fetcher, depth == 0
        frame = frame.f_back
    return None, False


def _converts_only(fetcher: Any) -> bool:
    """Whether the worker hands our batches on untouched (PyTorch's ``default_convert``), so a
    pooled batch only meets the pickler; a user's ``collate_fn`` gets plain tensors instead."""
    return getattr(fetcher, "collate_fn", None) is default_convert
