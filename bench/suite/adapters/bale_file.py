"""bale: one .bale file written with the defaults (``bale``) or for random access (``bale-ra``);
read with bale.Loader, ``ds[i]`` and ``ds.take``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench.suite.adapters.base import Adapter, Batch, Row
from bench.suite.data import Source, Spec

THREADS = 2  # the cores of the benchmark machine


class BaleFile(Adapter):
    name = "bale"
    dists = ("bale",)
    module = "bale"
    shuffle_note = 'bale.Loader(shuffle="chunks"): row groups shuffled, rows mixed in a window'
    #: bale.write(random_access=...): frames fitted to rows with a frame index
    random_access = False

    def write(self, source: Source, out: Path) -> None:
        import bale

        # Default codecs and row groups: what a user gets without tuning.
        columns = {"x": source.x, "label": source.label}
        bale.write(out / "data.bale", columns, random_access=self.random_access)

    def describe_store(self, out: Path) -> dict[str, Any]:
        """The codec bale chose for ``x`` (read back from the file) and its frame size."""
        import bale
        from bale.ops.info import describe

        info = describe(out / "data.bale")
        x = next(c for c in info["columns"] if c["name"] == "x")
        with bale.open(out / "data.bale") as ds:
            segment = ds.index.segment_bytes
        codec = str(x["codec"])
        return {
            "compression": "" if codec in ("raw", "none", "") else codec,
            "codec": codec,
            "segment_bytes": segment,
        }

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

    def get_rows(self, indices: NDArray[np.int64]) -> Batch:
        batch = self.ds.take(indices)  # a dict of columns, rows in the asked order
        return batch["x"], batch["label"]

    def close(self) -> None:
        self.ds.close()


class BaleRandomAccess(BaleFile):
    """The same rows written with ``random_access=True``: each block stored as frames fitted to
    whole rows, with a frame index, so a random row decodes one small frame, not its block."""

    name = "bale random_access"
    random_access = True
