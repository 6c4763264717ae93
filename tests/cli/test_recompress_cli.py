"""`bale recompress`: --codec auto / CODEC / COLUMN=CODEC, the report printed, errors as one line
with exit codes, and the command in `bale --help` with examples."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

import bale
from bale.cli.main import EXIT_DAMAGED, EXIT_ERROR, EXIT_OK, main
from bale.cli.recompress import parse_codec_args
from bale.codecs import codec_spec


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "feats.bale"
    rng = np.random.default_rng(0)
    bale.write(
        path,
        {
            "x": rng.standard_normal((2000, 4)).astype("float32"),
            "label": rng.integers(0, 3, 2000),
            "path": [f"img/{i}.jpg" for i in range(2000)],
        },
        metadata={"classes": ["a", "b", "c"]},
        row_group_rows=500,
    )
    return path


def _codecs(path: Path) -> dict[str, str]:
    with bale.open(path) as ds:
        return {c.name: codec_spec(c.codec) for c in ds.schema}


def test_column_codecs_and_a_default_for_the_rest(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.bale"
    code = main(["recompress", str(source), str(out), "--codec", "lz4", "label=none", "-q"])
    assert code == EXIT_OK
    assert _codecs(out) == {"x": "lz4", "label": "none", "path": "lz4"}
    printed = capsys.readouterr().out
    assert f"{out}: 2000 rows in 4 row group(s) from {source}" in printed
    assert "label" in printed and "none" in printed and "verified:" in printed
    with bale.open(source) as a, bale.open(out) as b:
        np.testing.assert_array_equal(a.read()["x"], b.read()["x"])
        assert a.metadata == b.metadata

    out2 = tmp_path / "out2.bale"
    assert main(["recompress", str(source), str(out2), "--codec", "x=zstd:5"]) == EXIT_OK
    assert _codecs(out2) == {**_codecs(source), "x": "zstd:5"}


def test_auto_by_default_and_json(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.bale"
    assert main(["recompress", str(source), str(out), "--goal", "smallest", "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in report["columns"]] == ["x", "label", "path"]
    assert all(c["why"] == "auto, goal smallest" for c in report["columns"])
    assert report["file_bytes_after"] == out.stat().st_size
    for name, spec in report["advice"].items():
        assert _codecs(out)[name].split(":")[0] == spec.split(":")[0]


def test_errors_are_one_line_with_an_exit_code(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.bale"
    assert main(["recompress", str(source), str(out), "--codec", "zstd", "lz4"]) == EXIT_ERROR
    assert "two codecs for every column ('zstd' and 'lz4')" in capsys.readouterr().err
    assert main(["recompress", str(source), str(out), "--codec", "nope=zstd"]) == EXIT_ERROR
    assert "unknown columns ['nope']" in capsys.readouterr().err
    assert main(["recompress", str(source), str(out), "--codec", "x=zip"]) == EXIT_ERROR
    assert "invalid codec spec 'zip'" in capsys.readouterr().err
    assert not out.exists()
    out.write_bytes(b"")
    assert main(["recompress", str(source), str(out), "--codec", "lz4"]) == EXIT_ERROR
    assert "exists" in capsys.readouterr().err
    with open(source, "r+b") as f:  # damage the data of the first block
        f.seek(bale.open(source).index.blocks[0, 0]["offset"] + 1)
        f.write(b"\x00\x01\x02")
    assert main(["recompress", str(source), str(out), "--codec", "lz4", "--overwrite"]) == (
        EXIT_DAMAGED
    )
    assert "checksum" in capsys.readouterr().err


def test_parse_codec_args() -> None:
    assert parse_codec_args(None) == ("auto", {})
    assert parse_codec_args(["auto", "a=none", "b=c=zstd:3"]) == (
        "auto",
        {"a": "none", "b=c": "zstd:3"},
    )
    assert parse_codec_args(["a=lz4"]) == (None, {"a": "lz4"})
    with pytest.raises(ValueError, match="given twice"):
        parse_codec_args(["a=lz4", "a=zstd"])
    with pytest.raises(ValueError, match="expected CODEC or COLUMN=CODEC"):
        parse_codec_args(["a="])


def test_listed_in_bale_help_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "recompress" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["recompress", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "--codec auto" in text and "byte for byte" in text


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_bar_on_a_terminal_and_none_with_quiet(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["recompress", str(source), str(tmp_path / "a.bale"), "--codec", "lz4"]) == 0
    assert "recompressing" in terminal.getvalue() and "rows" in terminal.getvalue()
    quiet = _Terminal()
    monkeypatch.setattr("sys.stderr", quiet)
    assert main(["recompress", str(source), str(tmp_path / "b.bale"), "--codec", "lz4", "-q"]) == 0
    assert quiet.getvalue() == ""
