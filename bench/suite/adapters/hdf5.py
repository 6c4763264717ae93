"""h5py: one HDF5 file, chunked datasets of ~1 MiB (bale's row-group size) with gzip-4, lzf or no
filter; JPEGs in a vlen uint8 dataset. Random batches are read with sorted fancy indexing."""

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
    gather_unique,
    index_batches,
    permutation,
    spec_of,
)
from bench.suite.data import Source, Spec

CHUNK_BYTES = 1 << 20
#: Chunk cache per dataset, equal to bale's default block cache, so a chunk read for one row of a
#: random batch can serve the batch's other rows in it (h5py's default 1 MiB would not hold one).
CACHE_BYTES = 64 << 20
FILTERS: dict[str, tuple[str | None, int | None]] = {
    "gzip4": ("gzip", 4),
    "lzf": ("lzf", None),
    "none": (None, None),
}


class Hdf5(Adapter):
    dists = ("h5py",)
    module = "h5py"
    shuffle_note = "a NumPy permutation, each batch read with sorted fancy indexing"

    def __init__(self, *, compression: str = "gzip4") -> None:
        super().__init__(compression=compression)
        self.name = f"h5py {compression}"
        self.filter = compression
        self.compression = {"gzip4": "gzip-4", "lzf": "lzf", "none": ""}[compression]

    def write(self, source: Source, out: Path) -> None:
        import h5py

        compression, opts = FILTERS[self.filter]
        n = len(source)
        with h5py.File(out / "data.h5", "w") as f:
            if isinstance(source.x, list):
                mean = source.spec.raw_bytes / max(1, n)
                chunk_rows = max(1, min(n, int(CHUNK_BYTES // mean)))
                ds = f.create_dataset(
                    "x",
                    shape=(n,),
                    dtype=h5py.vlen_dtype(np.uint8),
                    chunks=(chunk_rows,),
                    compression=compression,
                    compression_opts=opts,
                )
                for start in range(0, n, chunk_rows):
                    stop = min(n, start + chunk_rows)
                    piece = np.empty(stop - start, dtype=object)
                    piece[:] = [np.frombuffer(b, np.uint8) for b in source.x[start:stop]]
                    ds[start:stop] = piece
            else:
                row_bytes = source.x.itemsize * int(np.prod(source.x.shape[1:]))
                chunk_rows = max(1, min(n, CHUNK_BYTES // row_bytes))
                f.create_dataset(
                    "x",
                    data=source.x,
                    chunks=(chunk_rows, *source.x.shape[1:]),
                    compression=compression,
                    compression_opts=opts,
                )
            f.create_dataset("label", data=source.label)

    def open(self, out: Path, spec: Spec) -> None:
        import h5py

        self.spec = spec
        self.file = h5py.File(out / "data.h5", "r", rdcc_nbytes=CACHE_BYTES, rdcc_nslots=10007)
        self.x = self.file["x"]
        self.label = self.file["label"][:]  # small; users load labels once
        self.chunk_rows = self.x.chunks[0]

    def _to_user(self, x: Any) -> Any:
        return [r.tobytes() for r in x] if spec_of(self).is_bytes else x

    def iter_sequential(self, batch_size: int) -> Iterator[Batch]:
        for start in range(0, len(self.label), batch_size):
            s = slice(start, start + batch_size)
            yield self._to_user(self.x[s]), self.label[s]

    def iter_shuffled(self, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
        for idx in index_batches(permutation(len(self.label), seed, epoch), batch_size):
            yield self._to_user(gather_sorted(lambda i: self.x[i], idx)), self.label[idx]

    def get_rows(self, indices: NDArray[np.int64]) -> Batch:
        # h5py's fancy indexing takes increasing, distinct indices only: sort, read, reorder.
        return self._to_user(gather_unique(lambda i: self.x[i], indices)), self.label[indices]

    def describe_store(self, out: Path) -> dict[str, Any]:
        import h5py

        with h5py.File(out / "data.h5", "r") as f:
            vlen = h5py.check_vlen_dtype(f["x"].dtype) is not None
        if vlen and self.compression:
            # HDF5 filters a vlen chunk's heap references; the bytes sit in the global heap.
            return {
                "compression": "",
                "note": f"{self.compression} filters the vlen references, not the bytes",
            }
        return {"compression": self.compression}

    def get_row(self, i: int) -> Row:
        x = self.x[i]
        return (x.tobytes() if spec_of(self).is_bytes else x), int(self.label[i])

    def close(self) -> None:
        self.file.close()
