"""The on-disk format in code: bytes and JSON <-> plain dataclasses. No file I/O, no codecs."""
