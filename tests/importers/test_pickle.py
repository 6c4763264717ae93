"""PickleSource: refused unless trusted; the shapes users pickle; compressed pickles; errors."""

from __future__ import annotations

import bz2
import gzip
import lzma
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data

import bale
from bale.errors import BaleError, CorruptFileError, SchemaError
from bale.format.schema import Array, Bytes, String
from bale.importers.base import RowSource
from bale.importers.pickle import PickleSource

N = 12


def photos(n: int) -> np.ndarray:
    chelsea = skimage.data.chelsea()
    return np.stack([chelsea[i * 10 : i * 10 + 8, i * 13 : i * 13 + 10] for i in range(n)])


def dump(path: Path, obj: Any) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    return path


def pack_and_reopen(source: RowSource, target: Path, step: int = 5) -> Any:
    with bale.Writer(target, metadata=source.metadata) as w:
        for start in range(0, source.num_rows, step):
            w.write(source.read(start, min(start + step, source.num_rows)).columns)
    return bale.open(target)


class Boom:
    """Unpickling this would run os.system: the reason pickles are refused by default."""

    def __reduce__(self) -> Any:
        import os

        return (os.system, ("echo unpickled > /dev/null",))


def test_refused_unless_trusted(tmp_path: Path) -> None:
    path = dump(tmp_path / "evil.pkl", Boom())
    with pytest.raises(BaleError, match=r"evil\.pkl.*arbitrary code.*--trust-pickle"):
        PickleSource(path)


def test_dict_of_columns(tmp_path: Path) -> None:
    images = photos(N)
    obj = {
        "image": images,
        "label": list(range(N)),
        "caption": [f"cat {i} 🐈" for i in range(N)],
        "raw": [bytes([i]) * i for i in range(N)],
    }
    src = PickleSource(dump(tmp_path / "d.pkl", obj), trust=True)
    assert src.num_rows == N
    assert src.column_types == {
        "image": Array("uint8", (8, 10, 3)),
        "label": Array("int64"),
        "caption": String(),
        "raw": Bytes(),
    }
    assert src.random_access and not src.picklable
    assert src.metadata == {"source": "pickle", "file": "d.pkl", "layout": "dict of columns"}
    reference = pickle.loads((tmp_path / "d.pkl").read_bytes())
    for start, stop in [(0, N), (3, 8), (11, 12), (N, N)]:
        batch = src.read(start, stop)
        np.testing.assert_array_equal(batch.columns["image"], reference["image"][start:stop])
        np.testing.assert_array_equal(batch.columns["label"], reference["label"][start:stop])
        assert batch.columns["caption"] == reference["caption"][start:stop]
        assert batch.columns["raw"] == reference["raw"][start:stop]
    taken = src.take([11, 2, 2])
    np.testing.assert_array_equal(taken.columns["image"], images[[11, 2, 2]])
    assert taken.columns["caption"] == ["cat 11 🐈", "cat 2 🐈", "cat 2 🐈"]
    with pack_and_reopen(src, tmp_path / "out.bale") as ds:
        np.testing.assert_array_equal(ds["image"][:], images)
        assert ds["caption"][:] == obj["caption"]
        assert ds["raw"][:] == obj["raw"]
        assert ds.metadata["layout"] == "dict of columns"


def test_rows_of_dicts(tmp_path: Path) -> None:
    images = photos(N)
    rows = [{"x": images[i], "y": i % 3, "name": f"n{i}"} for i in range(N)]
    src = PickleSource(dump(tmp_path / "rows.pkl", rows), trust=True)
    assert src.metadata["layout"] == "rows of dicts"
    batch = src.read(4, 9)
    np.testing.assert_array_equal(batch.columns["x"], images[4:9])
    np.testing.assert_array_equal(batch.columns["y"], [1, 2, 0, 1, 2])
    assert batch.columns["name"] == ["n4", "n5", "n6", "n7", "n8"]


def test_tuple_x_y_and_single_array(tmp_path: Path) -> None:
    x, y = photos(N).astype(np.float32) / 255, np.arange(N) % 2
    src = PickleSource(dump(tmp_path / "xy.pkl", (x, y)), trust=True)
    assert src.column_types == {"x": Array("float32", (8, 10, 3)), "y": Array("int64")}
    np.testing.assert_array_equal(src.read(0, N).columns["x"], x)
    src = PickleSource(dump(tmp_path / "three.pkl", (x, y, y * 2)), trust=True)
    assert list(src.column_types or {}) == ["f0", "f1", "f2"]
    src = PickleSource(dump(tmp_path / "a.pkl", x), trust=True)
    np.testing.assert_array_equal(src.take([3]).columns["x"], x[[3]])
    src = PickleSource(dump(tmp_path / "list.pkl", list(x)), trust=True)
    np.testing.assert_array_equal(src.read(2, 4).columns["x"], x[2:4])


def test_dataframe(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": np.arange(N) * 1.5, "b": [f"s{i}" for i in range(N)]})
    src = PickleSource(dump(tmp_path / "df.pkl", frame), trust=True)
    assert src.metadata["layout"] == "DataFrame"
    batch = src.read(1, 3)
    np.testing.assert_array_equal(batch.columns["a"], [1.5, 3.0])
    assert batch.columns["b"] == ["s1", "s2"]


@pytest.mark.parametrize("opener", [gzip.open, bz2.open], ids=["gzip", "bz2"])
def test_compressed_pickles(tmp_path: Path, opener: Any) -> None:
    path = tmp_path / "c.pkl.z"
    with opener(path, "wb") as fp:
        pickle.dump({"v": np.arange(N)}, fp)
    np.testing.assert_array_equal(PickleSource(path, trust=True).read(0, 3).columns["v"], [0, 1, 2])


def test_bad_shapes_and_lengths(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"'x': 3, 'y': 2"):
        PickleSource(dump(tmp_path / "a.pkl", {"x": [1, 2, 3], "y": [1, 2]}), trust=True)
    with pytest.raises(SchemaError, match="row 1 has"):
        PickleSource(dump(tmp_path / "b.pkl", [{"x": 1}, {"z": 2}]), trust=True)
    with pytest.raises(SchemaError, match=r"row 0 has shape \(2,\) but row 1 has \(3,\)"):
        PickleSource(dump(tmp_path / "c.pkl", [np.zeros(2), np.zeros(3)]), trust=True)
    with pytest.raises(SchemaError, match=r"mix types \['NoneType', 'str'\]"):
        PickleSource(dump(tmp_path / "e.pkl", {"s": ["a", None, "c"]}), trust=True)
    with pytest.raises(SchemaError, match=r"builtins\.int is not a shape"):
        PickleSource(dump(tmp_path / "d.pkl", 5), trust=True)


def test_truncated_pickle_is_corrupt(tmp_path: Path) -> None:
    whole = pickle.dumps({"x": photos(N)})
    (tmp_path / "cut.pkl").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CorruptFileError, match=r"cut\.pkl.*truncated"):
        PickleSource(tmp_path / "cut.pkl", trust=True)


def test_closed_source_releases_rows(tmp_path: Path) -> None:
    src = PickleSource(dump(tmp_path / "d.pkl", {"x": np.arange(4)}), trust=True)
    src.close()
    with pytest.raises(BaleError, match="closed"):
        src.read(0, 1)


def _zstd_open(path: Path, mode: str) -> Any:
    import zstandard

    return zstandard.open(path, mode)


@pytest.mark.parametrize(
    ("opener", "damage"),
    [
        *(
            (opener, damage)
            for opener in (gzip.open, bz2.open, lzma.open)
            for damage in ("truncated", "flipped")
        ),
        # zstandard writes no checksum: flipped bytes may decode to other bytes, unnoticed.
        (_zstd_open, "truncated"),
    ],
)
def test_damaged_compressed_pickle_is_corrupt(tmp_path: Path, opener: Any, damage: str) -> None:
    path = tmp_path / "c.pkl.z"
    with opener(path, "wb") as fp:
        pickle.dump({"x": photos(N)}, fp)
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        for i in range(len(data) // 3, len(data) // 3 + 64):
            data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=r"c\.pkl\.z"):
        PickleSource(path, trust=True)


@pytest.mark.parametrize(
    ("suffix", "opener"),
    [(".pkl.gz", gzip.open), (".pickle.bz2", bz2.open), (".pkl.xz", lzma.open)],
)
def test_compressed_pickles_are_packed_by_name(tmp_path: Path, suffix: str, opener: Any) -> None:
    # pandas' to_pickle("df.pkl.gz"), as docs/LEGACY.md promises: bale pack said it could not
    # tell what '.gz' holds
    path = tmp_path / f"df{suffix}"
    with opener(path, "wb") as fp:
        pickle.dump({"a": np.arange(N), "s": [f"t{i}" for i in range(N)]}, fp)
    report = bale.pack(path, tmp_path / "df.bale", trust=True, shuffle=False)
    assert report.rows == N
    ds = bale.open(tmp_path / "df.bale")
    np.testing.assert_array_equal(ds["a"][:], np.arange(N))
    assert ds["s"][:3] == ["t0", "t1", "t2"]
    with pytest.raises(BaleError, match="refusing to unpickle"):
        bale.pack(path, tmp_path / "untrusted.bale")


def test_other_compressed_files_are_still_unknown(tmp_path: Path) -> None:
    path = tmp_path / "data.csv.gz"
    with gzip.open(path, "wb") as fp:
        fp.write(b"a,b\n1,2\n")
    with pytest.raises(BaleError, match=r"cannot tell what '\.gz' holds.*\.pkl\.gz"):
        bale.pack(path, tmp_path / "x.bale")
