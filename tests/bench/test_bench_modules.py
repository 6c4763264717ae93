"""Every module of the bench package imports without side effects: nothing printed, no file
written, no thread started. Scripts do their work in ``main()``; a module whose third-party
dependency is not installed here (the comparative suite's tools live in .venv-bench) is skipped,
but a missing ``bench`` or ``bale`` module fails.

``bench`` is imported as the package it is, from the repository root (``python -m pytest``
puts the working directory on the path)."""

from __future__ import annotations

import importlib
import pkgutil
import threading
from pathlib import Path

import pytest

import bench

BENCH_DIR = Path(bench.__file__).parent


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages([str(BENCH_DIR)], prefix="bench."):
        names.append(info.name)
    return sorted(names)


def _files() -> set[Path]:
    return {p for p in BENCH_DIR.rglob("*") if "__pycache__" not in p.parts}


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
    ):
        assert expected in modules
    assert "bench.datasets" not in modules  # would shadow Hugging Face's datasets
    assert "bench.codec_choice" not in modules  # retired into bench.advisor_bench


@pytest.mark.filterwarnings("ignore")  # third-party deprecation chatter is not under test
@pytest.mark.parametrize("name", _modules())
def test_module_imports_without_side_effects(name: str, capfd: pytest.CaptureFixture[str]) -> None:
    files, threads = _files(), threading.active_count()
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in ("bench", "bale", ""):
            raise
        pytest.skip(f"{name} needs {missing}, not installed here")
    out, err = capfd.readouterr()
    assert (out, err) == ("", ""), f"{name} printed on import"
    assert _files() == files, f"{name} wrote files on import"
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
