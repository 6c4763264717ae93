"""Codecs by id: build one from its stored JSON config, or from a short spec like ``"zstd:3"``.

>>> from bale.codecs import codec_from_config, parse_codec
>>> parse_codec("zstd:5").config()
{'id': 'zstd', 'level': 5}
>>> codec_from_config({"id": "lz4", "acceleration": 1})
LZ4(acceleration=1)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

from bale._types import Buffer
from bale.codecs.base import Codec, UnsupportedCodec
from bale.codecs.blosc import Blosc2
from bale.codecs.simple import LZ4, NoCompression, Zstd
from bale.errors import CodecError

__all__ = [
    "LZ4",
    "Blosc2",
    "Buffer",
    "Codec",
    "NoCompression",
    "UnsupportedCodec",
    "Zstd",
    "codec_from_config",
    "codec_spec",
    "max_decoded_size",
    "parse_codec",
    "stored_codec",
]

_BY_ID: Mapping[str, type[Codec]] = {
    NoCompression.id: NoCompression,
    LZ4.id: LZ4,
    Zstd.id: Zstd,
    Blosc2.id: Blosc2,
}


@functools.cache
def _init_parameters(cls: type[Codec]) -> frozenset[str]:
    return frozenset(inspect.signature(cls.__init__).parameters)


def codec_from_config(config: Mapping[str, Any]) -> Codec:
    """The codec a stored config describes. Unknown extra keys (from a newer minor version) are
    ignored: they cannot change decoding, since a different decoding would need a new id."""
    codec_id = config.get("id")
    cls = _BY_ID.get(codec_id) if isinstance(codec_id, str) else None
    if cls is None:
        raise CodecError(f"unknown codec id {codec_id!r}; this bale knows {sorted(_BY_ID)}")
    accepted = _init_parameters(cls)
    kwargs = {k: v for k, v in config.items() if k != "id" and k in accepted}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise CodecError(f"invalid {codec_id} codec config {dict(config)!r}: {exc}") from exc


def stored_codec(config: object) -> Codec:
    """The codec of a file's codec table, for reading: as ``codec_from_config``, except that an
    id this bale does not know (a later minor version may add codecs) gives an
    ``UnsupportedCodec``, whose blocks raise UnsupportedFeatureError when decoded. CodecError for
    an entry that is not a JSON object with a non-empty string id, or a known id with an invalid
    config."""
    if not isinstance(config, Mapping):
        raise CodecError(f"a codec config must be a JSON object, got {config!r}")
    codec_id = config.get("id")
    if not isinstance(codec_id, str) or not codec_id:
        raise CodecError(f"a codec config needs a non-empty string id, got {dict(config)!r}")
    if codec_id not in _BY_ID:
        return UnsupportedCodec(dict(config))
    return codec_from_config(config)


#: The most bytes one stored byte can decode to, per codec id, with the fixed overhead of a frame:
#: LZ4 block format (a match of up to 255 bytes per added length byte) and Zstandard (a 3-byte
#: RLE block header and 1 byte decode to at most 128 KiB). Claimed sizes beyond these are refused
#: before any buffer is allocated for them. Other codecs (blosc2 chunks record their own decoded
#: size, which is what its library allocates) have no bound here.
_EXPANSION: Mapping[str, tuple[int, int]] = {
    "none": (1, 0),
    "lz4": (255, 1 << 8),
    "zstd": (1 << 15, 1 << 17),
}


def max_decoded_size(codec: Codec, stored_size: int, frames: int = 1) -> int | None:
    """The largest decoded size ``stored_size`` stored bytes in ``frames`` frames can have with
    this codec, or None when the codec gives no bound."""
    bound = _EXPANSION.get(codec.id)
    if bound is None or isinstance(codec, UnsupportedCodec):
        return None
    ratio, overhead = bound
    return ratio * stored_size + overhead * frames


def parse_codec(spec: str | Codec) -> Codec:
    """A codec from a short spec: ``none``, ``lz4``, ``zstd``, ``zstd:9``, ``blosc2``,
    ``blosc2:zstd:5:bitshuffle`` (cname, clevel, filter), or a Codec unchanged."""
    if isinstance(spec, Codec):
        return spec
    parts = spec.strip().lower().split(":")
    name, args = parts[0], parts[1:]
    try:
        if name == "none" and not args:
            return NoCompression()
        if name == "lz4" and len(args) <= 1:
            return LZ4(*(int(a) for a in args))
        if name == "zstd" and len(args) <= 1:
            return Zstd(*(int(a) for a in args))
        if name == "blosc2" and len(args) <= 3:
            cname = args[0] if args else "zstd"
            clevel = int(args[1]) if len(args) > 1 else 1
            filters = (
                [f for f in args[2].split("+") if f != "noshuffle"]
                if len(args) > 2
                else ["shuffle"]
            )
            return Blosc2(cname, clevel, filters)  # type: ignore[arg-type]
    except ValueError as exc:
        raise CodecError(f"invalid codec spec {spec!r}: {exc}") from exc
    raise CodecError(
        f"invalid codec spec {spec!r}; expected none, lz4[:ACCEL], zstd[:LEVEL] or "
        "blosc2[:CNAME[:CLEVEL[:FILTER[+FILTER]]]]"
    )


def codec_spec(config: Mapping[str, Any]) -> str:
    """The short spec of a stored codec config, the inverse of ``parse_codec`` for display."""
    codec_id = config.get("id")
    if codec_id == "zstd":
        return f"zstd:{config.get('level')}"
    if codec_id == "blosc2":
        filters = "+".join(config.get("filters", [])) or "noshuffle"
        return f"blosc2:{config.get('cname')}:{config.get('clevel')}:{filters}"
    return str(codec_id)
