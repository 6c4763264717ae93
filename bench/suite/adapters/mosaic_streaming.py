"""MosaicML Streaming: MDS shards written by MDSWriter (default 64 MB shards, no compression),
read from local disk by StreamingDataset (default py1e shuffle) through DataLoader workers."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.suite.adapters.base import Adapter, Batch, Row, collate, spec_of, torch_batches
from bench.suite.data import Source, Spec


def _streaming() -> Any:
    # `import streaming` imports its torchvision-based vision datasets, and the torchvision
    # wheels on PyPI are CUDA builds that cannot load beside the CPU torch used here. Nothing
    # below uses them, so the subpackage is stubbed before the import.
    sys.modules.setdefault("streaming.vision", types.ModuleType("streaming.vision"))
    import streaming

    return streaming


class MosaicStreaming(Adapter):
    name = "MosaicML Streaming"
    dists = ("mosaicml-streaming",)
    module = "streaming"
    ordered = False
    lazy_open = True
    shuffle_note = "StreamingDataset(shuffle=True): default py1e shuffle of shard blocks"

    def check(self) -> None:
        _streaming()

    def write(self, source: Source, out: Path) -> None:
        streaming = _streaming()
        spec = source.spec
        if spec.is_bytes:
            x_encoding = "bytes"
        else:
            shape = ",".join(str(d) for d in spec.shape or ())
            x_encoding = f"ndarray:{np.dtype(spec.dtype).name}:{shape}"
        columns = {"x": x_encoding, "label": "int64"}
        with streaming.MDSWriter(out=str(out), columns=columns, progress_bar=False) as sink:
            for i in range(len(source)):
                x, label = source.row(i)
                sink.write({"x": x, "label": np.int64(label)})

    def open(self, out: Path, spec: Spec) -> None:
        self.spec = spec
        self.out = out
        self.row_view: Any = None

    def _dataset(self, batch_size: int, shuffle: bool, seed: int) -> Any:
        streaming = _streaming()
        from streaming.base.util import clean_stale_shared_memory

        clean_stale_shared_memory()
        return streaming.StreamingDataset(
            local=str(self.out), shuffle=shuffle, shuffle_seed=seed, batch_size=batch_size
        )

    def _iter(self, batch_size: int, shuffle: bool, seed: int) -> Iterator[Batch]:
        spec = spec_of(self)
        ds = self._dataset(batch_size, shuffle, seed)

        def collate_rows(rows: list[dict[str, Any]]) -> Batch:
            return collate([r["x"] for r in rows], [int(r["label"]) for r in rows], spec)

        yield from torch_batches(ds, batch_size, collate_rows)

    def iter_sequential(self, batch_size: int) -> Iterator[Batch]:
        return self._iter(batch_size, False, 0)

    def iter_shuffled(self, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
        return self._iter(batch_size, True, seed * 1000 + epoch)

    def get_row(self, i: int) -> Row:
        if self.row_view is None:
            self.row_view = self._dataset(1, False, 0)
        row = self.row_view[i]
        return row["x"], int(row["label"])
