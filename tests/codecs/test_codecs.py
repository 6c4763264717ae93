"""Codecs: round trips, configs, specs, validation, and the multi-frame block framing."""

from __future__ import annotations

import json
import pickle
import struct
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

import bale
from bale.codecs import (
    LZ4,
    Blosc2,
    Codec,
    NoCompression,
    Zstd,
    codec_from_config,
    codec_spec,
    parse_codec,
)
from bale.codecs.framing import decode_block, encode_block
from bale.errors import CodecError

CNAMES = ["blosclz", "lz4", "lz4hc", "zlib", "zstd"]
FILTERS: list[tuple[str, ...]] = [
    (),
    ("shuffle",),
    ("bitshuffle",),
    ("bytedelta",),
    ("shuffle", "bytedelta"),
]

SIMPLE_CODECS: list[Codec] = [
    NoCompression(),
    LZ4(),
    LZ4(100),
    Zstd(-7),
    Zstd(1),
    Zstd(3),
    Zstd(9),
    Zstd(19),
]
BLOSC_CODECS: list[Codec] = [
    Blosc2(cname, clevel, filters, typesize)
    for cname in CNAMES
    for filters in FILTERS
    for clevel, typesize in ((1, 1), (5, 4), (9, 8))
]
ALL_CODECS = SIMPLE_CODECS + BLOSC_CODECS


def _ids(codecs: list[Codec]) -> list[str]:
    return [repr(c) for c in codecs]


def _payloads() -> dict[str, bytes]:
    rng = np.random.default_rng(1234)
    walk = np.cumsum(rng.normal(size=4000)).astype(np.float32)
    return {
        "random": rng.bytes(50_000),
        "zeros": bytes(40_000),
        "float32_walk": walk.tobytes(),
        "int64_arange": np.arange(5000, dtype="<i8").tobytes(),
        "text": ("the quick brown fox jumps over the lazy dog ✓ " * 700).encode(),
        "odd_length": rng.integers(0, 4, 1001, dtype=np.uint8).tobytes(),
        "one_byte": b"\x07",
    }


PAYLOADS = _payloads()


def _round_trip(codec: Codec, raw: bytes) -> bytes:
    encoded = codec.encode(memoryview(raw))
    return bytes(codec.decode(memoryview(bytes(encoded)), len(raw)))


@pytest.mark.parametrize("codec", ALL_CODECS, ids=_ids(ALL_CODECS))
def test_codec_round_trips(codec: Codec) -> None:
    for name, raw in PAYLOADS.items():
        assert _round_trip(codec, raw) == raw, name


@pytest.mark.parametrize("codec", BLOSC_CODECS, ids=_ids(BLOSC_CODECS))
def test_blosc2_round_trips_lengths_that_are_not_a_multiple_of_typesize(codec: Codec) -> None:
    rng = np.random.default_rng(7)
    for n in (1001, 4003, 65_537):
        raw = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert _round_trip(codec, raw) == raw, n


@pytest.mark.parametrize("filters", [("delta",), ("shuffle", "delta")])
def test_blosc2_delta_filter_is_refused(filters: tuple[str, ...]) -> None:
    # c-blosc2's DELTA filter corrupts the last len % typesize bytes without an error, so bale
    # never writes it (BYTEDELTA is the safe alternative).
    with pytest.raises(CodecError, match="filters"):
        Blosc2("lz4", 5, filters, 4)  # type: ignore[arg-type]
    with pytest.raises(CodecError):
        parse_codec("blosc2:lz4:5:" + "+".join(filters))


@pytest.mark.parametrize("codec", ALL_CODECS, ids=_ids(ALL_CODECS))
def test_codec_compresses_redundant_data(codec: Codec) -> None:
    encoded = codec.encode(memoryview(PAYLOADS["zeros"]))
    if isinstance(codec, NoCompression):
        assert bytes(encoded) == PAYLOADS["zeros"]
    else:
        assert len(encoded) < len(PAYLOADS["zeros"]) // 10


@pytest.mark.parametrize("codec", SIMPLE_CODECS, ids=_ids(SIMPLE_CODECS))
def test_empty_input_round_trips(codec: Codec) -> None:
    assert _round_trip(codec, b"") == b""


def test_codecs_accept_any_buffer_type() -> None:
    raw = PAYLOADS["text"]
    for codec in (LZ4(), Zstd(3), Blosc2()):
        for source in (raw, bytearray(raw), memoryview(raw)):
            encoded = codec.encode(memoryview(source))
            assert bytes(codec.decode(memoryview(bytearray(encoded)), len(raw))) == raw


def test_blosc2_encodes_structured_numeric_data_better_with_shuffle() -> None:
    raw = np.arange(100_000, dtype="<i8").tobytes()
    shuffled = Blosc2("lz4", 5, ("shuffle",), 8).encode(memoryview(raw))
    plain = Blosc2("lz4", 5, (), 8).encode(memoryview(raw))
    assert len(shuffled) < len(plain)


def test_zstd_level_changes_output_and_still_decodes_anywhere() -> None:
    raw = PAYLOADS["text"] + PAYLOADS["float32_walk"]
    fast = Zstd(-7).encode(memoryview(raw))
    strong = Zstd(19).encode(memoryview(raw))
    assert len(strong) < len(fast)
    # the decoder does not depend on the level the frame was written with
    assert bytes(Zstd(1).decode(memoryview(strong), len(raw))) == raw


def test_zstd_is_thread_safe_and_picklable() -> None:
    codec = Zstd(5)
    raws = [np.random.default_rng(i).integers(0, 8, 20_000, np.uint8).tobytes() for i in range(16)]

    def work(raw: bytes) -> bytes:
        return bytes(codec.decode(memoryview(bytes(codec.encode(memoryview(raw)))), len(raw)))

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(work, raws)) == raws
    clone = pickle.loads(pickle.dumps(codec))
    assert clone == codec
    assert _round_trip(clone, raws[0]) == raws[0]


# -- configs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ALL_CODECS, ids=_ids(ALL_CODECS))
def test_config_round_trips_through_json(codec: Codec) -> None:
    config = json.loads(json.dumps(codec.config()))
    assert config["id"] == codec.id
    rebuilt = codec_from_config(config)
    assert type(rebuilt) is type(codec)
    assert rebuilt == codec
    assert hash(rebuilt) == hash(codec)
    assert rebuilt.config() == codec.config()


def test_configs_name_every_parameter() -> None:
    assert NoCompression().config() == {"id": "none"}
    assert LZ4(7).config() == {"id": "lz4", "acceleration": 7}
    assert Zstd(5).config() == {"id": "zstd", "level": 5}
    assert Blosc2("lz4hc", 4, ("bitshuffle",), 2, 65536).config() == {
        "id": "blosc2",
        "cname": "lz4hc",
        "clevel": 4,
        "filters": ["bitshuffle"],
        "typesize": 2,
        "blocksize": 65536,
    }


def test_codec_equality() -> None:
    assert Zstd(3) == Zstd(3)
    assert Zstd(3) != Zstd(4)
    assert Zstd(3) != LZ4()
    assert Blosc2("zstd", 1, ["shuffle"]) == Blosc2("zstd", 1, ("shuffle",))
    assert Blosc2(typesize=4) != Blosc2(typesize=8)
    assert len({Zstd(3), Zstd(3), LZ4()}) == 2


def test_for_itemsize() -> None:
    codec = Blosc2("lz4", 5, ("shuffle",))
    assert codec.for_itemsize(8).config()["typesize"] == 8
    assert codec.for_itemsize(0).config()["typesize"] == 1
    assert codec.for_itemsize(1000).config()["typesize"] == 255
    assert codec.for_itemsize(8).config()["cname"] == "lz4"
    assert codec.typesize == 1  # unchanged: codecs are values
    for simple in (NoCompression(), LZ4(), Zstd(3)):
        assert simple.for_itemsize(8) == simple


def test_codec_from_config_ignores_unknown_extra_keys() -> None:
    assert codec_from_config({"id": "zstd", "level": 5, "window_log": 27}) == Zstd(5)
    assert codec_from_config({"id": "none", "future": [1, 2]}) == NoCompression()
    assert codec_from_config({"id": "lz4", "acceleration": 3, "x": None}) == LZ4(3)
    blosc = codec_from_config({"id": "blosc2", "cname": "lz4", "clevel": 2, "nthreads": 8})
    assert blosc == Blosc2("lz4", 2, ("shuffle",))


def test_codec_from_config_uses_defaults_for_missing_keys() -> None:
    assert codec_from_config({"id": "zstd"}) == Zstd(3)
    assert codec_from_config({"id": "lz4"}) == LZ4(1)


@pytest.mark.parametrize(
    "config",
    [
        {"id": "gzip"},
        {"id": "ZSTD", "level": 3},
        {"id": None},
        {"id": 3},
        {"level": 3},
        {},
    ],
)
def test_codec_from_config_rejects_unknown_ids(config: dict[str, Any]) -> None:
    with pytest.raises(bale.CodecError, match="unknown codec id"):
        codec_from_config(config)


@pytest.mark.parametrize(
    "config",
    [
        {"id": "zstd", "level": 99},
        {"id": "zstd", "level": "3"},
        {"id": "lz4", "acceleration": 0},
        {"id": "blosc2", "cname": "snappy"},
        {"id": "blosc2", "filters": ["shuffle", "nope"]},
        {"id": "blosc2", "filters": "shuffle"},
        {"id": "blosc2", "typesize": 0},
    ],
)
def test_codec_from_config_rejects_invalid_settings(config: dict[str, Any]) -> None:
    with pytest.raises(bale.CodecError):
        codec_from_config(config)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Zstd(23),
        lambda: Zstd(-8),
        lambda: LZ4(0),
        lambda: LZ4(65538),
        lambda: Blosc2(clevel=10),
        lambda: Blosc2(clevel=-1),
        lambda: Blosc2(cname="snappy"),  # type: ignore[arg-type]
        lambda: Blosc2(filters=("shuffle", "zigzag")),  # type: ignore[arg-type]
        lambda: Blosc2(filters=("shuffle",) * 7),
        lambda: Blosc2(typesize=0),
        lambda: Blosc2(typesize=256),
        lambda: Blosc2(blocksize=-1),
    ],
)
def test_invalid_levels_and_settings_raise_codec_error(make: Any) -> None:
    with pytest.raises(bale.CodecError):
        make()


def test_valid_level_bounds() -> None:
    assert Zstd(-7).level == -7
    assert Zstd(22).level == 22
    assert LZ4(65537).acceleration == 65537
    assert Blosc2(clevel=0).clevel == 0
    assert Blosc2(clevel=9, typesize=255).typesize == 255
    assert Blosc2(filters=("shuffle",) * 6).filters == ("shuffle",) * 6


def test_codec_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Zstd(100)


# -- specs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("none", NoCompression()),
        ("lz4", LZ4(1)),
        ("lz4:9", LZ4(9)),
        ("zstd", Zstd(3)),
        ("zstd:9", Zstd(9)),
        ("zstd:-3", Zstd(-3)),
        ("ZSTD:9", Zstd(9)),
        ("  zstd:1 ", Zstd(1)),
        ("blosc2", Blosc2("zstd", 1, ("shuffle",))),
        ("blosc2:lz4", Blosc2("lz4", 1, ("shuffle",))),
        ("blosc2:lz4:5", Blosc2("lz4", 5, ("shuffle",))),
        ("blosc2:lz4:5:bitshuffle", Blosc2("lz4", 5, ("bitshuffle",))),
        ("blosc2:zstd:1:shuffle+bytedelta", Blosc2("zstd", 1, ("shuffle", "bytedelta"))),
        ("blosc2:lz4hc:9:noshuffle", Blosc2("lz4hc", 9, ())),
        ("blosc2:zlib:3:bytedelta", Blosc2("zlib", 3, ("bytedelta",))),
    ],
)
def test_parse_codec_specs(spec: str, expected: Codec) -> None:
    codec = parse_codec(spec)
    assert type(codec) is type(expected)
    assert codec.config() == expected.config()


def test_parse_codec_passes_codecs_through() -> None:
    codec = Blosc2("lz4", 3, ("bitshuffle",), 4)
    assert parse_codec(codec) is codec


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "gzip",
        "snappy:1",
        "none:1",
        "lz4:0",
        "lz4:fast",
        "lz4:1:2",
        "zstd:x",
        "zstd:23",
        "zstd:1:2",
        "zstd:",
        "blosc2:snappy",
        "blosc2:lz4:x",
        "blosc2:lz4:10",
        "blosc2:lz4:5:zigzag",
        "blosc2:lz4:5:shuffle+zigzag",
        "blosc2:lz4:5:shuffle:extra",
        "zstd 9",
    ],
)
def test_bad_specs_raise_codec_error(spec: str) -> None:
    with pytest.raises(bale.CodecError, match="spec"):
        parse_codec(spec)


@pytest.mark.parametrize(
    "codec",
    [NoCompression(), Zstd(7), Blosc2("lz4", 5, ("bitshuffle",)), Blosc2("zstd", 2, ())],
    ids=repr,
)
def test_codec_spec_is_parsed_back(codec: Codec) -> None:
    assert parse_codec(codec_spec(codec.config())) == codec


# -- framing ------------------------------------------------------------------------------------

FRAMING_CODECS: list[Codec] = [
    NoCompression(),
    LZ4(),
    Zstd(3),
    Blosc2("zstd", 1, ("shuffle",), 4),
    Blosc2("lz4", 5, ("bitshuffle",), 8),
    Blosc2("blosclz", 5, ("shuffle", "bytedelta"), 4),
]


def _join(parts: list[Any]) -> bytes:
    return b"".join(bytes(p) for p in parts)


@pytest.mark.parametrize("codec", FRAMING_CODECS, ids=_ids(FRAMING_CODECS))
@pytest.mark.parametrize("segment", [100, 1000, 4096, 4000, 1 << 20])
def test_encode_decode_block_round_trip(codec: Codec, segment: int) -> None:
    raw = PAYLOADS["float32_walk"]  # 16000 bytes
    parts = encode_block(codec, memoryview(raw), segment)
    frames = -(-len(raw) // segment)
    assert len(parts) == (1 if frames == 1 else 2 * frames)
    payload = _join(parts)
    assert bytes(decode_block(codec, memoryview(payload), len(raw), segment)) == raw


def test_block_at_or_under_the_segment_size_is_one_bare_frame() -> None:
    raw = b"x" * 100
    codec = Zstd(3)
    for segment in (100, 101):
        parts = encode_block(codec, memoryview(raw), segment)
        assert len(parts) == 1
        assert bytes(codec.decode(memoryview(bytes(parts[0])), 100)) == raw


@pytest.mark.parametrize("codec", ALL_CODECS[:: len(ALL_CODECS) // 12], ids=repr)
def test_empty_block_is_stored_as_nothing(codec: Codec) -> None:
    assert encode_block(codec, memoryview(b""), 10) == []
    assert bytes(decode_block(codec, memoryview(b""), 0, 10)) == b""
    with pytest.raises(ValueError, match="empty block"):
        decode_block(codec, memoryview(b"\x00"), 0, 10)


def test_segmented_block_layout() -> None:
    raw = bytes(range(250))
    payload = _join(encode_block(NoCompression(), memoryview(raw), 100))
    expected = b"".join(
        struct.pack("<Q", len(raw[i : i + 100])) + raw[i : i + 100] for i in range(0, 250, 100)
    )
    assert payload == expected


def test_encode_block_accepts_multi_byte_views() -> None:
    array = np.arange(300, dtype="<f8").reshape(100, 3)
    parts = encode_block(LZ4(), memoryview(array), 1000)
    decoded = decode_block(LZ4(), memoryview(_join(parts)), array.nbytes, 1000)
    assert np.array_equal(np.frombuffer(bytes(decoded), "<f8").reshape(100, 3), array)


def _segmented(codec: Codec, raw: bytes, segment: int) -> bytes:
    return _join(encode_block(codec, memoryview(raw), segment))


@pytest.mark.parametrize("codec", [NoCompression(), Zstd(3), LZ4()], ids=repr)
@pytest.mark.parametrize("cut", [1, 7, 8, 9, 50])
def test_truncated_segmented_block_is_rejected(codec: Codec, cut: int) -> None:
    raw = PAYLOADS["text"][:1000]
    payload = _segmented(codec, raw, 300)
    with pytest.raises(ValueError):
        decode_block(codec, memoryview(payload[:-cut]), len(raw), 300)


def test_segmented_block_cut_at_a_frame_boundary_is_rejected() -> None:
    raw = bytes(range(250))
    payload = _segmented(NoCompression(), raw, 100)
    with pytest.raises(ValueError, match="before its next frame length"):
        decode_block(NoCompression(), memoryview(payload[: 2 * 108]), 250, 100)
    with pytest.raises(ValueError, match="runs past"):
        decode_block(NoCompression(), memoryview(payload[:-1]), 250, 100)


@pytest.mark.parametrize("codec", [NoCompression(), Zstd(3), LZ4()], ids=repr)
@pytest.mark.parametrize("extra", [b"\x00", b"\x00" * 8, b"garbage!!"])
def test_trailing_bytes_after_the_frames_are_rejected(codec: Codec, extra: bytes) -> None:
    raw = PAYLOADS["text"][:1000]
    payload = _segmented(codec, raw, 300)
    with pytest.raises(ValueError, match="trailing"):
        decode_block(codec, memoryview(payload + extra), len(raw), 300)


def test_frame_of_the_wrong_decoded_size_is_rejected() -> None:
    raw = bytes(range(250))
    payload = bytearray(_segmented(NoCompression(), raw, 100))
    # Make the first frame claim 99 bytes; its decoded size no longer matches the segment.
    struct.pack_into("<Q", payload, 0, 99)
    with pytest.raises(ValueError):
        decode_block(NoCompression(), memoryview(bytes(payload)), 250, 100)


def test_raw_size_larger_than_encoded_is_rejected() -> None:
    raw = bytes(range(250))
    payload = _segmented(NoCompression(), raw, 100)
    with pytest.raises(ValueError):
        decode_block(NoCompression(), memoryview(payload), 350, 100)
