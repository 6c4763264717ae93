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
from bale.ops.repair import repair

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


# -- item 4: rows of dropped writers ---------------------------------------------------------


def test_dropped_writer_keeps_its_buffered_rows_in_the_partial(tmp_path: Path) -> None:
    path = tmp_path / "d.bale"
    writer = bale.Writer(path)
    writer.write({"x": np.arange(10), "s": [f"row {i}" for i in range(10)]})
    with pytest.warns(ResourceWarning, match=r"not closed.*10 rows.*d\.bale\.partial.*repair"):
        del writer
        gc.collect()
    assert not path.exists()  # never published implicitly
    assert open_descriptors(Path(f"{path}.partial")) == 0  # the lock is released
    with bale.open(f"{path}.partial") as ds:  # complete and readable, buffered rows included
        assert ds.read()["x"].tolist() == list(range(10))
        assert ds[9]["s"] == "row 9"
    report = repair(path)
    assert report.rows == 10
    with bale.open(path) as ds:
        assert len(ds) == 10


def test_dropped_writer_keeps_complete_groups_and_buffered_rows(tmp_path: Path) -> None:
    path = tmp_path / "d.bale"
    writer = bale.Writer(path, row_group_rows=4, threads=2)
    writer.write({"x": np.arange(10), "y": np.ones(10)})  # two groups written, two rows buffered
    with pytest.warns(ResourceWarning, match="10 rows"):
        del writer
        gc.collect()
    with bale.open(f"{path}.partial") as ds:
        assert ds.row_group_sizes == (4, 4, 2)
        assert ds.read()["x"].tolist() == list(range(10))


def test_dropped_appending_writer_keeps_the_rows_in_place(small: Path) -> None:
    writer = bale.Writer(small, mode="a")
    writer.write({"x": np.arange(1000, 1003), "y": np.zeros(3)})
    with pytest.warns(ResourceWarning, match="1003 rows in all are kept in place"):
        del writer
        gc.collect()
    with bale.open(small) as ds:
        assert len(ds) == 1003 and ds[1002]["x"] == 1002


def test_dropped_writer_with_nothing_written_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.bale"
    writer = bale.Writer(path)
    with pytest.warns(ResourceWarning, match="no rows were written and no file was kept"):
        del writer
        gc.collect()
    assert sorted(os.listdir(tmp_path)) == []


def test_closed_or_with_block_writers_do_not_warn(tmp_path: Path) -> None:
    # filterwarnings=error turns a ResourceWarning from __del__ into an unraisable error here.
    writer = bale.Writer(tmp_path / "a.bale")
    writer.write({"x": np.arange(3)})
    writer.close()
    del writer
    aborted = bale.Writer(tmp_path / "b.bale")
    aborted.write({"x": np.arange(3)})
    aborted.abort()
    del aborted
    with pytest.raises(RuntimeError), bale.Writer(tmp_path / "c.bale") as w:
        w.write({"x": np.arange(5)})
        raise RuntimeError("inside with: aborted as before")
    del w
    gc.collect()
    with bale.open(tmp_path / "c.bale.partial") as ds:
        assert len(ds) == 5
    assert not (tmp_path / "c.bale").exists()


def test_writer_open_at_interpreter_exit_is_aborted_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "exit.bale"
    script = textwrap.dedent(
        f"""
        import numpy as np, bale
        w = bale.Writer({str(path)!r})
        w.write({{"x": np.arange(7)}})
        keep = [w]  # referenced until the interpreter exits
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "ResourceWarning" in done.stderr and "7 rows" in done.stderr
    with bale.open(f"{path}.partial") as ds:
        assert ds.read()["x"].tolist() == list(range(7))


def test_forked_child_leaves_the_parents_writer_alone(tmp_path: Path) -> None:
    # A forked child (a DataLoader worker) holds a copy of the parent's open writer: neither
    # the collector (``__del__``) nor the exit hook in the child may finish the parent's file.
    path = tmp_path / "forked.bale"
    script = textwrap.dedent(
        f"""
        import os, sys, numpy as np, bale
        path = {str(path)!r}
        w = bale.Writer(path, row_group_rows=4)
        w.write({{"x": np.arange(6)}})  # one group on disk, two rows buffered
        size = os.path.getsize(path + ".partial")
        pid = os.fork()
        if pid == 0:
            w.__del__()  # what the collector calls in the child
            sys.exit(0)  # and the exit hook runs there too
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert os.path.getsize(path + ".partial") == size, "the child wrote into the file"
        w.write({{"x": np.arange(6, 9)}})
        w.close()
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "ResourceWarning" not in done.stderr
    with bale.open(path) as ds:
        assert ds.read()["x"].tolist() == list(range(9))


def test_a_refused_first_batch_leaves_no_partial_to_repair(tmp_path: Path) -> None:
    """A `with Writer(...)` whose first batch is refused accepted no row: it leaves no
    NAME.partial, so the next run writes instead of being told to run `bale repair`."""
    target = tmp_path / "d.bale"
    schema = {"x": bale.Array("float32", ())}
    with pytest.raises(bale.SchemaError), bale.Writer(target, schema) as writer:
        writer.write({"x": np.array(["not a number"])})
    assert not (tmp_path / "d.bale.partial").exists()
    with bale.Writer(target, schema) as writer:
        writer.write({"x": np.ones(3, np.float32)})
    assert len(bale.open(target)) == 3


def test_an_aborted_writer_with_rows_still_keeps_them(tmp_path: Path) -> None:
    target = tmp_path / "d.bale"
    with pytest.raises(RuntimeError), bale.Writer(target) as writer:
        writer.write({"x": np.ones(3, np.float32)})
        raise RuntimeError("the training loop failed")
    assert (tmp_path / "d.bale.partial").exists()
