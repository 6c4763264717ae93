"""A Spark job that writes ONE .bale file: each partition is a part, the driver merges them.

Run: .venv/bin/python examples/spark_parts.py   (needs `pip install pyspark` and Java 17+)

A DataFrame of 20,000 rows (an id, a label, a path, a 128-float embedding and the image's bytes)
is shuffled by label, sorted within its partitions (so that the file is the same on every run),
written with `bale.adapters.spark.to_bale` (one part per partition, written by the executors
through `mapInArrow`, merged in partition order) and read back with `read_bale` to count the
labels in Spark. The file is checked row for row against the same rows computed with NumPy.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

import bale
from bale.adapters.spark import read_bale, to_bale

ROWS, DIM = 20_000, 128


def main() -> int:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the executors' Python: bale's
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # this machine only
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        df = (
            spark.range(ROWS, numPartitions=8)
            .withColumn("label", (F.col("id") * 7 % 10).cast("int"))
            .withColumn("path", F.format_string("images/%06d.jpg", F.col("id")))
            .withColumn(
                "embedding",
                F.transform(
                    F.sequence(F.lit(0), F.lit(DIM - 1)), lambda i: F.sin(F.col("id") + i)
                ).cast("array<float>"),
            )
            .withColumn("image", F.encode(F.col("path"), "utf-8"))  # stand-in for JPEG bytes
            .repartition(4, "label")  # a shuffle: the order within partitions is not fixed...
            .sortWithinPartitions("id")  # ...until sorted by a key
        )
        with tempfile.TemporaryDirectory(prefix="bale-spark-") as tmp:
            target = Path(tmp) / "features.bale"
            start = time.perf_counter()
            report = to_bale(df, target, metadata={"made_by": "examples/spark_parts.py"})
            print(f"{report.summary()}\nin {time.perf_counter() - start:.1f} s")

            counts = read_bale(spark, str(target), columns=["label"]).groupBy("label").count()
            print("labels:", sorted((r["label"], r["count"]) for r in counts.collect()))

            with bale.open(target) as written:
                got = written[:]
            ids = got["id"]
            assert sorted(ids.tolist()) == list(range(ROWS))  # every row exactly once
            want = np.sin(ids[:, None] + np.arange(DIM)).astype(np.float32)
            np.testing.assert_allclose(got["embedding"], want, rtol=1e-6)
            assert got["image"][:2] == [f"images/{i:06d}.jpg".encode() for i in ids[:2]]
            print(f"checked {len(ids)} rows against NumPy: {written.schema.describe()}")
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
