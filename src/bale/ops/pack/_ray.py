"""Reading a pack's source on a Ray cluster: connecting (or starting a local Ray), the source
put in the object store once, read tasks submitted as remote functions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bale.errors import BaleError
from bale.importers.base import RowSource, SourceBatch
from bale.ops.pack._cluster import (
    ClusterReader,
    check_picklable,
    check_probes,
    probe_paths,
    read_rows,
    source_paths,
    take_rows,
)

if TYPE_CHECKING:
    from ray import ObjectRef

_INSTALL_HINT = "packing on a Ray cluster needs Ray: pip install 'ray'"
_PROBE_SECONDS = 60  # a node that cannot run a tiny task in this time is not usable
_TASK_RETRIES = 3  # runs of a task whose worker died (Ray's default, said out loud)


class RayReader(ClusterReader["ObjectRef[SourceBatch]"]):
    """Source batches read by Ray tasks, in order.

    ``address`` None: the Ray this process is already connected to, else a running cluster
    (``ray.init(address="auto")``), else a local Ray started here (and stopped at the end).
    ``ray://host:10001`` and other addresses go to ``ray.init(address=...)``. Up to two tasks
    per CPU of the cluster are in flight; a task whose worker dies runs again (``max_retries``).
    """

    def __init__(self, source: RowSource, address: str | None) -> None:
        check_picklable(source)
        try:
            import ray as ray_module
        except ImportError as exc:
            raise ImportError(_INSTALL_HINT) from exc
        ray: Any = ray_module  # Ray's functions are untyped
        self._connected = False  # ray.init called here: ray.shutdown at the end
        self._ref: ObjectRef[RowSource] | None = None
        try:
            if not ray.is_initialized():
                self._connect(ray, address, source)
            paths = source_paths(source)
            if paths:
                check_probes(source, _probe_nodes(ray, paths, source))
            cpus = int(ray.cluster_resources().get("CPU", 1))
            super().__init__(source, 2 * max(1, cpus))
            self._ref = ray.put(source)
            options = {"max_retries": _TASK_RETRIES, "retry_exceptions": False}
            self._remote: dict[Any, Any] = {
                read_rows: ray.remote(read_rows).options(**options),
                take_rows: ray.remote(take_rows).options(**options),
            }
        except BaseException:
            self.close()
            raise

    def _connect(self, ray: Any, address: str | None, source: RowSource) -> None:
        self._connected = True
        if address is not None:
            try:
                ray.init(address=address)
            except ConnectionError as exc:
                raise BaleError(
                    f"cannot reach the Ray cluster at {address}: {exc}", path=source.path
                ) from exc
            return
        try:
            ray.init(address="auto")
        except ConnectionError:  # no cluster running: a local one, as ray.init() alone would
            ray.init(include_dashboard=False)

    def _submit(self, function: Any, args: tuple[Any, ...]) -> ObjectRef[SourceBatch]:
        ref: ObjectRef[SourceBatch] = self._remote[function].remote(self._ref, *args)
        return ref

    def _result(self, handle: ObjectRef[SourceBatch]) -> SourceBatch:
        import ray
        from ray.exceptions import RayTaskError

        try:
            batch: SourceBatch = ray.get(handle)
        except RayTaskError as exc:
            # The source's own error, as a local pack raises it (Ray wraps it in a new class).
            cause = exc.cause
            if isinstance(cause, Exception):
                raise cause from exc
            raise
        return batch

    def _cancel(self, handles: list[ObjectRef[SourceBatch]]) -> None:
        import ray

        for handle in handles:
            ray.cancel(handle)

    def close(self) -> None:
        import ray

        self._ref = None
        if self._connected:
            self._connected = False
            ray.shutdown()


def _probe_nodes(
    ray: Any, paths: list[str], source: RowSource
) -> dict[str, tuple[str, str, list[str]]]:
    """``probe_paths`` on every living node with CPUs (the nodes tasks can run on)."""
    from ray.exceptions import GetTimeoutError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(probe_paths)
    refs = {}
    for node in ray.nodes():
        if node.get("Alive") and node.get("Resources", {}).get("CPU", 0) > 0:
            strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            refs[f"node {node.get('NodeManagerAddress', node['NodeID'])}"] = probe.options(
                num_cpus=0, scheduling_strategy=strategy
            ).remote(paths)
    try:
        values = ray.get(list(refs.values()), timeout=_PROBE_SECONDS)
    except GetTimeoutError as exc:
        for ref in refs.values():
            ray.cancel(ref)
        raise BaleError(
            f"the Ray cluster's nodes did not run a small check in {_PROBE_SECONDS} s "
            "(whether they see the source): are they busy, or short of workers?",
            path=source.path,
        ) from exc
    return dict(zip(refs, values, strict=True))
