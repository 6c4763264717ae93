"""Every module of the bench package imports without side effects: nothing printed, no file
written, no thread started. Scripts do their work in ``main()``; a module whose third-party
dependency is not installed here (the comparative suite's tools live in .venv-bench) is skipped,
but a missing ``bench`` or ``bale`` module fails.

``bench`` is imported as the package it is, from the repository root (``python -m pytest``
puts the working directory on the path)."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bench

BENCH_DIR = Path(bench.__file__).parent


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages([str(BENCH_DIR)], prefix="bench."):
        names.append(info.name)
    return sorted(names)


#: Files under bench/ opened for writing by this process while ``_watching`` is set. Counted
#: by an audit hook, not by listing the folder: a benchmark running beside the tests writes
#: its own outputs under bench/out/ meanwhile.
_WRITTEN: list[str] = []
_watching = threading.Event()
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "open" or not _watching.is_set() or len(args) < 3:
        return
    path, mode, flags = args[:3]
    writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
        mode is None and isinstance(flags, int) and bool(flags & _WRITE_FLAGS)
    )
    if writes and isinstance(path, (str, bytes, os.PathLike)):
        resolved = Path(os.fsdecode(path)).resolve()
        if resolved.is_relative_to(BENCH_DIR) and "__pycache__" not in resolved.parts:
            _WRITTEN.append(str(resolved))


sys.addaudithook(_audit)


def test_the_scripts_and_helpers_are_found() -> None:
    modules = _modules()
    for expected in (
        "bench.machine",
        "bench.photo_data",
        "bench.report",
        "bench.import_time",
        "bench.advisor_bench",
        "bench.loader_bench",
        "bench.suite.run",
        "bench.suite.adapters.bale_file",
        "bench.remote_server",
        "bench.remote_peers_bench",
        "bench.remote_upload_bench",
    ):
        assert expected in modules
    assert "bench.datasets" not in modules  # would shadow Hugging Face's datasets
    assert "bench.codec_choice" not in modules  # retired into bench.advisor_bench


@pytest.mark.filterwarnings("ignore")  # third-party deprecation chatter is not under test
@pytest.mark.parametrize("name", _modules())
def test_module_imports_without_side_effects(name: str, capfd: pytest.CaptureFixture[str]) -> None:
    threads = threading.active_count()
    _WRITTEN.clear()
    _watching.set()
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in ("bench", "bale", ""):
            raise
        pytest.skip(f"{name} needs {missing}, not installed here")
    finally:
        _watching.clear()
    out, err = capfd.readouterr()
    assert (out, err) == ("", ""), f"{name} printed on import"
    assert _WRITTEN == [], f"{name} wrote files on import: {_WRITTEN}"
    assert threading.active_count() == threads, f"{name} started a thread on import"


def test_the_loopback_server_answers_http_ranges_and_s3_listings(tmp_path: Path) -> None:
    """bench.remote_server (what bench.remote_peers_bench serves every tool from) gives the right
    bytes to a plain HTTP client and to boto3: ranges, HEAD, paged ListObjectsV2, missing keys."""
    import urllib.error
    import urllib.request

    boto3 = pytest.importorskip("boto3")
    from botocore.exceptions import ClientError

    from bench.remote_server import DirectoryServer

    payload = bytes(range(256)) * 1000
    (tmp_path / "bucket" / "kind" / "tool").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "bucket" / "kind" / "tool" / f"shard-{i}.bin").write_bytes(payload[i:])
    (tmp_path / "bucket" / "kind" / "index.json").write_text("{}")
    with DirectoryServer(tmp_path) as server:
        url = f"{server.endpoint}/bucket/kind/tool/shard-1.bin"
        request = urllib.request.Request(url, headers={"Range": "bytes=10-19"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 206
            assert answer.read() == payload[1:][10:20]
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.read() == payload[1:]
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{server.endpoint}/bucket/nothing", timeout=10)
        assert missing.value.code == 404
        with pytest.raises(urllib.error.HTTPError) as outside:
            urllib.request.urlopen(f"{server.endpoint}/bucket/%2e%2e/%2e%2e/etc/passwd", timeout=10)
        assert outside.value.code in (403, 404)

        s3 = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            aws_access_key_id="k",
            aws_secret_access_key="s",
            region_name="us-east-1",
        )
        head = s3.head_object(Bucket="bucket", Key="kind/tool/shard-2.bin")
        assert head["ContentLength"] == len(payload) - 2
        got = s3.get_object(Bucket="bucket", Key="kind/tool/shard-2.bin", Range="bytes=-5")
        assert got["Body"].read() == payload[-5:]
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket="bucket", Prefix="kind/", PaginationConfig={"PageSize": 2}
        )
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        assert keys == ["kind/index.json", *(f"kind/tool/shard-{i}.bin" for i in range(3))]
        listed = s3.list_objects_v2(Bucket="bucket", Prefix="kind/", Delimiter="/")
        assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["kind/tool/"]
        assert [o["Key"] for o in listed["Contents"]] == ["kind/index.json"]
        with pytest.raises(ClientError) as no_key:
            s3.get_object(Bucket="bucket", Key="kind/none.bin")
        assert no_key.value.response["Error"]["Code"] == "NoSuchKey"
        before = server.requests
        s3.head_object(Bucket="bucket", Key="kind/index.json")
        assert server.requests == before + 1
    assert not (tmp_path / ".uploads").exists()  # reads leave the served folder as it was


def _s3_client(endpoint: str) -> object:
    boto3 = pytest.importorskip("boto3")
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="k",
        aws_secret_access_key="s",
        region_name="us-east-1",
    )


def test_the_loopback_server_publishes_uploads_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bench.remote_server (what bench.remote_upload_bench times) takes S3 uploads as S3 does,
    through boto3: PutObject; multipart parts invisible until CompleteMultipartUpload, which
    assembles them in order (S3's refusals of a bad part list included); AbortMultipartUpload
    and ListMultipartUploads; an older object readable until the new one completes."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    pytest.importorskip("boto3")
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import ClientError

    from bench.remote_server import DirectoryServer

    mib = 1 << 20
    rng = np.random.default_rng(1)
    first, second = rng.bytes(5 * mib + 7), rng.bytes(3 * mib + 1)
    (tmp_path / "serve" / "bucket").mkdir(parents=True)
    with DirectoryServer(tmp_path / "serve") as server:
        s3: Any = _s3_client(server.endpoint)

        def code(call: Any, **kwargs: Any) -> str:
            with pytest.raises(ClientError) as refused:
                call(**kwargs)
            return str(refused.value.response["Error"]["Code"])

        s3.put_object(Bucket="bucket", Key="small/one.bin", Body=b"hello")
        assert s3.get_object(Bucket="bucket", Key="small/one.bin")["Body"].read() == b"hello"
        assert code(s3.put_object, Bucket="nobucket", Key="k", Body=b"x") == "NoSuchBucket"

        local = tmp_path / "local.bin"
        local.write_bytes(first + second + first)
        config = TransferConfig(multipart_threshold=5 * mib, multipart_chunksize=5 * mib)
        s3.upload_file(str(local), "bucket", "big/file.bin", Config=config)
        stored = tmp_path / "serve" / "bucket" / "big" / "file.bin"
        assert stored.read_bytes() == local.read_bytes()
        assert server.bytes_received >= local.stat().st_size

        # by hand: parts 2 and 1 sent out of order, assembled in the listed order
        s3.put_object(Bucket="bucket", Key="obj", Body=b"old")
        upload = s3.create_multipart_upload(Bucket="bucket", Key="obj")["UploadId"]
        ids = {"Bucket": "bucket", "Key": "obj", "UploadId": upload}
        tag2 = s3.upload_part(**ids, PartNumber=2, Body=second)["ETag"]
        tag1 = s3.upload_part(**ids, PartNumber=1, Body=first)["ETag"]
        assert s3.get_object(Bucket="bucket", Key="obj")["Body"].read() == b"old"
        listed = s3.list_multipart_uploads(Bucket="bucket")["Uploads"]
        assert [(u["Key"], u["UploadId"]) for u in listed] == [("obj", upload)]
        parts = [{"PartNumber": 1, "ETag": tag1}, {"PartNumber": 2, "ETag": tag2}]
        complete = s3.complete_multipart_upload
        assert code(complete, **ids, MultipartUpload={"Parts": parts[::-1]}) == "InvalidPartOrder"
        wrong = [parts[0], {"PartNumber": 2, "ETag": '"nope"'}]
        assert code(complete, **ids, MultipartUpload={"Parts": wrong}) == "InvalidPart"
        assert s3.get_object(Bucket="bucket", Key="obj")["Body"].read() == b"old"
        done = complete(**ids, MultipartUpload={"Parts": parts})
        assert done["ETag"]
        assert s3.get_object(Bucket="bucket", Key="obj")["Body"].read() == first + second
        assert code(complete, **ids, MultipartUpload={"Parts": parts}) == "NoSuchUpload"

        # every part but the last at least 5 MiB, as on S3
        upload = s3.create_multipart_upload(Bucket="bucket", Key="tiny")["UploadId"]
        ids = {"Bucket": "bucket", "Key": "tiny", "UploadId": upload}
        tags = [s3.upload_part(**ids, PartNumber=n, Body=b"ab")["ETag"] for n in (1, 2)]
        small = [{"PartNumber": n, "ETag": t} for n, t in zip((1, 2), tags, strict=True)]
        assert code(complete, **ids, MultipartUpload={"Parts": small}) == "EntityTooSmall"

        # aborted: no object, no upload, no part left on the server's disk
        s3.abort_multipart_upload(**ids)
        assert code(s3.head_object, Bucket="bucket", Key="tiny") == "404"
        assert code(s3.abort_multipart_upload, **ids) == "NoSuchUpload"
        assert code(s3.upload_part, **ids, PartNumber=3, Body=b"x") == "NoSuchUpload"
        assert "Uploads" not in s3.list_multipart_uploads(Bucket="bucket")
        assert list((tmp_path / "serve" / ".uploads").iterdir()) == []
        assert code(s3.get_object, Bucket=".uploads", Key="x") == "AccessDenied"

        s3.delete_object(Bucket="bucket", Key="obj")
        assert code(s3.head_object, Bucket="bucket", Key="obj") == "404"
        s3.close()


def test_bale_writes_through_the_loopback_server_byte_for_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bale.Writer to s3:// on bench.remote_server, with a delay and a per-request cap: several
    16 MiB parts in flight, the object equal to the same rows written to a local file; a writer
    failing after parts were sent leaves the older object, whole, and no upload behind."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    pytest.importorskip("obstore")
    import bale
    from bale.io.remote_client import close_shared_connections
    from bench.remote_server import DirectoryServer

    rows = np.random.default_rng(2).integers(0, 256, (4000, 64, 64, 3), dtype=np.uint8)
    label = np.arange(len(rows), dtype=np.int64)

    def write(path: str, fail: bool = False, **options: Any) -> None:
        with bale.Writer(path, overwrite=True, **options) as writer:
            for start in range(0, len(rows), 500):
                writer.write({"x": rows[start : start + 500], "label": label[start : start + 500]})
            if fail:
                raise RuntimeError("the job failed after its parts were sent")

    local = tmp_path / "local.bale"
    write(str(local))
    assert local.stat().st_size > 32 << 20  # over two of bale's 16 MiB parts
    (tmp_path / "serve" / "bucket").mkdir(parents=True)
    with DirectoryServer(tmp_path / "serve", delay_s=0.002, request_bytes_per_s=400e6) as server:
        options = {
            "endpoint_url": server.endpoint,
            "key": "x",
            "secret": "y",
            "client_kwargs": {"region_name": "us-east-1"},
        }
        try:
            write("s3://bucket/train.bale", storage_options=options)
            stored = tmp_path / "serve" / "bucket" / "train.bale"
            assert stored.read_bytes() == local.read_bytes()
            assert server.bytes_received >= local.stat().st_size
            with bale.open("s3://bucket/train.bale", storage_options=options) as ds:
                assert np.array_equal(ds[len(rows) - 1]["x"], rows[-1])

            before, requests = stored.read_bytes(), server.requests
            with pytest.raises(RuntimeError, match="job failed"):
                write("s3://bucket/train.bale", fail=True, storage_options=options)
            assert server.requests - requests >= 2  # at least the upload's create and abort
            assert stored.read_bytes() == before
            with pytest.raises(RuntimeError, match="job failed"):
                write("s3://bucket/new.bale", fail=True, storage_options=options)
            assert sorted(p.name for p in stored.parent.iterdir()) == ["train.bale"]
            staging = tmp_path / "serve" / ".uploads"
            deadline = time.monotonic() + 10  # parts cut off by the abort end on the server's time
            while any(staging.iterdir()) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert list(staging.iterdir()) == []
        finally:
            close_shared_connections()
