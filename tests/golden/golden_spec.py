"""What the golden files of each format version hold: their columns, codecs, write phases and
every value. ``FORMATS`` maps each directory under tests/golden/ (``v1_0``, ``v1_1``) to its files.

Shared by ``make_golden.py`` (which wrote the files once) and ``test_golden.py`` (which checks
them). Values come from closed-form formulas and raw bit patterns, never from a random generator
or a float conversion whose rounding could change between library versions.

Never change what a file below holds: the golden files are fixed, so a changed formula only makes
the test fail. Add a new file (and regenerate only that one, by hand) to pin something new:

    python tests/golden/make_golden.py --format v1_1 --only NEW.bale

writes ``v1_1/NEW.bale``, adds its footer to ``v1_1/expected.json`` and rewrites
``v1_1/SHA256SUMS``, touching no other file (it refuses to replace an existing one without
``--force``). Only the current format's directory can be written: bale writes 1.1 files now, so
the 1.0 files can never be written again, only read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xxhash

from bale.format.dtypes import DTYPES_BY_NAME
from bale.format.schema import Array, Bytes, ColumnType, String

TEXTS = [
    "",
    "a",
    "caf\u00e9",
    "\u65e5\u672c\u8a9e",
    "\U0001f600 emoji",
    "nul\x00inside",
    "line\nbreak\ttab",
    "lone \ud800 surrogate",
    " ",
    "x" * 300,
]
BLOBS = [
    b"",
    b"\x00",
    b"\xff\xff\xff",
    b"\xff\xd8\xff\xe0 jpeg-like",
    bytes(range(256)),
    b"BGRP",  # the row-group magic inside data must not confuse anything
    b"BALE.END",
]

# Names of every array dtype this bale knows (ml_dtypes' float8 variants included).
ALL_DTYPES = sorted(DTYPES_BY_NAME)


def pattern(dtype_name: str, rows: range, shape: tuple[int, ...] = ()) -> np.ndarray:
    """Deterministic values of any dtype, built from raw bytes (NaN payloads and all)."""
    dtype = DTYPES_BY_NAME[dtype_name]
    count = len(rows) * int(np.prod(shape, dtype=np.int64))
    if dtype_name == "bool":
        flat = np.array(
            [(k * 7 + j) % 3 == 0 for k in rows for j in range(count // max(len(rows), 1))],
            dtype=bool,
        )
        return flat.reshape((len(rows), *shape))
    nbytes = count * dtype.itemsize
    per_row = nbytes // max(len(rows), 1)
    raw = np.array(
        [(k * 37 + j * 11 + 5) % 256 for k in rows for j in range(per_row)], dtype=np.uint8
    )
    return raw.view(dtype).reshape((len(rows), *shape))


@dataclass(frozen=True)
class Phase:
    """One Writer session: rows start..stop, written with mode "w" (first) or "a" (later).
    ``codecs`` (later sessions only) overrides the codecs of the row groups it appends."""

    start: int
    stop: int
    row_group_rows: int
    metadata: dict[str, Any] = field(default_factory=dict)
    codecs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GoldenFile:
    schema: dict[str, ColumnType]
    codecs: dict[str, str]
    columns: Callable[[range], dict[str, Any]]
    phases: tuple[Phase, ...]
    segment_bytes: int | None = None  # None: the default (1 GiB)

    @property
    def num_rows(self) -> int:
        return self.phases[-1].stop if self.phases else 0

    @property
    def metadata(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for phase in self.phases:
            merged.update(phase.metadata)
        return merged

    @property
    def row_group_sizes(self) -> tuple[int, ...]:
        sizes: list[int] = []
        for phase in self.phases:
            n = phase.stop - phase.start
            full, rest = divmod(n, phase.row_group_rows)
            sizes += [phase.row_group_rows] * full + ([rest] if rest else [])
        return tuple(sizes)

    def group_codecs(self) -> list[dict[str, str]]:
        """The codec each row group's blocks were written with, column by column."""
        out: list[dict[str, str]] = []
        for number, phase in enumerate(self.phases):
            codecs = {**self.codecs, **phase.codecs} if number else dict(self.codecs)
            groups = -(-(phase.stop - phase.start) // phase.row_group_rows)
            out += [codecs] * groups
        return out

    def values(self) -> dict[str, Any]:
        return self.columns(range(self.num_rows))


# -- value hashes (docs/FORMAT.md, *Value hashes*) ------------------------------------------------


def canonical_bytes(column_type: ColumnType, values: Any) -> bytes:
    """A column's decoded values in the spec's canonical byte form: the raw bytes of one block
    holding every row. Arrays: the C-order little-endian bytes of the ``(N, *shape)`` array (bool
    as 0/1). Bytes and strings: N ``u64`` row lengths, then the rows (strings as UTF-8 with
    ``surrogatepass``)."""
    if isinstance(column_type, Array):
        array = np.asarray(values)
        if array.dtype == np.bool_:
            return (array != 0).astype(np.uint8).tobytes()
        dtype = column_type.numpy_dtype
        return np.ascontiguousarray(array, dtype.newbyteorder("<")).tobytes()
    rows = [
        v.encode("utf-8", "surrogatepass") if isinstance(column_type, String) else bytes(v)
        for v in values
    ]
    lengths = np.array([len(r) for r in rows], dtype="<u8")
    return lengths.tobytes() + b"".join(rows)


def value_hash(column_type: ColumnType, values: Any) -> str:
    """XXH3-64 (seed 0) of the canonical bytes, as 16 lower-case hex digits."""
    return f"{xxhash.xxh3_64_intdigest(canonical_bytes(column_type, values)):016x}"


# -- one file per codec family -------------------------------------------------------------------


def _codec_columns(tag: str) -> Callable[[range], dict[str, Any]]:
    def columns(rows: range) -> dict[str, Any]:
        k = np.arange(rows.start, rows.stop, dtype=np.int64)
        floats = k / 8.0
        floats[k == 3] = np.nan
        floats[k == 4] = -0.0
        floats[k == 5] = np.inf
        floats[k == 6] = -np.inf
        return {
            "ints": np.stack([k, -k * 1000, k * k], axis=1).astype(np.int32),
            "floats": floats,
            "text": [f"{tag} row {i} " + "\u00e9" * (i % 3) for i in rows],
            "blob": bytes_rows(rows),
        }

    return columns


def bytes_rows(rows: range) -> list[bytes]:
    return [bytes((i * j) % 256 for j in range(i % 11)) for i in rows]


_CODEC_SCHEMA: dict[str, ColumnType] = {
    "ints": Array("int32", (3,)),
    "floats": Array("float64"),
    "text": String(),
    "blob": Bytes(),
}


def _codec_file(codec: str, tag: str) -> GoldenFile:
    return GoldenFile(
        schema=_CODEC_SCHEMA,
        codecs=dict.fromkeys(_CODEC_SCHEMA, codec),
        columns=_codec_columns(tag),
        phases=(Phase(0, 50, 16, {"codec": codec}),),
    )


# -- blosc2 settings -----------------------------------------------------------------------------


def _blosc_columns(rows: range) -> dict[str, Any]:
    k = np.arange(rows.start, rows.stop, dtype=np.int64)
    return {
        "img": ((k[:, None] * 3 + np.arange(48)[None, :]) % 256)
        .astype(np.uint8)
        .reshape(-1, 4, 4, 3),
        "f32": ((k[:, None] + np.arange(16)[None, :]) * 0.125).astype(np.float32),
        "i64": k**3 - 500,
        "u16": (k[:, None] * 31 + np.arange(5)[None, :]).astype(np.uint16),
        "f64": k.astype(np.float64) * 1.5,
    }


BLOSC_FILE = GoldenFile(
    schema={
        "img": Array("uint8", (4, 4, 3)),
        "f32": Array("float32", (16,)),
        "i64": Array("int64"),
        "u16": Array("uint16", (5,)),
        "f64": Array("float64"),
    },
    codecs={
        "img": "blosc2:zstd:1:shuffle+bytedelta",
        "f32": "blosc2:lz4:5:bitshuffle",
        "i64": "blosc2:zlib:3:bitshuffle",
        "u16": "blosc2:blosclz:9:noshuffle",
        "f64": "blosc2:lz4hc:4:shuffle",
    },
    columns=_blosc_columns,
    phases=(Phase(0, 40, 15, {"what": "blosc2 settings"}),),
)


# -- every column kind ---------------------------------------------------------------------------

_KIND_CODECS = ["none", "lz4", "zstd", "blosc2"]


def _all_kinds_schema() -> dict[str, ColumnType]:
    schema: dict[str, ColumnType] = {f"s_{name}": Array(name) for name in ALL_DTYPES}
    schema.update(
        {
            "bf16_mat": Array("bfloat16", (2, 3)),
            "f8_vec": Array("float8_e5m2", (4,)),
            "bool_grid": Array("bool", (3, 3)),
            "c64_pair": Array("complex64", (2,)),
            "i16_cube": Array("int16", (2, 2, 2)),
            "text": String(),
            "blob": Bytes(),
        }
    )
    return schema


def _all_kinds_columns(rows: range) -> dict[str, Any]:
    out: dict[str, Any] = {f"s_{name}": pattern(name, rows) for name in ALL_DTYPES}
    out["bf16_mat"] = pattern("bfloat16", rows, (2, 3))
    out["f8_vec"] = pattern("float8_e5m2", rows, (4,))
    out["bool_grid"] = pattern("bool", rows, (3, 3))
    out["c64_pair"] = pattern("complex64", rows, (2,))
    out["i16_cube"] = pattern("int16", rows, (2, 2, 2))
    out["text"] = [TEXTS[i % len(TEXTS)] + f"#{i}" for i in rows]
    out["blob"] = [BLOBS[i % len(BLOBS)] + i.to_bytes(2, "little") for i in rows]
    return out


_ALL_KINDS_SCHEMA = _all_kinds_schema()
ALL_KINDS_FILE = GoldenFile(
    schema=_ALL_KINDS_SCHEMA,
    codecs={name: _KIND_CODECS[i % 4] for i, name in enumerate(_ALL_KINDS_SCHEMA)},
    columns=_all_kinds_columns,
    phases=(
        Phase(
            0,
            30,
            7,
            {
                "classes": ["cat", "dog", "\u732b"],
                "nested": {"a": [1, 2.5, None, True, False], "b": {"c": "d"}},
                "big": 2**62,
                "neg": -1.25e-300,
                "empty": {},
                "unicode \u00e9": "\U0001f600",
            },
        ),
    ),
)


# -- appended in several sessions ----------------------------------------------------------------


def _appended_columns(rows: range) -> dict[str, Any]:
    k = np.arange(rows.start, rows.stop, dtype=np.int64)
    return {
        "id": k,
        "vec": np.stack([k, -k], axis=1).astype(np.float32),
        "name": [f"n{i}" for i in rows],
    }


APPENDED_FILE = GoldenFile(
    schema={"id": Array("int64"), "vec": Array("float32", (2,)), "name": String()},
    codecs={"id": "lz4", "vec": "blosc2", "name": "zstd"},
    columns=_appended_columns,
    phases=(
        Phase(0, 20, 8, {"version": 1, "source": "golden"}),
        Phase(20, 31, 5, {"version": 2}),
        Phase(31, 40, 4, {"appended": ["a", "b"]}),
    ),
)


# -- blocks split into many frames ---------------------------------------------------------------


def _segmented_columns(rows: range) -> dict[str, Any]:
    k = np.arange(rows.start, rows.stop, dtype=np.int64)
    return {
        "a": (k[:, None] * 100 + np.arange(20)[None, :]).astype(np.int64),
        "b": [bytes([i % 256]) * (i * 7 % 60) for i in rows],
        "c": ((k[:, None] - np.arange(30)[None, :]) * 0.5).astype(np.float32),
        "d": [f"s{i}" * (i % 9) for i in rows],
    }


SEGMENTED_FILE = GoldenFile(
    schema={"a": Array("int64", (20,)), "b": Bytes(), "c": Array("float32", (30,)), "d": String()},
    codecs={"a": "zstd", "b": "none", "c": "blosc2", "d": "lz4"},
    columns=_segmented_columns,
    phases=(Phase(0, 24, 10, {}),),
    segment_bytes=100,
)


# -- no rows at all ------------------------------------------------------------------------------

EMPTY_FILE = GoldenFile(
    schema={"x": Array("float32", (2,)), "s": String()},
    codecs={"x": "lz4", "s": "zstd"},
    columns=lambda rows: {
        "x": np.zeros((len(rows), 2), np.float32),
        "s": ["" for _ in rows],
    },
    phases=(Phase(0, 0, 1, {"empty": True}),),
)


FILES_1_0: dict[str, GoldenFile] = {
    "codec_none.bale": _codec_file("none", "none"),
    "codec_lz4.bale": _codec_file("lz4", "lz4"),
    "codec_zstd.bale": _codec_file("zstd:9", "zstd"),
    "codec_blosc2.bale": _codec_file("blosc2", "blosc2"),
    "blosc2_settings.bale": BLOSC_FILE,
    "all_kinds.bale": ALL_KINDS_FILE,
    "appended.bale": APPENDED_FILE,
    "segmented.bale": SEGMENTED_FILE,
    "empty.bale": EMPTY_FILE,
}


# == format 1.1: segmented blocks with a frame index ============================================
#
# Small segment sizes, so that blocks of a few kilobytes have many frames: rows that lie inside
# one frame, rows that cross frame boundaries, and (bytes/strings) rows longer than a frame.


def _frames_columns(rows: range) -> dict[str, Any]:
    k = np.arange(rows.start, rows.stop, dtype=np.int64)[:, None]
    j = np.arange(192)[None, :]
    img = ((k * 7 + j * 3 + (j // 24) * k) % 256).astype(np.uint8).reshape(-1, 8, 8, 3)
    f32 = ((k * 10 + np.arange(10)[None, :]) * 0.25 - 100.0).astype(np.float32)
    flat = k[:, 0]
    f32[flat == 5, 0] = np.nan
    f32[flat == 6, 1] = -0.0
    f32[flat == 7, 2] = np.inf
    f32[flat == 8, 3] = -np.inf
    return {"img": img, "f32": f32}


def _frames_file(img_codec: str, f32_codec: str) -> GoldenFile:
    # Groups of 24 rows: img blocks of 4,608 bytes (18 frames of 256), f32 blocks of 960 (4).
    return GoldenFile(
        schema={"img": Array("uint8", (8, 8, 3)), "f32": Array("float32", (10,))},
        codecs={"img": img_codec, "f32": f32_codec},
        columns=_frames_columns,
        phases=(Phase(0, 64, 24, {"codec": img_codec}),),
        segment_bytes=256,
    )


def _var_columns(rows: range) -> dict[str, Any]:
    return {
        "blob": [
            bytes((i * 31 + j * 7) % 256 for j in range(300 if i % 10 == 7 else i * 13 % 97))
            for i in rows
        ],
        "text": [TEXTS[i % len(TEXTS)] + f"#{i}" for i in rows],
        "blob_raw": [BLOBS[i % len(BLOBS)] * (1 + i % 4) for i in rows],
        "text_b2": [f"{i}:" + "\u00e9\u732b" * (i % 13) for i in rows],
    }


# Groups of 20 rows: 160 bytes of row lengths (2 frames of 128) then up to 2 KB of values.
VAR_FILE = GoldenFile(
    schema={"blob": Bytes(), "text": String(), "blob_raw": Bytes(), "text_b2": String()},
    codecs={"blob": "zstd", "text": "lz4", "blob_raw": "none", "text_b2": "blosc2"},
    columns=_var_columns,
    phases=(Phase(0, 45, 20, {"what": "bytes and strings in frames"}),),
    segment_bytes=128,
)


def _appended_frames_columns(rows: range) -> dict[str, Any]:
    k = np.arange(rows.start, rows.stop, dtype=np.int64)
    return {
        "id": k * 1001 - 7,
        "vec": ((k[:, None] * 16 + np.arange(16)[None, :]) * 0.5).astype(np.float32),
        "name": [f"item-{i}-" + "\u00e9" * (i % 17) for i in rows],
        "blob": [bytes([i % 256]) * (i * 5 % 41) for i in rows],
    }


# Two sessions of a 1.1 writer; the second changes two codecs. The frame index covers every
# group; the id blocks (at most 96 bytes) stay unsegmented and have no records.
APPENDED_FRAMES_FILE = GoldenFile(
    schema={
        "id": Array("int64"),
        "vec": Array("float32", (16,)),
        "name": String(),
        "blob": Bytes(),
    },
    codecs={"id": "lz4", "vec": "blosc2:lz4:5:bitshuffle", "name": "zstd", "blob": "none"},
    columns=_appended_frames_columns,
    phases=(
        Phase(0, 30, 12, {"phase": 1, "source": "golden 1.1"}),
        Phase(30, 52, 8, {"phase": 2}, codecs={"vec": "zstd", "name": "lz4"}),
    ),
    segment_bytes=128,
)


def _random_access_columns(rows: range) -> dict[str, Any]:
    k = np.arange(rows.start, rows.stop, dtype=np.int64)[:, None]
    j = np.arange(1024)[None, :]
    return {
        "pixels": ((k * 5 + j * (1 + k % 3)) % 256).astype(np.uint8).reshape(-1, 32, 32),
        "emb": ((k * 64 + np.arange(64)[None, :]) % 2048).astype(np.float16),
        "label": k[:, 0] % 10,
    }


# What Writer(random_access=True) wrote when this file was made (bale 0.1.0): 64 KiB frames,
# spelled out as segment_bytes because random_access now picks its frame size from the rows.
# Groups of 160 rows: pixels blocks of 160 KiB (3 frames), emb blocks of 20 KiB and label blocks
# (unsegmented).
RANDOM_ACCESS_FILE = GoldenFile(
    schema={
        "pixels": Array("uint8", (32, 32)),
        "emb": Array("float16", (64,)),
        "label": Array("int64"),
    },
    codecs={"pixels": "zstd:1", "emb": "blosc2:zstd:1:shuffle+bytedelta", "label": "lz4"},
    columns=_random_access_columns,
    phases=(Phase(0, 320, 160, {"random_access": True}),),
    segment_bytes=64 << 10,
)


FILES_1_1: dict[str, GoldenFile] = {
    "frames_none.bale": _frames_file("none", "none"),
    "frames_lz4.bale": _frames_file("lz4", "lz4"),
    "frames_zstd.bale": _frames_file("zstd:5", "zstd"),
    "frames_blosc2.bale": _frames_file(
        "blosc2:zstd:1:shuffle+bytedelta", "blosc2:lz4:5:bitshuffle"
    ),
    "frames_var.bale": VAR_FILE,
    "appended_frames.bale": APPENDED_FRAMES_FILE,
    "random_access.bale": RANDOM_ACCESS_FILE,
}


# -- every format version ------------------------------------------------------------------------


@dataclass(frozen=True)
class GoldenFormat:
    """One directory of golden files, all written by one version of the format."""

    directory: str
    version: tuple[int, int]
    files: dict[str, GoldenFile]
    max_total_bytes: int  # the directory's files together stay this small


FORMATS: dict[str, GoldenFormat] = {
    "v1_0": GoldenFormat("v1_0", (1, 0), FILES_1_0, 200_000),
    "v1_1": GoldenFormat("v1_1", (1, 1), FILES_1_1, 200_000),
}
