"""NpySource and NpzSource: memory-mapped and streamed rows, against np.load; bad files."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data

import bale
from bale.errors import CorruptFileError, SchemaError
from bale.format.schema import Array, Bytes, String
from bale.importers.base import RowSource
from bale.importers.npy import NpySource, NpzSource


def photos(n: int) -> np.ndarray:
    """n different 24x32 RGB crops of a real photo."""
    astronaut = skimage.data.astronaut()
    return np.stack([astronaut[i * 7 : i * 7 + 24, i * 5 : i * 5 + 32] for i in range(n)])


def pack_and_reopen(source: RowSource, target: Path, step: int = 7) -> Any:
    """Write every row of ``source`` to a .bale file in uneven batches; return it reopened."""
    with bale.Writer(target, metadata=source.metadata) as w:
        for start in range(0, source.num_rows, step):
            batch = source.read(start, min(start + step, source.num_rows))
            w.write(batch.columns)
    return bale.open(target)


@pytest.fixture
def npy(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = photos(30)
    path = tmp_path / "images.npy"
    np.save(path, data)
    return path, data


def test_npy_reads_ranges_like_np_load(npy: tuple[Path, np.ndarray]) -> None:
    path, data = npy
    reference = np.load(path)
    with NpySource(path) as src:
        assert src.num_rows == 30
        assert src.column_types == {"images": Array("uint8", (24, 32, 3))}
        assert src.random_access and src.picklable
        assert src.row_nbytes_hint == 24 * 32 * 3
        full = src.read(0, 30)
        np.testing.assert_array_equal(full.columns["images"], reference)
        np.testing.assert_array_equal(full.rows, np.arange(30))
        odd = src.read(7, 19)
        np.testing.assert_array_equal(odd.columns["images"], data[7:19])
        np.testing.assert_array_equal(odd.rows, np.arange(7, 19))
        empty = src.read(30, 30)
        assert len(empty) == 0 and empty.columns["images"].shape == (0, 24, 32, 3)
        taken = src.take([29, 0, 5, 5])
        np.testing.assert_array_equal(taken.columns["images"], data[[29, 0, 5, 5]])
        np.testing.assert_array_equal(taken.rows, [29, 0, 5, 5])
        with pytest.raises(IndexError, match=r"images\.npy"):
            src.read(0, 31)
        with pytest.raises(IndexError, match=r"images\.npy"):
            src.take([30])


def test_npy_is_memory_mapped_not_loaded(npy: tuple[Path, np.ndarray]) -> None:
    path, _ = npy
    src = NpySource(path)
    src.read(0, 1)
    assert isinstance(src._map(), np.memmap)


def test_npy_pickles_and_reads_in_another_copy(npy: tuple[Path, np.ndarray]) -> None:
    path, data = npy
    src = NpySource(path)
    src.read(0, 3)  # opens the map; the pickle must not carry it
    copy = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(copy.read(3, 9).columns["images"], data[3:9])


def test_npy_round_trips_through_bale(npy: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, data = npy
    with pack_and_reopen(NpySource(path), tmp_path / "out.bale") as ds:
        assert ds.metadata["source"] == "npy"
        np.testing.assert_array_equal(ds["images"][:], data)


def test_npy_fortran_order_big_endian_and_records(tmp_path: Path) -> None:
    fortran = np.asfortranarray(np.arange(60, dtype=">f8").reshape(20, 3))
    np.save(tmp_path / "f.npy", fortran)
    src = NpySource(tmp_path / "f.npy")
    assert src.column_types == {"f": Array("float64", (3,))}
    np.testing.assert_array_equal(src.read(4, 13).columns["f"], fortran[4:13])

    records = np.zeros(10, dtype=[("label", "<i4"), ("box", "<f4", (4,))])
    records["label"] = np.arange(10)
    records["box"] = np.arange(40).reshape(10, 4)
    np.save(tmp_path / "r.npy", records)
    src = NpySource(tmp_path / "r.npy")
    assert src.column_types == {"label": Array("int32"), "box": Array("float32", (4,))}
    batch = src.read(2, 5)
    np.testing.assert_array_equal(batch.columns["label"], [2, 3, 4])
    np.testing.assert_array_equal(batch.columns["box"], records["box"][2:5])


def test_npy_text_columns(tmp_path: Path) -> None:
    np.save(tmp_path / "names.npy", np.array(["ab", "ĉ", ""]))
    np.save(tmp_path / "raw.npy", np.array([b"a\x00b", b"", b"xyz"]))
    assert NpySource(tmp_path / "names.npy").read(0, 3).columns["names"] == ["ab", "ĉ", ""]
    src = NpySource(tmp_path / "raw.npy")
    assert src.column_types == {"raw": Bytes()}
    assert src.read(0, 3).columns["raw"] == [b"a\x00b", b"", b"xyz"]


def test_truncated_npy_names_file_and_sizes(npy: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, _ = npy
    cut = tmp_path / "cut.npy"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CorruptFileError, match=r"cut\.npy.*truncated.*uint8.*\[30, 24, 32, 3\]"):
        NpySource(cut)
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not numpy at all")
    with pytest.raises(CorruptFileError, match=r"garbage\.npy"):
        NpySource(garbage)


def test_npy_refuses_object_and_scalar_arrays(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(bale.BaleError, match="Python objects"):
        NpySource(tmp_path / "obj.npy")
    np.save(tmp_path / "scalar.npy", np.float32(3))
    with pytest.raises(SchemaError, match="0-d"):
        NpySource(tmp_path / "scalar.npy")


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
def test_npz_reads_members_like_np_load(tmp_path: Path, compressed: bool) -> None:
    path = tmp_path / "train.npz"
    images = photos(25)
    labels = np.arange(25, dtype=np.int16) % 3
    names = np.array([f"img{i}" for i in range(25)])
    weights = np.asfortranarray(np.arange(50, dtype=np.float32).reshape(25, 2))
    save = np.savez_compressed if compressed else np.savez
    save(path, images=images, labels=labels, names=names, weights=weights)
    reference = np.load(path)
    src = NpzSource(path)
    assert src.num_rows == 25
    assert src.random_access is (not compressed)
    assert src.column_types == {
        "images": Array("uint8", (24, 32, 3)),
        "labels": Array("int16"),
        "names": String(),
        "weights": Array("float32", (2,)),
    }
    for start, stop in [(0, 25), (3, 11), (11, 12), (20, 25), (2, 9), (25, 25)]:
        batch = src.read(start, stop)
        for key in ("images", "labels", "weights"):
            np.testing.assert_array_equal(batch.columns[key], reference[key][start:stop])
        assert batch.columns["names"] == list(reference["names"][start:stop])
    taken = src.take([24, 3, 3, 0])
    np.testing.assert_array_equal(taken.columns["images"], images[[24, 3, 3, 0]])
    np.testing.assert_array_equal(taken.columns["weights"], weights[[24, 3, 3, 0]])
    assert taken.columns["names"] == ["img24", "img3", "img3", "img0"]
    copy = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(copy.read(5, 8).columns["labels"], labels[5:8])
    with pack_and_reopen(src, tmp_path / "out.bale") as ds:
        np.testing.assert_array_equal(ds["images"][:], images)
        np.testing.assert_array_equal(ds["weights"][:], weights)
        assert ds["names"][:] == list(names)
        assert ds.metadata["members"]["labels.npy"]["shape"] == [25]
    src.close()
    reference.close()


def test_npz_positional_arrays_are_arr_n(tmp_path: Path) -> None:
    np.savez(tmp_path / "xy.npz", np.zeros((4, 2)), np.arange(4))
    assert sorted(NpzSource(tmp_path / "xy.npz").column_types or {}) == ["arr_0", "arr_1"]


def test_npz_mismatched_lengths_name_members(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", x=np.zeros((10, 3)), y=np.arange(9))
    with pytest.raises(SchemaError, match=r"bad\.npz.*'x': 10.*'y': 9"):
        NpzSource(tmp_path / "bad.npz")


def test_truncated_npz_is_corrupt(tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "ok.npz", x=photos(10))
    data = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=r"cut\.npz"):
        NpzSource(tmp_path / "cut.npz")
