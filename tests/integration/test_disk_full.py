"""A full disk, simulated with RLIMIT_FSIZE in a child process: writes past the limit fail with
EFBIG, a real OS write error. The writer must raise BaleWriteError naming the file, and the rows
of the groups completed before it must be recoverable."""

from __future__ import annotations

import errno
import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale
from bale.errors import BaleWriteError
from bale.io.sink import is_locked, partial_path_for
from bale.ops.repair import repair

ROWS_SRC = """
import numpy as np

CODECS = {"i": "lz4", "h": "none", "s": "zstd"}

def make_rows(start, n):
    i = np.arange(start, start + n, dtype=np.int64)
    return {
        "i": i,
        "h": ((i[:, None] * 13 + np.arange(256)[None, :]) % 251).astype(np.uint8),
        "s": [f"row {k}" * (k % 4) for k in range(start, start + n)],
    }
"""
_namespace: dict[str, Any] = {}
exec(ROWS_SRC, _namespace)
make_rows: Callable[[int, int], dict[str, Any]] = _namespace["make_rows"]
CODECS: dict[str, str] = _namespace["CODECS"]

GROUP_ROWS = 200  # (passed to the children as "200") about 53 KB per row group, mostly the uncompressed "h" column

# Sets the file size limit, then writes one row group per write() call until a write fails.
CHILD_PRELUDE = (
    ROWS_SRC
    + """
import json, resource, signal, sys
import bale

path, limit, mode, start, group_rows = sys.argv[1:6]
limit, start, group_rows = int(limit), int(start), int(group_rows)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write with EFBIG instead of dying
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
result = {"done": 0}

def describe(exc):
    cause = exc.__cause__
    return {
        "error": type(exc).__name__,
        "is_oserror": isinstance(exc, OSError),
        "is_bale_error": isinstance(exc, bale.BaleError),
        "path": getattr(exc, "path", None),
        "message": str(exc),
        "errno": getattr(exc, "errno", None),
        "cause_errno": getattr(cause, "errno", None),
    }
"""
)

CHILD_FILL = (
    CHILD_PRELUDE
    + """
try:
    with bale.Writer(path, mode=mode, codecs=CODECS if mode == "w" else None,
                     row_group_rows=group_rows) as writer:
        while result["done"] < 10_000:
            writer.write(make_rows(start + result["done"] * group_rows, group_rows))
            result["done"] += 1
except Exception as exc:
    result.update(describe(exc))
print(json.dumps(result))
"""
)


def run_child(script: str, path: Path, limit: int, mode: str = "w", start: int = 0) -> Any:
    proc = subprocess.run(
        [sys.executable, "-c", script, os.fspath(path), str(limit), mode, str(start), "200"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def assert_rows(path: Path, n: int) -> None:
    expected = make_rows(0, n)
    with bale.open(path) as ds:
        assert len(ds) == n
        got = ds.read()
        np.testing.assert_array_equal(got["i"], expected["i"])
        np.testing.assert_array_equal(got["h"], expected["h"])
        assert got["s"] == expected["s"]


def assert_write_error(result: dict[str, Any], path: Path) -> None:
    assert result.get("error") == "BaleWriteError", result
    assert result["is_oserror"] and result["is_bale_error"]
    assert result["path"] == os.fspath(path)
    assert os.fspath(path) in result["message"]
    assert "File too large" in result["message"]  # the OS's reason is kept
    assert result["cause_errno"] == errno.EFBIG


def test_disk_full_while_creating_a_file(tmp_path: Path) -> None:
    path = tmp_path / "train.bale"
    partial = Path(partial_path_for(path))
    limit = 1_000_000
    result = run_child(CHILD_FILL, path, limit)
    assert_write_error(result, partial)
    # ... and bale's own words: what is safe and what to run (not only OSError's "[Errno 27]").
    assert "repair" in result["message"], result["message"]
    done = result["done"]
    assert 10 <= done < 20  # the limit allows about 18 groups

    assert not path.exists()
    assert partial.exists()
    assert partial.stat().st_size <= limit
    assert not is_locked(os.fspath(partial))
    with pytest.raises(bale.TargetExistsError, match="repair"):
        bale.Writer(path)

    report = repair(path)
    assert not report.already_complete
    assert report.damaged_row_groups == []
    # Every group completed before the error; the failed one only if all its blocks got written.
    assert done <= report.row_groups <= done + 1
    assert report.rows == report.row_groups * GROUP_ROWS
    assert path.exists() and not partial.exists()
    assert_rows(path, report.rows)


def test_disk_full_while_appending(tmp_path: Path) -> None:
    path = tmp_path / "train.bale"
    base = 3 * GROUP_ROWS
    bale.write(path, make_rows(0, base), codecs=CODECS, row_group_rows=GROUP_ROWS)
    size = path.stat().st_size
    with bale.open(path) as ds:
        data_end = int(ds.index.groups[-1]["offset"] + ds.index.groups[-1]["length"])
    before = path.read_bytes()[:data_end]

    result = run_child(CHILD_FILL, path, size + 400_000, mode="a", start=base)
    assert_write_error(result, path)
    done = result["done"]
    assert 4 <= done < 9

    assert not Path(partial_path_for(path)).exists()
    assert not is_locked(os.fspath(path))
    assert path.read_bytes()[:data_end] == before  # earlier groups untouched
    report = repair(path)  # in place; the writer's abort may already have closed the file
    assert report.path == os.fspath(path)
    appended = report.row_groups - 3
    assert done <= appended <= done + 1
    assert report.rows == base + appended * GROUP_ROWS
    assert_rows(path, report.rows)


CHILD_HEADER = (
    CHILD_PRELUDE
    + """
from bale.format.schema import Array, String
schema = {"i": Array("int64"), "s": String()}
try:
    with bale.Writer(path, schema) as writer:
        writer.write({"i": [1, 2], "s": ["a", "b"]})
except Exception as exc:
    result.update(describe(exc))
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
for attempt, options in (("plain", {}), ("overwrite", {"overwrite": True})):
    try:
        with bale.Writer(path, schema, **options) as writer:
            writer.write({"i": [3], "s": ["c"]})
        result[attempt] = "ok"
    except Exception as exc:
        result[attempt] = type(exc).__name__ + ": " + str(exc)
print(json.dumps(result))
"""
)


def test_disk_full_before_the_header_is_written(tmp_path: Path) -> None:
    path = tmp_path / "train.bale"
    result = run_child(CHILD_HEADER, path, 100)
    assert_write_error(result, Path(partial_path_for(path)))
    # In the same process, once there is space again: the failed writer accepted no row, so
    # its abort removed the partial (a cut header, nothing to repair) and held no lock: a plain
    # writer writes, and overwrite=True replaces that.
    assert result["plain"] == "ok", result
    assert result["overwrite"] == "ok", result
    with bale.open(path) as ds:
        assert ds["i"][:].tolist() == [3]
        assert ds["s"][:] == ["c"]


def test_write_error_carries_the_os_errno(tmp_path: Path) -> None:
    result = run_child(CHILD_FILL, tmp_path / "train.bale", 200_000)
    assert result.get("error") == "BaleWriteError"
    assert result["errno"] == errno.EFBIG


# A batch of 2.5 row groups whose second group hits the limit; the limit is then lifted (space
# freed) before the `with` block exits, as a transient ENOSPC would.
CHILD_TRANSIENT = (
    CHILD_PRELUDE
    + """
import numpy as np
batch = np.arange(start, start + 5 * group_rows // 2, dtype=np.int64)
try:
    with bale.Writer(path, mode="a", row_group_rows=group_rows) as writer:
        try:
            writer.write({"x": batch})
        except bale.BaleWriteError as exc:
            result.update(describe(exc))
            resource.setrlimit(resource.RLIMIT_FSIZE,
                               (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            raise
except bale.BaleWriteError:
    pass
print(json.dumps(result))
"""
)


def test_failed_write_never_leaves_a_gap_in_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "train.bale"
    bale.write(path, {"x": np.arange(GROUP_ROWS, dtype=np.int64)}, codecs={"x": "none"})
    limit = path.stat().st_size + 8 * GROUP_ROWS + 1000  # room for one more group, not two
    result = run_child(CHILD_TRANSIENT, path, limit, start=GROUP_ROWS)
    assert result.get("error") == "BaleWriteError", result
    try:
        ds = bale.open(path)
    except bale.TruncatedFileError:
        repair(path)
        ds = bale.open(path)
    with ds:
        x = ds["x"][:]
    # Whatever survives must be rows 0..len-1 in order: a prefix of what was written.
    np.testing.assert_array_equal(x, np.arange(len(x)))


def test_write_error_is_an_oserror_and_a_bale_error() -> None:
    assert issubclass(BaleWriteError, OSError)
    assert issubclass(BaleWriteError, bale.BaleError)


def test_write_error_text_keeps_bale_words_and_the_os_reason_across_processes() -> None:
    exc = BaleWriteError(
        "rows 0..99 are safe; `bale repair x.bale` keeps them",
        path="x.bale.partial",
        errno=errno.ENOSPC,
        strerror="No space left on device",
    )
    for error in (exc, pickle.loads(pickle.dumps(exc))):
        assert str(error) == (
            "file 'x.bale.partial': rows 0..99 are safe; `bale repair x.bale` keeps them "
            "([Errno 28] No space left on device)"
        )
        assert error.errno == errno.ENOSPC and error.filename == "x.bale.partial"
