"""Codec library errors leave bale's codecs as CorruptFileError (decode) or CodecError (encode)."""

from __future__ import annotations

from typing import Any, ClassVar, get_args

import pytest

import bale
from bale.codecs import LZ4, Blosc2, Buffer, Codec, NoCompression, Zstd
from bale.codecs.base import decode_error, encode_error
from bale.codecs.blosc import Blosc2Compressor, Blosc2Filter
from bale.codecs.framing import decode_block, encode_block

RAW = b"the quick brown fox jumps over the lazy dog " * 100
LIBRARY_CODECS: list[Codec] = [LZ4(), Zstd(3), Blosc2("zstd", 1, ("shuffle",), 4), Blosc2("lz4")]


def _damaged(codec: Codec) -> dict[str, bytes]:
    frame = bytes(codec.encode(memoryview(RAW)))
    return {
        "garbage": b"\x13\x37" * 64,
        "truncated": frame[: len(frame) // 2],
        "empty": b"",
    }


@pytest.mark.parametrize("codec", LIBRARY_CODECS, ids=repr)
@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_frame_that_does_not_decode_raises_corrupt_file_error(codec: Codec, damage: str) -> None:
    frame = _damaged(codec)[damage]
    with pytest.raises(bale.CorruptFileError, match="does not decode with") as info:
        codec.decode(memoryview(frame), len(RAW))
    assert repr(codec) in str(info.value)
    assert info.value.__cause__ is not None  # the library's own error, kept for debugging
    assert not isinstance(info.value.__cause__, bale.BaleError)


def test_lz4_with_too_small_a_raw_size_raises_corrupt_file_error() -> None:
    frame = LZ4().encode(memoryview(RAW))
    with pytest.raises(bale.CorruptFileError):
        LZ4().decode(memoryview(bytes(frame)), len(RAW) - 1)


@pytest.mark.parametrize("codec", LIBRARY_CODECS, ids=repr)
def test_a_damaged_frame_inside_a_segmented_block_raises_corrupt_file_error(codec: Codec) -> None:
    parts = encode_block(codec, memoryview(RAW), 1000)
    payload = bytearray(b"".join(bytes(p) for p in parts))
    first_frame_length = int.from_bytes(payload[:8], "little")
    payload[8 : 8 + first_frame_length] = b"\x00" * first_frame_length
    with pytest.raises(bale.CorruptFileError):
        decode_block(codec, memoryview(bytes(payload)), len(RAW), 1000)


def test_framing_errors_are_corrupt_file_errors() -> None:
    payload = b"".join(bytes(p) for p in encode_block(NoCompression(), memoryview(RAW), 1000))
    for bad, raw_size in [(payload[:-1], len(RAW)), (payload + b"\x00", len(RAW)), (b"x", 0)]:
        with pytest.raises(bale.CorruptFileError):
            decode_block(NoCompression(), memoryview(bad), raw_size, 1000)


class _LibraryFailure(Exception):
    """Stands in for a codec library's own exception type."""


class _Failing(Codec):
    """A codec whose library fails, translating the error the way bale's codecs do."""

    id: ClassVar[str] = "failing"

    def config(self) -> dict[str, Any]:
        return {"id": self.id}

    def encode(self, data: memoryview) -> Buffer:
        try:
            raise _LibraryFailure("out of cheese")
        except _LibraryFailure as exc:
            raise encode_error(self, exc) from exc

    def decode(self, data: memoryview, raw_size: int) -> Buffer:
        try:
            raise _LibraryFailure("bad bytes")
        except _LibraryFailure as exc:
            raise decode_error(self, exc) from exc


def test_a_library_error_while_encoding_raises_codec_error() -> None:
    with pytest.raises(bale.CodecError, match=r"encoding with _Failing\(\) failed") as info:
        _Failing().encode(memoryview(b"x"))
    assert "_LibraryFailure: out of cheese" in str(info.value)
    assert isinstance(info.value.__cause__, _LibraryFailure)


def test_a_library_error_while_decoding_raises_corrupt_file_error() -> None:
    with pytest.raises(bale.CorruptFileError, match="_LibraryFailure: bad bytes") as info:
        _Failing().decode(memoryview(b"x"), 1)
    assert isinstance(info.value.__cause__, _LibraryFailure)
    assert info.value.path is None and info.value.column is None  # the caller knows those


def test_blosc2_names_are_the_blosc2_member_names_in_lower_case() -> None:
    # Validating a config needs no blosc2 import because of this; encoding relies on it.
    blosc2 = pytest.importorskip("blosc2")
    for cname in get_args(Blosc2Compressor):
        assert blosc2.Codec[cname.upper()].name.lower() == cname
    for name in get_args(Blosc2Filter):
        assert blosc2.Filter[name.upper()].name.lower() == name
