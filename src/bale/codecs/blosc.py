"""Blosc2 chunks: byte- or bit-shuffle (and byte-delta) filters before lz4/zstd, for numeric arrays."""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any, ClassVar, Final, Literal, get_args

from bale._types import Buffer
from bale.codecs.base import Codec, decode_error, encode_error, import_library
from bale.errors import CodecError

Blosc2Compressor = Literal["blosclz", "lz4", "lz4hc", "zlib", "zstd"]
# Blosc2's DELTA filter is left out on purpose: it silently corrupts frames whose length is not
# a multiple of typesize (measured with c-blosc2 3.3.5). BYTEDELTA has no such problem.
Blosc2Filter = Literal["shuffle", "bitshuffle", "bytedelta"]

# Each name is its blosc2.Codec / blosc2.Filter member's name in lower case, so validating a
# config needs no blosc2 import; the members are looked up when a chunk is encoded.
_COMPRESSORS: Final[frozenset[str]] = frozenset(get_args(Blosc2Compressor))
_FILTERS: Final[frozenset[str]] = frozenset(get_args(Blosc2Filter))


@functools.cache
def _blosc2() -> ModuleType:
    """python-blosc2, imported and set up at first use.

    python-blosc2 holds the GIL while it (de)compresses unless told otherwise, which would
    serialise bale's reader threads (measured: 2 threads decoded 502 MB/s vs 491 for one; with
    the GIL released, 986). Switched on here, not at import: importing bale changes nothing in
    other libraries."""
    blosc2 = import_library("blosc2", "blosc2")
    blosc2.set_releasegil(True)
    return blosc2


#: Decompression parameters: one thread. bale parallelises across blocks; blosc2's own pool (one
#: thread per core by default) would oversubscribe the cores. A plain dict, not ``DParams``:
#: python-blosc2 turns a ``DParams`` into a dict on every call (3 us, measured on 2 cores).
_ONE_THREAD: Final[dict[str, int]] = {"nthreads": 1}


class Blosc2(Codec):
    """A Blosc2 chunk. Each chunk's own header records typesize, block size and filters, so
    decoding reads everything from the bytes; the config records the encoding choices too.
    """

    id: ClassVar[str] = "blosc2"

    def __init__(
        self,
        cname: Blosc2Compressor = "zstd",
        clevel: int = 1,
        filters: tuple[Blosc2Filter, ...] | list[Blosc2Filter] = ("shuffle",),
        typesize: int = 1,
        blocksize: int = 0,
    ) -> None:
        if cname not in _COMPRESSORS:
            raise CodecError(f"blosc2 cname must be one of {sorted(_COMPRESSORS)}, got {cname!r}")
        if not 0 <= clevel <= 9:
            raise CodecError(f"blosc2 clevel must be in 0..9, got {clevel}")
        unknown = [f for f in filters if f not in _FILTERS]
        if unknown or len(filters) > 6:
            raise CodecError(f"blosc2 filters must be up to 6 of {sorted(_FILTERS)}, got {filters}")
        if not 1 <= typesize <= 255:
            raise CodecError(f"blosc2 typesize must be in 1..255, got {typesize}")
        if blocksize < 0:
            raise CodecError(f"blosc2 blocksize must be >= 0 (0 = automatic), got {blocksize}")
        if blocksize % typesize:
            # c-blosc2 3.3.5 encodes such chunks without complaint, then cannot decode them.
            raise CodecError(
                f"blosc2 blocksize {blocksize} must be a multiple of typesize {typesize}"
            )
        self.cname: Blosc2Compressor = cname
        self.clevel = int(clevel)
        self.filters: tuple[Blosc2Filter, ...] = tuple(filters)
        self.typesize = int(typesize)
        self.blocksize = int(blocksize)

    def config(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "cname": self.cname,
            "clevel": self.clevel,
            "filters": list(self.filters),
            "typesize": self.typesize,
            "blocksize": self.blocksize,
        }

    def for_itemsize(self, itemsize: int) -> Codec:
        return Blosc2(
            self.cname, self.clevel, self.filters, min(max(itemsize, 1), 255), self.blocksize
        )

    def _cparams(self, blosc2: ModuleType) -> Any:
        return blosc2.CParams(
            codec=blosc2.Codec[self.cname.upper()],
            clevel=self.clevel,
            filters=[blosc2.Filter[f.upper()] for f in self.filters],
            typesize=self.typesize,
            blocksize=self.blocksize,
            nthreads=1,  # bale parallelises across blocks; nested pools would oversubscribe
        )

    def encode(self, data: memoryview) -> Buffer:
        blosc2 = _blosc2()
        try:
            return blosc2.compress2(data, cparams=self._cparams(blosc2))  # type: ignore[no-any-return]
        except (RuntimeError, ValueError) as exc:
            raise encode_error(self, exc) from exc

    def decode(self, data: memoryview, raw_size: int) -> Buffer:
        blosc2 = _blosc2()
        # Letting blosc2 allocate the output is faster than zero-filling a bytearray for it.
        try:
            return blosc2.decompress2(data, dparams=_ONE_THREAD)  # type: ignore[no-any-return]
        # python-blosc2 raises all three for bad input (SystemError: a damaged size field).
        except (RuntimeError, ValueError, SystemError) as exc:
            raise decode_error(self, exc) from exc

    def decode_into(self, data: memoryview, out: memoryview) -> int:
        blosc2 = _blosc2()
        try:
            sizes = blosc2.get_cbuffer_sizes(data)
        except (RuntimeError, ValueError, TypeError, SystemError) as exc:
            raise decode_error(self, exc) from exc
        if sizes[0] != len(out):
            return int(sizes[0])  # the caller reports the wrong size; nothing is written past out
        try:
            blosc2.decompress2(data, dst=out, **_ONE_THREAD)
        except (RuntimeError, ValueError, SystemError) as exc:
            raise decode_error(self, exc) from exc
        return len(out)
