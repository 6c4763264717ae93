"""Reading a pack's source on a cluster (Dask or Ray): what both engines share — the tasks run
on workers, results in order with bounded work in flight, the up-front check that workers see
the source, and cancelling everything on an error or Ctrl-C.

The engine-specific parts are ``_dask.DaskReader`` and ``_ray.RayReader``; each sends the source
to the cluster once (``Client.scatter`` / ``ray.put``) and submits ``read_rows`` / ``take_rows``
tasks that refer to it.
"""

from __future__ import annotations

import abc
import os
import pickle
import socket
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

import numpy as np

from bale.errors import BaleError
from bale.importers.base import RowSource, SourceBatch
from bale.importers.image_files import ImageFilesSource
from bale.io.remote_url import is_remote

Handle = TypeVar("Handle")  # what the engine gives back for a submitted task (Future, ObjectRef)

#: Workers whose missing paths an error lists by name.
_SHOWN_WORKERS = 3


def read_rows(source: RowSource, start: int, stop: int) -> SourceBatch:
    """The task run on a worker: ``source.read(start, stop)``."""
    return source.read(start, stop)


def take_rows(source: RowSource, rows: np.ndarray) -> SourceBatch:
    """The task run on a worker: ``source.take(rows)``."""
    return source.take(rows)


def probe_paths(paths: list[str]) -> tuple[str, str, list[str]]:
    """Run on a worker: (its host name, its working folder, the ``paths`` it cannot see)."""
    return socket.gethostname(), os.getcwd(), [p for p in paths if not os.path.exists(p)]


def source_paths(source: RowSource) -> list[str]:
    """The local paths a worker must see to read ``source`` (none for URLs): the source itself
    and, for a manifest, the folder its image paths are relative to."""
    paths = [source.path]
    if isinstance(source, ImageFilesSource):
        paths.append(source.root)
    return list(dict.fromkeys(p for p in paths if p and not is_remote(p)))


def check_probes(source: RowSource, probes: dict[str, tuple[str, str, list[str]]]) -> None:
    """A BaleError naming the workers (``probes``: worker -> ``probe_paths`` result) that cannot
    see the source, and what to do about it; nothing when every worker sees it."""
    blind = {worker: probe for worker, probe in probes.items() if probe[2]}
    if not blind:
        return
    shown = []
    for worker, (host, cwd, missing) in list(blind.items())[:_SHOWN_WORKERS]:
        shown.append(
            f"{', '.join(repr(p) for p in missing)} on {host} ({worker}, working folder {cwd})"
        )
    more = (
        f" and {len(blind) - _SHOWN_WORKERS} more worker(s)" if len(blind) > _SHOWN_WORKERS else ""
    )
    relative = any(not os.path.isabs(p) for _, _, missing in blind.values() for p in missing)
    raise BaleError(
        f"cluster workers cannot see the source: no {'; no '.join(shown)}{more} "
        f"({len(blind)} of {len(probes)} worker(s)). Workers read the source themselves: put it "
        "on a file system every worker mounts at the same path, or give a URL"
        + (
            "; a relative path is looked up in each worker's working folder: give an absolute one"
            if relative
            else ""
        ),
        path=source.path,
    )


def check_picklable(source: RowSource) -> None:
    """A BaleError when ``source`` cannot be sent to cluster workers."""
    reason = "it says it cannot be sent to other processes" if not source.picklable else ""
    if not reason:
        try:
            pickle.dumps(source)
        except Exception as exc:  # pickle raises TypeError, AttributeError, PicklingError...
            reason = f"it cannot be pickled ({exc})"
    if reason:
        raise BaleError(
            f"a {type(source).__name__} cannot be read on a cluster: {reason}; pack it "
            "without scheduler= (--scheduler, --ray)",
            path=source.path,
        )


class ClusterReader(abc.ABC, Generic[Handle]):
    """Source batches in order, read by cluster tasks: at most ``in_flight`` submitted and not
    yet handed over (memory stays bounded as with local workers); on an error or interrupt the
    tasks still pending are cancelled and the source released."""

    def __init__(self, source: RowSource, in_flight: int) -> None:
        self.source = source
        self.in_flight = max(1, in_flight)
        self._pending: deque[Handle] = deque()

    def read(self, ranges: Iterable[tuple[int, int]]) -> Iterator[SourceBatch]:
        return self._ordered((read_rows, (a, b)) for a, b in ranges)

    def take(self, chunks: Iterable[np.ndarray]) -> Iterator[SourceBatch]:
        return self._ordered((take_rows, (rows,)) for rows in chunks)

    def _ordered(self, tasks: Iterator[tuple[Any, tuple[Any, ...]]]) -> Iterator[SourceBatch]:
        pending = self._pending
        try:
            for function, args in tasks:
                pending.append(self._submit(function, args))
                if len(pending) >= self.in_flight:
                    yield self._next()
            while pending:
                yield self._next()
        finally:  # a consumer that stops early (an error while writing) leaves nothing running
            self._cancel_pending()

    def _next(self) -> SourceBatch:
        # Left in the queue while waiting: an interrupt now cancels it with the others.
        batch = self._result(self._pending[0])
        self._pending.popleft()
        return batch

    def _cancel_pending(self) -> None:
        handles = list(self._pending)
        self._pending.clear()
        if handles:
            self._cancel(handles)

    @abc.abstractmethod
    def _submit(self, function: Any, args: tuple[Any, ...]) -> Handle:
        """Start ``function(source, *args)`` on the cluster."""

    @abc.abstractmethod
    def _result(self, handle: Handle) -> SourceBatch:
        """Wait for a task; raise its error as the source raised it."""

    @abc.abstractmethod
    def _cancel(self, handles: list[Handle]) -> None:
        """Cancel tasks not collected (after an error or Ctrl-C)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the source on the cluster and what this reader connected or started."""

    def __enter__(self) -> ClusterReader[Handle]:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._cancel_pending()
        finally:
            self.close()
