"""Property tests of partial decoding (format 1.1's frame index): whatever the schema, codec,
frame size, row-group size and rows asked for, rows read from the frames that hold them equal a
full decode and the values written; and a flipped byte inside a frame is reported, never
returned as data (with ``verify=True``), or at worst returned as data (``verify=False``), never
a crash outside bale's exception tree."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import bale
from bale._core.dataset import reader_of
from bale.errors import BaleError, CorruptFileError
from bale.format.dtypes import DTYPES_BY_NAME
from bale.format.frames import FrameIndexInfo
from bale.ops.verify import verify

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

DTYPE_NAMES = sorted(DTYPES_BY_NAME)
CODECS = [
    "none",
    "lz4",
    "zstd:1",
    "zstd:5",
    "blosc2",
    "blosc2:lz4:1:bitshuffle",
    "blosc2:zstd:1:shuffle+bytedelta",
    "blosc2:blosclz:5:noshuffle",
    "blosc2:zlib:1:bytedelta",
    "blosc2:lz4hc:3:bitshuffle+bytedelta",
]
#: Small frames, so that blocks of a few kilobytes have many.
SEGMENTS = st.one_of(st.sampled_from([64, 100, 128, 256, 1000, 4096, 8192]), st.integers(64, 8192))
#: Zero (nothing kept: every row decodes its frames again), small, and the default.
CACHES = [0, 2048, 64 << 20]


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: str  # "array", "bytes" or "string"
    codec: str
    dtype: str = ""
    shape: tuple[int, ...] = ()

    @property
    def column_type(self) -> Any:
        if self.kind == "array":
            return bale.Array(self.dtype, self.shape)
        return bale.Bytes() if self.kind == "bytes" else bale.String()


@dataclass(frozen=True)
class FramedFile:
    specs: list[ColumnSpec]
    data: dict[str, Any]
    row_group_rows: int
    segment_bytes: int
    appended_at: int | None  # a second Writer session (mode "a") from this row on

    @property
    def rows(self) -> int:
        return len(next(iter(self.data.values())))


@st.composite
def column_specs(draw: st.DrawFn, name: str) -> ColumnSpec:
    kind = draw(st.sampled_from(["array", "array", "bytes", "string"]))
    codec = draw(st.sampled_from(CODECS))
    if kind != "array":
        return ColumnSpec(name, kind, codec)
    dtype = draw(st.sampled_from(DTYPE_NAMES))
    shape = tuple(draw(st.lists(st.integers(0, 6), max_size=3)))
    return ColumnSpec(name, kind, codec, dtype, shape)


def random_values(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Arbitrary bit patterns of the dtype (NaNs of every payload included), bool kept 0/1."""
    if name == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    dt = DTYPES_BY_NAME[name]
    count = int(np.prod(shape)) * dt.itemsize
    return np.frombuffer(rng.bytes(count), dtype=dt).reshape(shape).copy()


@st.composite
def framed_files(
    draw: st.DrawFn, min_rows: int = 0, segments: st.SearchStrategy[int] = SEGMENTS
) -> FramedFile:
    specs = [draw(column_specs(f"c{i}")) for i in range(draw(st.integers(1, 3)))]
    rows = draw(st.integers(min_rows, 160))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    data: dict[str, Any] = {}
    for spec in specs:
        if spec.kind == "array":
            data[spec.name] = random_values(rng, spec.dtype, (rows, *spec.shape))
            continue
        # Lengths from empty to several frames long.
        longest = draw(st.sampled_from([0, 8, 40, 300, 3000]))
        lengths = rng.integers(0, longest + 1, rows)
        if spec.kind == "bytes":
            data[spec.name] = [rng.bytes(int(k)) for k in lengths]
        else:
            pool = draw(st.lists(st.text(max_size=12), min_size=1, max_size=6))
            data[spec.name] = [pool[int(k) % len(pool)] + "\u00e9" * (int(k) // 2) for k in lengths]
    appended_at = draw(st.none() | st.integers(0, rows))
    return FramedFile(
        specs, data, draw(st.integers(1, 80)), draw(segments), appended_at if rows else None
    )


def write(path: str, f: FramedFile) -> None:
    schema = {s.name: s.column_type for s in f.specs}
    codecs = {s.name: s.codec for s in f.specs}
    split = f.rows if f.appended_at is None else f.appended_at
    with bale.Writer(
        path, schema, codecs=codecs, row_group_rows=f.row_group_rows, segment_bytes=f.segment_bytes
    ) as writer:
        writer.write({s.name: f.data[s.name][:split] for s in f.specs})
    if f.appended_at is not None:
        with bale.Writer(path, mode="a", row_group_rows=max(1, f.row_group_rows // 2 + 1)) as w:
            w.write({s.name: f.data[s.name][split:] for s in f.specs})


def group_bounds(ds: bale.Dataset) -> list[tuple[int, int]]:
    edges = [0, *itertools.accumulate(ds.row_group_sizes)]
    return list(itertools.pairwise(edges))


def assert_same(spec: ColumnSpec, got: Any, expected: Any, where: Any = "") -> None:
    if spec.kind == "array":
        got = np.asarray(got)
        assert got.dtype == expected.dtype, where
        assert got.shape == expected.shape, where
        # Raw bytes: exact for NaN payloads, -0.0 and every float8 pattern.
        assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(expected).tobytes(), (
            where
        )
    else:
        assert got == expected, where
        kind = bytes if spec.kind == "bytes" else str
        assert all(type(v) is kind for v in got), where


def subset(spec: ColumnSpec, values: Any, index: Any) -> Any:
    if spec.kind == "array":
        return values[index]
    return [values[i] for i in np.arange(len(values))[index]]


@st.composite
def gathers(draw: st.DrawFn, rows: int) -> np.ndarray:
    """Row numbers: sorted, unsorted or reversed, with duplicates and negative numbers."""
    picked = draw(st.lists(st.integers(-rows, rows - 1), max_size=40))
    order = draw(st.sampled_from(["as drawn", "sorted", "reversed", "repeated"]))
    if order == "sorted":
        picked.sort(key=lambda i: i % rows)
    elif order == "reversed":
        picked.sort(key=lambda i: -(i % rows))
    elif order == "repeated":
        picked = picked[:5] * 3
    return np.array(picked, dtype=draw(st.sampled_from([np.int64, np.int32, np.intp])))


def one_row(spec: ColumnSpec, value: Any) -> Any:
    """A single row's value as a batch of one row, to compare with ``subset(.., [i])``."""
    return np.asarray(value)[None] if spec.kind == "array" else [value]


@SETTINGS
@given(f=framed_files(), picks=st.data())
def test_partial_reads_equal_a_full_decode(f: FramedFile, picks: st.DataObject) -> None:
    n = f.rows
    by_name = {s.name: s for s in f.specs}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "p.bale")
        write(path, f)
        with bale.open(path, cache_bytes=0) as ds:
            assert len(ds) == n
            blocks = ds.index.blocks
            if blocks.size and int(blocks["raw_size"].max()) > f.segment_bytes:
                info = FrameIndexInfo.from_extra(ds.index.extra)
                assert info is not None and info.groups == ds.num_row_groups
            full = ds.read()
        for spec in f.specs:
            assert_same(spec, full[spec.name], f.data[spec.name], "read()")
        if n == 0:
            return
        singles = picks.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=6), "rows")
        chosen = picks.draw(st.permutations(list(by_name)), "order")
        chosen = chosen[: picks.draw(st.integers(1, len(chosen)), "columns")]
        idx = picks.draw(gathers(n), "gather")
        mask = np.array(picks.draw(st.lists(st.booleans(), min_size=n, max_size=n), "mask"))
        for cache_bytes, checked in itertools.product(CACHES, [True, False]):
            config = f"cache_bytes={cache_bytes} verify={checked}"
            with bale.open(path, cache_bytes=cache_bytes, verify=checked) as ds:
                for i in singles:
                    row = ds[i]
                    some = ds.row(i, chosen)
                    assert list(row) == list(by_name) and list(some) == chosen
                    for name, spec in by_name.items():
                        want = subset(spec, full[name], [i])
                        assert_same(spec, one_row(spec, row[name]), want, (config, i, name))
                        if name in some:
                            got = one_row(spec, some[name])
                            assert_same(spec, got, want, (config, "row(i, cols)", i, name))
            with bale.open(path, cache_bytes=cache_bytes, verify=checked) as ds:
                taken = ds.take(idx)
                part = ds.take(idx, chosen)
                views = {name: ds[name][idx] for name in by_name}
                masked = ds[mask]
            assert list(taken) == list(by_name) and list(part) == chosen
            for name, spec in by_name.items():
                want = subset(spec, full[name], idx)
                assert_same(spec, want, subset(spec, f.data[name], idx))
                assert_same(spec, taken[name], want, (config, "take", name))
                assert_same(spec, views[name], want, (config, "ds[col][idx]", name))
                if name in part:
                    assert_same(spec, part[name], want, (config, "take(idx, cols)", name))
                want = subset(spec, full[name], mask)
                assert_same(spec, masked[name], want, (config, "mask", name))


def rows_as_batch(spec: ColumnSpec, values: list[Any]) -> Any:
    if spec.kind != "array":
        return values
    return np.stack([np.asarray(v) for v in values])


#: Ways to read rows ``rows`` of one column, whose row group spans rows ``span``.
READS: dict[str, Callable[[bale.Dataset, str, list[int], tuple[int, int]], Any]] = {
    "ds.row": lambda ds, name, rows, span: [ds.row(i, [name])[name] for i in rows],
    "ds.take": lambda ds, name, rows, span: ds.take(np.arange(*span), [name])[name],
    "ds[col][idx]": lambda ds, name, rows, span: ds[name][np.array(rows)],
    "ds.read": lambda ds, name, rows, span: ds.read(slice(*span), [name])[name],
}


@SETTINGS
@given(f=framed_files(min_rows=8, segments=st.integers(64, 512)), picks=st.data())
def test_a_flipped_byte_in_a_frame_is_reported_never_returned(
    f: FramedFile, picks: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "p.bale")
        write(path, f)
        with bale.open(path, cache_bytes=0) as ds:
            index = ds.index
            bounds = group_bounds(ds)
            framed = [
                (g, p)
                for g, p in itertools.product(range(ds.num_row_groups), range(len(f.specs)))
                if reader_of(ds).frames.records(g, p) is not None
            ]
            assume(framed)
            group, position = picks.draw(st.sampled_from(framed), "block")
            records = reader_of(ds).frames.records(group, position)
            assert records is not None
            block = index.blocks[group, position]
        # A byte inside one frame's stored bytes (not its length field), found via the footer.
        stored = int(block["stored_size"])
        k = picks.draw(st.integers(0, len(records) - 1), "frame")
        first = int(records[k]["offset"])
        end = int(records[k + 1]["offset"]) - 8 if k + 1 < len(records) else stored
        at = int(block["offset"]) + picks.draw(st.integers(first, end - 1), "byte")
        data = bytearray(Path(path).read_bytes())
        data[at] ^= picks.draw(st.integers(1, 255), "xor")
        Path(path).write_bytes(bytes(data))

        spec = f.specs[position]
        span = bounds[group]
        rows = picks.draw(
            st.lists(st.integers(span[0], span[1] - 1), min_size=1, max_size=4), "rows"
        )
        report = verify(path)
        assert not report.ok
        assert any(isinstance(p, CorruptFileError) for p in report.problems)
        for cache_bytes, checked in itertools.product([0, 64 << 20], [True, False]):
            for how, read in READS.items():
                where = (how, f"cache_bytes={cache_bytes}", f"verify={checked}", spec.name)
                with bale.open(path, cache_bytes=cache_bytes, verify=checked) as ds:
                    try:
                        got = read(ds, spec.name, rows, span)
                    except BaleError:
                        continue
                    others = [s.name for s in f.specs if s is not spec]
                    if others:  # the damage is local to its block
                        intact = ds.read(slice(*span), others)
                if how == "ds.row":
                    got = rows_as_batch(spec, got)
                asked = rows if how in ("ds.row", "ds[col][idx]") else list(range(*span))
                if checked:
                    assert how != "ds.read", f"{where}: a whole block read passed its checksum"
                    assert_same(spec, got, subset(spec, f.data[spec.name], asked), where)
                else:  # any values, but as many as asked for, of the column's type
                    assert len(got) == len(asked), where
                    if spec.kind == "array":
                        assert got.shape[1:] == spec.shape, where
                        assert got.dtype == DTYPES_BY_NAME[spec.dtype], where
                for name in others:
                    other = next(s for s in f.specs if s.name == name)
                    want = subset(other, f.data[name], slice(*span))
                    assert_same(other, intact[name], want, (*where, name))


# -- bugs these properties found, each reduced to a minimal reproduction -------------------------------------------


def test_empty_last_row_of_a_block_of_whole_frames(tmp_path: Path) -> None:
    path = tmp_path / "empty_last.bale"
    # Row lengths (32 bytes) + 96 bytes of values = 128 raw bytes: exactly two 64-byte frames.
    values = [b"a" * 32, b"b" * 32, b"c" * 32, b""]
    bale.write(path, {"b": values}, segment_bytes=64, row_group_rows=4, codecs={"b": "none"})
    with bale.open(path, cache_bytes=0) as ds:
        assert ds.read()["b"] == values  # whole blocks are fine
        assert ds[3]["b"] == b""  # IndexError: index 2 is out of bounds for axis 0 with size 2


def test_verify_false_damaged_strings_raise_bale_errors(tmp_path: Path) -> None:
    path = tmp_path / "strings.bale"
    bale.write(path, {"s": ["abc", "def"]}, codecs={"s": "none"})
    with bale.open(path) as ds:
        offset = int(ds.index.blocks[0, 0]["offset"])
    data = bytearray(path.read_bytes())
    data[offset + 16] = 0xFF  # after two 8-byte row lengths: the "a" of "abc"
    path.write_bytes(bytes(data))
    with bale.open(path, verify=False) as ds:
        try:
            value = ds[0]["s"]
        except BaleError:
            return
    assert isinstance(value, str)


@pytest.mark.parametrize("segment_bytes", [None, 256], ids=["block", "frames"])
def test_verify_false_damaged_blosc2_header_raises_a_bale_error(
    tmp_path: Path, segment_bytes: int | None
) -> None:
    path = tmp_path / "blosc2.bale"
    values = (np.arange(1024) % 251).astype(np.uint8).reshape(256, 4)
    options = {} if segment_bytes is None else {"segment_bytes": segment_bytes}
    bale.write(path, {"x": values}, codecs={"x": "blosc2"}, row_group_rows=256, **options)
    with bale.open(path) as ds:
        # The chunk header's nbytes (bytes 4..7) of the block, or of its first frame.
        at = int(ds.index.blocks[0, 0]["offset"]) + (0 if segment_bytes is None else 8) + 7
    data = bytearray(path.read_bytes())
    data[at] ^= 0x80
    path.write_bytes(bytes(data))
    with bale.open(path, verify=False, cache_bytes=0) as ds, pytest.raises(BaleError):
        ds[1]
