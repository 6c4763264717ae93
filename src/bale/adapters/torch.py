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

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from bale._core.dataset import Dataset, reader_of
from bale.loader.pipeline import Loader, detect_distributed

try:
    import torch
    from torch.utils.data import Dataset as _TorchMapDataset
    from torch.utils.data import IterableDataset as _TorchIterable
    from torch.utils.data import get_worker_info
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "bale.adapters.torch needs PyTorch: pip install 'bale[torch]' (or see pytorch.org for "
        "the wheel matching your accelerator)"
    ) from exc

__all__ = ["TorchDataset", "TorchIterableDataset", "to_torch"]

Row = dict[str, Any]
RowTransform = Callable[[Row], Any]

_STATE_VERSION = 1
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

    ``transform`` gets each row as a dict of NumPy values (scalars as NumPy scalars, bytes as
    bytes) and returns what the DataLoader should see; NumPy arrays in its result (a dict, a
    tuple or a single array) become tensors. It must be picklable for spawn/forkserver workers.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        columns: Sequence[str] | None = None,
        transform: RowTransform | None = None,
    ) -> None:
        self.dataset = Dataset(path)
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
        return self.__getitems__([index])[0]

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


class TorchIterableDataset(_TorchIterable[dict[str, Any]]):
    """Batches from ``bale.Loader`` as dicts of tensors, split across DataLoader workers.

    >>> data = TorchIterableDataset("train.bale", 256, shuffle="chunks", seed=0)  # doctest: +SKIP
    >>> loader = DataLoader(data, batch_size=None, num_workers=4, pin_memory=True)
    >>> if checkpoint:
    ...     data.load_state_dict(checkpoint["data"])
    >>> for epoch in range(data.epoch, num_epochs):
    ...     data.set_epoch(epoch)              # a resumed epoch continues where it stopped
    ...     for seen, batch in enumerate(loader, start=1):
    ...         train_step(batch)
    ...         checkpoint = {"data": data.state_dict(batches_seen=seen), ...}

    Pass ``batch_size=None`` to the DataLoader: batches are made here. ``loader_kwargs`` are
    those of ``bale.Loader`` (shuffle, seed, columns, transform, batch_transform, drop_last,
    num_threads, rank, world_size, ...); rank and world size are resolved here, in the main
    process, so workers never guess them. Worker ``k`` of ``K`` makes the Loader's batches
    ``k, k+K, k+2K, ...``; the DataLoader returns them in order, so the batches (and their order)
    are those of a single-process ``bale.Loader`` with the same settings. Each worker reads the
    row groups its batches need, so with ``shuffle="chunks"`` every worker decodes most row
    groups of the epoch: use worker processes for heavy Python transforms and the Loader's
    ``num_threads`` for reading.

    Epochs work as with ``DistributedSampler``: call ``set_epoch(epoch)`` before each epoch, or
    every epoch repeats the same order. (Workers kept alive by ``persistent_workers=True`` do not
    see ``set_epoch``; they move to the next epoch themselves after each complete one.)

    Resume contract: the object remembers where the current iteration *started* (epoch and
    row position); the training loop counts the batches it has consumed from the DataLoader
    since then and passes that count to ``state_dict(batches_seen)``. ``load_state_dict`` on a
    fresh object, then ``set_epoch`` with the saved epoch, yields exactly the batches not yet
    consumed. Prefetched but unconsumed batches are made again after resuming.

    ``pin_memory=True`` pins batches in the process that makes them: useful when iterating this
    object directly (``num_workers=0``); with worker processes use ``DataLoader(pin_memory=True)``.
    """

    def __init__(
        self,
        path_or_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        batch_size: int,
        *,
        pin_memory: bool = False,
        **loader_kwargs: Any,
    ) -> None:
        super().__init__()
        rank, world_size = loader_kwargs.get("rank"), loader_kwargs.get("world_size")
        if rank is None or world_size is None:
            detected_rank, detected_world = detect_distributed()
            loader_kwargs["rank"] = detected_rank if rank is None else rank
            loader_kwargs["world_size"] = detected_world if world_size is None else world_size
        if isinstance(path_or_paths, (str, os.PathLike)):
            self.paths = [os.fspath(path_or_paths)]
        else:
            self.paths = [os.fspath(p) for p in path_or_paths]
        self.batch_size = batch_size
        self.pin_memory = pin_memory
        self.loader_kwargs = loader_kwargs
        self.epoch = 0
        self._position = 0  # row of the epoch where the current iteration starts
        self._resumed = False
        self._loader: Loader | None = None
        self._loader_pid = -1
        self._process_loader()  # validate the files and arguments now, in the main process

    # -- the Loader of this process ------------------------------------------------------------

    def _process_loader(self) -> Loader:
        """This process's Loader (a worker builds its own: threads do not survive a fork)."""
        if self._loader is None or self._loader_pid != os.getpid():
            self._loader = Loader(self.paths, self.batch_size, **self.loader_kwargs)
            self._loader_pid = os.getpid()
        return self._loader

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_loader"] = None
        state["_loader_pid"] = -1
        return state

    def _epoch_end(self, start: int) -> int:
        return self._process_loader().epoch_end(start)

    # -- epochs and state ----------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Make ``epoch`` the next one iterated, from its start; or, right after
        ``load_state_dict`` with the same epoch, from the saved position."""
        if not (self._resumed and epoch == self.epoch):
            self._position = 0
        self.epoch = epoch
        self._resumed = False

    def __len__(self) -> int:
        """Batches in the next iteration (all workers together)."""
        remaining = max(0, self._epoch_end(self._position) - self._position)
        return -(-remaining // self.batch_size)

    def state_dict(self, batches_seen: int) -> dict[str, Any]:
        """Where training stands after consuming ``batches_seen`` batches of the current iteration
        (counted from where it started: the epoch start, or the resumed position)."""
        if batches_seen < 0:
            raise ValueError(f"batches_seen must be >= 0, got {batches_seen}")
        if batches_seen > len(self):
            raise ValueError(
                f"batches_seen={batches_seen} but this iteration has only {len(self)} batches"
            )
        epoch, position = self.epoch, self._position + batches_seen * self.batch_size
        if position >= self._epoch_end(self._position):
            epoch, position = epoch + 1, 0
        state = self._process_loader().state_dict()
        state.update(
            adapter_version=_STATE_VERSION,
            epoch=epoch,
            position=position,
            batch_size=self.batch_size,
        )
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at a ``state_dict()``: the next iteration of ``state["epoch"]`` starts at the
        first batch not consumed. Raises ValueError when files or settings differ."""
        self._process_loader().load_state_dict(state)  # checks seed, shuffle, world, rows
        self.epoch = int(state["epoch"])
        self._position = int(state["position"])
        self._resumed = True

    # -- iteration -----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        loader = self._process_loader()
        batches = loader.iter_batches(
            self.epoch, start=self._position, worker=worker, num_workers=workers
        )
        for batch in batches:
            yield to_torch(batch, pin_memory=self.pin_memory)
        if info is not None:
            # A persistent worker's copy moves on as bale.Loader would; the main process's copy
            # changes only through set_epoch / load_state_dict.
            self.epoch, self._position, self._resumed = self.epoch + 1, 0, False

    def close(self) -> None:
        """Stop this process's read-ahead threads and close its files."""
        if self._loader is not None and self._loader_pid == os.getpid():
            self._loader.close()
        self._loader = None

    def __repr__(self) -> str:
        return (
            f"TorchIterableDataset({self.paths!r}, batch_size={self.batch_size}, "
            f"epoch={self.epoch}, position={self._position})"
        )
