"""Byte sources and sinks: positional reads, locked writes, atomic renames, the page cache. No
format knowledge: alignment and layout come from the callers."""

from bale.io.sink import FileSink, partial_path_for
from bale.io.source import LocalSource

__all__ = ["FileSink", "LocalSource", "partial_path_for"]
