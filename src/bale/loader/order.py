"""Epoch order as pure functions: one global order per epoch, and each consumer's part of it.

Everything here is deterministic arithmetic on integers, identical on every machine and NumPy
version (permutations sort splitmix64 hashes, `bale._core.shuffle`). Nothing here reads files.

**The global order** of an epoch depends only on the data's row-group layout, the shuffle mode,
the seed, the epoch and the window size (``window_groups``): never on batch size, threads,
prefetch, memory budget, or how many ranks and workers read it.
1. The *stream*: every row once. ``"none"``: file order; ``"chunks"``: whole row groups in a
   shuffled order; ``"full"``: a uniform permutation of all rows.
2. In ``"chunks"`` mode the stream is cut into *windows* of ``window_groups`` whole row groups,
   and the rows of each window are served in a permuted order (a window is what a loader holds
   in memory). The global order is the windows one after the other.

**Consumers** (``world_size`` ranks x ``workers`` DataLoader workers per rank; consumer
``rank * workers + worker``) each get an equal, contiguous stretch of the *stream* and serve it
in global order, window by window. So each consumer reads only its own row groups (two consumers
share at most one row group at a boundary), and every rank yields the same number of batches.
``partition="drop"`` drops the last ``rows % consumers`` rows of the stream; ``"pad"`` repeats
rows from the start of the stream so every row is seen (a few twice).

**Resuming** needs only how the epoch was consumed so far: a list of ``Phase`` (world size,
workers, batch size, batches the rank received). The rows not yet consumed are shared anew
among the consumers of the next phase, whatever their number, in stream order, each consumer
still reading its own stretch of the stream. Across all phases every row of an epoch is served
exactly once, except that ``"drop"`` leaves out fewer rows than the last phase has consumers and
``"pad"`` repeats fewer rows than each phase has consumers.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from bale._core.shuffle import permutation

__all__ = [
    "ConsumerOrders",
    "EpochOrder",
    "GlobalOrder",
    "Partition",
    "Phase",
    "ShuffleMode",
    "epoch_order",
]

ShuffleMode = Literal["chunks", "full", "none"]
Partition = Literal["drop", "pad"]
DEFAULT_WINDOW_GROUPS = 16


@dataclass(frozen=True)
class Phase:
    """A stretch of an epoch consumed by ``world_size`` ranks of ``workers`` consumers each,
    serving batches of ``batch_size`` rows; every rank received ``batches`` batches, taken from
    its workers in turn (worker 0, 1, ..., as PyTorch's DataLoader does)."""

    world_size: int
    workers: int
    batch_size: int
    batches: int

    def __post_init__(self) -> None:
        if self.world_size < 1 or self.workers < 1 or self.batch_size < 1 or self.batches < 0:
            raise ValueError(f"invalid resume phase {self}")

    @property
    def consumers(self) -> int:
        return self.world_size * self.workers

    def rows_consumed(self, consumer: int, share: int) -> int:
        """Rows consumer ``consumer`` served in this phase, out of its ``share``."""
        worker = consumer % self.workers
        batches = max(0, (self.batches - worker + self.workers - 1) // self.workers)
        return min(share, batches * self.batch_size)


@dataclass(frozen=True)
class _Piece:
    """Stream positions of one window: the interval lo..hi-1, or the sorted ``positions``.
    ``pad`` marks rows repeated to even out the shares (not counted when resuming)."""

    window: int
    lo: int
    hi: int
    positions: np.ndarray | None = None
    pad: bool = False

    @property
    def size(self) -> int:
        return self.hi - self.lo if self.positions is None else len(self.positions)

    def array(self) -> np.ndarray:
        if self.positions is None:
            return np.arange(self.lo, self.hi, dtype=np.int64)
        return self.positions

    def sliced(self, a: int, b: int, *, pad: bool | None = None) -> _Piece:
        """Elements a..b-1 of this piece."""
        pad = self.pad if pad is None else pad
        if self.positions is None:
            return _Piece(self.window, self.lo + a, self.lo + b, None, pad)
        return _Piece(self.window, 0, 0, self.positions[a:b], pad)


class GlobalOrder:
    """The order of one epoch over all rows: the stream and its windows (see module doc)."""

    def __init__(
        self,
        group_sizes: np.ndarray | Sequence[int],
        *,
        mode: ShuffleMode,
        seed: int,
        epoch: int,
        window_groups: int = DEFAULT_WINDOW_GROUPS,
    ) -> None:
        if mode not in ("chunks", "full", "none"):
            raise ValueError(f"shuffle must be 'chunks', 'full' or 'none', got {mode!r}")
        if window_groups < 1:
            raise ValueError(f"window_groups must be >= 1, got {window_groups}")
        self.mode: ShuffleMode = mode
        self.seed, self.epoch, self.window_groups = seed, epoch, window_groups
        self.group_sizes = np.asarray(group_sizes, dtype=np.int64)
        self.group_starts = np.zeros(len(self.group_sizes), np.int64)
        np.cumsum(self.group_sizes[:-1], out=self.group_starts[1:])
        self.num_rows = int(self.group_sizes.sum())
        groups = np.arange(len(self.group_sizes), dtype=np.int64)
        self._full: np.ndarray | None = None
        if mode == "chunks":
            groups = permutation(len(self.group_sizes), seed, epoch, 0)
        elif mode == "full":
            self._full = permutation(self.num_rows, seed, epoch, 1)
        self._stream_groups = groups
        self._stream_offsets = np.zeros(len(groups), np.int64)
        np.cumsum(self.group_sizes[groups][:-1], out=self._stream_offsets[1:])
        # Windows are whole row groups of the stream, so no row group is cut between two
        # windows (it would be read and decoded by both). Only "chunks" permutes inside
        # windows; the other modes need no windows: one spans the stream.
        if mode == "chunks" and self.num_rows:
            starts = self._stream_offsets[::window_groups]
        else:
            starts = np.zeros(1 if self.num_rows else 0, np.int64)
        self._window_starts = np.append(starts, self.num_rows).astype(np.int64)
        self._inverse: dict[int, np.ndarray] = {}

    @property
    def num_windows(self) -> int:
        return len(self._window_starts) - 1

    @property
    def window_rows(self) -> int:
        """Rows of the largest window."""
        return int(np.diff(self._window_starts).max(initial=1))

    def window_span(self, window: int) -> tuple[int, int]:
        """Stream positions ``start, stop`` of window ``window``."""
        return int(self._window_starts[window]), int(self._window_starts[window + 1])

    def stream_rows(self, positions: np.ndarray) -> np.ndarray:
        """Global row numbers at these stream positions."""
        positions = np.asarray(positions, np.int64)
        if self._full is not None:
            permuted: np.ndarray = self._full[positions]
            return permuted
        which = np.searchsorted(self._stream_offsets, positions, side="right") - 1
        groups = self._stream_groups[which]
        rows: np.ndarray = self.group_starts[groups] + (positions - self._stream_offsets[which])
        return rows

    def served(self, piece: _Piece) -> np.ndarray:
        """A piece's stream positions in the order they are served."""
        if self.mode != "chunks":
            return piece.array()
        start, stop = self.window_span(piece.window)
        perm = permutation(stop - start, self.seed, self.epoch, 0, piece.window)
        if piece.positions is None and (piece.lo, piece.hi) == (start, stop):
            whole: np.ndarray = start + perm
            return whole
        inverse = self._inverse.get(piece.window)
        if inverse is None:
            inverse = np.empty_like(perm)
            inverse[perm] = np.arange(len(perm))
            if len(self._inverse) >= 4:
                self._inverse.pop(next(iter(self._inverse)))
            self._inverse[piece.window] = inverse
        positions = piece.array()
        ranks = inverse[positions - start]
        served: np.ndarray = positions[np.argsort(ranks, kind="stable")]
        return served

    def pieces(self) -> list[_Piece]:
        """The whole stream, one piece per window."""
        return [_Piece(w, *self.window_span(w)) for w in range(self.num_windows)]


def _size(pieces: Sequence[_Piece]) -> int:
    return sum(p.size for p in pieces)


def _take(pieces: Sequence[_Piece], a: int, b: int, *, pad: bool | None = None) -> list[_Piece]:
    """Elements a..b-1 of the concatenated pieces."""
    out, offset = [], 0
    for piece in pieces:
        lo, hi = max(a - offset, 0), min(b - offset, piece.size)
        if lo < hi:
            out.append(piece.sliced(lo, hi, pad=pad))
        offset += piece.size
        if offset >= b:
            break
    return out


def _shares(pieces: list[_Piece], consumers: int, partition: Partition) -> list[list[_Piece]]:
    """Equal contiguous shares of the pieces, one per consumer (drop or pad the remainder)."""
    total = _size(pieces)
    if partition == "drop" or total == 0:
        length = total // consumers
        extended = pieces
    else:
        length = -(-total // consumers)
        extended = list(pieces)
        missing = consumers * length - total
        while missing > 0:  # repeat rows from the start of the stream (several times if tiny)
            extra = _take(pieces, 0, min(missing, total), pad=True)
            extended.extend(extra)
            missing -= _size(extra)
    return [_take(extended, c * length, (c + 1) * length) for c in range(consumers)]


def _merge_windows(pieces: list[_Piece]) -> list[_Piece]:
    """Adjacent pieces of one window joined, so a window is read once."""
    out: list[_Piece] = []
    for piece in pieces:
        last = out[-1] if out else None
        if last is not None and last.window == piece.window and last.pad == piece.pad:
            if last.positions is None and piece.positions is None and last.hi == piece.lo:
                out[-1] = _Piece(last.window, last.lo, piece.hi, None, last.pad)
            else:
                joined = np.concatenate([last.array(), piece.array()])
                out[-1] = _Piece(last.window, 0, 0, joined, last.pad)
        else:
            out.append(piece)
    return out


def _unconsumed(order: GlobalOrder, share: list[_Piece], consumed: int) -> list[_Piece]:
    """What is left of a share after its first ``consumed`` rows were served (padding dropped)."""
    left = []
    for piece in share:
        if consumed >= piece.size:
            consumed -= piece.size
            continue
        if consumed > 0:
            rest = np.sort(order.served(piece)[consumed:])
            piece = _Piece(piece.window, 0, 0, rest, piece.pad)
            consumed = 0
        if not piece.pad:
            left.append(piece)
    return left


def _remaining(order: GlobalOrder, history: Sequence[Phase], partition: Partition) -> list[_Piece]:
    """The stream positions not yet consumed after the phases in ``history``, in stream order."""
    pieces = order.pieces()
    for phase in history:
        shares = _shares(pieces, phase.consumers, partition)
        left: list[_Piece] = []
        for consumer, share in enumerate(shares):
            consumed = phase.rows_consumed(consumer, _size(share))
            left.extend(_unconsumed(order, share, consumed))
        if partition == "drop":  # the rows this phase's shares left out stay for the next one
            length = _size(shares[0]) if shares else 0
            left.extend(_take(pieces, phase.consumers * length, _size(pieces)))
        pieces = _merge_windows(left)
    return pieces


@dataclass
class EpochOrder:
    """The rows one consumer serves in one epoch, in order, as a series of windows.

    ``rows(a, b)`` gives positions a..b-1 of the consumer's sequence. A window is produced only
    when asked for, so an epoch over 10^9 rows never materialises 10^9 indices at once (except
    in "full" mode, whose permutation is the order itself).
    """

    order: GlobalOrder
    pieces: list[_Piece]
    _bounds: np.ndarray = field(init=False, repr=False)
    _window_cache: dict[int, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._bounds = np.zeros(len(self.pieces) + 1, np.int64)
        np.cumsum([p.size for p in self.pieces], out=self._bounds[1:])

    @property
    def mode(self) -> ShuffleMode:
        return self.order.mode

    @property
    def epoch(self) -> int:
        return self.order.epoch

    @property
    def group_starts(self) -> np.ndarray:
        return self.order.group_starts

    @property
    def num_rows(self) -> int:
        """Rows of the whole dataset (all consumers)."""
        return self.order.num_rows

    def __len__(self) -> int:
        return int(self._bounds[-1])

    @property
    def num_windows(self) -> int:
        return len(self.pieces)

    def window_bounds(self, window: int) -> tuple[int, int]:
        """Positions of the consumer's sequence that window ``window`` serves."""
        return int(self._bounds[window]), int(self._bounds[window + 1])

    def window_at(self, position: int) -> int:
        """The window serving position ``position`` of the sequence."""
        return int(np.searchsorted(self._bounds, position, side="right") - 1)

    def window(self, window: int) -> np.ndarray:
        """Global row numbers of one window, in the order they are served (the last few windows
        are cached: every batch of a window asks for it)."""
        cache = self._window_cache
        cached = cache.get(window)
        if cached is not None:
            return cached
        rows = self.order.stream_rows(self.order.served(self.pieces[window]))
        rows.flags.writeable = False
        if len(cache) >= 4:
            cache.pop(next(iter(cache)))  # dict order: the oldest entry first
        cache[window] = rows
        return rows

    def window_stream(self, window: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, order): a window's global rows in stream order (runs of consecutive rows of
        the same row group, cheap to read) and the permutation that gives the serving order:
        ``rows[order]`` equals ``window(window)``."""
        piece = self.pieces[window]
        positions = piece.array()
        served = self.order.served(piece)
        return self.order.stream_rows(positions), np.searchsorted(positions, served)

    def groups_of_window(self, window: int) -> np.ndarray:
        """Global row groups that a window's rows come from (what to read ahead for it)."""
        rows = self.order.stream_rows(self.pieces[window].array())
        return np.unique(np.searchsorted(self.order.group_starts, rows, side="right") - 1)

    def rows(self, a: int, b: int) -> np.ndarray:
        """Positions a..b-1 of this consumer's sequence (any range, across windows)."""
        a, b = max(a, 0), min(b, len(self))
        if b <= a:
            return np.zeros(0, np.int64)
        pieces = []
        for w in range(self.window_at(a), self.window_at(b - 1) + 1):
            lo, _ = self.window_bounds(w)
            pieces.append(self.window(w)[max(a - lo, 0) : b - lo])
        return np.concatenate(pieces) if len(pieces) > 1 else pieces[0].copy()


def epoch_order(
    group_sizes: np.ndarray | Sequence[int],
    *,
    mode: ShuffleMode,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    worker: int = 0,
    workers: int = 1,
    partition: Partition = "drop",
    window_groups: int = DEFAULT_WINDOW_GROUPS,
    history: Sequence[Phase] = (),
) -> EpochOrder:
    """The rows consumer (``rank``, ``worker``) serves in ``epoch``, after the phases of
    ``history`` consumed the start of it (see the module docstring)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"rank must be in 0..world_size-1, got rank={rank}, world_size={world_size}"
        )
    if workers < 1 or not 0 <= worker < workers:
        raise ValueError(f"worker must be in 0..workers-1, got worker={worker}, workers={workers}")
    if partition not in ("drop", "pad"):
        raise ValueError(f"partition must be 'drop' or 'pad', got {partition!r}")
    order = GlobalOrder(group_sizes, mode=mode, seed=seed, epoch=epoch, window_groups=window_groups)
    remaining = _remaining(order, history, partition)
    shares = _shares(remaining, world_size * workers, partition)
    return EpochOrder(order, shares[rank * workers + worker])


class ConsumerOrders:
    """One consumer's order epoch after epoch, each computed once (samplers and adapters ask
    for it per batch or per index). Thread-safe.

    >>> orders = ConsumerOrders([10, 10, 3], mode="chunks", seed=0, window_groups=2)
    >>> len(orders.epoch(0))
    23
    """

    def __init__(
        self,
        group_sizes: np.ndarray | Sequence[int],
        *,
        mode: ShuffleMode,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        partition: Partition = "drop",
        window_groups: int = DEFAULT_WINDOW_GROUPS,
    ) -> None:
        self.group_sizes = np.asarray(group_sizes, dtype=np.int64)
        self.mode: ShuffleMode = mode
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.partition: Partition = partition
        self.window_groups = window_groups
        self._lock = threading.Lock()
        self._cached: tuple[int, EpochOrder] | None = None

    def epoch(self, epoch: int) -> EpochOrder:
        with self._lock:
            cached = self._cached
            if cached is None or cached[0] != epoch:
                order = epoch_order(
                    self.group_sizes,
                    mode=self.mode,
                    seed=self.seed,
                    epoch=epoch,
                    rank=self.rank,
                    world_size=self.world_size,
                    partition=self.partition,
                    window_groups=self.window_groups,
                )
                cached = self._cached = (epoch, order)
            return cached[1]

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
