"""A Grain input pipeline over a .bale file: shuffled, batched, with worker processes.

Run: .venv/bin/python examples/grain_pipeline.py   (needs `pip install grain`)

Writes a small file of labelled 64x64 crops of real photos, then reads it through Grain's
DataLoader with an index sampler that shuffles each epoch, two worker processes and a batching
operation, checking that every row arrives exactly once per epoch.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import grain.python as grain
import numpy as np
from photo_splits import write_splits

from bale.adapters.grain import GrainSource

BATCH_SIZE = 64


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bale-grain-") as tmp:
        path = write_splits(Path(tmp))["train"]
        source = GrainSource(path, columns=["image", "label"])
        for epoch in range(2):
            loader = grain.DataLoader(
                data_source=source,
                sampler=grain.IndexSampler(len(source), shuffle=True, seed=epoch, num_epochs=1),
                operations=[grain.Batch(BATCH_SIZE, drop_remainder=False)],
                worker_count=2,
            )
            start = time.perf_counter()
            images, labels = 0, []
            for batch in loader:
                images += len(batch["image"])
                # With workers, grain hands batches over in shared memory: copy out what is kept
                # past the batch, so each batch's segment is freed as soon as it is dropped.
                labels.append(np.array(batch["label"]))
            took = time.perf_counter() - start
            counts = np.bincount(np.concatenate(labels))
            print(
                f"epoch {epoch}: {images} images in {took:.1f} s ({images / took:.0f} images/s), "
                f"per class {counts.tolist()}"
            )
            if images != len(source):
                print(f"expected {len(source)} rows, got {images}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
