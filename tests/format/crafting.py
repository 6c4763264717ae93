"""Crafted files for tests: a bale file's footer rewritten with every checksum recomputed, as a
hostile file or a buggy tool would leave it (not damage, which the checksums catch).

>>> craft_footer(path, lambda f: f.info.update(segment_bytes=0))
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bale.format.constants import TRAILER_SIZE
from bale.format.footer import BLOCK_DTYPE, GROUP_DTYPE
from bale.format.header import checksum

_TRAILER = struct.Struct("<QQQHHI8s")


@dataclass
class Footer:
    """A file's footer taken apart: JSON, tables and any bytes after the block table, plus the
    trailer's version fields. Edit any of them; ``write_footer`` puts them back."""

    info: dict[str, Any]
    groups: np.ndarray  # GROUP_DTYPE, writable
    blocks: np.ndarray  # BLOCK_DTYPE, shape (G, C), writable
    tail: bytes
    major: int
    minor: int
    reserved: int
    json_bytes: bytes | None = None  # when set, written instead of info (for malformed JSON)


def read_footer(data: bytes) -> tuple[int, Footer]:
    """(footer offset, footer) of a complete file's bytes."""
    offset, length, _, major, minor, reserved, _ = _TRAILER.unpack(data[-TRAILER_SIZE:])
    footer = data[offset : offset + length]
    json_length, _ = struct.unpack_from("<QQ", footer)
    info = json.loads(footer[16 : 16 + json_length])
    start = 16 + json_length
    start += -start % 8
    num_groups, num_columns = info["num_row_groups"], len(info["schema"])
    groups_end = start + num_groups * GROUP_DTYPE.itemsize
    blocks_end = groups_end + num_groups * num_columns * BLOCK_DTYPE.itemsize
    groups = np.frombuffer(footer[start:groups_end], GROUP_DTYPE).copy()
    blocks = np.frombuffer(footer[groups_end:blocks_end], BLOCK_DTYPE).copy()
    return offset, Footer(
        info,
        groups,
        blocks.reshape(num_groups, num_columns),
        footer[blocks_end:],
        major,
        minor,
        reserved,
    )


def pack(footer: Footer) -> bytes:
    """Footer bytes with the JSON's checksum recomputed."""
    body = (
        footer.json_bytes
        if footer.json_bytes is not None
        else json.dumps(footer.info, separators=(",", ":"), ensure_ascii=False).encode()
    )
    head = struct.pack("<QQ", len(body), checksum(body)) + body
    head += bytes(-len(head) % 8)
    return head + footer.groups.tobytes() + footer.blocks.tobytes() + footer.tail


def write_footer(path: Path, offset: int, footer: Footer) -> None:
    """Replace the footer of ``path`` (the data before ``offset`` kept) and its trailer, with
    the trailer's checksum recomputed."""
    data = path.read_bytes()[:offset]
    body = pack(footer)
    trailer = _TRAILER.pack(
        offset,
        len(body),
        checksum(body),
        footer.major,
        footer.minor,
        footer.reserved,
        b"BALE.END",
    )
    path.write_bytes(data + body + trailer)


def craft_footer(path: Path, change: Callable[[Footer], object]) -> None:
    """Rewrite ``path``'s footer after ``change`` edits it, every checksum recomputed."""
    offset, footer = read_footer(path.read_bytes())
    change(footer)
    write_footer(path, offset, footer)


def rewrite_header_json(path: Path, change: Callable[[dict[str, Any]], object]) -> None:
    """Rewrite the header JSON in place (its checksum recomputed). The new JSON must fit the
    header's padding: it is padded with spaces to the old length when shorter."""
    data = bytearray(path.read_bytes())
    length, _ = struct.unpack_from("<IQ", data, 12)
    info = json.loads(bytes(data[24 : 24 + length]))
    change(info)
    write_header_json(path, json.dumps(info, separators=(",", ":"), ensure_ascii=False).encode())


def header_json_text(path: Path) -> bytes:
    data = path.read_bytes()
    (length,) = struct.unpack_from("<I", data, 12)
    return data[24 : 24 + length]


def write_header_json(path: Path, body: bytes) -> None:
    """Put ``body`` (any bytes) in place of the header JSON, its checksum recomputed; it must fit
    the header's padding (the row groups stay where they are)."""
    data = bytearray(path.read_bytes())
    length, _ = struct.unpack_from("<IQ", data, 12)
    end = 24 + length
    room = end + (-end % 64) - 24
    if len(body) > room:
        raise ValueError(f"header JSON of {len(body)} bytes does not fit the {room} bytes there")
    body = body.ljust(length)  # JSON allows trailing whitespace
    data[24 : 24 + len(body)] = body
    struct.pack_into("<IQ", data, 12, len(body), checksum(body))
    path.write_bytes(bytes(data))


def set_header_version(path: Path, major: int, minor: int) -> None:
    data = bytearray(path.read_bytes())
    struct.pack_into("<HH", data, 8, major, minor)
    path.write_bytes(bytes(data))
