"""Parts and merges on object storage (moto's S3 on loopback): a ``PartSet`` whose target and
parts are URLs; ``bale.merge`` from local parts to an object and from objects to a local file;
``bale.concat`` to a URL; refusals that leave no object under the target."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from remote_helpers import (
    BUCKET,
    REQUIRES,
    S3_SECRET,
    assert_columns_equal,
    bounded,
    keys,
    skip_without,
    url,
)

import bale
from bale.errors import BaleError, SchemaError
from bale.ops.parts import PartSet
from bale.ops.verify import verify


@pytest.fixture
def upload(upload: str) -> str:
    """The shared ``upload`` fixture, and s3fs besides: the tests list parts through fsspec."""
    skip_without(*REQUIRES["fsspec-s3"])
    return upload


def columns(start: int, stop: int) -> dict[str, Any]:
    rng = np.random.default_rng(start)
    n = stop - start
    return {
        "id": np.arange(start, stop, dtype=np.int64),
        "image": rng.integers(0, 255, (n, 24, 24, 3), dtype=np.uint8),  # incompressible
        "half": rng.standard_normal((n, 3)).astype(np.float16),
        "blob": [rng.bytes(int(k)) for k in rng.integers(0, 300, n)],
        "name": [f"row {i} é" for i in range(start, stop)],
    }


def joined(*pieces: dict[str, Any]) -> dict[str, Any]:
    return {
        name: np.concatenate([p[name] for p in pieces])
        if isinstance(values, np.ndarray)
        else [v for p in pieces for v in p[name]]
        for name, values in pieces[0].items()
    }


BOUNDS = [0, 1500, 1500, 4000, 6000]  # part 1 is an empty task; ~10 MiB in all


def test_a_part_set_on_object_storage_merges_to_an_object(
    upload: str, opts: dict[str, Any], s3_client: Any, tmp_path: Path
) -> None:
    target = url(f"merge-{upload}/train.bale")
    parts = PartSet(target, storage_options=opts)
    for i in reversed(range(len(BOUNDS) - 1)):  # finished in any order
        bounded(lambda i=i: parts.write_part(i, columns(BOUNDS[i], BOUNDS[i + 1])), 60)
    prefix = f"merge-{upload}/train.bale.parts/"
    assert keys(s3_client, prefix) == [
        f"{prefix}part-000000.bale",
        f"{prefix}part-000001.empty",
        f"{prefix}part-000002.bale",
        f"{prefix}part-000003.bale",
    ]
    done = parts.completed()
    assert sorted(done) == [0, 1, 2, 3] and [done[i].rows for i in range(4)] == [
        1500,
        0,
        2500,
        2000,
    ]
    # A re-run skips what is complete (no upload: the object is not replaced).
    before = s3_client.head_object(Bucket=BUCKET, Key=f"{prefix}part-000002.bale")["ETag"]
    assert parts.write_part(2, iter([])).rows == 2500
    assert s3_client.head_object(Bucket=BUCKET, Key=f"{prefix}part-000002.bale")["ETag"] == before

    report = bounded(lambda: parts.merge(4), 60)
    assert report.rows == 6000 and report.path == target
    assert keys(s3_client, prefix) == []  # the parts are removed after the merge
    with bale.open(target, storage_options=opts) as ds:
        assert_columns_equal(
            ds.read(), joined(*(columns(a, b) for a, b in itertools.pairwise(BOUNDS)))
        )
    assert verify(target, storage_options=opts).ok

    # The same rows merged locally make the same bytes.
    local = PartSet(tmp_path / "train.bale")
    for i in range(len(BOUNDS) - 1):
        local.write_part(i, columns(BOUNDS[i], BOUNDS[i + 1]))
    local.merge(4)
    stored = s3_client.get_object(Bucket=BUCKET, Key=f"merge-{upload}/train.bale")["Body"].read()
    assert stored == (tmp_path / "train.bale").read_bytes()


@pytest.mark.parametrize("backend", ["obstore"])
def test_merge_between_local_files_and_objects(
    upload: str,
    opts: dict[str, Any],
    s3_client: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    local_parts = []
    for i, (a, b) in enumerate(itertools.pairwise(BOUNDS)):
        if a < b:
            local_parts.append(tmp_path / f"p{i}.bale")
            bale.write(local_parts[-1], columns(a, b))
    up = url("mixed/up.bale")
    bale.merge(local_parts, up, storage_options=opts)
    remote_parts = []
    for i, path in enumerate(local_parts):
        remote_parts.append(url(f"mixed/p{i}.bale"))
        s3_client.put_object(Bucket=BUCKET, Key=f"mixed/p{i}.bale", Body=path.read_bytes())
    down = tmp_path / "down.bale"
    report = bale.merge(remote_parts, down, storage_options=opts, verify=True)
    assert report.rows == 6000 and report.sources[0].path == remote_parts[0]
    assert s3_client.get_object(Bucket=BUCKET, Key="mixed/up.bale")["Body"].read() == (
        down.read_bytes()
    )
    concat = url("mixed/concat.bale")
    joined_report = bale.concat([remote_parts[0], local_parts[1]], concat, storage_options=opts)
    assert joined_report.path == concat and joined_report.rows == 1500 + 2500
    assert (
        joined_report.file_bytes
        == s3_client.head_object(Bucket=BUCKET, Key="mixed/concat.bale")["ContentLength"]
    )
    with bale.open(concat, storage_options=opts) as ds:
        np.testing.assert_array_equal(ds.read(columns=["id"])["id"], np.arange(4000))

    # `bale concat` writes to a URL too, with --storage-option.
    from bale.cli.main import main

    flags = [f"--storage-option={k}={json.dumps(v)}" for k, v in opts.items()]
    cli_url = url("mixed/cli.bale")
    assert main(["concat", str(local_parts[0]), remote_parts[1], cli_url, *flags]) == 0
    with bale.open(cli_url, storage_options=opts) as ds:
        np.testing.assert_array_equal(ds.read(columns=["id"])["id"], np.arange(4000))
    assert S3_SECRET not in capsys.readouterr().out


@pytest.mark.parametrize("backend", ["obstore"])
def test_refused_merges_leave_no_object(
    upload: str, opts: dict[str, Any], s3_client: Any, tmp_path: Path
) -> None:
    target = url("refused/train.bale")
    parts = PartSet(target, storage_options=opts)
    parts.write_part(0, columns(0, 10))
    with pytest.raises(BaleError, match="missing: 1-2") as caught:
        parts.merge(3)
    assert "refused/train.bale.parts" in str(caught.value) and S3_SECRET not in str(caught.value)
    other = columns(10, 20)
    other["half"] = other["half"].astype(np.float32)
    parts.write_part(1, other)
    parts.write_part(2, columns(20, 30))
    with pytest.raises(SchemaError) as refused:
        parts.merge(3)
    assert refused.value.column == "half" and "part-000001.bale" in str(refused.value)
    assert keys(s3_client, "refused/train.bale") == [
        f"refused/train.bale.parts/part-00000{i}.bale" for i in range(3)
    ]
    assert s3_client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
