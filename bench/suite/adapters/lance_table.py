"""Lance: one Lance dataset written with lance.write_dataset (defaults); arrays as fixed-size
lists, JPEGs as binary. Sequential reads use the scanner, shuffled batches take() permuted rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench.suite.adapters.base import Adapter, Batch, Row, index_batches, permutation, spec_of
from bench.suite.data import Source, Spec


class LanceTable(Adapter):
    name = "Lance"
    dists = ("pylance", "pyarrow")
    module = "lance"
    shuffle_note = "dataset.take() of a NumPy permutation, one batch at a time"

    def write(self, source: Source, out: Path) -> None:
        import lance
        import pyarrow as pa

        if isinstance(source.x, list):
            x: Any = pa.array(source.x, type=pa.binary())
        else:
            flat = pa.array(source.x.reshape(-1))
            x = pa.FixedSizeListArray.from_arrays(flat, int(np.prod(source.x.shape[1:])))
        table = pa.table({"x": x, "label": pa.array(source.label)})
        lance.write_dataset(table, str(out / "data.lance"))

    def open(self, out: Path, spec: Spec) -> None:
        import lance

        self.spec = spec
        self.ds = lance.dataset(str(out / "data.lance"))
        self.rows = self.ds.count_rows()

    def _batch(self, table: Any) -> Batch:
        spec = spec_of(self)
        x = table.column("x")
        if spec.is_bytes:
            xs: Any = x.to_pylist()
        else:
            if hasattr(x, "combine_chunks"):  # a Table's ChunkedArray; batches hold an Array
                x = x.combine_chunks()
            values = x.flatten().to_numpy(zero_copy_only=False)
            xs = values.reshape(-1, *(spec.shape or ()))
        return xs, table.column("label").to_numpy()

    def iter_sequential(self, batch_size: int) -> Iterator[Batch]:
        for rb in self.ds.to_batches(batch_size=batch_size):
            yield self._batch(rb)

    def iter_shuffled(self, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
        for idx in index_batches(permutation(self.rows, seed, epoch), batch_size):
            yield self._batch(self.ds.take(idx))

    def get_rows(self, indices: NDArray[np.int64]) -> Batch:
        return self._batch(self.ds.take(indices))

    def get_row(self, i: int) -> Row:
        xs, labels = self._batch(self.ds.take([i]))
        return xs[0], int(labels[0])
