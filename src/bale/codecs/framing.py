"""Blocks larger than the segment size: split into frames so no codec sees more than 2 GiB."""

from __future__ import annotations

import struct

import numpy as np

from bale._types import Buffer
from bale.codecs.base import Codec
from bale.errors import CorruptFileError

_FRAME_LENGTH = struct.Struct("<Q")


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
        parts.append(_FRAME_LENGTH.pack(len(frame)))
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
    position = 0
    for start in range(0, raw_size, segment_bytes):
        size = min(segment_bytes, raw_size - start)
        if position + 8 > len(payload):
            raise CorruptFileError("segmented block ends before its next frame length")
        (length,) = _FRAME_LENGTH.unpack_from(payload, position)
        position += 8
        if position + length > len(payload):
            raise CorruptFileError("segmented block frame runs past the block's end")
        frame = codec.decode(payload[position : position + length], size)
        if len(frame) != size:
            raise CorruptFileError(f"frame decoded to {len(frame)} bytes, expected {size}")
        out[start : start + size] = np.frombuffer(frame, np.uint8)
        position += length
    if position != len(payload):
        raise CorruptFileError("segmented block has trailing bytes")
    return out.data
