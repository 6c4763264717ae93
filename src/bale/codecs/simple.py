"""The byte-stream codecs: none, lz4 (block format) and zstd (frame format, with levels)."""

from __future__ import annotations

import functools
import threading
from types import ModuleType
from typing import Any, ClassVar

from bale._types import Buffer
from bale.codecs.base import Codec, decode_error, encode_error, import_library
from bale.errors import CodecError


@functools.cache
def _lz4_block() -> ModuleType:
    return import_library("lz4.block", "lz4")


@functools.cache
def _zstandard() -> ModuleType:
    return import_library("zstandard", "zstandard")


class NoCompression(Codec):
    """Stores bytes as they are: the right choice for JPEG/PNG and other compressed media."""

    id: ClassVar[str] = "none"

    def config(self) -> dict[str, Any]:
        return {"id": self.id}

    def encode(self, data: memoryview) -> Buffer:
        return data

    def decode(self, data: memoryview, raw_size: int) -> Buffer:
        return data


class LZ4(Codec):
    """LZ4 block format (no size prefix; the block record holds the decoded size)."""

    id: ClassVar[str] = "lz4"

    def __init__(self, acceleration: int = 1) -> None:
        if not 1 <= acceleration <= 65537:
            raise CodecError(f"lz4 acceleration must be in 1..65537, got {acceleration}")
        self.acceleration = int(acceleration)

    def config(self) -> dict[str, Any]:
        return {"id": self.id, "acceleration": self.acceleration}

    def encode(self, data: memoryview) -> Buffer:
        block = _lz4_block()
        try:
            return block.compress(  # type: ignore[no-any-return]
                data, mode="fast", acceleration=self.acceleration, store_size=False
            )
        except (block.LZ4BlockError, ValueError) as exc:
            raise encode_error(self, exc) from exc

    def decode(self, data: memoryview, raw_size: int) -> Buffer:
        block = _lz4_block()
        # ValueError: a size lz4 cannot represent; LZ4BlockError: damaged or mis-sized bytes.
        try:
            return block.decompress(data, uncompressed_size=raw_size)  # type: ignore[no-any-return]
        except (block.LZ4BlockError, ValueError) as exc:
            raise decode_error(self, exc) from exc


class Zstd(Codec):
    """Zstandard frames (content size recorded in each frame), levels 1..22 (negative: faster)."""

    id: ClassVar[str] = "zstd"

    def __init__(self, level: int = 3) -> None:
        if not -7 <= level <= 22:
            raise CodecError(f"zstd level must be in -7..22, got {level}")
        self.level = int(level)
        # zstandard's (de)compressor objects are not thread-safe: one per thread.
        self._local = threading.local()

    def config(self) -> dict[str, Any]:
        return {"id": self.id, "level": self.level}

    def encode(self, data: memoryview) -> Buffer:
        zstandard = _zstandard()
        compressor = getattr(self._local, "compressor", None)
        try:
            if compressor is None:
                compressor = zstandard.ZstdCompressor(level=self.level, write_content_size=True)
                self._local.compressor = compressor
            return compressor.compress(data)  # type: ignore[no-any-return]
        except zstandard.ZstdError as exc:
            raise encode_error(self, exc) from exc

    def decode(self, data: memoryview, raw_size: int) -> Buffer:
        zstandard = _zstandard()
        decompressor = getattr(self._local, "decompressor", None)
        if decompressor is None:
            decompressor = zstandard.ZstdDecompressor()
            self._local.decompressor = decompressor
        try:
            return decompressor.decompress(data, max_output_size=raw_size)  # type: ignore[no-any-return]
        except zstandard.ZstdError as exc:
            raise decode_error(self, exc) from exc

    def __getstate__(self) -> dict[str, Any]:
        return {"level": self.level}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["level"])  # type: ignore[misc]
