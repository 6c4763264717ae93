"""bcolz chunk files -> rows: the bloscpack header and Blosc1 chunk checked, decompressed, unpickled.

Each ``data/__<i>.blp`` file is a 16-byte bloscpack header followed by one Blosc1 chunk, which
python-blosc2 decompresses. A chunk that is missing, truncated, of the wrong size or fails to
decompress raises ``CorruptFileError`` naming the file and its rows; no row is ever zero-filled.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

import numpy as np

from bale.codecs import Blosc2
from bale.errors import BaleError, CodecError, CorruptFileError
from bale.importers.bcolz_layout import Carray

_BLOSCPACK_HEADER = struct.Struct("<4sB3xq")  # magic, format version, reserved, nchunks
_BLOSCPACK_MAGIC = b"blpk"
_BLOSC_HEADER = struct.Struct("<BBBBIII")  # version, versionlz, flags, typesize, nbytes,
#                                            blocksize, ctbytes (all little-endian)
_MEMCPYED = 0x02  # Blosc1 flag: the chunk holds its bytes uncompressed
_COMPRESSOR_FORMATS = {0: "blosclz", 1: "lz4", 2: "snappy", 3: "zlib", 4: "zstd"}


def decompress_chunk(carray: Carray, i: int) -> bytes:
    """The bytes of chunk ``i``, checked against the sizes the metadata implies."""
    path = carray.chunk_file(i)
    rows = carray.chunk_rows(i)

    def corrupt(why: str) -> CorruptFileError:
        return CorruptFileError(f"chunk file {path!r}: {why}", path=carray.rootdir, rows=rows)

    try:
        with open(path, "rb") as fp:
            raw = fp.read()
    except FileNotFoundError:
        raise corrupt("missing") from None
    except OSError as exc:
        raise corrupt(str(exc)) from None

    head = _BLOSCPACK_HEADER.size
    if len(raw) < head + _BLOSC_HEADER.size:
        raise corrupt(f"only {len(raw)} bytes, shorter than its headers")
    magic, _version, _nchunks = _BLOSCPACK_HEADER.unpack_from(raw)
    if magic != _BLOSCPACK_MAGIC:
        raise corrupt(f"does not start with the bloscpack magic b'blpk' (found {magic!r})")
    version, _versionlz, flags, typesize, nbytes, _blocksize, ctbytes = _BLOSC_HEADER.unpack_from(
        raw, head
    )
    if not 1 <= version <= 5 or typesize == 0:
        raise corrupt(f"not a Blosc chunk (format version {version}, typesize {typesize})")
    if ctbytes < _BLOSC_HEADER.size or head + ctbytes > len(raw):
        raise corrupt(
            f"truncated: its Blosc header says {ctbytes} compressed bytes, the file holds "
            f"{len(raw) - head}"
        )
    if carray.is_object:
        expected_ok = True
        expected = f"{nbytes}"
    else:
        n_rows = rows[1] - rows[0]
        need = n_rows * carray.row_nbytes
        full = carray.chunklen * carray.row_nbytes
        # bcolz 1.x writes the leftover chunk with just its rows; a full-size one is accepted.
        is_leftover = n_rows < carray.chunklen
        expected_ok = nbytes == need or (is_leftover and nbytes == full)
        expected = f"{need}" + (f" (or {full})" if is_leftover else "")
    if not expected_ok:
        raise corrupt(f"holds {nbytes} bytes uncompressed, expected {expected}")
    try:
        # A Blosc1 chunk is a Blosc2 frame: its header holds every setting decoding needs.
        out = Blosc2().decode(memoryview(raw)[head : head + ctbytes], nbytes)
    except CorruptFileError as exc:  # codecs/ translated blosc2's error
        compressor = _COMPRESSOR_FORMATS.get(flags >> 5, f"#{flags >> 5}")
        if compressor == "snappy" and not flags & _MEMCPYED:
            raise CodecError(
                f"chunk file {path!r} is compressed with snappy, which python-blosc2 cannot "
                "decompress (c-blosc2 dropped snappy). Read the array with a bcolz build that "
                "has snappy and save it as .npy, then pack that (the bale repository's docs/LEGACY.md "
                "shows how)",
                path=carray.rootdir,
                rows=rows,
            ) from None
        raise corrupt(f"Blosc could not decompress it ({compressor}): {exc.detail}") from None
    if len(out) != nbytes:
        raise corrupt(f"decompressed to {len(out)} bytes, its header says {nbytes}")
    return bytes(out)


class ChunkReader:
    """Rows of one carray, decompressing each chunk once and keeping the last one."""

    def __init__(self, carray: Carray, trust: bool) -> None:
        self.carray = carray
        self._trust = trust
        self._cached: tuple[int, Any] | None = None

    def chunk(self, i: int) -> Any:
        if self._cached is not None and self._cached[0] == i:
            return self._cached[1]
        c = self.carray
        data = decompress_chunk(c, i)
        values: Any
        if c.is_object:
            if not self._trust:
                raise BaleError(
                    "this carray holds pickled Python objects; refusing to unpickle them "
                    "(unpickling runs code chosen by the file's author). Pass trust=True "
                    "(`bale pack --trust-pickle`) if you trust it",
                    path=c.rootdir,
                    rows=(i, i + 1),
                )
            try:
                values = [pickle.loads(data)]
            except Exception as exc:  # any unpickling failure means damage
                raise CorruptFileError(
                    f"chunk file {c.chunk_file(i)!r} does not unpickle: {exc}",
                    path=c.rootdir,
                    rows=(i, i + 1),
                ) from None
        else:
            a, b = c.chunk_rows(i)
            items = (b - a) * int(np.prod(c.row_shape, dtype=np.int64))
            flat = np.frombuffer(data, dtype=c.dtype, count=items)
            values = flat.reshape((b - a, *c.row_shape))
        self._cached = (i, values)
        return values

    def _chunk_of(self, row: int) -> int:
        return row if self.carray.is_object else row // self.carray.chunklen

    def read(self, start: int, stop: int) -> Any:
        c = self.carray
        if c.is_object:
            return np.array([self.chunk(i)[0] for i in range(start, stop)] or [], dtype=object)
        out = np.empty((stop - start, *c.row_shape), dtype=c.dtype)
        pos = start
        while pos < stop:
            i = self._chunk_of(pos)
            a, b = c.chunk_rows(i)
            end = min(stop, b)
            out[pos - start : end - start] = self.chunk(i)[pos - a : end - a]
            pos = end
        return out

    def take(self, rows: np.ndarray) -> Any:
        c = self.carray
        if c.is_object:
            return np.array([self.chunk(int(r))[0] for r in rows] or [], dtype=object)
        out = np.empty((len(rows), *c.row_shape), dtype=c.dtype)
        chunk_ids = rows // c.chunklen
        for i in np.unique(chunk_ids):  # each chunk once, in file order
            where = np.nonzero(chunk_ids == i)[0]
            a = int(i) * c.chunklen
            out[where] = self.chunk(int(i))[rows[where] - a]
        return out
