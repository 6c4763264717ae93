"""bale.adapters.dask / bale.dask: columns as dask arrays of whole row groups, gathers by take."""

from __future__ import annotations

import functools
import json
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale
import bale.adapters.dask
from bale._core.dataset import Dataset
from bale._core.reader import FileReader

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

from bale.adapters.dask import (  # noqa: E402
    ColumnSource,
    parts_of,
    whole_group_chunks,
)
from bale.dask import from_bale  # noqa: E402

ROWS = 1000
#: The gather files: 128 row groups of 128 images of 16x16x4 uint8 (128 KiB per block: two
#: 64 KiB frames each when written with random_access=True).
IMAGES, IMAGE_GROUP_ROWS, IMAGE_SHAPE = 16_384, 128, (16, 16, 4)


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    target = tmp_path_factory.mktemp("dask") / "rows.bale"
    with bale.Writer(target, row_group_rows=300) as writer:
        writer.write(
            {
                "x": rng.standard_normal((700, 4, 2)).astype(np.float32),
                "label": np.arange(700, dtype=np.int16),
                "blob": [b"a"] * 700,
            }
        )
        writer.flush()  # uneven row groups: 300, 300, 100, 300
        writer.write(
            {
                "x": rng.standard_normal((300, 4, 2)).astype(np.float32),
                "label": np.arange(700, ROWS, dtype=np.int16),
                "blob": [b"b"] * 300,
            }
        )
    return target


@functools.cache
def images() -> np.ndarray:
    rng = np.random.default_rng(1)
    ramp = np.add.outer(np.arange(16), np.arange(16)).astype(np.uint8)[None, :, :, None]
    shade = rng.integers(0, 200, (IMAGES, 1, 1, IMAGE_SHAPE[-1]), dtype=np.uint8)
    return (ramp + shade + rng.integers(0, 4, (IMAGES, *IMAGE_SHAPE), dtype=np.uint8)).astype(
        np.uint8
    )


@pytest.fixture(scope="module", params=[False, True], ids=["default", "random_access"])
def image_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("dask-images") / "images.bale"
    with bale.Writer(
        target,
        codecs={"img": "zstd"},
        row_group_rows=IMAGE_GROUP_ROWS,
        random_access=request.param,
    ) as writer:
        writer.write({"img": images()})
    return target


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The row group of every whole block decoded (FileReader.decode) in this process."""
    seen: list[int] = []
    original = FileReader.decode

    def spy(self: FileReader, group: int, *args: Any) -> Any:
        seen.append(group)
        return original(self, group, *args)

    monkeypatch.setattr(FileReader, "decode", spy)
    yield seen


# -- chunks -----------------------------------------------------------------------------------


def test_whole_group_chunks() -> None:
    sizes = (300, 300, 100, 300)
    assert whole_group_chunks(sizes, 1) == sizes
    assert whole_group_chunks(sizes, 650) == (600, 400)
    assert whole_group_chunks(sizes, 700) == (600, 400)  # 700 + 300 would fit: less even
    assert whole_group_chunks(sizes, 10**9) == (1000,)
    assert whole_group_chunks((), 10) == (0,)
    assert whole_group_chunks((100,) * 10, 800) == (500, 500)  # even, not (800, 200)
    assert whole_group_chunks((85,) * 142, 10_922) == (6035, 6035)  # 2 x 74 MB of 64x64x3
    chunks = whole_group_chunks((128,) * 128, 1000)
    assert len(chunks) == 19 and max(chunks) == 896 and min(chunks) == 768


def test_parts_of_a_gather() -> None:
    starts = np.array([0, 10, 20, 30, 40])  # four groups of ten rows
    rows = np.array([35, 1, 12, 3, 27, 36, 15])

    def whole_blocks(groups: np.ndarray, counts: np.ndarray) -> np.ndarray:
        return np.full(len(groups), 100)

    parts, inverse = parts_of(rows, starts, whole_blocks, 200)  # two blocks a take
    assert [p.tolist() for p in parts] == [[1, 3, 12, 15], [27, 35, 36]]
    np.testing.assert_array_equal(np.concatenate(parts)[inverse], rows)
    parts, inverse = parts_of(rows, starts, whole_blocks, 10**6)
    assert [p.tolist() for p in parts] == [[1, 3, 12, 15, 27, 35, 36]]
    np.testing.assert_array_equal(np.concatenate(parts)[inverse], rows)
    parts, _ = parts_of(rows, starts, lambda groups, counts: 60 * counts, 130)  # frames
    assert [p.tolist() for p in parts] == [[1, 3, 12, 15], [27], [35, 36]]


def test_decode_bytes_follow_the_layout(image_path: Path) -> None:
    source = ColumnSource(Dataset(image_path, cache_bytes=0), "img")
    block = IMAGE_GROUP_ROWS * int(np.prod(IMAGE_SHAPE))
    cost = source.decode_bytes(np.array([0, 5]), np.array([1, 100]))
    frame = bale.open(image_path).index.segment_bytes
    if frame < block:  # random_access: a row decodes its frame
        assert cost.tolist() == [frame, block]
    else:  # a row: its whole block
        assert cost.tolist() == [block, block]


def test_auto_chunks_follow_dask_chunk_size(path: Path) -> None:
    assert from_bale(path, "x").chunks == ((ROWS,), (4,), (2,))  # 32 KB < 128 MiB
    with dask.config.set({"array.chunk-size": "20KiB"}):  # 640 rows of 32 bytes
        assert from_bale(path, "x").chunks[0] == (600, 400)
        assert from_bale(path, "label").chunks[0] == (ROWS,)  # 2-byte rows
    with dask.config.set({"array.chunk-size": 1}):  # less than a row: one group per chunk
        assert from_bale(path, "x").chunks[0] == (300, 300, 100, 300)


def test_chunks_keyword_rounds_to_whole_row_groups(path: Path) -> None:
    sizes = bale.open(path).row_group_sizes
    assert sizes == (300, 300, 100, 300)
    x = from_bale(path, "x", chunks=1)
    assert x.shape == (ROWS, 4, 2) and x.dtype == np.float32
    assert x.chunks == (sizes, (4,), (2,))
    assert from_bale(path, "label", chunks=650).chunks == ((600, 400),)
    assert from_bale(path, "label", chunks="auto").chunks == ((ROWS,),)
    # one task per chunk, plus the source they all read
    assert len(x.__dask_graph__()) == len(sizes) + 1
    for bad in (0, -5, True, "big", 2.5):
        with pytest.raises(ValueError, match="chunks must be"):
            from_bale(path, "x", chunks=bad)  # type: ignore[arg-type]


# -- whole-array reads ------------------------------------------------------------------------


@pytest.mark.parametrize("chunks", [1, 650, "auto"])
def test_compute_equals_the_column(path: Path, chunks: Any) -> None:
    ds = bale.open(path)
    for column in ("x", "label"):
        np.testing.assert_array_equal(
            from_bale(path, column, chunks=chunks).compute(), ds[column][:]
        )
    assert int(from_bale(path, "label", chunks=chunks).sum().compute()) == sum(range(ROWS))
    np.testing.assert_allclose(
        from_bale(path, "x", chunks=chunks).mean(axis=0).compute(),
        ds["x"][:].mean(axis=0),
        rtol=1e-4,
        atol=1e-6,
    )


@pytest.mark.parametrize("chunks", [1, 650, "auto"])
def test_each_row_group_is_decoded_once(path: Path, chunks: Any, decodes: list[int]) -> None:
    from_bale(path, "x", chunks=chunks).sum().compute(scheduler="threads")
    assert sorted(decodes) == list(range(bale.open(path).num_row_groups))
    decodes.clear()
    from_bale(path, "x", chunks=chunks)[350:360].compute()  # only the group holding those rows
    assert decodes == [1]


def test_slices_and_trailing_keys(path: Path) -> None:
    x, full = from_bale(path, "x", chunks=650), bale.open(path)["x"][:]
    for key in (
        np.s_[350:360],
        np.s_[5],
        np.s_[-1, 2],
        np.s_[::7],
        np.s_[..., 1],
        np.s_[150:950, 1:, 0],
        np.s_[:, [0, 2]],
        np.s_[None, 10:20],
    ):
        np.testing.assert_array_equal(x[key].compute(), full[key])


def test_results_are_fresh_writable_arrays(path: Path) -> None:
    x = from_bale(path, "x", chunks=1)
    full = bale.open(path)["x"][:]
    idx = np.array([5, 950, 301])
    for key in (np.s_[350:360], np.s_[0:300], np.s_[:], idx, np.s_[7]):
        first = x[key].compute()
        assert first.flags.writeable
        first[...] = 0  # must not change what the next read sees
        second = x[key].compute()
        np.testing.assert_array_equal(second, full[key])
        assert not np.shares_memory(first, second)


def test_the_source_slices_like_numpy(path: Path) -> None:
    source = ColumnSource(Dataset(path, cache_bytes=0), "x")
    full = bale.open(path)["x"][:]
    assert source.shape == full.shape and source.ndim == 3 and source.dtype == np.float32
    for key in (
        np.s_[3],
        np.s_[3, 1],
        np.s_[290:310, :, 1],
        np.s_[::50],
        np.s_[..., 0],
        (np.array([9, 2, 650]), slice(1, 3)),
        np.arange(ROWS) % 3 == 0,
    ):
        value = source[key]
        np.testing.assert_array_equal(value, full[key])
        assert not isinstance(value, np.ndarray) or value.flags.writeable
    clone = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(clone[10:20], full[10:20])


# -- gathers ----------------------------------------------------------------------------------


def scattered(n: int, seed: int = 2) -> np.ndarray:
    """``n`` rows in random order, each from a different row group (so one frame each)."""
    rng = np.random.default_rng(seed)
    groups = rng.permutation(IMAGES // IMAGE_GROUP_ROWS)[:n]
    return groups * IMAGE_GROUP_ROWS + rng.integers(0, IMAGE_GROUP_ROWS, n)


@pytest.mark.parametrize("chunks", ["auto", 1])
def test_a_gather_decodes_only_the_rows_it_needs(
    image_path: Path, chunks: Any, decodes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    full = images()
    x = from_bale(image_path, "img", chunks=chunks)
    assert (len(x.chunks[0]) == 1) == (chunks == "auto")  # 16 MB: one chunk of 128 row groups
    calls: list[tuple[str, Any]] = []
    take, read = Dataset.take, Dataset.read
    monkeypatch.setattr(
        Dataset, "take", lambda s, i, c=None: calls.append(("take", np.array(i))) or take(s, i, c)
    )
    monkeypatch.setattr(
        Dataset, "read", lambda s, r=None, c=None: calls.append(("read", r)) or read(s, r, c)
    )
    idx = scattered(64)
    got = x[idx].compute()
    np.testing.assert_array_equal(got, full[idx])
    assert got.flags.writeable
    # takes of exactly those rows, each row group in one take, no chunk read whole
    assert {kind for kind, _ in calls} == {"take"}
    taken = [rows for _, rows in calls]
    np.testing.assert_array_equal(np.sort(np.concatenate(taken)), np.sort(idx))
    per_take = [set((rows // IMAGE_GROUP_ROWS).tolist()) for rows in taken]
    assert sum(map(len, per_take)) == len(set().union(*per_take))
    groups = set((idx // IMAGE_GROUP_ROWS).tolist())
    assert len(groups) < bale.open(image_path).num_row_groups
    if bale.open(image_path).index.segment_bytes <= 64 << 10:  # random_access: frames only
        assert decodes == []
    else:  # each touched row group once, no other
        assert sorted(decodes) == sorted(groups)


def test_a_gather_over_many_blocks_is_read_by_parallel_takes(
    image_path: Path, decodes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bale.adapters.dask, "PART_BYTES", 1 << 20)  # 8 blocks of 128 KiB
    x = from_bale(image_path, "img")
    idx = scattered(64)
    frame = bale.open(image_path).index.segment_bytes
    block = IMAGE_GROUP_ROWS * int(np.prod(IMAGE_SHAPE))
    layout_is_frames = frame < block
    takes = -(-len(idx) * min(frame, block) // (1 << 20))  # a frame or a block per row
    assert layout_is_frames or takes == 8
    graph = x[idx].__dask_graph__()
    # the source, the takes and the task that puts their rows back in order (if several)
    assert len(graph) == 1 + takes + (takes > 1)
    np.testing.assert_array_equal(x[idx].compute(scheduler="threads"), images()[idx])
    np.testing.assert_array_equal(x[idx, 2:4].compute(scheduler="threads"), images()[idx, 2:4])
    if not layout_is_frames:
        assert sorted(decodes) == sorted(2 * (idx // IMAGE_GROUP_ROWS).tolist())


def test_gathers_with_trailing_keys_masks_and_negative_rows(image_path: Path) -> None:
    full = images()
    x = from_bale(image_path, "img", chunks=1)
    idx = scattered(64)
    mask = np.zeros(IMAGES, bool)
    mask[idx] = True
    for key in (
        (idx, slice(2, 5), 0),
        (idx, Ellipsis, 1),
        (list(idx - IMAGES),),
        (idx[:1],),
        (mask,),
        (idx, None),
        (np.sort(idx)[::-1],),
        (np.array([7, 7, 7]),),
    ):
        np.testing.assert_array_equal(x[key].compute(), full[key])
    assert x[np.array([], int)].compute().shape == (0, *IMAGE_SHAPE)
    for bad in (np.array([IMAGES]), np.array([-IMAGES - 1])):
        with pytest.raises(IndexError):
            x[bad].compute()


def test_large_gathers_read_each_block_once(image_path: Path, decodes: list[int]) -> None:
    full = images()
    x = from_bale(image_path, "img", chunks=1000)  # 7 row groups, 896 rows, per chunk
    everything = np.random.default_rng(3).permutation(IMAGES)  # pieces share groups: shuffle
    np.testing.assert_array_equal(x[everything].compute(), full[everything])
    if bale.open(image_path).index.segment_bytes > 64 << 10:
        assert sorted(decodes) == list(range(bale.open(image_path).num_row_groups))
    ordered = np.arange(896, 5 * 896)  # pieces in disjoint groups: takes
    np.testing.assert_array_equal(x[ordered].compute(), full[ordered])
    assert len(x[ordered].__dask_graph__()) == 5  # the source and four takes


def test_gathers_in_other_processes(image_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full = images()
    x = from_bale(image_path, "img", chunks=3000)
    idx = scattered(64)
    with dask.config.set(scheduler="processes", num_workers=2):
        np.testing.assert_array_equal(x[idx].compute(), full[idx])
        np.testing.assert_array_equal(x[idx, 3].compute(), full[idx, 3])
        assert int(x.sum(dtype=np.int64).compute()) == int(full.sum(dtype=np.int64))
        monkeypatch.setattr(bale.adapters.dask, "PART_BYTES", 1 << 20)  # takes + merge
        np.testing.assert_array_equal(x[idx].compute(), full[idx])


# -- identity and errors ----------------------------------------------------------------------


def test_graph_pickles_by_path(path: Path) -> None:
    x = from_bale(path, "label")
    clone = pickle.loads(pickle.dumps(x))
    np.testing.assert_array_equal(clone.compute(), np.arange(ROWS))
    idx = np.array([999, 0, 500])
    assert type(clone) is type(x)  # still gathers by take
    np.testing.assert_array_equal(clone[idx].compute(), idx)
    assert clone[idx].name == x[idx].name


def test_name_changes_when_the_file_or_the_chunks_change(path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.bale"
    copy.write_bytes(path.read_bytes())
    before = from_bale(copy, "label").name
    assert from_bale(copy, "label").name == before  # deterministic
    assert from_bale(copy, "label", chunks=1).name != before
    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert from_bale(copy, "label").name != before


def test_bytes_column_and_unknown_column(path: Path) -> None:
    with pytest.raises(bale.SchemaError, match="array columns"):
        from_bale(path, "blob")
    with pytest.raises(KeyError, match="nope"):
        from_bale(path, "nope")


def test_empty_file(tmp_path: Path) -> None:
    target = tmp_path / "empty.bale"
    with bale.Writer(target) as writer:
        writer.write({"x": np.zeros((0, 4), np.float32)})
    x = from_bale(target, "x")
    assert x.shape == (0, 4) and x.dtype == np.float32
    assert x.compute().shape == (0, 4)


def test_importing_the_adapter_does_not_import_dask() -> None:
    probe = (
        "import sys, json, bale, bale.dask, bale.adapters.dask\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'dask')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


# -- to_bale (the default threaded scheduler; the cluster's tests: test_dask_distributed) ------

dd = pytest.importorskip("dask.dataframe")
db = pytest.importorskip("dask.bag")
pd = pytest.importorskip("pandas")

from dask.delayed import Delayed  # noqa: E402

from bale.dask import read_bale_dataframe, to_bale  # noqa: E402
from bale.ops.parts import PartSet  # noqa: E402


def test_to_bale_an_array_rows_along_axis_0(tmp_path: Path) -> None:
    values = np.arange(1000 * 6, dtype=np.int32).reshape(1000, 2, 3)
    x = da.from_array(values, chunks=(300, 1, 2))  # rechunked to whole rows
    report = to_bale(x, tmp_path / "x.bale")
    assert report.rows == 1000 and [s.rows for s in report.sources] == [300, 300, 300, 100]
    ds = bale.open(tmp_path / "x.bale")
    assert ds.schema.describe() == {"x": "int32[2,3]"}
    np.testing.assert_array_equal(ds["x"][:], values)
    to_bale(x[:, 0, 0], tmp_path / "named.bale", column="v", metadata={"source": "test"})
    named = bale.open(tmp_path / "named.bale")
    np.testing.assert_array_equal(named["v"][:], values[:, 0, 0])
    assert named.metadata["source"] == "test"
    words = da.from_array(np.array(["a", "bb", "ccc", ""] * 5), chunks=7)
    to_bale(words, tmp_path / "words.bale", column="word")
    assert bale.open(tmp_path / "words.bale")["word"][:] == ["a", "bb", "ccc", ""] * 5


def test_to_bale_a_dict_of_arrays_aligns_their_chunks(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 255, (500, 4, 4), dtype=np.uint8)
    arrays = {
        "image": da.from_array(image, chunks=(120, 4, 4)),
        "label": da.arange(500, chunks=77),
        "weight": da.ones(500, chunks=500, dtype=np.float16),
    }
    to_bale(arrays, tmp_path / "d.bale", codecs={"image": "zstd:5"})
    ds = bale.open(tmp_path / "d.bale")
    assert ds.row_group_sizes == (120, 120, 120, 120, 20)  # the first array's chunks
    np.testing.assert_array_equal(ds["image"][:], image)
    np.testing.assert_array_equal(ds["label"][:], np.arange(500))
    assert ds["weight"].dtype == np.float16
    with pytest.raises(bale.SchemaError, match=r"different numbers of rows: \{'a': 5, 'b': 6\}"):
        to_bale({"a": da.ones(5), "b": da.ones(6)}, tmp_path / "bad.bale")
    unknown = da.arange(10, chunks=5)
    unknown = unknown[unknown != 7]  # lengths known only once computed: 5 and 4
    with pytest.raises(bale.SchemaError, match=r"partition 1: the arrays have different numbers"):
        to_bale({"a": unknown, "b": da.arange(10, chunks=5)}, tmp_path / "u.bale")


def test_to_bale_a_bag_of_row_dicts(tmp_path: Path) -> None:
    rows = [
        {"image": np.full((2, 2), i, np.uint8), "label": i, "score": i / 2, "name": f"n{i}"}
        for i in range(40)
    ]
    bag = db.from_sequence(rows, npartitions=5).filter(lambda r: not 8 <= r["label"] < 16)
    report = to_bale(bag, tmp_path / "b.bale")  # partition 1 is empty: a part of no rows
    assert [s.rows for s in report.sources] == [8, 0, 8, 8, 8]
    ds = bale.open(tmp_path / "b.bale")
    assert ds.schema.describe() == {
        "image": "uint8[2,2]",
        "label": "int64",
        "score": "float64",
        "name": "string",
    }
    kept = [r for r in rows if not 8 <= r["label"] < 16]
    assert ds["name"][:] == [r["name"] for r in kept]
    np.testing.assert_array_equal(ds["image"][:], np.stack([r["image"] for r in kept]))


def test_to_bale_a_dataframe(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {
            "i": np.arange(50, dtype=np.int16),
            "f": np.linspace(0, 1, 50),
            "nan": np.where(np.arange(50) % 7 == 0, np.nan, 1.5),  # NaN is a float: kept
            "ok": np.arange(50) % 2 == 0,
            "s": [f"s{i}" for i in range(50)],
            "n": pd.array(range(50), dtype="Int64"),  # nullable, without nulls
        }
    )
    to_bale(dd.from_pandas(table, npartitions=3), tmp_path / "t.bale")
    ds = bale.open(tmp_path / "t.bale")
    assert ds.schema.describe() == {
        "i": "int16",
        "f": "float64",
        "nan": "float64",
        "ok": "bool",
        "s": "string",
        "n": "int64",
    }
    np.testing.assert_array_equal(ds["nan"][:], table["nan"].to_numpy())
    assert ds["s"][:] == table["s"].tolist()
    back = read_bale_dataframe(tmp_path / "t.bale").compute()
    pd.testing.assert_frame_equal(back, table, check_dtype=False)


def test_to_bale_refuses_bad_input_naming_partition_rows_and_column(tmp_path: Path) -> None:
    target = tmp_path / "bad.bale"
    ragged = db.from_sequence([{"a": 1}, {"a": 2}, {"a": 3, "b": 4}], npartitions=1)
    with pytest.raises(bale.SchemaError, match=r"partition 0, its row 2: ragged rows"):
        to_bale(ragged, target)
    shapes = db.from_sequence([{"v": np.zeros(3)}, {"v": np.zeros(4)}], npartitions=1)
    with pytest.raises(bale.SchemaError, match="ragged values: shape") as caught:
        to_bale(shapes, tmp_path / "shapes.bale")
    assert caught.value.column == "v"
    with pytest.raises(bale.SchemaError, match="holds row dicts, got int"):
        to_bale(db.from_sequence([1, 2]), tmp_path / "ints.bale")
    mixed = db.from_sequence([{"s": "a"}, {"s": 5}], npartitions=1)
    with pytest.raises(
        bale.SchemaError,
        match=r"partition 0, its row 1: expected str \(as in the partition's first row\), got int",
    ):
        to_bale(mixed, tmp_path / "mixed.bale")
    stamps = dd.from_pandas(pd.DataFrame({"t": pd.date_range("2020", periods=3)}), npartitions=1)
    with pytest.raises(bale.SchemaError, match="unsupported dtype datetime64") as caught:
        to_bale(stamps, tmp_path / "stamps.bale")
    assert caught.value.column == "t"
    nulls = pd.DataFrame({"n": pd.array([1, None, 3], dtype="Int64"), "s": ["a", "b", None]})
    with pytest.raises(bale.SchemaError, match="partition 0, its row 1: missing value"):
        to_bale(dd.from_pandas(nulls[["n"]], npartitions=2), tmp_path / "nulls.bale")
    with pytest.raises(bale.SchemaError, match="missing value") as caught:
        to_bale(dd.from_pandas(nulls[["s"]], npartitions=1), tmp_path / "nulls.bale")
    assert caught.value.column == "s"
    objects = da.from_array(np.array([{}, {}], dtype=object), chunks=1)
    with pytest.raises(bale.SchemaError, match="unsupported dtype object"):
        to_bale(objects, tmp_path / "objects.bale")
    with pytest.raises(TypeError, match="a dask array, a dict"):
        to_bale(np.zeros(3), tmp_path / "numpy.bale")
    with pytest.raises(ValueError, match="a dict names its arrays"):
        to_bale({"a": da.ones(3)}, tmp_path / "dict.bale", column="a")
    assert not any(p.suffix == ".bale" for p in tmp_path.iterdir())  # nothing published


def test_to_bale_refuses_an_existing_target_before_any_work(tmp_path: Path) -> None:
    target = tmp_path / "x.bale"
    to_bale(da.ones(10, chunks=5), target)
    calls: list[int] = []
    counted = da.ones(10, chunks=5).map_blocks(lambda b: calls.append(1) or b * 2)
    calls.clear()  # map_blocks called it once to learn its output
    with pytest.raises(bale.TargetExistsError, match="overwrite=True"):
        to_bale(counted, target)
    assert calls == []
    to_bale(counted, target, overwrite=True)
    np.testing.assert_array_equal(bale.open(target)["x"][:], np.full(10, 2.0))


def test_to_bale_compute_false_is_one_delayed_job(tmp_path: Path) -> None:
    target = tmp_path / "later.bale"
    job = to_bale(da.arange(100, chunks=30), target, compute=False)
    assert isinstance(job, Delayed)
    assert not target.exists() and not Path(f"{target}.parts").exists()
    report = job.compute(scheduler="sync")
    assert report.rows == 100 and target.exists()
    np.testing.assert_array_equal(bale.open(target)["x"][:], np.arange(100))


def test_to_bale_resumes_a_job_that_failed(tmp_path: Path) -> None:
    target, calls = tmp_path / "r.bale", []
    failing = {3}

    def rows(numbers: list[int]) -> list[dict[str, int]]:
        calls.append(numbers[0] // 10)
        if numbers[0] // 10 in failing:
            raise RuntimeError("partition 3 failed")
        return [{"n": n} for n in numbers]

    bag = db.from_sequence(range(50), npartitions=5).map_partitions(rows)
    with pytest.raises(RuntimeError, match="partition 3 failed"), dask.config.set(scheduler="sync"):
        to_bale(bag, target)
    finished = set(PartSet(target).completed())
    assert 3 not in finished and finished
    inodes = {i: os.stat(PartSet(target).part_path(i)).st_ino for i in finished}
    failing.clear()
    calls.clear()
    job = to_bale(bag, target, compute=False)
    assert {i: os.stat(PartSet(target).part_path(i)).st_ino for i in finished} == inodes
    job.compute()
    assert sorted(calls) == sorted(set(range(5)) - finished)  # the finished ones not again
    assert bale.open(target)["n"][:].tolist() == list(range(50))


def test_to_bale_writes_again_a_part_of_another_job(tmp_path: Path) -> None:
    target = tmp_path / "s.bale"
    PartSet(target).write_part(1, {"x": np.zeros(3, np.int64)})  # left by some other job
    to_bale(da.arange(10, chunks=5), target)
    assert bale.open(target)["x"][:].tolist() == list(range(10))


# -- read_bale_dataframe ------------------------------------------------------------------------


def test_read_bale_dataframe_of_several_files(tmp_path: Path) -> None:
    paths = []
    for k, rows in enumerate((700, 0, 300)):
        paths.append(tmp_path / f"f{k}.bale")
        schema = {"id": bale.Array("int64"), "name": bale.String(), "blob": bale.Bytes()}
        schema["vec"] = bale.Array("float32", (2,))
        with bale.Writer(paths[-1], schema, row_group_rows=100) as writer:
            writer.write(
                {
                    "id": np.arange(rows, dtype=np.int64) + 1000 * k,
                    "name": [f"name {i}" for i in range(rows)],
                    "blob": [bytes([i % 256]) * (i % 5) for i in range(rows)],
                    "vec": np.zeros((rows, 2), np.float32),
                }
            )
    with dask.config.set({"array.chunk-size": "2KiB"}):  # ~2 KiB of raw rows: 100-row groups
        frame = read_bale_dataframe(paths, ["id", "name", "blob"])
    assert frame.known_divisions and frame.npartitions > 2
    assert frame.divisions[0] == 0 and frame.divisions[-1] == 999
    table = frame.compute()
    assert table.index.tolist() == list(range(1000))
    assert table["id"].tolist() == list(range(700)) + list(range(2000, 2300))
    assert table["name"].iloc[701] == "name 1"
    assert table["blob"].iloc[704] == b"\x04" * 4
    assert str(table["name"].dtype) == "string" and table["id"].dtype == np.int64
    assert frame.loc[695:705].compute()["id"].tolist() == [*range(695, 700), *range(2000, 2006)]
    assert frame["id"].sum().compute() == sum(range(700)) + sum(range(2000, 2300))
    with pytest.raises(bale.SchemaError, match=r"float32\[2\] per row.*from_bale") as caught:
        read_bale_dataframe(paths[0])
    assert caught.value.column == "vec"
    with pytest.raises(KeyError, match="nope"):
        read_bale_dataframe(paths[0], ["nope"])


def test_read_bale_dataframe_refuses_files_with_other_columns(path: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.bale"
    with bale.Writer(other) as writer:
        writer.write({"label": np.arange(3, dtype=np.int64)})  # int64, not int16
    with pytest.raises(bale.SchemaError, match="the same columns") as caught:
        read_bale_dataframe([path, other], ["label"])
    assert caught.value.column == "label" and str(other) in str(caught.value)
    frame = read_bale_dataframe([path], ["label", "blob"])
    assert frame.npartitions == 1 and frame["label"].max().compute() == ROWS - 1


def test_read_bale_dataframe_names_change_with_the_file(tmp_path: Path) -> None:
    target = tmp_path / "t.bale"
    bale.write(target, {"a": np.arange(5)})
    before = read_bale_dataframe(target)._name
    assert read_bale_dataframe(target)._name == before
    bale.write(target, {"a": np.arange(5) * 2}, overwrite=True)
    again = read_bale_dataframe(target)
    assert again._name != before and again["a"].sum().compute() == 20
