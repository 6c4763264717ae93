"""The process's pool of decoding threads: gathers of scattered rows decode their blocks and
frames in parallel (codecs release the GIL). Made at first use, made again in a forked child."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from bale._core.forksafe import ForkSafeLock

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

#: Most threads a gather uses: the cores, up to 4 (a gather of 64 rows gains little beyond).
MAX_THREADS = min(4, os.cpu_count() or 1)

_pool: ThreadPoolExecutor | None = None
_pool_pid = -1
_lock = ForkSafeLock()


def _the_pool() -> ThreadPoolExecutor:
    global _pool, _pool_pid
    with _lock:
        if _pool is None or _pool_pid != os.getpid():  # a forked child has no pool threads
            # Imported here: concurrent.futures pulls in logging, a cost `import bale` need not pay.
            from concurrent.futures import ThreadPoolExecutor

            _pool = ThreadPoolExecutor(MAX_THREADS, thread_name_prefix="bale-gather")
            _pool_pid = os.getpid()
        return _pool


def run_split(work: Callable[[Any], None], items: Sequence[Any]) -> None:
    """Call ``work(item)`` for every item, split over up to ``MAX_THREADS`` threads (one task
    per thread, not per item: submitting costs more than a small item). In the calling thread
    for a single item, or on one core. The first exception is raised again here."""
    shares = min(MAX_THREADS, len(items))
    if shares < 2 or threading.current_thread().name.startswith("bale-gather"):
        for item in items:
            work(item)
        return

    def share(k: int) -> None:
        for item in items[k::shares]:
            work(item)

    pool = _the_pool()
    futures = [pool.submit(share, k) for k in range(1, shares)]
    try:
        share(0)
    finally:
        for future in futures:
            future.result()
