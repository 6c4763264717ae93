"""`bale.split` and `bale.export` (and their commands) with URL inputs and outputs on moto's S3:
the same rows and bytes as the local operation, no object and no incomplete upload left by a
failure, storage options applied to inputs and outputs, credentials never shown or recorded."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from remote_helpers import (
    BUCKET,
    PART,
    S3_KEY,
    S3_SECRET,
    bounded,
    keys,
    url,
)
from remote_servers import RangeServer

import bale
from bale.cli.main import EXIT_DAMAGED, EXIT_ERROR, EXIT_OK, main
from bale.errors import BaleWriteError, CorruptFileError, TargetExistsError
from bale.ops.export import export

ROWS = 400


def write_sample(path: Path, *, raw_bytes: int = 0, shuffled: bool = True) -> Path:
    """ROWS rows in row groups of 50: ids, small images, labels, captions; ``raw_bytes`` of
    incompressible bytes per row stored as they are (codec none), to make objects of several
    parts."""
    rng = np.random.default_rng(0)
    columns: dict[str, Any] = {
        "id": np.arange(ROWS),
        "image": rng.integers(0, 255, (ROWS, 4, 4, 3), dtype=np.uint8),
        "label": np.repeat(np.arange(4), ROWS // 4),
        "caption": [f"row {i} é" for i in range(ROWS)],
    }
    if raw_bytes:
        columns["raw"] = rng.integers(0, 256, (ROWS, raw_bytes), dtype=np.uint8)
    bale.write(
        path,
        columns,
        row_group_rows=50,
        codecs={"raw": "none"} if raw_bytes else None,
        metadata={"bale.pack": {"shuffled": True}} if shuffled else {},
    )
    return path


def corrupt_block(path: Path, group: int, column: str) -> None:
    """Flip one byte inside the block of ``column`` in row group ``group``."""
    with bale.open(path) as ds:
        record = ds.index.blocks[group, ds.schema.index(column)]
    with path.open("r+b") as f:
        f.seek(int(record["offset"]) + 3)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))


def put(admin: Any, key: str, path: Path) -> str:
    admin.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
    return url(key)


def incomplete_uploads(admin: Any) -> list[str]:
    return [u["Key"] for u in admin.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])]


def body(admin: Any, key: str) -> bytes:
    return bytes(admin.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def no_secret(*texts: str) -> None:
    for text in texts:
        assert S3_SECRET not in text and S3_KEY not in text and "hunter2" not in text


# -- split ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [True, False], ids=["random", "contiguous"])
def test_split_to_s3_writes_the_bytes_of_a_local_split(
    upload: str,
    opts: dict[str, Any],
    s3_client: Any,
    tmp_path: Path,
    shuffle: bool,
) -> None:
    source = write_sample(tmp_path / "all.bale")
    prefix = f"split-local-{upload}-{shuffle}"
    local = bale.split(source, out_dir=tmp_path / "local", seed=3, shuffle=shuffle)
    remote = bounded(
        lambda: bale.split(
            source,
            out_dir=f"s3://{BUCKET}/{prefix}",
            seed=3,
            shuffle=shuffle,
            storage_options=opts,
        )
    )
    assert remote.method == local.method == ("random" if shuffle else "contiguous")
    assert keys(s3_client, prefix) == [f"{prefix}/{n}.bale" for n in ("test", "train", "valid")]
    for mine, want in zip(remote.outputs, local.outputs, strict=True):
        key = f"{prefix}/{mine.name}.bale"
        assert mine.path == f"s3://{BUCKET}/{key}"
        assert (mine.rows, mine.groups_copied, mine.rows_reencoded) == (
            want.rows,
            want.groups_copied,
            want.rows_reencoded,
        )
        # the same input path is recorded, so the whole file is the same, byte for byte
        assert body(s3_client, key) == Path(want.path).read_bytes()
        assert mine.file_bytes == want.file_bytes
    assert incomplete_uploads(s3_client) == []


def test_split_from_s3_to_s3_beside_the_input_equals_a_local_split(
    upload: str, opts: dict[str, Any], s3_client: Any, tmp_path: Path
) -> None:
    source = write_sample(tmp_path / "all.bale", shuffled=False)
    url = put(s3_client, f"s3s3-{upload}/all.bale", source)
    ratios, names = (0.5, 0.3, 0.2), ("a", "b", "c")
    report = bounded(
        lambda: bale.split(url, ratios, names=names, stratify="label", seed=5, storage_options=opts)
    )
    local = bale.split(source, ratios, names=names, stratify="label", seed=5)
    assert report.source == url and report.method == "stratified"
    assert keys(s3_client, f"s3s3-{upload}/") == [
        f"s3s3-{upload}/{n}.bale" for n in ("a", "all", "b", "c")
    ]
    for mine, want in zip(report.outputs, local.outputs, strict=True):
        with bale.open(mine.path, storage_options=opts) as got, bale.open(want.path) as expected:
            assert len(got) == mine.rows == want.rows
            got_rows, want_rows = got.read(), expected.read()
            for column in ("id", "image", "label"):
                np.testing.assert_array_equal(got_rows[column], want_rows[column])
            assert got_rows["caption"] == want_rows["caption"]
            assert got.metadata["bale.split"]["source"] == url


def test_storage_options_with_only_local_paths_are_an_error(
    opts: dict[str, Any], tmp_path: Path
) -> None:
    source = write_sample(tmp_path / "all.bale")
    with pytest.raises(ValueError, match="storage_options apply to URLs"):
        bale.split(source, out_dir=tmp_path / "o", storage_options=opts)
    with pytest.raises(ValueError, match="storage_options apply to URLs"):
        export(source, tmp_path / "o", storage_options=opts)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.bale"]


def test_a_corrupt_block_mid_split_leaves_no_object_and_no_upload(
    upload: str, opts: dict[str, Any], s3_client: Any, tmp_path: Path
) -> None:
    source = write_sample(tmp_path / "all.bale", raw_bytes=64 << 10)  # 25 MiB
    # whole, each output spans several parts: uploads are under way when the damage is met
    sizes = [o.file_bytes for o in bale.split(source, (0.5, 0.5), names=("p", "q")).outputs]
    assert min(sizes) > 2 * PART
    corrupt_block(source, 7, "caption")
    prefix = f"corrupt-{upload}"
    with pytest.raises(CorruptFileError, match="'caption'"):
        bounded(
            lambda: bale.split(
                source,
                (0.5, 0.5),
                names=("p", "q"),
                out_dir=f"s3://{BUCKET}/{prefix}",
                shuffle=True,
                storage_options=opts,
            ),
            seconds=60,
        )
    assert keys(s3_client, prefix) == []
    assert incomplete_uploads(s3_client) == []


@pytest.mark.parametrize("size", ["one PUT", "multipart"])
def test_a_missing_bucket_for_the_second_output_leaves_nothing_under_the_first(
    upload: str, opts: dict[str, Any], s3_client: Any, tmp_path: Path, size: str
) -> None:
    """The first output lands in the test bucket, the second in a bucket that does not exist.
    Small outputs are one PUT each at close: the first is published, then the second fails,
    and the first is deleted again. Large ones fail at the second's first part: the first's
    upload is aborted."""
    raw = 64 << 10 if size == "multipart" else 0
    source = write_sample(tmp_path / "all.bale", raw_bytes=raw)
    name = f"missing-{upload}-{size.replace(' ', '')}.bale"
    with pytest.raises(BaleWriteError) as failed:
        bounded(
            lambda: bale.split(
                source,
                (0.5, 0.5),
                names=(BUCKET, "no-such-bucket-here"),
                out_dir="s3://",
                pattern="{name}/" + name,
                storage_options=opts,
            ),
            seconds=60,
        )
    assert failed.value.errno == errno.ENOENT
    assert failed.value.filename == f"s3://no-such-bucket-here/{name}"
    no_secret(str(failed.value), repr(failed.value), str(failed.value.args))
    assert keys(s3_client, name) == []
    assert incomplete_uploads(s3_client) == []


def test_split_refuses_existing_objects_before_writing_unless_overwrite(
    opts: dict[str, Any], s3_client: Any, tmp_path: Path
) -> None:
    source = write_sample(tmp_path / "all.bale")
    s3_client.put_object(Bucket=BUCKET, Key="exists/valid.bale", Body=b"old")
    target = f"s3://{BUCKET}/exists"
    with pytest.raises(TargetExistsError) as refused:
        bale.split(source, out_dir=target, storage_options=opts)
    assert refused.value.path == f"{target}/valid.bale"
    assert keys(s3_client, "exists/") == ["exists/valid.bale"]
    assert body(s3_client, "exists/valid.bale") == b"old"
    bale.split(source, out_dir=target, storage_options=opts, overwrite=True)
    assert keys(s3_client, "exists/") == [f"exists/{n}.bale" for n in ("test", "train", "valid")]
    with bale.open(f"{target}/valid.bale", storage_options=opts) as ds:
        assert len(ds) == ROWS // 10


def test_split_outputs_only_where_bale_writes_and_never_onto_the_input(
    opts: dict[str, Any], s3_client: Any, range_server: RangeServer, tmp_path: Path
) -> None:
    source = write_sample(tmp_path / "all.bale")
    range_server.objects["/data/all.bale"] = source.read_bytes()
    http_url = range_server.url("/data/all.bale")
    with pytest.raises(ValueError, match="s3://, gs:// and az://"):
        bale.split(http_url)  # the outputs would go beside the input, over HTTP
    with pytest.raises(ValueError, match="s3://, gs:// and az://"):
        bale.split(source, out_dir="https://example.invalid/splits")
    url = put(s3_client, "same/all.bale", source)
    with pytest.raises(ValueError, match="replace the input"):
        bale.split(url, names=("all", "x", "y"), ratios=(0.5, 0.25, 0.25), storage_options=opts)
    with pytest.raises(ValueError, match="replace the input"):
        bale.split(
            url.replace("s3://", "s3a://"),
            out_dir=f"s3://{BUCKET}/same",
            names=("all", "x", "y"),
            ratios=(0.5, 0.25, 0.25),
            storage_options=opts,
        )
    assert keys(s3_client, "same/") == ["same/all.bale"]


def test_credentials_in_the_input_url_are_never_recorded(
    moto_endpoint: str,
    s3_client: Any,
    range_server: RangeServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A presigned HTTPS input, outputs on S3. One ``storage_options`` serves input and outputs
    alike, and S3's keys mean nothing to an HTTP server: S3's credentials come from the
    environment here."""
    for name, value in (
        ("AWS_ACCESS_KEY_ID", S3_KEY),
        ("AWS_SECRET_ACCESS_KEY", S3_SECRET),
        ("AWS_ENDPOINT_URL", moto_endpoint),
        ("AWS_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    source = write_sample(tmp_path / "all.bale")
    range_server.objects["/signed/all.bale"] = source.read_bytes()
    signed = range_server.url("/signed/all.bale") + "?X-Amz-Signature=hunter2&X-Amz-Expires=60"
    report = bounded(lambda: bale.split(signed, out_dir=f"s3://{BUCKET}/signed"))
    shown = range_server.url("/signed/all.bale") + "?X-Amz-Signature=***&X-Amz-Expires=***"
    assert report.source == shown
    no_secret(report.summary())
    for output in report.outputs:
        raw = body(s3_client, output.path.removeprefix(f"s3://{BUCKET}/"))
        assert b"hunter2" not in raw and shown.encode() in raw
        with bale.open(output.path) as ds:
            assert ds.metadata["bale.split"]["source"] == shown


# -- the command ------------------------------------------------------------------------------


def flags(options: dict[str, Any]) -> list[str]:
    pairs = [f"{k}={json.dumps(v) if isinstance(v, dict) else v}" for k, v in options.items()]
    return [arg for pair in pairs for arg in ("--storage-option", pair)]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = bounded(lambda: main(list(argv)), seconds=60)
    out, err = capsys.readouterr()
    no_secret(out, err)
    return code, out, err


def test_cli_split_to_and_from_s3_with_storage_options(
    opts: dict[str, Any], s3_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_sample(tmp_path / "all.bale")
    target = f"s3://{BUCKET}/cli"
    code, out, _ = run_cli(capsys, "split", str(source), "--out-dir", target, *flags(opts))
    assert code == EXIT_OK
    assert f"train  {target}/train.bale: 320 rows (300 copied as stored in 6 row groups" in out
    code, out, _ = run_cli(
        capsys, "split", f"{target}/train.bale", "--ratios", "0.5,0.5", "--names", "x,y",
        "--pattern", "{stem}-{name}.bale", *flags(opts),
    )  # fmt: skip
    assert code == EXIT_OK and out.startswith(f"{target}/train.bale: 320 rows")
    assert keys(s3_client, "cli/") == sorted(
        f"cli/{n}.bale" for n in ("test", "train", "train-x", "train-y", "valid")
    )
    with bale.open(f"{target}/train-y.bale", storage_options=opts) as ds:
        np.testing.assert_array_equal(ds["id"][:], np.arange(160, 320))

    code, _, err = run_cli(capsys, "split", str(source), "--out-dir", target, *flags(opts))
    assert code == EXIT_ERROR and "exists" in err and f"{target}/train.bale" in err
    code, _, err = run_cli(capsys, "split", str(source), "--out-dir", target)  # no credentials
    assert code == EXIT_ERROR and "cli/" in err
    code, _, err = run_cli(capsys, "split", str(source), *flags(opts))
    assert code == EXIT_ERROR and "applies to URL" in err


def test_cli_split_of_a_damaged_object_exits_1_and_leaves_nothing(
    opts: dict[str, Any], s3_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_sample(tmp_path / "all.bale")
    corrupt_block(source, 2, "caption")
    url = put(s3_client, "damaged/all.bale", source)
    code, _, err = run_cli(capsys, "split", url, "--shuffle", *flags(opts))
    assert code == EXIT_DAMAGED and "'caption'" in err and url in err
    assert keys(s3_client, "damaged/") == ["damaged/all.bale"]
    assert incomplete_uploads(s3_client) == []


# -- export -----------------------------------------------------------------------------------


def test_export_to_and_from_s3_writes_the_bytes_of_a_local_export(
    upload: str, opts: dict[str, Any], s3_client: Any, tmp_path: Path
) -> None:
    source = write_sample(tmp_path / "all.bale", raw_bytes=32 << 10)  # raw.npy: 12.5 MiB
    export(source, tmp_path / "want")
    want = {p.name: p.read_bytes() for p in (tmp_path / "want").iterdir()}
    assert len(want) == 7
    prefix = f"export-{upload}"
    written = bounded(lambda: export(source, f"s3://{BUCKET}/{prefix}", storage_options=opts))
    assert written[-1] == f"s3://{BUCKET}/{prefix}/metadata.json"
    assert keys(s3_client, prefix + "/") == sorted(f"{prefix}/{n}" for n in want)
    for name, content in want.items():
        assert body(s3_client, f"{prefix}/{name}") == content, name
    url = put(s3_client, f"{prefix}-in/all.bale", source)
    bounded(lambda: export(url, f"s3://{BUCKET}/{prefix}-out/", ["caption"], storage_options=opts))
    assert keys(s3_client, f"{prefix}-out/") == [
        f"{prefix}-out/{n}" for n in ("caption.data.npy", "caption.offsets.npy", "metadata.json")
    ]
    assert body(s3_client, f"{prefix}-out/caption.data.npy") == want["caption.data.npy"]
    assert incomplete_uploads(s3_client) == []


def test_export_to_s3_refuses_existing_objects_before_writing_and_stops_cleanly(
    opts: dict[str, Any], s3_client: Any, tmp_path: Path
) -> None:
    source = write_sample(tmp_path / "all.bale")
    s3_client.put_object(Bucket=BUCKET, Key="exp/label.npy", Body=b"old")
    with pytest.raises(TargetExistsError, match="overwrite") as refused:
        export(source, f"s3://{BUCKET}/exp", storage_options=opts)
    assert refused.value.path == f"s3://{BUCKET}/exp/label.npy"
    assert keys(s3_client, "exp/") == ["exp/label.npy"]

    corrupt_block(source, 4, "caption")  # the columns before it are exported, whole
    with pytest.raises(CorruptFileError, match="'caption'"):
        export(source, f"s3://{BUCKET}/exp", storage_options=opts, overwrite=True)
    assert keys(s3_client, "exp/") == ["exp/id.npy", "exp/image.npy", "exp/label.npy"]
    assert body(s3_client, "exp/label.npy") != b"old"
    assert incomplete_uploads(s3_client) == []
    with pytest.raises(ValueError, match="s3://, gs:// and az://"):
        export(source, "https://example.invalid/out")


def test_cli_export_to_s3(
    opts: dict[str, Any], s3_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_sample(tmp_path / "all.bale")
    target = f"s3://{BUCKET}/cli-export"
    code, out, _ = run_cli(capsys, "export", str(source), target, "--columns", "id", *flags(opts))
    assert code == EXIT_OK and f"exported 1 column(s) of {source} to {target}" in out
    assert keys(s3_client, "cli-export/") == ["cli-export/id.npy", "cli-export/metadata.json"]
    code, _, err = run_cli(capsys, "export", str(source), target, "--columns", "id", *flags(opts))
    assert code == EXIT_ERROR and "exists" in err and "--overwrite" in err
    code, _, err = run_cli(capsys, "export", str(source), "https://example.invalid/x")
    assert code == EXIT_ERROR and "s3://, gs:// and az://" in err
