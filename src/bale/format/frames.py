"""The frame index (format 1.1): where each frame of a segmented block starts, and its checksum.

A block whose raw size exceeds the file's ``segment_bytes`` is stored as frames (``u64 length``
then the frame, repeated), one per ``segment_bytes`` of raw data. The frame index lets a reader
decode only the frames that hold the rows it wants, and check them without reading the rest of
the block. It is a region of the file between the last row group and the footer, named by the
footer JSON key ``frame_index`` (a 1.0 reader ignores both and reads whole blocks):

``{"offset": o, "length": 16 * F, "groups": G, "checksum": xxh3(region)}``

The region holds one 16-byte record per frame, ``offset u64`` (of the frame's first byte, after
its length field, relative to the block's start) and ``checksum u64`` (XXH3-64 of the frame's
stored bytes), for the segmented blocks of the first ``G`` row groups in block-table order
(group-major, then column). A block with raw size ``r > segment_bytes`` has
``ceil(r / segment_bytes)`` frames; other blocks have no records. Groups after ``G`` have no
records either and are read whole (bale always writes ``G`` equal to the group count; only a
1.0 writer appending to a 1.1 file left it lower, and such a file's versions disagree: see
the bale repository's docs/FORMAT.md, Frame index).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bale._types import Buffer
from bale.errors import CorruptFileError
from bale.format.footer import FileIndex
from bale.format.header import checksum

#: One record per frame: where it starts in its block (after its length field), its checksum.
FRAME_DTYPE = np.dtype([("offset", "<u8"), ("checksum", "<u8")])
#: The footer JSON key that names the region.
FRAME_INDEX_KEY = "frame_index"
#: The u64 length field before each frame of a segmented block.
FRAME_LENGTH = struct.Struct("<Q")


def frame_counts(raw_sizes: np.ndarray, segment_bytes: int) -> np.ndarray:
    """Records per block: ``ceil(raw / segment_bytes)`` for a segmented block, 0 otherwise."""
    raw = raw_sizes.astype(np.int64)
    return np.where(raw > segment_bytes, -(-raw // segment_bytes), 0)


def frame_spans(payload: memoryview, count: int) -> list[tuple[int, int]]:
    """(start, length) of each of the ``count`` frames of a segmented block's stored bytes.
    CorruptFileError (the caller adds the file, column and rows) if the framing does not add up."""
    spans = []
    position = 0
    for _ in range(count):
        if position + 8 > len(payload):
            raise CorruptFileError("segmented block ends before its next frame length")
        (length,) = FRAME_LENGTH.unpack_from(payload, position)
        start = position + 8
        if start + length > len(payload):
            raise CorruptFileError("segmented block frame runs past the block's end")
        spans.append((start, length))
        position = start + length
    if position != len(payload):
        raise CorruptFileError("segmented block has trailing bytes")
    return spans


def frame_records(parts: Sequence[Buffer], raw_size: int, segment_bytes: int) -> np.ndarray:
    """The records of one block from its stored bytes (as the buffers written one after another);
    none unless the block is segmented. CorruptFileError if the framing does not add up."""
    if raw_size <= segment_bytes:
        return np.zeros(0, FRAME_DTYPE)
    count = -(-raw_size // segment_bytes)
    views = [memoryview(p).cast("B") for p in parts]
    lengths, frames = views[::2], views[1::2]
    as_encoded = len(views) == 2 * count and all(
        len(n) == 8 and FRAME_LENGTH.unpack(n)[0] == len(f)
        for n, f in zip(lengths, frames, strict=True)
    )
    if not as_encoded:  # e.g. a copied block, one buffer: walk its bytes
        payload = views[0] if len(views) == 1 else memoryview(b"".join(views))
        frames = [payload[start : start + n] for start, n in frame_spans(payload, count)]
    records = np.zeros(count, FRAME_DTYPE)
    ends = np.cumsum([8 + len(f) for f in frames])
    records["offset"] = ends - [len(f) for f in frames]
    records["checksum"] = [checksum(f) for f in frames]
    return records


@dataclass(frozen=True)
class FrameIndexInfo:
    """The footer's ``frame_index`` entry, checked for shape (not yet against the file)."""

    offset: int
    length: int
    groups: int
    checksum: int

    def to_json(self) -> dict[str, int]:
        return {
            "offset": self.offset,
            "length": self.length,
            "groups": self.groups,
            "checksum": self.checksum,
        }

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> FrameIndexInfo | None:
        """The entry of a footer's optional keys; None when absent or malformed (a reader then
        reads whole blocks, as a 1.0 reader does)."""
        entry = extra.get(FRAME_INDEX_KEY)
        if not isinstance(entry, Mapping):
            return None
        values = [entry.get(k) for k in ("offset", "length", "groups", "checksum")]
        # JSON integers only (not 5.0, 1e400 or true), each a u64 as the format stores them.
        if not all(type(v) is int and 0 <= v < 1 << 64 for v in values):
            return None
        info = cls(*(int(v) for v in values if v is not None))
        if info.length % FRAME_DTYPE.itemsize:
            return None
        return info


@dataclass(frozen=True)
class FrameLayout:
    """A file's frame index laid over its block table."""

    info: FrameIndexInfo
    starts: np.ndarray  # (G, C): each block's first record
    counts: np.ndarray  # (G, C): its records (0 when unsegmented, or in a group >= info.groups)


def frame_layout(index: FileIndex, end: int) -> FrameLayout | str | None:
    """The footer's frame index checked against the block table: None when the file has none,
    a sentence saying what is wrong when it does not describe the file (a reader then reads
    whole blocks, as without it), the layout otherwise. The region must end by ``end``."""
    if FRAME_INDEX_KEY not in index.extra:
        return None
    info = FrameIndexInfo.from_extra(index.extra)
    if info is None or info.groups > len(index.groups):
        return "the footer's frame_index entry is malformed"
    counts = frame_counts(index.blocks["raw_size"], index.segment_bytes)
    counts[info.groups :] = 0
    expected = int(counts.sum()) * FRAME_DTYPE.itemsize
    if info.length != expected:
        return (
            f"the frame index holds {info.length} bytes, expected {expected} for the file's "
            "segmented blocks"
        )
    if info.offset + info.length > end:
        return "the frame index runs past the end of the file's data"
    starts = np.concatenate([[0], np.cumsum(counts.reshape(-1))[:-1]]).reshape(counts.shape)
    return FrameLayout(info, starts.astype(np.int64), counts.astype(np.int64))


def pack_region(records: Sequence[np.ndarray]) -> bytes:
    """The region's bytes: the records of every block, in block-table order."""
    if not records:
        return b""
    return np.concatenate([np.asarray(r, FRAME_DTYPE) for r in records]).tobytes()
