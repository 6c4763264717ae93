"""The shared progress bar: drawn only on a terminal, silent when quiet or piped."""

from __future__ import annotations

import io

import pytest

from bale._progress import Progress, progress_wanted


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_is_drawn_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tqdm")
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert progress_wanted()
    with Progress(True, 10, "checking", unit="blocks") as bar:
        assert bar.active
        bar.update(5, nbytes=1_000_000)
    assert "checking" in terminal.getvalue()
    assert "blocks" in terminal.getvalue()


def test_no_bar_when_piped_or_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = io.StringIO()
    monkeypatch.setattr("sys.stderr", pipe)
    assert not progress_wanted()
    with Progress(True, 10, "checking") as bar:
        assert not bar.active
        bar.update(10)
    monkeypatch.setattr("sys.stderr", _Terminal())
    assert not progress_wanted(quiet=True)
    with Progress(False, 10, "checking") as bar:
        assert not bar.active
    assert pipe.getvalue() == ""
