"""Reading a pack's source batches in order: in this process, or in a pool of worker processes
(started only for slow sources, bounded work in flight, stopped at once on an error or Ctrl-C)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from typing import Any, Protocol

import numpy as np

from bale._core.columns import batch_nbytes
from bale.errors import BaleError
from bale.importers.base import RowSource, SourceBatch

log = logging.getLogger("bale.pack")

_TASK_BYTES = 4 << 20  # rows read per task: large enough to amortise, small enough to overlap
_MAX_TASK_ROWS = 1 << 16
# A source read this fast in one process gains nothing from workers (copying between processes
# costs about as much), nor does one whose reads take about as long as sending them away.
_FAST_SOURCE = 256e6  # bytes/s
_QUICK_TASK = 0.002  # seconds


def task_rows(source: RowSource, memory_budget: int, in_flight: int) -> int:
    """Rows per read task: about ``_TASK_BYTES``, fewer when the tasks in flight would exceed a
    quarter of ``memory_budget``."""
    row_bytes = max(1, source.row_nbytes_hint)
    task_bytes = min(_TASK_BYTES, memory_budget // (4 * max(1, in_flight)))
    return max(1, min(_MAX_TASK_ROWS, task_bytes // row_bytes))


def row_ranges(n: int, step: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive reads of ``step`` rows, covering ``range(n)``."""
    for start in range(0, n, step):
        yield start, min(n, start + step)


class SourceReader(Protocol):
    """What a pack reads its source through: ``BatchReader`` (this machine) or a cluster's
    reader (``_cluster.ClusterReader``). Batches come back in the order asked for."""

    in_flight: int  # read tasks submitted and not yet handed over, at most

    def read(self, ranges: Iterable[tuple[int, int]]) -> Iterator[SourceBatch]: ...

    def take(self, chunks: Iterable[np.ndarray]) -> Iterator[SourceBatch]: ...

    def __enter__(self) -> SourceReader: ...

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None: ...


def refuse_main_module_import() -> None:
    """Stop a pack started by a worker process importing the main module of an unguarded
    script: spawn and forkserver workers import it (as ``__mp_main__``), so a script that calls
    ``bale.pack`` at its top level would start a second pack in each worker, which collides
    with the first one's output (the user saw TargetExistsError, then BrokenPipeError).

    Only a child preparing to run a task has a module named ``__mp_main__`` executing its
    top level (``multiprocessing.parent_process()`` is not yet set at that point)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__mp_main__":
            script = frame.f_globals.get("__file__") or "the main module"
            raise BaleError(
                f"bale.pack was called while a worker process imported the main module "
                f"({script}): worker processes import it, so a script that packs with workers "
                'must call bale.pack under `if __name__ == "__main__":` (or pass workers=1)'
            )
        frame = frame.f_back  # type: ignore[assignment]


_worker_source: RowSource | None = None
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _start_worker(source: RowSource, parent_alive: Connection, parent_pid: int) -> None:
    global _worker_source
    # Ctrl-C reaches the whole process group: the main process handles it and stops workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_alive, parent_pid)
    _worker_source = source


def _die_with_parent(parent_alive: Connection, parent_pid: int) -> None:
    """Exit as soon as the pack process is gone, even when it was SIGKILLed and could not stop
    us: a worker left running would also keep the forkserver and the resource tracker alive.

    The pack holds the only write end of ``parent_alive``; when it dies the kernel closes it and
    the read here ends (EOF), on every start method and OS. A thread blocked in that read costs
    nothing until then. On Linux, a parent-death signal also covers a forkserver that dies.
    """
    if os.getppid() != parent_pid:  # started by a forkserver: never fork()-ed by a thread
        with contextlib.suppress(OSError, AttributeError):  # not Linux, or no libc found
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            while True:
                parent_alive.recv_bytes()
        os._exit(1)  # the pack is gone: nobody will read what this worker produces

    threading.Thread(target=watch, name="bale-parent-watch", daemon=True).start()


def _worker_read(start: int, stop: int) -> SourceBatch:
    if _worker_source is None:
        raise RuntimeError("internal error: worker has no source")
    return _worker_source.read(start, stop)


def _worker_take(rows: np.ndarray) -> SourceBatch:
    if _worker_source is None:
        raise RuntimeError("internal error: worker has no source")
    return _worker_source.take(rows)


def _can_pickle(source: RowSource) -> bool:
    try:
        pickle.dumps(source)
    except Exception as exc:  # pickle raises TypeError, AttributeError, PicklingError...
        log.info("reading %s in this process: it cannot be pickled (%s)", source.path, exc)
        return False
    return True


class BatchReader:
    """Source batches in order: read here, or by worker processes with bounded work in flight.

    With ``adaptive`` (workers not chosen by the caller), the first batch is read here and
    workers start only if it took a while and came slower than ``_FAST_SOURCE``: reading
    memory-mapped arrays in other processes would only add copying, and skipping workers spares
    such sources the rules of multiprocessing (a main module guarded by
    ``if __name__ == "__main__"``).
    """

    def __init__(self, source: RowSource, workers: int, *, adaptive: bool) -> None:
        self.source = source
        self._workers = workers if workers > 1 and source.picklable else 1
        self._adaptive = adaptive
        self._pool: ProcessPoolExecutor | None = None
        self._alive: tuple[Connection, Connection] | None = None  # (read, write) ends
        self._decided = False
        self.in_flight = 2 * self._workers if self._workers > 1 else 1

    def read(self, ranges: Iterable[tuple[int, int]]) -> Iterator[SourceBatch]:
        return self._run(((_worker_read, (a, b)) for a, b in ranges))

    def take(self, chunks: Iterable[np.ndarray]) -> Iterator[SourceBatch]:
        return self._run((_worker_take, (rows,)) for rows in chunks)

    def _run(self, tasks: Iterator[tuple[Any, tuple[Any, ...]]]) -> Iterator[SourceBatch]:
        if not self._decided:
            first = next(tasks, None)
            if first is None:
                return
            started = time.perf_counter()
            batch = self._here(*first)
            seconds = time.perf_counter() - started
            yield batch
            self._decided = True
            slow = seconds > _QUICK_TASK and batch_nbytes(batch.columns) < _FAST_SOURCE * seconds
            if self._workers > 1 and (slow or not self._adaptive):
                self._pool = self._start_pool()
        if self._pool is None:
            for function, args in tasks:
                yield self._here(function, args)
            return
        pool = self._pool
        yield from self._ordered(pool.submit(function, *args) for function, args in tasks)

    def _here(self, function: Any, args: tuple[Any, ...]) -> SourceBatch:
        if function is _worker_take:
            return self.source.take(*args)
        return self.source.read(*args)

    def _start_pool(self) -> ProcessPoolExecutor | None:
        if not _can_pickle(self.source):
            return None
        methods = multiprocessing.get_all_start_methods()
        # Not fork: forking a process with threads (a progress bar's, the caller's) can
        # deadlock the child.
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        # Workers watch the read end; the write end lives only here, closed after they stop.
        # Both stay open until then: the pool starts workers (and sends them the read end) as
        # tasks arrive.
        self._alive = context.Pipe(duplex=False)
        return ProcessPoolExecutor(
            self._workers,
            mp_context=context,
            initializer=_start_worker,
            initargs=(self.source, self._alive[0], os.getpid()),
        )

    def _ordered(self, futures: Iterator[Future[SourceBatch]]) -> Iterator[SourceBatch]:
        pending: deque[Future[SourceBatch]] = deque()
        try:
            for future in futures:
                pending.append(future)
                if len(pending) >= self.in_flight:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BrokenProcessPool as exc:
            raise BaleError(
                "a worker process died while reading. In a script, call bale.pack under "
                '`if __name__ == "__main__":` (worker processes import the main module), or '
                "pass workers=1; a worker may also have run out of memory (fewer workers or a "
                f"smaller memory budget help). ({exc})",
                path=self.source.path,
            ) from exc

    def __enter__(self) -> BatchReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        try:
            self._stop(exc_type)
        finally:
            ends, self._alive = self._alive, None
            for end in ends or ():
                end.close()

    def _stop(self, exc_type: type[BaseException] | None) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if exc_type is None:
            pool.shutdown(wait=True)
            return
        # Stop now, even workers blocked in a read: shutdown() alone would wait for them.
        # ProcessPoolExecutor._processes (pid -> Process) is a CPython internal, the only way to
        # reach the workers; if a release drops it, getattr gives {} and shutdown() still runs.
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(5)
            if process.is_alive():
                process.kill()
