"""The codec advisor's plain words: each column's data, and how a codec
makes a column smaller. No measuring and no choosing here; ``codec_report`` composes the reasons."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bale._core.defaults import is_channels_last_images, looks_compressed
from bale.codecs import Blosc2
from bale.format.schema import Array, ColumnType, String

__all__ = [
    "describe_column",
    "how_it_works",
    "mbps_text",
    "ratio_text",
    "type_text",
]


def type_text(column_type: ColumnType) -> str:
    """A column type as short text: ``uint8[64,64,3]``, ``bytes``, ``string``."""
    if isinstance(column_type, Array):
        dims = ",".join(str(d) for d in column_type.shape)
        return f"{column_type.dtype}[{dims}]" if dims else column_type.dtype
    return column_type.kind


def describe_column(column_type: ColumnType, data: Any, sniff: Sequence[bytes]) -> str:
    """A column's data in plain words: "uint8 images 64x64x3", "float32 arrays [8], 51% zeros",
    "JPEG bytes (already compressed, about 46 KiB a row)", "text (about 60 bytes a row)".
    ``data``: the column in stored form; ``sniff``: first rows of a bytes column."""
    if isinstance(column_type, Array):
        shape = column_type.shape
        if is_channels_last_images(column_type):
            return f"{column_type.dtype} images {'x'.join(str(d) for d in shape)}"
        text = f"{column_type.dtype} arrays" + (f" {list(shape)}" if shape else "")
        if column_type.numpy_dtype.kind in "biufc" and data.size:
            zeros = float(np.count_nonzero(data == 0)) / data.size
            if zeros >= 0.05:
                text += f", {zeros:.0%} zeros"
        return text
    mean = sum(len(r) for r in data) / max(len(data), 1)
    if isinstance(column_type, String):
        return f"text (about {mean:.0f} bytes a row)"
    if looks_compressed(sniff):
        kind = _media_kind(sniff)
        return f"{kind} bytes (already compressed, about {mean / 1024:.0f} KiB a row)"
    return f"bytes (about {mean:.0f} bytes a row)"


def _media_kind(sniff: Sequence[bytes]) -> str:
    for magic, kind in ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG", "PNG"), (b"RIFF", "WebP/RIFF")):
        if sum(r.startswith(magic) for r in sniff) * 2 > len(sniff):
            return kind
    return "compressed"


def how_it_works(spec: str, config: Mapping[str, Any], column_type: ColumnType) -> str:
    """How the codec ``spec`` (recorded as ``config``) makes this column smaller, in a phrase."""
    codec_id = config["id"]
    if codec_id == "lz4":
        return "lz4 finds repeated byte sequences and has the fastest decoder of the compressors"
    if codec_id == "zstd":
        what = {
            "array": "runs of zeros and repeated values",
            "string": "repeated words and phrases",
        }
        found = what.get(column_type.kind, "repeated byte sequences")
        if is_channels_last_images(column_type):
            found = "repeated pixel patterns"
        return f"zstd level {config['level']} stores {found} compactly"
    if codec_id != Blosc2.id:
        return f"{spec} compresses it best under this goal"
    cname, filters, typesize = config["cname"], tuple(config["filters"]), config["typesize"]
    images = is_channels_last_images(column_type)
    if "bytedelta" in filters:
        if images and typesize > 1:
            return (
                f"byte-shuffle splits the {typesize} channels into streams and bytedelta lets "
                f"{cname} see smooth pixel differences"
            )
        if typesize > 1:
            return f"byte-shuffle + bytedelta lets {cname} see small differences between neighbouring values"
        return f"bytedelta lets {cname} see small differences between neighbouring bytes"
    if "bitshuffle" in filters:
        return f"bit-shuffle groups each bit of the values together, giving {cname} long runs"
    if "shuffle" in filters and typesize > 1:
        return f"byte-shuffle puts each byte of the {typesize}-byte values together, giving {cname} runs"
    return f"blosc2 {cname} level {config['clevel']} compresses it best under this goal"


def ratio_text(value: float) -> str:
    """A compression ratio: ``1.44x``, or three decimals close to 1 (``1.031x``)."""
    return f"{value:.2f}x" if value >= 1.1 else f"{value:.3f}x"


def mbps_text(value: float) -> str:
    """A speed in MB/s; "memory speed" for no codec work at all."""
    return "memory speed" if math.isinf(value) else f"{value:,.0f} MB/s"
