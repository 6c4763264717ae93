"""The codec contract: a codec is a value, an id plus a JSON config that fully describes it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

Buffer = bytes | bytearray | memoryview


class Codec(ABC):
    """Compresses and decompresses one frame of bytes.

    Two codecs share an ``id`` only if each decodes the other's bytes; ids are permanent. Every
    parameter that affects encoding is in ``config()``, and decoding never depends on a library
    default, so a file decodes the same after any library upgrade.
    """

    id: ClassVar[str]

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """The JSON form stored in the file, always including ``"id"``."""

    @abstractmethod
    def encode(self, data: memoryview) -> Buffer:
        """Compress one frame (at most MAX_SEGMENT_BYTES of input)."""

    @abstractmethod
    def decode(self, data: memoryview, raw_size: int) -> Buffer:
        """Decompress one frame whose decoded size is known to be ``raw_size``."""

    def for_itemsize(self, itemsize: int) -> Codec:
        """This codec tuned to a column's element size (blosc2's shuffle needs it)."""
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Codec) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.config().items(), key=lambda kv: kv[0])).__repr__())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "id")
        return f"{type(self).__name__}({args})"
