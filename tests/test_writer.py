"""Writing files: round trips of every column kind, schemas, codecs, buffering, append, locking."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest

import bale
from bale._core.defaults import default_codec
from bale._core.layout import read_header
from bale.format.dtypes import DTYPES_BY_NAME
from bale.format.schema import Column, Schema
from bale.io.source import LocalSource


def random_array(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Random values of a format dtype, covering its range (NaN/inf included for floats)."""
    dt = DTYPES_BY_NAME[name]
    if name == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True)
    if dt.kind == "c":
        parts = rng.standard_normal((2, *shape)) * 1e3
        return (parts[0] + 1j * parts[1]).astype(dt)
    values = rng.standard_normal(shape).astype(np.float32) * 4
    if values.size >= 3:
        flat = values.reshape(-1)
        flat[0] = np.nan
        flat[1] = -0.0
        if name in ("float16", "float32", "float64", "bfloat16", "float8_e5m2"):
            flat[2] = np.inf
    return values.astype(dt)


def assert_same_array(got: Any, expected: np.ndarray) -> None:
    """Same dtype, shape and bytes (so NaNs, -0.0 and float8 values compare exactly)."""
    assert isinstance(got, np.ndarray)
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(expected).tobytes()


def file_bytes(path: Path) -> bytes:
    return path.read_bytes()


# -- round trips of every column kind -----------------------------------------------------------


@pytest.mark.parametrize("name", list(DTYPES_BY_NAME))
def test_array_round_trip_of_every_dtype(tmp_path: Path, name: str) -> None:
    rng = np.random.default_rng(abs(hash(name)) % 1000)
    columns = {
        "vec": random_array(rng, name, (37, 3)),
        "scalar": random_array(rng, name, (37,)),
        "grid": random_array(rng, name, (37, 2, 3, 2)),
    }
    path = tmp_path / "t.bale"
    bale.write(path, columns, row_group_rows=10)
    with bale.open(path) as ds:
        assert len(ds) == 37
        assert ds.schema["vec"].type == bale.Array(name, (3,))
        assert ds.schema["scalar"].type == bale.Array(name, ())
        assert ds.schema["grid"].type == bale.Array(name, (2, 3, 2))
        batch = ds.read()
        for key, expected in columns.items():
            assert_same_array(batch[key], expected)
        row = ds[12]
        assert_same_array(np.asarray(row["vec"]), columns["vec"][12])
        assert row["scalar"].dtype == DTYPES_BY_NAME[name]
        assert np.asarray(row["scalar"]).tobytes() == columns["scalar"][12].tobytes()


def test_ml_dtypes_values_survive(tmp_path: Path) -> None:
    x = np.array([1.5, -2.25, 0.0, 448.0], dtype=ml_dtypes.float8_e4m3fn)
    y = np.array([3.140625, -1e30, 1e-30, 65280.0], dtype=ml_dtypes.bfloat16)
    bale.write(tmp_path / "m.bale", {"x": x, "y": y})
    batch = bale.open(tmp_path / "m.bale").read()
    assert batch["x"].dtype == np.dtype(ml_dtypes.float8_e4m3fn)
    assert batch["x"].astype(np.float32).tolist() == [1.5, -2.25, 0.0, 448.0]
    assert batch["y"].astype(np.float32).tolist() == y.astype(np.float32).tolist()


def test_complex_and_bool_values_survive(tmp_path: Path) -> None:
    z = np.array([1 + 2j, -0.5j, complex(np.inf, np.nan)], dtype=np.complex64)
    b = np.array([[True, False], [False, False], [True, True]])
    bale.write(tmp_path / "c.bale", {"z": z, "b": b})
    batch = bale.open(tmp_path / "c.bale").read()
    assert_same_array(batch["z"], z)
    assert_same_array(batch["b"], b)
    assert batch["b"].tolist() == b.tolist()


@pytest.mark.parametrize("shape", [(), (1,), (5,), (2, 3, 4), (1, 1, 1, 1, 2)])
def test_array_shapes_round_trip(tmp_path: Path, shape: tuple[int, ...]) -> None:
    x = np.arange(20 * int(np.prod(shape)), dtype=np.int32).reshape(20, *shape)
    bale.write(tmp_path / "s.bale", {"x": x}, row_group_rows=7)
    ds = bale.open(tmp_path / "s.bale")
    assert ds["x"].shape == (20, *shape)
    assert_same_array(ds.read()["x"], x)
    assert_same_array(np.asarray(ds[19]["x"]), x[19])


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 0), (2, 0, 5)])
@pytest.mark.parametrize("codec", [None, "zstd", "lz4", "none", "blosc2:lz4:5:bitshuffle"])
def test_zero_size_rows_round_trip(
    tmp_path: Path, shape: tuple[int, ...], codec: str | None
) -> None:
    x = np.zeros((12, *shape), np.float32)
    codecs = {"x": codec} if codec else {}
    bale.write(tmp_path / "z.bale", {"x": x, "i": np.arange(12)}, codecs=codecs)
    ds = bale.open(tmp_path / "z.bale")
    assert ds["x"].shape == (12, *shape)
    assert_same_array(ds.read()["x"], x)
    assert ds[5]["x"].shape == shape
    assert ds[5]["i"] == 5
    assert_same_array(ds[[3, 1]]["x"], x[[3, 1]])


def test_bytes_round_trip(tmp_path: Path) -> None:
    rows = [b"", b"\x00", b"abc", b"\x00\xff" * 1000, b"", bytes(range(256)), b"\xff\xd8\xff jpeg"]
    bale.write(tmp_path / "b.bale", {"b": rows}, row_group_rows=3)
    ds = bale.open(tmp_path / "b.bale")
    assert ds.schema["b"].type == bale.Bytes()
    assert ds.read()["b"] == rows
    assert [ds[i]["b"] for i in range(len(rows))] == rows
    assert all(type(v) is bytes for v in ds.read()["b"])
    assert ds[[6, 0, 3]]["b"] == [rows[6], rows[0], rows[3]]


def test_bytes_like_rows_are_stored_as_bytes(tmp_path: Path) -> None:
    rows = [bytearray(b"ba"), memoryview(b"mv"), np.bytes_(b"nb"), b"b"]
    bale.write(tmp_path / "b.bale", {"b": rows}, schema={"b": bale.Bytes()})
    assert bale.open(tmp_path / "b.bale").read()["b"] == [b"ba", b"mv", b"nb", b"b"]


def test_string_round_trip(tmp_path: Path) -> None:
    rows = ["", "plain", "Zürich", "日本語のテキスト", "emoji 🐍🚀", "", "a\x00b", "x" * 5000]
    bale.write(tmp_path / "s.bale", {"s": rows}, row_group_rows=3)
    ds = bale.open(tmp_path / "s.bale")
    assert ds.schema["s"].type == bale.String()
    assert ds.read()["s"] == rows
    assert [ds[i]["s"] for i in range(len(rows))] == rows
    assert all(type(v) is str for v in ds.read()["s"])


def test_lone_surrogates_in_strings_survive(tmp_path: Path) -> None:
    rows = ["ok", "bad \ud800 surrogate", "\udcff"]
    bale.write(tmp_path / "s.bale", {"s": rows})
    assert bale.open(tmp_path / "s.bale").read()["s"] == rows


def test_numpy_string_and_bytes_arrays_are_accepted(tmp_path: Path) -> None:
    s = np.array(["a", "bb", "ccc"])
    b = np.array([b"x", b"yy", b"zzz"])
    bale.write(tmp_path / "n.bale", {"s": s, "b": b})
    ds = bale.open(tmp_path / "n.bale")
    assert ds.schema.describe() == {"s": "string", "b": "bytes"}
    assert ds.read() == {"s": ["a", "bb", "ccc"], "b": [b"x", b"yy", b"zzz"]}


def test_mixed_columns_round_trip_through_several_groups(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n = 250
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = rng.integers(0, 10, n)
    b = [rng.bytes(int(k)) for k in rng.integers(0, 50, n)]
    s = [f"row {i} ✓" * int(i % 4) for i in range(n)]
    with bale.Writer(tmp_path / "m.bale", row_group_rows=32) as writer:
        for start in range(0, n, 45):
            stop = start + 45
            writer.write(
                {"x": x[start:stop], "y": y[start:stop], "b": b[start:stop], "s": s[start:stop]}
            )
    ds = bale.open(tmp_path / "m.bale")
    assert ds.row_group_sizes == (32,) * 7 + (26,)
    batch = ds.read()
    assert_same_array(batch["x"], x)
    assert_same_array(batch["y"], y)
    assert batch["b"] == b
    assert batch["s"] == s


def test_big_endian_input_is_stored_little_endian(tmp_path: Path) -> None:
    x = np.arange(12, dtype=">f8").reshape(4, 3)
    i = np.arange(4, dtype=">i4")
    bale.write(tmp_path / "e.bale", {"x": x, "i": i})
    ds = bale.open(tmp_path / "e.bale")
    assert ds.schema.describe() == {"x": "float64[3]", "i": "int32"}
    batch = ds.read()
    assert batch["x"].dtype.str == "<f8"
    assert batch["x"].tolist() == x.tolist()
    assert batch["i"].tolist() == [0, 1, 2, 3]


def test_non_contiguous_input_is_written_by_value(tmp_path: Path) -> None:
    base = np.arange(60, dtype=np.int16).reshape(10, 6)
    x = base[::2, ::3]  # strided view
    bale.write(tmp_path / "v.bale", {"x": x})
    assert_same_array(bale.open(tmp_path / "v.bale").read()["x"], np.ascontiguousarray(x))


# -- schemas ------------------------------------------------------------------------------------


def test_schema_inferred_from_the_first_batch(tmp_path: Path) -> None:
    batch = {
        "f": np.zeros((3, 2, 2), np.float16),
        "i": [1, 2, 3],
        "fl": [0.5, 1.5, 2.5],
        "vec": [[1, 2], [3, 4], [5, 6]],
        "b": [b"a", b"b", b"c"],
        "s": ["a", "b", "c"],
        "flag": np.array([True, False, True]),
    }
    bale.write(tmp_path / "i.bale", batch)
    ds = bale.open(tmp_path / "i.bale")
    assert ds.schema.names == list(batch)
    assert ds.schema.describe() == {
        "f": "float16[2,2]",
        "i": "int64",
        "fl": "float64",
        "vec": "int64[2]",
        "b": "bytes",
        "s": "string",
        "flag": "bool",
    }
    assert ds.read()["vec"].tolist() == [[1, 2], [3, 4], [5, 6]]


def test_schema_given_as_a_mapping(tmp_path: Path) -> None:
    schema = {"x": bale.Array("float32", (3,)), "b": bale.Bytes(), "s": bale.String()}
    with bale.Writer(tmp_path / "g.bale", schema) as writer:
        assert writer.schema is not None
        assert writer.schema.names == ["x", "b", "s"]
        # columns may come in any order; values convert safely to the given dtype
        writer.write({"s": ["one", "two"], "x": [[1, 2, 3], [4, 5, 6]], "b": [b"1", b"2"]})
        writer.write({"b": [b"3"], "s": ["three"], "x": np.ones((1, 3), np.float32)})
    ds = bale.open(tmp_path / "g.bale")
    assert ds.schema.names == ["x", "b", "s"]
    assert ds.schema.describe() == {"x": "float32[3]", "b": "bytes", "s": "string"}
    batch = ds.read()
    assert batch["x"].dtype == np.float32
    assert batch["x"].tolist() == [[1, 2, 3], [4, 5, 6], [1, 1, 1]]
    assert batch["b"] == [b"1", b"2", b"3"]
    assert batch["s"] == ["one", "two", "three"]


def test_given_schema_overrides_what_inference_would_pick(tmp_path: Path) -> None:
    bale.write(tmp_path / "g.bale", {"y": [1, 2, 3]}, schema={"y": bale.Array("int8")})
    ds = bale.open(tmp_path / "g.bale")
    assert ds.schema["y"].type == bale.Array("int8")
    assert_same_array(ds.read()["y"], np.array([1, 2, 3], np.int8))


def test_schema_given_as_a_schema_object_keeps_its_codecs(tmp_path: Path) -> None:
    schema = Schema(
        (
            Column("x", bale.Array("uint16", (2,)), {"id": "lz4", "acceleration": 4}),
            Column("s", bale.String(), {"id": "none"}),
        )
    )
    bale.write(
        tmp_path / "g.bale", {"x": np.ones((5, 2), np.uint16), "s": list("abcde")}, schema=schema
    )
    ds = bale.open(tmp_path / "g.bale")
    assert ds.schema["x"].codec == {"id": "lz4", "acceleration": 4}
    assert ds.schema["s"].codec == {"id": "none"}
    assert ds.read()["s"] == list("abcde")


def test_schema_given_and_no_rows_makes_an_empty_file(tmp_path: Path) -> None:
    with bale.Writer(tmp_path / "e.bale", {"x": bale.Array("float32", (3,)), "s": bale.String()}):
        pass
    ds = bale.open(tmp_path / "e.bale")
    assert len(ds) == 0
    assert ds.num_row_groups == 0
    assert ds.schema.describe() == {"x": "float32[3]", "s": "string"}
    batch = ds.read()
    assert batch["x"].shape == (0, 3)
    assert batch["x"].dtype == np.float32
    assert batch["s"] == []


def test_no_rows_and_no_schema_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nothing.bale"
    writer = bale.Writer(path)
    assert (tmp_path / "nothing.bale.partial").exists()
    with pytest.raises(bale.SchemaError, match="no rows"):
        writer.close()
    assert not path.exists()
    assert not (tmp_path / "nothing.bale.partial").exists()


# -- codecs -------------------------------------------------------------------------------------


def test_per_column_codec_override_is_recorded(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((100, 3)).astype(np.float32)
    s = [str(i) for i in range(100)]
    bale.write(tmp_path / "c.bale", {"x": x, "s": s}, codecs={"x": "zstd:5"}, row_group_rows=40)
    ds = bale.open(tmp_path / "c.bale")
    assert ds.schema["x"].codec == {"id": "zstd", "level": 5}
    assert {"id": "zstd", "level": 5} in ds.index.codecs
    for group in range(ds.num_row_groups):
        assert ds.index.codec_at(group, 0) == {"id": "zstd", "level": 5}
    assert ds.index.codec_at(0, 1) == ds.schema["s"].codec
    assert_same_array(ds.read()["x"], x)


@pytest.mark.parametrize(
    ("spec", "config"),
    [
        ("none", {"id": "none"}),
        ("lz4", {"id": "lz4", "acceleration": 1}),
        (
            "blosc2:lz4:5:bitshuffle",
            {
                "id": "blosc2",
                "cname": "lz4",
                "clevel": 5,
                "filters": ["bitshuffle"],
                "typesize": 8,  # tuned to the column's element size
                "blocksize": 0,
            },
        ),
    ],
)
def test_codec_specs_as_overrides(tmp_path: Path, spec: str, config: dict[str, Any]) -> None:
    x = np.arange(300, dtype=np.float64).reshape(100, 3)
    bale.write(tmp_path / "c.bale", {"x": x}, codecs={"x": spec})
    ds = bale.open(tmp_path / "c.bale")
    assert ds.schema["x"].codec == config
    assert ds.index.codecs == [config]
    assert_same_array(ds.read()["x"], x)


def test_codec_instance_as_override(tmp_path: Path) -> None:
    from bale.codecs import Blosc2

    bale.write(
        tmp_path / "c.bale",
        {"x": np.arange(10, dtype=np.int32)},
        codecs={"x": Blosc2("zstd", 3, ("shuffle", "bytedelta"))},
    )
    codec = bale.open(tmp_path / "c.bale").schema["x"].codec
    assert codec["filters"] == ["shuffle", "bytedelta"]
    assert codec["typesize"] == 4


def test_default_codecs_are_recorded(tmp_path: Path) -> None:
    jpeg = [b"\xff\xd8\xff\xe0 rest"] * 4
    columns = {
        "x": np.zeros((4, 2), np.float32),
        "image": np.zeros((4, 8, 8, 3), np.uint8),
        "jpeg": jpeg,
        "raw": [b"plain"] * 4,
        "s": ["a"] * 4,
    }
    bale.write(tmp_path / "d.bale", columns)
    schema = bale.open(tmp_path / "d.bale").schema
    for column in schema:
        sample = columns[column.name] if isinstance(column.type, bale.Bytes) else []
        assert column.codec == default_codec(column.type, sample).config(), column.name
    assert schema["jpeg"].codec == {"id": "none"}  # already-compressed media
    assert schema["raw"].codec == {"id": "zstd", "level": 3}
    assert schema["s"].codec == {"id": "zstd", "level": 3}
    if schema["image"].codec["id"] == "blosc2":
        assert schema["image"].codec["typesize"] in (1, 3)


def test_default_codec_of_a_given_bytes_column_follows_the_first_batch(tmp_path: Path) -> None:
    with bale.Writer(tmp_path / "d.bale", {"jpeg": bale.Bytes(), "raw": bale.Bytes()}) as writer:
        writer.write({"jpeg": [b"\x89PNG\r\n rest"] * 3, "raw": [b"text"] * 3})
    schema = bale.open(tmp_path / "d.bale").schema
    assert schema["jpeg"].codec == {"id": "none"}
    assert schema["raw"].codec == {"id": "zstd", "level": 3}


def test_codec_for_an_unknown_column_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(bale.SchemaError, match=r"unknown columns \['y'\]"):
        bale.Writer(tmp_path / "c.bale", {"x": bale.Array("int8")}, codecs={"y": "lz4"})


def test_codec_for_an_unknown_column_is_rejected_with_an_inferred_schema(tmp_path: Path) -> None:
    writer = bale.Writer(tmp_path / "c.bale", codecs={"y": "lz4"})
    with pytest.raises(bale.SchemaError, match=r"unknown columns \['y'\]"):
        writer.write({"x": [1, 2]})
    writer.abort()


def test_rejected_writer_leaves_no_partial_and_no_lock(tmp_path: Path) -> None:
    path = tmp_path / "c.bale"
    with pytest.raises(bale.SchemaError):
        bale.Writer(path, {"x": bale.Array("int8")}, codecs={"y": "lz4"})
    assert not (tmp_path / "c.bale.partial").exists()
    with bale.Writer(path, {"x": bale.Array("int8")}, overwrite=True) as writer:
        writer.write({"x": [1]})


def test_bad_codec_spec_is_rejected_before_creating_a_file(tmp_path: Path) -> None:
    with pytest.raises(bale.CodecError):
        bale.Writer(tmp_path / "c.bale", codecs={"x": "zstd:99"})
    assert not (tmp_path / "c.bale.partial").exists()


def test_small_segments_store_multi_frame_blocks(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 3))
    s = ["é" * int(k) for k in rng.integers(0, 30, 200)]
    bale.write(tmp_path / "m.bale", {"x": x, "s": s}, segment_bytes=256, row_group_rows=64)
    ds = bale.open(tmp_path / "m.bale")
    assert ds.index.segment_bytes == 256
    assert int(ds.index.blocks["raw_size"].max()) > 256
    batch = ds.read()
    assert_same_array(batch["x"], x)
    assert batch["s"] == s


@pytest.mark.parametrize(
    "spec", ["blosc2:lz4:5:shuffle", "blosc2:zstd:1:bitshuffle", "blosc2:zstd:1:shuffle+bytedelta"]
)
def test_odd_segment_size_round_trips_with_every_blosc2_filter(tmp_path: Path, spec: str) -> None:
    # Segments of 1001 bytes are not a multiple of the item size; blosc2's DELTA filter got this
    # wrong silently, which is why bale refuses it. The filters bale allows must get it right.
    x = np.random.default_rng(0).integers(0, 4, 3000).astype(np.int32)
    bale.write(tmp_path / "d.bale", {"x": x}, codecs={"x": spec}, segment_bytes=1001)
    assert_same_array(bale.open(tmp_path / "d.bale").read()["x"], x)


def test_threaded_encoding_writes_the_same_bytes(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    columns = {
        "a": rng.standard_normal((500, 8)).astype(np.float32),
        "b": rng.integers(0, 100, 500),
        "s": [str(v) for v in rng.integers(0, 1000, 500)],
    }
    bale.write(tmp_path / "one.bale", columns, row_group_rows=64, threads=1)
    bale.write(tmp_path / "four.bale", columns, row_group_rows=64, threads=4)
    assert file_bytes(tmp_path / "one.bale") == file_bytes(tmp_path / "four.bale")


# -- metadata -----------------------------------------------------------------------------------


def test_metadata_round_trips(tmp_path: Path) -> None:
    metadata = {
        "name": "mnist ✓",
        "split": "train",
        "classes": ["0", "1", "2"],
        "nested": {"a": [1, 2.5, None, True], "b": {"c": -3}},
        "count": 2**60,
        "empty": {},
    }
    bale.write(tmp_path / "m.bale", {"x": [1, 2]}, metadata=metadata)
    assert bale.open(tmp_path / "m.bale").metadata == metadata
    # the header repeats it, so `repair` can rebuild the footer
    source = LocalSource(tmp_path / "m.bale")
    try:
        assert read_header(source).metadata == metadata
    finally:
        source.close()


def test_metadata_changed_before_close_is_written(tmp_path: Path) -> None:
    with bale.Writer(tmp_path / "m.bale", metadata={"a": 1}) as writer:
        writer.write({"x": [1, 2, 3]})
        writer.metadata["rows_seen"] = 3
    assert bale.open(tmp_path / "m.bale").metadata == {"a": 1, "rows_seen": 3}


def test_no_metadata_is_an_empty_dict(tmp_path: Path) -> None:
    bale.write(tmp_path / "m.bale", {"x": [1]})
    assert bale.open(tmp_path / "m.bale").metadata == {}


# -- publishing ---------------------------------------------------------------------------------


def test_existing_target_is_refused_unless_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "t.bale"
    bale.write(path, {"x": [1, 2, 3]})
    before = file_bytes(path)
    with pytest.raises(bale.TargetExistsError) as info:
        bale.write(path, {"x": [4]})
    assert isinstance(info.value, FileExistsError)
    assert info.value.path == os.fspath(path)
    assert file_bytes(path) == before
    assert not (tmp_path / "t.bale.partial").exists()
    bale.write(path, {"x": [4]}, overwrite=True)
    assert bale.open(path).read()["x"].tolist() == [4]


def test_existing_non_bale_target_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "t.bale"
    path.write_text("precious")
    with pytest.raises(bale.TargetExistsError):
        bale.Writer(path)
    assert path.read_text() == "precious"


def test_file_appears_under_its_name_only_at_close(tmp_path: Path) -> None:
    path = tmp_path / "t.bale"
    partial = tmp_path / "t.bale.partial"
    writer = bale.Writer(path, row_group_rows=10)
    writer.write({"x": np.arange(35)})
    writer.flush()
    assert not path.exists()
    assert partial.exists()
    assert partial.stat().st_size > 0
    writer.close()
    assert path.exists()
    assert not partial.exists()
    assert bale.open(path).read()["x"].tolist() == list(range(35))
    writer.close()  # closing twice is harmless


def test_overwrite_keeps_the_old_file_until_close(tmp_path: Path) -> None:
    path = tmp_path / "t.bale"
    bale.write(path, {"x": [1, 2, 3]})
    writer = bale.Writer(path, overwrite=True)
    writer.write({"x": [9]})
    assert bale.open(path).read()["x"].tolist() == [1, 2, 3]
    writer.close()
    assert bale.open(path).read()["x"].tolist() == [9]


def test_write_after_close_is_an_error(tmp_path: Path) -> None:
    writer = bale.Writer(tmp_path / "t.bale")
    writer.write({"x": [1]})
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write({"x": [2]})


def test_exception_in_with_block_leaves_a_readable_partial(tmp_path: Path) -> None:
    path = tmp_path / "t.bale"
    partial = tmp_path / "t.bale.partial"
    with pytest.raises(RuntimeError, match="boom"), bale.Writer(path, row_group_rows=8) as writer:
        writer.write({"x": np.arange(20), "s": [str(i) for i in range(20)]})
        writer.write({"x": np.arange(20, 23), "s": ["a", "b", "c"]})
        raise RuntimeError("boom")
    assert not path.exists()
    assert partial.exists()
    os.rename(partial, path)
    ds = bale.open(path)
    assert ds.read()["x"].tolist() == list(range(23))  # buffered rows included
    assert ds.read()["s"] == [str(i) for i in range(20)] + ["a", "b", "c"]


def test_partial_left_by_an_interrupted_write_blocks_a_new_writer(tmp_path: Path) -> None:
    path = tmp_path / "t.bale"
    with pytest.raises(RuntimeError), bale.Writer(path) as writer:
        writer.write({"x": [1]})
        raise RuntimeError
    with pytest.raises(bale.TargetExistsError, match="repair"):
        bale.Writer(path)
    bale.write(path, {"x": [2]}, overwrite=True)
    assert bale.open(path).read()["x"].tolist() == [2]
    assert not (tmp_path / "t.bale.partial").exists()


# -- buffering into row groups ------------------------------------------------------------------


def test_many_tiny_writes_are_buffered_into_full_row_groups(tmp_path: Path) -> None:
    n = 5000
    x = np.arange(n * 4, dtype=np.float64).reshape(n, 4)
    y = np.arange(n, dtype=np.int64)
    options = {"row_group_bytes": 40 * 1000}  # 40 bytes per row -> 1000 rows per group
    with bale.Writer(tmp_path / "tiny.bale", **options) as writer:
        for i in range(n):
            writer.write({"x": x[i : i + 1], "y": y[i : i + 1]})
            if i == 2500:
                assert writer.rows_written == 2501
    bale.write(tmp_path / "big.bale", {"x": x, "y": y}, **options)
    tiny = bale.open(tmp_path / "tiny.bale")
    big = bale.open(tmp_path / "big.bale")
    assert tiny.num_row_groups == 5
    assert tiny.row_group_sizes == big.row_group_sizes == (1000,) * 5
    assert_same_array(tiny.read()["x"], x)
    assert_same_array(tiny.read()["y"], y)


def test_write_row(tmp_path: Path) -> None:
    with bale.Writer(tmp_path / "r.bale", row_group_rows=4) as writer:
        for i in range(10):
            writer.write_row(
                {"x": np.full(3, i, np.float32), "y": i, "b": bytes([i]), "s": f"row {i}"}
            )
        assert writer.rows_written == 10
    ds = bale.open(tmp_path / "r.bale")
    assert ds.schema.describe() == {"x": "float32[3]", "y": "int64", "b": "bytes", "s": "string"}
    assert ds.row_group_sizes == (4, 4, 2)
    batch = ds.read()
    assert batch["x"].tolist() == [[float(i)] * 3 for i in range(10)]
    assert batch["y"].tolist() == list(range(10))
    assert batch["b"] == [bytes([i]) for i in range(10)]
    assert batch["s"] == [f"row {i}" for i in range(10)]


def test_write_row_with_python_scalars_into_narrow_columns(tmp_path: Path) -> None:
    schema = {
        "label": bale.Array("int8"),
        "w": bale.Array("float32"),
        "v": bale.Array("float32", (2,)),
    }
    with bale.Writer(tmp_path / "r.bale", schema) as writer:
        writer.write_row({"label": 3, "w": 0.5, "v": [1.0, 2.0]})
    assert bale.open(tmp_path / "r.bale")[0]["label"] == 3


def test_list_of_floats_with_nan(tmp_path: Path) -> None:
    bale.write(tmp_path / "n.bale", {"x": [1.0, float("nan")]})
    x = bale.open(tmp_path / "n.bale").read()["x"]
    assert x[0] == 1.0
    assert np.isnan(x[1])


def test_row_group_rows_controls_group_size(tmp_path: Path) -> None:
    bale.write(tmp_path / "g.bale", {"x": np.arange(100)}, row_group_rows=30)
    ds = bale.open(tmp_path / "g.bale")
    assert ds.row_group_sizes == (30, 30, 30, 10)
    assert ds.index.groups["row_start"].tolist() == [0, 30, 60, 90]
    assert ds.read()["x"].tolist() == list(range(100))


def test_row_group_bytes_controls_group_size(tmp_path: Path) -> None:
    # 3 float64 per row = 24 bytes; 2400 bytes per group -> 100 rows per group
    x = np.zeros((1000, 3))
    bale.write(tmp_path / "g.bale", {"x": x}, row_group_bytes=2400)
    assert bale.open(tmp_path / "g.bale").row_group_sizes == (100,) * 10
    bale.write(tmp_path / "h.bale", {"x": x}, row_group_bytes=24_000)
    assert bale.open(tmp_path / "h.bale").row_group_sizes == (1000,)


def test_row_group_rows_of_one(tmp_path: Path) -> None:
    bale.write(tmp_path / "g.bale", {"s": ["a", "b", "c"]}, row_group_rows=1)
    ds = bale.open(tmp_path / "g.bale")
    assert ds.row_group_sizes == (1, 1, 1)
    assert ds.read()["s"] == ["a", "b", "c"]


def test_flush_writes_a_short_group(tmp_path: Path) -> None:
    with bale.Writer(tmp_path / "f.bale", row_group_rows=10) as writer:
        writer.write({"x": np.arange(4)})
        writer.flush()
        writer.flush()  # nothing buffered: no empty group
        writer.write({"x": np.arange(4, 16)})
    assert bale.open(tmp_path / "f.bale").row_group_sizes == (4, 10, 2)


def test_rows_written_counts_buffered_rows(tmp_path: Path) -> None:
    with bale.Writer(tmp_path / "w.bale", row_group_rows=100) as writer:
        assert writer.rows_written == 0
        writer.write({"x": np.arange(7)})
        assert writer.rows_written == 7
        writer.write({"x": np.arange(0)})
        assert writer.rows_written == 7


@pytest.mark.parametrize(
    "options",
    [
        {"mode": "x"},
        {"row_group_rows": 0},
        {"row_group_rows": -5},
        {"row_group_bytes": 0},
        {"segment_bytes": 0},
        {"segment_bytes": 1 << 31},
    ],
)
def test_invalid_writer_options(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        bale.Writer(tmp_path / "w.bale", **options)
    assert not (tmp_path / "w.bale.partial").exists()


# -- the caller's arrays ------------------------------------------------------------------------


@pytest.mark.parametrize("batch_rows", [5, 25, 64])
def test_caller_may_reuse_its_arrays_after_write(tmp_path: Path, batch_rows: int) -> None:
    """Batches smaller than, spanning and equal to a row group: mutating the caller's buffers
    after write() returns must not change what is written."""
    expected_x, expected_b = [], []
    x = np.zeros((batch_rows, 3), np.float32)
    b = [b""] * batch_rows
    with bale.Writer(tmp_path / "r.bale", row_group_rows=16) as writer:
        for step in range(5):
            x[:] = np.arange(batch_rows * 3, dtype=np.float32).reshape(batch_rows, 3) + 1000 * step
            for i in range(batch_rows):
                b[i] = f"{step}-{i}".encode()
            writer.write({"x": x, "b": b})
            expected_x.append(x.copy())
            expected_b.extend(b)
            x[:] = -1  # reuse the same buffers for the next batch
            b[:] = [b"garbage"] * batch_rows
    batch = bale.open(tmp_path / "r.bale").read()
    assert_same_array(batch["x"], np.concatenate(expected_x))
    assert batch["b"] == expected_b


def test_bytearray_rows_mutated_after_write(tmp_path: Path) -> None:
    row = bytearray(b"original")
    with bale.Writer(tmp_path / "r.bale", {"b": bale.Bytes()}) as writer:
        writer.write({"b": [row]})
        row[:] = b"CHANGED!"
    assert bale.open(tmp_path / "r.bale").read()["b"] == [b"original"]


# -- append -------------------------------------------------------------------------------------


def _groups_end(path: Path) -> int:
    """Where the footer starts: the end of the last row group, as the trailer records it."""
    data = path.read_bytes()
    (footer_offset,) = struct.unpack_from("<Q", data, len(data) - 40)
    with bale.open(path) as ds:
        groups = ds.index.groups
        if len(groups):
            assert footer_offset == int(groups["offset"][-1] + groups["length"][-1])
    return int(footer_offset)


def test_append_concatenates_rows_and_keeps_earlier_bytes(tmp_path: Path) -> None:
    path = tmp_path / "a.bale"
    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal((50, 2)), rng.standard_normal((30, 2))
    s1, s2 = [f"a{i}" for i in range(50)], [f"b{i}" for i in range(30)]
    bale.write(path, {"x": x1, "s": s1}, row_group_rows=16, metadata={"v": 1})
    with bale.open(path) as ds:
        old_groups = ds.index.groups.copy()
    old_end = _groups_end(path)
    before = file_bytes(path)

    with bale.Writer(path, mode="a", row_group_rows=16, metadata={"w": 2}) as writer:
        assert writer.rows_written == 50
        writer.write({"x": x2, "s": s2})
        assert writer.rows_written == 80

    after = file_bytes(path)
    assert after[:old_end] == before[:old_end]  # earlier row groups untouched
    ds = bale.open(path)
    assert len(ds) == 80
    assert np.array_equal(ds.index.groups[: len(old_groups)], old_groups)
    assert ds.row_group_sizes == (16, 16, 16, 2, 16, 14)
    batch = ds.read()
    assert_same_array(batch["x"], np.concatenate([x1, x2]))
    assert batch["s"] == s1 + s2
    assert ds.metadata == {"v": 1, "w": 2}


def test_append_several_times(tmp_path: Path) -> None:
    path = tmp_path / "a.bale"
    bale.write(path, {"x": np.arange(3)})
    for k in range(1, 4):
        with bale.Writer(path, mode="a") as writer:
            writer.write({"x": np.arange(3 * k, 3 * k + 3)})
    ds = bale.open(path)
    assert ds.read()["x"].tolist() == list(range(12))
    assert ds.num_row_groups == 4


def test_append_with_a_matching_schema(tmp_path: Path) -> None:
    path = tmp_path / "a.bale"
    schema = {"x": bale.Array("float32", (3,)), "s": bale.String()}
    bale.write(path, {"x": np.zeros((2, 3), np.float32), "s": ["a", "b"]}, schema=schema)
    with bale.Writer(path, schema, mode="a") as writer:
        writer.write({"x": np.ones((1, 3), np.float32), "s": ["c"]})
    assert bale.open(path).read()["s"] == ["a", "b", "c"]


def test_append_that_adds_nothing_leaves_the_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "a.bale"
    bale.write(path, {"x": np.arange(10)}, metadata={"k": "v"})
    before = file_bytes(path)
    with bale.Writer(path, mode="a"):
        pass
    with bale.Writer(path, mode="a", metadata={"k": "v"}) as writer:
        writer.write({"x": np.arange(0)})
    assert file_bytes(path) == before


def test_append_of_metadata_only_rewrites_the_footer(tmp_path: Path) -> None:
    path = tmp_path / "a.bale"
    bale.write(path, {"x": np.arange(10)}, metadata={"k": "v"})
    end = _groups_end(path)
    before = file_bytes(path)
    with bale.Writer(path, mode="a", metadata={"extra": True}):
        pass
    assert file_bytes(path)[:end] == before[:end]
    ds = bale.open(path)
    assert ds.metadata == {"k": "v", "extra": True}
    assert ds.read()["x"].tolist() == list(range(10))


def test_append_to_a_missing_file_creates_it(tmp_path: Path) -> None:
    path = tmp_path / "new.bale"
    with bale.Writer(path, mode="a") as writer:
        writer.write({"x": [1, 2]})
    assert bale.open(path).read()["x"].tolist() == [1, 2]


def test_codec_override_when_appending_is_not_silently_ignored(tmp_path: Path) -> None:
    path = tmp_path / "a.bale"
    bale.write(path, {"x": np.arange(5)})
    try:
        writer = bale.Writer(path, mode="a", codecs={"x": "lz4"})
    except (bale.SchemaError, bale.CodecError, ValueError):
        return  # refusing is fine
    with writer:
        writer.write({"x": np.arange(5)})
    ds = bale.open(path)
    assert ds.index.codec_at(1, 0) == {"id": "lz4", "acceleration": 1}


@pytest.mark.parametrize(
    "schema",
    [
        {"x": bale.Array("float64")},
        {"x": bale.Array("int64", (2,))},
        {"x": bale.Array("int64"), "y": bale.Array("int64")},
        {"y": bale.Array("int64")},
        {"x": bale.String()},
    ],
)
def test_append_with_a_different_schema_is_refused(tmp_path: Path, schema: dict[str, Any]) -> None:
    path = tmp_path / "a.bale"
    bale.write(path, {"x": np.arange(5)})
    before = file_bytes(path)
    with pytest.raises(bale.SchemaError, match="cannot append"):
        bale.Writer(path, schema, mode="a")
    assert file_bytes(path) == before
    # the refused writer released its lock
    with bale.Writer(path, mode="a") as writer:
        writer.write({"x": [5]})
    assert bale.open(path).read()["x"].tolist() == list(range(6))


@pytest.mark.parametrize(
    "batch",
    [
        {"x": np.arange(3.0)},
        {"x": np.arange(3), "y": np.arange(3)},
        {"y": np.arange(3)},
        {"x": np.arange(6).reshape(3, 2)},
    ],
)
def test_append_of_a_batch_with_other_columns_is_refused(
    tmp_path: Path, batch: dict[str, Any]
) -> None:
    path = tmp_path / "a.bale"
    bale.write(path, {"x": np.arange(5)})
    before = file_bytes(path)
    with bale.Writer(path, mode="a") as writer:
        with pytest.raises(bale.SchemaError):
            writer.write(batch)
        assert writer.rows_written == 5
    assert file_bytes(path) == before


# -- one writer at a time -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "second",
    [
        {},
        {"overwrite": True},
        {"mode": "a"},
    ],
)
def test_second_writer_on_a_new_file_is_locked_out(tmp_path: Path, second: dict[str, Any]) -> None:
    path = tmp_path / "l.bale"
    first = bale.Writer(path)
    first.write({"x": [1, 2]})
    with pytest.raises(bale.FileLockedError) as info:
        bale.Writer(path, **second)
    assert isinstance(info.value, BlockingIOError)
    first.write({"x": [3]})
    first.close()
    assert bale.open(path).read()["x"].tolist() == [1, 2, 3]


@pytest.mark.parametrize("second", [{"mode": "a"}, {"overwrite": True}])
def test_second_writer_while_appending_is_locked_out(
    tmp_path: Path, second: dict[str, Any]
) -> None:
    path = tmp_path / "l.bale"
    bale.write(path, {"x": [1, 2]})
    first = bale.Writer(path, mode="a")
    first.write({"x": [3]})
    with pytest.raises(bale.FileLockedError):
        bale.Writer(path, **second)
    first.close()
    assert bale.open(path).read()["x"].tolist() == [1, 2, 3]
    # released: another writer may go on
    with bale.Writer(path, mode="a") as writer:
        writer.write({"x": [4]})
    assert bale.open(path).read()["x"].tolist() == [1, 2, 3, 4]


def test_second_appender_after_the_first_flushed_is_locked_out(tmp_path: Path) -> None:
    path = tmp_path / "l.bale"
    bale.write(path, {"x": [1, 2]})
    first = bale.Writer(path, mode="a", row_group_rows=1)
    first.write({"x": [3]})  # a full group: the old footer is dropped
    try:
        with pytest.raises(bale.FileLockedError):
            bale.Writer(path, mode="a")
    finally:
        first.close()


def test_lock_is_released_when_a_writer_is_aborted(tmp_path: Path) -> None:
    path = tmp_path / "l.bale"
    writer = bale.Writer(path)
    writer.write({"x": [1]})
    writer.abort()
    assert (tmp_path / "l.bale.partial").exists()
    with bale.Writer(path, overwrite=True) as again:
        again.write({"x": [2]})
    assert bale.open(path).read()["x"].tolist() == [2]


# -- targets and metadata refused before anything is written (issue 14, item 9) ------------------


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_directory_at_the_target_is_refused_before_writing(
    tmp_path: Path, overwrite: bool
) -> None:
    target = tmp_path / "d.bale"
    target.mkdir()
    with pytest.raises(bale.errors.TargetExistsError, match="is a directory") as info:
        bale.write(target, {"x": np.arange(1000)}, overwrite=overwrite)
    assert info.value.path == str(target)
    assert not (tmp_path / "d.bale.partial").exists()
    assert target.is_dir()


def test_a_fifo_at_the_target_is_refused_before_writing(tmp_path: Path) -> None:
    target = tmp_path / "f.bale"
    os.mkfifo(target)
    # A reader-writer end kept open here, so a bale that opened the FIFO would not block forever.
    keep = os.open(target, os.O_RDWR | os.O_NONBLOCK)
    try:
        with pytest.raises(bale.errors.TargetExistsError, match="not a regular file"):
            bale.write(target, {"x": np.arange(10)}, overwrite=True)
    finally:
        os.close(keep)
    assert stat.S_ISFIFO(os.lstat(target).st_mode)
    assert not (tmp_path / "f.bale.partial").exists()


def test_overwrite_through_a_symlink_to_a_file_still_works(tmp_path: Path) -> None:
    real = tmp_path / "real.bale"
    bale.write(real, {"x": np.arange(3)})
    link = tmp_path / "link.bale"
    link.symlink_to(real)
    bale.write(link, {"x": np.arange(5)}, overwrite=True)
    assert len(bale.open(link)) == 5


def test_deeply_nested_metadata_is_a_schema_error(tmp_path: Path) -> None:
    deep: Any = 0
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(bale.errors.SchemaError, match="deeper than 64"):
        bale.write(tmp_path / "m.bale", {"x": np.arange(3)}, metadata={"deep": deep})
    assert not (tmp_path / "m.bale.partial").exists()
    assert not (tmp_path / "m.bale").exists()


def test_metadata_nested_64_deep_is_kept_and_65_refused(tmp_path: Path) -> None:
    deep: Any = 0
    for _ in range(63):  # the metadata object holding 63 nested lists: 64 levels
        deep = [deep]
    bale.write(tmp_path / "m.bale", {"x": np.arange(3)}, metadata={"k": deep})
    assert bale.open(tmp_path / "m.bale").metadata == {"k": deep}
    with pytest.raises(bale.errors.SchemaError, match="deeper than 64"):
        bale.write(tmp_path / "n.bale", {"x": np.arange(3)}, metadata={"k": [deep]})
