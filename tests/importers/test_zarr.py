"""ZarrSource against zarr-python: v3 and v2 stores, groups, shards, text and blobs, errors."""

from __future__ import annotations

import pickle
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data

import bale
from bale.errors import BaleError, CorruptFileError, SchemaError
from bale.format.schema import Array, Bytes, String
from bale.importers.base import RowSource
from bale.importers.zarr import ZarrSource

zarr = pytest.importorskip("zarr", minversion="3")

N = 33


def photos(n: int) -> np.ndarray:
    coffee = skimage.data.coffee()
    return np.stack([coffee[i * 9 : i * 9 + 12, i * 11 : i * 11 + 16] for i in range(n)])


def pack_and_reopen(source: RowSource, target: Path, step: int = 5) -> Any:
    with bale.Writer(target, metadata=source.metadata) as w:
        for start in range(0, source.num_rows, step):
            w.write(source.read(start, min(start + step, source.num_rows)).columns)
    return bale.open(target)


@pytest.fixture
def group(tmp_path: Path) -> Path:
    path = tmp_path / "data.zarr"
    root = zarr.open_group(path, mode="w")
    images = root.create_array(
        "train/images", shape=(N, 12, 16, 3), chunks=(4, 12, 16, 3), dtype="u1"
    )
    images[:] = photos(N)
    labels = root.create_array("train/labels", shape=(N,), chunks=(10,), dtype="<i4")
    labels[:] = np.arange(N) % 4
    with warnings.catch_warnings():
        # zarr-python warns that its v3 string/bytes encodings are not in the v3 spec yet
        warnings.simplefilter("ignore", zarr.errors.UnstableSpecificationWarning)
        names = root.create_array("train/names", shape=(N,), chunks=(8,), dtype=str)
        names[:] = np.array([f"café {i}" for i in range(N)])
        blobs = root.create_array(
            "train/blobs", shape=(N,), chunks=(8,), dtype=zarr.dtype.VariableLengthBytes()
        )
        blobs[:] = np.array([bytes(range(i % 5)) for i in range(N)], dtype=object)
    root.create_array("mean", shape=(3,), dtype="f8")[:] = [0.5, 0.4, 0.3]
    root.attrs["description"] = "test store"
    return path


def test_group_arrays_become_columns(group: Path) -> None:
    src = ZarrSource(group)
    assert src.num_rows == N
    assert src.column_types == {
        "train.blobs": Bytes(),
        "train.images": Array("uint8", (12, 16, 3)),
        "train.labels": Array("int32"),
        "train.names": String(),
    }
    assert not src.random_access and src.picklable
    meta = src.metadata
    assert meta["kind"] == "group" and meta["attrs"] == {"description": "test store"}
    assert meta["skipped"] == {"mean": [3]}
    assert meta["arrays"]["train/images"]["chunks"] == [4, 12, 16, 3]


def test_ranges_match_zarr(group: Path) -> None:
    root = zarr.open_group(group, mode="r")
    images, labels = root["train/images"][:], root["train/labels"][:]
    names, blobs = list(root["train/names"][:]), list(root["train/blobs"][:])
    src = ZarrSource(group)
    for start, stop in [(0, N), (1, 6), (6, 7), (7, 20), (3, 5), (20, N), (N, N)]:
        batch = src.read(start, stop)
        np.testing.assert_array_equal(batch.rows, np.arange(start, stop))
        np.testing.assert_array_equal(batch.columns["train.images"], images[start:stop])
        np.testing.assert_array_equal(batch.columns["train.labels"], labels[start:stop])
        assert batch.columns["train.names"] == names[start:stop]
        assert batch.columns["train.blobs"] == blobs[start:stop]
    copy = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(copy.read(30, N).columns["train.images"], images[30:])


def test_round_trip_through_bale(group: Path, tmp_path: Path) -> None:
    root = zarr.open_group(group, mode="r")
    with pack_and_reopen(ZarrSource(group), tmp_path / "out.bale") as ds:
        np.testing.assert_array_equal(ds["train.images"][:], root["train/images"][:])
        assert ds["train.names"][:] == list(root["train/names"][:])
        assert ds["train.blobs"][:] == list(root["train/blobs"][:])
        assert ds.metadata["source"] == "zarr"


def test_reads_align_to_shards(tmp_path: Path) -> None:
    path = tmp_path / "sharded.zarr"
    arr = zarr.create_array(path, shape=(50, 4), chunks=(5, 4), shards=(20, 4), dtype="f4")
    arr[:] = np.arange(200, dtype=np.float32).reshape(50, 4)
    src = ZarrSource(path)
    reader = src._reader("")
    calls: list[tuple[int, int]] = []
    fetch = reader._fetch
    reader._fetch = lambda a, b: calls.append((a, b)) or fetch(a, b)  # type: ignore[method-assign]
    got = np.concatenate([src.read(a, min(a + 9, 50)).columns["sharded"] for a in range(0, 50, 9)])
    np.testing.assert_array_equal(got, arr[:])
    assert calls == [(0, 20), (20, 40), (40, 50)]


def test_lone_v2_array_is_named_after_the_store(tmp_path: Path) -> None:
    path = tmp_path / "features.zarr"
    arr = zarr.open_array(path, mode="w", shape=(17, 3), chunks=(6, 3), dtype="<f8", zarr_format=2)
    arr[:] = np.linspace(0, 1, 51).reshape(17, 3)
    src = ZarrSource(path)
    assert src.column_types == {"features": Array("float64", (3,))}
    assert src.metadata["arrays"]["."]["zarr_format"] == 2
    np.testing.assert_array_equal(src.read(5, 13).columns["features"], arr[5:13])


def test_chosen_arrays_and_mismatched_lengths(group: Path) -> None:
    src = ZarrSource(group, arrays=["train/labels"])
    assert list(src.column_types or {}) == ["train.labels"]
    with pytest.raises(SchemaError, match=r"'train/labels': 33.*'mean': 3"):
        ZarrSource(group, arrays=["train/labels", "mean"])
    with pytest.raises(SchemaError, match="missing"):
        ZarrSource(group, arrays=["nope"])


def test_damaged_chunk_names_array_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "z.zarr"
    arr = zarr.create_array(path, shape=(30, 8), chunks=(10, 8), dtype="i8", compressors=None)
    arr[:] = np.arange(240).reshape(30, 8)
    chunk = path / "c" / "1" / "0"  # rows 10..19, stored raw: 640 bytes
    chunk.write_bytes(chunk.read_bytes()[:100])
    src = ZarrSource(path)
    np.testing.assert_array_equal(src.read(0, 10).columns["z"], arr[:10])
    with pytest.raises(CorruptFileError, match=r"array '\.'") as info:
        src.read(12, 14)
    assert info.value.rows == (12, 14) and "z.zarr" in str(info.value)


def test_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(BaleError, match="no zarr"):
        ZarrSource(tmp_path / "nothing.zarr")


def test_missing_zarr_gives_install_hint(group: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zarr", None)
    with pytest.raises(BaleError, match="pip install 'zarr>=3'"):
        ZarrSource(group)
