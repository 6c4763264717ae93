"""A distributed write's parts and their merge (``bale.PartSet``, ``bale.merge``): every column
kind round trips; the merged file is the same whatever order parts were written in; retried,
concurrent and resumed writes never duplicate rows; torn parts, schema mismatches and failed
merges are refused, naming the part, and leave nothing under the target."""

from __future__ import annotations

import errno
import importlib.util
import os
import pickle
import random
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale
from bale._core.dataset import reader_of
from bale.errors import BaleError, CorruptFileError, SchemaError, TargetExistsError
from bale.ops.parts import PartInfo, PartSet
from bale.ops.verify import verify


def _golden_spec() -> Any:
    """tests/golden/golden_spec.py, shared with the golden tests (one module object)."""
    if "golden_spec" in sys.modules:
        return sys.modules["golden_spec"]
    path = Path(__file__).parents[1] / "golden" / "golden_spec.py"
    spec = importlib.util.spec_from_file_location("golden_spec", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["golden_spec"] = module
    spec.loader.exec_module(module)
    return module


golden = _golden_spec()
KINDS = golden.ALL_KINDS_FILE

GROUP = 8  # rows per row group: parts of multiples of it split as a single writer would


def kinds(start: int, stop: int) -> dict[str, Any]:
    return KINDS.columns(range(start, stop))  # type: ignore[no-any-return]


def simple(start: int, stop: int) -> dict[str, Any]:
    rng = np.random.default_rng(start)
    n = stop - start
    return {
        "id": np.arange(start, stop, dtype=np.int64),
        "x": rng.standard_normal((n, 40)).astype(np.float32),
        "blob": [bytes(rng.integers(0, 255, i % 31, dtype=np.uint8)) for i in range(n)],
        "text": [f"row {i} é" for i in range(start, stop)],
    }


def joined(*pieces: dict[str, Any]) -> dict[str, Any]:
    """Batches one after another, as one batch."""
    return {
        name: np.concatenate([p[name] for p in pieces])
        if isinstance(values, np.ndarray)
        else [v for p in pieces for v in p[name]]
        for name, values in pieces[0].items()
    }


def assert_rows_equal(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert set(got) == set(want)
    for name, values in want.items():
        if isinstance(values, np.ndarray):
            assert got[name].dtype == values.dtype, name
            # Bit patterns: NaN payloads and float8 must survive as stored.
            assert got[name].tobytes() == values.tobytes(), name
        else:
            assert list(got[name]) == list(values), name


def stored_checksums(path: Path | str) -> list[int]:
    with bale.open(path) as ds:
        return [int(c) for c in ds.index.blocks["checksum"].reshape(-1)]


def write_parts(parts: PartSet, bounds: list[int], order: list[int], make: Any = simple) -> None:
    for i in order:
        parts.write_part(i, make(bounds[i], bounds[i + 1]), row_group_rows=GROUP)


# -- round trips and determinism -----------------------------------------------------------------


def test_every_column_kind_round_trips_and_matches_a_single_writer(tmp_path: Path) -> None:
    bounds = [0, 16, 40, 40, 64, 71]  # part 2 has no rows (written with the schema)
    target = tmp_path / "kinds.bale"
    parts = PartSet(target)
    for i in range(len(bounds) - 1):
        parts.write_part(
            i,
            kinds(bounds[i], bounds[i + 1]),
            schema=KINDS.schema,
            codecs=KINDS.codecs,
            row_group_rows=GROUP,
        )
    report = parts.merge(len(bounds) - 1)
    assert report.rows == 71 and report.path == str(target)
    assert report.file_bytes == target.stat().st_size
    assert [s.rows for s in report.sources] == [16, 24, 0, 24, 7]
    assert not Path(parts.parts_dir).exists()  # removed after the merge

    single = tmp_path / "single.bale"
    bale.write(single, kinds(0, 71), schema=KINDS.schema, codecs=KINDS.codecs, row_group_rows=GROUP)
    with bale.open(target) as merged, bale.open(single) as one:
        assert merged.schema == one.schema
        assert merged.row_group_sizes == one.row_group_sizes
        assert_rows_equal(merged.read(), kinds(0, 71))
        assert merged.metadata["bale.merge"] == {
            "parts": 5,
            "rows": [16, 24, 0, 24, 7],
            "differing_keys": [],
        }
    # The data is byte for byte the single writer's: the same blocks, the same checksums.
    assert stored_checksums(target) == stored_checksums(single)
    assert verify(target).ok


def test_the_merged_file_does_not_depend_on_the_order_parts_were_written(tmp_path: Path) -> None:
    bounds = [0, 30, 31, 90, 90, 150, 200]
    files = []
    for run, order in enumerate(
        [list(range(6)), list(reversed(range(6))), random.Random(7).sample(range(6), 6)]
    ):
        target = tmp_path / f"run{run}" / "train.bale"
        target.parent.mkdir()
        parts = PartSet(target)
        write_parts(parts, bounds, order)
        parts.merge(6)
        files.append(target.read_bytes())
    # Four workers at once, finishing in whatever order they do.
    target = tmp_path / "pool" / "train.bale"
    target.parent.mkdir()
    parts = PartSet(target)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: write_parts(parts, bounds, [i]), range(6), timeout=60))
    parts.merge(6)
    files.append(target.read_bytes())
    assert files[0] == files[1] == files[2] == files[3]
    assert b"run0" not in files[0] and str(tmp_path).encode() not in files[0]


def test_bale_merge_copies_row_groups_without_decoding(tmp_path: Path) -> None:
    a, b = tmp_path / "a.bale", tmp_path / "b.bale"
    bale.write(a, simple(0, 50), row_group_rows=GROUP, metadata={"classes": ["x"], "n": 1})
    bale.write(b, simple(50, 80), row_group_rows=GROUP, codecs={"x": "lz4"}, metadata={"n": 2})
    out = tmp_path / "out.bale"
    report = bale.merge([a, b], out)
    assert (report.rows, report.row_groups) == (80, 11)
    with bale.open(out) as ds, bale.open(b) as second:
        assert_rows_equal(ds.read(), joined(simple(0, 50), simple(50, 80)))
        assert ds.metadata == {
            "classes": ["x"],
            "n": 1,
            "bale.merge": {"parts": 2, "rows": [50, 30], "differing_keys": ["classes", "n"]},
        }
        copied = reader_of(ds).stored_group(7).blocks["x"]
        original = reader_of(second).stored_group(0).blocks["x"]
        assert bytes(copied.parts[0]) == bytes(original.parts[0])
        assert copied.codec == original.codec
    assert stored_checksums(out) == stored_checksums(a) + stored_checksums(b)
    assert verify(out).ok
    # verify=True checks every block as it copies: the same bytes.
    checked = tmp_path / "checked.bale"
    bale.merge([a, b], checked, verify=True)
    assert checked.read_bytes() == out.read_bytes()


def test_without_a_kernel_copy_the_bytes_go_through_python_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = tmp_path / "a.bale", tmp_path / "b.bale"
    bale.write(a, simple(0, 50), row_group_rows=GROUP)
    bale.write(b, simple(50, 80), row_group_rows=GROUP)
    fast = tmp_path / "fast.bale"
    bale.merge([a, b], fast)

    def cross_device(*args: Any) -> int:  # as between two filesystems on an old kernel
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, "copy_file_range", cross_device)
    for verified in (False, True):
        slow = tmp_path / f"slow-{verified}.bale"
        bale.merge([a, b], slow, verify=verified)
        assert slow.read_bytes() == fast.read_bytes()


def test_parts_with_columns_in_another_order_merge_with_rewritten_group_headers(
    tmp_path: Path,
) -> None:
    a, b = tmp_path / "a.bale", tmp_path / "b.bale"
    bale.write(a, simple(0, 20), row_group_rows=GROUP)
    bale.write(b, dict(reversed(list(simple(20, 45).items()))), row_group_rows=GROUP)
    out = tmp_path / "out.bale"
    bale.merge([a, b], out)
    with bale.open(out) as ds:
        assert ds.schema.names == ["id", "x", "blob", "text"]
        assert_rows_equal(ds.read(), joined(simple(0, 20), simple(20, 45)))
    assert verify(out).ok


def test_random_access_parts_keep_their_frame_index(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 8, (120, 32, 32, 3), dtype=np.uint8)
    target = tmp_path / "ra.bale"
    parts = PartSet(target)
    for i in range(3):
        parts.write_part(
            i, {"image": images[i * 40 : (i + 1) * 40]}, row_group_rows=20, segment_bytes=4096
        )
    parts.merge(3)
    with bale.open(target) as ds:
        assert "frame_index" in ds.index.extra
        for row in (0, 45, 119):  # random rows decode through the frame index
            np.testing.assert_array_equal(ds[row]["image"], images[row])
    assert verify(target).ok


# -- retries, duplicates, resume ----------------------------------------------------------------


def test_a_part_written_twice_holds_its_rows_once(tmp_path: Path) -> None:
    parts = PartSet(tmp_path / "t.bale")
    first = parts.write_part(0, simple(0, 10))
    again = parts.write_part(0, simple(0, 10), skip_complete=False)  # a retried task
    assert first.rows == again.rows == 10
    parts.write_part(1, simple(10, 25))
    assert sorted(os.listdir(parts.parts_dir)) == ["part-000000.bale", "part-000001.bale"]
    parts.merge(2)
    with bale.open(tmp_path / "t.bale") as ds:
        np.testing.assert_array_equal(ds.read()["id"], np.arange(25))


def test_concurrent_attempts_of_one_part_leave_one_whole_part(tmp_path: Path) -> None:
    parts = PartSet(tmp_path / "t.bale")
    batches = [simple(i * 100, (i + 1) * 100) for i in range(20)]
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            parts.write_part(0, batches, skip_complete=False, row_group_rows=50)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    # Another process writes the same part at the same time (a speculative task elsewhere).
    script = (
        "import sys, pickle; sys.path.insert(0, sys.argv[1]); "
        "from test_parts import simple; "
        "parts = pickle.loads(bytes.fromhex(sys.argv[2])); "
        "parts.write_part(0, [simple(i * 100, (i + 1) * 100) for i in range(20)], "
        "skip_complete=False, row_group_rows=50)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(Path(__file__).parent), pickle.dumps(parts).hex()]
    )
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert process.wait(timeout=60) == 0
    assert not errors and not any(t.is_alive() for t in threads)
    assert os.listdir(parts.parts_dir) == ["part-000000.bale"]  # no attempt's debris left
    parts.merge(1)
    with bale.open(tmp_path / "t.bale") as ds:
        np.testing.assert_array_equal(ds.read()["id"], np.arange(2000))


def test_a_rerun_skips_complete_parts_without_rewriting_them(tmp_path: Path) -> None:
    parts = PartSet(tmp_path / "t.bale")
    bounds = [0, 10, 20, 30, 40]
    write_parts(parts, bounds, [0, 2])
    stamps = {i: os.stat(parts.part_path(i)) for i in (0, 2)}
    assert set(parts.completed()) == {0, 2}
    assert parts.completed()[2] == PartInfo(
        2, parts.part_path(2), 10, os.path.getsize(parts.part_path(2))
    )

    calls = []

    def counted(start: int, stop: int) -> Any:
        calls.append(start)
        yield simple(start, stop)

    # The re-run job: every task again, the finished ones return at once.
    resumed = [parts.write_part(i, counted(bounds[i], bounds[i + 1])) for i in range(4)]
    assert sorted(calls) == [10, 30]  # only parts 1 and 3 consumed their rows
    for i in (0, 2):
        now = os.stat(parts.part_path(i))
        assert (now.st_ino, now.st_mtime_ns) == (stamps[i].st_ino, stamps[i].st_mtime_ns)
    assert [r.rows for r in resumed] == [10, 10, 10, 10]
    parts.merge(4)
    with bale.open(tmp_path / "t.bale") as ds:
        np.testing.assert_array_equal(ds.read()["id"], np.arange(40))


def test_an_empty_task_without_a_schema_counts_as_a_part_of_no_rows(tmp_path: Path) -> None:
    parts = PartSet(tmp_path / "t.bale")
    parts.write_part(0, simple(0, 5))
    empty = parts.write_part(1, [])
    assert empty.rows == 0 and empty.path.endswith("part-000001.empty")
    assert parts.is_complete(1) and parts.write_part(1, []) == empty
    parts.write_part(2, simple(5, 9))
    report = parts.merge(3)
    assert [s.rows for s in report.sources] == [5, 0, 4]
    with bale.open(tmp_path / "t.bale") as ds:
        np.testing.assert_array_equal(ds.read()["id"], np.arange(9))

    nothing = PartSet(tmp_path / "nothing.bale")
    nothing.write_part(0, [])
    with pytest.raises(BaleError, match="pass schema= to write_part"):
        nothing.merge(1)
    assert not (tmp_path / "nothing.bale").exists()


def test_a_failing_task_leaves_no_part_and_no_debris(tmp_path: Path) -> None:
    parts = PartSet(tmp_path / "t.bale")

    def failing() -> Any:
        yield simple(0, 100)
        raise RuntimeError("the task died")

    with pytest.raises(RuntimeError, match="the task died"):
        parts.write_part(0, failing(), row_group_rows=GROUP)
    assert not parts.is_complete(0)
    assert os.listdir(parts.parts_dir) == []


def test_a_part_set_pickles_as_plain_data(tmp_path: Path) -> None:
    parts = PartSet(tmp_path / "t.bale", overwrite=True)
    clone = pickle.loads(pickle.dumps(parts))
    assert vars(clone) == vars(parts)
    assert all(isinstance(v, (str, bool, dict)) for v in vars(parts).values())
    assert parts.part_path(3) == f"{tmp_path}/t.bale.parts/part-000003.bale"


# -- refusals -----------------------------------------------------------------------------------


def test_a_torn_or_foreign_part_is_not_complete_and_merge_names_it(tmp_path: Path) -> None:
    target = tmp_path / "t.bale"
    parts = PartSet(target)
    write_parts(parts, [0, 20, 40, 60, 80], [0, 1, 2, 3])
    torn = Path(parts.part_path(1))
    torn.write_bytes(torn.read_bytes()[:-100])  # a part cut short
    Path(parts.part_path(2)).write_bytes(b"not a bale file at all" * 10)
    os.remove(parts.part_path(3))
    assert set(parts.completed()) == {0}
    assert not parts.is_complete(1)
    with pytest.raises(BaleError) as caught:
        parts.merge(5)
    message = str(caught.value)
    assert "missing: 3-4" in message and parts.parts_dir in message
    assert "1 (TruncatedFileError" in message and "2 (NotABaleFileError" in message
    assert not target.exists() and not Path(f"{target}.partial").exists()
    # Re-running the failed tasks repairs the set.
    write_parts(parts, [0, 20, 40, 60, 80, 95], [1, 2, 3, 4])
    assert parts.merge(5).rows == 95


def test_parts_with_different_columns_are_refused_naming_part_and_column(tmp_path: Path) -> None:
    target = tmp_path / "t.bale"
    parts = PartSet(target)
    parts.write_part(0, simple(0, 10))
    other = simple(10, 20)
    other["x"] = other["x"].astype(np.float64)
    parts.write_part(1, other)
    with pytest.raises(SchemaError) as caught:
        parts.merge(2)
    assert caught.value.column == "x" and caught.value.path == parts.part_path(1)
    assert "part-000001.bale" in str(caught.value) and "float64" in str(caught.value)
    assert not target.exists() and not Path(f"{target}.partial").exists()

    lacking = {k: v for k, v in simple(10, 20).items() if k != "blob"}
    parts.write_part(1, lacking, skip_complete=False)
    with pytest.raises(SchemaError, match="lacks column 'blob'") as caught:
        parts.merge(2)
    assert caught.value.column == "blob"


def test_parts_framed_differently_are_refused_not_reencoded(tmp_path: Path) -> None:
    a, b = tmp_path / "a.bale", tmp_path / "b.bale"
    bale.write(a, simple(0, 100), segment_bytes=4096)
    bale.write(b, simple(100, 200), segment_bytes=8192)
    with pytest.raises(SchemaError, match="never re-encodes") as caught:
        bale.merge([a, b], tmp_path / "out.bale")
    assert caught.value.path == str(b)
    assert not (tmp_path / "out.bale").exists()


def test_a_damaged_block_fails_a_verified_merge_and_leaves_nothing(tmp_path: Path) -> None:
    a, b = tmp_path / "a.bale", tmp_path / "b.bale"
    bale.write(a, simple(0, 40), row_group_rows=GROUP)
    bale.write(b, simple(40, 80), row_group_rows=GROUP)
    with bale.open(b) as ds:
        record = ds.index.blocks[2, ds.schema.index("x")]
    data = bytearray(b.read_bytes())
    data[int(record["offset"]) + 5] ^= 0xFF
    b.write_bytes(bytes(data))
    out = tmp_path / "out.bale"
    with pytest.raises(CorruptFileError) as caught:
        bale.merge([a, b], out, verify=True)
    assert caught.value.path == str(b) and caught.value.column == "x"
    assert caught.value.rows == (16, 24)
    assert not out.exists() and not Path(f"{out}.partial").exists()
    # Unverified, the damage travels with its checksum: verify of the merged file finds it.
    bale.merge([a, b], out)
    report = verify(out)
    assert not report.ok and report.problems[0].column == "x"


def test_an_existing_target_is_kept_unless_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "t.bale"
    target.write_bytes(b"precious")
    parts = PartSet(target)
    parts.write_part(0, simple(0, 10))
    with pytest.raises(TargetExistsError):
        parts.merge(1)
    assert target.read_bytes() == b"precious" and parts.is_complete(0)
    assert PartSet(target, overwrite=True).merge(1).rows == 10
    with pytest.raises(ValueError, match="also an input"):
        bale.merge([target], target, overwrite=True)


def test_a_merge_killed_midway_is_run_again(tmp_path: Path) -> None:
    target = tmp_path / "t.bale"
    parts = PartSet(target)
    write_parts(parts, [0, 20, 40], [0, 1])
    # A merge in another process died here: it left a partial file and every part.
    script = (
        "import os, sys, bale; "
        "parts = bale.PartSet(sys.argv[1]); "
        "w = bale.Writer(sys.argv[1]); w.write({'id': [1, 2, 3]}); w.flush(); os._exit(9)"
    )
    subprocess.run([sys.executable, "-c", script, str(target)], timeout=60, check=False)
    assert Path(f"{target}.partial").exists() and not target.exists()
    assert parts.merge(2).rows == 40
    assert not Path(f"{target}.partial").exists()
    with bale.open(target) as ds:
        np.testing.assert_array_equal(ds.read()["id"], np.arange(40))


def test_keep_parts_and_metadata(tmp_path: Path) -> None:
    parts = PartSet(tmp_path / "t.bale")
    parts.write_part(0, simple(0, 10), metadata={"classes": ["a"]})
    parts.write_part(1, simple(10, 12), metadata={"classes": ["a"]})
    parts.merge(2, keep_parts=True, metadata={"source": "job 7"})
    assert parts.completed().keys() == {0, 1}
    with bale.open(tmp_path / "t.bale") as ds, bale.open(parts.part_path(1)) as part:
        assert part.metadata == {"classes": ["a"], "bale.part": 1}
        assert ds.metadata == {
            "source": "job 7",
            "bale.merge": {"parts": 2, "rows": [10, 2], "differing_keys": []},
        }


# -- the command --------------------------------------------------------------------------------


def test_bale_merge_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bale.cli.main import main

    a, b = tmp_path / "a.bale", tmp_path / "b.bale"
    bale.write(a, simple(0, 20))
    bale.write(b, simple(20, 30))
    out = tmp_path / "out.bale"
    assert main(["merge", str(a), str(b), str(out), "--verify"]) == 0
    assert f"{out}: 30 rows" in capsys.readouterr().out
    assert main(["merge", str(a), str(out)]) == 2  # exists
    assert "the file exists; pass overwrite=True" in capsys.readouterr().err
    other = tmp_path / "other.bale"
    bale.write(other, {"id": np.arange(3)})
    assert main(["merge", str(a), str(other), str(tmp_path / "x.bale")]) == 2
    assert "lacks column" in capsys.readouterr().err

    # --parts N finishes a distributed write whose parts are all written.
    parts = PartSet(tmp_path / "job.bale")
    parts.write_part(0, simple(0, 5))
    assert main(["merge", "--parts", "2", str(tmp_path / "job.bale")]) == 2
    assert "missing: 1" in capsys.readouterr().err
    parts.write_part(1, simple(5, 8))
    assert main(["merge", "--parts", "2", "--keep-parts", str(tmp_path / "job.bale")]) == 0
    assert parts.completed().keys() == {0, 1}
    with bale.open(tmp_path / "job.bale") as ds:
        np.testing.assert_array_equal(ds.read()["id"], np.arange(8))
    assert main(["merge", "--parts", "2", str(a), str(out)]) == 2
