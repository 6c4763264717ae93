"""python-blosc2: NDArray files (.b2nd) with blosc2's default chunking and codec; JPEGs as one
concatenated uint8 NDArray plus offsets. Random batches use NDArray fancy indexing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench.suite.adapters.base import Adapter, Batch, Row, index_batches, permutation, spec_of
from bench.suite.data import Source, Spec


class Blosc2Nd(Adapter):
    name = "blosc2 NDArray"
    dists = ("blosc2",)
    module = "blosc2"
    compression = "blosc2 zstd:5 + shuffle (default)"
    shuffle_note = "a NumPy permutation, each batch read with NDArray[indices]"

    def write(self, source: Source, out: Path) -> None:
        import blosc2

        if isinstance(source.x, list):
            lengths = np.fromiter((len(r) for r in source.x), np.int64, len(source.x))
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            blob = np.frombuffer(b"".join(source.x), np.uint8)
            blosc2.asarray(blob, urlpath=str(out / "bytes.b2nd"), mode="w")
            np.save(out / "offsets.npy", offsets)
        else:
            blosc2.asarray(source.x, urlpath=str(out / "x.b2nd"), mode="w")
        np.save(out / "label.npy", source.label)

    def open(self, out: Path, spec: Spec) -> None:
        import blosc2

        self.spec = spec
        self.label = np.load(out / "label.npy")
        if spec.is_bytes:
            self.blob = blosc2.open(str(out / "bytes.b2nd"))
            self.offsets = np.load(out / "offsets.npy")
        else:
            self.x = blosc2.open(str(out / "x.b2nd"))

    def _bytes_rows(self, rows: Any) -> list[bytes]:
        # One decompression of the covering span, then slicing: how one reads a byte heap.
        rows = np.asarray(rows)
        lo, hi = int(self.offsets[rows.min()]), int(self.offsets[rows.max() + 1])
        if hi - lo <= 4 * int(self.offsets[rows + 1].sum() - self.offsets[rows].sum()):
            span = self.blob[lo:hi]
            return [span[self.offsets[i] - lo : self.offsets[i + 1] - lo].tobytes() for i in rows]
        return [self.blob[self.offsets[i] : self.offsets[i + 1]].tobytes() for i in rows]

    def iter_sequential(self, batch_size: int) -> Iterator[Batch]:
        for start in range(0, len(self.label), batch_size):
            s = slice(start, start + batch_size)
            if spec_of(self).is_bytes:
                yield self._bytes_rows(np.arange(len(self.label))[s]), self.label[s]
            else:
                yield self.x[s], self.label[s]

    def iter_shuffled(self, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
        for idx in index_batches(permutation(len(self.label), seed, epoch), batch_size):
            if spec_of(self).is_bytes:
                yield self._bytes_rows(idx), self.label[idx]
            else:
                yield self.x[idx], self.label[idx]

    def get_rows(self, indices: NDArray[np.int64]) -> Batch:
        if spec_of(self).is_bytes:
            return self._bytes_rows(indices), self.label[indices]
        return self.x[indices], self.label[indices]  # NDArray fancy indexing

    def get_row(self, i: int) -> Row:
        if spec_of(self).is_bytes:
            return self._bytes_rows([i])[0], int(self.label[i])
        return self.x[i], int(self.label[i])
