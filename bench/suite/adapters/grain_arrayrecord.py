"""ArrayRecord + Grain: pickled rows in ArrayRecord shards (group_size:1, as Grain recommends for
random access), read by grain.DataLoader with an IndexSampler and two worker processes."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grain
import numpy as np
from numpy.typing import NDArray

from bench.suite.adapters.base import (
    WORKERS,
    Adapter,
    Batch,
    Row,
    collate,
    shard_bytes,
    spec_of,
)
from bench.suite.data import Source, Spec


class GrainArrayRecord(Adapter):
    name = "ArrayRecord+Grain"
    dists = ("array-record", "grain")
    module = "grain"
    compression = "ArrayRecord writer default"
    ordered = False
    shuffle_note = "grain IndexSampler(shuffle=True): a global permutation, random reads"

    def write(self, source: Source, out: Path) -> None:
        from array_record.python.array_record_module import ArrayRecordWriter

        limit = shard_bytes(source.spec)
        shard, size, writer = 0, 0, None
        for i in range(len(source)):
            if writer is None:
                path = out / f"data-{shard:05d}.array_record"
                writer = ArrayRecordWriter(str(path), "group_size:1")
            x, label = source.row(i)
            record = pickle.dumps((x, label), protocol=pickle.HIGHEST_PROTOCOL)
            writer.write(record)
            size += len(record)
            if size >= limit:
                writer.close()
                shard, size, writer = shard + 1, 0, None
        if writer is not None:
            writer.close()

    def open(self, out: Path, spec: Spec) -> None:
        self.spec = spec
        paths = [str(p) for p in sorted(out.glob("data-*.array_record"))]
        self.source = grain.sources.ArrayRecordDataSource(paths)

    def _loader(self, batch_size: int, shuffle: bool, seed: int, workers: int) -> Any:
        sampler = grain.samplers.IndexSampler(
            len(self.source),
            shard_options=grain.sharding.NoSharding(),
            shuffle=shuffle,
            num_epochs=1,
            seed=seed,
        )
        return grain.DataLoader(
            data_source=self.source,
            sampler=sampler,
            operations=[
                _Parse(),
                grain.transforms.Batch(batch_size, batch_fn=_BatchFn(spec_of(self))),
            ],
            worker_count=workers,
        )

    def iter_sequential(self, batch_size: int) -> Iterator[Batch]:
        yield from self._loader(batch_size, False, 0, WORKERS)

    def iter_shuffled(self, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
        yield from self._loader(batch_size, True, seed * 1000 + epoch, WORKERS)

    def get_row(self, i: int) -> Row:
        x, label = pickle.loads(self.source[i])
        return x, int(label)

    def get_rows(self, indices: NDArray[np.int64]) -> Batch:
        # The data source's batch read: reader.read(positions) per shard, in threads.
        rows = [pickle.loads(r) for r in self.source.__getitems__(indices.tolist())]
        return collate([r[0] for r in rows], [int(r[1]) for r in rows], spec_of(self))


class _Parse(grain.transforms.Map):  # type: ignore[misc]
    """Unpickles one record (module level, so that worker processes can unpickle it)."""

    def map(self, record: bytes) -> Row:
        x, label = pickle.loads(record)
        return x, int(label)


class _BatchFn:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec

    def __call__(self, rows: list[Row]) -> Batch:
        return collate([r[0] for r in rows], [r[1] for r in rows], self.spec)
