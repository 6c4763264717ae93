"""Type aliases shared by every layer (a leaf: it imports nothing from bale)."""

from __future__ import annotations

Buffer = bytes | bytearray | memoryview  # bytes a codec or a sink takes or gives back

__all__ = ["Buffer"]
