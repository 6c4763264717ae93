"""The codec advisor (bale.measure.advisor): real measurements, goal rules, and specs that really write.

Data: 64x64x3 uint8 crops of real photos from skimage.data, sparse float32 ReLU activations
computed from those photos, random bytes, generated text and JPEG bytes. Measurements are taken
once per module (they cost a few seconds); no test asserts a speed, only rules over the speeds
that were measured.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale
import bale.measure.advisor as advisor
import bale.measure.codec_measuring as codec_measuring
from bale._core.batches import pack_var_rows
from bale._core.defaults import is_channels_last_images, shuffle_typesize
from bale._core.encode import written_codec
from bale.codecs import Codec, Zstd, codec_from_config, parse_codec
from bale.codecs.framing import encode_block
from bale.errors import BaleError
from bale.format.schema import Array
from bale.importers.base import RowSource, SourceBatch
from bale.measure.advisor import (
    GOALS,
    AdvisorReport,
    measure_codecs,
    recommend_codecs,
    sample_file,
    sample_source,
)
from bale.measure.codec_words import how_it_works

GROUP = 256 << 10  # small row groups, so every column is cut into several blocks


def _photos() -> list[np.ndarray]:
    data = pytest.importorskip("skimage.data")
    return [data.astronaut(), data.coffee(), data.chelsea()]


def _crops(size: int) -> np.ndarray:
    """Non-overlapping size x size x 3 crops of real photos."""
    out = []
    for photo in _photos():
        h, w = photo.shape[:2]
        for y in range(0, h - size + 1, size):
            for x in range(0, w - size + 1, size):
                out.append(photo[y : y + size, x : x + size, :3])
    return np.ascontiguousarray(np.stack(out))


def _activations() -> np.ndarray:
    """ReLU of a fixed random linear layer over normalised 8x8 photo patches: about half zeros."""
    patches = _crops(8).reshape(-1, 192).astype(np.float32) / 255.0
    patches = (patches - patches.mean(axis=0)) / (patches.std(axis=0) + 1e-3)
    rng = np.random.default_rng(0)
    weight = rng.normal(0, 1 / np.sqrt(192), (192, 64)).astype(np.float32)
    return np.maximum(patches[:4096] @ weight, 0).astype(np.float32)


def _text(n: int) -> list[str]:
    rng = np.random.default_rng(1)
    words = ("the", "a", "cat", "dog", "sat", "on", "mat", "ran", "fast", "red", "tree", "river")
    return [" ".join(words[i] for i in rng.integers(0, len(words), 12)) for _ in range(n)]


def _jpegs() -> list[bytes]:
    """Photo-sized JPEGs (tiny ones share header tables that zstd does find: 1.4x at 64x64)."""
    simplejpeg = pytest.importorskip("simplejpeg")
    rng = np.random.default_rng(3)
    out = []
    for photo in _photos() * 10:
        h, w = photo.shape[:2]
        y, x = int(rng.integers(0, h - 255)), int(rng.integers(0, w - 255))
        crop = np.ascontiguousarray(photo[y : y + 256, x : x + 256, :3])
        out.append(simplejpeg.encode_jpeg(crop, quality=90))
    return out


@pytest.fixture(scope="module")
def columns() -> dict[str, Any]:
    rng = np.random.default_rng(2)
    return {
        "images": _crops(64),
        "activations": _activations(),
        "random": [rng.bytes(1000) for _ in range(300)],
        "text": _text(6000),
        "jpeg": _jpegs(),
    }


@pytest.fixture(scope="module")
def reports(columns: dict[str, Any]) -> dict[str, AdvisorReport]:
    # One column per call: the columns have different row counts.
    return {
        name: measure_codecs({name: value}, repeats=2, row_group_bytes=GROUP)
        for name, value in columns.items()
    }


def _raw_blocks(value: Any, row_group_bytes: int) -> list[bytes]:
    """The raw blocks the Writer stores for one column (rows per group from the row size)."""
    if isinstance(value, np.ndarray):
        per_group = max(1, int(row_group_bytes // (value.nbytes / len(value))))
        return [value[a : a + per_group].tobytes() for a in range(0, len(value), per_group)]
    rows = [v.encode() if isinstance(v, str) else v for v in value]
    row_bytes = 8 + sum(len(r) for r in rows) / len(rows)
    per_group = max(1, int(row_group_bytes // row_bytes))
    return [pack_var_rows(rows[a : a + per_group]) for a in range(0, len(rows), per_group)]


def test_ratios_are_len_raw_over_len_encoded(
    columns: dict[str, Any], reports: dict[str, AdvisorReport]
) -> None:
    for name, value in columns.items():
        report = reports[name].columns[name]
        blocks = _raw_blocks(value, GROUP)
        assert len(blocks) > 1, name
        raw = sum(len(b) for b in blocks)
        assert report.raw_bytes == raw
        assert len(report.results) >= 4, name
        for result in report.results:
            codec = codec_from_config(result.config)
            stored = sum(
                sum(len(memoryview(p)) for p in encode_block(codec, memoryview(b), 1 << 30))
                for b in blocks
            )
            assert (result.raw_bytes, result.stored_bytes) == (raw, stored), (name, result.spec)
            assert result.ratio == raw / stored
            assert result.compress_mbps > 0 and result.decompress_mbps > 0


def test_the_kinds_of_data_compress_as_expected(reports: dict[str, AdvisorReport]) -> None:
    best = {name: r.columns[name].results[0].ratio for name, r in reports.items()}
    assert best["random"] < 1.01  # random bytes do not compress
    assert best["jpeg"] < 1.05  # JPEG is already compressed
    assert best["activations"] > 1.5  # half zeros
    assert best["images"] > 1.2
    assert best["text"] > 3
    assert reports["jpeg"].columns["jpeg"].description.startswith("JPEG bytes")
    assert "zeros" in reports["activations"].columns["activations"].description


def test_already_compressed_bytes_get_the_quick_candidates(
    reports: dict[str, AdvisorReport],
) -> None:
    jpeg = reports["jpeg"].columns["jpeg"]
    assert {r.spec for r in jpeg.results} == {"none", "lz4", "zstd:1", "zstd:3"}
    assert [r.spec for r in jpeg.results if r.is_default] == ["none"]


def test_random_bytes_are_stored_as_is_or_with_lz4(reports: dict[str, AdvisorReport]) -> None:
    column = reports["random"].columns["random"]
    assert column.choose("fastest").spec in ("none", "lz4")
    assert column.choose("balanced").spec == "none"
    assert reports["random"].recommend("fastest")["random"] in ("none", "lz4")
    assert "no codec saves 5%" in column.reason("balanced")


@pytest.mark.parametrize("read_rate", [None, 50.0, 400.0, 1500.0, 1e12])
def test_smallest_is_the_best_measured_ratio_among_the_allowed(
    reports: dict[str, AdvisorReport], read_rate: float | None
) -> None:
    floor = read_rate if read_rate is not None else advisor.SMALLEST_MIN_DECODE_MBPS
    for name, report in reports.items():
        column = report.columns[name]
        allowed = [r for r in column.results if r.decompress_mbps >= floor]
        choice = column.choose("smallest", read_rate)
        assert choice in allowed
        assert choice.ratio == max(r.ratio for r in allowed)


@pytest.mark.parametrize("goal", GOALS)
@pytest.mark.parametrize("read_rate", [100.0, 800.0, 3000.0, 1e12])
def test_read_rate_is_honoured(
    reports: dict[str, AdvisorReport], goal: Any, read_rate: float
) -> None:
    for name, report in reports.items():
        choice = report.columns[name].choose(goal, read_rate)
        assert choice.decompress_mbps >= read_rate, (name, goal, choice)
    # Nothing but `none` (no decoding at all) meets an absurd rate.
    assert all(
        report.columns[name].choose(goal, 1e12).spec == "none" for name, report in reports.items()
    )


def test_balanced_and_fastest_follow_their_stated_rules(reports: dict[str, AdvisorReport]) -> None:
    for name, report in reports.items():
        column = report.columns[name]
        top = max(r.ratio for r in column.results)
        balanced, fastest = column.choose("balanced"), column.choose("fastest")
        if top < advisor.WORTH_COMPRESSING:
            assert balanced.spec == fastest.spec == "none"
            continue
        assert balanced.decompress_mbps >= advisor.BALANCED_MIN_DECODE_MBPS
        assert balanced.compress_mbps >= advisor.BALANCED_MIN_COMPRESS_MBPS
        allowed = [
            r
            for r in column.results
            if r.decompress_mbps >= advisor.BALANCED_MIN_DECODE_MBPS
            and r.compress_mbps >= advisor.BALANCED_MIN_COMPRESS_MBPS
        ]
        assert balanced.ratio >= max(r.ratio for r in allowed) * (1 - advisor.BALANCED_RATIO_TIE)
        assert advisor.near_best_ratio(fastest.ratio, top)
        near = [r for r in column.results if advisor.near_best_ratio(r.ratio, top)]
        assert advisor.write_read_mbps(fastest) == max(advisor.write_read_mbps(r) for r in near)


@pytest.mark.parametrize("goal", GOALS)
def test_recommended_specs_write_what_was_measured(
    tmp_path: Path, columns: dict[str, Any], reports: dict[str, AdvisorReport], goal: Any
) -> None:
    for name, value in columns.items():
        report = reports[name]
        chosen = report.columns[name].choose(goal)
        codecs = report.recommend(goal)
        for spec in codecs.values():
            assert isinstance(parse_codec(spec), Codec)
        path = tmp_path / f"{name}-{goal}.bale"
        bale.write(path, {name: value}, codecs=codecs, row_group_bytes=GROUP)
        with bale.open(path) as ds:
            # The file records the very codec that was measured, and is exactly as large.
            assert ds.schema[name].codec == chosen.config, (name, goal)
            assert int(ds.index.blocks["stored_size"].sum()) == chosen.stored_bytes
            back = ds[:][name]
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(back, value)
        else:
            assert list(back) == list(value)


def test_uint8_images_default_is_expressible_by_its_spec(
    reports: dict[str, AdvisorReport],
) -> None:
    """The Writer gives a blosc2 spec on channels-last uint8 images the channel count as
    typesize, exactly as the default does: the default is measured once, as a settable spec,
    and recommending it names it."""
    column = reports["images"].columns["images"]
    defaults = [r for r in column.results if r.is_default]
    assert len(defaults) == 1
    default = defaults[0]
    assert default.config["typesize"] == 3 and default.settable
    assert default.label == default.spec == "blosc2:zstd:1:shuffle+bytedelta"
    for goal in GOALS:
        choice = column.choose(goal)
        assert reports["images"].recommend(goal)["images"] == choice.spec


def test_recommend_codecs_keeps_the_pack_signature(columns: dict[str, Any]) -> None:
    n = 200
    batch = {
        "activations": columns["activations"][:n],
        "text": columns["text"][:n],
        "label": np.arange(n, dtype=np.int64),
    }
    for goal in GOALS:
        codecs = recommend_codecs(batch, goal)
        assert set(codecs) <= set(batch)
        assert set(batch) - set(codecs) <= {"images"}
        for spec in codecs.values():
            parse_codec(spec)
    with pytest.raises(ValueError, match="goal"):
        recommend_codecs(batch, "tiny")  # type: ignore[arg-type]


def test_a_codec_that_does_not_round_trip_is_excluded(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(Zstd):
        def decode(self, data: memoryview, raw_size: int) -> bytes:
            out = bytearray(super().decode(data, raw_size))
            out[0] ^= 1
            return bytes(out)

    real = codec_measuring._as_written

    def as_written(spec: str, column_type: Any) -> Codec:
        return Broken(7) if spec == "zstd:7" else real(spec, column_type)

    monkeypatch.setattr(codec_measuring, "_as_written", as_written)
    report = measure_codecs({"x": np.arange(5000, dtype=np.int32)}, candidates=["zstd:7", "lz4"])
    column = report.columns["x"]
    assert "did not give the input back" in column.excluded["zstd:7"]
    assert {r.spec for r in column.results} == {"none", "lz4", "zstd:1"}  # zstd:1: the default


def test_invalid_candidates_are_excluded_with_a_note() -> None:
    report = measure_codecs({"x": np.zeros(1000, np.float32)}, candidates=["zstd:99", "lz4"])
    assert "invalid spec" in report.columns["x"].excluded["zstd:99"]
    assert "lz4" in {r.spec for r in report.columns["x"].results}


def test_per_column_candidates_and_threads_measure_the_same_bytes() -> None:
    batch = {"a": np.arange(20000, dtype=np.int64), "b": [b"row %d" % i for i in range(20000)]}
    candidates: Mapping[str, list[str]] = {"a": ["blosc2:zstd:1:shuffle"], "b": ["zstd:3"]}
    one = measure_codecs(batch, candidates=candidates, repeats=1)
    two = measure_codecs(batch, candidates=candidates, repeats=1, threads=2)
    assert {r.spec for r in one.columns["a"].results} == {"none", "blosc2:zstd:1:shuffle", "zstd:1"}
    assert {r.spec for r in one.columns["b"].results} == {"none", "zstd:3"}
    for name in batch:
        sizes = {r.spec: r.stored_bytes for r in one.columns[name].results}
        assert sizes == {r.spec: r.stored_bytes for r in two.columns[name].results}


def test_slow_default_candidates_are_skipped_only_in_quick_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(codec_measuring, "_SLOW_CODEC_SECONDS", 0.0)  # every codec counts as slow
    batch = {"x": np.arange(200_000, dtype=np.int64) % 1000}
    quick = measure_codecs(batch, repeats=1, row_group_bytes=GROUP)
    assert "skipped" in quick.columns["x"].excluded["zstd:19"]
    # none and bale's default are always measured, whatever the time limit.
    assert {"none", "zstd:1"} <= {r.spec for r in quick.columns["x"].results}
    explicit = measure_codecs(batch, candidates=["zstd:19"], repeats=1, row_group_bytes=GROUP)
    assert "zstd:19" in {r.spec for r in explicit.columns["x"].results}


def test_samples_need_equal_rows() -> None:
    with pytest.raises(BaleError, match="same number of rows"):
        measure_codecs({"a": np.zeros(3), "b": np.zeros(4)})
    with pytest.raises(ValueError):
        measure_codecs({})


def test_max_bytes_keeps_evenly_spread_row_groups() -> None:
    x = np.arange(1 << 20, dtype=np.int64)  # 8 MiB
    report = measure_codecs({"x": x}, candidates=["lz4"], repeats=1, max_bytes=2 << 20)
    assert report.columns["x"].raw_bytes == 2 << 20  # 2 of the 8 one-MiB groups


def test_report_json_is_serialisable(reports: dict[str, AdvisorReport]) -> None:
    data = reports["jpeg"].to_dict("balanced")
    text = json.dumps(data)
    assert json.loads(text)["columns"]["jpeg"]["recommended"] == "none"
    none = next(r for r in data["columns"]["jpeg"]["results"] if r["spec"] == "none")
    assert none["decompress_mbps"] is None  # no codec work: not a number of MB/s
    assert str(os.cpu_count()) in data["machine"]


def test_sample_file_reads_evenly_spread_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "d.bale"
    n = 10_000
    bale.write(
        path,
        {"i": np.arange(n, dtype=np.int64), "s": [f"row {i}" for i in range(n)]},
        row_group_rows=100,
    )
    # "s" is the largest column: 100 x (8 + 8) = 1,600 raw bytes a group, so 2 groups.
    sample = sample_file(path, max_bytes=3000)
    i = sample["i"]
    assert list(i[:100]) == list(range(100)) and list(i[-100:]) == list(range(n - 100, n))
    assert len(i) == 200
    assert sample["s"] == [f"row {k}" for k in i]
    limited = sample_file(path, rows=250, columns=["s"], max_bytes=1 << 30)
    assert list(limited) == ["s"] and len(limited["s"]) == 250
    spread = sample_file(path, rows=250)
    assert spread["i"][-1] > n // 2  # groups come from all over the file, not its start
    with pytest.raises(KeyError):
        sample_file(path, columns=["nope"])


def test_sample_source_reads_spread_runs() -> None:
    class Numbers(RowSource):
        path = "numbers"

        @property
        def num_rows(self) -> int:
            return 1000

        def read(self, start: int, stop: int) -> SourceBatch:
            rows = np.arange(start, stop)
            return SourceBatch({"n": rows.copy(), "b": [b"x" * 8] * len(rows)}, rows)

    sample = sample_source(Numbers(), max_bytes=8 * 80, pieces=4)
    values = sample["n"]
    assert len(values) == 80 and values[0] == 0 and values[-1] == 999
    assert len(sample["b"]) == 80
    assert list(sample_source(Numbers(), columns=["b"], max_bytes=64)) == ["b"]


def test_describe_machine_names_the_cores() -> None:
    assert f"{os.cpu_count()} core" in advisor.describe_machine()


def test_array_column_types_get_blosc2_candidates() -> None:
    floats = advisor.candidate_codecs(Array("float32", (8,)))
    assert "blosc2:zstd:1:shuffle" in floats and "zstd:1" in floats
    bytes_ = advisor.candidate_codecs(Array("uint8", (4, 4, 3)))
    assert not any(s.endswith(":shuffle") for s in bytes_)  # a no-op at 1-byte items
    assert len(advisor.candidate_codecs(Array("float32", ()), thorough=True)) > len(floats)


def test_speed_floors_are_judged_per_row() -> None:
    """A label beside 1,000-byte rows is 0.8% of each row: its codec's speed counts that much."""
    rng = np.random.default_rng(4)
    n = 3000
    batch = {"blob": [rng.bytes(1000) for _ in range(n)], "label": rng.integers(0, 10, n)}
    report = measure_codecs(batch, candidates=["lz4", "zstd:3", "zstd:9"], repeats=1)
    label = report.columns["label"]
    assert label.row_share == pytest.approx(8 / (8 + 8 + 1000))
    assert report.columns["blob"].row_share == pytest.approx(1008 / 1016)
    finite = [r.decompress_mbps for r in label.results if math.isfinite(r.decompress_mbps)]
    rate = 2 * max(finite)  # no codec decodes the labels alone this fast...
    choice = label.choose("smallest", rate)
    # ...but per row all of them do, so the best ratio wins.
    assert choice.ratio == max(r.ratio for r in label.results) > 1
    assert label.row_decode_mbps(choice) >= rate
    assert "of each row's bytes" in label.reason("smallest", rate)
    alone = measure_codecs({"label": batch["label"]}, candidates=["zstd:3"], repeats=1)
    assert alone.columns["label"].row_share == 1.0


def test_measured_sizes_are_what_the_writer_stores(tmp_path: Path, columns: dict[str, Any]) -> None:
    """One batch of several columns (rows per group counts them all), each spec measured and
    then written: the file records the measured codec and stores exactly the measured bytes."""
    n = len(columns["images"])  # 64x64x3 crops: 12 KiB a row
    batch = {
        "images": columns["images"],
        "activations": columns["activations"][:n],
        "text": columns["text"][:n],
        "label": np.arange(n, dtype=np.int64) % 7,
    }
    specs = ["lz4", "zstd:3", "blosc2:zstd:1:shuffle+bytedelta", "blosc2:lz4:5:bitshuffle"]
    report = measure_codecs(batch, candidates=specs, repeats=1, row_group_bytes=GROUP)
    for spec in [None, *specs]:  # None: bale's defaults
        codecs = None if spec is None else dict.fromkeys(batch, spec)
        path = tmp_path / f"{spec}.bale"
        bale.write(path, batch, codecs=codecs, row_group_bytes=GROUP)
        with bale.open(path) as ds:
            assert ds.num_row_groups > 1
            for name, column in report.columns.items():
                if spec is None:
                    result = next(r for r in column.results if r.is_default)
                else:
                    config = written_codec(column.column_type, parse_codec(spec)).config()
                    result = next(r for r in column.results if r.config == config)
                blocks = ds.index.blocks[:, ds.schema.index(name)]
                assert ds.schema[name].codec == result.config, (name, spec)
                assert int(blocks["raw_size"].sum()) == result.raw_bytes, (name, spec)
                assert int(blocks["stored_size"].sum()) == result.stored_bytes, (name, spec)


@pytest.mark.parametrize(
    ("shape", "images"),
    [
        ((8, 8, 3), True),
        ((16, 4), True),  # 1-byte items, 4 last: the Writer treats them as RGBA pixels
        ((2, 4, 4, 2), True),
        ((8, 8, 1), False),
        ((8, 8, 5), False),
        ((), False),
    ],
)
def test_the_advisor_calls_images_what_the_writer_tunes_as_images(
    shape: tuple[int, ...], images: bool
) -> None:
    """One channels-last test decides the Writer's default codec, its blosc2 item size and the
    advisor's words."""
    column_type = Array("uint8", shape)
    assert is_channels_last_images(column_type) is images
    assert shuffle_typesize(column_type) == (shape[-1] if images else 1)
    batch = {"x": np.random.default_rng(5).integers(0, 4, (64, *shape), dtype=np.uint8)}
    column = measure_codecs(batch, candidates=["zstd:1"], repeats=1).columns["x"]
    assert column.description.startswith("uint8 images") is images
    default = next(r for r in column.results if r.is_default)
    assert (default.config["id"] == "blosc2") is images
    words = how_it_works("zstd:1", {"id": "zstd", "level": 1}, column_type)
    assert ("pixel" in words) is images


# -- issue 15, item 8: tiny columns, and advice that keeps to its goal -----------------------------


def _result(spec: str, ratio: float, compress: float, decode: float) -> advisor.CodecResult:
    raw = 1_000_000
    return advisor.CodecResult(
        spec, parse_codec(spec).config(), raw, round(raw / ratio), compress, decode
    )


def _column(results: list[advisor.CodecResult], row_share: float) -> advisor.ColumnReport:
    return advisor.ColumnReport(
        "path", bale.String(), 20_000, 1_000_000, "text", results, row_share=row_share
    )


def test_balanced_never_recommends_a_slow_compressor() -> None:
    # The report: under "balanced", a small column got "zstd:19 ... compresses at 4 MB/s",
    # because its compress speed was scaled by its share of each row.
    column = _column(
        [
            _result("zstd:19", 67.2, 4.0, 2_400.0),
            _result("zstd:9", 48.5, 86.0, 1_900.0),
            _result("zstd:3", 44.5, 775.0, 1_900.0),
            _result("lz4", 6.5, 1_800.0, 5_400.0),
            _result("none", 1.0, math.inf, math.inf),
        ],
        row_share=0.02,
    )
    choice = column.choose("balanced")
    assert choice.spec == "zstd:3"
    assert choice.compress_mbps >= advisor.BALANCED_MIN_COMPRESS_MBPS
    assert "compresses at 775 MB/s" in column.reason("balanced")
    assert column.choose("smallest").spec == "zstd:19"  # smallest asks nothing of compression


def test_fastest_on_float32_features_is_fast_to_write_and_read() -> None:
    # The report: --goal fastest on float32 features picked zstd:9 (82 MB/s compress), the
    # fastest decoder within 10% of the best ratio.
    column = _column(
        [
            _result("blosc2:zstd:1:shuffle", 1.179, 498.0, 2_285.0),
            _result("blosc2:lz4:5:bitshuffle", 1.101, 805.0, 2_930.0),
            _result("zstd:9", 1.100, 82.0, 5_000.0),
            _result("none", 1.0, math.inf, math.inf),
        ],
        row_share=1.0,
    )
    assert column.choose("fastest").spec == "blosc2:lz4:5:bitshuffle"
    assert "compresses and decodes fastest" in column.reason("fastest")
    # Highly compressible text: 44x is as good as 67x for "fastest" (0.8% of raw more).
    text = _column(
        [
            _result("zstd:19", 67.2, 4.0, 2_400.0),
            _result("zstd:3", 44.5, 775.0, 1_900.0),
            _result("none", 1.0, math.inf, math.inf),
        ],
        row_share=1.0,
    )
    assert text.choose("fastest").spec == "zstd:3"


def test_a_tiny_column_keeps_the_default_and_is_not_measured() -> None:
    """Labels beside 64x64x3 images are 0.07% of each row: one line, bale's default kept."""
    images = _crops(64)
    labels = np.arange(len(images)) % 10
    report = measure_codecs({"image": images, "label": labels}, repeats=1)
    label = report.columns["label"]
    assert label.tiny and label.row_share < advisor.TINY_COLUMN_SHARE
    assert [r.spec for r in label.results] == ["zstd:1"] and label.results[0].is_default
    for goal in GOALS:
        assert label.choose(goal).spec == "zstd:1"
        assert "label" not in report.recommend(goal)
        reason = label.reason(goal)
        assert "tiny (0.065% of each row's bytes): keep zstd:1 (bale's default" in reason
        assert "not worth measuring" in reason
    assert not report.columns["image"].tiny
    # Codecs named for it are measured all the same.
    named = measure_codecs(
        {"image": images, "label": labels}, candidates={"label": ["lz4", "zstd:3"]}, repeats=1
    )
    assert not named.columns["label"].tiny
    assert {r.spec for r in named.columns["label"].results} >= {"none", "lz4", "zstd:3"}
