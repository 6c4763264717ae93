"""A file's second copies checked against its footer, its padding and decoded strings (`bale verify`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bale._core.blocks import Decoded, VarRows
from bale._core.layout import read_header
from bale._types import Buffer
from bale.errors import BaleError
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
    parse_json,
    unpack_group_prefix,
    unpack_header_prefix,
    unpack_trailer,
)
from bale.format.schema import Array, Column, Schema, String
from bale.io.source import ByteSource

#: Reads ``size`` bytes at an absolute ``offset`` of the file.
ReadAt = Callable[[int, int], Buffer]

_BLOCK_FIELDS = ("offset", "stored_size", "raw_size", "checksum")


@dataclass
class HeaderCheck:
    """What the header says and what disagrees: ``end`` is where the first row group belongs."""

    end: int
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_header(source: ByteSource, index: FileIndex) -> HeaderCheck:
    """The header JSON (its checksum, its required keys) against the footer: the schema and
    ``segment_bytes`` must be the footer's, since `bale repair` rebuilds a footer from them;
    and the header's padding must be zero bytes. Metadata may differ (it can change after the
    file was created): that is a note, not a problem."""
    prefix = unpack_header_prefix(bytes(source.read(0, HEADER_PREFIX_SIZE)), source.path)
    result = HeaderCheck(prefix.end)
    try:
        header = read_header(source)
    except BaleError as exc:
        result.problems.append(f"the header JSON cannot be used: {exc.detail}")
        return result
    info = parse_json(source.read(HEADER_PREFIX_SIZE, prefix.json_length))  # read_header parsed it
    if not isinstance(info, dict):
        result.problems.append("the header JSON is not an object")
        return result
    for key, kind in (("created_by", str), ("metadata", dict), ("segment_bytes", int)):
        value = info.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            result.problems.append(
                f"the header JSON's {key!r} is {_shown(value)}, expected a JSON "
                f"{'string' if kind is str else 'object' if kind is dict else 'integer'}"
            )
    difference = schema_difference(header.schema, index.schema)
    if difference:
        result.problems.append(f"the header JSON's schema differs from the footer's: {difference}")
    if header.segment_bytes != index.segment_bytes:
        result.problems.append(
            f"the header JSON says segment_bytes {header.segment_bytes}, the footer "
            f"{index.segment_bytes}"
        )
    if header.metadata != index.metadata:
        result.notes.append(
            "the header's metadata differs from the footer's (metadata changed after the file "
            "was created; a repaired file would carry the header's)"
        )
    start = HEADER_PREFIX_SIZE + prefix.json_length
    result.problems += zero_problems(bytes(source.read(start, prefix.end - start)), start, "header")
    return result


def header_length_problem(source: ByteSource) -> str | None:
    """For a file that does not open: a sentence when the header's JSON length is what is
    damaged (the trailer and footer are intact, and the footer's first row group is not where
    that length puts it), else None (the footer or trailer is what is damaged or missing)."""
    size = source.size()
    try:
        prefix = unpack_header_prefix(bytes(source.read(0, HEADER_PREFIX_SIZE)), source.path)
        trailer = unpack_trailer(bytes(source.read(size - TRAILER_SIZE, TRAILER_SIZE)))
        if trailer is None or trailer.footer_offset + trailer.footer_length != size - TRAILER_SIZE:
            return None
        footer = source.read(trailer.footer_offset, trailer.footer_length)
        if checksum(footer) != trailer.footer_checksum:
            return None
        index = unpack_footer(footer, source.path)
    except BaleError:
        return None
    if not len(index.groups) or int(index.groups[0]["offset"]) == prefix.end:
        return None
    return (
        f"the header prefix says the header JSON is {prefix.json_length} bytes long, which puts "
        f"the first row group at byte {prefix.end}; the footer (intact) puts it at byte "
        f"{int(index.groups[0]['offset'])}: the header's length field is damaged"
    )


def schema_difference(header: Schema, footer: Schema) -> str | None:
    """The first difference between two schemas, in words, or None when they are equal."""
    if header == footer:
        return None
    if header.names != footer.names:
        return f"columns {header.names} against {footer.names}"
    for a, b in zip(header.columns, footer.columns, strict=True):
        if a != b:
            return f"column {a.name!r} is {a.to_json()} against {b.to_json()}"
    return "they are not equal"  # pragma: no cover - equal columns make equal schemas


@dataclass
class GroupCheck:
    """A row group record checked against the footer: ``json_end`` (where its JSON ends) is
    None when the record could not be read, so its padding is not known."""

    problems: list[str] = field(default_factory=list)
    json_end: int | None = None


def check_group_record(
    read: ReadAt,
    offset: int,
    length: int,
    num_rows: int,
    footer_blocks: Sequence[BlockRecord],
    schema: Schema,
) -> GroupCheck:
    """The ``BGRP`` record at ``offset`` (magic, JSON length, JSON checksum) and its JSON against
    the footer's group table (rows, length) and block table (each block's offset from the data
    start, stored and raw size, checksum, codec): the record is what `bale repair` rebuilds the
    footer from, so every field must agree."""
    result = GroupCheck()
    if length < GROUP_PREFIX_SIZE:
        result.problems.append(f"the footer gives the group {length} bytes, less than its record")
        return result
    head = bytes(read(offset, GROUP_PREFIX_SIZE))
    prefix = unpack_group_prefix(head)
    if prefix is None:
        found = head[:4]
        result.problems.append(
            f"no row group record at byte {offset}: expected magic {GROUP_MAGIC!r}, found {found!r}"
            if found != GROUP_MAGIC
            else f"the record at byte {offset} claims an implausible JSON length"
        )
        return result
    json_length, json_checksum = prefix
    json_end = offset + GROUP_PREFIX_SIZE + json_length
    if json_end > offset + length:
        result.problems.append(
            f"the record at byte {offset} claims {json_length} bytes of JSON, more than the "
            f"group's {length} bytes in the footer"
        )
        return result
    body = bytes(read(offset + GROUP_PREFIX_SIZE, json_length))
    if checksum(body) != json_checksum:
        result.problems.append(
            f"the group JSON at byte {offset + GROUP_PREFIX_SIZE} does not match its checksum"
        )
        return result
    result.json_end = json_end
    try:
        info = parse_json(body)
    except ValueError as exc:  # UnicodeDecodeError, JSONDecodeError, a repeated key, too deep
        result.problems.append(f"the group JSON is not valid JSON: {exc}")
        return result
    result.problems += _record_differences(
        info, json_end + padding(json_end), offset, length, num_rows, footer_blocks, schema
    )
    return result


def _record_differences(
    info: Any,
    data_start: int,
    offset: int,
    length: int,
    num_rows: int,
    footer_blocks: Sequence[BlockRecord],
    schema: Schema,
) -> list[str]:
    if not isinstance(info, dict):
        return [f"the group JSON is {_shown(info)}, expected an object"]
    problems = []
    rows = info.get("rows")
    if not _is_int(rows):
        problems.append(f"the group JSON's rows is {_shown(rows)}, expected an integer")
    elif rows != num_rows:
        problems.append(f"the group JSON says {rows} rows, the footer's group table {num_rows}")
    blocks = info.get("blocks")
    if not isinstance(blocks, list) or len(blocks) != len(schema):
        count = f"{len(blocks)} blocks" if isinstance(blocks, list) else _shown(blocks)
        return [*problems, f"the group JSON lists {count}, expected one per column ({len(schema)})"]
    end = data_start
    for column, given, footer in zip(schema.columns, blocks, footer_blocks, strict=True):
        where = f"column {column.name!r}"
        if not isinstance(given, dict):
            problems.append(f"{where}: the group JSON's block is {_shown(given)}")
            continue
        expected = {
            "offset": footer.offset - data_start,
            "stored_size": footer.stored_size,
            "raw_size": footer.raw_size,
            "checksum": footer.checksum,
        }
        for name in _BLOCK_FIELDS:
            value = given.get(name)
            if not _is_int(value):
                problems.append(f"{where}: the group JSON's {name} is {_shown(value)}")
            elif value != expected[name]:
                problems.append(
                    f"{where}: the group JSON says {name} {value}, the footer's block table "
                    f"{expected[name]}"
                    + (" (offsets count from the group's data start)" if name == "offset" else "")
                )
        if given.get("codec") != dict(footer.codec):
            problems.append(
                f"{where}: the group JSON says codec {_shown(given.get('codec'))}, the footer's "
                f"codec table {dict(footer.codec)}"
            )
        if _is_int(given.get("offset")) and _is_int(given.get("stored_size")):
            end = max(end, data_start + given["offset"] + given["stored_size"])
    if not problems and end + padding(end) != offset + length:
        problems.append(
            f"the group's blocks end at byte {end}, so the group is {end + padding(end) - offset} "
            f"bytes long with its padding; the footer's group table says {length}"
        )
    return problems


def block_place_problems(
    offset: int, length: int, footer_blocks: Sequence[BlockRecord], schema: Schema
) -> list[tuple[str, str]]:
    """(column, problem) for each block of the footer outside its row group or not aligned."""
    problems = []
    for column, block in zip(schema.columns, footer_blocks, strict=True):
        if block.offset < offset or block.offset + block.stored_size > offset + length:
            problems.append(
                (
                    column.name,
                    f"the footer puts the block at bytes {block.offset}.."
                    f"{block.offset + block.stored_size}, outside its row group (bytes {offset}.."
                    f"{offset + length})",
                )
            )
        elif block.offset % ALIGNMENT:
            problems.append(
                (column.name, f"the block starts at byte {block.offset}, not a multiple of 64")
            )
    return problems


def padding_problems(
    read: ReadAt,
    offset: int,
    length: int,
    json_end: int,
    footer_blocks: Sequence[BlockRecord],
) -> list[str]:
    """Every byte of a row group that is neither its record nor a block must be zero."""
    used = sorted(
        [(offset, json_end)] + [(b.offset, b.offset + b.stored_size) for b in footer_blocks]
    )
    problems = []
    at, end = offset, offset + length
    for lo, hi in [*used, (end, end)]:
        lo, hi = max(lo, offset), min(hi, end)
        if lo > at:
            problems += zero_problems(bytes(read(at, lo - at)), at, "row group")
        at = max(at, hi)
    return problems


def zero_problems(data: bytes, start: int, where: str) -> list[str]:
    """A sentence when padding bytes (which the format requires to be zero) are not."""
    nonzero = np.flatnonzero(np.frombuffer(data, np.uint8))
    if not nonzero.size:
        return []
    first, last = start + int(nonzero[0]), start + int(nonzero[-1])
    return [
        f"{nonzero.size} byte(s) of the {where}'s padding are not zero (bytes {first}..{last}; "
        "padding is zero bytes)"
    ]


def block_size_problem(column: Column, num_rows: int, raw_size: int) -> str | None:
    """Whether the footer's raw size can hold the group's rows of this column: exactly
    ``rows x row size`` for an array column, at least the row lengths for bytes and strings."""
    if isinstance(column.type, Array):
        expected = num_rows * column.type.row_nbytes
        if raw_size != expected:
            return (
                f"the footer says the block holds {raw_size} raw bytes, expected {expected} for "
                f"{num_rows} rows of {column.type.row_nbytes} bytes"
            )
    elif raw_size < 8 * num_rows:
        return (
            f"the footer says the block holds {raw_size} raw bytes, too few for the row lengths "
            f"of {num_rows} rows ({8 * num_rows} bytes)"
        )
    return None


def decoded_problem(column: Column, decoded: Decoded, first_row: int) -> str | None:
    """What a decoded block holds that its column cannot (``--deep``): a string row that is not
    UTF-8. Sizes and row lengths were checked while decoding."""
    if isinstance(decoded, VarRows) and isinstance(column.type, String):
        return _utf8_problem(decoded, first_row)
    return None


def _utf8_problem(rows: VarRows, first_row: int) -> str | None:
    data = bytes(rows.data)
    try:
        data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        row = int(np.searchsorted(rows.offsets, exc.start, "right")) - 1
        return f"row {first_row + row} is not UTF-8 ({exc.reason})"
    # The whole is UTF-8; so is each row, unless a character is split between two rows.
    starts = rows.offsets[:-1]
    inside = starts < len(data)
    continuation = np.zeros(len(starts), bool)
    continuation[inside] = (np.frombuffer(data, np.uint8)[starts[inside]] & 0xC0) == 0x80
    bad = np.flatnonzero(continuation)
    if not bad.size:
        return None
    second = int(bad[0])
    first = int(np.searchsorted(rows.offsets, rows.offsets[second], "left")) - 1
    return (
        f"rows {first_row + first} and {first_row + second} are not UTF-8 (a character is split "
        "between them)"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any, limit: int = 80) -> str:
    text = json.dumps(value) if value is not None else "missing"
    return text if len(text) <= limit else text[: limit - 3] + "..."
