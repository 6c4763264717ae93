"""bale.dask.to_bale / from_bale / read_bale_dataframe on a real dask.distributed cluster: two
worker processes on 127.0.0.1, tasks that fail once, a worker killed mid-task, a job interrupted
and run again."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale
from bale.ops.parts import PartSet
from bale.ops.verify import verify

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
db = pytest.importorskip("dask.bag")
dd = pytest.importorskip("dask.dataframe")
pd = pytest.importorskip("pandas")
distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

from bale.dask import from_bale, read_bale_dataframe, to_bale  # noqa: E402
from tests.cluster_helpers import close_cluster  # noqa: E402

pytestmark = pytest.mark.slow

ROWS = 600
PARTITIONS = 6
#: Every wait on the cluster is bounded by this many seconds.
BOUND = 60


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    # The workers unpickle this module's task functions by value: they cannot import tests/.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        # No dashboard, but the scheduler still serves HTTP (metrics): on a free port, not
        # on 8787, which another cluster on the machine may hold.
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        host="127.0.0.1",
        silence_logs=logging.CRITICAL,  # a killed worker is the point of one test
    )
    client = distributed.Client(cluster, timeout=BOUND)
    try:
        client.wait_for_workers(2, timeout=BOUND)
        yield client
    finally:
        close_cluster(client, cluster, timeout=BOUND)
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(autouse=True)
def idle_cluster(client: Any) -> Iterator[None]:
    """Each test starts on the cluster with both workers up and no task left over."""
    client.wait_for_workers(2, timeout=BOUND)
    yield
    _wait_idle(client)


def _wait_idle(client: Any) -> None:
    deadline = time.monotonic() + BOUND
    while any(client.processing().values()):
        if time.monotonic() > deadline:
            raise TimeoutError("the cluster still runs tasks of a finished test")
        time.sleep(0.05)


# -- rows ---------------------------------------------------------------------------------------


def rows_of(numbers: Any) -> list[dict[str, Any]]:
    """Row ``i`` of every column kind, the same whoever computes it."""
    out = []
    for i in numbers:
        rng = np.random.default_rng(int(i))
        out.append(
            {
                "image": rng.integers(0, 255, (8, 8, 3), dtype=np.uint8),
                "embedding": rng.standard_normal(4).astype(np.float32),
                "half": rng.standard_normal((2, 2)).astype(np.float16),
                "coords": rng.integers(-(2**40), 2**40, 3, dtype=np.int64),
                "label": int(i) % 10,
                "score": float(i) / 7,
                "jpeg": rng.bytes(int(i) % 50),
                "name": f"row-{i}-" + "é" * (int(i) % 3),
            }
        )
    return out


def as_batch(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        name: [r[name] for r in rows]
        if isinstance(rows[0][name], (bytes, str))
        else np.stack([np.asarray(r[name]) for r in rows])
        for name in rows[0]
    }


def reference(tmp_path: Path, rows: list[dict[str, Any]], **writer_kwargs: Any) -> Path:
    """The file one process makes from the same rows with bale.Writer."""
    path = tmp_path / f"reference-{uuid.uuid4().hex}.bale"
    with bale.Writer(path, **writer_kwargs) as writer:
        writer.write(as_batch(rows))
    return path


def assert_same_rows(merged: Path | str, expected: Path | str) -> None:
    got, want = bale.open(merged), bale.open(expected)
    assert got.schema.describe() == want.schema.describe()
    assert len(got) == len(want)
    for name, values in want.read().items():
        if isinstance(values, np.ndarray):
            np.testing.assert_array_equal(got[name][:], values)
            assert got[name][:].tobytes() == values.tobytes()  # NaN, -0.0 and all
        else:
            assert got.read()[name] == values, name
    assert verify(merged).ok


def bag_of_rows(npartitions: int = PARTITIONS, rows: int = ROWS) -> Any:
    return db.from_sequence(range(rows), npartitions=npartitions).map_partitions(rows_of)


# -- round trips --------------------------------------------------------------------------------


def test_every_column_kind_from_a_bag(client: Any, tmp_path: Path) -> None:
    target = tmp_path / "bag.bale"
    report = to_bale(bag_of_rows(), target)
    assert report.rows == ROWS and len(report.sources) == PARTITIONS
    assert not Path(f"{target}.parts").exists()  # the parts are gone once merged
    assert_same_rows(target, reference(tmp_path, rows_of(range(ROWS))))
    # and back, through the cluster
    images = np.stack([r["image"] for r in rows_of(range(ROWS))])
    np.testing.assert_array_equal(from_bale(target, "image", chunks=100).compute(), images)
    frame = read_bale_dataframe(target, ["label", "score", "name", "jpeg"])
    assert frame.npartitions == 1 and frame.divisions == (0, ROWS - 1)
    table = frame.compute()
    assert table["label"].tolist() == [i % 10 for i in range(ROWS)]
    assert table["name"].tolist() == [r["name"] for r in rows_of(range(ROWS))]
    assert table["jpeg"].tolist() == [r["jpeg"] for r in rows_of(range(ROWS))]


def test_a_dict_of_arrays_and_a_dataframe(client: Any, tmp_path: Path) -> None:
    rows = rows_of(range(ROWS))
    batch = as_batch(rows)
    arrays = {
        "image": da.from_array(batch["image"], chunks=(128, 8, 4, 3)),  # rechunked to whole rows
        "embedding": da.from_array(batch["embedding"], chunks=(50, 4)),  # aligned to the image's
        "label": da.from_array(batch["label"], chunks=200),
    }
    to_bale(arrays, tmp_path / "arrays.bale", codecs={"image": "zstd:3"})
    fields = ("image", "embedding", "label")
    expected = reference(
        tmp_path, [{k: r[k] for k in fields} for r in rows], codecs={"image": "zstd:3"}
    )
    assert_same_rows(tmp_path / "arrays.bale", expected)
    assert bale.open(tmp_path / "arrays.bale").row_group_sizes == (128, 128, 128, 128, 88)

    table = pd.DataFrame({k: batch[k] for k in ("label", "score", "name")})
    to_bale(dd.from_pandas(table, npartitions=4), tmp_path / "table.bale")
    fields = ("label", "score", "name")
    assert_same_rows(
        tmp_path / "table.bale", reference(tmp_path, [{k: r[k] for k in fields} for r in rows])
    )
    back = read_bale_dataframe(tmp_path / "table.bale").compute()
    pd.testing.assert_frame_equal(back, table, check_dtype=False)


def test_the_same_bytes_whatever_the_workers(client: Any, tmp_path: Path) -> None:
    x = da.from_array(np.stack([r["half"] for r in rows_of(range(ROWS))]), chunks=(70, 2, 2))
    to_bale(x, tmp_path / "two.bale", column="half", random_access=True, segment_bytes=4096)
    with dask.config.set(scheduler="sync"):  # one process, partitions in graph order
        to_bale(x, tmp_path / "one.bale", column="half", random_access=True, segment_bytes=4096)
    to_bale(bag_of_rows(npartitions=9), tmp_path / "bag-two.bale")
    with dask.config.set(scheduler="sync"):
        to_bale(bag_of_rows(npartitions=9), tmp_path / "bag-one.bale")
    assert (tmp_path / "two.bale").read_bytes() == (tmp_path / "one.bale").read_bytes()
    assert (tmp_path / "bag-two.bale").read_bytes() == (tmp_path / "bag-one.bale").read_bytes()
    assert verify(tmp_path / "two.bale").ok


# -- failures -----------------------------------------------------------------------------------


def _fail_once(flag: str, action: str, numbers: list[int]) -> list[dict[str, Any]]:
    """The first attempt at the partition holding row 0 fails (raises, or kills its worker
    process); the flag file, removed first, makes the retry succeed."""
    if numbers and numbers[0] == 0:
        try:
            os.remove(flag)
        except FileNotFoundError:
            return rows_of(numbers)
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError("a task failing once")
    return rows_of(numbers)


def numbers_bag() -> Any:
    return db.from_sequence(range(ROWS), npartitions=PARTITIONS)


@pytest.mark.parametrize("action", ["raise", "kill"])
def test_a_failed_task_is_retried_and_rows_appear_once(
    client: Any, tmp_path: Path, action: str
) -> None:
    flag = tmp_path / "fail-once"
    flag.touch()
    pids = set(client.run(os.getpid).values())
    bag = numbers_bag().map_partitions(lambda n: _fail_once(str(flag), action, n))
    report = to_bale(bag, tmp_path / "out.bale", retries=2)
    assert not flag.exists()  # the failure did happen
    assert report.rows == ROWS
    assert_same_rows(tmp_path / "out.bale", reference(tmp_path, rows_of(range(ROWS))))
    if action == "kill":
        client.wait_for_workers(2, timeout=BOUND)  # the nanny restarted it
        assert set(client.run(os.getpid).values()) != pids


def test_without_retries_the_failure_reaches_the_client(client: Any, tmp_path: Path) -> None:
    flag = tmp_path / "fail-once"
    flag.touch()
    bag = numbers_bag().map_partitions(lambda n: _fail_once(str(flag), "raise", n))
    with pytest.raises(RuntimeError, match="failing once"):
        to_bale(bag, tmp_path / "out.bale", retries=0)
    assert not (tmp_path / "out.bale").exists()


def _interruptible(calls: str, target: str, stop: str, numbers: list[int]) -> list[dict[str, Any]]:
    """Records each call; while ``stop`` exists, the last partition waits (bounded) for the
    first three parts to be complete, then raises: a job interrupted with parts written."""
    Path(calls, f"{numbers[0]}-{uuid.uuid4().hex}").touch()
    if numbers[-1] == ROWS - 1 and os.path.exists(stop):
        parts, deadline = PartSet(target), time.monotonic() + BOUND
        while not all(parts.is_complete(i) for i in range(3)) and time.monotonic() < deadline:
            time.sleep(0.05)
        raise RuntimeError("the job is interrupted")
    return rows_of(numbers)


def test_an_interrupted_job_resumes_from_its_finished_parts(client: Any, tmp_path: Path) -> None:
    target, calls, stop = tmp_path / "out.bale", tmp_path / "calls", tmp_path / "stop"
    calls.mkdir()
    stop.touch()

    def job() -> Any:
        bag = numbers_bag()
        bag = bag.map_partitions(lambda n: _interruptible(str(calls), str(target), str(stop), n))
        return to_bale(bag, target, retries=0)

    with pytest.raises(RuntimeError, match="interrupted"):
        job()
    _wait_idle(client)  # tasks already running when the job failed have finished
    assert not target.exists()
    finished = PartSet(target).completed()
    assert {0, 1, 2} <= set(finished) and PARTITIONS - 1 not in finished
    stamps = {i: os.stat(info.path).st_mtime_ns for i, info in finished.items()}
    first_calls = len(list(calls.iterdir()))
    stop.unlink()
    parts = PartSet(target)
    kept = {i: os.stat(parts.part_path(i)).st_ino for i in finished}
    report = to_bale(
        numbers_bag().map_partitions(
            lambda n: _interruptible(str(calls), str(target), str(stop), n)
        ),
        target,
        compute=False,
    )
    # Before running it: the finished parts are still the files the first run wrote.
    assert {i: os.stat(parts.part_path(i)).st_ino for i in finished} == kept
    assert {i: os.stat(parts.part_path(i)).st_mtime_ns for i in finished} == stamps
    assert report.compute().rows == ROWS
    rerun = len(list(calls.iterdir())) - first_calls
    assert rerun == PARTITIONS - len(finished)  # only the unfinished partitions ran again
    assert_same_rows(target, reference(tmp_path, rows_of(range(ROWS))))


def test_bad_rows_name_the_partition_and_column(client: Any, tmp_path: Path) -> None:
    bag = numbers_bag().map_partitions(_ragged)
    with pytest.raises(bale.SchemaError, match=r"partition 2, its row 3.*ragged") as caught:
        to_bale(bag, tmp_path / "out.bale", retries=0)
    assert caught.value.column == "embedding"
    assert not (tmp_path / "out.bale").exists()


def _ragged(numbers: list[int]) -> list[dict[str, Any]]:
    """Row 3 of partition 2 (rows 200..299) has an embedding of 5 values, not 4."""
    rows = rows_of(numbers)
    if numbers and numbers[0] == 200:
        rows[3] = {**rows[3], "embedding": np.zeros(5, np.float32)}
    return rows


# -- the bcolz.eval / numexpr use: statistics out of core -------------------------------------


def test_per_channel_mean_and_std_out_of_core(client: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (2048, 16, 16, 3), dtype=np.uint8)
    images[..., 1] //= 2  # channels that differ
    path = tmp_path / "images.bale"
    with bale.Writer(path, row_group_rows=128, codecs={"image": "zstd"}) as writer:
        writer.write({"image": images})
    with dask.config.set({"array.chunk-size": "192KiB"}):  # 256 images: 8 chunks
        x = from_bale(path, "image")
    assert len(x.chunks[0]) == 8
    pixels = x.astype(np.float64)
    mean, std = dask.compute(pixels.mean(axis=(0, 1, 2)), pixels.std(axis=(0, 1, 2)))
    as_float = images.astype(np.float64)
    np.testing.assert_allclose(mean, as_float.mean(axis=(0, 1, 2)), rtol=1e-9)
    np.testing.assert_allclose(std, as_float.std(axis=(0, 1, 2)), rtol=1e-9)
