"""A Ray Data pipeline from one .bale file to another: read, preprocess on every CPU, write.

Run: .venv/bin/python examples/ray_pipeline.py   (needs `pip install "ray[data]"`)

`bale.ray.read_bale` gives one read task per run of row groups (row counts and sizes come from
the footer: nothing is read until the pipeline runs); `map_batches` upsamples every 64x64 crop
to 224x224 and adds its per-channel mean; `bale.ray.BaleDatasink` writes one part per write
task and merges them, in task order, into ONE file (row groups copied as stored). The result is
checked row for row against the same preprocessing done with NumPy on the whole file.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
from photo_splits import write_splits

import bale
import bale.ray


def upsample(batch: dict[str, Any]) -> dict[str, Any]:
    """64x64 -> 224x224 by nearest neighbour (the model's input size), plus channel means."""
    rows = (np.arange(224) * 64) // 224
    images = batch["image"][:, rows][:, :, rows]
    return {
        "image": images,
        "channel_mean": images.mean(axis=(1, 2), dtype=np.float32),
        "label": batch["label"],
    }


def main() -> int:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = True  # the file's rows in the source's order
    try:
        with tempfile.TemporaryDirectory(prefix="bale-ray-") as tmp:
            source = write_splits(Path(tmp))["train"]
            target = Path(tmp) / "train-224.bale"
            ds = bale.ray.read_bale(source, override_num_blocks=4)
            print(f"{ds.count()} rows in {bale.open(source).num_row_groups} row groups")
            sink = bale.ray.BaleDatasink(target, metadata={"made_by": "examples/ray_pipeline.py"})
            start = time.perf_counter()
            ds.map_batches(upsample, batch_format="numpy").write_datasink(sink)
            took = time.perf_counter() - start
            assert sink.report is not None
            print(f"{sink.report.summary()}\nin {took:.1f} s")

            written = bale.open(target)
            expected = upsample(bale.open(source)[:])
            for name, values in expected.items():
                if not np.array_equal(written[name][:], values):
                    print(f"column {name!r} differs from NumPy", file=sys.stderr)
                    return 1
            print(f"{written!r}: matches NumPy row for row")
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
