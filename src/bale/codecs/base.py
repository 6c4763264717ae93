"""The codec contract: a codec is a value, an id plus a JSON config that fully describes it."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from types import ModuleType
from typing import Any, ClassVar

from bale._types import Buffer
from bale.errors import CodecError, CorruptFileError, UnsupportedFeatureError


class Codec(ABC):
    """Compresses and decompresses one frame of bytes.

    Two codecs share an ``id`` only if each decodes the other's bytes; ids are permanent. Every
    parameter that affects encoding is in ``config()``, and decoding never depends on a library
    default, so a file decodes the same after any library upgrade.

    Building a codec never imports its compression library; the first ``encode`` or ``decode``
    does. Library errors leave a codec as bale errors: ``decode`` raises CorruptFileError for
    bytes that do not decode, ``encode`` raises CodecError.
    """

    id: ClassVar[str]

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """The JSON form stored in the file, always including ``"id"``."""

    @abstractmethod
    def encode(self, data: memoryview) -> Buffer:
        """Compress one frame (at most MAX_SEGMENT_BYTES of input). CodecError if it fails."""

    @abstractmethod
    def decode(self, data: memoryview, raw_size: int) -> Buffer:
        """Decompress one frame whose decoded size is known to be ``raw_size``. CorruptFileError
        if the bytes do not decode; the caller checks the decoded size."""

    def decode_into(self, data: memoryview, out: memoryview) -> int:
        """Decompress one frame into ``out`` (exactly its decoded size); returns the bytes
        written. Codecs whose library can write into a caller's buffer override this to skip a
        copy (blosc2); the others decode and copy."""
        decoded = self.decode(data, len(out))
        size = memoryview(decoded).nbytes
        if size == len(out):
            out[:] = memoryview(decoded).cast("B")
        return size

    def warm_up(self) -> None:
        """Import this codec's library and do its one-time set-up now (both happen on first
        use otherwise): call it before timing encodes or decodes."""
        sample = memoryview(bytes(256))
        self.decode(memoryview(self.encode(sample)), len(sample))

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


class UnsupportedCodec(Codec):
    """The stand-in for a codec id this bale does not know (a later minor version added it). A
    file using it opens; an empty block needs no decoding, and decoding any other block raises
    UnsupportedFeatureError (the caller adds the file, column and rows). Its ``config()`` is the
    stored config, unchanged."""

    id: ClassVar[str] = ""  # the stored id is ``codec_id``: ids of this class vary

    def __init__(self, stored: dict[str, Any]) -> None:
        self.stored = dict(stored)
        self.codec_id = str(stored.get("id"))

    def config(self) -> dict[str, Any]:
        return dict(self.stored)

    def _unsupported(self) -> UnsupportedFeatureError:
        return UnsupportedFeatureError(
            f"unknown codec {self.codec_id!r} (written by a newer bale? upgrade bale to read it)"
        )

    def encode(self, data: memoryview) -> Buffer:
        raise self._unsupported()

    def decode(self, data: memoryview, raw_size: int) -> Buffer:
        raise self._unsupported()

    def __repr__(self) -> str:
        return f"UnsupportedCodec({self.codec_id!r})"


def import_library(module: str, distribution: str) -> ModuleType:
    """A codec library, imported at first use rather than by ``import bale``: blosc2 alone takes
    0.2 s to import (it pulls in httpx, pydantic and rich), and most files need one library."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"this codec needs {module!r}, a dependency of bale that is not installed: "
            f"pip install {distribution}"
        ) from exc


def decode_error(codec: Codec, exc: Exception) -> CorruptFileError:
    """The bale error for a frame ``codec``'s library could not decode: the bytes are damaged.

    With ``encode_error``, the one place codec library errors become bale's; each codec catches
    its own library's exception types and raises this ``from exc``. A plain ``try`` rather than
    a context manager: it wraps every frame, and a ``with`` block cost about 1 us per frame.
    Callers add the file, column and rows they know.
    """
    return CorruptFileError(f"frame does not decode with {codec!r} ({type(exc).__name__}: {exc})")


def encode_error(codec: Codec, exc: Exception) -> CodecError:
    """The bale error for an input ``codec``'s library refused to encode."""
    return CodecError(f"encoding with {codec!r} failed ({type(exc).__name__}: {exc})")
