"""Random rows read frame by frame (format 1.1's frame index): right rows, few bytes, damage
reported, and files that lack or lose the index still read in full."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale
from bale._core import frames as frames_module
from bale._core.dataset import reader_of
from bale.errors import CorruptFileError
from bale.format.frames import FRAME_DTYPE, FRAME_INDEX_KEY, FrameIndexInfo
from bale.format.header import checksum
from bale.ops.verify import verify

ROWS = 600
SEGMENT = 4096
#: Small enough that only the small columns (label, name) are pinned whole; image and blob are
#: read frame by frame.
CACHE = 1 << 20


def make_columns(rows: int = ROWS, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(
            0, 255, (rows, 10, 10, 3), dtype=np.uint8
        ),  # 300 B: rows cross frames
        "label": np.arange(rows, dtype=np.int64),
        "blob": [rng.bytes(int(n)) for n in rng.integers(0, 900, rows)],
        "name": [f"row-{i}-" + "é" * (i % 7) for i in range(rows)],
    }


@pytest.fixture(scope="module")
def columns() -> dict[str, Any]:
    return make_columns()


@pytest.fixture
def path(tmp_path: Path, columns: dict[str, Any]) -> Path:
    target = tmp_path / "framed.bale"
    bale.write(
        target,
        columns,
        segment_bytes=SEGMENT,
        row_group_rows=200,
        codecs={"image": "zstd", "blob": "lz4", "name": "none", "label": "zstd"},
    )
    return target


def expected_row(columns: dict[str, Any], i: int) -> dict[str, Any]:
    return {name: values[i] for name, values in columns.items()}


def count_reads(reader: Any) -> list[int]:
    """The sizes of the reads ``reader`` makes from its file from now on."""
    reads: list[int] = []
    original = reader.source.read

    def counting(offset: int, size: int) -> Any:
        reads.append(size)
        return original(offset, size)

    reader.source.read = counting
    return reads


def assert_row(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(got[key], value)
        else:
            assert got[key] == value


def test_the_footer_names_a_frame_index_of_every_segmented_block(path: Path) -> None:
    with bale.open(path, cache_bytes=CACHE) as ds:
        info = FrameIndexInfo.from_extra(ds.index.extra)
        assert info is not None and info.groups == ds.num_row_groups == 3
        raw = ds.index.blocks["raw_size"].astype(np.int64)
        frames = int(np.where(raw > SEGMENT, -(-raw // SEGMENT), 0).sum())
        assert info.length == frames * FRAME_DTYPE.itemsize and frames > 3 * 3
        region = path.read_bytes()[info.offset : info.offset + info.length]
        assert checksum(region) == info.checksum


def test_random_rows_decode_only_their_frames(path: Path, columns: dict[str, Any]) -> None:
    rng = np.random.default_rng(1)
    with bale.open(path, cache_bytes=CACHE) as ds:
        reader = reader_of(ds)
        for i in rng.integers(0, ROWS, 40).tolist():
            assert_row(ds[i], expected_row(columns, i))
        keys = list(reader.cache._items)
        # Whole blocks only for the small columns (one frame each); frames for the rest.
        whole = {(g, p) for g, p, *rest in keys if not rest}
        names = ds.schema.names
        assert {names[p] for _, p in whole} <= {"label"}
        assert any(len(k) == 3 and k[2] >= 0 for k in keys)


def test_a_cold_random_row_reads_a_few_frames_not_its_blocks(path: Path) -> None:
    with bale.open(path, cache_bytes=CACHE) as ds:
        reader = reader_of(ds)
        ds[0]  # loads the frame index (one read), like opening would for a remote file
        reads = count_reads(reader)
        ds.row(350, ["image"])
        block = int(ds.index.blocks[1, ds.schema.index("image")]["stored_size"])
        # Row 350 is bytes 45,000-45,300 of its block: frames 10 and 11, read together.
        assert len(reads) == 1 and reads[0] <= 2 * SEGMENT + 64 < block


def test_a_large_frame_index_is_read_block_by_block(
    path: Path, columns: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frames_module, "WHOLE_REGION_BYTES", 0)  # as for an index over 64 KiB
    with bale.open(path, cache_bytes=CACHE) as ds:
        reader = reader_of(ds)
        reads = count_reads(reader)
        assert_row(ds.row(350, ["image"]), {"image": columns["image"][350]})
        # The block's records (16 bytes a frame), then frames 10 and 11: never the whole index.
        position = ds.schema.index("image")
        frames = int(-(-int(ds.index.blocks[1, position]["raw_size"]) // SEGMENT))
        assert reads[0] == 16 * frames and len(reads) == 2 and reads[1] <= 2 * SEGMENT + 64
        for i in np.random.default_rng(4).integers(0, ROWS, 30).tolist():
            assert_row(ds[i], expected_row(columns, i))
    # A damaged record costs speed, never rows: its frame fails its check, the block is read.
    with bale.open(path, cache_bytes=CACHE) as ds:
        info = FrameIndexInfo.from_extra(ds.index.extra)
        assert info is not None
    data = bytearray(path.read_bytes())
    data[info.offset + 8] ^= 0xFF  # the first record's checksum
    path.write_bytes(bytes(data))
    with bale.open(path, cache_bytes=CACHE) as ds:
        for i in range(0, 40, 3):
            assert_row(ds[i], expected_row(columns, i))


def test_gathers_match_whole_block_reads(path: Path, columns: dict[str, Any]) -> None:
    idx = np.random.default_rng(2).permutation(ROWS)[:50]
    with bale.open(path, cache_bytes=CACHE) as ds:
        got = ds.take(idx)
    with bale.open(path, cache_bytes=CACHE) as ds:
        ds.read()  # everything cached as whole blocks
        again = ds.take(idx)
    for name, values in columns.items():
        want = values[idx] if isinstance(values, np.ndarray) else [values[i] for i in idx]
        for result in (got[name], again[name]):
            if isinstance(want, np.ndarray):
                np.testing.assert_array_equal(result, want)
            else:
                assert result == want


def test_a_damaged_frame_is_reported(path: Path) -> None:
    with bale.open(path, cache_bytes=CACHE) as ds:
        block = ds.index.blocks[1, ds.schema.index("image")]
        info = FrameIndexInfo.from_extra(ds.index.extra)
    assert info is not None
    data = bytearray(path.read_bytes())
    data[int(block["offset"]) + 100] ^= 0x40  # inside the block's first frame
    path.write_bytes(bytes(data))
    with bale.open(path, cache_bytes=CACHE) as ds, pytest.raises(CorruptFileError) as error:
        ds.row(200, ["image"])  # the first row of group 1
    assert "image" in str(error.value) and "200" in str(error.value)


def test_a_damaged_frame_index_costs_speed_not_rows(path: Path, columns: dict[str, Any]) -> None:
    with bale.open(path, cache_bytes=CACHE) as ds:
        info = FrameIndexInfo.from_extra(ds.index.extra)
    assert info is not None
    data = bytearray(path.read_bytes())
    for k in range(0, info.length, 16):
        data[info.offset + k] ^= 0xFF  # every frame's offset wrong
    path.write_bytes(bytes(data))
    for checked in (True, False):
        with bale.open(path, verify=checked, cache_bytes=CACHE) as ds:
            for i in (0, 299, 599):
                assert_row(ds[i], expected_row(columns, i))


def test_without_verify_a_bad_frame_record_still_never_gives_wrong_rows(
    path: Path, columns: dict[str, Any]
) -> None:
    with bale.open(path, cache_bytes=CACHE) as ds:
        info = FrameIndexInfo.from_extra(ds.index.extra)
    assert info is not None
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q", data, info.offset + 16, 10**12)  # a frame offset past the block
    path.write_bytes(bytes(data))
    with bale.open(path, verify=False, cache_bytes=CACHE) as ds:
        for i in range(0, ROWS, 37):
            assert_row(ds[i], expected_row(columns, i))


def test_appends_extend_the_frame_index(path: Path, columns: dict[str, Any]) -> None:
    more = make_columns(150, seed=9)
    with bale.Writer(path, mode="a", row_group_rows=200) as writer:
        writer.write(more)
    merged = {
        k: (np.concatenate([v, more[k]]) if isinstance(v, np.ndarray) else v + more[k])
        for k, v in columns.items()
    }
    with bale.open(path, cache_bytes=CACHE) as ds:
        info = FrameIndexInfo.from_extra(ds.index.extra)
        assert info is not None and info.groups == ds.num_row_groups == 4
        for i in (5, 450, 600, 749):
            assert_row(ds[i], expected_row(merged, i))
    # The old index and footer were replaced, not left between the groups.
    assert verify(path).ok


def test_a_file_without_the_index_reads_whole_blocks(path: Path, columns: dict[str, Any]) -> None:
    with bale.open(path, cache_bytes=CACHE) as ds:
        extra = dict(ds.index.extra)
    assert FRAME_INDEX_KEY in extra
    with bale.open(path, cache_bytes=CACHE) as ds:
        ds.index.extra.pop(FRAME_INDEX_KEY)  # as a 1.0 file: the key absent
        for i in (3, 333):
            assert_row(ds[i], expected_row(columns, i))
        assert all(len(k) == 2 for k in reader_of(ds).cache._items)


def test_copied_row_groups_get_their_frame_index(tmp_path: Path, path: Path) -> None:
    out = tmp_path / "both.bale"
    bale.concat([path, path], out)
    with bale.open(out, cache_bytes=CACHE) as ds:
        info = FrameIndexInfo.from_extra(ds.index.extra)
        assert info is not None and info.groups == 6
        np.testing.assert_array_equal(ds[1000]["image"], make_columns()["image"][400])


def test_verify_checks_the_frame_index(path: Path) -> None:
    assert verify(path).ok
    with bale.open(path, cache_bytes=CACHE) as ds:
        info = FrameIndexInfo.from_extra(ds.index.extra)
    assert info is not None
    data = bytearray(path.read_bytes())
    data[info.offset + 8] ^= 0x01  # a frame's checksum record
    path.write_bytes(bytes(data))
    report = verify(path)
    assert not report.ok and "frame index checksum mismatch" in report.summary()


def test_pack_random_access_writes_frames(tmp_path: Path, columns: dict[str, Any]) -> None:
    source = tmp_path / "x.npy"
    np.save(source, np.repeat(columns["image"], 8, axis=0))  # 4,800 rows of 300 B: 1.4 MB
    out = tmp_path / "x.bale"
    bale.pack(str(source), str(out), random_access=True, progress=False, shuffle=False)
    with bale.open(out, cache_bytes=CACHE) as ds:
        assert ds.index.segment_bytes == 300 * (16384 // 300)  # whole 300-byte rows, ~16 KiB
        info = FrameIndexInfo.from_extra(ds.index.extra)
        assert info is not None and info.groups == ds.num_row_groups
        name = ds.schema.names[0]
        np.testing.assert_array_equal(ds[4000][name], columns["image"][500])


def test_random_access_frames_hold_whole_rows_of_the_widest_compressed_column(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(2)
    images = rng.integers(0, 255, (300, 64, 64, 3), dtype=np.uint8)  # 12,288 B rows
    columns = {"image": images, "label": np.arange(300), "jpeg": [b"\xff\xd8\xff" * 9000] * 300}
    target = tmp_path / "ra.bale"
    bale.write(target, columns, random_access=True)
    with bale.open(target, cache_bytes=CACHE) as ds:
        assert ds.index.segment_bytes == 12288  # one image per frame (16 KiB holds one)
        reader = reader_of(ds)
        for i in (0, 1, 77, 299):
            np.testing.assert_array_equal(ds[i]["image"], images[i])
        frames = [k for k in reader.cache._items if len(k) == 3 and k[1] == 0]
        assert len(frames) == 4  # each row decoded exactly its own frame
    bale.write(
        target,
        {"x": rng.standard_normal((100, 3000)).astype(np.float32)},
        random_access=True,
        overwrite=True,
    )
    with bale.open(target) as ds:
        assert ds.index.segment_bytes == 12000  # rows wider than 16 KiB / 2: one row a frame
    bale.write(target, {"text": ["a b c"] * 100}, random_access=True, overwrite=True)
    with bale.open(target) as ds:
        assert ds.index.segment_bytes == 16 << 10
    bale.write(target, columns, random_access=True, segment_bytes=5000, overwrite=True)
    with bale.open(target) as ds:
        assert ds.index.segment_bytes == 5000  # given: kept as it is


def test_random_access_leaves_files_whose_only_compressed_columns_are_small_unframed(
    tmp_path: Path,
) -> None:
    # JPEG bytes are stored as they are; the label's blocks are tiny: frames would gain nothing.
    target = tmp_path / "jpeg.bale"
    jpegs = [b"\xff\xd8\xff" + bytes(range(256)) * 180 for _ in range(64)]
    bale.write(target, {"jpeg": jpegs, "label": np.arange(64)}, random_access=True)
    with bale.open(target) as ds:
        assert ds.schema["jpeg"].codec["id"] == "none"
        assert (
            ds.index.segment_bytes == 1 << 30 and FrameIndexInfo.from_extra(ds.index.extra) is None
        )
        assert ds[5]["jpeg"] == jpegs[5]


def test_a_gather_over_many_blocks_reads_a_large_index_in_one_read(
    path: Path, columns: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frames_module, "WHOLE_REGION_BYTES", 0)  # single rows: block by block
    monkeypatch.setattr(frames_module, "GATHER_BLOCKS", 2)
    with bale.open(path, cache_bytes=CACHE) as ds:
        reader = reader_of(ds)
        info = FrameIndexInfo.from_extra(ds.index.extra)
        assert info is not None
        reads = count_reads(reader)
        idx = np.array([10, 250, 590])  # three row groups
        got = ds.take(idx, ["image"])["image"]
        np.testing.assert_array_equal(got, columns["image"][idx])
        assert reads[0] == info.length  # the whole index first, then only frames
        assert reader.frames._region is not None
