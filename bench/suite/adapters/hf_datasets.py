"""Hugging Face datasets: Dataset.from_dict(...).save_to_disk (Arrow files), arrays as ArrayXD
features, JPEGs as binary; read with load_from_disk in NumPy format, shuffled with .shuffle()."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench.suite.adapters.base import Adapter, Batch, Row, spec_of
from bench.suite.data import Source, Spec


def _datasets() -> Any:
    # Never reach the Hub: the suite runs offline.
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets

    datasets.disable_progress_bars()
    return datasets


class HfDatasets(Adapter):
    name = "HF datasets"
    dists = ("datasets", "pyarrow")
    module = "datasets"
    shuffle_note = "Dataset.shuffle(seed): a permuted indices mapping over the Arrow table"

    def write(self, source: Source, out: Path) -> None:
        datasets = _datasets()
        if isinstance(source.x, list):
            x_feature: Any = datasets.Value("binary")
        else:
            array_type = {2: datasets.Array2D, 3: datasets.Array3D, 4: datasets.Array4D}
            x_feature = array_type[source.x.ndim - 1](
                shape=source.x.shape[1:], dtype=source.x.dtype.name
            )
        features = datasets.Features({"x": x_feature, "label": datasets.Value("int64")})
        ds = datasets.Dataset.from_dict({"x": source.x, "label": source.label}, features=features)
        ds.save_to_disk(str(out / "data"))

    def open(self, out: Path, spec: Spec) -> None:
        datasets = _datasets()
        self.spec = spec
        self.ds = datasets.load_from_disk(str(out / "data")).with_format("numpy")

    def _x(self, x: Any) -> Any:
        spec = spec_of(self)
        if spec.is_bytes:
            return list(x) if isinstance(x, np.ndarray) and x.ndim == 1 else x
        # The NumPy formatter widens integer arrays to int64; a user wanting the stored uint8
        # casts back, and so does this adapter (the cost counts against the tool).
        return np.asarray(x).astype(spec.dtype, copy=False)

    def _batch(self, b: dict[str, Any]) -> Batch:
        return self._x(b["x"]), np.asarray(b["label"], dtype=np.int64)

    def iter_sequential(self, batch_size: int) -> Iterator[Batch]:
        for b in self.ds.iter(batch_size=batch_size):
            yield self._batch(b)

    def iter_shuffled(self, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
        for b in self.ds.shuffle(seed=seed * 1000 + epoch).iter(batch_size=batch_size):
            yield self._batch(b)

    def get_rows(self, indices: NDArray[np.int64]) -> Batch:
        return self._batch(self.ds[indices.tolist()])  # Dataset[list of indices]: one batch

    def get_row(self, i: int) -> Row:
        row = self.ds[i]
        return self._x(row["x"]), int(row["label"])
