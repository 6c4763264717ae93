"""Uncompressed array columns read from the mapped file: same values as the decoding path,
checksums still enforced, copies never views, page-cache eviction still effective."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest

import bale
from bale._core.dataset import reader_of
from bale._core.mapped import can_map

SHAPES = {
    "img": ("uint8", (8, 8, 3)),  # 192-byte rows: a multiple of the 64-byte unit
    "odd": ("int16", (3,)),  # 6-byte rows: a 2-byte unit
    "scalar": ("float64", ()),
    "flag": ("bool", (5,)),
    "half": ("bfloat16", (7,)),
}


def _data(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for name, (dtype, shape) in SHAPES.items():
        if dtype == "bool":
            out[name] = rng.random((n, *shape)) < 0.5
        elif dtype == "bfloat16":
            import ml_dtypes

            out[name] = rng.standard_normal((n, *shape)).astype(ml_dtypes.bfloat16)
        else:
            out[name] = (rng.random((n, *shape)) * 1000).astype(dtype)
    return out


@pytest.fixture
def pair(tmp_path):
    """The same rows written uncompressed (mapped) and compressed (decoded), odd group sizes."""
    data = _data(1000)
    data["text"] = np.array([f"row {i}" for i in range(1000)], dtype=object)
    raw = tmp_path / "raw.bale"
    packed = tmp_path / "packed.bale"
    bale.write(
        raw, data, codecs={name: "none" for name in SHAPES}, row_group_rows=97, overwrite=True
    )
    bale.write(packed, data, codecs={name: "zstd" for name in SHAPES}, row_group_rows=97)
    with bale.open(raw) as r, bale.open(packed) as p:
        yield r, p, data


def test_only_uncompressed_arrays_are_mapped(pair):
    raw, packed, _ = pair
    for name in SHAPES:
        assert reader_of(raw).mapped_column(name) is not None
        assert reader_of(packed).mapped_column(name) is None
    assert reader_of(raw).mapped_column("text") is None


def test_take_read_row_match_the_decoding_path(pair):
    raw, packed, data = pair
    idx = np.random.default_rng(1).permutation(1000)[:300]
    a, b = raw.take(idx), packed.take(idx)
    for name in SHAPES:
        assert a[name].dtype == b[name].dtype
        assert a[name].tobytes() == b[name].tobytes() == data[name][idx].tobytes()
    for sl in (slice(0, 1000), slice(90, 200), slice(5, 6), slice(999, 1000), slice(10, 10)):
        a, b = raw.read(sl), packed.read(sl)
        for name in SHAPES:
            assert a[name].shape == b[name].shape
            assert a[name].tobytes() == b[name].tobytes()
    for i in (0, 96, 97, 500, 999, -1):
        a, b = raw[i], packed[i]
        for name in SHAPES:
            assert type(a[name]) is type(b[name])
            assert np.asarray(a[name]).tobytes() == np.asarray(b[name]).tobytes()
    for g in (0, 5, raw.num_row_groups - 1):
        a, b = raw.read_row_group(g), packed.read_row_group(g)
        for name in SHAPES:
            assert a[name].tobytes() == b[name].tobytes()


def test_results_are_writeable_copies(pair):
    raw, _, _ = pair
    batch = raw.take([3, 1, 2])
    batch["img"][:] = 0  # must not touch the file or later reads
    assert raw.take([3])["img"].any()
    assert raw.read(slice(0, 5))["img"].flags.writeable


def _flip_byte_in_block(path, ds, column: str, group: int) -> None:
    record = ds.index.blocks[group, ds.schema.index(column)]
    offset = int(record["offset"]) + int(record["stored_size"]) // 2
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_damaged_mapped_block_raises_naming_column_and_rows(tmp_path):
    path = tmp_path / "d.bale"
    data = _data(400)
    bale.write(path, data, codecs={name: "none" for name in SHAPES}, row_group_rows=100)
    with bale.open(path) as ds:
        _flip_byte_in_block(path, ds, "img", 2)
    with bale.open(path) as ds:
        assert reader_of(ds).mapped_column("img") is not None
        # Other groups still read; the damaged one never comes back as data.
        assert ds.take(np.arange(0, 200))["img"].tobytes() == data["img"][:200].tobytes()
        for read in (
            lambda: ds.take([250]),
            lambda: ds.read(slice(190, 210 + 100)),
            lambda: ds[205],
            lambda: ds.read_row_group(2),
        ):
            with pytest.raises(bale.CorruptFileError) as info:
                read()
            assert info.value.column == "img"
            assert info.value.rows == (200, 300)
            assert str(path) in str(info.value)
        # The other columns of the damaged group are intact and readable.
        assert ds.take([250], columns=["odd"])["odd"].tobytes() == data["odd"][[250]].tobytes()
    with bale.open(path, verify=False) as ds:  # no check asked: the bytes come back as stored
        assert ds.take([250])["img"].shape == (1, 8, 8, 3)


def test_damage_found_by_the_loader_names_the_file(tmp_path):
    path = tmp_path / "l.bale"
    data = _data(400)
    data["label"] = np.arange(400)
    bale.write(path, data, codecs={name: "none" for name in SHAPES}, row_group_rows=50)
    with bale.open(path) as ds:
        _flip_byte_in_block(path, ds, "img", 3)
    for shuffle in ("chunks", "full", "none"):
        with bale.Loader(path, 64, shuffle=shuffle, num_threads=2) as loader:
            with pytest.raises(bale.BaleError) as info:
                list(loader)
            assert info.value.column == "img"
        with bale.Loader(path, 64, shuffle=shuffle, num_threads=2, on_error="skip") as loader:
            labels = np.concatenate([b["label"] for b in loader])
            assert loader.skipped_rows == 50
            assert sorted(labels.tolist()) == [i for i in range(400) if not 150 <= i < 200]
            for batch in loader:
                for i, label in enumerate(batch["label"].tolist()):
                    assert batch["img"][i].tobytes() == data["img"][label].tobytes()


def test_can_map_needs_every_block_uncompressed(tmp_path):
    path = tmp_path / "mixed.bale"
    x = np.arange(200 * 4, dtype=np.float32).reshape(200, 4)
    bale.write(path, {"x": x[:100]}, codecs={"x": "none"})
    with bale.Writer(path, mode="a", codecs={"x": "zstd"}) as w:  # later blocks compressed
        w.write({"x": x[100:]})
    with bale.open(path) as ds:
        assert not can_map(ds.index, 0)
        assert reader_of(ds).mapped_column("x") is None
        assert ds.take([150, 3])["x"].tobytes() == x[[150, 3]].tobytes()


def test_eviction_drops_mapped_pages(tmp_path):
    path = tmp_path / "big.bale"
    x = np.random.default_rng(0).integers(0, 255, (4096, 64, 64, 3), dtype=np.uint8)  # 48 MiB
    bale.write(path, {"x": x}, codecs={"x": "none"})
    with bale.open(path) as ds:
        ds.read()  # maps and touches every page
        ds.evict_from_page_cache()
        resident = _resident_fraction(path)
        assert resident < 0.5, f"{resident:.0%} of the file still cached after eviction"
        assert ds.take([4095])["x"].tobytes() == x[4095].tobytes()  # still readable


def _resident_fraction(path) -> float:
    """Share of the file in the page cache (util-linux fincore, i.e. mincore)."""
    if shutil.which("fincore") is None:
        pytest.skip("fincore (util-linux) is not installed")
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--raw", "-o", "RES", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.split()[0]) / os.path.getsize(path)


def test_dataset_closes_while_batches_live(tmp_path):
    path = tmp_path / "c.bale"
    bale.write(path, {"x": np.ones((10, 4), np.float32)}, codecs={"x": "none"})
    ds = bale.open(path)
    batch = ds.take([1, 2])
    ds.close()
    assert batch["x"].sum() == 8
