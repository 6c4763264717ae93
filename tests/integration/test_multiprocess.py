"""A Dataset opened in the parent and used in worker processes under every start method."""

from __future__ import annotations

import multiprocessing
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale
from bale._core.dataset import reader_of

N_ROWS = 1200

# Set in each worker by _init_worker: the Dataset as the worker received it (inherited by fork,
# unpickled under spawn and forkserver).
_worker_ds: bale.Dataset | None = None
# The descriptor the parent's Dataset reads through, recorded before the pool starts.
_parent_fd: int | None = None


def make_columns(n: int = N_ROWS) -> dict[str, Any]:
    i = np.arange(n)
    return {
        "x": (i[:, None] * 10 + np.arange(6)[None, :]).astype(np.float32),
        "label": (i % 7).astype(np.int16),
        "name": [f"item {k} " + "\u00df" * (k % 3) for k in range(n)],
        "blob": [k.to_bytes(4, "little") * (k % 5) for k in range(n)],
    }


def _init_worker(ds: bale.Dataset, parent_fd: int) -> None:
    global _worker_ds, _parent_fd
    _worker_ds = ds
    _parent_fd = parent_fd


def _read_chunk(indices: list[int]) -> dict[str, Any]:
    """Top-level so spawn/forkserver workers can unpickle it: the rows' bytes and where read."""
    ds = _worker_ds
    assert ds is not None
    batch = ds.take(indices)
    source = reader_of(ds).source
    return {
        "indices": indices,
        "x": batch["x"].tobytes(),
        "label": batch["label"].tobytes(),
        "name": batch["name"],
        "blob": batch["blob"],
        "row": {
            k: (v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in ds[indices[0]].items()
        },
        "pid": os.getpid(),
        "source_pid": source._pid,
        "fd": source._fd,
        "fd_target": os.readlink(f"/proc/self/fd/{source._fd}"),
        "parent_fd": _parent_fd,
        "verify": ds.verify,
    }


def _read_corrupt(index: int) -> Any:
    assert _worker_ds is not None
    return _worker_ds[index]


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mp") / "mp.bale"
    bale.write(
        path,
        make_columns(),
        codecs={"x": "blosc2", "label": "lz4", "name": "zstd", "blob": "none"},
        row_group_rows=100,
        metadata={"split": "train"},
    )
    return path


def _chunks(n: int, size: int) -> list[list[int]]:
    # A fixed shuffled order, so each chunk spans several row groups.
    order = np.random.default_rng(3).permutation(n).tolist()
    return [order[i : i + size] for i in range(0, n, size)]


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_workers_read_every_row_exactly_once(dataset_path: Path, method: str) -> None:
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"start method {method} not available")
    # cache_bytes=0: every read goes to the file, so a forked worker must use its descriptor.
    ds = bale.open(dataset_path, cache_bytes=0, verify=True)
    reference = ds.read()  # single-process read; also uses the parent's descriptor
    parent_fd = reader_of(ds).source._fd
    assert parent_fd is not None and reader_of(ds).source._pid == os.getpid()
    chunks = _chunks(len(ds), 97)
    context = multiprocessing.get_context(method)
    with context.Pool(2, initializer=_init_worker, initargs=(ds, parent_fd)) as pool:
        results = pool.map(_read_chunk, chunks, chunksize=1)
    ds.close()

    seen = np.concatenate([np.asarray(r["indices"]) for r in results])
    assert np.array_equal(np.sort(seen), np.arange(N_ROWS))  # every row exactly once
    for r in results:
        idx = r["indices"]
        assert r["x"] == reference["x"][idx].tobytes()
        assert r["label"] == reference["label"][idx].tobytes()
        assert r["name"] == [reference["name"][i] for i in idx]
        assert r["blob"] == [reference["blob"][i] for i in idx]
        first = idx[0]
        assert r["row"]["x"] == reference["x"][first].tobytes()
        assert r["row"]["name"] == reference["name"][first]
        assert r["verify"] is True
        assert r["pid"] != os.getpid()
        # Each worker reads through a descriptor it opened itself, on the same file.
        assert r["source_pid"] == r["pid"]
        assert r["fd"] != r["parent_fd"] or method != "fork"
        assert r["fd_target"] == os.fspath(dataset_path.resolve())


def test_forked_child_reopens_its_own_descriptor(dataset_path: Path) -> None:
    """After fork the inherited descriptor is shared with the parent; the child must not use it
    (a parent closing it would break the child), so it reopens on first use."""
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork")
    ds = bale.open(dataset_path, cache_bytes=0)
    np.asarray(ds["label"][:10])
    parent_fd = reader_of(ds).source._fd
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report (fd, pid, ok) through the pipe, then exit without cleanup
        status = 1
        try:
            os.close(read_fd)
            row = ds[1150]
            ok = row["name"] == make_columns()["name"][1150] and int(row["label"]) == 1150 % 7
            message = (
                f"{reader_of(ds).source._fd} {reader_of(ds).source._pid} {os.getpid()} {int(ok)}"
            )
            os.write(write_fd, message.encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        child_fd, source_pid, child_pid, ok = (int(v) for v in pipe.read().split())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert ok == 1
    assert source_pid == child_pid == pid
    assert child_fd != parent_fd
    # The parent's descriptor is still its own and still works.
    assert reader_of(ds).source._fd == parent_fd and reader_of(ds).source._pid == os.getpid()
    assert ds["label"][1150] == 1150 % 7
    ds.close()


def test_pickled_dataset_round_trips(dataset_path: Path) -> None:
    with bale.open(dataset_path, verify=False, cache_bytes=1 << 20) as ds:
        np.asarray(ds["x"][:5])
        blob = pickle.dumps(ds)
        clone = pickle.loads(blob)
    # Only the path and options travel; the index is re-read from the file.
    assert len(blob) < 1000
    with clone:
        assert clone.path == os.fspath(dataset_path)
        assert clone.verify is False
        assert clone.cache_bytes == 1 << 20
        assert len(clone) == N_ROWS
        assert clone.metadata == {"split": "train"}
        assert clone.schema.describe() == {
            "x": "float32[6]",
            "label": "int16",
            "name": "string",
            "blob": "bytes",
        }
        expected = make_columns()
        got = clone.read()
        np.testing.assert_array_equal(got["x"], expected["x"])
        np.testing.assert_array_equal(got["label"], expected["label"])
        assert got["name"] == expected["name"]
        assert got["blob"] == expected["blob"]
        assert reader_of(clone).source._pid == os.getpid()


def test_corrupt_file_error_crosses_process_boundary(tmp_path: Path, dataset_path: Path) -> None:
    damaged = tmp_path / "damaged.bale"
    damaged.write_bytes(dataset_path.read_bytes())
    with bale.open(damaged) as ds:
        record = ds.index.blocks[3, ds.schema.index("name")]
    with damaged.open("r+b") as f:
        f.seek(int(record["offset"]) + 2)
        byte = f.read(1)
        f.seek(int(record["offset"]) + 2)
        f.write(bytes([byte[0] ^ 0x40]))
    ds = bale.open(damaged)
    context = multiprocessing.get_context("spawn")
    with (
        context.Pool(1, initializer=_init_worker, initargs=(ds, -1)) as pool,
        pytest.raises(bale.CorruptFileError) as info,
    ):
        pool.map(_read_corrupt, [350])
    ds.close()
    assert info.value.path == os.fspath(damaged)
    assert info.value.column == "name"
    assert info.value.rows == (300, 400)
