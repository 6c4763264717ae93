"""Byte ranges fetched ahead of their reads by background threads and held in memory up to a
byte cap: how a remote source answers ``will_need`` (a local one asks the kernel instead)."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # concurrent.futures is imported with the first hint, not with bale
    from concurrent.futures import Future, ThreadPoolExecutor


class ReadAhead:
    """Ranges asked for by ``start`` are fetched in the background, at most ``max_requests`` of
    them at once; ``take`` returns the bytes of a range one of them covers (waiting for it if
    still in flight) or None.

    Bounded and never blocking the caller of ``start``: a hint that would exceed ``max_bytes``
    (counting ranges queued and in flight) first drops the oldest ranges held, and is itself
    dropped if that is not enough. A range stays until every byte of it has been taken (several
    reads of parts of one range, a row group's columns, are all served; then its memory is
    freed at once) or until the cap pushes it out. A failed fetch is forgotten: the read that
    wanted it fetches again itself, and reports the error with its own retries. ``hold`` adds
    bytes already at hand (a disk cache's) under the same cap, with no thread.

    The fetches run on one thread pool shared by every ReadAhead of the process (as many
    threads as the largest ``max_requests`` asked for), so a dataset of many remote files does
    not start threads per file. Nothing is shared across fork: a forked child gets its own pool
    (and its owner makes a new ReadAhead).
    """

    def __init__(
        self, fetch: Callable[[int, int], bytes | bytearray], max_bytes: int, max_requests: int
    ) -> None:
        self._fetch = fetch
        self._max_bytes = max_bytes
        self._max_requests = max_requests
        self._lock = threading.Lock()
        self._ranges: OrderedDict[tuple[int, int], _Range] = OrderedDict()
        self._queue: deque[_Range] = deque()  # started, waiting for a request slot
        self._running = 0
        self._held = 0

    def start(self, start: int, stop: int) -> bool:
        """Fetch ``[start, stop)`` in the background; False if the hint was dropped."""
        size = stop - start
        if size <= 0 or size > self._max_bytes:
            return False
        with self._lock:
            if self._covering(start, stop) is not None:
                return True
            if not self._make_room(size):
                return False
            entry = _Range(start, stop, _future())
            self._ranges[(start, stop)] = entry
            self._held += size
            self._queue.append(entry)
            self._dispatch()
        return True

    def hold(self, start: int, stop: int, data: bytes | bytearray) -> bool:
        """Keep ``data``, the bytes ``[start, stop)`` already at hand, for ``take`` (as if
        fetched); False if they do not fit."""
        size = stop - start
        if size <= 0 or size > self._max_bytes or len(data) != size:
            return False
        with self._lock:
            if (start, stop) in self._ranges:
                return True
            if not self._make_room(size):
                return False
            future = _future()
            future.set_result(data)
            self._ranges[(start, stop)] = _Range(start, stop, future)
            self._held += size
        return True

    def take(self, start: int, stop: int, timeout: float) -> bytes | bytearray | None:
        """The bytes ``[start, stop)`` if a range fetched ahead covers them, else None."""
        with self._lock:
            key = self._covering(start, stop)
            entry = self._ranges.get(key) if key is not None else None
        if entry is None:
            return None
        try:
            data = entry.future.result(timeout=timeout)
        except Exception:
            self._forget(entry)
            return None
        with self._lock:
            entry.taken += stop - start
            if entry.taken >= entry.stop - entry.start:
                self._drop(entry)  # every byte read: free it now, not when the cap says
        if start == entry.start and stop == entry.stop:
            return data
        return data[start - entry.start : stop - entry.start]

    def clear(self) -> None:
        with self._lock:
            for entry in self._ranges.values():
                entry.future.cancel()
            self._ranges.clear()
            self._queue.clear()
            self._held = 0

    def close(self) -> None:
        self.clear()

    # -- under the lock ---------------------------------------------------------------------

    def _make_room(self, size: int) -> bool:
        """Drop the oldest ranges until ``size`` more bytes fit."""
        while self._held + size > self._max_bytes and self._ranges:
            _, old = self._ranges.popitem(last=False)
            old.future.cancel()  # still queued: never fetched; in flight: its bytes are dropped
            self._held -= old.stop - old.start
        return self._held + size <= self._max_bytes

    def _covering(self, start: int, stop: int) -> tuple[int, int] | None:
        if (start, stop) in self._ranges:
            return (start, stop)
        for first, last in reversed(self._ranges):
            if first <= start and stop <= last:
                return (first, last)
        return None

    def _drop(self, entry: _Range) -> None:
        key = (entry.start, entry.stop)
        if self._ranges.get(key) is entry:
            del self._ranges[key]
            self._held -= entry.stop - entry.start

    def _dispatch(self) -> None:
        """Send queued ranges to the pool while fewer than ``max_requests`` are running."""
        while self._queue and self._running < self._max_requests:
            entry = self._queue.popleft()
            if entry.future.cancelled():
                continue
            self._running += 1
            _pool(self._max_requests).submit(self._run, entry)

    # -- on a pool thread -------------------------------------------------------------------

    def _run(self, entry: _Range) -> None:
        try:
            if entry.future.set_running_or_notify_cancel():
                try:
                    entry.future.set_result(self._fetch(entry.start, entry.stop))
                except BaseException as exc:  # handed to the reader, which fetches again
                    entry.future.set_exception(exc)
        finally:
            with self._lock:
                self._running -= 1
                self._dispatch()

    def _forget(self, entry: _Range) -> None:
        with self._lock:
            self._drop(entry)


class _Range:
    """One range asked for: its future bytes, and how many of them reads have taken."""

    __slots__ = ("future", "start", "stop", "taken")

    def __init__(self, start: int, stop: int, future: Future[bytes | bytearray]) -> None:
        self.start = start
        self.stop = stop
        self.future = future
        self.taken = 0


def _future() -> Future[bytes | bytearray]:
    from concurrent.futures import Future

    return Future()


_pool_lock = threading.Lock()
_pool_state: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, threads, pool)


def _pool(threads: int) -> ThreadPoolExecutor:
    """The process's read-ahead pool, with at least ``threads`` threads (a larger one replaces
    it; the old one finishes what it was given). A forked child makes its own."""
    global _pool_state
    pid = os.getpid()
    state = _pool_state
    if state is not None and state[0] == pid and state[1] >= threads:
        return state[2]
    with _pool_lock:
        state = _pool_state
        if state is not None and state[0] == pid and state[1] >= threads:
            return state[2]
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(threads, "bale-read-ahead")
        if state is not None and state[0] == pid:
            state[2].shutdown(wait=False)
        _pool_state = (pid, threads, pool)
        return pool
