"""The `bale pack` command: options, summary, exit codes, a real subprocess and a real Ctrl-C."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import simplejpeg
import skimage.data as skdata

import bale
from bale.cli.main import main


def make_folder(
    root: Path, classes: tuple[str, ...] = ("cat", "dog"), n: int = 4
) -> dict[str, bytes]:
    photos = [skdata.chelsea(), skdata.astronaut()]
    files = {}
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(n):
            crop = photos[c % 2][i * 10 : i * 10 + 40 + 2 * i, 30 : 30 + 50]
            files[f"{name}/{i}.jpg"] = bytes(simplejpeg.encode_jpeg(np.ascontiguousarray(crop), 85))
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    return files


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "photos"
    return root, make_folder(root)


def run(*args: str | Path) -> int:
    return main(["pack", *(str(a) for a in args), "--no-progress", "--workers", "1"])


def test_pack_writes_the_file_and_prints_a_summary(
    tmp_path: Path, folder: tuple[Path, dict[str, bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, files = folder
    out = tmp_path / "out.bale"
    assert run(root, out, "--seed", "5") == 0
    printed = capsys.readouterr().out
    assert f"packed 8 rows from {root} into {out} (shuffled, seed 5)" in printed
    assert "rows/s" in printed and "MB/s" in printed and "on disk" in printed
    with bale.open(out) as ds:
        data = ds.read()
        assert [files[p] for p in data["path"]] == data["image"]
        assert ds.metadata["bale.pack"]["seed"] == 5


def test_size_no_shuffle_and_codecs(tmp_path: Path, folder: tuple[Path, dict[str, bytes]]) -> None:
    root, files = folder
    out = tmp_path / "out.bale"
    args = ["--size", "12x20", "--no-shuffle", "--codec", "lz4", "--codec", "label=zstd:4"]
    assert run(root, out, *args) == 0
    with bale.open(out) as ds:
        assert ds.schema.describe()["image"] == "uint8[12,20,3]"
        assert ds["path"][:] == sorted(files)
        assert ds.schema["label"].codec == {"id": "zstd", "level": 4}
        assert ds.schema["image"].codec["id"] == "lz4"
    assert run(root, tmp_path / "sq.bale", "--resize", "9", "--resize-mode", "stretch") == 0
    assert bale.open(tmp_path / "sq.bale").schema.describe()["image"] == "uint8[9,9,3]"


def test_stops_with_exit_2(
    tmp_path: Path, folder: tuple[Path, dict[str, bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, files = folder
    out = tmp_path / "out.bale"
    out.write_bytes(b"x")
    assert run(root, out) == 2
    assert "exists; pass overwrite=True (--overwrite)" in capsys.readouterr().err
    assert run(root, out, "--overwrite") == 0

    (root / "dog" / "bad.jpg").write_bytes(files["dog/0.jpg"][:200])
    assert run(root, tmp_path / "s.bale", "--strict") == 2
    assert "cannot read dog/bad.jpg" in capsys.readouterr().err
    assert not (tmp_path / "s.bale").exists() and not (tmp_path / "s.bale.partial").exists()
    assert run(root, tmp_path / "ok.bale") == 0  # without --strict: skipped and reported
    assert "skipped 1 unreadable row(s):\n    dog/bad.jpg: " in capsys.readouterr().out

    (tmp_path / "empty").mkdir()
    assert run(tmp_path / "empty", tmp_path / "e.bale") == 2
    assert "no image files found" in capsys.readouterr().err

    assert run(root, tmp_path / "p.bale", "--trust-pickle") == 2
    assert "['trust'] do not apply to image folder input" in capsys.readouterr().err

    assert run(tmp_path / "nothing.npy", tmp_path / "n.bale") == 2
    assert "no such file or folder" in capsys.readouterr().err

    with pytest.raises(SystemExit) as stop:
        run(root, tmp_path / "z.bale", "--size", "12y3")
    assert stop.value.code == 2
    assert "expected HxW" in capsys.readouterr().err


def test_manifest_missing_files(
    tmp_path: Path, folder: tuple[Path, dict[str, bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, files = folder
    lines = ["file,label"] + [f"{p},{p[:3]}" for p in sorted(files)] + ["dog/missing.jpg,dog"]
    manifest = tmp_path / "list.csv"
    manifest.write_text("\n".join(lines) + "\n")
    assert run(manifest, tmp_path / "m.bale") == 2
    assert "9 of 9 files listed do not exist" in capsys.readouterr().err  # not beside list.csv
    assert run(manifest, tmp_path / "m.bale", "--manifest-root", root) == 2
    assert "line 10: dog/missing.jpg" in capsys.readouterr().err
    assert run(manifest, tmp_path / "m.bale", "--manifest-root", root, "--skip-missing") == 0
    assert "dog/missing.jpg (line 10): file not found" in capsys.readouterr().out
    assert len(bale.open(tmp_path / "m.bale")) == 8


def test_split_folders_go_to_an_output_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_folder(tmp_path / "data" / "train")
    make_folder(tmp_path / "data" / "val", ("dog",), n=2)
    assert run(tmp_path / "data", tmp_path / "all.bale") == 2
    assert "holds split folders; give an output folder" in capsys.readouterr().err
    assert run(tmp_path / "data", tmp_path / "packed") == 0
    assert sorted(os.listdir(tmp_path / "packed")) == ["train.bale", "val.bale"]
    with bale.open(tmp_path / "packed" / "val.bale") as ds:
        assert ds["label"][:].tolist() == [1, 1] and ds.metadata["classes"] == ["cat", "dog"]


def test_a_real_subprocess(tmp_path: Path, folder: tuple[Path, dict[str, bytes]]) -> None:
    root, files = folder
    out = tmp_path / "sub.bale"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bale.cli.main",
            "pack",
            str(root),
            str(out),
            "--workers",
            "2",
            "--memory",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "packed 8 rows" in done.stdout
    assert "rows/s" not in done.stderr  # no progress bar when stderr is not a terminal
    with bale.open(out) as ds:
        data = ds.read()
        assert [files[p] for p in data["path"]] == data["image"]


@pytest.mark.skipif(sys.platform != "linux", reason="FIFOs and process groups as on Linux")
def test_ctrl_c_stops_workers_and_leaves_nothing(
    tmp_path: Path, folder: tuple[Path, dict[str, bytes]]
) -> None:
    psutil = pytest.importorskip("psutil")
    root, files = folder
    # A manifest whose last entry is a FIFO: reading it blocks until the test lets it, so the
    # pack is certainly in the middle of its work (in a worker process) when Ctrl-C comes.
    fifo = root / "dog" / "blocking.jpg"
    os.mkfifo(fifo)
    rows = [f"{p},{p[:3]}" for p in sorted(files)] * 40 + ["dog/blocking.jpg,dog"]
    (tmp_path / "list.csv").write_text("\n".join(["path,label", *rows]) + "\n")
    (tmp_path / "list.csv").rename(root / "list.csv")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bale.cli.main",
            "pack",
            str(root / "list.csv"),
            str(out_dir / "c.bale"),
            "--workers",
            "2",
            "--memory",
            "1",
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a foreground job
    )
    writer = None
    try:
        deadline = time.monotonic() + 60
        while writer is None:  # wait until some process opened the FIFO for reading
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if (
                    exc.errno != errno.ENXIO
                    or time.monotonic() > deadline
                    or process.poll() is not None
                ):
                    raise
                time.sleep(0.05)
        family = [
            psutil.Process(process.pid),
            *psutil.Process(process.pid).children(recursive=True),
        ]
        assert len(family) >= 3  # the command and its workers
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            # The whole group: a worker left alive would hold the pipes open, and communicate()
            # would wait for it forever.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate(timeout=60)
        if writer is not None:
            os.close(writer)
    assert process.returncode == 130, err
    assert "interrupted" in err
    _, alive = psutil.wait_procs(family, timeout=20)
    assert alive == []  # no worker left behind
    assert os.listdir(out_dir) == []  # no c.bale, no c.bale.partial


def test_storage_options_for_a_url_output(
    tmp_path: Path,
    folder: tuple[Path, dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    for name in list(os.environ):  # only the credentials given on the command line
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    import boto3

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="k",
            aws_secret_access_key="secret-never-printed",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="packs")
        root, _ = folder
        options = [
            "--storage-option",
            "key=k",
            "--storage-option",
            "secret=secret-never-printed",
            "--storage-option",
            f"endpoint_url={endpoint}",
            "--storage-option",
            'client_kwargs={"region_name": "us-east-1"}',
        ]
        assert run(root, "s3://packs/photos.bale", *options) == 0
        assert run(root, tmp_path / "local.bale") == 0
        stored = s3.get_object(Bucket="packs", Key="photos.bale")["Body"].read()
        assert stored == (tmp_path / "local.bale").read_bytes()
        printed = capsys.readouterr()
        assert "packed 8 rows" in printed.out
        assert "secret-never-printed" not in printed.out + printed.err
        s3.close()
    finally:
        server.stop()
    # Options for a local output are a mistake, said before anything is read.
    assert run(root, tmp_path / "other.bale", "--storage-option", "key=k") == 2
    assert "--storage-option applies to an OUT that is a URL" in capsys.readouterr().err
    assert not (tmp_path / "other.bale").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="process trees as on Linux")
def test_sigkill_of_the_pack_leaves_no_process_behind(tmp_path: Path) -> None:
    """A pack killed with SIGKILL cannot stop its workers itself: they, the forkserver and the
    resource tracker must notice their parent's death and exit (issue 14, item 1)."""
    psutil = pytest.importorskip("psutil")
    # One large photo decoded and resized per row: the pack is surely still working (in its
    # workers) when the test sees them and kills it.
    big = np.tile(skdata.astronaut(), (6, 6, 1))  # 3072 x 3072
    (tmp_path / "big.jpg").write_bytes(bytes(simplejpeg.encode_jpeg(big, 90)))
    rows = ["big.jpg,a"] * 2000
    (tmp_path / "list.csv").write_text("\n".join(["path,label", *rows]) + "\n")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    command = [sys.executable, "-m", "bale.cli.main", "pack", str(tmp_path / "list.csv")]
    command += [str(out_dir / "k.bale"), "--workers", "2", "--size", "64x64", "--memory", "1"]
    command += ["--no-progress"]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    family: list[Any] = []
    try:
        deadline = time.monotonic() + 60
        parent = psutil.Process(process.pid)
        while len(family) < 4:  # the pack, the forkserver and at least two workers
            assert time.monotonic() < deadline and process.poll() is None, "no workers started"
            time.sleep(0.05)
            with contextlib.suppress(psutil.Error):
                family = [parent, *parent.children(recursive=True)]
        family = [parent, *parent.children(recursive=True)]
        process.kill()
        process.wait(timeout=30)
        _, alive = psutil.wait_procs(family[1:], timeout=10)
        left = [(p.pid, p.name()) for p in alive if p.is_running()]
        assert left == [], f"still running 10 s after the pack was killed: {left}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # never leave them to the next test
        if process.poll() is None:
            process.wait(timeout=30)


# -- issue 15 -------------------------------------------------------------------------------------

FIXTURES = Path(__file__).parents[1] / "importers" / "fixtures"
OBJECTS = FIXTURES / "bcolz" / "bcolz-1.2.1" / "objects_lz4.bcolz"


@pytest.mark.parametrize("order", [(), ("--no-shuffle",)])
def test_a_bcolz_array_of_python_objects_packs_as_legacy_md_says(
    tmp_path: Path, order: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "obj.bale"
    assert run("--trust-pickle", OBJECTS, out, *order) == 0, capsys.readouterr().err
    with bale.open(out) as ds:
        assert ds.schema.describe() == {"objects_lz4": "string"}
        assert sorted(ds["objects_lz4"][:]) == ["alpha", "beta", "gamma", "δέλτα"]
        if order:
            assert ds["objects_lz4"][:] == ["alpha", "beta", "gamma", "δέλτα"]


def test_a_folder_holding_only_train_is_not_one_class_named_train(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "kaggle"
    make_folder(data / "train")
    assert run(data, tmp_path / "out.bale") == 2
    err = capsys.readouterr().err
    assert "holds only the split folder train/, whose sub-folders are the classes" in err
    assert "one class named 'train'" in err
    assert f"`bale pack {data / 'train'} train.bale`" in err
    assert not (tmp_path / "out.bale").exists()
    assert run(data / "train", tmp_path / "out.bale") == 0  # the suggested command works
    with bale.open(tmp_path / "out.bale") as ds:
        assert ds.metadata["classes"] == ["cat", "dog"]


def test_kaggle_test_stg1_is_a_split_not_a_class(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "fish"
    make_folder(data / "train")
    make_folder(data / "test_stg1", ("unlabeled",), n=3)
    for image in (data / "test_stg1" / "unlabeled").iterdir():  # Kaggle's test: bare images
        image.rename(data / "test_stg1" / image.name)
    (data / "test_stg1" / "unlabeled").rmdir()
    assert run(data, tmp_path / "all.bale") == 2
    assert "holds split folders; give an output folder" in capsys.readouterr().err
    assert run(data, tmp_path / "packed") == 0
    assert sorted(os.listdir(tmp_path / "packed")) == ["test_stg1.bale", "train.bale"]
    with bale.open(tmp_path / "packed" / "train.bale") as train:
        assert train.metadata["classes"] == ["cat", "dog"]
    with bale.open(tmp_path / "packed" / "test_stg1.bale") as test:
        assert "label" not in test.schema.names and len(test) == 3


def test_split_folders_beside_class_folders_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "mixed"
    make_folder(data, ("cat", "train"))
    assert run(data, tmp_path / "out.bale") == 2
    err = capsys.readouterr().err
    assert "folders ['train'] are named like dataset splits but sit beside ['cat']" in err
    assert not (tmp_path / "out.bale").exists()


def test_several_sources_become_the_columns_of_one_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x = np.arange(30 * 2, dtype=np.int64).reshape(30, 2)
    np.save(tmp_path / "X.npy", x)
    np.save(tmp_path / "y.npy", x[:, 0] // 2)
    assert run(tmp_path / "X.npy", tmp_path / "y.npy", tmp_path / "xy.bale") == 0
    with bale.open(tmp_path / "xy.bale") as ds:
        data = ds.read()
    assert list(data) == ["X", "y"] and data["X"][:, 0].tolist() != list(range(0, 60, 2))
    np.testing.assert_array_equal(data["y"], data["X"][:, 0] // 2)  # shuffled together
    labels = FIXTURES / "bcolz" / "bcolz-1.2.1" / "ints_lz4_short.bcolz"  # 5 rows
    assert (
        run("--column", f"x={tmp_path / 'X.npy'}", "--column", f"y={labels}", tmp_path / "b.bale")
        == 2
    )
    err = capsys.readouterr().err
    assert "sources joined as columns must have the same number of rows" in err
    assert f"'{tmp_path / 'X.npy'}' has 30 rows, '{labels}' has 5 rows" in err
    np.save(tmp_path / "short.npy", np.arange(5) * 10)
    args = ("--column", f"ids={labels}", "--column", f"v={tmp_path / 'short.npy'}")
    assert run(*args, tmp_path / "c.bale", "--no-shuffle") == 0
    with bale.open(tmp_path / "c.bale") as ds:
        assert list(ds.schema.names) == ["ids", "v"] and ds["v"][:].tolist() == [0, 10, 20, 30, 40]


def test_an_empty_npy_packs_into_an_empty_file(tmp_path: Path) -> None:
    np.save(tmp_path / "none.npy", np.zeros((0, 3), np.uint8))
    assert run(tmp_path / "none.npy", tmp_path / "none.bale") == 0
    with bale.open(tmp_path / "none.bale") as ds:
        assert len(ds) == 0 and ds.schema.describe() == {"none": "uint8[3]"}
