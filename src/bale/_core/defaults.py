"""Default codecs and row-group size, chosen by measurement (the bale repository's
docs/DECISIONS.md has the figures)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from bale.codecs import Blosc2, Codec, NoCompression, Zstd
from bale.format.constants import DEFAULT_SEGMENT_BYTES, MAX_SEGMENT_BYTES
from bale.format.schema import Array, Bytes, ColumnType, Schema

#: Target uncompressed bytes per row group. Compression ratio and speed are flat from 1 to
#: 16 MiB; smaller groups let a shuffle window hold more groups and cut read amplification for
#: random rows, while 1 MiB reads are still large sequential reads (docs/DECISIONS.md).
DEFAULT_ROW_GROUP_BYTES: Final[int] = 1 << 20
#: Frame size aimed at by files written for random access (``Writer(random_access=True)``),
#: before it is fitted to whole rows (``random_access_segment``). On 64x64x3 images a random
#: row then takes about 55 us instead of 1.3 ms, for about 3 % more bytes and slower sequential
#: decoding (docs/DECISIONS.md, "Frame size for random access").
RANDOM_ACCESS_SEGMENT_BYTES: Final[int] = 16 << 10

# Leading bytes of formats that are already compressed: storing them again compressed only
# costs time. JPEG, PNG, GIF, WebP (RIFF), gzip, zip, zstd, xz, bzip2, FLAC, Ogg, MP3 (ID3).
_COMPRESSED_MAGICS: Final[tuple[bytes, ...]] = (
    b"\xff\xd8\xff",
    b"\x89PNG",
    b"GIF8",
    b"RIFF",
    b"\x1f\x8b",
    b"PK\x03\x04",
    b"\x28\xb5\x2f\xfd",
    b"\xfd7zXZ",
    b"BZh",
    b"fLaC",
    b"OggS",
    b"ID3",
)


def looks_compressed(sample: Sequence[bytes]) -> bool:
    """Whether most sampled rows start like an already-compressed file format."""
    if not sample:
        return False
    hits = sum(1 for row in sample if row.startswith(_COMPRESSED_MAGICS))
    return hits * 2 > len(sample)


def is_channels_last_images(column_type: ColumnType) -> bool:
    """Whether a column holds channels-last 8-bit images: 1-byte items whose last dimension
    has 2 to 4 entries (``(H, W, 3)``, and also ``(N, 3)`` colour lists). The one test for it:
    the default codec, the shuffle item size and the advisor's words all use this."""
    if not isinstance(column_type, Array) or not column_type.shape:
        return False
    return column_type.numpy_dtype.itemsize == 1 and 2 <= column_type.shape[-1] <= 4


def shuffle_typesize(column_type: ColumnType) -> int:
    """The element size byte-shuffling filters should use for a column: the channel count for
    channels-last 8-bit images (so R, G and B become separate streams), else the dtype's size."""
    if not isinstance(column_type, Array):
        return 1
    if is_channels_last_images(column_type):
        return column_type.shape[-1]
    return column_type.numpy_dtype.itemsize


def random_access_segment(
    schema: Schema,
    row_bytes: Mapping[str, float] | None = None,
    row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES,
    target: int = RANDOM_ACCESS_SEGMENT_BYTES,
) -> int:
    """The frame size of a file written for random access: a whole number of rows of its widest
    compressed fixed-size column, as many as fit in ``target`` (at least one), so a random row of
    that column decodes exactly one frame; ``target`` when no such column exists.

    Frames help only a compressed column (a random row then decodes its frame, not its block);
    an uncompressed block is read by its byte range anyway, and framing it only costs copies.
    So when ``row_bytes`` (raw bytes per row of each column, from the first rows written) show
    that no compressed column's block would exceed ``target`` (JPEG bytes stored as they are
    beside a label), the file keeps one frame per block (``DEFAULT_SEGMENT_BYTES``)."""
    compressed = [c for c in schema if c.codec.get("id") != NoCompression.id]
    if row_bytes is not None:
        total = sum(row_bytes.get(c.name, 0.0) for c in schema) or 1.0
        largest = max(
            (row_group_bytes * row_bytes.get(c.name, 0.0) / total for c in compressed), default=0
        )
        if largest <= target:
            return DEFAULT_SEGMENT_BYTES
    widest = max(
        (c.type.row_nbytes for c in compressed if isinstance(c.type, Array)),
        default=0,
    )
    if widest == 0:
        return target
    return min(widest * max(1, target // widest), MAX_SEGMENT_BYTES)


def default_codec(column_type: ColumnType, sample: Sequence[bytes] = ()) -> Codec:
    """The codec a column gets when none is given. The choice is stored in the file, so later
    changes here never affect reading existing files."""
    if isinstance(column_type, Array):
        if is_channels_last_images(column_type):
            # Channels-last 8-bit images: split R/G/B into streams, delta-code each, then zstd.
            # 1.44x vs gzip-4's 1.25x on real photos, decoding 3.4x faster (DECISIONS.md).
            return Blosc2(
                "zstd", 1, ("shuffle", "bytedelta"), typesize=shuffle_typesize(column_type)
            )
        # Numeric arrays (activations, features, labels): zstd level 1 matched gzip-4's size
        # on sparse activations while decoding 4.3x faster; shuffling made it worse there.
        return Zstd(1)
    if isinstance(column_type, Bytes) and looks_compressed(sample[:64]):
        return NoCompression()  # JPEG/PNG/...: recompressing gains <1% and costs write speed
    return Zstd(3)
