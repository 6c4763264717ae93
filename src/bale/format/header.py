"""Fixed-layout parts of a file: the header, each row group's prefix, and the trailer."""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import xxhash

from bale.errors import (
    CorruptFileError,
    NotABaleFileError,
    TruncatedFileError,
    UnsupportedVersionError,
)
from bale.format.constants import (
    ALIGNMENT,
    FILE_MAGIC,
    FORMAT_VERSION,
    GROUP_MAGIC,
    GROUP_PREFIX_SIZE,
    HEADER_PREFIX_SIZE,
    MAX_JSON_BYTES,
    TRAILER_MAGIC,
    TRAILER_SIZE,
)

_HEADER_PREFIX = struct.Struct("<8sHHIQ")
_GROUP_PREFIX = struct.Struct("<4sIQ")
_TRAILER = struct.Struct("<QQQHHI8s")


def checksum(data: bytes | bytearray | memoryview) -> int:
    """The format's checksum: XXH3-64 with seed 0."""
    return xxhash.xxh3_64_intdigest(data)


def checksum_parts(parts: Sequence[bytes | bytearray | memoryview]) -> int:
    """The checksum of several buffers as if concatenated."""
    if len(parts) == 1:
        return checksum(parts[0])
    hasher = xxhash.xxh3_64()
    for part in parts:
        hasher.update(part)
    return hasher.intdigest()


def padding(offset: int) -> int:
    """Zero bytes needed after ``offset`` to reach the next multiple of ALIGNMENT."""
    return -offset % ALIGNMENT


#: How deeply a file's metadata may nest (objects and arrays). Deeper JSON crashes encoders and
#: decoders that recurse (RecursionError), so bale refuses it when writing.
MAX_METADATA_DEPTH = 64


def dump_json(obj: Any, *, max_depth: int = MAX_METADATA_DEPTH) -> bytes:
    """Compact JSON, refusing (ValueError) values nested more than ``max_depth`` levels deep or
    longer than MAX_JSON_BYTES encoded: no reader could decode them."""
    check_json_nesting(obj, max_depth)
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    if len(body) > MAX_JSON_BYTES:
        raise ValueError(f"JSON of {len(body)} bytes is longer than the {MAX_JSON_BYTES} allowed")
    return body


def check_json_nesting(obj: Any, max_depth: int) -> None:
    """Raise ValueError if ``obj`` nests lists, tuples and dicts more than ``max_depth`` deep.
    Iterative, so any depth is measured without recursing."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            continue
        if depth > max_depth:
            raise ValueError(f"JSON nested deeper than {max_depth} levels (objects and arrays)")
        stack.extend((child, depth + 1) for child in children)


def check_version(major: int, minor: int, path: str | None, where: str = "header") -> None:
    """Refuse a major version this bale cannot read. Only a newer major gets the advice to
    upgrade: versions start at 1.0, so a major of 0 is damage, never a format."""
    if major < 1:
        raise CorruptFileError(
            f"the {where} says format version {major}.{minor}, which does not exist (versions "
            f"start at 1.0): the {where} is damaged",
            path=path,
        )
    if major > FORMAT_VERSION[0]:
        raise UnsupportedVersionError(
            f"format version {major}.{minor} is not supported; this bale reads "
            f"{FORMAT_VERSION[0]}.x (upgrade bale to read newer files)",
            path=path,
        )


# -- header -------------------------------------------------------------------------------------


def pack_header(info: dict[str, Any]) -> bytes:
    """Header bytes, zero-padded to ALIGNMENT: prefix then the header JSON."""
    body = dump_json(info, max_depth=MAX_METADATA_DEPTH + 1)  # metadata is one level down
    prefix = _HEADER_PREFIX.pack(FILE_MAGIC, *FORMAT_VERSION, len(body), checksum(body))
    raw = prefix + body
    return raw + bytes(padding(len(raw)))


@dataclass(frozen=True)
class HeaderPrefix:
    major: int
    minor: int
    json_length: int
    json_checksum: int

    @property
    def end(self) -> int:
        """Offset of the first row group."""
        size = HEADER_PREFIX_SIZE + self.json_length
        return size + padding(size)


def unpack_header_prefix(data: bytes, path: str | None = None) -> HeaderPrefix:
    if len(data) < HEADER_PREFIX_SIZE and data[:8] == FILE_MAGIC:
        raise TruncatedFileError(
            f"the file is only {len(data)} bytes long, cut inside its header", path=path
        )
    if len(data) < HEADER_PREFIX_SIZE or data[:8] != FILE_MAGIC:
        raise NotABaleFileError(
            f"not a bale file (expected magic {FILE_MAGIC!r} at offset 0, got {bytes(data[:8])!r})",
            path=path,
        )
    _, major, minor, length, digest = _HEADER_PREFIX.unpack_from(data)
    check_version(major, minor, path)
    if length > MAX_JSON_BYTES:
        raise CorruptFileError(
            f"header claims {length} bytes of JSON, which is implausible", path=path
        )
    return HeaderPrefix(major, minor, length, digest)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when a key repeats: readers that keep the first and readers that
    keep the last would otherwise read different files from the same bytes."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"the key {key!r} appears twice in one object")
            seen.add(key)
    return out


def parse_json(body: bytes | bytearray | memoryview) -> Any:
    """Strict JSON (RFC 8259): ValueError for anything else, including NaN and Infinity, an
    integer of more than 4300 digits, a key repeated in one object, or nesting too deep to
    parse."""
    try:
        return json.loads(bytes(body), parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc


def parse_json_checked(
    body: bytes | bytearray | memoryview, expected_checksum: int, what: str, path: str | None
) -> Any:
    if checksum(body) != expected_checksum:
        raise CorruptFileError(f"{what} checksum mismatch", path=path)
    try:
        return parse_json(body)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CorruptFileError(f"{what} is not valid JSON: {exc}", path=path) from exc


def json_int(info: Any, key: str, low: int, high: int, what: str, path: str | None) -> int:
    """``info[key]`` if it is a JSON integer (not a float such as ``5.0`` or ``1e400``, not a
    boolean) in ``low..high``; CorruptFileError naming the key and value otherwise."""
    value = info.get(key) if isinstance(info, dict) else None
    if type(value) is not int or not low <= value <= high:
        shown = repr(value) if len(repr(value)) <= 60 else f"{repr(value)[:57]}..."
        raise CorruptFileError(
            f"{what} {key} must be an integer in {low}..{high}, got {shown}", path=path
        )
    return value


# -- row groups ---------------------------------------------------------------------------------


def pack_group_prefix(group_json: bytes) -> bytes:
    return _GROUP_PREFIX.pack(GROUP_MAGIC, len(group_json), checksum(group_json))


def unpack_group_prefix(data: bytes) -> tuple[int, int] | None:
    """(json_length, json_checksum), or None if ``data`` does not start a row group."""
    if len(data) < GROUP_PREFIX_SIZE or data[:4] != GROUP_MAGIC:
        return None
    _, length, digest = _GROUP_PREFIX.unpack_from(data)
    if length > MAX_JSON_BYTES:
        return None
    return length, digest


# -- trailer ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trailer:
    footer_offset: int
    footer_length: int
    footer_checksum: int
    major: int
    minor: int


def pack_trailer(footer_offset: int, footer: bytes) -> bytes:
    return _TRAILER.pack(
        footer_offset, len(footer), checksum(footer), *FORMAT_VERSION, 0, TRAILER_MAGIC
    )


def unpack_trailer(data: bytes, path: str | None = None) -> Trailer | None:
    """The trailer, or None when the last bytes are not one (an unfinished file)."""
    if len(data) != TRAILER_SIZE or data[-8:] != TRAILER_MAGIC:
        return None
    offset, length, digest, major, minor, _, _ = _TRAILER.unpack(data)
    check_version(major, minor, path, "trailer")
    return Trailer(offset, length, digest, major, minor)
