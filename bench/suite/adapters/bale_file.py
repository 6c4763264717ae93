"""bale: one .bale file written with the defaults; read with bale.Loader and Dataset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.suite.adapters.base import Adapter, Batch, Row
from bench.suite.data import Source, Spec

THREADS = 2  # the cores of the benchmark machine


class BaleFile(Adapter):
    name = "bale"
    dists = ("bale",)
    module = "bale"
    shuffle_note = 'bale.Loader(shuffle="chunks"): row groups shuffled, rows mixed in a window'

    def write(self, source: Source, out: Path) -> None:
        import bale

        # Default codecs and row groups: what a user gets without tuning.
        bale.write(out / "data.bale", {"x": source.x, "label": source.label})

    def open(self, out: Path, spec: Spec) -> None:
        import bale

        self.spec = spec
        self.path = out / "data.bale"
        self.ds = bale.open(self.path)

    def _loader(self, batch_size: int, shuffle: Any, seed: int, epoch: int) -> Iterator[Batch]:
        import bale

        with bale.Loader(
            self.path, batch_size, shuffle=shuffle, seed=seed, num_threads=THREADS
        ) as loader:
            loader.set_epoch(epoch)
            for b in loader:
                yield b["x"], b["label"]

    def iter_sequential(self, batch_size: int) -> Iterator[Batch]:
        return self._loader(batch_size, "none", 0, 0)

    def iter_shuffled(self, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
        return self._loader(batch_size, "chunks", seed, epoch)

    def get_row(self, i: int) -> Row:
        row = self.ds[i]
        return row["x"], int(row["label"])

    def close(self) -> None:
        self.ds.close()
