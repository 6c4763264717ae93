"""The `bale` command: info, verify, repair, export, help text and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bale
from bale.cli.main import EXIT_DAMAGED, EXIT_ERROR, EXIT_OK, main


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "sample.bale"
    rng = np.random.default_rng(0)
    bale.write(
        path,
        {
            "image": rng.integers(0, 255, (300, 8, 8, 3), dtype=np.uint8),
            "label": np.arange(300, dtype=np.int64),
            "jpeg": [
                b"\xff\xd8\xff" + bytes(rng.integers(0, 255, i % 40, dtype=np.uint8))
                for i in range(300)
            ],
            "caption": [f"row {i} ü" for i in range(300)],
        },
        row_group_rows=64,
        metadata={"classes": ["cat", "dog"], "source": "test"},
    )
    return path


def test_info_describes_rows_columns_codecs_and_metadata(
    sample: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", str(sample)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "rows        300" in out
    assert "row groups  5" in out
    for expected in (
        "image",
        "uint8[8,8,3]",
        "label",
        "int64",
        "jpeg",
        "caption",
        "string",
        'classes: ["cat", "dog"]',
    ):
        assert expected in out
    assert "none" in out  # JPEG-looking bytes are stored uncompressed


def test_info_json_is_machine_readable(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--json", str(sample)]) == EXIT_OK
    info = json.loads(capsys.readouterr().out)
    assert info["rows"] == 300
    assert info["row_groups"] == 5
    columns = {c["name"]: c for c in info["columns"]}
    assert columns["image"]["shape"] == [8, 8, 3]
    assert columns["jpeg"]["codec"] == "none"
    assert columns["label"]["stored_bytes"] < columns["label"]["raw_bytes"]
    assert info["metadata"]["classes"] == ["cat", "dog"]


def test_verify_exit_code_says_intact_or_damaged(
    sample: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(sample)]) == EXIT_OK
    assert "OK (300 rows, 20 blocks checked)" in capsys.readouterr().out

    ds = bale.open(sample)
    block = ds.index.blocks[2, ds.schema.index("caption")]
    ds.close()
    with open(sample, "r+b") as f:
        f.seek(int(block["offset"]) + 3)
        byte = f.read(1)
        f.seek(int(block["offset"]) + 3)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert main(["verify", str(sample)]) == EXIT_DAMAGED
    out = capsys.readouterr().out
    assert "1 damaged block(s) of 20" in out
    assert "column 'caption'" in out and "rows 128..191" in out


def test_verify_of_a_file_that_is_not_bale_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "not.bale"
    path.write_bytes(b"PK\x03\x04 this is a zip file, not bale" * 4)
    assert main(["verify", str(path)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "not a bale file" in err and str(path) in err


def test_missing_file_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", str(tmp_path / "missing.bale")]) == EXIT_ERROR
    assert "missing.bale" in capsys.readouterr().err


def test_repair_recovers_an_interrupted_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cut.bale"
    writer = bale.Writer(path, row_group_rows=10)
    writer.write({"x": np.arange(55)})  # five complete groups on disk, five rows buffered
    partial = Path(str(path) + ".partial")
    copy = tmp_path / "copy.bale.partial"
    copy.write_bytes(partial.read_bytes())  # what a killed writer leaves behind
    writer.abort()

    assert main(["repair", str(tmp_path / "copy.bale")]) == EXIT_OK
    assert "recovered 50 rows in 5 row groups" in capsys.readouterr().out
    ds = bale.open(tmp_path / "copy.bale")
    np.testing.assert_array_equal(ds["x"][:], np.arange(50))
    assert main(["repair", str(tmp_path / "copy.bale")]) == EXIT_OK
    assert "already complete" in capsys.readouterr().out


def test_export_writes_npy_per_column_without_pickles(sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    assert main(["export", str(sample), str(out)]) == EXIT_OK
    ds = bale.open(sample)
    np.testing.assert_array_equal(np.load(out / "image.npy"), ds["image"][:])
    np.testing.assert_array_equal(np.load(out / "label.npy"), ds["label"][:])
    for name in ("jpeg", "caption"):
        data = np.load(out / f"{name}.data.npy", allow_pickle=False)
        offsets = np.load(out / f"{name}.offsets.npy", allow_pickle=False)
        rows = [bytes(data[offsets[i] : offsets[i + 1]]) for i in range(len(ds))]
        expected = ds[name][:]
        if name == "caption":
            rows = [r.decode() for r in rows]  # type: ignore[misc]
        assert rows == expected
    assert json.loads((out / "metadata.json").read_text())["classes"] == ["cat", "dog"]


def test_export_refuses_to_overwrite_without_the_flag(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    assert main(["export", str(sample), str(out), "--columns", "label"]) == EXIT_OK
    assert main(["export", str(sample), str(out), "--columns", "label"]) == EXIT_ERROR
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(sample), str(out), "--columns", "label", "--overwrite"]) == EXIT_OK
    assert main(["export", str(sample), str(out), "--columns", "nope"]) == EXIT_ERROR


@pytest.mark.parametrize("command", ["info", "verify", "repair", "export"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert len(capsys.readouterr().out) > 200


def test_console_script_runs(sample: Path) -> None:
    # The installed entry point, as a user runs it.
    bale_bin = Path(sys.executable).with_name("bale")
    command = [str(bale_bin)] if bale_bin.exists() else [sys.executable, "-m", "bale.cli.main"]
    done = subprocess.run(
        [*command, "verify", str(sample)], capture_output=True, text=True, env=os.environ.copy()
    )
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout
