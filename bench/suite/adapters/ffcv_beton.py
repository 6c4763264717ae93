"""FFCV: a .beton file written by DatasetWriter, read by its Loader. Only runs where ffcv can be
installed (its build needs OpenCV and libjpeg-turbo found by pkg-config)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.suite.adapters.base import Adapter, Batch, spec_of
from bench.suite.data import Source, Spec


class FfcvBeton(Adapter):
    name = "FFCV"
    dists = ("ffcv",)
    module = "ffcv"
    shuffle_note = "ffcv Loader(order=OrderOption.QUASI_RANDOM)"

    def write(self, source: Source, out: Path) -> None:
        from ffcv.fields import BytesField, IntField, NDArrayField
        from ffcv.writer import DatasetWriter

        if isinstance(source.x, list):
            x_field: Any = BytesField()
        else:
            x_field = NDArrayField(source.x.dtype, source.x.shape[1:])
        rows = _Rows(source)
        writer = DatasetWriter(str(out / "data.beton"), {"x": x_field, "label": IntField()})
        writer.from_indexed_dataset(rows)

    def open(self, out: Path, spec: Spec) -> None:
        self.spec = spec
        self.path = out / "data.beton"

    def _iter(self, batch_size: int, order: str, seed: int) -> Iterator[Batch]:
        from ffcv.loader import Loader, OrderOption

        loader = Loader(
            str(self.path),
            batch_size=batch_size,
            num_workers=2,
            order=getattr(OrderOption, order),
            seed=seed,
            os_cache=True,
        )
        spec = spec_of(self)
        for x, label in loader:
            xs = [bytes(r) for r in x] if spec.is_bytes else np.asarray(x)
            yield xs, np.asarray(label, dtype=np.int64).reshape(-1)

    def iter_sequential(self, batch_size: int) -> Iterator[Batch]:
        return self._iter(batch_size, "SEQUENTIAL", 0)

    def iter_shuffled(self, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
        return self._iter(batch_size, "QUASI_RANDOM", seed * 1000 + epoch)


class _Rows:
    def __init__(self, source: Source) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        x, label = self.source.row(i)
        return (np.frombuffer(x, np.uint8) if isinstance(x, bytes) else x), label
