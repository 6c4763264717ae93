"""bale.pack on a cluster (scheduler=): a real dask.distributed LocalCluster with 2 worker
processes and a local Ray with 2 CPUs write the same bytes as a local pack, skip the same bad
images, fail clearly when the cluster is unreachable or blind to the source, and leave nothing
behind after an error or Ctrl-C."""

from __future__ import annotations

import contextlib
import errno
import gc
import io
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data as skdata
from PIL import Image

import bale
from bale.cli.main import main
from bale.errors import BaleError
from bale.ops.pack import pack
from tests.cluster_helpers import close_cluster

distributed = pytest.importorskip("distributed")
ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow

PHOTOS = {"cat": "chelsea", "coffee": "coffee", "rocket": "rocket"}
#: Small tasks (a few rows each) so that several are in flight and order matters.
SMALL: dict[str, Any] = {"progress": False, "size": (32, 32), "memory_budget": 256 << 10}


def _image(array: np.ndarray, kind: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format=kind)
    return out.getvalue()


def make_photos(root: Path, per_class: int = 12) -> list[str]:
    """Class folders of real photo crops (JPEG and PNG, several sizes) plus a corrupt and a
    truncated JPEG; returns the bad files' relative paths."""
    for label, name in PHOTOS.items():
        photo = getattr(skdata, name)()
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            crop = photo[i * 7 : i * 7 + 50 + 5 * i, i * 9 : i * 9 + 70 + 3 * i]
            kind = "PNG" if i % 5 == 4 else "JPEG"
            (root / label / f"{i:02d}.{kind.lower()}").write_bytes(_image(crop, kind))
    good = (root / "cat" / "00.jpeg").read_bytes()
    (root / "cat" / "corrupt.jpg").write_bytes(np.random.default_rng(0).bytes(500))
    (root / "rocket" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    return ["cat/corrupt.jpg", "rocket/truncated.jpg"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("photos") / "photos"
    bad = make_photos(root)
    return root, bad


@pytest.fixture(scope="module")
def local_pack(
    photos: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, bale.PackReport]:
    """The reference: the same photos packed on this machine, in this process."""
    out = tmp_path_factory.mktemp("local") / "local.bale"
    report = pack(photos[0], out, seed=5, workers=1, **SMALL)
    return out, report


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        # a port of its own: "None" means dask's default 8787, which another run may hold
        dashboard_address="127.0.0.1:0",
    )
    client = distributed.Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        close_cluster(client, cluster, timeout=30)


@pytest.fixture(scope="module")
def ray_started() -> Iterator[None]:
    if ray.is_initialized():  # another module's Ray: use it as it is
        yield
        return
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(params=["dask", "ray"])
def scheduler(request: pytest.FixtureRequest) -> Any:
    """Each engine in turn: the Dask client, or "ray" once Ray is started."""
    if request.param == "dask":
        return request.getfixturevalue("dask_client")
    request.getfixturevalue("ray_started")
    return "ray"


def _same_file(out: Path, report: bale.PackReport, reference: tuple[Path, bale.PackReport]) -> None:
    path, expected = reference
    assert out.read_bytes() == path.read_bytes()
    assert report.rows == expected.rows == 36
    # The reasons are the decoders' messages, which may name an object's address.
    assert [(s.row, s.where) for s in report.skipped] == [
        (s.row, s.where) for s in expected.skipped
    ]
    assert len(report.skipped) == 2
    assert report.data_bytes == expected.data_bytes
    assert report.file_bytes == expected.file_bytes


# -- the same file as a local pack ------------------------------------------------------------


def test_dask_client_writes_the_local_file(
    dask_client: Any, local_pack: tuple[Path, bale.PackReport], tmp_path: Path
) -> None:
    root = Path(str(local_pack[1].source))
    report = pack(root, tmp_path / "d.bale", seed=5, scheduler=dask_client, **SMALL)
    _same_file(tmp_path / "d.bale", report, local_pack)
    assert sorted(s.where for s in report.skipped) == ["cat/corrupt.jpg", "rocket/truncated.jpg"]
    # The client given is the caller's: still usable, and nothing of the pack is left on it.
    assert dask_client.status == "running"
    _wait_until(lambda: _no_tasks(dask_client))


def test_dask_address_writes_the_local_file(
    dask_client: Any, local_pack: tuple[Path, bale.PackReport], tmp_path: Path
) -> None:
    root = Path(str(local_pack[1].source))
    address = dask_client.scheduler.address
    report = pack(root, tmp_path / "d.bale", seed=5, scheduler=address, **SMALL)
    _same_file(tmp_path / "d.bale", report, local_pack)


def test_ray_writes_the_local_file(
    ray_started: None, local_pack: tuple[Path, bale.PackReport], tmp_path: Path
) -> None:
    root = Path(str(local_pack[1].source))
    report = pack(root, tmp_path / "r.bale", seed=5, scheduler="ray", **SMALL)
    _same_file(tmp_path / "r.bale", report, local_pack)
    assert ray.is_initialized()  # the caller's Ray stays connected


def test_sources_read_in_order_use_the_bucket_shuffle(
    dask_client: Any, ray_started: None, tmp_path: Path
) -> None:
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"] = np.arange(3000 * 16, dtype=np.float32).reshape(3000, 16)
        f["y"] = np.arange(3000, dtype=np.int64)
    options: dict[str, Any] = {"progress": False, "seed": 2, "memory_budget": 64 << 10}
    local = pack(tmp_path / "data.h5", tmp_path / "local.bale", workers=1, **options)
    on_dask = pack(tmp_path / "data.h5", tmp_path / "dask.bale", scheduler=dask_client, **options)
    on_ray = pack(tmp_path / "data.h5", tmp_path / "ray.bale", scheduler="ray", **options)
    reference = (tmp_path / "local.bale").read_bytes()
    assert (tmp_path / "dask.bale").read_bytes() == reference
    assert (tmp_path / "ray.bale").read_bytes() == reference
    assert local.rows == on_dask.rows == on_ray.rows == 3000
    with bale.open(tmp_path / "dask.bale") as ds:
        assert ds.metadata["bale.pack"]["shuffle_method"] == "buckets"


# -- errors: the same as a local pack, nothing left behind -------------------------------------


def test_strict_stops_at_the_bad_image_and_leaves_nothing(
    scheduler: Any,
    photos: tuple[Path, list[str]],
    tmp_path: Path,
) -> None:
    with pytest.raises(BaleError, match=r"cannot read (cat/corrupt\.jpg|rocket/truncated\.jpg)"):
        pack(photos[0], tmp_path / "s.bale", strict=True, scheduler=scheduler, **SMALL)
    assert os.listdir(tmp_path) == []


def test_a_source_error_on_a_worker_is_raised_as_locally(
    scheduler: Any,
    photos: tuple[Path, list[str]],
    tmp_path: Path,
) -> None:
    # Decoded at their own sizes, which differ: an error of the source, raised on a worker.
    options: dict[str, Any] = {"keep_bytes": False, "progress": False, "seed": 1}
    with pytest.raises(BaleError) as local:
        pack(photos[0], tmp_path / "l.bale", workers=1, **options)
    with pytest.raises(BaleError) as remote:
        pack(photos[0], tmp_path / "c.bale", scheduler=scheduler, **options)
    assert type(remote.value) is type(local.value)
    assert remote.value.detail == local.value.detail
    assert "decoded images must all have one size" in str(remote.value)
    assert os.listdir(tmp_path) == []


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path: Path, photos: Any) -> None:
    dask = pytest.importorskip("dask")
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "2s"}),
        pytest.raises(
            BaleError, match=rf"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"
        ),
    ):
        pack(photos[0], tmp_path / "u.bale", scheduler=f"tcp://127.0.0.1:{port}", **SMALL)
    assert time.monotonic() - started < 30  # the configured wait, not dask's default 30 s
    assert os.listdir(tmp_path) == []


def test_workers_that_cannot_see_the_source(
    scheduler: Any,
    photos: tuple[Path, list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A relative path that exists here but not from the workers' working folder.
    monkeypatch.chdir(photos[0].parent)
    with pytest.raises(BaleError) as caught:
        pack("photos", tmp_path / "b.bale", scheduler=scheduler, **SMALL)
    message = str(caught.value)
    assert "cluster workers cannot see the source: no 'photos' on " in message
    assert "give an absolute one" in message
    assert "(2 of 2 worker(s))" in message or "(1 of 1 worker(s))" in message
    assert os.listdir(tmp_path) == []


def test_scheduler_and_workers_are_exclusive(tmp_path: Path, photos: Any) -> None:
    with pytest.raises(ValueError, match="workers= counts local processes"):
        pack(photos[0], tmp_path / "x.bale", workers=2, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(TypeError, match="scheduler must be an address"):
        pack(photos[0], tmp_path / "x.bale", scheduler=3)  # type: ignore[arg-type]


@pytest.mark.skipif(sys.platform != "linux", reason="FIFOs as on Linux")
def test_ctrl_c_cancels_the_tasks_and_leaves_nothing(
    dask_client: Any, photos: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root = tmp_path / "blocking"
    root.mkdir()
    fifo = root / "zz.jpg"  # a read that blocks, on a worker, until the test lets it
    os.mkfifo(fifo)
    files = sorted(p.relative_to(photos[0]).as_posix() for p in photos[0].rglob("*.*"))
    lines = [f"{photos[0] / p},{p[:3]}" for p in files] * 4 + [f"{fifo},zz"]
    (root / "list.csv").write_text("\n".join(["path,label", *lines]) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    opened: list[int] = []
    returned = threading.Event()

    def interrupt_once_blocked() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not returned.is_set():
            try:  # succeeds once a worker opened the FIFO for reading
                opened.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                time.sleep(0.05)
                continue
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does
            break
        # Never a hang: if the pack has not returned, release the blocked worker (it reads an
        # empty file), so the pack ends and the test fails instead of waiting forever.
        if not returned.wait(30):
            while opened:
                os.close(opened.pop())

    # The default Ctrl-C handler, whatever a library loaded by an earlier test installed
    # (PySpark's SparkContext and Ray's DeferSigint replace it).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    thread = threading.Thread(target=interrupt_once_blocked, daemon=True)
    thread.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            pack(root / "list.csv", out / "c.bale", scheduler=dask_client, **SMALL)
    finally:
        returned.set()
        signal.signal(signal.SIGINT, previous)
        thread.join(70)
        while opened:
            os.close(opened.pop())  # the blocked worker reads an empty file and moves on
    assert os.listdir(out) == []
    _wait_until(lambda: _no_tasks(dask_client))


@pytest.mark.skipif(sys.platform != "linux", reason="FIFOs and /proc as on Linux")
def test_a_worker_lost_mid_task_is_retried_and_every_row_is_written_once(
    dask_client: Any, photos: tuple[Path, list[str]], tmp_path: Path
) -> None:
    psutil = pytest.importorskip("psutil")
    root = tmp_path / "lost"
    root.mkdir()
    fifo = root / "zz.jpg"  # the worker reading it blocks there until it is killed
    os.mkfifo(fifo)
    image = (photos[0] / "cat" / "03.jpeg").read_bytes()
    files = sorted(p.relative_to(photos[0]).as_posix() for p in photos[0].rglob("*.*"))
    lines = [f"{photos[0] / p},{p[:3]}" for p in files] + [f"{fifo},zz"]
    (root / "list.csv").write_text("\n".join(["path,label", *lines]) + "\n")
    killed: list[int] = []
    failures: list[BaseException] = []

    def kill_the_reader_then_serve() -> None:
        writer = None
        try:
            writer = _open_when_read(fifo)
            reader = _process_reading(psutil, fifo)
            reader.kill()  # the worker dies mid-task; its nanny starts another
            reader.wait(30)  # gone, FIFO end and all: the next reader is the task run again
            killed.append(reader.pid)
            os.close(writer)
            writer = _open_when_read(fifo)  # the task, run again, opens the FIFO again
            os.write(writer, image)
        except BaseException as exc:  # shown by the test, not lost in the thread
            failures.append(exc)
        finally:
            if writer is not None:
                os.close(writer)  # a reader still waiting reads what it has and goes on

    thread = threading.Thread(target=kill_the_reader_then_serve, daemon=True)
    thread.start()
    try:
        report = pack(root / "list.csv", tmp_path / "c.bale", scheduler=dask_client, **SMALL)
    finally:
        thread.join(90)
    assert not failures, failures
    assert killed
    # The reference: a local pack of the same manifest, the FIFO now a file of the same bytes.
    fifo.unlink()
    fifo.write_bytes(image)
    expected = pack(root / "list.csv", tmp_path / "l.bale", workers=1, **SMALL)
    assert report.rows == expected.rows == 37  # every readable row, once
    assert (tmp_path / "c.bale").read_bytes() == (tmp_path / "l.bale").read_bytes()
    dask_client.wait_for_workers(2, timeout=60)  # the module's cluster whole again


# -- the command -------------------------------------------------------------------------------

#: What the CLI tests pack with, besides the source, the target and where it runs.
CLI_OPTIONS = ["--size", "32", "--seed", "5", "--memory", "1", "--no-progress"]


def _cli_pack(source: Path, out: Path, *where: str) -> int:
    return main(["pack", str(source), str(out), *CLI_OPTIONS, *where])


def test_cli_scheduler(
    dask_client: Any,
    photos: tuple[Path, list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _cli_pack(photos[0], tmp_path / "l.bale", "--workers", "1") == 0
    address = dask_client.scheduler.address
    assert _cli_pack(photos[0], tmp_path / "c.bale", "--scheduler", address) == 0
    printed = capsys.readouterr().out
    assert "packed 36 rows" in printed and "skipped 2 unreadable row(s)" in printed
    assert (tmp_path / "c.bale").read_bytes() == (tmp_path / "l.bale").read_bytes()
    code = _cli_pack(photos[0], tmp_path / "w.bale", "--scheduler", address, "--workers", "2")
    assert code == 2
    assert "workers= counts local processes" in capsys.readouterr().err


def test_cli_ray(
    ray_started: None,
    photos: tuple[Path, list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _cli_pack(photos[0], tmp_path / "l.bale", "--workers", "1") == 0
    assert _cli_pack(photos[0], tmp_path / "r.bale", "--ray") == 0
    assert "packed 36 rows" in capsys.readouterr().out
    assert (tmp_path / "r.bale").read_bytes() == (tmp_path / "l.bale").read_bytes()
    assert ray.is_initialized()  # this process's Ray, used and left as it was
    with pytest.raises(SystemExit):  # argparse: a Ray client address is ray://HOST:PORT
        main(["pack", str(photos[0]), str(tmp_path / "x.bale"), "--ray-address", "head:6379"])
    assert "expected a Ray client address like ray://head:10001" in capsys.readouterr().err


def test_cli_unreachable_scheduler(
    tmp_path: Path,
    photos: tuple[Path, list[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dask = pytest.importorskip("dask")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        code = main(
            [
                "pack",
                str(photos[0]),
                str(tmp_path / "u.bale"),
                "--scheduler",
                f"tcp://127.0.0.1:{port}",
            ]
        )
    assert code == 2
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


# -- helpers -----------------------------------------------------------------------------------


def _open_when_read(fifo: Path, seconds: float = 60) -> int:
    """A writing end of ``fifo``, once some process opened it for reading."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _process_reading(psutil: Any, fifo: Path, seconds: float = 10) -> Any:
    """The process (of this one's descendants) that has ``fifo`` open: its ``open`` may still
    be returning when the FIFO's writer opens, so it is looked for a while."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for process in psutil.Process().children(recursive=True):
            with contextlib.suppress(OSError):
                fds = Path(f"/proc/{process.pid}/fd")
                if any(os.readlink(fd) == str(fifo) for fd in fds.iterdir()):
                    return process
        time.sleep(0.01)
    raise AssertionError(f"no process of this test has {fifo} open")


def _no_tasks(client: Any) -> bool:
    """True when the scheduler holds no task: every future of a pack was cancelled or released
    (after collecting the reference cycles of caught exceptions, which may hold futures)."""
    gc.collect()
    return not client.run_on_scheduler(_task_count)


def _task_count(dask_scheduler: Any) -> int:
    return len(dask_scheduler.tasks)


def _wait_until(condition: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not come true in time")
        time.sleep(0.1)
