"""What Datasets, Loaders and Writers release or keep when dropped without ``close()``: the
descriptor of a collected Dataset or Loader, the rows of a collected or exit-time Writer
(issue 14, items 3 and 4)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import bale

pytestmark = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="counts descriptors through /proc/self/fd"
)


def open_descriptors(path: Path) -> int:
    """This process's descriptors open on ``path``."""
    target = os.path.realpath(path)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                count += 1
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
    return count


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small.bale"
    bale.write(path, {"x": np.arange(1000), "y": np.arange(1000.0)}, row_group_rows=100)
    return path


# -- item 3: descriptors of dropped readers -------------------------------------------------


def test_dropped_datasets_release_their_descriptors(small: Path) -> None:
    for _ in range(500):  # the README's one-liner, never closed
        assert bale.open(small)[3]["x"] == 3
    assert open_descriptors(small) == 0


def test_dataset_in_a_cycle_is_released_by_the_collector(small: Path) -> None:
    ds = bale.open(small)
    ds.self_reference = ds  # type: ignore[attr-defined]
    assert ds[5]["x"] == 5 and open_descriptors(small) == 1
    del ds
    gc.collect()
    assert open_descriptors(small) == 0


def test_closed_dataset_and_context_manager_release_their_descriptors(small: Path) -> None:
    with bale.open(small) as ds:
        assert open_descriptors(small) == 1
        ds[:10]
    assert open_descriptors(small) == 0
    reopened = bale.open(small)
    reopened.close()
    assert open_descriptors(small) == 0


def test_loader_broken_out_of_and_dropped_releases_files_and_threads(small: Path) -> None:
    before = set(threading.enumerate())
    loader = bale.Loader(small, batch_size=10, num_threads=2, seed=0)
    for _batch in loader:
        break
    assert open_descriptors(small) == 1
    del loader, _batch
    gc.collect()
    assert open_descriptors(small) == 0
    # The pool's threads end on their own once the pool is collected (bounded wait).
    deadline = time.monotonic() + 10
    started = [t for t in threading.enumerate() if t not in before]
    while any(t.is_alive() for t in started) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(t.is_alive() for t in started)


def test_loader_context_manager_closes_its_files(small: Path) -> None:
    with bale.Loader(small, batch_size=10, seed=0) as loader:
        for _batch in loader:
            break
        assert open_descriptors(small) == 1
    assert open_descriptors(small) == 0


def test_forked_child_closes_only_its_own_descriptor(small: Path) -> None:
    # A forked DataLoader worker reopens the file for itself; collecting its copy of the
    # Dataset closes that descriptor, and the parent's stays open and usable.
    script = textwrap.dedent(
        f"""
        import gc, os, sys, bale
        path = os.path.realpath({str(small)!r})

        def mine():
            count = 0
            for fd in os.listdir("/proc/self/fd"):
                try:
                    count += os.readlink(f"/proc/self/fd/{{fd}}") == path
                except OSError:
                    pass  # the listing's own descriptor, closed meanwhile
            return count

        holder = [bale.open(path, cache_bytes=0)]
        holder[0][3]
        pid = os.fork()
        if pid == 0:
            holder[0][700]  # another row group: reopens a descriptor of the child's own
            opened = mine()
            holder.clear()
            gc.collect()
            os._exit(0 if (opened, mine()) == (2, 1) else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child kept its descriptor"
        assert holder[0][5]["x"] == 5 and mine() == 1
        holder.clear()
        assert mine() == 0
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
