"""The `bale` entry point itself: a reader that stops early (`bale info f | head`) ends the
command quietly, with the shell's SIGPIPE status, for every command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bale
from bale.cli.main import EXIT_BROKEN_PIPE

TIMEOUT_S = 60


def _bale_command() -> list[str]:
    bale_bin = Path(sys.executable).with_name("bale")
    return [str(bale_bin)] if bale_bin.exists() else [sys.executable, "-m", "bale.cli.main"]


@pytest.fixture
def wide(tmp_path: Path) -> Path:
    # Enough columns that `bale info` prints more than a pipe's buffer (64 KiB on Linux), so a
    # write fails while the command runs, not only at the final flush
    path = tmp_path / "wide.bale"
    bale.write(path, {f"column_{i:04d}_{'x' * 40}": np.arange(3) for i in range(1500)})
    return path


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small.bale"
    bale.write(path, {"x": np.arange(10)})
    return path


def _run_into_closed_pipe(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    # A pipe whose reader is gone before the command writes: what `| head` leaves once head exits
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [*_bale_command(), *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=TIMEOUT_S,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize("which", ["wide", "small"])
def test_info_into_a_closed_pipe_exits_quietly(which: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(which)
    done = _run_into_closed_pipe(["info", str(path)])
    assert done.stderr.decode() == ""  # was "bale info: error: [Errno 32] Broken pipe"
    assert done.returncode == EXIT_BROKEN_PIPE == 141


@pytest.mark.parametrize("command", ["verify", "info --json"])
def test_other_commands_into_a_closed_pipe_exit_quietly(command: str, small: Path) -> None:
    done = _run_into_closed_pipe([*command.split(), str(small)])
    assert done.stderr.decode() == ""
    assert done.returncode == EXIT_BROKEN_PIPE


def test_info_piped_into_head(wide: Path) -> None:
    # The report verbatim: `bale info f | head`, through a real shell pipeline
    bale_line = " ".join(f"'{part}'" for part in _bale_command())
    done = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {bale_line} info '{wide}' | head -n 3"],
        capture_output=True,
        timeout=TIMEOUT_S,
    )
    assert done.stdout.decode().splitlines()[0] == str(wide)
    assert b"Broken pipe" not in done.stderr and done.stderr.decode() == ""
    assert done.returncode == EXIT_BROKEN_PIPE


def test_a_missing_file_still_reports_its_error(tmp_path: Path) -> None:
    done = _run_into_closed_pipe(["info", str(tmp_path / "missing.bale")])
    assert "missing.bale" in done.stderr.decode()
    assert done.returncode == 2


def test_bale_help_lists_every_command_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    from bale.cli.main import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    listed = text.split("positional arguments:")[1].split("options:")[0]
    for command in ("info", "show", "verify", "repair", "export", "split", "concat", "merge"):
        assert f"\n    {command} " in listed
    for command in ("pack", "recompress", "codecs", "bench"):
        assert f"\n    {command}" in listed
    examples = text.split("examples:")[1]  # there were none
    for command in ("pack", "split", "info", "show", "codecs", "recompress", "verify", "repair"):
        assert f"\n  bale {command} " in examples
    assert "`bale COMMAND --help`" in examples
    assert max(len(line) for line in examples.splitlines()) <= 80
