"""BcolzSource against directories written by real bcolz builds (fixtures/bcolz/*), and damage.

The fixtures were written by bcolz 1.2.1 (c-blosc 1.14.3) and bcolz-zipline 1.13.0 (c-blosc
1.21.7) with tests/importers/fixtures/make_bcolz_fixtures.py; each build's expected.json holds
bcolz's own read-back (sha256 of the array bytes, or the text values). Rows must match those
exactly, and the generator the script wrote them from.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import pickle
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale
from bale.errors import BaleError, CodecError, CorruptFileError, SchemaError
from bale.format.schema import Array, Bytes, String
from bale.importers.base import RowSource
from bale.importers.bcolz import BcolzSource

FIXTURES = Path(__file__).parent / "fixtures"
BUILDS = sorted(p for p in (FIXTURES / "bcolz").iterdir() if p.is_dir())
_spec = importlib.util.spec_from_file_location("make_bcolz", FIXTURES / "make_bcolz_fixtures.py")
assert _spec is not None and _spec.loader is not None
make_bcolz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_bcolz)

UNREADABLE = {"ints_snappy_shuffle.bcolz"}  # snappy-compressed: blosc2 cannot decode it


def expected_json(build: Path) -> dict[str, Any]:
    return json.loads((build / "expected.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def all_fixtures() -> list[Any]:
    out = []
    for build in BUILDS:
        for name, spec in sorted(expected_json(build)["fixtures"].items()):
            if name not in UNREADABLE:
                out.append(pytest.param(build / name, spec, id=f"{build.name}/{name}"))
    return out


def check_column(values: Any, want: dict[str, Any], generated: np.ndarray) -> None:
    """Exact equality with bcolz's read-back (expected.json) and with the generator."""
    if "sha256" in want:
        assert isinstance(values, np.ndarray)
        assert str(values.dtype) == want["dtype"] and list(values.shape) == want["shape"]
        assert hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest() == want["sha256"]
        np.testing.assert_array_equal(values, generated)
    else:
        as_text = [v.decode("latin-1") if isinstance(v, bytes) else v for v in values]
        assert as_text == want["values"]
        assert list(values) == [v for v in generated.tolist()]


def pack_and_reopen(source: RowSource, target: Path, step: int = 5) -> Any:
    with bale.Writer(target, metadata=source.metadata) as w:
        for start in range(0, source.num_rows, step):
            w.write(source.read(start, min(start + step, source.num_rows)).columns)
    return bale.open(target)


def test_fixtures_exist_for_both_builds() -> None:
    names = {b.name for b in BUILDS}
    assert {"bcolz-1.2.1", "bcolz-zipline-1.13.0"} <= names
    total = sum(f.stat().st_size for f in (FIXTURES / "bcolz").rglob("*") if f.is_file())
    assert total < 400_000  # small enough to commit


@pytest.mark.parametrize(("path", "spec"), all_fixtures())
def test_reads_exactly_what_bcolz_wrote(path: Path, spec: dict[str, Any]) -> None:
    src = BcolzSource(path, trust=True)
    generated = make_bcolz.expected_columns(path.name.removesuffix(".bcolz"))
    n = next(iter(spec["columns"].values()))["shape"][0]
    assert src.num_rows == n
    assert sorted(spec["columns"]) == sorted(generated)
    # column order is the table's (from __rootdirs__); object columns have no type up front
    assert list(src.column_types or {}) == [
        c for c in generated if not path.name.startswith("objects_")
    ]
    full = src.read(0, n)
    np.testing.assert_array_equal(full.rows, np.arange(n))
    for col, want in spec["columns"].items():
        check_column(full.columns[col], want, generated[col])
    # every range size from 1 to 2 chunks, so reads start and stop inside chunks and in the
    # leftover chunk
    step = 1
    while step <= 2 * spec["chunklen"] and n:
        parts = [src.read(a, min(a + step, n)) for a in range(0, n, step)]
        for col in spec["columns"]:
            values = [v for p in parts for v in p.columns[col]]
            np.testing.assert_array_equal(np.array(values), np.array(list(generated[col])))
        step += 3
    assert len(src.read(n, n)) == 0
    meta = src.metadata
    assert meta["source"] == "bcolz"
    assert meta.get("attrs", {}) == spec["attrs"]


@pytest.mark.parametrize("build", BUILDS, ids=[b.name for b in BUILDS])
def test_take_decodes_the_rows_asked_for(build: Path) -> None:
    src = BcolzSource(build / "images_lz4_bitshuffle.bcolz")
    images = make_bcolz.expected_columns("images_lz4_bitshuffle")["images_lz4_bitshuffle"]
    rows = [18, 0, 7, 7, 12, 5]
    batch = src.take(rows)
    np.testing.assert_array_equal(batch.columns["images_lz4_bitshuffle"], images[rows])
    np.testing.assert_array_equal(batch.rows, rows)
    with pytest.raises(IndexError, match="images_lz4_bitshuffle"):
        src.take([19])


@pytest.mark.parametrize("build", BUILDS, ids=[b.name for b in BUILDS])
def test_ctable_columns_types_and_round_trip(build: Path, tmp_path: Path) -> None:
    src = BcolzSource(build / "table_lz4.bcolz")
    assert src.column_types == {
        "label": Array("int64"),
        "score": Array("float64"),
        "name": String(),
        "tag": Bytes(),
        "patch": Array("uint8", (8, 8)),
    }
    assert src.metadata["kind"] == "ctable"
    assert src.metadata["columns"]["patch"]["chunklen"] == 16
    want = make_bcolz.expected_columns("table_lz4")
    with pack_and_reopen(src, tmp_path / "table.bale") as ds:
        np.testing.assert_array_equal(ds["label"][:], want["label"])
        np.testing.assert_array_equal(ds["patch"][:], want["patch"])
        assert ds["name"][:] == list(want["name"])
        assert ds["tag"][:] == list(want["tag"])
        assert ds.metadata["attrs"] == {"split": "train"}


@pytest.mark.parametrize("build", BUILDS, ids=[b.name for b in BUILDS])
def test_images_round_trip_through_bale(build: Path, tmp_path: Path) -> None:
    src = BcolzSource(build / "images_blosclz_shuffle.bcolz")
    want = make_bcolz.expected_columns("images_blosclz_shuffle")["images_blosclz_shuffle"]
    with pack_and_reopen(src, tmp_path / "images.bale", step=3) as ds:
        np.testing.assert_array_equal(ds["images_blosclz_shuffle"][:], want)
        assert ds.metadata["attrs"]["classes"] == ["cat", "dog"]
        assert ds.metadata["cparams"]["cname"] == "blosclz"


def test_source_pickles(tmp_path: Path) -> None:
    src = BcolzSource(BUILDS[0] / "floats_zstd_shuffle.bcolz")
    src.read(0, 200)
    copy = pickle.loads(pickle.dumps(src))
    want = make_bcolz.expected_columns("floats_zstd_shuffle")["floats_zstd_shuffle"]
    np.testing.assert_array_equal(copy.read(120, 260).columns["floats_zstd_shuffle"], want[120:260])


def test_snappy_chunks_raise_a_codec_error_naming_the_chunk() -> None:
    build = FIXTURES / "bcolz" / "bcolz-1.2.1"
    src = BcolzSource(build / "ints_snappy_shuffle.bcolz")
    with pytest.raises(CodecError, match=r"__1\.blp.*snappy") as info:
        src.read(130, 140)
    assert info.value.rows == (128, 256)
    # the same build stored these images uncompressed ("memcpyed"), which blosc2 can copy out
    images = BcolzSource(build / "images_snappy_shuffle.bcolz").read(0, 10)
    want = make_bcolz.expected_columns("images_snappy_shuffle")["images_snappy_shuffle"]
    np.testing.assert_array_equal(images.columns["images_snappy_shuffle"], want)


def test_object_arrays_need_trust(tmp_path: Path) -> None:
    path = BUILDS[0] / "objects_lz4.bcolz"
    src = BcolzSource(path)
    with pytest.raises(BaleError, match="trust=True"):
        src.read(0, 1)
    assert BcolzSource(path, trust=True).read(1, 4).columns["objects_lz4"] == [
        "beta",
        "gamma",
        "δέλτα",
    ]


def copy_fixture(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURES / "bcolz" / "bcolz-1.2.1" / name, target)
    return target


def flip(path: Path, offset: int, count: int = 4) -> None:
    data = bytearray(path.read_bytes())
    data[offset : offset + count] = bytes(b ^ 0xFF for b in data[offset : offset + count])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("name", "offset"),
    [
        ("images_zlib_shuffle.bcolz", 16 + 600),  # inside zlib data
        ("images_lz4_bitshuffle.bcolz", 16 + 16),  # the block offsets after the Blosc header
        ("images_zstd_bitshuffle.bcolz", 16 + 16),
        ("images_blosclz_shuffle.bcolz", 16 + 16),
    ],
)
def test_damaged_chunk_is_corrupt_and_names_chunk_and_rows(
    name: str, offset: int, tmp_path: Path
) -> None:
    path = copy_fixture(name, tmp_path)
    chunklen = json.loads((path / "meta" / "storage").read_text())["chunklen"]
    flip(path / "data" / "__1.blp", offset)
    src = BcolzSource(path)
    want = make_bcolz.expected_columns(name.removesuffix(".bcolz"))[name.removesuffix(".bcolz")]
    np.testing.assert_array_equal(src.read(0, chunklen).columns[path.stem], want[:chunklen])
    with pytest.raises(CorruptFileError, match=r"__1\.blp.*could not decompress") as info:
        src.read(0, 2 * chunklen)
    assert info.value.rows == (chunklen, 2 * chunklen)


def test_truncated_missing_and_foreign_chunks(tmp_path: Path) -> None:
    path = copy_fixture("images_lz4hc_noshuffle.bcolz", tmp_path)  # chunklen 5, 12 rows
    chunk = path / "data" / "__1.blp"
    good = chunk.read_bytes()
    chunk.write_bytes(good[:-10])
    with pytest.raises(CorruptFileError, match=r"__1\.blp.*truncated") as info:
        BcolzSource(path).read(4, 7)
    assert info.value.rows == (5, 10)
    chunk.write_bytes(b"PK\x03\x04" + good[4:])
    with pytest.raises(CorruptFileError, match="bloscpack magic"):
        BcolzSource(path).read(5, 6)
    chunk.unlink()
    with pytest.raises(CorruptFileError, match=r"__1\.blp.*missing"):
        BcolzSource(path).read(9, 12)
    # the leftover chunk (rows 10..11) claiming a size that fits neither its rows nor a chunk
    leftover = bytearray((path / "data" / "__2.blp").read_bytes())
    struct.pack_into("<I", leftover, 16 + 4, 3 * 32 * 32 * 3)
    (path / "data" / "__2.blp").write_bytes(bytes(leftover))
    with pytest.raises(CorruptFileError, match=r"__2\.blp.*expected 6144 \(or 15360\)"):
        BcolzSource(path).read(10, 12)


def test_full_size_leftover_chunk_is_accepted(tmp_path: Path) -> None:
    """Some writers store the leftover chunk at full chunk size; only its first rows count."""
    import blosc2

    path = copy_fixture("ints_lz4_short.bcolz", tmp_path)  # 5 rows, chunklen 100
    padded = np.full(100, -1, dtype=np.int64)
    padded[:5] = make_bcolz.expected_columns("ints_lz4_short")["ints_lz4_short"]
    chunk = blosc2.compress(padded.tobytes(), typesize=8)
    (path / "data" / "__0.blp").write_bytes(b"blpk\x01\x00\x00\x00" + struct.pack("<q", 1) + chunk)
    np.testing.assert_array_equal(
        BcolzSource(path).read(0, 5).columns["ints_lz4_short"], padded[:5]
    )


def test_ctable_with_unequal_columns_and_moved_dirs(tmp_path: Path) -> None:
    path = copy_fixture("table_lz4.bcolz", tmp_path)
    # Old releases recorded absolute column directories; the table has since moved.
    rootdirs = {"names": ["label", "score"], "dirs": {"label": "/gone/table/label", "score": "x"}}
    (path / "__rootdirs__").write_text(json.dumps(rootdirs))
    shutil.move(path / "label", path / "label_moved")
    rootdirs["dirs"]["label"] = "/old/place/label_moved"
    (path / "__rootdirs__").write_text(json.dumps(rootdirs))
    src = BcolzSource(path)
    np.testing.assert_array_equal(src.read(0, 70).columns["label"], np.arange(70) % 10)
    sizes = path / "score" / "meta" / "sizes"
    sizes.write_text(sizes.read_text().replace("[70]", "[69]"))
    with pytest.raises(SchemaError, match=r"'label': 70, 'score': 69"):
        BcolzSource(path)


def test_not_bcolz(tmp_path: Path) -> None:
    with pytest.raises(BaleError, match="not a bcolz"):
        BcolzSource(tmp_path)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "storage").write_text("{not json")
    (tmp_path / "meta" / "sizes").write_text('{"shape": [3]}')
    with pytest.raises(CorruptFileError, match="meta/storage is not valid JSON"):
        BcolzSource(tmp_path)


@pytest.mark.parametrize("build", BUILDS, ids=[b.name for b in BUILDS])
def test_class_names_in_attrs_name_the_labels(build: Path, tmp_path: Path) -> None:
    # carray.attrs["classes"] stayed under metadata["attrs"], so bale info, show and export did
    # not name the labels (an HDF5 classes dataset does); fast.ai keeps X and y apart
    images = build / "images_blosclz_shuffle.bcolz"
    assert BcolzSource(images).metadata["classes"] == ["cat", "dog"]
    assert "classes" not in BcolzSource(build / "table_lz4.bcolz").metadata  # attrs, no classes
    labels = tmp_path / "y.npy"
    np.save(labels, np.arange(22) % 2)
    bale.pack({"x": images, "y": labels}, tmp_path / "xy.bale", shuffle=False)
    with bale.open(tmp_path / "xy.bale") as ds:
        assert ds.metadata["classes"] == ["cat", "dog"]
        np.testing.assert_array_equal(ds["y"][:], np.arange(22) % 2)
