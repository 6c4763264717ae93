"""One pickle file of all rows: opening loads everything into memory, then reads are free."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from bench.suite.adapters.base import Adapter, Batch, Row, index_batches, permutation, spec_of
from bench.suite.data import Source, Spec


class PickleFile(Adapter):
    name = "pickle"
    module = "pickle"
    in_memory = True
    shuffle_note = "a NumPy permutation of indices into the rows loaded at open"

    def write(self, source: Source, out: Path) -> None:
        with open(out / "data.pkl", "wb") as f:
            pickle.dump({"x": source.x, "label": source.label}, f, pickle.HIGHEST_PROTOCOL)

    def open(self, out: Path, spec: Spec) -> None:
        self.spec = spec
        with open(out / "data.pkl", "rb") as f:
            data = pickle.load(f)
        self.x, self.label = data["x"], data["label"]

    def _batch(self, idx: list[int] | slice) -> Batch:
        if spec_of(self).is_bytes:
            rows = range(len(self.label))[idx] if isinstance(idx, slice) else idx
            return [self.x[i] for i in rows], self.label[idx]
        return self.x[idx], self.label[idx]

    def iter_sequential(self, batch_size: int) -> Iterator[Batch]:
        for start in range(0, len(self.label), batch_size):
            yield self._batch(slice(start, start + batch_size))

    def iter_shuffled(self, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
        for idx in index_batches(permutation(len(self.label), seed, epoch), batch_size):
            yield self._batch(idx.tolist())

    def get_rows(self, indices: NDArray[np.int64]) -> Batch:
        return self._batch(indices.tolist())

    def get_row(self, i: int) -> Row:
        return self.x[i], int(self.label[i])
