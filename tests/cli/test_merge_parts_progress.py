"""`bale merge --parts N OUT` draws the same progress bar as a merge of named files (issue 15,
item 17): on a terminal, silent with -q or when stderr is not a terminal, and off by default in
``PartSet.merge``."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

import bale
from bale.cli.main import EXIT_OK, main
from bale.ops.parts import PartSet

pytest.importorskip("tqdm")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _write_parts(target: Path, count: int = 3) -> None:
    parts = PartSet(target)
    for index in range(count):
        rows = np.arange(index * 100, (index + 1) * 100)
        parts.write_part(index, {"x": rows}, row_group_rows=50)


@pytest.mark.parametrize(("flags", "drawn"), [([], True), (["-q"], False)])
def test_merge_parts_draws_a_bar_on_a_terminal(
    flags: list[str], drawn: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.bale"
    _write_parts(target)
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["merge", "--parts", "3", str(target), *flags]) == EXIT_OK
    assert ("merging" in terminal.getvalue()) is drawn
    with bale.open(target) as merged:
        np.testing.assert_array_equal(merged["x"][:], np.arange(300))


def test_merge_parts_is_silent_when_stderr_is_not_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.bale"
    _write_parts(target)
    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    assert main(["merge", "--parts", "3", str(target)]) == EXIT_OK
    assert log.getvalue() == ""


def test_partset_merge_draws_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    _write_parts(tmp_path / "a.bale")
    assert PartSet(tmp_path / "a.bale").merge(3).rows == 300
    assert terminal.getvalue() == ""  # progress=False by default
    _write_parts(tmp_path / "b.bale")
    assert PartSet(tmp_path / "b.bale").merge(3, progress=True).rows == 300
    assert "merging" in terminal.getvalue()
