"""zarr v3 (zarr-python 3): sharded arrays, ~1 MiB inner chunks (bale's row-group size) in shards
of 32 chunks, default zstd; JPEGs as a VariableLengthBytes array. Random batches use oindex."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench.suite.adapters.base import Adapter, Batch, Row, index_batches, permutation, spec_of
from bench.suite.data import Source, Spec

CHUNK_BYTES = 1 << 20
CHUNKS_PER_SHARD = 32


class ZarrV3(Adapter):
    name = "zarr v3 sharded"
    dists = ("zarr", "numcodecs")
    module = "zarr"
    compression = "zstd (zarr v3 default)"
    shuffle_note = "a NumPy permutation, each batch read with Array.oindex[sorted indices]"

    def write(self, source: Source, out: Path) -> None:
        import zarr

        n = len(source)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if isinstance(source.x, list):
                from zarr.dtype import VariableLengthBytes

                chunk_rows = max(1, min(n, int(CHUNK_BYTES * n // max(1, source.spec.raw_bytes))))
                shard_rows = min(n, chunk_rows * CHUNKS_PER_SHARD)
                shard_rows -= shard_rows % chunk_rows
                x = zarr.create_array(
                    out / "x",
                    shape=(n,),
                    dtype=VariableLengthBytes(),
                    chunks=(chunk_rows,),
                    shards=(shard_rows,),
                )
                data = np.empty(n, dtype=object)
                data[:] = source.x
                x[:] = data
            else:
                row_bytes = source.x.itemsize * int(np.prod(source.x.shape[1:]))
                chunk_rows = max(1, min(n, CHUNK_BYTES // row_bytes))
                shard_rows = min(n, chunk_rows * CHUNKS_PER_SHARD)
                shard_rows -= shard_rows % chunk_rows
                inner = source.x.shape[1:]
                zarr.create_array(
                    out / "x",
                    data=source.x,
                    chunks=(chunk_rows, *inner),
                    shards=(shard_rows, *inner),
                )
            zarr.create_array(out / "label", data=source.label)

    def open(self, out: Path, spec: Spec) -> None:
        import zarr

        self.spec = spec
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.x = zarr.open_array(out / "x", mode="r")
            self.label = np.asarray(zarr.open_array(out / "label", mode="r")[:])
        self.chunk_rows = self.x.chunks[0]

    def _read(self, key: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = self.x.oindex[key] if isinstance(key, np.ndarray) else self.x[key]
        return list(x) if spec_of(self).is_bytes else x

    def iter_sequential(self, batch_size: int) -> Iterator[Batch]:
        for start in range(0, len(self.label), batch_size):
            s = slice(start, start + batch_size)
            yield self._read(s), self.label[s]

    def iter_shuffled(self, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
        for idx in index_batches(permutation(len(self.label), seed, epoch), batch_size):
            order = np.argsort(idx, kind="stable")
            got = self._read(idx[order])
            inverse = np.empty_like(order)
            inverse[order] = np.arange(len(order))
            x = [got[j] for j in inverse] if isinstance(got, list) else got[inverse]
            yield x, self.label[idx]

    def get_rows(self, indices: NDArray[np.int64]) -> Batch:
        # Array.oindex (get_orthogonal_selection) with sorted distinct indices, then reordered.
        unique, inverse = np.unique(indices, return_inverse=True)
        got = self._read(unique)
        x = [got[j] for j in inverse] if isinstance(got, list) else got[inverse]
        return x, self.label[indices]

    def get_row(self, i: int) -> Row:
        # A one-row slice: zarr 3.1 returns nested 0-d object arrays for a scalar index.
        return self._read(slice(i, i + 1))[0], int(self.label[i])
