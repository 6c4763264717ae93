"""`bale show`: prints the PNG's path, takes ROWS / --rows / --random, refuses to overwrite,
reports errors as one line, and is in `bale --help` with examples."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

import bale
from bale.cli.main import EXIT_ERROR, EXIT_OK, main


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    rows = []
    for picture in (data.astronaut(), data.coffee(), data.chelsea(), data.camera()):
        out = io.BytesIO()
        Image.fromarray(picture).save(out, format="JPEG")
        rows.append(out.getvalue())
    path = tmp_path / "photos.bale"
    bale.write(
        path,
        {"image": rows * 3, "label": np.arange(12) % 4},
        metadata={"classes": ["astronaut", "coffee", "cat", "camera"]},
    )
    return path


def test_show_writes_the_sheet_and_prints_its_path(
    photos: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["show", str(photos), "0:4", "--size", "64"]) == EXIT_OK
    assert capsys.readouterr().out.strip() == "photos.png"
    with Image.open(tmp_path / "photos.png") as sheet:
        assert sheet.size == (2 * 72, 2 * (72 + 24))

    assert main(["show", str(photos)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("bale show: error: ") and "--overwrite" in err and "photos.png" in err

    out = tmp_path / "r.png"
    args = ["show", str(photos), "--random", "5", "--seed", "2", "-o", str(out), "--per-row", "5"]
    assert main(args) == EXIT_OK
    with Image.open(out) as sheet:
        assert sheet.size == (5 * (128 + 8), 128 + 8 + 24)
    assert main(["show", str(photos), "--rows", "1,2", "-o", str(out), "--overwrite"]) == EXIT_OK


def test_show_errors_are_one_line(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "x.png")
    assert main(["show", str(photos), "0:2", "--rows", "3", "-o", out]) == EXIT_ERROR
    assert "give ROWS or --rows, not both" in capsys.readouterr().err
    assert main(["show", str(photos), "12", "-o", out]) == EXIT_ERROR
    assert "outside the file's 12 rows" in capsys.readouterr().err
    assert main(["show", str(photos), "--column", "label", "-o", out]) == EXIT_ERROR
    assert "does not hold images" in capsys.readouterr().err
    assert main(["show", str(photos), "x:y", "-o", out]) == EXIT_ERROR
    assert "expected START:STOP" in capsys.readouterr().err
    assert not Path(out).exists()


def test_show_is_in_bale_help_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "show" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["show", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "bale show train.bale 0:16" in text
