"""Concatenating files: rows in order, row groups copied with their codecs, schema checks, damage."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale
from bale._core.dataset import reader_of
from bale.codecs import codec_spec


def make_columns(start: int, n: int) -> dict[str, Any]:
    rng = np.random.default_rng(start)
    return {
        "id": np.arange(start, start + n, dtype=np.int64),
        "x": rng.standard_normal((n, 5)).astype(np.float32),
        "blob": [bytes(rng.integers(0, 255, i % 23, dtype=np.uint8)) for i in range(n)],
        "text": [f"row {start + i} ∂" for i in range(n)],
    }


def make_file(path: Path, start: int, n: int, **options: Any) -> Path:
    columns = options.pop("columns", None) or make_columns(start, n)
    options.setdefault("row_group_rows", 32)
    bale.write(path, columns, **options)
    return path


def read_all(path: Path | str) -> dict[str, Any]:
    with bale.open(path) as ds:
        return ds.read()


def block_codecs(path: Path | str, column: str) -> list[str]:
    with bale.open(path) as ds:
        blocks = ds.index.blocks[:, ds.schema.index(column)]
        return [codec_spec(ds.index.codecs[int(c)]) for c in blocks["codec"]]


def test_rows_are_joined_in_order_by_copying_row_groups(tmp_path: Path) -> None:
    a = make_file(tmp_path / "a.bale", 0, 100, metadata={"classes": ["x", "y"]})
    b = make_file(tmp_path / "b.bale", 100, 50, codecs={"x": "lz4", "text": "zstd:9"})
    c = make_file(tmp_path / "c.bale", 150, 70, row_group_rows=64)
    out = tmp_path / "all.bale"
    report = bale.concat([a, b, c], out)
    assert report.rows == 220 and report.path == str(out)
    assert report.file_bytes == out.stat().st_size
    assert [(s.path, s.rows, s.groups_copied, s.rows_reencoded) for s in report.sources] == [
        (str(a), 100, 4, 0),
        (str(b), 50, 2, 0),
        (str(c), 70, 2, 0),
    ]
    got = read_all(out)
    expected = [make_columns(0, 100), make_columns(100, 50), make_columns(150, 70)]
    for name in ("id", "x"):
        np.testing.assert_array_equal(got[name], np.concatenate([e[name] for e in expected]))
    for name in ("blob", "text"):
        assert got[name] == [v for e in expected for v in e[name]]
    # Each copied block keeps the codec it was written with.
    assert block_codecs(out, "x") == [*block_codecs(a, "x"), "lz4", "lz4", *block_codecs(c, "x")]
    assert "lz4" not in block_codecs(a, "x")
    assert block_codecs(out, "text")[4:6] == ["zstd:9", "zstd:9"]
    with bale.open(out) as ds, bale.open(a) as first, bale.open(b) as second:
        assert ds.schema == first.schema
        assert ds.row_group_sizes == (32, 32, 32, 4, 32, 18, 64, 6)
        # Copied byte for byte: the stored blocks are those of the input.
        copied = reader_of(ds).stored_group(5).blocks["blob"]
        assert bytes(copied.parts[0]) == bytes(
            reader_of(second).stored_group(1).blocks["blob"].parts[0]
        )


def test_column_order_may_differ(tmp_path: Path) -> None:
    a = make_file(tmp_path / "a.bale", 0, 40)
    columns = make_columns(40, 40)
    b = make_file(
        tmp_path / "b.bale", 40, 40, columns={k: columns[k] for k in ("text", "x", "id", "blob")}
    )
    bale.concat([a, b], tmp_path / "out.bale")
    np.testing.assert_array_equal(read_all(tmp_path / "out.bale")["id"], np.arange(80))


def test_metadata_is_the_first_files_plus_where_the_rows_came_from(tmp_path: Path) -> None:
    meta = {"classes": ["x", "y"], "bale.split": {"this": "train"}}
    a = make_file(tmp_path / "a.bale", 0, 10, metadata=meta)
    b = make_file(tmp_path / "b.bale", 10, 5, metadata={"classes": ["x", "y"], "note": "b"})
    bale.concat([a, b], tmp_path / "out.bale")
    with bale.open(tmp_path / "out.bale") as ds:
        assert ds.metadata == {
            "classes": ["x", "y"],
            "bale.concat": {
                "sources": [str(a), str(b)],
                "rows": [10, 5],
                "metadata": [{"bale.split": {"this": "train"}}, {}],
                "differing_keys": ["note"],
            },
        }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"x": np.zeros((10, 5), np.float64)},
            "'x' is float32[5] in the first, float64[5] in the second",
        ),
        (
            {"x": np.zeros((10, 4), np.float32)},
            "'x' is float32[5] in the first, float32[4] in the second",
        ),
        ({"extra": np.zeros(10)}, "'extra' (float64) only in the second"),
        ({"text": None}, "'text' (string) only in the first"),
        (
            {"blob": [f"{i}" for i in range(10)]},
            "'blob' is bytes in the first, string in the second",
        ),
    ],
)
def test_different_columns_name_both_files(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    a = make_file(tmp_path / "a.bale", 0, 10)
    columns = {**make_columns(10, 10), **change}
    columns = {k: v for k, v in columns.items() if v is not None}
    b = make_file(tmp_path / "b.bale", 10, 10, columns=columns)
    with pytest.raises(bale.SchemaError) as raised:
        bale.concat([a, b], tmp_path / "out.bale")
    text = str(raised.value)
    assert message in text
    assert str(a) in text and str(b) in text
    assert raised.value.column == next(iter(change))
    assert sorted(os.listdir(tmp_path)) == ["a.bale", "b.bale"]


def test_a_different_segment_size_is_re_encoded(tmp_path: Path) -> None:
    a = make_file(tmp_path / "a.bale", 0, 50)
    b = make_file(tmp_path / "b.bale", 50, 50, segment_bytes=1024)
    report = bale.concat([a, b], tmp_path / "out.bale")
    assert [(s.groups_copied, s.rows_reencoded) for s in report.sources] == [(2, 0), (0, 50)]
    got = read_all(tmp_path / "out.bale")
    np.testing.assert_array_equal(got["id"], np.arange(100))
    assert got["blob"] == make_columns(0, 50)["blob"] + make_columns(50, 50)["blob"]
    with bale.open(tmp_path / "out.bale") as ds, bale.open(a) as first:
        assert ds.index.segment_bytes == first.index.segment_bytes


@pytest.mark.parametrize("segment_bytes", [None, 1024])  # copied / re-encoded
def test_a_damaged_block_names_the_input_and_leaves_nothing(
    tmp_path: Path, segment_bytes: int | None
) -> None:
    a = make_file(tmp_path / "a.bale", 0, 100)
    extra = {} if segment_bytes is None else {"segment_bytes": segment_bytes}
    b = make_file(tmp_path / "b.bale", 100, 100, **extra)
    with bale.open(b) as ds:
        record = ds.index.blocks[2, ds.schema.index("x")]
    with b.open("r+b") as f:
        f.seek(int(record["offset"]) + int(record["stored_size"]) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x10]))
    out = tmp_path / "out.bale"
    with pytest.raises(bale.CorruptFileError) as raised:
        bale.concat([a, b], out)
    assert raised.value.path == str(b)
    assert raised.value.column == "x"
    assert raised.value.rows == (64, 96)
    assert sorted(os.listdir(tmp_path)) == ["a.bale", "b.bale"]  # no out, no out.partial


def test_split_then_concat_gives_back_every_row(tmp_path: Path) -> None:
    source = make_file(tmp_path / "all.bale", 0, 500, metadata={"bale.pack": {"shuffled": True}})
    report = bale.split(source, out_dir=tmp_path / "parts")
    joined = bale.concat([o.path for o in report.outputs], tmp_path / "joined.bale")
    assert all(s.rows_reencoded == 0 for s in joined.sources)
    got, expected = read_all(tmp_path / "joined.bale"), make_columns(0, 500)
    for name, values in expected.items():
        if isinstance(values, np.ndarray):
            np.testing.assert_array_equal(got[name], values)
        else:
            assert got[name] == values
    # A concatenation is not shuffled as a whole: splitting it again permutes rows.
    assert bale.split(tmp_path / "joined.bale", out_dir=tmp_path / "again").method == "random"


def test_refusals(tmp_path: Path) -> None:
    a = make_file(tmp_path / "a.bale", 0, 10)
    out = tmp_path / "out.bale"
    out.write_bytes(b"keep")
    with pytest.raises(bale.TargetExistsError):
        bale.concat([a], out)
    assert out.read_bytes() == b"keep"
    assert bale.concat([a], out, overwrite=True).rows == 10
    with pytest.raises(ValueError, match="also an input"):
        bale.concat([a, out], out, overwrite=True)
    with pytest.raises(ValueError, match="one or more"):
        bale.concat([], tmp_path / "none.bale")
    with pytest.raises(FileNotFoundError):
        bale.concat([a, tmp_path / "missing.bale"], tmp_path / "none.bale")
    assert not (tmp_path / "none.bale").exists()
    with pytest.raises(ValueError, match="storage_options apply to URLs"):
        bale.concat([a], tmp_path / "none.bale", storage_options={"anon": True})
    assert not (tmp_path / "none.bale").exists()


def test_concat_re_encodes_what_merge_refuses(tmp_path: Path) -> None:
    a = make_file(tmp_path / "a.bale", 0, 100, segment_bytes=4096)
    b = make_file(tmp_path / "b.bale", 100, 60, segment_bytes=8192)
    with pytest.raises(bale.SchemaError, match="never re-encodes"):
        bale.merge([a, b], tmp_path / "merged.bale")
    assert not (tmp_path / "merged.bale").exists()
    report = bale.concat([a, b], tmp_path / "joined.bale")
    assert [s.rows_reencoded for s in report.sources] == [0, 60]
    # Framed alike, merge and concat hold the same rows; merge copies whole byte runs.
    c = make_file(tmp_path / "c.bale", 100, 60, segment_bytes=4096)
    merged, joined = tmp_path / "m.bale", tmp_path / "j.bale"
    bale.merge([a, c], merged)
    bale.concat([a, c], joined)
    with bale.open(merged) as m, bale.open(joined) as j:
        assert m.row_group_sizes == j.row_group_sizes
        for name, values in j.read().items():
            if isinstance(values, np.ndarray):
                np.testing.assert_array_equal(m.read()[name], values)
            else:
                assert m.read()[name] == values
        assert list(m.index.blocks["checksum"].flat) == list(j.index.blocks["checksum"].flat)


def test_cli_concat_storage_option_needs_a_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bale.cli.main import main

    a = make_file(tmp_path / "a.bale", 0, 10)
    argv = ["concat", str(a), str(tmp_path / "out.bale"), "--storage-option", "anon=true"]
    assert main(argv) == 2
    assert "--storage-option applies to URL" in capsys.readouterr().err
    assert not (tmp_path / "out.bale").exists()
