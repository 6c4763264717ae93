"""A second bale reader, written from docs/FORMAT.md alone: it never imports bale.

It proves the spec can be implemented: it decodes every golden file, checks every structure the
spec defines (checksums, tables, group JSON, padding, the frame index, Blosc2 chunk headers) and
computes each column's value hash (FORMAT.md, *Value hashes*), which the golden tests compare with
the hashes bale's own reader gives and with ``expected.json``. It also prints the annotated dump
of a small file that FORMAT.md shows as its worked example::

    python tests/golden/reference_reader.py FILE.bale          # value hashes, one line a column
    python tests/golden/reference_reader.py --dump FILE.bale   # the annotated hex dump

Dependencies: numpy, xxhash, and the codec libraries the spec cites (lz4.block, zstandard,
blosc2). Everything else is this file.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

FILE_MAGIC = b"\x89BALE\r\n\x1a"
TRAILER_MAGIC = b"BALE.END"
GROUP_MAGIC = b"BGRP"
ALIGNMENT = 64
TRAILER_SIZE = 40
MAX_SEGMENT_BYTES = (1 << 31) - (1 << 20)
#: Bytes per element of each dtype name (FORMAT.md, *Element types*).
ITEMSIZE = {
    "bool": 1,
    "int8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "uint8": 1,
    "uint16": 2,
    "uint32": 4,
    "uint64": 8,
    "float16": 2,
    "float32": 4,
    "float64": 8,
    "complex64": 8,
    "complex128": 16,
    "bfloat16": 2,
    "float8_e4m3fn": 1,
    "float8_e4m3fnuz": 1,
    "float8_e4m3b11fnuz": 1,
    "float8_e5m2": 1,
    "float8_e5m2fnuz": 1,
}
#: Blosc2 filter codes in a chunk header (c-blosc2 include/blosc2.h, filters-registry.h).
BLOSC2_FILTER_CODES = {"shuffle": 1, "bitshuffle": 2, "bytedelta": 35}
#: Compressor enumeration in bits 5-7 of a Blosc2 chunk's flags byte.
BLOSC2_COMPRESSOR_CODES = {"blosclz": 0, "lz4": 1, "lz4hc": 1, "zlib": 3, "zstd": 4}


class SpecError(ValueError):
    """The file breaks a rule of FORMAT.md (the message says which)."""


class UnsupportedVersion(SpecError):
    """The file has a major version this reader (format 1) does not know."""


def xxh3(data: bytes | bytearray | memoryview) -> int:
    return xxhash.xxh3_64_intdigest(data)


def aligned(offset: int) -> int:
    return offset + (-offset % ALIGNMENT)


def require(condition: bool, message: str) -> None:
    if not condition:
        raise SpecError(message)


def parse_json(data: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no key repeated in an object; integers are Python
    ints (exact beyond 2**53)."""

    def refuse(name: str) -> Any:
        raise SpecError(f"JSON holds {name}, which the format forbids")

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        require(len(set(keys)) == len(keys), "a JSON object repeats a key")
        return dict(pairs)

    return json.loads(data.decode("utf-8"), parse_constant=refuse, object_pairs_hook=unique)


@dataclass
class Column:
    name: str
    kind: str
    dtype: str | None
    shape: tuple[int, ...]
    #: Why this reader cannot decode the column (a kind, dtype or codec of a later minor).
    unsupported: str | None = None

    @property
    def row_nbytes(self) -> int:
        assert self.dtype is not None
        return ITEMSIZE[self.dtype] * int(np.prod(self.shape, dtype=np.int64))


@dataclass
class BaleFile:
    """Everything decoded from one file."""

    version: tuple[int, int]
    header_version: tuple[int, int]
    header: dict[str, Any]
    footer: dict[str, Any]
    columns: list[Column]
    group_rows: list[int]
    #: Per column, the raw bytes of each row group's block (FORMAT.md, *Blocks*).
    raw_blocks: dict[str, list[bytes]] = field(default_factory=dict)
    #: Per Blosc2 chunk: its 32-byte header fields, for tests that cite them.
    blosc2_headers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        return sum(self.group_rows)

    def canonical_bytes(self, name: str) -> bytes:
        """The column's canonical value bytes: the raw form of one block holding every row."""
        column = next(c for c in self.columns if c.name == name)
        if column.unsupported:
            raise SpecError(f"column {name!r} uses {column.unsupported}, unknown to format 1.1")
        blocks = self.raw_blocks[name]
        if column.kind == "array":
            data = b"".join(blocks)
            if column.dtype == "bool":  # any nonzero byte reads as True: canonical 0/1
                data = (np.frombuffer(data, np.uint8) != 0).astype(np.uint8).tobytes()
            return data
        lengths: list[bytes] = []
        values: list[bytes] = []
        for raw, rows in zip(blocks, self.group_rows, strict=True):
            lengths.append(raw[: 8 * rows])
            values.append(raw[8 * rows :])
        return b"".join(lengths) + b"".join(values)

    def value_hash(self, name: str) -> str:
        return f"{xxh3(self.canonical_bytes(name)):016x}"

    def rows(self, name: str) -> list[bytes]:
        """A bytes or string column's rows as bytes (UTF-8 for strings)."""
        data = self.canonical_bytes(name)
        n = self.num_rows
        lengths = np.frombuffer(data[: 8 * n], "<u8")
        ends = 8 * n + np.cumsum(lengths, dtype=np.int64)
        starts = ends - lengths.astype(np.int64)
        return [data[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]


def decode_frame(codec: dict[str, Any], frame: bytes, raw_size: int, out: BaleFile) -> bytes:
    """One codec frame -> its raw bytes (FORMAT.md, *Codecs*)."""
    cid = codec["id"]
    if cid == "none":
        data = frame
    elif cid == "lz4":
        import lz4.block

        data = lz4.block.decompress(frame, uncompressed_size=raw_size)
    elif cid == "zstd":
        import zstandard

        params = zstandard.get_frame_parameters(frame)
        require(params.content_size == raw_size, "zstd frame lacks its content size")
        data = zstandard.ZstdDecompressor().decompress(frame)
    elif cid == "blosc2":
        import blosc2

        out.blosc2_headers.append(check_blosc2_header(codec, frame, raw_size))
        data = blosc2.decompress(frame)
    else:
        raise SpecError(f"unknown codec id {cid!r}")
    require(len(data) == raw_size, f"codec {cid} gave {len(data)} bytes, expected {raw_size}")
    return bytes(data)


def check_blosc2_header(codec: dict[str, Any], frame: bytes, raw_size: int) -> dict[str, Any]:
    """The chunk header fields FORMAT.md relies on (c-blosc2 README_CHUNK_FORMAT.rst)."""
    require(len(frame) >= 32, "blosc2 chunk shorter than its extended header")
    version, versionlz, flags, typesize = frame[0], frame[1], frame[2], frame[3]
    nbytes, blocksize, cbytes = struct.unpack_from("<iii", frame, 4)
    filters = list(frame[16:22])
    fields = {
        "version": version,
        "versionlz": versionlz,
        "flags": flags,
        "typesize": typesize,
        "nbytes": nbytes,
        "blocksize": blocksize,
        "cbytes": cbytes,
        "filters": filters,
        "filters_meta": list(frame[24:30]),
        "blosc2_flags2": frame[30],
        "blosc2_flags": frame[31],
    }
    require(version >= 3, f"blosc2 chunk format version {version} is a Blosc1 chunk")
    require(flags & 0x05 == 0x05, "blosc2 chunk without the extended (filter pipeline) header")
    require(nbytes == raw_size, f"blosc2 nbytes {nbytes} != the piece's raw size {raw_size}")
    require(cbytes == len(frame), f"blosc2 cbytes {cbytes} != the frame's length {len(frame)}")
    require(typesize == codec["typesize"], "blosc2 typesize differs from the codec config")
    require(blocksize > 0, "blosc2 blocksize not resolved in the chunk")
    if codec["blocksize"]:
        require(blocksize == min(codec["blocksize"], raw_size), "blosc2 blocksize differs")
    if not flags & 0x02:  # not a plain copy: the compressor is the one the config names
        require(flags >> 5 == BLOSC2_COMPRESSOR_CODES[codec["cname"]], "blosc2 compressor differs")
    # The pipeline holds the config's filters in order (c-blosc2 leaves bytedelta out when
    # typesize is 1: it has nothing to do there), the remaining slots 0.
    wanted = [BLOSC2_FILTER_CODES[f] for f in codec["filters"]]
    applied = [f for f in filters if f]
    require(
        applied in (wanted, [f for f in wanted if f != 35]),
        f"blosc2 filters {filters} do not match {codec['filters']}",
    )
    return fields


KNOWN_CODECS = ("none", "lz4", "zstd", "blosc2")
KNOWN_KINDS = ("array", "bytes", "string")


def split_frames(stored: bytes, raw_size: int, segment: int) -> list[tuple[int, bytes, int]]:
    """A block's stored bytes -> (offset, frame, raw size of its piece) per frame."""
    if raw_size == 0:
        require(len(stored) == 0, "a block of raw size 0 stores bytes")
        return []
    if raw_size <= segment:
        return [(0, stored, raw_size)]
    frames: list[tuple[int, bytes, int]] = []
    at = 0
    left = raw_size
    while left:
        require(at + 8 <= len(stored), "segmented block ends inside a frame length")
        (length,) = struct.unpack_from("<Q", stored, at)
        require(at + 8 + length <= len(stored), "segmented block ends inside a frame")
        piece = min(segment, left)
        frames.append((at + 8, stored[at + 8 : at + 8 + length], piece))
        left -= piece
        at += 8 + length
    require(at == len(stored), "bytes after a segmented block's last frame")
    return frames


def check_raw(column: Column, raw: bytes, rows: int) -> None:
    if column.kind == "array":
        require(len(raw) == rows * column.row_nbytes, f"{column.name}: raw size != rows x row")
        return
    require(len(raw) >= 8 * rows, f"{column.name}: block shorter than its row lengths")
    lengths = np.frombuffer(raw[: 8 * rows], "<u8")
    require(8 * rows + int(lengths.sum()) == len(raw), f"{column.name}: lengths do not add up")
    if column.kind == "string":
        raw[8 * rows :].decode("utf-8", "surrogatepass")


def read(path: str | Path) -> BaleFile:
    """Decode a whole bale 1.x file, checking everything; SpecError names what is wrong."""
    data = Path(path).read_bytes()
    require(len(data) >= 24 + TRAILER_SIZE, "file too short")
    magic, major, minor, hlen, hsum = struct.unpack_from("<8sHHIQ", data, 0)
    require(magic == FILE_MAGIC, "bad file magic")
    if major != 1:
        raise UnsupportedVersion(f"unknown major version {major} in the header")
    header_json = data[24 : 24 + hlen]
    require(xxh3(header_json) == hsum, "header JSON checksum")
    header = parse_json(header_json)
    first_group = aligned(24 + hlen)
    require(not any(data[24 + hlen : first_group]), "header padding not zero")

    t = len(data) - TRAILER_SIZE
    foff, flen, fsum, tmajor, tminor, _reserved, tmagic = struct.unpack_from("<QQQHHI8s", data, t)
    require(tmagic == TRAILER_MAGIC, "bad trailer magic")
    if tmajor != 1:
        raise UnsupportedVersion(f"unknown major version {tmajor} in the trailer")
    require(tmajor == major, "header and trailer majors differ")
    require(minor <= tminor, "header minor newer than the trailer's")
    require(foff + flen == t and foff % ALIGNMENT == 0, "footer does not end at the trailer")
    footer_bytes = data[foff:t]
    require(xxh3(footer_bytes) == fsum, "footer checksum")
    jlen, jsum = struct.unpack_from("<QQ", footer_bytes, 0)
    footer_json = footer_bytes[16 : 16 + jlen]
    require(xxh3(footer_json) == jsum, "footer JSON checksum")
    footer = parse_json(footer_json)
    # An unknown major anywhere is refused first; then the three fields must agree.
    if footer["format_version"][0] != 1:
        raise UnsupportedVersion(f"unknown major version in the footer {footer['format_version']}")
    require(footer["format_version"] == [tmajor, tminor], "footer and trailer versions differ")

    columns = [
        Column(c["name"], c["kind"], c.get("dtype"), tuple(c.get("shape", ())))
        for c in footer["schema"]
    ]
    for column in columns:
        if column.kind not in KNOWN_KINDS:
            column.unsupported = f"column kind {column.kind!r}"
        elif column.kind == "array" and column.dtype not in ITEMSIZE:
            column.unsupported = f"dtype {column.dtype!r}"
    ncols = len(columns)
    ngroups = footer["num_row_groups"]
    segment = footer["segment_bytes"]
    require(isinstance(segment, int) and 1 <= segment <= MAX_SEGMENT_BYTES, "segment_bytes range")
    table = 16 + jlen
    table += -table % 8
    require(not any(footer_bytes[16 + jlen : table]), "footer JSON padding not zero")
    groups = np.frombuffer(footer_bytes, "<u8", count=4 * ngroups, offset=table).reshape(-1, 4)
    blocks_at = table + 32 * ngroups
    block_dtype = np.dtype(
        [
            ("offset", "<u8"),
            ("stored", "<u8"),
            ("raw", "<u8"),
            ("sum", "<u8"),
            ("codec", "<u4"),
            ("reserved", "<u4"),
        ]
    )
    blocks = np.frombuffer(
        footer_bytes, block_dtype, count=ngroups * ncols, offset=blocks_at
    ).reshape(ngroups, ncols)
    # Later minors may put tables after the block table (a reader ignores them); 1.1 writes none.
    require(blocks_at + 40 * ngroups * ncols <= len(footer_bytes), "footer tables cut short")

    out = BaleFile((tmajor, tminor), (major, minor), header, footer, columns, [])
    out.raw_blocks = {c.name: [] for c in columns}
    row_start = 0
    frame_records: list[tuple[int, int]] = []
    for g in range(ngroups):
        start, nrows, goff, glen = (int(v) for v in groups[g])
        require(start == row_start, f"group {g}: row_start is not the running sum")
        require(goff >= first_group and goff + glen <= foff, f"group {g} outside the data")
        gmagic, gjlen, gjsum = struct.unpack_from("<4sIQ", data, goff)
        require(gmagic == GROUP_MAGIC, f"group {g}: no BGRP")
        group_json = data[goff + 16 : goff + 16 + gjlen]
        require(xxh3(group_json) == gjsum, f"group {g}: JSON checksum")
        gj = parse_json(group_json)
        require(gj["rows"] == nrows and len(gj["blocks"]) == ncols, f"group {g}: JSON vs table")
        data_start = aligned(goff + 16 + gjlen)
        for p, column in enumerate(columns):
            b = blocks[g, p]
            codec = footer["codecs"][int(b["codec"])]
            off, stored_size, raw_size = int(b["offset"]), int(b["stored"]), int(b["raw"])
            entry = gj["blocks"][p]
            known = ("offset", "stored_size", "raw_size", "checksum", "codec")
            require(
                {key: entry.get(key) for key in known}  # later minors may add keys
                == {
                    "offset": off - data_start,
                    "stored_size": stored_size,
                    "raw_size": raw_size,
                    "checksum": int(b["sum"]),
                    "codec": codec,
                },
                f"group {g} column {column.name}: group JSON differs from the block table",
            )
            require(goff <= off and off + stored_size <= goff + glen, "block outside its group")
            stored = data[off : off + stored_size]
            require(xxh3(stored) == int(b["sum"]), f"group {g} column {column.name}: checksum")
            frames = split_frames(stored, raw_size, segment)
            if raw_size > segment:
                frame_records += [(at, xxh3(frame)) for at, frame, _ in frames]
            if frames and codec["id"] not in KNOWN_CODECS:
                column.unsupported = column.unsupported or f"codec {codec['id']!r}"
            if column.unsupported:
                out.raw_blocks[column.name].append(b"")
                continue
            raw = b"".join(decode_frame(codec, frame, size, out) for _, frame, size in frames)
            check_raw(column, raw, nrows)
            out.raw_blocks[column.name].append(raw)
        row_start += nrows
        out.group_rows.append(nrows)
    require(row_start == footer["num_rows"], "num_rows differs from the group table")

    index = footer.get("frame_index")
    if index is not None:
        region = data[index["offset"] : index["offset"] + index["length"]]
        require(xxh3(region) == index["checksum"], "frame index checksum")
        covered = 0  # records of the first `groups` groups only
        for g in range(index["groups"]):
            for p in range(ncols):
                raw = int(blocks[g, p]["raw"])
                covered += -(-raw // segment) if raw > segment else 0
        got = np.frombuffer(region, "<u8").reshape(-1, 2).tolist()
        require([tuple(r) for r in got] == frame_records[:covered], "frame index records")
    return out


# -- the annotated dump (FORMAT.md, *A complete file, byte by byte*) -----------------------------


def _hex(data: bytes) -> str:
    return " ".join(f"{b:02x}" for b in data)


def dump(path: str | Path) -> str:
    """Every byte of a small file, field by field: ``offset  bytes  meaning``. JSON is shown as
    its text, runs of zero padding as ``00 x N``; 8-byte lines for everything else."""
    data = Path(path).read_bytes()
    f = read(path)
    lines: list[str] = []
    at = 0

    def field_(size: int, meaning: str, text: str | None = None) -> None:
        nonlocal at
        chunk = data[at : at + size]
        require(len(chunk) == size, "dump past the end")
        shown = text if text is not None else _hex(chunk)
        lines.append(f"{at:04x}  {shown:<24}  {meaning}")
        at += size

    def u(size: int, name: str) -> int:
        value = int.from_bytes(data[at : at + size], "little")
        field_(size, f"{name} = {value}")
        return value

    def checksum_field(name: str) -> None:
        field_(8, f"{name} = {int.from_bytes(data[at : at + 8], 'little'):#018x}")

    def pad_to(end: int, what: str) -> None:
        if end > at:
            require(not any(data[at:end]), "padding not zero")
            field_(end - at, f"zero padding to {end:#x} ({what})", f"00 x {end - at}")

    def json_field(length: int, what: str) -> None:
        text = data[at : at + length].decode("utf-8")
        field_(length, f"{what} ({length} bytes, shown as text)", "JSON")
        lines.append(f"      {text}")

    lines.append("-- header")
    field_(8, "magic \\x89BALE\\r\\n\\x1a")
    u(2, "major")
    u(2, "minor")
    hlen = u(4, "json_length")
    checksum_field("json_checksum")
    json_field(hlen, "header JSON")
    pad_to(aligned(at), "first row group")
    foff = int.from_bytes(data[-40:-32], "little")
    g = 0
    while at < foff:
        lines.append(f"-- row group {g}")
        field_(4, "magic BGRP")
        glen = u(4, "json_length")
        checksum_field("json_checksum")
        json_field(glen, "group JSON")
        pad_to(aligned(at), "data start")
        for p, column in enumerate(f.columns):
            raw = f.raw_blocks[column.name][g]
            require(f.footer["codecs"] == [{"id": "none"}], "the dump shows codec none only")
            require(column.dtype == "int32", "the dump shows int32 columns only")
            values = np.frombuffer(raw, "<i4").tolist()
            for r in range(f.group_rows[g]):
                size = column.row_nbytes
                field_(size, f"block {p} ({column.name}), row {r}: {column.dtype} {values[r]}")
        pad_to(aligned(at), "end of the row group")
        g += 1
    lines.append("-- footer")
    jlen = u(8, "json_length")
    checksum_field("json_checksum")
    json_field(jlen, "footer JSON")
    pad_to(at + (-(at - foff) % 8), "a multiple of 8 from the footer start")
    for g in range(len(f.group_rows)):
        for name in ("row_start", "num_rows", "offset", "length"):
            u(8, f"group table [{g}] {name}")
    for g in range(len(f.group_rows)):
        for p in range(len(f.columns)):
            for name in ("offset", "stored_size", "raw_size"):
                u(8, f"block table [{g}, {p}] {name}")
            checksum_field(f"block table [{g}, {p}] checksum")
            u(4, f"block table [{g}, {p}] codec (index into codecs)")
            u(4, f"block table [{g}, {p}] reserved")
    lines.append("-- trailer")
    u(8, "footer_offset")
    u(8, "footer_length")
    checksum_field("footer_checksum")
    u(2, "major")
    u(2, "minor")
    u(4, "reserved")
    field_(8, "magic BALE.END")
    require(at == len(data), "bytes left after the trailer")
    return "\n".join(lines) + "\n"


def undump(text: str) -> bytes:
    """The file bytes that an annotated dump (as printed by ``dump``) shows."""
    out = bytearray()
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("--") or not line.strip():
            continue
        shown = line[6:30].strip()
        if shown == "JSON":
            out += lines[i][6:].encode("utf-8")
            i += 1
        elif shown.startswith("00 x "):
            out += bytes(int(shown[5:]))
        else:
            out += bytes.fromhex(shown)
    return bytes(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--dump", action="store_true", help="print the annotated hex dump")
    args = parser.parse_args(argv)
    if args.dump:
        sys.stdout.write(dump(args.path))
        return 0
    f = read(args.path)
    for column in f.columns:
        shown = f"unsupported: {column.unsupported}" if column.unsupported else None
        print(f"{column.name}\t{f.num_rows}\t{shown or f.value_hash(column.name)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
