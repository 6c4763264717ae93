"""Blocks larger than the segment size: split into frames so no codec sees more than 2 GiB."""

from __future__ import annotations

import numpy as np

from bale._types import Buffer
from bale.codecs.base import Codec
from bale.errors import CorruptFileError
from bale.format.frames import FRAME_LENGTH, frame_spans


def encode_block(codec: Codec, raw: memoryview, segment_bytes: int) -> list[Buffer]:
    """The stored payload of a block, as buffers to write one after another.

    An empty block stores nothing. Up to ``segment_bytes`` of raw data the payload is one frame. Above it, raw bytes are cut
    into ``segment_bytes`` pieces and each frame is preceded by its stored length (u64 LE).
    """
    raw = raw.cast("B")
    if not raw:
        return []  # an empty block is stored as nothing, whatever the codec
    if len(raw) <= segment_bytes:
        return [codec.encode(raw)]
    parts: list[Buffer] = []
    for start in range(0, len(raw), segment_bytes):
        frame = codec.encode(raw[start : start + segment_bytes])
        parts.append(FRAME_LENGTH.pack(len(frame)))
        parts.append(frame)
    return parts


def decode_block(codec: Codec, payload: memoryview, raw_size: int, segment_bytes: int) -> Buffer:
    """Inverse of ``encode_block``. CorruptFileError (a ValueError) on framing that does not add
    up or a frame that does not decode; the caller adds the file, column and rows."""
    if raw_size == 0:
        if len(payload):
            raise CorruptFileError(f"an empty block must store 0 bytes, found {len(payload)}")
        return b""
    if raw_size <= segment_bytes:
        return codec.decode(payload, raw_size)
    out = np.empty(raw_size, np.uint8)  # every byte is written below: no zero-filling
    view = out.data
    count = -(-raw_size // segment_bytes)
    for k, (start, length) in enumerate(frame_spans(payload, count)):
        raw_start = k * segment_bytes
        size = min(segment_bytes, raw_size - raw_start)
        # Straight into the block's buffer where the codec's library can (no assembly copy).
        written = codec.decode_into(
            payload[start : start + length], view[raw_start : raw_start + size]
        )
        if written != size:
            raise CorruptFileError(f"frame decoded to {written} bytes, expected {size}")
    return view
