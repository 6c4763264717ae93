"""Finding a file's parts through a byte source: trailer -> footer -> index, header, group scan."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bale.codecs import codec_from_config
from bale.codecs.framing import decode_block
from bale.errors import BaleError, CorruptFileError, TruncatedFileError
from bale.format.constants import (
    ALIGNMENT,
    GROUP_MAGIC,
    GROUP_PREFIX_SIZE,
    HEADER_PREFIX_SIZE,
    TRAILER_SIZE,
)
from bale.format.footer import BlockRecord, FileIndex, unpack_footer
from bale.format.header import (
    checksum,
    padding,
    parse_json_checked,
    unpack_group_prefix,
    unpack_header_prefix,
    unpack_trailer,
)
from bale.format.schema import Schema
from bale.io.source import ByteSource


@dataclass(frozen=True)
class Header:
    schema: Schema
    metadata: dict[str, Any]
    segment_bytes: int
    end: int  # offset of the first row group


def read_header(source: ByteSource) -> Header:
    path = source.path
    head = source.read(0, HEADER_PREFIX_SIZE) if source.size() >= HEADER_PREFIX_SIZE else b""
    prefix = unpack_header_prefix(bytes(head), path)
    body = source.read(HEADER_PREFIX_SIZE, prefix.json_length)
    info = parse_json_checked(body, prefix.json_checksum, "header JSON", path)
    try:
        return Header(
            Schema.from_json(info["schema"]),
            dict(info["metadata"]),
            int(info["segment_bytes"]),
            prefix.end,
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, BaleError):
            raise
        raise CorruptFileError(f"header JSON lacks a required field: {exc}", path=path) from exc


def read_index(source: ByteSource) -> tuple[FileIndex, int]:
    """The file's index and the offset where its footer starts. Reads the first bytes, the trailer
    and the footer only, so opening costs the same whatever the size of the data."""
    path = source.path
    size = source.size()
    first = bytes(source.read(0, min(size, HEADER_PREFIX_SIZE)))
    header = unpack_header_prefix(first, path)  # NotABaleFile / UnsupportedVersion come first
    if size < header.end + TRAILER_SIZE:
        raise TruncatedFileError(
            f"the file ends at byte {size}, before any footer: an interrupted write; "
            "`bale repair` recovers the complete row groups",
            path=path,
        )
    trailer = unpack_trailer(bytes(source.read(size - TRAILER_SIZE, TRAILER_SIZE)), path)
    if trailer is None:
        raise TruncatedFileError(
            "no trailer at the end of the file: the write was interrupted (or is in progress); "
            "`bale repair` recovers the complete row groups",
            path=path,
        )
    footer_end = trailer.footer_offset + trailer.footer_length
    if trailer.footer_offset < header.end or footer_end != size - TRAILER_SIZE:
        raise CorruptFileError(
            f"trailer points to a footer at {trailer.footer_offset}+{trailer.footer_length}, "
            f"which does not end where the trailer starts ({size - TRAILER_SIZE})",
            path=path,
        )
    footer = source.read(trailer.footer_offset, trailer.footer_length)
    if checksum(footer) != trailer.footer_checksum:
        raise CorruptFileError("footer checksum mismatch", path=path)
    index = unpack_footer(footer, path)
    _check_bounds(index, header.end, trailer.footer_offset, path)
    return index, trailer.footer_offset


def _check_bounds(index: FileIndex, data_start: int, data_end: int, path: str) -> None:
    groups, blocks = index.groups, index.blocks
    if len(groups) == 0:
        return
    if (
        int(groups["offset"].min()) < data_start
        or int((groups["offset"] + groups["length"]).max()) > data_end
    ):
        raise CorruptFileError("footer index points outside the data region", path=path)
    if blocks.size and int((blocks["offset"] + blocks["stored_size"]).max()) > data_end:
        raise CorruptFileError("footer index has a block past the data region", path=path)


@dataclass(frozen=True)
class ScannedGroup:
    offset: int
    length: int
    num_rows: int
    blocks: list[BlockRecord]
    skipped_before: int = 0  # damaged bytes between the previous group and this one


def scan_groups(source: ByteSource, header: Header) -> Iterator[ScannedGroup]:
    """Walk row groups from the header onwards. Where a group header is damaged, look for the
    next intact group at a later aligned offset (group headers carry a magic and a checksummed
    JSON, so a false match is practically impossible) instead of giving up on the rest of the
    file. The walk ends at the first group that runs past the end of the file. Block contents
    are not checked here."""
    size = source.size()
    offset = header.end
    skipped = 0
    while offset + GROUP_PREFIX_SIZE <= size:
        group = _group_at(source, offset, len(header.schema), size)
        if group is None:
            found = _next_group(source, offset + ALIGNMENT, len(header.schema), size)
            if found is None:
                return
            skipped += found.offset - offset
            group = found
        yield ScannedGroup(group.offset, group.length, group.num_rows, group.blocks, skipped)
        skipped = 0
        offset = group.offset + group.length


def _group_at(source: ByteSource, offset: int, num_columns: int, size: int) -> ScannedGroup | None:
    """The complete row group starting at ``offset``, or None."""
    prefix = unpack_group_prefix(bytes(source.read(offset, GROUP_PREFIX_SIZE)))
    if prefix is None:
        return None
    json_length, json_checksum = prefix
    head_end = offset + GROUP_PREFIX_SIZE + json_length
    if head_end > size:
        return None
    body = source.read(offset + GROUP_PREFIX_SIZE, json_length)
    if checksum(body) != json_checksum:
        return None
    try:
        info = json.loads(bytes(body))
        data_start = head_end + padding(head_end)
        num_rows = int(info["rows"])
        blocks = [
            BlockRecord(
                data_start + int(b["offset"]),
                int(b["stored_size"]),
                int(b["raw_size"]),
                int(b["checksum"]),
                dict(b["codec"]),
            )
            for b in info["blocks"]
        ]
    except (KeyError, TypeError, ValueError):
        return None
    if len(blocks) != num_columns or num_rows < 0:
        return None
    end = max([data_start] + [b.offset + b.stored_size for b in blocks])
    if end > size:
        return None
    end += padding(end)
    return ScannedGroup(offset, end - offset, num_rows, blocks)


def _next_group(source: ByteSource, start: int, num_columns: int, size: int) -> ScannedGroup | None:
    """The first intact group at an aligned offset >= ``start``, searching in 4 MiB windows."""
    start += padding(start)
    window = 4 << 20
    while start + GROUP_PREFIX_SIZE <= size:
        chunk = bytes(source.read(start, min(window + GROUP_PREFIX_SIZE, size - start)))
        position = chunk.find(GROUP_MAGIC)
        while position != -1 and position < window:
            if (start + position) % ALIGNMENT == 0:
                group = _group_at(source, start + position, num_columns, size)
                if group is not None:
                    return group
            position = chunk.find(GROUP_MAGIC, position + 1)
        start += window
    return None


def block_reads_back(source: ByteSource, block: BlockRecord, segment_bytes: int) -> bool:
    payload = source.read(block.offset, block.stored_size)
    if checksum(payload) != block.checksum:
        return False
    try:
        decoded = decode_block(
            codec_from_config(block.codec), memoryview(payload), block.raw_size, segment_bytes
        )
    except CorruptFileError:  # the block is not recoverable
        return False
    return len(decoded) == block.raw_size
