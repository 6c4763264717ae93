"""Reading a pack's source on a dask.distributed cluster: the client (connected here or given),
the source scattered to the workers once, read tasks submitted as futures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bale.errors import BaleError
from bale.importers.base import RowSource, SourceBatch
from bale.ops.pack._cluster import (
    ClusterReader,
    check_picklable,
    check_probes,
    probe_paths,
    source_paths,
)

if TYPE_CHECKING:
    from distributed import Client, Future

_INSTALL_HINT = "packing on a Dask cluster needs dask.distributed: pip install 'dask[distributed]'"


class DaskReader(ClusterReader["Future[SourceBatch]"]):
    """Source batches read by the workers of a dask.distributed cluster, in order.

    ``scheduler`` is a scheduler address (``tcp://host:8786``; this reader connects and closes
    its client, waiting at most dask's ``distributed.comm.timeouts.connect``) or a ``Client``
    the caller owns (used as it is, left open). Up to two tasks per worker thread are in flight.
    A worker lost mid-task is the scheduler's to handle: it runs the task again elsewhere.
    """

    def __init__(self, source: RowSource, scheduler: str | Client) -> None:
        check_picklable(source)
        try:
            import dask.config
            from dask.utils import parse_timedelta
            from distributed import Client
        except ImportError as exc:
            raise ImportError(_INSTALL_HINT) from exc
        timeout = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), "s")
        self._own = isinstance(scheduler, str)
        client: Any  # distributed's methods are untyped
        if isinstance(scheduler, str):
            connect: Any = Client
            try:
                client = connect(scheduler, timeout=timeout, set_as_default=False)
            except OSError as exc:
                raise BaleError(
                    f"cannot reach the Dask scheduler at {scheduler}: {exc}. Is it running, and "
                    "is the address right? (the wait is dask's distributed.comm.timeouts.connect, "
                    "e.g. DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=60s)",
                    path=source.path,
                ) from exc
        else:
            client = scheduler
        self._client = client
        self._source: Any = None  # the scattered source's Future
        try:
            try:
                client.wait_for_workers(1, timeout=timeout)
            except TimeoutError as exc:
                raise BaleError(
                    f"the Dask scheduler at {client.scheduler.address} has no workers "
                    f"(waited {timeout:g} s)",
                    path=source.path,
                ) from exc
            paths = source_paths(source)
            if paths:
                check_probes(source, client.run(probe_paths, paths))
            threads = sum(client.nthreads().values())
            super().__init__(source, 2 * threads)
            # Once, to every worker: tasks refer to it instead of carrying it, and a lost worker
            # does not lose the only copy.
            self._source = client.scatter(source, broadcast=True, hash=False)
        except BaseException:
            self.close()
            raise

    def _submit(self, function: Any, args: tuple[Any, ...]) -> Future[SourceBatch]:
        future: Future[SourceBatch] = self._client.submit(function, self._source, *args, pure=False)
        return future

    def _result(self, handle: Future[SourceBatch]) -> SourceBatch:
        from distributed import KilledWorker

        try:
            batch: SourceBatch = handle.result()
        except KilledWorker as exc:
            raise BaleError(
                f"Dask workers kept dying while reading this source ({exc}); a worker may "
                "have run out of memory (a smaller --memory gives smaller tasks)",
                path=self.source.path,
            ) from exc
        return batch

    def _cancel(self, handles: list[Future[SourceBatch]]) -> None:
        self._client.cancel(handles)

    def close(self) -> None:
        source, self._source = self._source, None
        try:
            if source is not None and self._client.status == "running":
                source.release()
        finally:
            if self._own:
                self._client.close()
