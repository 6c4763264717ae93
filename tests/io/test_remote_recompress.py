"""`bale.recompress` and `bale show` with URLs on moto's S3: an object re-encoded into another
object holds the bytes of the local recompress; a failure publishes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from remote_helpers import BUCKET, bounded, keys

import bale
from bale.cli.main import EXIT_OK, main
from bale.errors import CorruptFileError
from bale.ops.recompress import recompress


def _source(path: Path) -> Path:
    rng = np.random.default_rng(2)
    bale.write(
        path,
        {
            "x": np.cumsum(rng.standard_normal((4000, 16)), axis=0).astype("float32"),
            "label": rng.integers(0, 3, 4000),
        },
        row_group_rows=1000,
        metadata={"classes": ["a", "b", "c"]},
    )
    return path


def test_recompress_from_and_to_s3_equals_the_local_file(
    upload: str, opts: dict[str, Any], s3_client: Any, tmp_path: Path
) -> None:
    source = _source(tmp_path / "in.bale")
    recompress(source, tmp_path / "want.bale", "zstd:5")
    want = (tmp_path / "want.bale").read_bytes()
    prefix = f"recompress-{upload}"
    s3_client.put_object(Bucket=BUCKET, Key=f"{prefix}/in.bale", Body=source.read_bytes())
    target = f"s3://{BUCKET}/{prefix}/out.bale"
    report = bounded(
        lambda: recompress(
            f"s3://{BUCKET}/{prefix}/in.bale", target, "zstd:5", storage_options=opts
        )
    )
    assert report.path == target and report.file_bytes_after == len(want)
    body = s3_client.get_object(Bucket=BUCKET, Key=f"{prefix}/out.bale")["Body"].read()
    assert body == want


def test_a_damaged_input_publishes_no_object(
    opts: dict[str, Any], s3_client: Any, tmp_path: Path
) -> None:
    source = _source(tmp_path / "in.bale")
    with bale.open(source) as ds:
        offset = int(ds.index.blocks[2, 0]["offset"])
    data = bytearray(source.read_bytes())
    data[offset + 5] ^= 0xFF
    source.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="'x'"):
        bounded(
            lambda: recompress(
                source, f"s3://{BUCKET}/recompress-damaged/out.bale", "lz4", storage_options=opts
            )
        )
    assert keys(s3_client, "recompress-damaged/") == []


def test_cli_recompress_and_show_with_urls(
    opts: dict[str, Any], s3_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _source(tmp_path / "in.bale")
    pairs = [f"{k}={json.dumps(v) if isinstance(v, dict) else v}" for k, v in opts.items()]
    flags = [arg for pair in pairs for arg in ("--storage-option", pair)]
    target = f"s3://{BUCKET}/recompress-cli/out.bale"
    args = ["recompress", str(source), target, "--codec", "lz4", *flags]
    assert main(args) == EXIT_OK
    assert keys(s3_client, "recompress-cli/") == ["recompress-cli/out.bale"]
    assert f"{target}: 4000 rows" in capsys.readouterr().out

    pictures = tmp_path / "pictures.bale"
    bale.write(pictures, {"image": np.full((4, 20, 30, 3), 200, np.uint8), "label": np.arange(4)})
    s3_client.put_object(
        Bucket=BUCKET, Key="recompress-cli/pictures.bale", Body=pictures.read_bytes()
    )
    sheet = tmp_path / "sheet.png"
    args = ["show", f"s3://{BUCKET}/recompress-cli/pictures.bale", "-o", str(sheet), *flags]
    assert main(args) == EXIT_OK
    assert capsys.readouterr().out.strip() == str(sheet) and sheet.exists()
