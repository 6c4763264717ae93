"""Reading files: rows, slices, gathers, column views, row groups, threads and the block cache."""

from __future__ import annotations

import os
import pickle
import select
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale
from bale._core.dataset import reader_of

N = 100
GROUP = 16  # -> groups of 16 x 6 + 4


def make_columns() -> dict[str, Any]:
    rng = np.random.default_rng(42)
    return {
        "x": rng.standard_normal((N, 2, 3)).astype(np.float32),
        "y": np.arange(N, dtype=np.int64) * 10,
        "b": [rng.bytes(int(k)) for k in rng.integers(0, 40, N)],
        "s": [f"row {i} ✓" * (i % 3) for i in range(N)],
    }


COLUMNS = make_columns()


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("reader") / "data.bale"
    bale.write(target, COLUMNS, row_group_rows=GROUP, metadata={"name": "reader test"})
    return target


@pytest.fixture
def ds(path: Path) -> Any:
    with bale.open(path) as dataset:
        yield dataset


def expected_take(indices: Any) -> dict[str, Any]:
    idx = np.arange(N)[np.asarray(indices)] if len(np.asarray(indices)) else np.zeros(0, int)
    return {
        "x": COLUMNS["x"][idx],
        "y": COLUMNS["y"][idx],
        "b": [COLUMNS["b"][i] for i in idx],
        "s": [COLUMNS["s"][i] for i in idx],
    }


def assert_batch(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert list(got) == list(expected)
    for name, value in expected.items():
        if isinstance(value, np.ndarray):
            assert isinstance(got[name], np.ndarray), name
            assert got[name].dtype == value.dtype, name
            assert got[name].shape == value.shape, name
            assert np.array_equal(got[name], value), name
        else:
            assert got[name] == value, name


# -- description --------------------------------------------------------------------------------


def test_description(ds: bale.Dataset, path: Path) -> None:
    assert isinstance(ds, bale.Dataset)
    assert len(ds) == N
    assert ds.schema.names == ["x", "y", "b", "s"]
    assert ds.schema.describe() == {"x": "float32[2,3]", "y": "int64", "b": "bytes", "s": "string"}
    assert ds.metadata == {"name": "reader test"}
    assert ds.num_row_groups == 7
    assert ds.row_group_sizes == (16,) * 6 + (4,)
    assert str(path) in repr(ds)
    assert "100 rows" in repr(ds)


# -- rows ---------------------------------------------------------------------------------------


def test_every_row(ds: bale.Dataset) -> None:
    for i in range(N):
        row = ds[i]
        assert list(row) == ["x", "y", "b", "s"]
        assert np.array_equal(row["x"], COLUMNS["x"][i])
        assert row["x"].dtype == np.float32
        assert row["y"] == COLUMNS["y"][i]
        assert row["b"] == COLUMNS["b"][i]
        assert row["s"] == COLUMNS["s"][i]


@pytest.mark.parametrize("i", [-1, -2, -16, -17, -100])
def test_negative_row(ds: bale.Dataset, i: int) -> None:
    assert ds[i]["y"] == COLUMNS["y"][i]
    assert ds[i]["s"] == COLUMNS["s"][i]


@pytest.mark.parametrize("i", [N, N + 1, -N - 1, 10**12])
def test_row_out_of_range(ds: bale.Dataset, i: int) -> None:
    with pytest.raises(IndexError):
        ds[i]


def test_numpy_integer_row(ds: bale.Dataset) -> None:
    assert ds[np.int64(17)]["y"] == 170
    assert ds[np.uint8(3)]["y"] == 30


def test_row_with_selected_columns(ds: bale.Dataset) -> None:
    assert ds.row(20, ["s", "y"]) == {"s": COLUMNS["s"][20], "y": 200}


# -- slices -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        slice(None),
        slice(0, 5),
        slice(3, 16),
        slice(15, 17),  # across a group boundary
        slice(10, 90),  # across many groups
        slice(96, 100),  # the short last group
        slice(90, None),
        slice(-5, None),
        slice(-30, -10),
        slice(50, 500),  # past the end
        slice(None, None, 3),
        slice(1, 80, 7),
        slice(None, None, -1),
        slice(70, 10, -4),
    ],
)
def test_slices(ds: bale.Dataset, key: slice) -> None:
    assert_batch(ds[key], expected_take(np.arange(N)[key]))


@pytest.mark.parametrize("key", [slice(5, 5), slice(10, 3), slice(200, 300), slice(-1, -2)])
def test_empty_slices(ds: bale.Dataset, key: slice) -> None:
    batch = ds[key]
    assert batch["x"].shape == (0, 2, 3)
    assert batch["x"].dtype == np.float32
    assert batch["y"].shape == (0,)
    assert batch["b"] == []
    assert batch["s"] == []


def test_read_with_columns(ds: bale.Dataset) -> None:
    batch = ds.read(slice(14, 40), columns=["s", "y"])
    assert list(batch) == ["s", "y"]
    assert batch["s"] == COLUMNS["s"][14:40]
    assert batch["y"].tolist() == COLUMNS["y"][14:40].tolist()
    assert ds.read(columns=[]) == {}


# -- gathers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "indices",
    [
        [5, 1, 99],
        [0],
        [99, 98, 0, 1, 50, 16, 15, 17],
        [3, 3, 3, 40, 3],  # duplicates
        [-1, -100, 50],
        list(range(N))[::-1],
        [],
    ],
)
def test_take_lists_and_arrays(ds: bale.Dataset, indices: list[int]) -> None:
    expected = expected_take(np.array(indices, dtype=np.int64))
    assert_batch(ds[indices], expected)
    assert_batch(ds[np.array(indices, dtype=np.int64)], expected)
    assert_batch(ds.take(np.array(indices, dtype=np.int32)), expected)


def test_take_unsigned_indices(ds: bale.Dataset) -> None:
    assert_batch(ds[np.array([7, 2, 90], np.uint32)], expected_take([7, 2, 90]))


def test_boolean_masks(ds: bale.Dataset) -> None:
    mask = (np.arange(N) % 7 == 0) | (np.arange(N) > 95)
    expected = expected_take(np.flatnonzero(mask))
    assert_batch(ds[mask], expected)
    assert_batch(ds[mask.tolist()], expected)
    assert_batch(ds[np.zeros(N, bool)], expected_take([]))
    assert_batch(ds[np.ones(N, bool)], expected_take(np.arange(N)))


@pytest.mark.parametrize(
    "bad",
    [
        [0, N],
        [-N - 1],
        np.ones(N - 1, bool),
        np.ones(N + 1, bool),
        np.array([1.0, 2.0]),
        np.zeros((2, 2), int),
        np.array(["a"]),
    ],
)
def test_bad_gathers(ds: bale.Dataset, bad: Any) -> None:
    with pytest.raises(IndexError):
        ds[bad]


def test_huge_unsigned_index_is_out_of_range(ds: bale.Dataset) -> None:
    with pytest.raises(IndexError):
        ds[np.array([2**64 - 1], dtype=np.uint64)]


def test_gathered_arrays_are_independent_copies(ds: bale.Dataset) -> None:
    batch = ds[[1, 2]]
    batch["x"][:] = 0
    assert np.array_equal(ds[1]["x"], COLUMNS["x"][1])


# -- read-only results --------------------------------------------------------------------------


def test_rows_are_read_only_views(ds: bale.Dataset) -> None:
    row = ds[3]
    with pytest.raises(ValueError, match="read-only"):
        row["x"][0, 0] = 1.0
    within_group = ds[0:5]
    with pytest.raises(ValueError, match="read-only"):
        within_group["x"][0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        within_group["y"][0] = 1
    group = ds.read_row_group(2)
    with pytest.raises(ValueError, match="read-only"):
        group["y"][0] = 1
    assert np.array_equal(ds[3]["x"], COLUMNS["x"][3])
    assert ds[0]["y"] == 0


def test_copies_of_rows_are_writable(ds: bale.Dataset) -> None:
    x = ds[3]["x"].copy()
    x[:] = 7
    assert np.array_equal(ds[3]["x"], COLUMNS["x"][3])


# -- column views -------------------------------------------------------------------------------


def test_column_view_description(ds: bale.Dataset) -> None:
    col = ds["x"]
    assert isinstance(col, bale.ColumnView)
    assert col.shape == (N, 2, 3)
    assert col.ndim == 3
    assert col.dtype == np.float32
    assert len(col) == N
    assert col.chunks == (16,) * 6 + (4,)
    assert ds["y"].shape == (N,)
    assert ds["y"].dtype == np.int64
    assert ds["b"].shape == (N,)
    assert ds["b"].dtype == np.dtype(object)
    assert ds["s"].ndim == 1
    assert "'x'" in repr(col)


def test_column_view_indexing(ds: bale.Dataset) -> None:
    x, y = COLUMNS["x"], COLUMNS["y"]
    col = ds["x"]
    assert np.array_equal(col[5], x[5])
    assert np.array_equal(col[-1], x[-1])
    assert np.array_equal(col[np.int32(7)], x[7])
    assert np.array_equal(col[10:40], x[10:40])
    assert np.array_equal(col[::9], x[::9])
    assert np.array_equal(col[[3, 1, 2]], x[[3, 1, 2]])
    assert np.array_equal(col[np.array([99, 0])], x[[99, 0]])
    mask = np.arange(N) % 5 == 1
    assert np.array_equal(col[mask], x[mask])
    assert np.array_equal(col[2:5, 0], x[2:5, 0])
    assert np.array_equal(col[2:5, 1, 2], x[2:5, 1, 2])
    assert np.array_equal(col[2:50:3, :, ::2], x[2:50:3, :, ::2])
    assert np.array_equal(col[[4, 8], 1], x[[4, 8], 1])
    assert np.array_equal(col[3, 1], x[3, 1])
    assert col[3, 1, 2] == x[3, 1, 2]
    assert np.array_equal(col[:, ...], x)
    assert np.array_equal(col[...], x)
    assert np.array_equal(col[()], x)
    assert ds["y"][42] == y[42]
    assert np.array_equal(ds["y"][5:9], y[5:9])
    assert ds["s"][7] == COLUMNS["s"][7]
    assert ds["b"][3:6] == COLUMNS["b"][3:6]
    assert ds["s"][[9, 2]] == [COLUMNS["s"][9], COLUMNS["s"][2]]
    with pytest.raises(IndexError):
        col[N]
    with pytest.raises(IndexError):
        col[[0, N]]


def test_column_view_leading_ellipsis(ds: bale.Dataset) -> None:
    assert ds["x"][..., 0].shape == COLUMNS["x"][..., 0].shape


def test_column_view_element_indexing_of_var_columns_is_refused(ds: bale.Dataset) -> None:
    with pytest.raises(IndexError, match="only rows"):
        ds["s"][0:3, 0]


def test_column_view_as_array(ds: bale.Dataset) -> None:
    array = np.asarray(ds["x"])
    assert array.dtype == np.float32
    assert np.array_equal(array, COLUMNS["x"])
    assert np.array_equal(np.asarray(ds["y"], dtype=np.float64), COLUMNS["y"].astype(np.float64))
    strings = np.asarray(ds["s"])
    assert strings.dtype == object
    assert strings.tolist() == COLUMNS["s"]
    assert np.array_equal(np.array(ds["y"]), COLUMNS["y"])


def test_column_view_chunks(ds: bale.Dataset) -> None:
    chunks = list(ds["y"].iter_chunks())
    assert [len(c) for c in chunks] == list(ds["y"].chunks)
    assert np.array_equal(np.concatenate(chunks), COLUMNS["y"])
    assert [v for chunk in ds["b"].iter_chunks() for v in chunk] == COLUMNS["b"]


def test_unknown_column(ds: bale.Dataset) -> None:
    with pytest.raises(KeyError, match="nope"):
        ds["nope"]
    with pytest.raises(KeyError):
        ds.read(columns=["x", "nope"])
    with pytest.raises(KeyError):
        ds.take([1], columns=["nope"])
    with pytest.raises(KeyError):
        ds.row(1, ["nope"])
    with pytest.raises(KeyError):
        ds.read_row_group(0, ["nope"])
    with pytest.raises(TypeError):
        ds.read(columns="x")  # type: ignore[arg-type]


# -- row groups ---------------------------------------------------------------------------------


def test_iter_row_groups(ds: bale.Dataset) -> None:
    groups = list(ds.iter_row_groups())
    assert [len(g["y"]) for g in groups] == list(ds.row_group_sizes)
    assert np.array_equal(np.concatenate([g["x"] for g in groups]), COLUMNS["x"])
    assert [v for g in groups for v in g["s"]] == COLUMNS["s"]
    assert [v for g in groups for v in g["b"]] == COLUMNS["b"]


def test_iter_row_groups_with_columns(ds: bale.Dataset) -> None:
    groups = list(ds.iter_row_groups(columns=["s"]))
    assert all(list(g) == ["s"] for g in groups)
    assert [v for g in groups for v in g["s"]] == COLUMNS["s"]


@pytest.mark.parametrize("group", [0, 3, 6])
def test_read_row_group(ds: bale.Dataset, group: int) -> None:
    start = group * GROUP
    stop = min(start + GROUP, N)
    assert_batch(ds.read_row_group(group), expected_take(np.arange(start, stop)))
    subset = ds.read_row_group(group, ["b", "x"])
    assert list(subset) == ["b", "x"]
    assert subset["b"] == COLUMNS["b"][start:stop]
    assert np.array_equal(subset["x"], COLUMNS["x"][start:stop])


def test_read_row_group_after_cached_reads(ds: bale.Dataset) -> None:
    ds[20]  # caches some blocks of group 1
    ds.read(slice(16, 18), columns=["s"])
    assert_batch(ds.read_row_group(1), expected_take(np.arange(16, 32)))


# -- options, threads, cache --------------------------------------------------------------------


def test_verify_false_reads_the_same(path: Path) -> None:
    with bale.open(path, verify=False) as ds:
        assert ds.verify is False
        assert_batch(ds.read(), expected_take(np.arange(N)))
        assert_batch(ds[[50, 2]], expected_take([50, 2]))


def test_concurrent_gathers_match_a_single_thread(path: Path) -> None:
    rng = np.random.default_rng(7)
    requests = [rng.integers(-N, N, int(rng.integers(1, 40))) for _ in range(64)]
    with bale.open(path) as reference:
        expected = [reference.take(r) for r in requests]
    # A small cache makes threads decode and evict blocks concurrently.
    with bale.open(path, cache_bytes=4096) as shared:

        def work(k: int) -> dict[str, Any]:
            return shared.take(requests[k])

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(work, range(len(requests))))
        for got, want in zip(results, expected, strict=True):
            assert_batch(got, want)
        assert reader_of(shared).cache._size <= reader_of(shared).cache.capacity_bytes


def test_concurrent_mixed_access(path: Path) -> None:
    with bale.open(path, cache_bytes=8192) as shared:

        def work(k: int) -> bool:
            i = (k * 37) % N
            row_ok = shared[i]["s"] == COLUMNS["s"][i]
            lo = (k * 13) % N
            sl = shared[lo : lo + 20]
            slice_ok = np.array_equal(sl["x"], COLUMNS["x"][lo : lo + 20])
            group = shared.read_row_group(k % shared.num_row_groups, ["b"])
            g = k % shared.num_row_groups
            group_ok = group["b"] == COLUMNS["b"][g * GROUP : (g + 1) * GROUP]
            return row_ok and slice_ok and group_ok

        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(work, range(200)))


def test_block_cache_stays_within_its_capacity(path: Path) -> None:
    capacity = 3000  # a few blocks of this file
    with bale.open(path, cache_bytes=capacity) as ds:
        assert reader_of(ds).cache.capacity_bytes == capacity
        for _ in range(3):
            for group in range(ds.num_row_groups):
                ds.read_row_group(group)
                assert reader_of(ds).cache._size <= capacity
            for i in range(0, N, 7):
                ds[i]
                assert reader_of(ds).cache._size <= capacity
        items = list(reader_of(ds).cache._items.values())
        assert items  # blocks are cached at all
        assert sum(item.nbytes for item in items) == reader_of(ds).cache._size
        assert_batch(ds.read(), expected_take(np.arange(N)))


def test_cache_disabled(path: Path) -> None:
    with bale.open(path, cache_bytes=0) as ds:
        assert_batch(ds.read(), expected_take(np.arange(N)))
        assert_batch(ds[[5, 80, 5]], expected_take([5, 80, 5]))
        assert reader_of(ds).cache._size == 0


def test_dataset_pickles_by_path(path: Path) -> None:
    with bale.open(path, verify=False, cache_bytes=12345) as ds:
        clone = pickle.loads(pickle.dumps(ds))
    try:
        assert clone.path == str(path)
        assert clone.verify is False
        assert reader_of(clone).cache.capacity_bytes == 12345
        assert_batch(clone[[1, 60]], expected_take([1, 60]))
    finally:
        clone.close()


# -- small files --------------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.bale"
    with bale.Writer(path, {"x": bale.Array("float32", (3,)), "s": bale.String()}):
        pass
    with bale.open(path) as ds:
        assert len(ds) == 0
        assert ds.num_row_groups == 0
        assert ds["x"].shape == (0, 3)
        assert ds["x"].chunks == ()
        assert list(ds.iter_row_groups()) == []
        batch = ds[:]
        assert batch["x"].shape == (0, 3)
        assert batch["s"] == []
        gathered = ds[[]]
        assert gathered["x"].shape == (0, 3)
        assert gathered["s"] == []
        with pytest.raises(IndexError):
            ds[0]
        with pytest.raises(IndexError):
            ds[-1]
        assert np.asarray(ds["x"]).shape == (0, 3)


def test_single_row_file(tmp_path: Path) -> None:
    path = tmp_path / "one.bale"
    bale.write(path, {"y": np.array([7], np.uint16), "s": ["only"]})
    with bale.open(path) as ds:
        assert len(ds) == 1
        assert ds[0] == {"y": 7, "s": "only"}
        assert ds[-1]["s"] == "only"
        assert ds[[0, 0, -1]]["y"].tolist() == [7, 7, 7]
        assert ds[np.array([True])]["s"] == ["only"]


def test_opening_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        bale.open(tmp_path / "missing.bale")


def test_opening_a_folder_names_it(tmp_path: Path) -> None:
    with pytest.raises(bale.NotABaleFileError, match="is a folder") as info:
        bale.open(tmp_path)
    assert info.value.path == os.fspath(tmp_path)
    assert os.fspath(tmp_path) in str(info.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_opening_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.bale"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def open_it() -> None:
        try:
            bale.open(fifo).close()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=open_it, daemon=True)
    thread.start()
    thread.join(30)
    if thread.is_alive():  # blocked in open(): give it a writer and an end, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(30)
        pytest.fail("bale.open of a FIFO blocked waiting for a writer")
    assert isinstance(outcome[0], bale.NotABaleFileError), outcome
    assert "FIFO" in str(outcome[0]) and os.fspath(fifo) in str(outcome[0])


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_opening_a_device_is_refused() -> None:
    with pytest.raises(bale.NotABaleFileError, match="character device"):
        bale.open("/dev/zero")


# -- the mapping users expect ---------------------------------------------------------------------


def test_a_dataset_answers_column_questions_from_its_schema(path: Path) -> None:
    with bale.open(path) as ds:
        reader = reader_of(ds)
        assert "x" in ds and "s" in ds and "nope" not in ds
        assert ds.columns == ds.keys() == ("x", "y", "b", "s")
        assert len(ds.columns) == 4
        assert dict(ds).keys() == {"x", "y", "b", "s"}  # keys() + ds[name]: a mapping of columns
        with pytest.raises(TypeError, match="column name"):
            _ = 3 in ds  # type: ignore[operator]
        assert not reader.cache._items and not reader.pinned_bytes()  # no data was read


def test_iterating_a_dataset_gives_its_rows_in_order(path: Path) -> None:
    with bale.open(path) as ds:
        rows = list(ds)
        assert len(rows) == N
        for i in (0, 15, 16, 57, N - 1):
            want = ds[i]
            assert rows[i].keys() == want.keys()
            np.testing.assert_array_equal(rows[i]["x"], want["x"])
            assert rows[i]["y"] == want["y"] and rows[i]["b"] == want["b"]
            assert rows[i]["s"] == want["s"] == COLUMNS["s"][i]


# -- small columns pinned -------------------------------------------------------------------------


def test_small_columns_are_pinned_block_by_block_and_then_read_without_the_file(path: Path) -> None:
    with bale.open(path) as ds:
        reader = reader_of(ds)
        assert {ds.columns[p] for p in reader._pinnable} == {"x", "y", "b", "s"}  # all small here
        assert ds[20]["y"] == 200
        assert set(reader._pinned) == {(1, p) for p in range(4)}  # only the group asked for
        reads = []
        read = reader.source.read
        reader.source.read = lambda offset, size: reads.append(size) or read(offset, size)  # type: ignore[method-assign]
        for i in range(16, 32):
            row = ds[i]
            assert row["y"] == 10 * i and row["b"] == COLUMNS["b"][i]
        assert reads == []  # the whole group is pinned: no read, no decode
        assert reader.pinned_bytes() == sum(v.nbytes for v in reader._pinned.values()) > 0
        # What is pinned comes out of the block cache's budget.
        assert reader.cache._reserved == reader.pinned_bytes()


def test_only_columns_small_against_the_cache_are_pinned(tmp_path: Path) -> None:
    target = tmp_path / "mixed.bale"
    rng = np.random.default_rng(3)
    bale.write(
        target,
        {"big": rng.integers(0, 9, (400, 1000), dtype=np.uint8), "label": np.arange(400)},
        row_group_rows=50,
        codecs={"big": "zstd"},
    )
    with bale.open(target, cache_bytes=8 * 400 * 8) as ds:  # budget: 3,200 bytes a column
        reader = reader_of(ds)
        assert [ds.columns[p] for p in reader._pinnable] == ["label"]
        assert ds[123]["label"] == 123 and (1, 0) not in reader._pinned
        ds.cache_bytes = 0  # no budget: nothing pinned, nothing kept
        assert not reader._pinnable and not reader.pinned_bytes()
        assert ds[124]["label"] == 124
    with bale.open(target, cache_bytes=0) as ds:
        assert not reader_of(ds)._pinnable


def test_damage_in_a_pinned_column_is_reported_for_its_own_rows_only(tmp_path: Path) -> None:
    target = tmp_path / "damaged.bale"
    bale.write(
        target, {"y": np.arange(64, dtype=np.int64)}, row_group_rows=16, codecs={"y": "zstd"}
    )
    with bale.open(target) as ds:
        record = ds.index.blocks[2, 0]
    data = bytearray(target.read_bytes())
    data[int(record["offset"]) + 3] ^= 0xFF
    target.write_bytes(bytes(data))
    with bale.open(target) as ds:
        assert ds[5]["y"] == 5 and ds[60]["y"] == 60
        with pytest.raises(bale.errors.CorruptFileError, match=r"rows 32\.\.47"):
            ds[40]


# -- gathers in parallel threads ------------------------------------------------------------------


def test_a_gather_over_many_groups_is_the_same_in_parallel_threads(path: Path) -> None:
    rng = np.random.default_rng(5)
    with bale.open(path, cache_bytes=0) as ds:  # nothing cached or pinned: every block decoded
        for _ in range(5):
            idx = rng.integers(-N, N, 200)
            got = ds.take(idx)
            want = expected_take(np.where(idx < 0, idx + N, idx))
            for name in ("x", "y"):
                np.testing.assert_array_equal(got[name], want[name])
            assert got["b"] == want["b"] and got["s"] == want["s"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_forked_child_gathers_and_caches_after_its_parent_held_the_locks(path: Path) -> None:
    with bale.open(path, cache_bytes=0) as ds:  # nothing pinned: every row asks the cache
        ds.take(np.arange(N))  # the gather pool and the cache exist in the parent
        reader = reader_of(ds)
        read_end, write_end = os.pipe()
        with reader.cache._lock:  # another thread of the parent holds the lock at the fork
            pid = os.fork()
            if pid == 0:  # the child: the same Dataset object, inherited
                try:
                    os.close(read_end)
                    values = ds.take(np.arange(N)[::-1])["y"]  # cache + gather pool in the child
                    os.write(write_end, np.asarray(values, np.int64).tobytes())
                finally:
                    os._exit(0)
        os.close(write_end)
        ready, _, _ = select.select([read_end], [], [], 30)
        got = os.read(read_end, 8 * N) if ready else b""
        os.close(read_end)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert ready, "the forked child hung on a lock held at fork time"
        np.testing.assert_array_equal(np.frombuffer(got, np.int64), COLUMNS["y"][::-1])
