"""Rows read from the frames that hold them: partial reads of segmented blocks, checked frame by
frame against the file's frame index (``bale.format.frames``).

A random row of a segmented block costs one read of the frames holding it and their decoding,
not the whole block. Decoded frames go to the block cache, so neighbouring rows are served from
memory. Whenever the index cannot be used — absent (a 1.0 file), malformed, a frame whose bytes
do not match their checksum, or rows that need most of a block's frames — the caller reads the
whole block instead, which checks the block's own checksum: damaged bytes are reported, never
returned, whichever part of the file is damaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bale._core.blocks import BlockCache, normalized_bool
from bale._core.forksafe import ForkSafeLock
from bale._core.rowmap import RowGroupMap
from bale._types import Buffer
from bale.codecs import Codec
from bale.errors import BaleError
from bale.format.footer import FileIndex
from bale.format.frames import FRAME_DTYPE, FrameLayout, frame_layout, frame_records
from bale.format.header import checksum
from bale.format.schema import Array, Column
from bale.io.source import ByteSource

#: A frame index up to this size is read whole (and checked) at the first partial read: one read
#: the size of a frame, and for a remote file usually inside the tail fetched at open. A larger
#: one is read block by block as rows need it (records kept in the block cache), so a cold row
#: reads its block's records and its frames, never a whole large index.
WHOLE_REGION_BYTES = 64 << 10
#: A gather that reads frames of at least this many blocks reads an index of up to
#: GATHER_REGION_BYTES whole first (one read instead of a read per block).
GATHER_BLOCKS = 8
GATHER_REGION_BYTES = 16 << 20
#: Block-cache keys (third part) of a bytes block's row offsets and of a block's frame records
#: read on their own; frames are keyed by their number, from 0.
OFFSETS_KEY = -1
RECORDS_KEY = -2
#: Rows needing more than this share of a block's frames read the whole block (it is cached).
MAX_FRAME_SHARE = 0.5


class FrameReader:
    """Partial reads of one open file's segmented blocks (internal to ``FileReader``)."""

    def __init__(
        self,
        source: ByteSource,
        index: FileIndex,
        codecs: Sequence[Codec],
        cache: BlockCache,
        groups: RowGroupMap,
        *,
        verify: bool,
    ) -> None:
        self.source = source
        self.index = index
        self.codecs = codecs
        self.cache = cache
        self.groups = groups
        self.verify = verify
        self.segment_bytes = index.segment_bytes
        self._lock = ForkSafeLock()
        self._loaded = False
        self._layout: FrameLayout | None = None
        self._region: np.ndarray | None = None

    # -- the index ------------------------------------------------------------------------------

    def records(self, group: int, position: int) -> np.ndarray | None:
        """The frame records of one block, or None when it has none usable."""
        if not self._loaded:
            self._load()
        layout = self._layout
        if layout is None or layout.counts[group, position] == 0:
            return None
        start, count = int(layout.starts[group, position]), int(layout.counts[group, position])
        if self._region is not None:
            return self._region[start : start + count]
        key = (group, position, RECORDS_KEY)
        found = self.cache.get(key)
        if found is None:
            size = FRAME_DTYPE.itemsize
            try:
                raw = self.source.read(layout.info.offset + start * size, count * size)
            except BaleError:
                return None
            found = np.frombuffer(raw, FRAME_DTYPE)
            self.cache.put(key, found)
        assert isinstance(found, np.ndarray)
        return found

    def problem(self) -> str | None:
        """What is wrong with the file's frame index as a whole (``bale verify``), or None: a
        key that does not parse, a region that does not fit the file or fails its checksum."""
        layout = frame_layout(self.index, self.source.size())
        if not isinstance(layout, FrameLayout):
            return layout
        info = layout.info
        if checksum(self.source.read(info.offset, info.length)) != info.checksum:
            return "frame index checksum mismatch"
        return None

    def block_problem(self, group: int, position: int, payload: Buffer) -> str | None:
        """Whether a block's frame records describe its stored bytes (``bale verify``)."""
        records = self.records(group, position)
        if records is None:
            return None
        block = self.index.blocks[group, position]
        try:
            actual = frame_records([payload], int(block["raw_size"]), self.segment_bytes)
        except ValueError as exc:
            return f"the block's frames do not add up: {exc}"
        if not np.array_equal(actual, records):
            return "the frame index does not match the block's frames"
        return None

    def expect_blocks(self, count: int) -> None:
        """A gather is about to read frames of ``count`` blocks: when that is many, read an
        index of up to GATHER_REGION_BYTES whole now, in one read, rather than each block's
        records by a read of its own (cold, those small reads cost a disk seek each)."""
        if count < GATHER_BLOCKS or self._region is not None:
            return
        if not self._loaded:
            self._load()
        layout = self._layout
        if layout is not None and layout.info.length <= GATHER_REGION_BYTES:
            with self._lock:
                if self._region is None and self._layout is not None:
                    self._read_region(layout)

    def _load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            layout = frame_layout(self.index, self.source.size())
            # An index that does not describe this file is not used: whole blocks, as without.
            if isinstance(layout, FrameLayout):
                self._layout = layout
                if layout.info.length <= WHOLE_REGION_BYTES:
                    self._read_region(layout)
            self._loaded = True

    def _read_region(self, layout: FrameLayout) -> None:
        info = layout.info
        try:
            region = bytes(self.source.read(info.offset, info.length))
        except BaleError:
            return  # block by block, then (each read reports its own trouble)
        if self.verify and checksum(region) != info.checksum:
            self._layout = None  # a damaged index is not used: whole blocks, as without one
        else:
            self._region = np.frombuffer(region, FRAME_DTYPE)

    # -- rows -----------------------------------------------------------------------------------

    def array_rows(
        self, group: int, position: int, column: Column, local: Sequence[int]
    ) -> np.ndarray | None:
        """Rows ``local`` of an array block as a new array, or None (read the whole block)."""
        column_type = column.type
        assert isinstance(column_type, Array)
        row_bytes = column_type.row_nbytes
        n = len(local)
        out = np.empty((n, *column_type.shape), column_type.numpy_dtype)
        if row_bytes == 0 or n == 0:
            return out
        starts = [i * row_bytes for i in local]
        pieces = self._ranges(group, position, starts, [a + row_bytes for a in starts])
        if pieces is None:
            return None
        flat = out.reshape(n, -1).view(np.uint8)
        for i, piece in enumerate(pieces):
            flat[i] = piece
        return normalized_bool(out)

    def one_row(self, group: int, position: int, column: Column, local: int) -> Any:
        """Row ``local`` of a block: for an array column a read-only array (a view of the cached
        frame when the row lies in one frame; a NumPy scalar for a scalar column), else bytes;
        None to read the whole block."""
        column_type = column.type
        if not isinstance(column_type, Array):
            rows = self.var_rows(group, position, [local])
            return None if rows is None else rows[0]
        row_bytes = column_type.row_nbytes
        if row_bytes == 0:
            return None
        start = local * row_bytes
        pieces = self._ranges(group, position, [start], [start + row_bytes])
        if pieces is None:
            return None
        value = normalized_bool(
            np.frombuffer(pieces[0], column_type.numpy_dtype).reshape(column_type.shape)
        )
        if not column_type.shape:
            return value[()]
        value.flags.writeable = False  # a view of the cache, or a row joined from two frames
        return value

    def var_rows(self, group: int, position: int, local: Sequence[int]) -> list[bytes] | None:
        """Rows ``local`` of a bytes/string block as bytes, or None (read the whole block)."""
        offsets = self._var_offsets(group, position)
        if offsets is None:
            return None
        head = 8 * (len(offsets) - 1)
        starts = [head + int(offsets[i]) for i in local]
        stops = [head + int(offsets[i + 1]) for i in local]
        pieces = self._ranges(group, position, starts, stops)
        if pieces is None:
            return None
        return [bytes(p) for p in pieces]

    def _var_offsets(self, group: int, position: int) -> np.ndarray | None:
        key = (group, position, OFFSETS_KEY)
        cached = self.cache.get(key)
        if cached is not None:
            assert isinstance(cached, np.ndarray)
            return cached
        num_rows = int(self.groups.counts[group])
        pieces = self._ranges(group, position, [0], [8 * num_rows])
        if pieces is None:
            return None
        lengths = np.frombuffer(pieces[0], "<u8")
        raw_size = int(self.index.blocks[group, position]["raw_size"])
        if num_rows and int(lengths.max()) > raw_size:
            return None  # a damaged length (read with verify=False): the whole block reports it
        offsets = np.zeros(num_rows + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if 8 * num_rows + int(offsets[-1]) != raw_size:
            return None  # lengths that do not add up: the whole block's read reports it
        offsets.flags.writeable = False
        self.cache.put(key, offsets)
        return offsets

    def _ranges(
        self, group: int, position: int, starts: Sequence[int], stops: Sequence[int]
    ) -> list[memoryview] | None:
        """The raw bytes [start, stop) of a block for each pair, from its frames; None when the
        frames cannot be used or most of them would be needed."""
        records = self.records(group, position)
        if records is None:
            return None
        segment = self.segment_bytes
        # An empty range needs no frame (it may start where the block ends).
        spans = [
            (a, b, a // segment, (b - 1) // segment) if b > a else (a, b, 0, -1)
            for a, b in zip(starts, stops, strict=True)
        ]
        needed = sorted({k for _, _, first, last in spans for k in range(first, last + 1)})
        if len(needed) > max(1, MAX_FRAME_SHARE * len(records)):
            return None
        frames = self._frames(group, position, records, needed)
        if frames is None:
            return None
        out = []
        for start, stop, first, last in spans:
            if last < first:
                out.append(memoryview(b""))
                continue
            if first == last:
                base = first * segment
                out.append(frames[first].data[start - base : stop - base])
                continue
            joined = bytearray()
            for k in range(first, last + 1):
                base = k * segment
                joined += frames[k].data[max(start, base) - base : min(stop, base + segment) - base]
            out.append(memoryview(joined))
        return out

    def _frames(
        self, group: int, position: int, records: np.ndarray, needed: list[int]
    ) -> dict[int, np.ndarray] | None:
        """Decoded frames ``needed`` (sorted) of a block: from the cache, or read in runs of
        neighbours with one read each, checked and decoded; None if any is damaged or does not
        decode."""
        frames: dict[int, np.ndarray] = {}
        missing = []
        cache_get = self.cache.get
        for k in needed:
            cached = cache_get((group, position, k))
            if cached is None:
                missing.append(k)
            else:
                assert isinstance(cached, np.ndarray)
                frames[k] = cached
        if not missing:
            return frames
        block = self.index.blocks[group, position]
        block_offset = int(block["offset"])
        stored_size, raw_size = int(block["stored_size"]), int(block["raw_size"])
        codec = self.codecs[int(block["codec"])]
        segment = self.segment_bytes
        offsets, checksums = records["offset"], records["checksum"]
        count = len(records)
        # A frame ends where the next one's length prefix starts (the last: at the block's end).
        ends = [int(offsets[k + 1]) - 8 if k + 1 < count else stored_size for k in missing]
        end_of = dict(zip(missing, ends, strict=True))

        run_starts = [0] + [j for j in range(1, len(missing)) if missing[j] != missing[j - 1] + 1]
        for lo_at, hi_at in zip(run_starts, [*run_starts[1:], len(missing)], strict=True):
            lo, hi = missing[lo_at], missing[hi_at - 1]
            start, stop = int(offsets[lo]), end_of[hi]
            if not 0 <= start <= stop <= stored_size:
                return None
            try:
                span = memoryview(self.source.read(block_offset + start, stop - start))
            except BaleError:
                return None
            for k in range(lo, hi + 1):
                a, b = int(offsets[k]) - start, end_of[k] - start
                if not 0 <= a <= b <= len(span):
                    return None
                stored = span[a:b]
                if self.verify and checksum(stored) != int(checksums[k]):
                    return None
                size = min(segment, raw_size - k * segment)
                try:
                    decoded = codec.decode(stored, size)
                except (BaleError, ValueError):
                    return None
                if len(decoded) != size:
                    return None
                frame = np.frombuffer(decoded, np.uint8)
                frame.flags.writeable = False
                self.cache.put((group, position, k), frame)
                frames[k] = frame
        return frames
