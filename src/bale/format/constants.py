"""Fixed numbers of the bale format: magic bytes, the format version, sizes. Defined once here."""

from __future__ import annotations

from typing import Final

#: (major, minor). A reader refuses a newer major; a newer minor only adds ignorable fields.
FORMAT_VERSION: Final[tuple[int, int]] = (1, 1)

#: First 8 bytes of every bale file (PNG-style: non-ASCII byte, name, CR LF, ^Z, LF).
FILE_MAGIC: Final[bytes] = b"\x89BALE\r\n\x1a"
#: Last 8 bytes of every complete bale file.
TRAILER_MAGIC: Final[bytes] = b"BALE.END"
#: First 4 bytes of every row group, so `repair` can find groups without a footer.
GROUP_MAGIC: Final[bytes] = b"BGRP"

#: Header prefix: magic(8) major(u16) minor(u16) json_length(u32) json_xxh3(u64).
HEADER_PREFIX_SIZE: Final[int] = 24
#: Row-group prefix: magic(4) json_length(u32) json_xxh3(u64).
GROUP_PREFIX_SIZE: Final[int] = 16
#: Trailer: footer_offset(u64) footer_length(u64) footer_xxh3(u64) major(u16) minor(u16)
#: reserved(u32) magic(8).
TRAILER_SIZE: Final[int] = 40

#: Row groups and blocks start at multiples of this, so uncompressed arrays are aligned views.
ALIGNMENT: Final[int] = 64

#: A block whose raw size exceeds the file's segment size is stored as several codec frames,
#: keeping every frame under the 2 GiB buffer limit of lz4 and blosc2.
DEFAULT_SEGMENT_BYTES: Final[int] = 1 << 30
MAX_SEGMENT_BYTES: Final[int] = (1 << 31) - (1 << 20)

#: Upper bound on header/group JSON, a sanity check against corrupt length fields.
MAX_JSON_BYTES: Final[int] = 1 << 28
