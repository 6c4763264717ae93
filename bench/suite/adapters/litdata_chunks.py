"""LitData: chunk files written by BinaryWriter (litdata.optimize's writer, ~64 MB chunks, at
least 8), read by StreamingDataset(shuffle=True) through StreamingDataLoader workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.suite.adapters.base import WORKERS, Adapter, Batch, Row, collate, shard_bytes, spec_of
from bench.suite.data import Source, Spec


class LitDataChunks(Adapter):
    name = "LitData"
    dists = ("litdata",)
    module = "litdata"
    ordered = False
    lazy_open = True
    shuffle_note = "StreamingDataset(shuffle=True): chunk order and rows within chunks shuffled"

    def write(self, source: Source, out: Path) -> None:
        from litdata.streaming.writer import BinaryWriter

        writer = BinaryWriter(str(out), chunk_bytes=shard_bytes(source.spec))
        for i in range(len(source)):
            x, label = source.row(i)
            writer.add_item(i, {"x": x, "label": label})
        writer.done()
        writer.merge()

    def open(self, out: Path, spec: Spec) -> None:
        self.spec = spec
        self.out = out
        self.row_view: Any = None

    def _dataset(self, shuffle: bool, seed: int) -> Any:
        import litdata

        return litdata.StreamingDataset(str(self.out), shuffle=shuffle, seed=seed)

    def _iter(self, batch_size: int, shuffle: bool, seed: int, epoch: int) -> Iterator[Batch]:
        import litdata

        spec = spec_of(self)
        ds = self._dataset(shuffle, seed)
        ds.set_epoch(epoch + 1)  # litdata counts epochs from 1

        def collate_rows(rows: list[dict[str, Any]]) -> Batch:
            return collate([_x(r["x"], spec) for r in rows], [int(r["label"]) for r in rows], spec)

        loader = litdata.StreamingDataLoader(
            ds, batch_size=batch_size, num_workers=WORKERS, collate_fn=collate_rows
        )
        yield from loader

    def iter_sequential(self, batch_size: int) -> Iterator[Batch]:
        return self._iter(batch_size, False, 0, 0)

    def iter_shuffled(self, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
        return self._iter(batch_size, True, seed, epoch)

    def get_row(self, i: int) -> Row:
        if self.row_view is None:
            self.row_view = self._dataset(False, 0)
        row = self.row_view[i]
        return _x(row["x"], spec_of(self)), int(row["label"])


def _x(x: Any, spec: Spec) -> Any:
    if spec.is_bytes:
        return bytes(x)
    return np.asarray(x)
