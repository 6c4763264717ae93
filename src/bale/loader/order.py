"""Epoch order as pure functions of (seed, epoch, rank, world_size): shuffling and sharding.

Everything here is deterministic arithmetic on integers, identical on every machine and NumPy
version: permutations sort splitmix64 hashes instead of using a random generator whose stream
may change between releases. Nothing here reads files.

An epoch is built in three steps:
1. the *stream*: every row of the dataset once, in an order that depends on the mode
   ("none": file order; "chunks": row groups in a shuffled order; "full": a uniform permutation);
2. the rank's *share*: a contiguous, equal-sized stretch of the stream (contiguous, so each rank
   reads mostly distinct row groups), padded by wrapping around or cut to equal length;
3. in "chunks" mode, the share is cut into *windows* of a few row groups' worth of rows, and rows
   are permuted within each window (a window is what the loader holds in memory).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from bale._core.shuffle import permutation

ShuffleMode = Literal["chunks", "full", "none"]
Partition = Literal["drop", "pad"]


@dataclass(frozen=True)
class Share:
    """One rank's part of one epoch: ``length`` positions of the stream starting at ``start``
    (positions past the end of the stream wrap around, for padding)."""

    start: int
    length: int


def rank_share(num_rows: int, rank: int, world_size: int, partition: Partition) -> Share:
    """Equal, disjoint, contiguous shares. ``drop`` cuts the remainder (each rank gets
    num_rows // world_size rows); ``pad`` repeats rows from the start of the stream so every row
    is covered (each rank gets ceil(num_rows / world_size))."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"rank must be in 0..world_size-1, got rank={rank}, world_size={world_size}"
        )
    per_rank = num_rows // world_size if partition == "drop" else -(-num_rows // world_size)
    return Share(rank * per_rank, per_rank)


@dataclass(frozen=True)
class EpochOrder:
    """The rows one rank reads in one epoch, as global row numbers, computed window by window.

    ``rows(a, b)`` gives positions a..b-1 of the rank's sequence; a window is produced only when
    asked for, so an epoch over 10^9 rows never materialises 10^9 indices at once (except in
    "full" mode, which needs a whole permutation by definition).
    """

    mode: ShuffleMode
    group_starts: np.ndarray  # first global row of each row group, in file order
    group_sizes: np.ndarray
    stream_groups: np.ndarray  # row groups in stream order ("none"/"chunks")
    stream_offsets: np.ndarray  # first stream position of each stream group
    full_permutation: np.ndarray | None
    share: Share
    window_rows: int
    seed: int
    epoch: int
    _window_cache: dict[int, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    @property
    def num_rows(self) -> int:
        return int(self.group_sizes.sum())

    def __len__(self) -> int:
        return self.share.length

    def window_bounds(self, window: int) -> tuple[int, int]:
        start = window * self.window_rows
        return start, min(start + self.window_rows, len(self))

    @property
    def num_windows(self) -> int:
        return -(-len(self) // self.window_rows) if len(self) else 0

    def window(self, window: int) -> np.ndarray:
        """Global row numbers of one window, in the order they are served. The last few windows
        are cached: every batch of a window asks for it."""
        cache = self._window_cache
        cached = cache.get(window)
        if cached is not None:
            return cached
        a, b = self.window_bounds(window)
        rows = self._stream_rows(self.share.start + a, self.share.start + b)
        if self.mode == "chunks":
            rows = rows[permutation(len(rows), self.seed, self.epoch, self.share.start, window)]
        rows.flags.writeable = False
        if len(cache) >= 4:
            cache.pop(next(iter(cache)))  # dict order: the oldest entry first
        cache[window] = rows
        return rows

    def window_stream(self, window: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, order): a window's global rows in stream order (runs of consecutive rows of
        the same row group, cheap to read) and the permutation that gives the serving order:
        ``rows[order]`` equals ``window(window)``."""
        a, b = self.window_bounds(window)
        rows = self._stream_rows(self.share.start + a, self.share.start + b)
        if self.mode == "chunks":
            served = permutation(len(rows), self.seed, self.epoch, self.share.start, window)
        else:
            served = np.arange(len(rows), dtype=np.int64)
        return rows, served

    def groups_of_window(self, window: int) -> np.ndarray:
        """Global row groups that a window's rows come from (what to read ahead for it)."""
        a, b = self.window_bounds(window)
        rows = self._stream_rows(self.share.start + a, self.share.start + b)
        return np.unique(np.searchsorted(self.group_starts, rows, side="right") - 1)

    def rows(self, a: int, b: int) -> np.ndarray:
        """Positions a..b-1 of this rank's sequence (any range, across windows)."""
        a, b = max(a, 0), min(b, len(self))
        if self.mode != "chunks":
            return self._stream_rows(self.share.start + a, self.share.start + b)
        pieces = []
        first, last = a // self.window_rows, (b - 1) // self.window_rows if b > a else -1
        for w in range(first, last + 1):
            lo, _ = self.window_bounds(w)
            rows = self.window(w)
            pieces.append(rows[max(a - lo, 0) : b - lo])
        return np.concatenate(pieces) if pieces else np.zeros(0, np.int64)  # type: ignore[no-any-return]

    def _stream_rows(self, a: int, b: int) -> np.ndarray:
        """Stream positions a..b-1 (wrapping past the end) as global row numbers."""
        n = self.num_rows
        if b <= a or n == 0:
            return np.zeros(0, np.int64)
        positions = np.arange(a, b, dtype=np.int64) % n
        if self.full_permutation is not None:
            return self.full_permutation[positions]
        which = np.searchsorted(self.stream_offsets, positions, side="right") - 1
        groups = self.stream_groups[which]
        rows: np.ndarray = self.group_starts[groups] + (positions - self.stream_offsets[which])
        return rows


def epoch_order(
    group_sizes: np.ndarray | Sequence[int],
    *,
    mode: ShuffleMode,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    partition: Partition = "drop",
    window_groups: int = 16,
) -> EpochOrder:
    """The order one rank reads rows in one epoch (see the module docstring)."""
    if mode not in ("chunks", "full", "none"):
        raise ValueError(f"shuffle must be 'chunks', 'full' or 'none', got {mode!r}")
    sizes = np.asarray(group_sizes, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    num_rows = int(sizes.sum())
    groups = np.arange(len(sizes), dtype=np.int64)
    full = None
    if mode == "chunks":
        groups = permutation(len(sizes), seed, epoch, 0)
    elif mode == "full":
        full = permutation(num_rows, seed, epoch, 1)
    offsets = np.concatenate([[0], np.cumsum(sizes[groups])[:-1]]).astype(np.int64)
    typical_group = int(np.median(sizes)) if len(sizes) else 1
    window_rows = max(1, window_groups * max(typical_group, 1))
    return EpochOrder(
        mode,
        starts,
        sizes,
        groups,
        offsets,
        full,
        rank_share(num_rows, rank, world_size, partition),
        window_rows,
        seed,
        epoch,
    )
