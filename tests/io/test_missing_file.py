"""Opening a local file that is not there: a bale error naming it, and after a killed writer
(NAME.partial left, NAME absent) the partial's size and the `bale repair` to run (issue 15,
item 6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bale
from bale.cli.main import EXIT_ERROR, EXIT_OK, main
from bale.errors import BaleError

KILLED_WRITER = """
import os, sys
import numpy as np
import bale
writer = bale.Writer(sys.argv[1], row_group_rows=100)
writer.write({"x": np.arange(1000)})
writer.flush()
os._exit(9)  # no close(), no abort(): what kill -9 leaves
"""


@pytest.fixture
def killed(tmp_path: Path) -> Path:
    """NAME after a writer was killed: only NAME.partial is on disk."""
    path = tmp_path / "photos.bale"
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)], timeout=120)
    assert not path.exists()
    assert Path(f"{path}.partial").stat().st_size > 0
    return path


def test_open_after_a_killed_writer_says_partial_and_repair(killed: Path) -> None:
    size = Path(f"{killed}.partial").stat().st_size
    with pytest.raises(FileNotFoundError) as raised:
        bale.open(killed)
    error = raised.value
    assert isinstance(error, BaleError)
    text = str(error)
    assert str(killed) in text
    assert f"{killed}.partial" in text and f"{size:,} bytes" in text
    assert f"bale repair {killed}" in text
    assert error.path == str(killed) and error.filename == str(killed)
    assert "[Errno" not in text  # bale's message, not OSError's bare one


def test_a_plain_missing_file_is_a_bale_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "missing.bale"
    with pytest.raises(FileNotFoundError) as raised:
        bale.open(path)
    assert isinstance(raised.value, BaleError)
    assert str(raised.value) == f"file {str(path)!r}: no such file"
    assert raised.value.errno == 2


@pytest.mark.parametrize("command", ["info", "verify"])
def test_cli_after_a_killed_writer_points_to_repair(
    command: str, killed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, str(killed)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"bale {command}: error: file {str(killed)!r}: no such file; ")
    assert ".partial" in err and f"run `bale repair {killed}`" in err

    # and the advice works
    assert main(["repair", str(killed)]) == EXIT_OK
    assert "recovered 1000 rows" in capsys.readouterr().out
    with bale.open(killed) as ds:
        np.testing.assert_array_equal(ds["x"][:], np.arange(1000))


def test_the_error_survives_pickling_with_its_message(killed: Path) -> None:
    # DataLoader workers send errors to the main process
    import pickle

    with pytest.raises(FileNotFoundError) as raised:
        bale.open(killed)
    Path(f"{killed}.partial").unlink()
    again = pickle.loads(pickle.dumps(raised.value))
    assert type(again) is type(raised.value) and str(again) == str(raised.value)
    assert again.filename == str(killed)


def test_repair_of_nothing_is_the_same_bale_error(tmp_path: Path) -> None:
    from bale.ops.repair import repair

    path = tmp_path / "never.bale"
    with pytest.raises(FileNotFoundError) as raised:
        repair(path)
    assert isinstance(raised.value, BaleError)
    assert str(raised.value) == (
        f"file {str(path)!r}: nothing to repair: neither it nor {str(path) + '.partial'!r} exists"
    )


def test_missing_file_error_is_public_and_survives_pickling(tmp_path: Path) -> None:
    """The error crosses DataLoader worker boundaries with its message and path intact."""
    import pickle

    target = tmp_path / "gone.bale"
    (tmp_path / "gone.bale.partial").write_bytes(b"x" * 10)
    with pytest.raises(bale.MissingFileError) as info:
        bale.open(target)
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is bale.MissingFileError
    assert isinstance(again, FileNotFoundError) and again.errno == 2
    assert str(again) == str(info.value) and "bale repair" in str(again)
    assert again.path == str(target)
