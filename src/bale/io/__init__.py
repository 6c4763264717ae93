"""Byte sources and sinks: positional reads, locked writes, atomic renames. No format knowledge."""

from bale.io.sink import FileSink, partial_path_for
from bale.io.source import LocalSource

__all__ = ["FileSink", "LocalSource", "partial_path_for"]
