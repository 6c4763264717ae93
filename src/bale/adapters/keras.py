"""Keras adapter: a ``keras.utils.PyDataset`` of a bale file's batches, and a batch generator.

>>> import os; os.environ["KERAS_BACKEND"] = "torch"   # before keras is imported  # doctest: +SKIP
>>> from bale.adapters.keras import KerasSequence
>>> train = KerasSequence("train.bale", 128, x="image", y="label", shuffle="chunks", seed=0)
>>> model.fit(train, epochs=10, shuffle=False)   # the sequence shuffles (chunk-aware) itself
>>> test = KerasSequence("test.bale", 128, x="image", shuffle=False)   # predict in file order

``KerasSequence`` is a class, a ``keras.utils.PyDataset`` subclass made on first use: Keras is
imported when the name ``KerasSequence`` is first looked up (``from bale.adapters.keras import
KerasSequence``) or ``keras_sequence_class`` is called; importing this module works without it.
``EpochBatches`` holds all the logic and needs no Keras.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bale._core.dataset import Batch, Dataset, reader_of
from bale.errors import SchemaError
from bale.format.schema import Array
from bale.loader.order import ConsumerOrders, EpochOrder, Partition, ShuffleMode
from bale.loader.pipeline import DEFAULT_MEMORY_BUDGET, Loader, default_window_groups

__all__ = ["EpochBatches", "KerasSequence", "keras_generator", "keras_sequence_class"]

Names = str | Sequence[str]
BatchTransform = Callable[[Batch], Batch]

_INSTALL_HINT = "bale.adapters.keras needs Keras 3: pip install 'keras>=3'"


class EpochBatches:
    """Batch ``i`` of epoch ``e`` of a bale file, by random access: what ``KerasSequence`` serves.

    >>> batches = EpochBatches("train.bale", 64, x="image", y="label")  # doctest: +SKIP
    >>> len(batches), batches.batch_rows(0)[:3]
    (157, array([4123, 4097, 4170]))
    >>> image, label = batches[0]
    >>> batches.set_epoch(1)           # a new order

    The order is ``bale.loader.order.epoch_order`` (the same as ``bale.Loader`` with the same
    seed, shuffle and window), so ``batches[i]`` reads only the row groups of batch ``i``'s window
    (``Dataset.take``), and they stay in the block cache for the window's other batches.
    ``x`` and ``y`` name a column each (an array) or several (a dict of arrays, for multi-input
    or multi-output models); ``y=None`` gives ``(x,)`` tuples. ``batch_transform`` runs on the
    batch dict of the selected columns before ``x`` and ``y`` are picked out of it.
    ``rank``/``world_size`` default to one process (no detection): pass them to give each
    process a disjoint share of every epoch. ``path`` may be a URL, read with
    ``storage_options`` (see ``bale.open``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        batch_size: int,
        *,
        x: Names,
        y: Names | None = None,
        shuffle: ShuffleMode | bool = "chunks",
        seed: int = 0,
        drop_last: bool = False,
        batch_transform: BatchTransform | None = None,
        rank: int = 0,
        world_size: int = 1,
        partition: Partition = "drop",
        window_groups: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        mode: ShuffleMode = (
            ("chunks" if shuffle else "none") if isinstance(shuffle, bool) else shuffle
        )
        if mode not in ("chunks", "full", "none"):
            raise ValueError(f"shuffle must be 'chunks', 'full', 'none' or a bool, got {mode!r}")
        self.dataset = Dataset(path, storage_options=storage_options)
        self.batch_size = batch_size
        self.x, self.y = x, y
        self.columns = list(dict.fromkeys([*_names(x), *(_names(y) if y is not None else [])]))
        reader_of(self.dataset).check_columns(self.columns)
        if batch_transform is None:
            _check_array_columns(self.dataset, self.columns)
        self.shuffle = mode
        self.seed = seed
        self.drop_last = drop_last
        self.batch_transform = batch_transform
        self.rank, self.world_size, self.partition = rank, world_size, partition
        # The window size is bale.Loader's (a function of the data), so orders match the Loader's.
        self.window_groups = window_groups or default_window_groups([self.dataset])
        group_bytes = max(1, reader_of(self.dataset).decoded_group_bytes(self.columns))
        self.dataset.cache_bytes = max(memory_budget, 3 * group_bytes)
        self.epoch = 0
        self._orders = ConsumerOrders(
            self.dataset.row_group_sizes,
            mode=mode,
            seed=seed,
            rank=rank,
            world_size=world_size,
            partition=partition,
            window_groups=self.window_groups,
        )
        self._order_lock = threading.Lock()  # guards the window cache
        self._windows: dict[tuple[int, int], np.ndarray] = {}

    def order(self) -> EpochOrder:
        """This epoch's row order (computed once per epoch)."""
        return self._orders.epoch(self.epoch)

    def __len__(self) -> int:
        """Batches per epoch."""
        rows = len(self.order())
        return rows // self.batch_size if self.drop_last else -(-rows // self.batch_size)

    def batch_rows(self, index: int) -> np.ndarray:
        """Global row numbers of batch ``index`` of the current epoch."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range for {len(self)} batches per epoch")
        order = self.order()
        a = index * self.batch_size
        b = min(a + self.batch_size, len(order))
        if order.mode != "chunks":
            return order.rows(a, b)
        # As EpochOrder.rows, but each window's permutation is computed once, not per batch.
        pieces = []
        for w in range(order.window_at(a), order.window_at(b - 1) + 1):
            lo, _ = order.window_bounds(w)
            pieces.append(self._window(order, w)[max(a - lo, 0) : b - lo])
        return np.concatenate(pieces)

    def _window(self, order: EpochOrder, window: int) -> np.ndarray:
        key = (order.epoch, window)
        with self._order_lock:
            rows = self._windows.get(key)
        if rows is None:
            rows = order.window(window)
            with self._order_lock:
                self._windows[key] = rows
                while len(self._windows) > 4:  # the windows in use: a batch spans at most two
                    del self._windows[next(iter(self._windows))]
        return rows

    def batch(self, index: int) -> Batch:
        """Batch ``index`` of the current epoch as a dict of the selected columns."""
        batch = self.dataset.take(self.batch_rows(index), self.columns)
        return self.batch_transform(batch) if self.batch_transform is not None else batch

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        batch = self.batch(index)
        _check_arrays(batch, self.columns, self.dataset.path)
        x = _pick(batch, self.x)
        return (x,) if self.y is None else (x, _pick(batch, self.y))

    def set_epoch(self, epoch: int) -> None:
        """Serve ``epoch``'s order from now on."""
        self.epoch = epoch

    def on_epoch_end(self) -> None:
        """Keras calls this after each epoch: the next one gets its own order.

        ``fit`` also calls it once when it starts (after peeking at batch 0 to build the
        model), so a fit from epoch ``e`` trains on the orders of epochs ``e+1, e+2, ...``.
        To resume ``fit(..., initial_epoch=k)`` with the same orders as an uninterrupted run,
        call ``set_epoch(k)`` on a fresh sequence first.
        """
        self.epoch += 1

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_order_lock"] = None
        state["_order_cache"] = None
        state["_windows"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._order_lock = threading.Lock()


def _names(names: Names) -> list[str]:
    return [names] if isinstance(names, str) else list(names)


def _decode_hint(column: str) -> str:
    return (
        f"pass batch_transform=bale.images.DecodeImages({column!r}, size=(224, 224)) to decode "
        "JPEG/PNG bytes into uint8 arrays (size: the model's input), or a batch_transform of "
        "your own that turns the values into arrays"
    )


def _check_array_columns(dataset: Dataset, columns: Sequence[str]) -> None:
    """Refuse, before any batch, bytes and text columns that no transform turns into arrays."""
    for name in columns:
        column = dataset.schema[name]
        if not isinstance(column.type, Array):
            raise SchemaError(
                f"holds {column.type.kind} values (a list per batch), and Keras needs arrays: "
                + _decode_hint(name),
                path=dataset.path,
                column=name,
            )


def _check_arrays(batch: Batch, columns: Sequence[str], path: str | None) -> None:
    """Refuse a batch whose selected columns are still lists after the batch transform."""
    for name in columns:
        value = batch.get(name)
        if value is not None and not hasattr(value, "shape"):
            kind = type(value[0]).__name__ if len(value) else type(value).__name__
            raise SchemaError(
                f"is a {type(value).__name__} of {kind} values in the batch, and Keras needs "
                "arrays: " + _decode_hint(name),
                path=path,
                column=name,
            )


def _pick(batch: Batch, names: Names) -> Any:
    if isinstance(names, str):
        return batch[names]
    return {name: batch[name] for name in names}


@functools.cache
def keras_sequence_class() -> type[EpochBatches]:
    """The ``keras.utils.PyDataset`` subclass ``KerasSequence`` (imports Keras)."""
    try:
        import keras
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc

    class KerasSequence(EpochBatches, keras.utils.PyDataset):  # type: ignore[misc]
        """A ``keras.utils.PyDataset`` over a bale file, for ``model.fit(seq, epochs=...)``.

        >>> train = KerasSequence("train.bale", 128, x="image", y="label", seed=0)  # doctest: +SKIP
        >>> model.fit(train, epochs=10, shuffle=False)
        >>> isinstance(train, keras.utils.PyDataset), isinstance(train, KerasSequence)
        (True, True)

        Batch ``i`` is batch ``i`` of the current epoch's order (see ``EpochBatches``), and
        Keras's ``on_epoch_end`` moves to the next epoch, so every row is seen once per epoch
        (per rank). Do not combine it with ``steps_per_epoch``: Keras would then run one pass
        over the batches across several of its epochs, and the order would change in the middle
        of it. Pass ``shuffle=False`` to ``fit``: Keras would otherwise visit the batches in a
        random order, which costs cache hits and adds nothing to the sequence's own shuffle.
        ``path`` may be a URL (``s3://``, ``https://``, ...), read with ``storage_options``
        (see ``bale.open``). Image bytes need a decoding ``batch_transform``
        (``bale.images.DecodeImages``); a bytes or text column without one is a ``SchemaError``.
        ``options``: ``x``, ``y``, ``shuffle``, ``seed``, ``drop_last``, ``batch_transform``,
        ``rank``, ``world_size``, ``partition``, ``window_groups``, ``memory_budget``,
        ``storage_options`` (see ``EpochBatches``); ``workers``, ``use_multiprocessing`` and
        ``max_queue_size`` go to ``keras.utils.PyDataset``.
        """

        def __init__(
            self,
            path: str | os.PathLike[str],
            batch_size: int,
            *,
            workers: int = 1,
            use_multiprocessing: bool = False,
            max_queue_size: int = 10,
            **options: Any,
        ) -> None:
            EpochBatches.__init__(self, path, batch_size, **options)
            keras.utils.PyDataset.__init__(
                self,
                workers=workers,
                use_multiprocessing=use_multiprocessing,
                max_queue_size=max_queue_size,
            )

    KerasSequence.__module__ = __name__
    KerasSequence.__qualname__ = "KerasSequence"
    return KerasSequence


if TYPE_CHECKING:
    # What type checkers see; at run time the name is the class keras_sequence_class() makes.
    class KerasSequence(EpochBatches):
        def __init__(
            self,
            path: str | os.PathLike[str],
            batch_size: int,
            *,
            workers: int = 1,
            use_multiprocessing: bool = False,
            max_queue_size: int = 10,
            **options: Any,
        ) -> None: ...


def __getattr__(name: str) -> Any:
    # PEP 562: the class is made (and Keras imported) when the name is first looked up, so that
    # ``import bale.adapters.keras`` stays free of Keras and KerasSequence is still a real class
    # (isinstance, subclassing and pickling by reference all work).
    if name == "KerasSequence":
        return keras_sequence_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def keras_generator(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    batch_size: int,
    x: Names,
    y: Names | None = None,
    *,
    epochs: int | None = None,
    **loader_kwargs: Any,
) -> Iterator[tuple[Any, ...]]:
    """``(x, y)`` tuples (``(x,)`` when ``y`` is None) from ``bale.Loader``, epoch after epoch.

    >>> steps = len(bale.Loader("train.bale", 128))                     # doctest: +SKIP
    >>> data = keras_generator("train.bale", 128, "image", "label", seed=0)
    >>> model.fit(data, epochs=10, steps_per_epoch=steps, shuffle=False)

    Endless by default (``epochs=None``), as ``fit`` with ``steps_per_epoch`` expects; give
    ``epochs`` to stop after that many. ``loader_kwargs`` go to ``bale.Loader`` (its ``columns``
    default to those named by ``x`` and ``y``; ``storage_options`` for URLs). Needs no Keras:
    any loop can use it.
    """
    loader_kwargs.setdefault(
        "columns", list(dict.fromkeys([*_names(x), *(_names(y) if y is not None else [])]))
    )
    names = list(dict.fromkeys([*_names(x), *(_names(y) if y is not None else [])]))
    shown = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    with Loader(path, batch_size, **loader_kwargs) as loader:
        epoch = 0
        while epochs is None or epoch < epochs:
            for batch in loader:
                _check_arrays(batch, names, shown)
                inputs = _pick(batch, x)
                yield (inputs,) if y is None else (inputs, _pick(batch, y))
            epoch += 1
