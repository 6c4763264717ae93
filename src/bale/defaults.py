"""Default codecs and row-group size, chosen by measurement (see docs/DECISIONS.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from bale.codecs import Blosc2, Codec, NoCompression, Zstd
from bale.format.schema import Array, Bytes, ColumnType

#: Target uncompressed bytes per row group: large sequential reads, quick to decode.
DEFAULT_ROW_GROUP_BYTES: Final[int] = 4 << 20

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


def default_codec(column_type: ColumnType, sample: Sequence[bytes] = ()) -> Codec:
    """The codec a column gets when none is given. The choice is stored in the file, so later
    changes here never affect reading existing files."""
    if isinstance(column_type, Array):
        return Blosc2("zstd", 1, ("shuffle",)).for_itemsize(column_type.numpy_dtype.itemsize)
    if isinstance(column_type, Bytes) and looks_compressed(sample[:64]):
        return NoCompression()
    return Zstd(3)
