"""Progress bars of split, concat, merge and repair (issue 15, item 17): drawn on a terminal,
silent with -q/--quiet or when stderr is not a terminal, and off by default in the library."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest

import bale
from bale.cli.main import EXIT_OK, main
from bale.ops.concat import concat
from bale.ops.merge import merge
from bale.ops.repair import repair

pytest.importorskip("tqdm")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "all.bale"
    bale.write(path, {"x": np.arange(1000), "y": np.arange(1000) % 3}, row_group_rows=100)
    return path


@pytest.fixture
def interrupted(sample: Path, tmp_path: Path) -> Path:
    """What a killed writer leaves: NAME.partial, with NAME absent."""
    target = tmp_path / "cut.bale"
    writer = bale.Writer(target, row_group_rows=100)
    writer.write({"x": np.arange(550)})  # five groups on disk, 50 rows buffered
    shutil.copy(f"{target}.partial", tmp_path / "copy.bale.partial")
    writer.abort()
    return tmp_path / "copy.bale"


def _commands(sample: Path, interrupted: Path) -> dict[str, tuple[list[str], str]]:
    d = sample.parent
    return {
        "split": (["split", str(sample), "--out-dir", str(d / "s")], "splitting"),
        "concat": (["concat", str(sample), str(sample), str(d / "c.bale")], "concatenating"),
        "merge": (["merge", str(sample), str(sample), str(d / "m.bale")], "merging"),
        "repair": (["repair", str(interrupted)], "repairing"),
    }


@pytest.mark.parametrize("command", ["split", "concat", "merge", "repair"])
def test_a_bar_on_a_terminal(
    command: str, sample: Path, interrupted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, description = _commands(sample, interrupted)[command]
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(args) == EXIT_OK
    assert description in terminal.getvalue()


@pytest.mark.parametrize("command", ["split", "concat", "merge", "repair"])
@pytest.mark.parametrize("flag", ["-q", "--quiet", "--no-progress"])
def test_quiet_on_a_terminal(
    command: str, flag: str, sample: Path, interrupted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, _ = _commands(sample, interrupted)[command]
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main([*args, flag]) == EXIT_OK
    assert terminal.getvalue() == ""


@pytest.mark.parametrize("command", ["split", "concat", "merge", "repair"])
def test_no_bar_when_stderr_is_not_a_terminal(
    command: str, sample: Path, interrupted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, _ = _commands(sample, interrupted)[command]
    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    assert main(args) == EXIT_OK
    assert log.getvalue() == ""


def test_library_calls_draw_only_when_asked(
    sample: Path, interrupted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    d = sample.parent
    bale.split(sample, (0.5, 0.5), names=("a", "b"))
    concat([sample], d / "c.bale")
    merge([sample], d / "m.bale")
    assert terminal.getvalue() == ""  # progress=False by default
    bale.split(sample, (0.5, 0.5), names=("a", "b"), overwrite=True, progress=True)
    concat([sample, sample], d / "c.bale", overwrite=True, progress=True)
    merge([sample, sample], d / "m.bale", overwrite=True, progress=True)
    assert repair(interrupted, progress=True).rows == 500
    for description in ("splitting", "concatenating", "merging", "repairing"):
        assert description in terminal.getvalue()
    with bale.open(d / "m.bale") as merged:
        np.testing.assert_array_equal(merged["x"][:], np.tile(np.arange(1000), 2))


def test_merge_progress_counts_every_byte_copied(
    sample: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bar's total is the row groups' bytes; a kernel copy is cut into pieces so it moves
    import bale.ops.merge as merging

    monkeypatch.setattr(merging, "_KERNEL_CHUNK", 4096)
    monkeypatch.setattr(merging, "_CHUNK", 4096)
    seen: list[tuple[int | None, int]] = []

    class Watched(merging.Progress):  # the real bar, its count read as it closes
        def close(self) -> None:
            if self._bar is not None:
                seen.append((self._bar.total, self._bar.n))
            super().close()

    monkeypatch.setattr(merging, "Progress", Watched)
    monkeypatch.setattr("sys.stderr", _Terminal())
    with bale.open(sample) as ds:
        group_bytes = int(ds.index.groups["length"].sum())
    for verify in (False, True):
        merge(
            [sample, sample], sample.parent / "m.bale", overwrite=True, verify=verify, progress=True
        )
    assert seen == [(2 * group_bytes, 2 * group_bytes)] * 2
