"""A writer killed with SIGKILL mid-write: its complete row groups are recovered by repair, and no
lock outlives it."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale
from bale.errors import FileLockedError, TargetExistsError, TruncatedFileError
from bale.format.schema import Array
from bale.io.sink import is_locked, partial_path_for
from bale.ops.repair import repair

# Row k of every file here is make_rows(k, 1): the child process and the test share this source.
ROWS_SRC = """
import numpy as np

CODECS = {"x": "blosc2", "h": "none", "s": "zstd", "b": "lz4"}

def make_rows(start, n):
    i = np.arange(start, start + n, dtype=np.int64)
    ks = range(start, start + n)
    return {
        "i": i,
        "x": (i[:, None] + np.arange(32)[None, :] / 32).astype(np.float32),
        "h": ((i[:, None] * 7 + np.arange(256)[None, :]) % 251).astype(np.uint8),
        "s": [f"row-{k}-" + "\\u00e9" * (k % 5) for k in ks],
        "b": [bytes([k % 251]) * (k % 17) + k.to_bytes(8, "little") for k in ks],
    }
"""
_namespace: dict[str, Any] = {}
exec(ROWS_SRC, _namespace)
make_rows: Callable[[int, int], dict[str, Any]] = _namespace["make_rows"]
CODECS: dict[str, str] = _namespace["CODECS"]

# The child writes one row group per write() call and reports it once write() has returned.
CHILD = (
    ROWS_SRC
    + """
import sys
import bale

path, mode, start, group_rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
codecs = CODECS if mode == "w" else None
writer = bale.Writer(path, mode=mode, codecs=codecs, row_group_rows=group_rows,
                     metadata={"writer": "child"} if mode == "w" else None)
print("open", flush=True)
done = 0
while True:
    writer.write(make_rows(start + done * group_rows, group_rows))
    done += 1
    print(done, writer._sink.offset, flush=True)  # groups done, where the last one ended
"""
)

GROUP_ROWS = 2000  # about 0.9 MB of raw data per row group


@dataclass
class Killed:
    """What the killed child reported: the file offset where each completed group ended."""

    ends: list[int]
    size: int  # size of the file it was writing, right after the kill

    @property
    def reported(self) -> int:
        return len(self.ends)


class _LineReader:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    def poll(self, timeout: float) -> list[bytes] | None:
        """Complete lines available within ``timeout``; None at end of output."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return lines


def run_and_kill(
    path: Path,
    *,
    mode: str,
    start: int,
    kill_after: int,
    delay: float = 0.0,
    during_write: bool = False,
    group_rows: int = GROUP_ROWS,
    while_alive: Callable[[], None] | None = None,
) -> Killed:
    """Run the writer child until it reports ``kill_after`` groups, then SIGKILL it.
    ``during_write`` waits until the file has grown past the last reported group, so the kill
    lands while the next group is being written rather than while it is being encoded."""
    written = Path(partial_path_for(path)) if mode == "w" else path
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, os.fspath(path), mode, str(start), str(group_rows)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    ends: list[int] = []
    assert proc.stdout is not None and proc.stderr is not None
    reader = _LineReader(proc.stdout.fileno())

    def take(lines: list[bytes] | None) -> bool:
        if lines is None:
            return False
        for line in lines:
            if line != b"open":
                done, end = (int(x) for x in line.split())
                ends.append(end)
                assert done == len(ends)
        return True

    try:
        while len(ends) < kill_after:
            if not take(reader.poll(1.0)):
                proc.wait()
                pytest.fail(f"writer child exited early: {proc.stderr.read().decode()}")
        if while_alive is not None:
            while_alive()
        if delay:
            time.sleep(delay)
        while during_write and take(reader.poll(0)):
            if written.stat().st_size > ends[-1]:
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        while take(reader.poll(1.0)):
            pass
    finally:
        watchdog.cancel()
        watchdog.join()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return Killed(ends, written.stat().st_size)


def check_dropped_bytes(path: Path, report: Any, killed: Killed, groups_before: int = 0) -> int:
    """Repair keeps every byte up to the end of the last complete group and drops exactly the
    rest. Returns the number of row groups the child completed that repair recovered."""
    with bale.open(path) as ds:
        last = ds.index.groups[-1]
        data_end = int(last["offset"] + last["length"])
    assert report.bytes_dropped == killed.size - data_end
    recovered = report.row_groups - groups_before
    # At least every reported group; at most the one in flight besides.
    assert killed.reported <= recovered <= killed.reported + 1
    if recovered == killed.reported:
        assert data_end == killed.ends[-1]
    return recovered


def assert_rows(path: Path | str, first: int, n: int) -> None:
    """The file holds exactly rows first..first+n-1 of make_rows, every value checked."""
    expected = make_rows(first, n)
    with bale.open(path) as ds:
        assert len(ds) == n
        got = ds.read()
        assert list(got) == list(expected)
        for name, value in expected.items():
            if isinstance(value, np.ndarray):
                assert got[name].dtype == value.dtype
                np.testing.assert_array_equal(got[name], value, err_msg=name)
            else:
                assert got[name] == value, name
        # Random access agrees with the bulk read.
        for k in (0, n // 3, n - 1) if n else ():
            row = ds[k]
            assert row["i"] == first + k
            np.testing.assert_array_equal(row["h"], expected["h"][k])
            assert row["s"] == expected["s"][k] and row["b"] == expected["b"][k]


# -- a killed new file ---------------------------------------------------------------------------


def kill_and_repair_new_file(directory: Path, **options: Any) -> tuple[Any, Killed]:
    path = directory / "train.bale"
    partial = Path(partial_path_for(path))
    group_rows = options.get("group_rows", GROUP_ROWS)
    killed = run_and_kill(path, mode="w", start=0, **options)

    # Only NAME.partial exists, unreadable as is, and unlocked.
    assert not path.exists()
    assert partial.exists()
    assert not is_locked(os.fspath(partial))
    with pytest.raises(TruncatedFileError, match="repair"):
        bale.open(partial)
    with pytest.raises(FileNotFoundError):
        bale.open(path)

    report = repair(path)
    assert report.path == os.fspath(path)
    assert report.repaired_from == os.fspath(partial)
    assert not report.already_complete
    assert report.damaged_row_groups == []
    assert path.exists() and not partial.exists()
    recovered = check_dropped_bytes(path, report, killed)
    assert report.rows == recovered * group_rows
    # Rows lost: at most the one row group that was in flight.
    assert (killed.reported + 1) * group_rows - report.rows <= group_rows
    assert f"recovered {report.rows} rows" in report.summary()

    assert_rows(path, 0, report.rows)
    with bale.open(path) as ds:
        assert ds.metadata == {"writer": "child"}
        assert ds.row_group_sizes == (group_rows,) * recovered
        assert {c["id"] for c in ds.index.codecs} == {"blosc2", "none", "zstd", "lz4"}
    return report, killed


@pytest.mark.parametrize(("kill_after", "delay"), [(1, 0.0), (4, 0.0), (3, 0.03)])
def test_killed_writer_is_recovered_by_repair(
    tmp_path: Path, kill_after: int, delay: float
) -> None:
    report, _ = kill_and_repair_new_file(tmp_path, kill_after=kill_after, delay=delay)
    # The repaired file is an ordinary file: it can be appended to.
    path = tmp_path / "train.bale"
    with bale.Writer(path, mode="a") as w:
        w.write(make_rows(report.rows, 10))
    assert_rows(path, 0, report.rows + 10)


def test_writer_killed_in_the_middle_of_a_row_group(tmp_path: Path) -> None:
    """Kill while a large group's blocks are being written (not while they are encoded), until a
    kill leaves part of a group on disk; that part is dropped and everything before it kept."""
    mid_group = 0
    for attempt in range(8):
        directory = tmp_path / str(attempt)
        directory.mkdir()
        report, _ = kill_and_repair_new_file(
            directory, kill_after=1 + attempt % 3, during_write=True, group_rows=8 * GROUP_ROWS
        )
        if report.bytes_dropped > 0:
            mid_group += 1
            break
    assert mid_group >= 1, "no kill landed inside a row group in 8 attempts"


# -- a killed append -----------------------------------------------------------------------------


@pytest.mark.parametrize("during_write", [False, True], ids=["encoding", "writing"])
def test_killed_append_is_repaired_in_place(tmp_path: Path, during_write: bool) -> None:
    path = tmp_path / "train.bale"
    base_rows = 3000
    bale.write(path, make_rows(0, base_rows), codecs=CODECS, row_group_rows=1000, metadata={"v": 1})
    before = path.read_bytes()
    with bale.open(path) as ds:
        old_footer = int(ds.index.groups[-1]["offset"] + ds.index.groups[-1]["length"])
    inode = path.stat().st_ino
    group_rows = 8 * GROUP_ROWS if during_write else GROUP_ROWS

    killed = run_and_kill(
        path,
        mode="a",
        start=base_rows,
        kill_after=2,
        during_write=during_write,
        group_rows=group_rows,
    )

    assert not Path(partial_path_for(path)).exists()
    assert not is_locked(os.fspath(path))
    with pytest.raises(TruncatedFileError):
        bale.open(path)
    # Appending never rewrites the bytes of earlier row groups.
    assert path.read_bytes()[:old_footer] == before[:old_footer]
    # A second appender is told the file needs repair; it is not blocked by a stale lock.
    with pytest.raises(TruncatedFileError, match="repair"):
        bale.Writer(path, mode="a")

    report = repair(path)
    assert report.path == report.repaired_from == os.fspath(path)
    assert not report.already_complete
    assert report.damaged_row_groups == []
    assert path.stat().st_ino == inode  # repaired in place, not replaced
    assert not Path(partial_path_for(path)).exists()
    appended = check_dropped_bytes(path, report, killed, groups_before=3)
    assert report.rows == base_rows + appended * group_rows
    assert path.read_bytes()[:old_footer] == before[:old_footer]
    assert_rows(path, 0, report.rows)
    with bale.open(path) as ds:
        assert ds.row_group_sizes == (1000,) * 3 + (group_rows,) * appended
        # A repaired file carries the header's metadata (documented in FORMAT.md).
        assert ds.metadata == {"v": 1}


# -- locks ---------------------------------------------------------------------------------------


def test_live_writer_holds_the_lock_and_a_killed_one_does_not(tmp_path: Path) -> None:
    path = tmp_path / "train.bale"
    partial = partial_path_for(path)

    def while_alive() -> None:
        assert is_locked(partial)
        with pytest.raises(FileLockedError):
            bale.Writer(path, overwrite=True)
        with pytest.raises(FileLockedError):
            bale.Writer(path)
        with pytest.raises(FileLockedError):
            repair(path)  # never rebuild a file that is being written
        with pytest.raises(TruncatedFileError, match="in progress"):
            bale.open(partial)

    run_and_kill(path, mode="w", start=0, kill_after=2, while_alive=while_alive)
    assert not is_locked(partial)
    assert not is_locked(os.fspath(path))  # does not exist: not locked
    left = Path(partial).read_bytes()

    with pytest.raises(TargetExistsError) as info:
        bale.Writer(path)
    assert not isinstance(info.value, FileLockedError)
    assert "repair" in str(info.value)
    assert "overwrite=True" in str(info.value)
    assert Path(partial).read_bytes() == left  # the refused writer did not touch the rows

    with bale.Writer(path, overwrite=True) as w:
        w.write(make_rows(0, 50))
    assert not Path(partial).exists()
    assert_rows(path, 0, 50)


def test_killed_appender_leaves_no_lock(tmp_path: Path) -> None:
    path = tmp_path / "train.bale"
    bale.write(path, make_rows(0, 100), codecs=CODECS)

    def while_alive() -> None:
        assert is_locked(os.fspath(path))
        with pytest.raises(FileLockedError):
            bale.Writer(path, overwrite=True)
        with pytest.raises(FileLockedError):
            repair(path)
        # A second appender is refused: locked, or (footer already dropped) told it is unfinished.
        with pytest.raises((FileLockedError, TruncatedFileError)):
            bale.Writer(path, mode="a")

    run_and_kill(path, mode="a", start=100, kill_after=1, while_alive=while_alive)
    assert not is_locked(os.fspath(path))
    # overwrite=True replaces the interrupted file without repair.
    with bale.Writer(path, overwrite=True) as w:
        w.write(make_rows(0, 7))
    assert_rows(path, 0, 7)


def test_rejected_writer_does_not_leave_a_lock(tmp_path: Path) -> None:
    """A Writer refused at construction releases its lock and leaves no NAME.partial, so a
    corrected retry in the same process is neither locked out nor told to repair."""
    path = tmp_path / "train.bale"
    with pytest.raises(bale.SchemaError, match="unknown columns"):
        bale.Writer(path, {"x": Array("int64")}, codecs={"typo": "lz4"})
    assert not is_locked(partial_path_for(path))
    assert not Path(partial_path_for(path)).exists()
    with bale.Writer(path, {"x": Array("int64")}, codecs={"x": "lz4"}) as w:
        w.write({"x": np.arange(5)})
    with bale.open(path) as ds:
        assert ds["x"][:].tolist() == [0, 1, 2, 3, 4]


# -- repair of complete and truncated files ----------------------------------------------------


def test_repair_of_complete_file_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "train.bale"
    bale.write(path, make_rows(0, 500), codecs=CODECS, row_group_rows=100, metadata={"m": 1})
    before = path.read_bytes()
    stat = path.stat()
    report = repair(path)
    assert report.already_complete
    assert report.rows == 500 and report.row_groups == 5
    assert report.bytes_dropped == 0
    assert "already complete" in report.summary()
    assert path.read_bytes() == before
    assert path.stat().st_mtime_ns == stat.st_mtime_ns
    assert path.stat().st_ino == stat.st_ino
    assert not Path(partial_path_for(path)).exists()


def test_repair_without_any_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        repair(tmp_path / "missing.bale")


def test_repair_of_every_truncation_keeps_exactly_the_complete_groups(tmp_path: Path) -> None:
    """Deterministic counterpart of the kill tests: cut an unfinished file at many points
    (a writer can die anywhere) and repair each cut."""
    source = tmp_path / "source.bale"
    group_rows = 8
    bale.write(source, make_rows(0, 6 * group_rows), codecs=CODECS, row_group_rows=group_rows)
    with bale.open(source) as ds:
        groups = ds.index.groups.copy()
        blocks = ds.index.blocks.copy()
    data = source.read_bytes()
    body_end = int(groups[-1]["offset"] + groups[-1]["length"])
    header_end = int(groups[0]["offset"])
    # A group is recoverable once its last block is on disk (its trailing padding may be missing).
    complete_at = [int((b["offset"] + b["stored_size"]).max()) for b in blocks]
    cuts = set(range(header_end - 40, len(data), 89))
    for g in groups:
        start = int(g["offset"])
        cuts.update({start - 1, start, start + 1, start + 17})
    cuts.update(c + d for c in complete_at for d in (-1, 0, 1))
    cuts.update({body_end, len(data) - 1})
    target = tmp_path / "cut.bale"
    partial = Path(partial_path_for(target))
    outcomes = set()
    for cut in sorted(cuts):
        if target.exists():
            target.unlink()
        partial.write_bytes(data[:cut])
        report = repair(target)
        if report.removed:  # a cut header holds nothing to recover: the partial is deleted
            assert cut < header_end, cut
            assert not partial.exists() and not target.exists()
            continue
        expected_groups = sum(1 for end in complete_at if end <= cut)
        assert report.row_groups == expected_groups, cut
        assert report.rows == expected_groups * group_rows
        assert report.damaged_row_groups == []
        assert not partial.exists()
        assert_rows(target, 0, report.rows)
        outcomes.add(expected_groups)
    assert outcomes == set(range(7))
