"""bale.recompress: the same rows, schema, metadata and row groups with other codecs; 'auto' is
what the advisor recommends; each group streamed (memory about one row group); nothing left
behind on an error."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale
from bale._core.encode import written_codec
from bale.codecs import codec_spec, parse_codec
from bale.errors import CodecError, CorruptFileError, SchemaError, TargetExistsError
from bale.measure.advisor import measure_codecs, sample_file
from bale.ops.recompress import recompress

ROWS = 3000


def _write(path: Path, **kwargs: Any) -> Path:
    rng = np.random.default_rng(7)
    bale.write(
        path,
        {
            "x": np.cumsum(rng.standard_normal((ROWS, 8)), axis=0).astype("float32"),
            "label": rng.integers(0, 5, ROWS),
            "text": [f"row {i} " * (i % 4) for i in range(ROWS)],
            "blob": [bytes(rng.integers(0, 255, i % 9, dtype=np.uint8)) for i in range(ROWS)],
        },
        metadata={"classes": ["a", "b", "c", "d", "e"], "note": {"nested": [1, 2]}},
        row_group_rows=700,
        **kwargs,
    )
    return path


def _same_rows(a: Path, b: Path) -> None:
    with bale.open(a) as x, bale.open(b) as y:
        assert x.metadata == y.metadata
        assert x.row_group_sizes == y.row_group_sizes
        assert x.index.segment_bytes == y.index.segment_bytes
        assert [(c.name, c.type) for c in x.schema] == [(c.name, c.type) for c in y.schema]
        for name in x.schema.names:
            want, got = x.read()[name], y.read()[name]
            if isinstance(want, np.ndarray):
                assert want.dtype == got.dtype
                np.testing.assert_array_equal(want, got)
            else:
                assert list(want) == list(got), name


def _block_codecs(path: Path, column: str) -> set[str]:
    with bale.open(path) as ds:
        position = ds.schema.index(column)
        return {codec_spec(ds.index.codecs[int(c)]) for c in ds.index.blocks[:, position]["codec"]}


def test_one_codec_for_every_column_keeps_rows_schema_metadata_and_groups(tmp_path: Path) -> None:
    source = _write(tmp_path / "in.bale")
    report = recompress(source, tmp_path / "out.bale", "zstd:9")
    _same_rows(source, tmp_path / "out.bale")
    with bale.open(tmp_path / "out.bale") as ds:
        assert {codec_spec(c.codec) for c in ds.schema} == {"zstd:9"}
    for name in ("x", "label", "text", "blob"):
        assert _block_codecs(tmp_path / "out.bale", name) == {"zstd:9"}
    assert report.rows == ROWS and report.row_groups == 5
    assert [c.name for c in report.columns] == ["x", "label", "text", "blob"]
    text = next(c for c in report.columns if c.name == "text")
    assert (text.codec_before, text.codec_after) == ("zstd:3", "zstd:9")
    assert text.blocks_reencoded == 5 and text.blocks_copied == 0
    assert text.stored_after == sum(
        int(s) for s in bale.open(tmp_path / "out.bale").index.blocks[:, 2]["stored_size"]
    )
    assert report.file_bytes_after == os.path.getsize(tmp_path / "out.bale")
    assert report.file_bytes_before == os.path.getsize(source)
    summary = report.summary()
    assert "zstd:3" in summary and "zstd:9" in summary and "verified" in summary


def test_a_mapping_changes_only_its_columns_and_copies_the_others_as_stored(
    tmp_path: Path,
) -> None:
    source = _write(tmp_path / "in.bale")
    report = recompress(source, tmp_path / "out.bale", {"x": "blosc2:lz4:5:bitshuffle"})
    _same_rows(source, tmp_path / "out.bale")
    assert _block_codecs(tmp_path / "out.bale", "x") == {"blosc2:lz4:5:bitshuffle"}
    assert _block_codecs(tmp_path / "out.bale", "text") == _block_codecs(source, "text")
    by_name = {c.name: c for c in report.columns}
    assert by_name["x"].blocks_reencoded == 5 and by_name["x"].why == "given"
    assert by_name["label"].blocks_copied == 5 and by_name["label"].why == "kept"
    # blosc2's shuffle is tuned to the column as the Writer tunes it
    with bale.open(tmp_path / "out.bale") as ds:
        assert ds.schema["x"].codec["typesize"] == 4

    recompress(source, tmp_path / "two.bale", {"label": "none"}, default="lz4")
    assert _block_codecs(tmp_path / "two.bale", "label") == {"none"}
    assert _block_codecs(tmp_path / "two.bale", "blob") == {"lz4"}
    _same_rows(source, tmp_path / "two.bale")


def test_auto_applies_what_the_advisor_recommends_for_the_goal(tmp_path: Path) -> None:
    # The advisor's speeds are measured, so its picks may differ from run to run: the test
    # checks that what was written is what the advisor said in this run, for every column.
    source = _write(tmp_path / "in.bale")
    sample = sample_file(source)
    for goal in ("smallest", "fastest"):
        out = tmp_path / f"{goal}.bale"
        report = recompress(source, out, "auto", goal=goal)
        _same_rows(source, out)
        assert set(report.advice) <= {"x", "label", "text", "blob"}
        with bale.open(out) as ds:
            for column in ds.schema:
                pick = report.advice.get(column.name)
                given = parse_codec(pick) if pick is not None else None
                assert column.codec == written_codec(column.type, given).config(), column.name
                assert _block_codecs(out, column.name) == {codec_spec(column.codec)}
        assert all(c.why == f"auto, goal {goal}" for c in report.columns)
        assert report.measure_seconds > 0
    # labels 0..4 in int64 shrink a lot under any goal: auto never leaves them as they are
    assert measure_codecs({"label": sample["label"]}).recommend("smallest")["label"] != "none"
    assert report.advice["label"] != "none"


def test_a_random_access_file_keeps_its_frames(tmp_path: Path) -> None:
    source = _write(tmp_path / "in.bale", random_access=True)
    recompress(source, tmp_path / "out.bale", "zstd:1")
    _same_rows(source, tmp_path / "out.bale")
    with bale.open(tmp_path / "out.bale") as ds:
        assert ds[1234]["text"] == "row 1234 " * (1234 % 4)


def test_an_empty_file_gives_an_empty_file_with_the_new_codecs(tmp_path: Path) -> None:
    source = tmp_path / "empty.bale"
    with bale.Writer(source, {"x": bale.Array("float32", (3,))}):
        pass
    report = recompress(source, tmp_path / "out.bale", "auto")
    with bale.open(tmp_path / "out.bale") as ds:
        assert len(ds) == 0 and ds.schema.names == ["x"]
    assert report.rows == 0


def test_memory_stays_about_one_row_group(tmp_path: Path) -> None:
    source = tmp_path / "big.bale"
    rng = np.random.default_rng(3)
    with bale.Writer(source, codecs={"x": "none"}, row_group_rows=1024) as w:
        for _ in range(24):  # 24 MiB of raw rows, 1 MiB per row group
            w.write({"x": rng.integers(0, 1 << 30, (1024, 256), dtype=np.int32)})
    tracemalloc.start()
    try:
        recompress(source, tmp_path / "out.bale", "zstd:1")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MiB for a 24 MiB file"
    _same_rows(source, tmp_path / "out.bale")


def test_a_damaged_block_names_the_column_and_rows_and_leaves_nothing(tmp_path: Path) -> None:
    source = _write(tmp_path / "in.bale")
    with bale.open(source) as ds:
        record = ds.index.blocks[3, ds.schema.index("text")]
    with open(source, "r+b") as f:
        f.seek(int(record["offset"]) + 2)
        byte = f.read(1)
        f.seek(int(record["offset"]) + 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    out = tmp_path / "out.bale"
    with pytest.raises(CorruptFileError, match="'text'") as raised:
        recompress(source, out, "zstd:1")
    assert raised.value.rows == (2100, 2800)
    assert not out.exists() and not (tmp_path / "out.bale.partial").exists()


def test_bad_requests_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    source = _write(tmp_path / "in.bale")
    out = tmp_path / "out.bale"
    with pytest.raises(SchemaError, match=r"unknown columns \['nope'\]; the columns are"):
        recompress(source, out, {"nope": "zstd"})
    with pytest.raises(CodecError, match="invalid codec spec 'zstd:x'") as bad:
        recompress(source, out, {"x": "zstd:x"})
    # the file and the column the spec was given for are named (they were not)
    assert (bad.value.path, bad.value.column) == (str(source), "x")
    assert str(bad.value).startswith(f"file {str(source)!r}, column 'x': invalid codec spec")
    with pytest.raises(CodecError, match=r"level must be in .*\(for columns \[") as bad:
        recompress(source, out, "zstd:30")
    assert bad.value.path == str(source)
    with pytest.raises(ValueError, match="is also an input"):
        recompress(source, source, "zstd")
    with pytest.raises(ValueError, match="goal must be one of"):
        recompress(source, out, "auto", goal="tiny")  # type: ignore[arg-type]
    assert not out.exists() and not (tmp_path / "out.bale.partial").exists()
    out.write_bytes(b"old")
    with pytest.raises(TargetExistsError, match="overwrite=True"):
        recompress(source, out, "zstd")
    assert out.read_bytes() == b"old"
    recompress(source, out, "zstd", overwrite=True)
    _same_rows(source, out)


def test_recompress_is_public() -> None:
    assert bale.recompress is recompress
