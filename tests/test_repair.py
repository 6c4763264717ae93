"""`bale repair` on partials that hold no row group: empty, cut inside the header, header only
(issue 14, item 10: a writer killed before its first batch must not leave a repair loop)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bale
from bale._core.layout import read_header
from bale.cli.main import EXIT_OK, main
from bale.errors import FileLockedError, NotABaleFileError, TargetExistsError
from bale.io.source import LocalSource
from bale.ops.repair import repair


def header_bytes(tmp_path: Path) -> bytes:
    """The header (prefix, JSON, padding) of a real file with columns x and s."""
    full = tmp_path / "full.bale"
    bale.write(full, {"x": np.arange(10, dtype=np.int32), "s": [str(i) for i in range(10)]})
    source = LocalSource(str(full))
    try:
        end = read_header(source).end
    finally:
        source.close()
    return full.read_bytes()[:end]


def test_an_empty_partial_is_removed_with_nothing_to_recover(tmp_path: Path) -> None:
    target = tmp_path / "d.bale"
    partial = tmp_path / "d.bale.partial"
    partial.write_bytes(b"")
    report = repair(target)
    assert (report.rows, report.row_groups, report.removed) == (0, 0, True)
    assert "nothing to recover" in report.summary()
    assert str(partial) in report.summary()
    assert not partial.exists()
    assert not target.exists()
    bale.write(target, {"x": np.arange(3)})  # no loop: writing works again
    assert len(bale.open(target)) == 3


@pytest.mark.parametrize("cut", [5, 30, -10])
def test_a_partial_cut_inside_its_header_is_removed(tmp_path: Path, cut: int) -> None:
    head = header_bytes(tmp_path)
    json_end = len(head.rstrip(b"\0"))  # a cut in the padding keeps a complete header
    partial = tmp_path / "d.bale.partial"
    partial.write_bytes(head[:cut] if cut > 0 else head[: json_end + cut])
    report = repair(tmp_path / "d.bale")
    assert report.removed and report.rows == 0
    assert not partial.exists()


def test_a_header_only_partial_becomes_an_empty_file_with_its_schema(tmp_path: Path) -> None:
    (tmp_path / "d.bale.partial").write_bytes(header_bytes(tmp_path))
    report = repair(tmp_path / "d.bale")
    assert (report.rows, report.removed) == (0, False)
    ds = bale.open(tmp_path / "d.bale")
    assert len(ds) == 0 and ds.schema.names == ["x", "s"]


def test_a_partial_that_is_not_bale_data_is_kept(tmp_path: Path) -> None:
    partial = tmp_path / "d.bale.partial"
    partial.write_bytes(b"hello, this is someone else's file")
    with pytest.raises(NotABaleFileError):
        repair(tmp_path / "d.bale")
    assert partial.exists()


def test_the_empty_partial_of_a_live_writer_is_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "d.bale"
    writer = bale.Writer(target)  # nothing written yet: its partial is empty and locked
    try:
        with pytest.raises(FileLockedError):
            repair(target)
        assert (tmp_path / "d.bale.partial").exists()
        writer.write({"x": np.arange(4)})
    finally:
        writer.close()
    assert len(bale.open(target)) == 4


def test_a_new_writer_takes_over_an_abandoned_empty_partial(tmp_path: Path) -> None:
    (tmp_path / "d.bale.partial").write_bytes(b"")
    bale.write(tmp_path / "d.bale", {"x": np.arange(5)})
    assert len(bale.open(tmp_path / "d.bale")) == 5
    assert not (tmp_path / "d.bale.partial").exists()


def test_a_new_writer_on_a_partial_with_rows_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "d.bale.partial").write_bytes(header_bytes(tmp_path))
    with pytest.raises(TargetExistsError, match="bale repair") as info:
        bale.write(tmp_path / "d.bale", {"x": np.arange(5)})
    assert "overwrite=True" in str(info.value)


def test_cli_repair_of_an_empty_partial(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "d.bale.partial").write_bytes(b"")
    assert main(["repair", str(tmp_path / "d.bale")]) == EXIT_OK
    out = capsys.readouterr().out
    assert "nothing to recover" in out and "removed" in out
    assert not os.path.exists(tmp_path / "d.bale.partial")


def test_repairing_the_partial_by_its_own_name_publishes_the_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `bale repair NAME.partial` (the file a user sees after a killed writer) rebuilt it in place
    # and left it named .partial: NAME still read as missing
    target = tmp_path / "k.bale"
    code = (
        "import os, signal, numpy as np, bale\n"
        f"w = bale.Writer({str(target)!r}, row_group_rows=100)\n"
        "for i in range(5):\n"
        "    w.write({'x': np.arange(i * 100, i * 100 + 100)})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=120, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    partial = tmp_path / "k.bale.partial"
    assert partial.exists() and not target.exists()
    assert main(["repair", str(partial)]) == EXIT_OK
    assert "k.bale: recovered" in capsys.readouterr().out
    assert target.exists() and not partial.exists()
    rows = bale.open(target)["x"][:]
    assert len(rows) >= 100 and np.array_equal(rows, np.arange(len(rows)))


def test_a_complete_partial_from_an_aborted_writer_is_published_as_it_was(tmp_path: Path) -> None:
    """An aborted Writer finishes NAME.partial readable, with its footer; repair publishes it
    unchanged (its later metadata kept) instead of rebuilding it and reporting the old footer
    as 'dropped ... bytes of unfinished data'."""
    target = tmp_path / "d.bale"
    with pytest.raises(RuntimeError), bale.Writer(target, metadata={"v": 1}) as writer:
        writer.write({"x": np.arange(10, dtype=np.int64)})
        writer.metadata["epochs"] = 3  # set after creation: only the footer has it
        raise RuntimeError("the loop failed")
    partial = tmp_path / "d.bale.partial"
    before = partial.read_bytes()
    report = repair(target)
    assert report.published_as_is and report.bytes_dropped == 0
    assert "published" in report.summary() and "bytes of unfinished data" not in report.summary()
    assert target.read_bytes() == before and not partial.exists()
    with bale.open(target) as ds:
        assert ds["x"][:].tolist() == list(range(10))
        assert ds.metadata["epochs"] == 3
