"""WebDataset: tar shards of ~64 MB (at least 8) written by ShardWriter; read with shard shuffling
plus a sample shuffle buffer, batched in the pipeline, through WebLoader workers."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.suite.adapters.base import (
    Adapter,
    Batch,
    collate,
    shard_bytes,
    spec_of,
    torch_batches,
)
from bench.suite.data import Source, Spec

#: WebDataset's documented example buffer: .shuffle(1000)
SHUFFLE_BUFFER = 1000


class WebDatasetTar(Adapter):
    name = "WebDataset"
    dists = ("webdataset",)
    module = "webdataset"
    ordered = False
    lazy_open = True
    shuffle_note = f"shardshuffle over all shards + .shuffle({SHUFFLE_BUFFER}) sample buffer"

    def write(self, source: Source, out: Path) -> None:
        import webdataset as wds

        ext = "jpg" if source.spec.is_bytes else "npy"
        with wds.ShardWriter(
            str(out / "shard-%06d.tar"), maxsize=shard_bytes(source.spec), verbose=0
        ) as sink:
            for i in range(len(source)):
                x, label = source.row(i)
                sink.write({"__key__": f"{i:09d}", ext: x, "cls": label})

    def open(self, out: Path, spec: Spec) -> None:
        self.spec = spec
        self.urls = [str(p) for p in sorted(out.glob("shard-*.tar"))]

    def _pipeline(self, batch_size: int, shuffle: bool, seed: int) -> Any:
        import webdataset as wds

        spec = spec_of(self)
        ds = wds.WebDataset(
            self.urls,
            shardshuffle=len(self.urls) if shuffle else False,
            seed=seed if shuffle else None,
            empty_check=False,
        )
        if shuffle:
            ds = ds.shuffle(SHUFFLE_BUFFER, seed=seed)
        return ds.map(lambda s: _row(s, spec)).batched(
            batch_size, collation_fn=lambda rows: _collate(rows, spec), partial=True
        )

    def iter_sequential(self, batch_size: int) -> Iterator[Batch]:
        yield from torch_batches(self._pipeline(batch_size, False, 0), None, _identity)

    def iter_shuffled(self, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
        pipeline = self._pipeline(batch_size, True, seed * 1000 + epoch)
        yield from torch_batches(pipeline, None, _identity)


def _row(sample: dict[str, Any], spec: Spec) -> tuple[Any, int]:
    label = int(sample["cls"])
    if spec.is_bytes:
        return sample["jpg"], label
    return np.load(io.BytesIO(sample["npy"])), label


def _collate(rows: list[tuple[Any, int]], spec: Spec) -> Batch:
    return collate([r[0] for r in rows], [r[1] for r in rows], spec)


def _identity(batch: Any) -> Any:
    return batch
