"""bale files written to object storage (moto's S3 on loopback, through obstore and through
s3fs): the same bytes as a local write, read back equal; the object appears only when the writer
closes, so a failed or killed writer leaves no object (or the previous one) under the name;
memory bounded by a few parts; ``bale.pack`` to a URL."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from remote_helpers import (
    BUCKET,
    PART,
    QUICK,
    S3_KEY,
    S3_SECRET,
    assert_columns_equal,
    bounded,
    keys,
    kill_writer_midway,
    s3_options,
    skip_without,
    url,
)
from remote_servers import Fault, FaultProxy

import bale
from bale.errors import BaleWriteError, TargetExistsError
from bale.importers.base import RowSource, SourceBatch
from bale.io import remote_sink


def columns(rows: int, seed: int = 0) -> dict[str, Any]:
    """Every kind of column: arrays of several dtypes and shapes, bytes, strings; "raw" is
    incompressible and stored as it is (codec none), so the file spans several parts."""
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 40, (rows, 16, 16, 3), dtype=np.uint8),
        "feature": rng.standard_normal((rows, 24)).astype(np.float32),
        "half": rng.standard_normal((rows, 3)).astype(np.float16),
        "flag": rng.integers(0, 2, rows).astype(bool),
        "label": np.arange(rows, dtype=np.int64) % 7,
        "raw": rng.integers(0, 256, (rows, 2048), dtype=np.uint8),
        "blob": [rng.bytes(int(n)) for n in rng.integers(0, 300, rows)],
        "name": [f"row {i} é" for i in range(rows)],
    }


def uploads_of(admin: Any, key: str) -> list[dict[str, Any]]:
    """Incomplete multipart uploads of ``key`` (each with its parts)."""
    found = []
    for upload in admin.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
        if upload["Key"] == key:
            parts = admin.list_parts(Bucket=BUCKET, Key=key, UploadId=upload["UploadId"])
            found.append({**upload, "Parts": parts.get("Parts", [])})
    return found


def abort_uploads(admin: Any, key: str) -> int:
    uploads = uploads_of(admin, key)
    for upload in uploads:
        admin.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload["UploadId"])
    return len(uploads)


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["plain", "random_access"])
def test_every_column_kind_round_trips_and_matches_a_local_write_byte_for_byte(
    upload: str, opts: dict[str, Any], s3_client: Any, tmp_path: Path, layout: str
) -> None:
    data = columns(6000)
    options: dict[str, Any] = {"codecs": {"raw": "none"}, "random_access": layout != "plain"}
    name = f"kinds-{layout}-{upload}.bale"
    with bale.Writer(url(name), storage_options=opts, **options) as writer:
        for start in range(0, 6000, 1000):  # batches, as a pack writes them
            writer.write({k: v[start : start + 1000] for k, v in data.items()})
        assert writer._sink.backend == upload
        assert writer._sink.parts_sent >= 1  # a multipart upload, not one PUT
        assert name not in keys(s3_client)  # nothing visible before close
    local = tmp_path / "local.bale"
    with bale.Writer(local, **options) as writer:
        for start in range(0, 6000, 1000):
            writer.write({k: v[start : start + 1000] for k, v in data.items()})
    stored = s3_client.get_object(Bucket=BUCKET, Key=name)["Body"].read()
    assert len(stored) > 2 * PART
    assert stored == local.read_bytes()
    with bale.open(url(name), storage_options=opts) as ds:
        assert len(ds) == 6000
        assert_columns_equal(ds.read(), data)
    assert uploads_of(s3_client, name) == []


def test_a_small_file_is_one_put_and_bale_write_takes_storage_options(
    upload: str, opts: dict[str, Any], s3_client: Any, tmp_path: Path
) -> None:
    data = columns(50)
    bale.write(url(f"small-{upload}.bale"), data, storage_options=opts)
    bale.write(tmp_path / "small.bale", data)
    stored = s3_client.get_object(Bucket=BUCKET, Key=f"small-{upload}.bale")["Body"].read()
    assert stored == (tmp_path / "small.bale").read_bytes()
    with bale.open(url(f"small-{upload}.bale"), storage_options=opts) as ds:
        assert_columns_equal(ds.read(), data)


# -- nothing half written ---------------------------------------------------------------------


def test_an_exception_inside_with_publishes_nothing_and_aborts_the_upload(
    upload: str, opts: dict[str, Any], s3_client: Any
) -> None:
    name = f"raised-{upload}.bale"
    with (
        pytest.raises(RuntimeError, match="stop"),
        bale.Writer(url(name), storage_options=opts, codecs={"raw": "none"}) as writer,
    ):
        writer.write(columns(6000))
        assert writer._sink.parts_sent >= 2
        raise RuntimeError("stop")
    assert name not in keys(s3_client)
    assert uploads_of(s3_client, name) == []  # aborted: no parts left behind


def test_an_overwrite_replaces_the_object_only_at_close(
    upload: str, opts: dict[str, Any], s3_client: Any
) -> None:
    name = f"replaced-{upload}.bale"
    old, new = columns(100, seed=1), columns(6000, seed=2)
    bale.write(url(name), old, storage_options=opts)
    with pytest.raises(TargetExistsError) as refused:
        bale.Writer(url(name), storage_options=opts)
    assert refused.value.path == url(name)

    writer = bale.Writer(url(name), storage_options=opts, overwrite=True, codecs={"raw": "none"})
    writer.write(new)
    assert writer._sink.parts_sent >= 2
    with bale.open(url(name), storage_options=opts) as ds:  # the old object, whole
        assert_columns_equal(ds.read(), old)
    writer.close()
    with bale.open(url(name), storage_options=opts) as ds:
        assert_columns_equal(ds.read(), new)

    # A failed overwrite leaves the current object as it was.
    with (
        pytest.raises(RuntimeError),
        bale.Writer(
            url(name), storage_options=opts, overwrite=True, codecs={"raw": "none"}
        ) as writer,
    ):
        writer.write(old)
        raise RuntimeError("stop")
    with bale.open(url(name), storage_options=opts) as ds:
        assert len(ds) == 6000
    assert uploads_of(s3_client, name) == []


CHILD = r"""
import sys, time
import numpy as np
import bale
from bale.io import remote_sink

url, endpoint, backend = sys.argv[1:4]
remote_sink.DEFAULT_UPLOAD_OPTIONS = remote_sink.UploadOptions(
    part_bytes=5 << 20, parts_in_flight=2, backend=backend
)
options = {"key": "k", "secret": "s", "endpoint_url": endpoint,
           "client_kwargs": {"region_name": "us-east-1"}}
rows = np.random.default_rng(0).integers(0, 256, (64, 16384), dtype=np.uint8)  # 1 MiB
with bale.Writer(url, storage_options=options, overwrite=True, codecs={"x": "none"}) as w:
    for i in range(100_000):  # a slow source: 1 MiB each 20 ms, killed long before its end
        w.write({"x": rows})
        time.sleep(0.02)
"""


@pytest.mark.parametrize("previous", [False, True], ids=["new", "over-an-old-object"])
def test_a_killed_writer_leaves_no_object_or_the_previous_one(
    upload: str,
    opts: dict[str, Any],
    s3_client: Any,
    moto_endpoint: str,
    tmp_path: Path,
    previous: bool,
) -> None:
    """SIGKILL while parts are uploading: the name holds nothing (or the old object, byte for
    byte). What S3 keeps is an incomplete multipart upload with the parts sent: invisible to
    readers and listings of objects, billed until aborted (a bucket lifecycle rule
    AbortIncompleteMultipartUpload removes them); moto keeps it likewise."""
    name = f"killed-{upload}-{previous}.bale"
    old = b""
    if previous:
        bale.write(tmp_path / "old.bale", columns(100))
        old = (tmp_path / "old.bale").read_bytes()
        s3_client.put_object(Bucket=BUCKET, Key=name, Body=old)
    kill_writer_midway(
        [CHILD, url(name), moto_endpoint, upload],
        lambda: any(u["Parts"] for u in uploads_of(s3_client, name)),
        "part",
        settle_s=0.1,  # more parts on the way
    )
    if previous:
        assert s3_client.get_object(Bucket=BUCKET, Key=name)["Body"].read() == old
    else:
        assert name not in keys(s3_client)
    left = uploads_of(s3_client, name)
    assert len(left) == 1 and left[0]["Parts"]  # the incomplete upload, never completed
    assert abort_uploads(s3_client, name) == 1
    assert uploads_of(s3_client, name) == []


def test_a_part_that_keeps_failing_stops_the_writer_and_aborts(
    upload: str, s3_proxy: FaultProxy, s3_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_at_a_time = dataclasses.replace(remote_sink.DEFAULT_UPLOAD_OPTIONS, parts_in_flight=1)
    monkeypatch.setattr(remote_sink, "DEFAULT_UPLOAD_OPTIONS", one_at_a_time)
    options = s3_options(s3_proxy.endpoint)
    name = f"failing-{upload}.bale"
    writer = bale.Writer(url(name), storage_options=options, overwrite=True, codecs={"raw": "none"})
    s3_proxy.plan(Fault("pass"))  # the upload starts
    s3_proxy.plan(Fault("error_500"), times=QUICK.max_retries + 1)  # part 1, every attempt
    with pytest.raises(BaleWriteError) as failed:
        bounded(lambda: writer.write(columns(6000)))
        bounded(writer.close)  # obstore reports a part's failure at the next part or at close
    error = failed.value
    assert error.path == url(name) and error.errno == errno.EIO
    assert "HTTP 500" in str(error) and "nothing was published" in str(error)
    for text in (str(error), repr(error)):
        assert S3_SECRET not in text and S3_KEY not in text
    with contextlib.suppress(BaleWriteError):
        writer.close()
    s3_proxy.clear()
    assert name not in keys(s3_client)
    assert uploads_of(s3_client, name) == []


def test_throttling_while_uploading_is_retried(
    upload: str, s3_proxy: FaultProxy, s3_client: Any
) -> None:
    options = s3_options(s3_proxy.endpoint)
    name = f"throttled-{upload}.bale"
    data = columns(3000)  # ~7 MB: two parts
    s3_proxy.plan(Fault("slow_down"), times=2)
    s3_proxy.plan(Fault("pass"))
    s3_proxy.plan(Fault("error_500"))
    bounded(lambda: bale.write(url(name), data, storage_options=options, codecs={"raw": "none"}))
    with bale.open(url(name), storage_options=options) as ds:
        assert_columns_equal(ds.read(), data)


# -- errors -----------------------------------------------------------------------------------


def test_append_to_an_object_is_a_clear_error(opts: dict[str, Any], s3_client: Any) -> None:
    with pytest.raises(BaleWriteError, match="cannot be appended") as refused:
        bale.Writer(url("appended.bale"), mode="a", storage_options=opts)
    assert refused.value.errno == errno.EOPNOTSUPP and refused.value.path == url("appended.bale")
    assert "appended.bale" not in keys(s3_client)


def test_a_missing_bucket_names_the_url_never_the_credentials(
    upload: str, opts: dict[str, Any]
) -> None:
    target = "s3://no-such-bucket-here/x.bale"
    with pytest.raises(BaleWriteError) as failed:
        bounded(lambda: bale.write(target, columns(20), storage_options=opts))
    error = failed.value
    assert error.path == target and error.errno == errno.ENOENT
    assert "no such bucket" in str(error)
    for text in (str(error), repr(error), str(error.args)):
        assert S3_SECRET not in text and S3_KEY not in text


def test_urls_bale_cannot_write_and_options_for_a_local_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="s3://, gs:// and az://"):
        bale.Writer("https://example.invalid/x.bale")
    with pytest.raises(ValueError, match="storage_options apply to URLs"):
        bale.Writer(tmp_path / "x.bale", storage_options={"anon": True})
    assert list(tmp_path.iterdir()) == []


# -- processes, memory ------------------------------------------------------------------------


def _write_in_a_forked_child(target: str, options: dict[str, Any], results: Any) -> None:
    try:
        with bale.Writer(target, storage_options=options) as writer:
            writer.write(columns(200))
            results.put(("ok", writer._sink.backend))
    except BaseException as exc:
        results.put(("error", repr(exc)))


def test_a_child_forked_after_obstore_started_writes_through_s3fs(
    opts: dict[str, Any], s3_client: Any
) -> None:
    """obstore's runtime does not survive fork: such a child uploads with s3fs, not a hang."""
    skip_without("obstore", "s3fs")
    bale.write(url("parent.bale"), columns(10), storage_options=opts, overwrite=True)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(
        target=_write_in_a_forked_child, args=(url("forked.bale"), opts, results)
    )
    child.start()
    child.join(30)
    assert not child.is_alive(), "the forked writer hangs"
    assert results.get(timeout=5) == ("ok", "fsspec")
    with bale.open(url("forked.bale"), storage_options=opts) as ds:
        assert_columns_equal(ds.read(), columns(200))


MEMORY_CHILD = r"""
import json, sys
import numpy as np
import bale

def status(field):  # kB, from /proc/self/status
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))

url, endpoint, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
options = {"key": "k", "secret": "s", "endpoint_url": endpoint,
           "client_kwargs": {"region_name": "us-east-1"}}
batch = np.random.default_rng(0).integers(0, 256, (512, 16384), dtype=np.uint8)  # 8 MiB
bale.write(url + ".warm", {"x": batch[:8]}, storage_options=options, overwrite=True)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) starts again from the current RSS
before = status("VmRSS:")
with bale.Writer(url, storage_options=options, overwrite=True, codecs={"x": "none"}) as w:
    for _ in range(-(-total // batch.nbytes)):
        w.write({"x": batch})
    parts = w._sink.parts_sent
print(json.dumps({"before": before, "peak": status("VmHWM:"), "parts": parts}))
"""


def test_memory_stays_bounded_by_the_parts_in_flight(moto_endpoint: str, s3_client: Any) -> None:
    """300 MB of rows written in 8 MiB batches with the default options (16 MiB parts, 4 in
    flight): the writer's peak RSS grows by about the parts buffered, not by the file."""
    skip_without("obstore")
    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("needs Linux's /proc/self/clear_refs (resetting the peak RSS)")
    total = 300_000_000
    name = "memory.bale"
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, url(name), moto_endpoint, str(total)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    size = s3_client.head_object(Bucket=BUCKET, Key=name)["ContentLength"]
    s3_client.delete_object(Bucket=BUCKET, Key=name)
    growth = figures["peak"] - figures["before"]
    assert size >= total and figures["parts"] >= 18
    print(f"peak RSS grew by {growth / 2**20:.0f} MiB writing {size / 2**20:.0f} MiB")
    assert growth < 120 << 20, f"peak RSS grew by {growth >> 20} MiB writing {size >> 20} MiB"


# -- pack -------------------------------------------------------------------------------------


class _InOrder(RowSource):
    """Rows read in order only (the bucket shuffle's case): x = [i, 2i, 3i], s = "row i", and
    ``pad`` random bytes per row when asked; ``fail_at``: a KeyboardInterrupt there."""

    path = "in-order"

    def __init__(self, n: int, pad: int = 0, fail_at: int | None = None) -> None:
        self.n, self.pad, self.fail_at = n, pad, fail_at

    @property
    def num_rows(self) -> int:
        return self.n

    @property
    def row_nbytes_hint(self) -> int:
        return 40 + self.pad

    def read(self, start: int, stop: int) -> SourceBatch:
        if self.fail_at is not None and stop > self.fail_at:
            raise KeyboardInterrupt
        rows = np.arange(start, stop, dtype=np.int64)
        x = rows[:, None] * np.array([1, 2, 3], np.int64)
        columns: dict[str, Any] = {"x": x, "s": [f"row {i}" for i in rows.tolist()]}
        if self.pad:
            rng = np.random.default_rng(start)
            columns["pad"] = [rng.bytes(self.pad) for _ in range(len(rows))]
        return SourceBatch(columns, rows)

    def take(self, rows: Sequence[int] | np.ndarray) -> SourceBatch:
        raise NotImplementedError


@pytest.fixture
def npy(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "images.npy"
    np.save(path, np.random.default_rng(3).integers(0, 256, (2000, 32, 32, 3), dtype=np.uint8))
    yield path


def test_pack_writes_a_url_as_it_writes_a_local_file(
    upload: str, opts: dict[str, Any], s3_client: Any, npy: Path, tmp_path: Path
) -> None:
    quiet = {"progress": False, "workers": 1}
    name = f"packed-{upload}.bale"
    report = bale.pack(npy, url(name), storage_options=opts, **quiet)
    local = bale.pack(npy, tmp_path / "packed.bale", **quiet)
    stored = s3_client.get_object(Bucket=BUCKET, Key=name)["Body"].read()
    assert stored == (tmp_path / "packed.bale").read_bytes()
    assert report.path == url(name) and report.file_bytes == local.file_bytes == len(stored)
    assert report.rows == 2000
    with pytest.raises(TargetExistsError):
        bale.pack(npy, url(name), storage_options=opts, **quiet)

    # A source read only in order: shuffle buckets on local disk, the output on S3.
    buckets = tmp_path / "buckets"
    buckets.mkdir()
    bale.pack(
        _InOrder(3000),
        url(f"shuffled-{upload}.bale"),
        storage_options=opts,
        temp_dir=buckets,
        memory_budget=32 << 10,
        **quiet,
    )
    bale.pack(_InOrder(3000), tmp_path / "shuffled.bale", memory_budget=32 << 10, **quiet)
    with (
        bale.open(url(f"shuffled-{upload}.bale"), storage_options=opts) as remote,
        bale.open(tmp_path / "shuffled.bale") as local_file,
    ):
        assert remote.metadata["bale.pack"]["shuffle_method"] == "buckets"
        assert_columns_equal(remote.read(), local_file.read())
    assert list(buckets.iterdir()) == []


def test_an_interrupted_pack_leaves_no_object(
    upload: str, opts: dict[str, Any], s3_client: Any
) -> None:
    name = f"interrupted-{upload}.bale"
    source = _InOrder(40_000, pad=1024, fail_at=20_000)  # ~20 MB read: parts sent, then ^C
    with pytest.raises(KeyboardInterrupt):
        bale.pack(source, url(name), storage_options=opts, shuffle=False, progress=False, workers=1)
    assert name not in keys(s3_client)
    assert uploads_of(s3_client, name) == []
