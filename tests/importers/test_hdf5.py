"""Hdf5Source against h5py: dataset selection, chunk-aligned reads, strings and blobs, errors."""

from __future__ import annotations

import importlib.util
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data

import bale
from bale.errors import BaleError, CorruptFileError, SchemaError
from bale.format.schema import Array, Bytes, String
from bale.importers.base import RowSource
from bale.importers.hdf5 import Hdf5Source

h5py = pytest.importorskip("h5py")

N = 40


def photos(n: int) -> np.ndarray:
    camera = skimage.data.camera()
    return np.stack([camera[i * 9 : i * 9 + 16, i * 4 : i * 4 + 20] for i in range(n)])


def pack_and_reopen(source: RowSource, target: Path, step: int = 6) -> Any:
    with bale.Writer(target, metadata=source.metadata) as w:
        for start in range(0, source.num_rows, step):
            w.write(source.read(start, min(start + step, source.num_rows)).columns)
    return bale.open(target)


@pytest.fixture
def h5(tmp_path: Path) -> Path:
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "train/images", data=photos(N), chunks=(7, 16, 20), compression="gzip", shuffle=True
        )
        f.create_dataset("train/labels", data=np.arange(N, dtype=">i8") % 5, chunks=(16,))
        f.create_dataset(
            "train/captions", data=[f"photo {i} ✓" for i in range(N)], dtype=h5py.string_dtype()
        )
        blobs = np.empty(N, dtype=object)
        blobs[:] = [np.arange(i % 7, dtype=np.uint8) for i in range(N)]
        f.create_dataset("train/jpeg", data=blobs, dtype=h5py.vlen_dtype(np.uint8), chunks=(9,))
        f.create_dataset("classes", data=np.array([b"cat", b"dog"]))  # other length: skipped
        f.create_dataset("mean", data=np.zeros(3))
        f.attrs["author"] = "test"
        f.attrs["version"] = np.int32(2)
        f["train/images"].attrs["range"] = np.array([0, 255])
    return path


def test_all_datasets_with_the_main_length_become_columns(h5: Path) -> None:
    with Hdf5Source(h5) as src:
        assert src.num_rows == N
        assert src.column_types == {
            "train.captions": String(),
            "train.images": Array("uint8", (16, 20)),
            "train.jpeg": Bytes(),
            "train.labels": Array("int64"),
        }
        assert not src.random_access and src.picklable
        meta = src.metadata
        assert meta["source"] == "hdf5"
        assert meta["attrs"] == {"author": "test", "version": 2}
        assert meta["skipped"] == {"/mean": [3]}
        assert meta["classes"] == ["cat", "dog"]  # the classes dataset names the labels
        assert meta["datasets"]["/train/images"]["chunks"] == [7, 16, 20]
        assert meta["datasets"]["/train/images"]["attrs"] == {"range": [0, 255]}
        assert meta["datasets"]["/train/captions"]["dtype"] == "vlen utf-8 string"


def test_ranges_match_h5py(h5: Path) -> None:
    with h5py.File(h5, "r") as f:
        images = f["train/images"][:]
        labels = f["train/labels"][:]
        captions = list(f["train/captions"].asstr()[:])
        jpeg = [bytes(b) for b in f["train/jpeg"][:]]
    src = Hdf5Source(h5)
    # ranges that start and stop inside chunks, go backwards, and are empty
    for start, stop in [(0, N), (3, 10), (10, 11), (11, 30), (30, N), (5, 6), (N, N), (0, 0)]:
        batch = src.read(start, stop)
        np.testing.assert_array_equal(batch.rows, np.arange(start, stop))
        np.testing.assert_array_equal(batch.columns["train.images"], images[start:stop])
        np.testing.assert_array_equal(batch.columns["train.labels"], labels[start:stop])
        assert batch.columns["train.captions"] == captions[start:stop]
        assert batch.columns["train.jpeg"] == jpeg[start:stop]
    src.close()


def test_reads_are_widened_to_whole_chunks(h5: Path) -> None:
    src = Hdf5Source(h5, datasets=["/train/images"])
    reader = src._reader("train.images".replace(".", "/"))
    calls: list[tuple[int, int]] = []
    fetch = reader._fetch
    reader._fetch = lambda a, b: calls.append((a, b)) or fetch(a, b)  # type: ignore[method-assign]
    for start in range(0, N, 5):
        src.read(start, min(start + 5, N))
    assert calls == [(0, 7), (7, 14), (14, 21), (21, 28), (28, 35), (35, 40)]
    src.close()


def test_chosen_datasets_and_pickling(h5: Path) -> None:
    src = Hdf5Source(h5, datasets=["train/labels", "/train/captions"])
    assert list(src.column_types or {}) == ["train.labels", "train.captions"]
    src.read(0, 2)
    copy = pickle.loads(pickle.dumps(src))
    batch = copy.read(36, 40)
    np.testing.assert_array_equal(batch.columns["train.labels"], [1, 2, 3, 4])
    assert batch.columns["train.captions"][0] == "photo 36 ✓"
    copy.close()
    src.close()


def test_round_trip_through_bale(h5: Path, tmp_path: Path) -> None:
    src = Hdf5Source(h5)
    with pack_and_reopen(src, tmp_path / "out.bale") as ds, h5py.File(h5, "r") as f:
        np.testing.assert_array_equal(ds["train.images"][:], f["train/images"][:])
        np.testing.assert_array_equal(ds["train.labels"][:], f["train/labels"][:])
        assert ds["train.captions"][:] == list(f["train/captions"].asstr()[:])
        assert ds["train.jpeg"][:] == [bytes(b) for b in f["train/jpeg"][:]]
        assert ds.metadata["skipped"] == {"/mean": [3]}
    src.close()


def test_compound_dataset_gives_one_column_per_field(tmp_path: Path) -> None:
    records = np.zeros(12, dtype=[("x", "<f4", (2,)), ("y", "<i2")])
    records["x"] = np.arange(24).reshape(12, 2)
    records["y"] = np.arange(12)
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f["table"] = records
    src = Hdf5Source(tmp_path / "t.h5")
    assert src.column_types == {"table.x": Array("float32", (2,)), "table.y": Array("int16")}
    batch = src.read(4, 9)
    np.testing.assert_array_equal(batch.columns["table.x"], records["x"][4:9])
    np.testing.assert_array_equal(batch.columns["table.y"], records["y"][4:9])
    src.close()


def test_mismatched_lengths_name_datasets(h5: Path) -> None:
    with pytest.raises(SchemaError, match=r"'train/images': 40.*'classes': 2"):
        Hdf5Source(h5, datasets=["train/images", "classes"])
    with pytest.raises(SchemaError, match="'nope' is missing"):
        Hdf5Source(h5, datasets=["nope"])
    with pytest.raises(SchemaError, match="is a group"):
        Hdf5Source(h5, datasets=["train"])


def test_damaged_file_is_corrupt(h5: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x00" * 64 + h5.read_bytes()[64:])
    with pytest.raises(CorruptFileError, match=r"bad\.h5"):
        Hdf5Source(bad)


def test_damaged_chunk_names_dataset_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "chunks.h5"
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("x", data=photos(N), chunks=(10, 16, 20), compression="gzip")
        offset = dset.id.get_chunk_info(1).byte_offset  # the chunk holding rows 10..19
    data = bytearray(path.read_bytes())
    data[offset : offset + 32] = b"\xff" * 32
    path.write_bytes(bytes(data))
    src = Hdf5Source(path)
    np.testing.assert_array_equal(src.read(0, 10).columns["x"], photos(N)[:10])
    with pytest.raises(CorruptFileError, match=r"dataset '/x'.*") as info:
        src.read(12, 15)
    assert info.value.rows == (12, 15)
    src.close()


def test_missing_h5py_gives_install_hint(h5: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(BaleError, match="pip install h5py"):
        Hdf5Source(h5)


def test_missing_compression_filter_says_how_to_get_it(tmp_path: Path) -> None:
    if importlib.util.find_spec("hdf5plugin") is not None:
        pytest.skip("hdf5plugin is installed: the blosc filter would be found")
    path = tmp_path / "blosc.h5"
    with h5py.File(path, "w") as f:
        dset = f.create_dataset(
            "x", shape=(10,), dtype="i4", chunks=(10,), compression=32001, allow_unknown_filter=True
        )
        dset.id.write_direct_chunk((0,), b"0123456789abcdef")  # 32001: the HDF5 blosc filter
    src = Hdf5Source(path)
    with pytest.raises(BaleError, match="hdf5plugin") as info:
        src.read(0, 3)
    assert not isinstance(info.value, CorruptFileError)
    src.close()


# -- issue 15: split groups, choosing a group, class names -----------------------------------------


@pytest.fixture
def splits_h5(tmp_path: Path) -> Path:
    """A Keras-style file: train/ and test/ groups of x and y, and the class names beside them."""
    path = tmp_path / "splits.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("train/x", data=np.arange(60 * 4, dtype=np.float32).reshape(60, 4))
        f.create_dataset("train/y", data=np.arange(60) % 3)
        f.create_dataset("test/x", data=np.arange(20 * 4, dtype=np.float32).reshape(20, 4))
        f.create_dataset("test/y", data=np.arange(20) % 3)
        f.create_dataset(
            "classes", data=["airplane", "automobile", "bird"], dtype=h5py.string_dtype()
        )
    return path


def test_split_groups_are_not_packed_one_silently(splits_h5: Path) -> None:
    with pytest.raises(SchemaError) as info:
        Hdf5Source(splits_h5)
    message = str(info.value)
    assert "the file holds the splits ['test', 'train'] as groups" in message
    assert "`bale pack splits.h5:train train.bale`" in message
    assert "`bale pack splits.h5:test test.bale`" in message
    assert "group='test'" in message


def test_a_chosen_group_gives_plain_column_names_and_its_classes(splits_h5: Path) -> None:
    with Hdf5Source(splits_h5, group="test") as src:
        assert src.num_rows == 20
        assert list(src.column_types or {}) == ["x", "y"]
        np.testing.assert_array_equal(src.read(2, 4).columns["y"], [2, 0])
        assert src.metadata["classes"] == ["airplane", "automobile", "bird"]
        assert src.metadata["group"] == "/test"
        assert "skipped" not in src.metadata
    with Hdf5Source(splits_h5, group="/train", datasets=["y"]) as src:
        assert list(src.column_types or {}) == ["y"] and src.num_rows == 60
    with pytest.raises(SchemaError, match=r"group 'valid' is missing; the file's groups are"):
        Hdf5Source(splits_h5, group="valid")


def test_bale_pack_file_colon_group(splits_h5: Path, tmp_path: Path) -> None:
    from bale.cli.main import main

    out = tmp_path / "test.bale"
    assert main(["pack", f"{splits_h5}:test", str(out), "-q", "--workers", "1"]) == 0
    with bale.open(out) as ds:
        assert list(ds.schema.names) == ["x", "y"] and len(ds) == 20
        assert ds.metadata["classes"] == ["airplane", "automobile", "bird"]
    both = tmp_path / "both.bale"
    args = ["--dataset", "/train/x", "--dataset", "/train/y", "-q"]
    assert main(["pack", str(splits_h5), str(both), *args]) == 0
    with bale.open(both) as ds:
        assert list(ds.schema.names) == ["train.x", "train.y"] and len(ds) == 60


def test_split_groups_pack_into_a_folder_one_file_each(
    splits_h5: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An image folder of train/ test/ packs into OUT_DIR/, one file per split; the same file
    # layout in HDF5 could only be packed one group at a time
    from bale.cli.main import main
    from bale.importers.hdf5 import split_groups

    assert split_groups(splits_h5) == ["test", "train"]
    out = tmp_path / "packed"
    assert main(["pack", str(splits_h5), str(out), "-q"]) == 0
    assert sorted(os.listdir(out)) == ["test.bale", "train.bale"]
    for name, rows in (("train", 60), ("test", 20)):
        ds = bale.open(out / f"{name}.bale")
        assert len(ds) == rows and ds.columns == ("x", "y")
        assert ds.metadata["classes"] == ["airplane", "automobile", "bird"]
        assert sorted(ds["y"][:].tolist()) == sorted((np.arange(rows) % 3).tolist())
    capsys.readouterr()
    assert main(["pack", str(splits_h5), str(out), "-q"]) == 2  # nothing replaced unasked
    assert "the file exists; pass --overwrite" in capsys.readouterr().err
    assert main(["pack", str(splits_h5), str(tmp_path / "one.bale"), "-q"]) == 2
    assert "`bale pack splits.h5 packed/`" in capsys.readouterr().err
    assert not (tmp_path / "one.bale").exists()
