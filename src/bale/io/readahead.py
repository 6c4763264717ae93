"""Byte ranges fetched ahead of their reads by a few background threads and held in memory up to
a byte cap: how a remote source answers ``will_need`` (a local one asks the kernel instead)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class ReadAhead:
    """Ranges asked for by ``start`` are fetched by up to ``max_requests`` threads; ``take``
    returns the bytes of a range one of them covers (waiting for it if still in flight) or None.

    Bounded and never blocking the caller of ``start``: a hint that would exceed ``max_bytes``
    (counting ranges in flight) first drops the oldest ranges held, and is itself dropped if
    that is not enough. A range stays until the cap pushes it out, so several reads of parts
    of one range (a row group's columns) are all served. A failed fetch is forgotten: the read
    that wanted it fetches again itself, and reports the error with its own retries. ``hold``
    adds bytes already at hand (a disk cache's) under the same cap, with no thread.

    The threads start with the first hint; nothing is shared across fork (the owner makes a
    new ReadAhead in a forked child).
    """

    def __init__(
        self, fetch: Callable[[int, int], bytes], max_bytes: int, max_requests: int
    ) -> None:
        self._fetch = fetch
        self._max_bytes = max_bytes
        self._max_requests = max_requests
        self._lock = threading.Lock()
        self._ranges: OrderedDict[tuple[int, int], Any] = OrderedDict()  # (start, stop) -> Future
        self._held = 0
        self._pool: Any = None

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
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self._max_requests, "bale-read-ahead")
            future = self._pool.submit(self._fetch, start, stop)
            self._ranges[(start, stop)] = future
            self._held += size
        return True

    def hold(self, start: int, stop: int, data: bytes) -> bool:
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
            self._ranges[(start, stop)] = _Ready(data)
            self._held += size
        return True

    def _make_room(self, size: int) -> bool:
        """Under the lock: drop the oldest ranges until ``size`` more bytes fit."""
        while self._held + size > self._max_bytes and self._ranges:
            (first, last), old = self._ranges.popitem(last=False)
            old.cancel()  # still queued: never fetched; in flight: its bytes are dropped
            self._held -= last - first
        return self._held + size <= self._max_bytes

    def take(self, start: int, stop: int, timeout: float) -> bytes | None:
        """The bytes ``[start, stop)`` if a range fetched ahead covers them, else None."""
        with self._lock:
            key = self._covering(start, stop)
            future = self._ranges.get(key) if key is not None else None
        if future is None or key is None:
            return None
        try:
            data: bytes = future.result(timeout=timeout)
        except Exception:
            with self._lock:
                if self._ranges.get(key) is future:
                    del self._ranges[key]
                    self._held -= key[1] - key[0]
            return None
        if start == key[0] and stop == key[1]:
            return data
        return data[start - key[0] : stop - key[0]]

    def _covering(self, start: int, stop: int) -> tuple[int, int] | None:
        if (start, stop) in self._ranges:
            return (start, stop)
        for first, last in reversed(self._ranges):
            if first <= start and stop <= last:
                return (first, last)
        return None

    def clear(self) -> None:
        with self._lock:
            for future in self._ranges.values():
                future.cancel()
            self._ranges.clear()
            self._held = 0

    def close(self) -> None:
        self.clear()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


class _Ready:
    """A range held by ``hold``: answers like a finished future (no concurrent.futures import
    for it)."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    def result(self, timeout: float | None = None) -> bytes:
        return self._data

    def cancel(self) -> bool:
        return False
