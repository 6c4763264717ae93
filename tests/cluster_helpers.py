"""Test helpers for dask.distributed clusters: closing one leaves no worker process behind."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any


def close_cluster(client: Any, cluster: Any, timeout: float = 30.0) -> None:
    """Close ``client`` and ``cluster``, then wait (bounded) for their worker processes to exit,
    killing any still alive: a Nanny that restarted a killed worker can leave the new process
    running past ``cluster.close``, and later tests check that no child processes remain."""
    client.close(timeout=timeout)
    cluster.close(timeout=timeout)
    deadline = time.monotonic() + timeout
    for child in multiprocessing.active_children():
        if "Dask" not in child.name:
            continue
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()
            child.join(5)
