"""NumPy .npy files opened with mmap_mode="r"; JPEGs as one concatenated byte array + offsets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench.suite.adapters.base import (
    Adapter,
    Batch,
    Row,
    gather_sorted,
    index_batches,
    permutation,
    spec_of,
)
from bench.suite.data import Source, Spec


class NpyMemmap(Adapter):
    name = "npy memmap"
    dists = ("numpy",)
    module = "numpy"
    shuffle_note = "a NumPy permutation, each batch gathered with sorted fancy indexing"

    def write(self, source: Source, out: Path) -> None:
        np.save(out / "label.npy", source.label)
        if isinstance(source.x, list):
            lengths = np.fromiter((len(r) for r in source.x), np.int64, len(source.x))
            np.save(out / "offsets.npy", np.concatenate([[0], np.cumsum(lengths)]))
            np.save(out / "bytes.npy", np.frombuffer(b"".join(source.x), np.uint8))
        else:
            np.save(out / "x.npy", source.x)

    def open(self, out: Path, spec: Spec) -> None:
        self.spec = spec
        self.label = np.load(out / "label.npy", mmap_mode="r")
        if spec.is_bytes:
            self.offsets = np.load(out / "offsets.npy")
            self.blob = np.load(out / "bytes.npy", mmap_mode="r")
        else:
            self.x = np.load(out / "x.npy", mmap_mode="r")

    def _rows(self, idx: Any) -> Any:
        if not spec_of(self).is_bytes:
            # Fancy indexing copies out of the map: that is the read.
            return (
                gather_sorted(lambda i: self.x[i], idx)
                if isinstance(idx, np.ndarray)
                else (np.array(self.x[idx]))
            )
        rows = range(len(self.label))[idx] if isinstance(idx, slice) else idx.tolist()
        return [self.blob[self.offsets[i] : self.offsets[i + 1]].tobytes() for i in rows]

    def iter_sequential(self, batch_size: int) -> Iterator[Batch]:
        for start in range(0, len(self.label), batch_size):
            s = slice(start, start + batch_size)
            yield self._rows(s), np.array(self.label[s])

    def iter_shuffled(self, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
        for idx in index_batches(permutation(len(self.label), seed, epoch), batch_size):
            yield self._rows(idx), np.array(self.label[idx])

    def get_rows(self, indices: NDArray[np.int64]) -> Batch:
        # Plain NumPy fancy indexing: it copies the rows out of the map, in the asked order.
        labels = np.array(self.label[indices])
        if spec_of(self).is_bytes:
            return self._rows(indices), labels
        return self.x[indices], labels

    def get_row(self, i: int) -> Row:
        if spec_of(self).is_bytes:
            return self.blob[self.offsets[i] : self.offsets[i + 1]].tobytes(), int(self.label[i])
        return np.array(self.x[i]), int(self.label[i])
