"""Finding a file's parts through a byte source: trailer -> footer -> index, header, group scan."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from bale.codecs import max_decoded_size, stored_codec
from bale.codecs.framing import decode_block
from bale.errors import CodecError, CorruptFileError, SchemaError, TruncatedFileError
from bale.format.constants import (
    ALIGNMENT,
    FORMAT_VERSION,
    GROUP_MAGIC,
    GROUP_PREFIX_SIZE,
    HEADER_PREFIX_SIZE,
    MAX_SEGMENT_BYTES,
    TRAILER_SIZE,
)
from bale.format.footer import MAX_ROWS, BlockRecord, FileIndex, unpack_footer
from bale.format.header import (
    HeaderPrefix,
    Trailer,
    checksum,
    json_int,
    padding,
    parse_json,
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
    #: The header's (major, minor): the version of the writer that created the file.
    version: tuple[int, int] = FORMAT_VERSION


def read_header(source: ByteSource) -> Header:
    path = source.path
    head = source.read(0, HEADER_PREFIX_SIZE) if source.size() >= HEADER_PREFIX_SIZE else b""
    prefix = unpack_header_prefix(bytes(head), path)
    if HEADER_PREFIX_SIZE + prefix.json_length > source.size():
        raise TruncatedFileError(
            f"the header claims {prefix.json_length} bytes of JSON; the file ends before them",
            path=path,
        )
    body = source.read(HEADER_PREFIX_SIZE, prefix.json_length)
    info = parse_json_checked(body, prefix.json_checksum, "header JSON", path)
    if not isinstance(info, dict) or not isinstance(info.get("metadata"), dict):
        raise CorruptFileError("header JSON lacks its metadata object", path=path)
    segment_bytes = json_int(info, "segment_bytes", 1, MAX_SEGMENT_BYTES, "header JSON", path)
    try:
        schema = Schema.from_json(info.get("schema"))
    except SchemaError as exc:
        raise CorruptFileError(
            f"header JSON has an invalid schema: {exc.detail}", path=path, column=exc.column
        ) from exc
    version = (prefix.major, prefix.minor)
    return Header(schema, dict(info["metadata"]), segment_bytes, prefix.end, version)


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
    check_versions(header, trailer, index.version, path)
    _check_bounds(index, header.end, trailer.footer_offset, path)
    return index, trailer.footer_offset


def check_versions(
    header: HeaderPrefix, trailer: Trailer, footer: tuple[int, int], path: str
) -> None:
    """The three version fields agree (the bale repository's docs/FORMAT.md): the trailer's governs and equals the
    footer JSON's ``format_version``; the header has the same major and a minor no higher (the
    header is never rewritten, so an append by a newer-minor writer leaves it lower). The
    majors were checked as each field was read: an unknown one is refused before anything
    else."""
    if footer != (trailer.major, trailer.minor):
        raise CorruptFileError(
            f"the trailer says format version {trailer.major}.{trailer.minor} but the footer "
            f"says {footer[0]}.{footer[1]}: the two must agree",
            path=path,
        )
    if header.major != trailer.major or header.minor > trailer.minor:
        raise CorruptFileError(
            f"the header says format version {header.major}.{header.minor}, the trailer "
            f"{trailer.major}.{trailer.minor}: the header's major must be the trailer's and its "
            "minor no higher",
            path=path,
        )


def _check_bounds(index: FileIndex, data_start: int, data_end: int, path: str) -> None:
    """Every row group and block lies between the header's end and the footer's start, each
    block inside its row group; sizes fit the file. Each field is checked to lie below the
    file's end before any two are added, so no sum wraps."""
    groups, blocks = index.groups, index.blocks
    if len(groups) == 0:
        return
    for name, values in (
        ("group offset", groups["offset"]),
        ("group length", groups["length"]),
        ("block offset", blocks["offset"]),
        ("block stored size", blocks["stored_size"]),
    ):
        if values.size and int(values.max()) > data_end:
            raise CorruptFileError(
                f"footer index has a {name} of {int(values.max())}, beyond the data region "
                f"(which ends at byte {data_end})",
                path=path,
            )
    group_start, group_end = groups["offset"], groups["offset"] + groups["length"]
    if int(group_start.min()) < data_start or int(group_end.max()) > data_end:
        raise CorruptFileError(
            f"footer index points outside the data region ({data_start}..{data_end})", path=path
        )
    if blocks.size:
        block_start = blocks["offset"]
        block_end = blocks["offset"] + blocks["stored_size"]
        inside = (block_start >= group_start[:, None]) & (block_end <= group_end[:, None])
        if not inside.all():
            group = int(np.flatnonzero(~inside.all(axis=1))[0])
            raise CorruptFileError(
                f"footer index has a block outside its row group ({group})", path=path
            )
    raw = blocks["raw_size"]
    if raw.size and int(raw.max()) > MAX_ROWS:
        raise CorruptFileError(
            f"footer index has a block of {int(raw.max())} decoded bytes, more than any block "
            "can hold",
            path=path,
        )


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
        info = parse_json(body)
        data_start = head_end + padding(head_end)
        num_rows = json_int(info, "rows", 0, MAX_ROWS, "group JSON", None)
        blocks = [
            BlockRecord(
                data_start + json_int(b, "offset", 0, size, "group JSON", None),
                json_int(b, "stored_size", 0, size, "group JSON", None),
                json_int(b, "raw_size", 0, MAX_ROWS, "group JSON", None),
                json_int(b, "checksum", 0, (1 << 64) - 1, "group JSON", None),
                _group_codec(b),
            )
            for b in info["blocks"]
        ]
    except (KeyError, TypeError, ValueError, CorruptFileError):  # not a usable group record
        return None
    if len(blocks) != num_columns:
        return None
    end = max([data_start] + [b.offset + b.stored_size for b in blocks])
    if end > size:
        return None
    end += padding(end)
    return ScannedGroup(offset, end - offset, num_rows, blocks)


def _group_codec(block: object) -> dict[str, Any]:
    codec = block.get("codec") if isinstance(block, dict) else None
    if not isinstance(codec, dict) or not isinstance(codec.get("id"), str):
        raise ValueError(f"codec is {codec!r}")
    return codec


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
        codec = stored_codec(block.codec)
        limit = max_decoded_size(codec, block.stored_size, -(-block.raw_size // segment_bytes))
        if limit is not None and block.raw_size > limit:
            return False
        decoded = decode_block(codec, memoryview(payload), block.raw_size, segment_bytes)
    except (CorruptFileError, CodecError):  # the block is not recoverable
        return False
    return len(decoded) == block.raw_size
