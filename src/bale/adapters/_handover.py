"""Hand-over of batches from a DataLoader worker to the main process through reused shared memory.

PyTorch hands a worker's tensor to the main process by moving it into a new shared-memory segment
for every batch: each batch then pays for fresh pages in the worker (allocated, zeroed, copied
into) and new mappings in the main process. On a small machine that costs as much CPU as decoding
a few images per batch. A worker using ``WorkerHandover`` instead copies each batch's tensors into
one *slot* of a pool of shared memory that it allocated once; the main process rebuilds the
tensors as views of that slot. Pages are touched once per worker, not once per batch.

A slot is reused only after the main process has released every tensor built on it: the slot's
byte in the pool's header is set to 1 by the worker when it fills the slot, and back to 0 by a
finalizer in the main process when the tensors' shared storage is freed (the user's batch, its
views and any NumPy array made from it all keep it alive). When no slot is free — a training loop
that keeps batches, or a batch larger than a slot — the batch goes PyTorch's usual way. Nothing
waits for a slot, and a batch never shares a slot with another live batch.

Only tensors at the top level of a batch dict are pooled; other values (lists of bytes, strings)
travel as they are.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

#: Batches whose tensors hold fewer bytes than this go PyTorch's usual way (few pages to save).
MIN_POOLED_BYTES = 1 << 20
#: Slots per worker: the DataLoader keeps up to ``prefetch_factor`` (default 2) batches of each
#: worker in flight, plus the one the training loop holds and the one being handed over.
DEFAULT_SLOTS = 6
#: The pools of all workers may use at most this share of /dev/shm's free space.
SHM_SHARE = 0.5
#: Batches rebuilt from a slot in this process (read by tests and benchmarks).
rebuilt_batches = 0
_HEADER = 4096  # one byte per slot, padded so that slots start on a page
_ALIGN = 64


class WorkerHandover:
    """One DataLoader worker's pool of shared-memory slots (created at its first large batch)."""

    def __init__(self, num_workers: int, slots: int = DEFAULT_SLOTS) -> None:
        self.num_workers = max(1, num_workers)
        self.slots = slots
        self._pool: torch.Tensor | None = None
        self._header: np.ndarray | None = None
        self._slot_bytes = 0
        self._next = 0
        self._disabled = False
        self.pooled = 0  # batches handed over through a slot (read by tests and benchmarks)
        self.unpooled = 0  # large batches that went PyTorch's way: no slot free, or too large

    def place(self, batch: Mapping[str, Any]) -> Any:
        """The batch as an object whose unpickling in the main process rebuilds it from a slot,
        or the batch itself when it is not worth pooling or no slot is free."""
        tensors = {
            key: value
            for key, value in batch.items()
            if type(value) is torch.Tensor and value.device.type == "cpu" and not value.is_pinned()
        }
        layout, nbytes = _layout(tensors)
        if self._disabled or nbytes < MIN_POOLED_BYTES:
            return batch
        if self._pool is None and not self._create(nbytes):
            return batch
        assert self._pool is not None and self._header is not None
        slot = self._free_slot() if nbytes <= self._slot_bytes else None
        if slot is None:
            self.unpooled += 1
            return batch
        self._header[slot] = 1
        start = _HEADER + slot * self._slot_bytes
        entries = []
        for key, (offset, size) in layout.items():
            tensor = tensors[key]
            target = self._pool[start + offset : start + offset + size]
            target.view(tensor.dtype).view(tensor.shape).copy_(tensor)
            entries.append((key, offset, size, tensor.dtype, tuple(tensor.shape)))
        rest = {key: value for key, value in batch.items() if key not in tensors}
        self.pooled += 1
        return PooledBatch(self._pool, slot, start, nbytes, entries, rest, list(batch))

    def _create(self, nbytes: int) -> bool:
        slot_bytes = -(-nbytes // 4096) * 4096
        total = _HEADER + self.slots * slot_bytes
        if total * self.num_workers > SHM_SHARE * _shm_free_bytes():
            self._disabled = True  # a small /dev/shm (containers): leave it to PyTorch
            return False
        storage = torch.UntypedStorage._new_shared(total)  # type: ignore[no-untyped-call]
        self._pool = torch.empty(0, dtype=torch.uint8).set_(storage)
        self._header = self._pool[: self.slots].numpy()
        self._header[:] = 0
        self._slot_bytes = slot_bytes
        return True

    def _free_slot(self) -> int | None:
        assert self._header is not None
        for step in range(self.slots):
            slot = (self._next + step) % self.slots
            if self._header[slot] == 0:
                self._next = (slot + 1) % self.slots
                return slot
        return None


class PooledBatch:
    """A batch whose tensors lie in one slot of a worker's pool: pickled, it carries the pool's
    shared memory (a file descriptor, as PyTorch passes it) and the tensors' places in it."""

    def __init__(self, *args: Any) -> None:
        self.args = args  # rebuild_batch's arguments

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (rebuild_batch, self.args)


def rebuild_batch(
    pool: torch.Tensor,
    slot: int,
    start: int,
    nbytes: int,
    entries: list[tuple[str, int, int, torch.dtype, tuple[int, ...]]],
    rest: dict[str, Any],
    keys: list[str],
) -> dict[str, Any]:
    """The batch's tensors as views of its slot, in the receiving process; the slot is given back
    to the worker when the last of them (or of their views) is freed."""
    global rebuilt_batches
    rebuilt_batches += 1
    region = pool[start : start + nbytes].numpy()
    weakref.finalize(region, _release, pool[:_HEADER].numpy(), slot)
    base = torch.from_numpy(region)  # owns ``region``: freed with the last tensor on it
    tensors = {
        key: base[offset : offset + size].view(dtype).view(shape)
        for key, offset, size, dtype, shape in entries
    }
    return {key: tensors[key] if key in tensors else rest[key] for key in keys}


def _release(header: np.ndarray, slot: int) -> None:
    header[slot] = 0


def _layout(tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, tuple[int, int]], int]:
    """Each tensor's (offset, bytes) in a slot, aligned; and the bytes the slot needs."""
    layout: dict[str, tuple[int, int]] = {}
    offset = 0
    for key, tensor in tensors.items():
        size = tensor.numel() * tensor.element_size()
        layout[key] = (offset, size)
        offset += -(-size // _ALIGN) * _ALIGN
    return layout, offset


def _shm_free_bytes() -> int:
    """Free bytes of /dev/shm, where PyTorch's shared memory lives (unbounded if it is absent)."""
    try:
        stat = os.statvfs("/dev/shm")
    except OSError:
        return 1 << 62
    return stat.f_bavail * stat.f_frsize
