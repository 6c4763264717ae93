"""bale.adapters.spark: a Spark DataFrame written as one part per partition and merged into one
file, and bale files read back as a DataFrame; on a real local Spark (2 threads, loopback only)."""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale

pytest.importorskip("pyspark", reason="the Spark tests need pyspark: pip install pyspark")
pytest.importorskip("pyarrow", reason="the Spark adapter needs pyarrow")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip(
        "the Spark tests need a Java runtime (java on PATH or JAVA_HOME)", allow_module_level=True
    )

from pyspark import cloudpickle
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from bale.adapters.spark import _bale_batches, read_bale, to_bale
from bale.ops.verify import verify

pytestmark = [
    pytest.mark.slow,
    # PySpark 4.x warns that it has not been tried with pandas 3; nothing here goes through pandas.
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]

#: Starting the JVM takes 5-15 s here; a hang fails the module instead of blocking it.
START_SECONDS = 180
#: No Spark job here should take more than a few seconds; a stuck one is cancelled.
JOB_SECONDS = 120
#: Rows per Arrow batch handed to a task: several batches per partition.
BATCH_ROWS = 100
EMBEDDING = 8


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    """One local Spark for the module: 2 threads, a task tried up to 2 times (in local mode the
    second number of ``local[2,2]`` sets it; ``spark.task.maxFailures`` is ignored there), the
    driver bound to 127.0.0.1, no UI, the executors' Python the one running the tests."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYSPARK_PYTHON", sys.executable)
        patch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
        builder = (
            SparkSession.builder.master("local[2,2]")
            .appName("bale-tests")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(BATCH_ROWS))
        )
        started: list[SparkSession] = []
        failed: list[BaseException] = []

        def start() -> None:
            try:
                started.append(builder.getOrCreate())
            except BaseException as exc:  # reported below, in the test's thread
                failed.append(exc)

        thread = threading.Thread(target=start, daemon=True)
        thread.start()
        thread.join(START_SECONDS)
        if failed:
            raise failed[0]
        if not started:
            pytest.fail(f"a local SparkSession did not start within {START_SECONDS} s")
        session = started[0]
        session.sparkContext.setLogLevel("ERROR")
        # Functions of this module travel by value: the executors cannot import tests/.
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        try:
            yield session
        finally:
            cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
            session.stop()


@contextmanager
def bounded(spark: SparkSession) -> Iterator[None]:
    """Cancel every job still running after JOB_SECONDS: the test fails instead of hanging."""
    timer = threading.Timer(JOB_SECONDS, spark.sparkContext.cancelAllJobs)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def frame(spark: SparkSession, rows: int, partitions: int) -> DataFrame:
    """int, float, bool, string, binary and array<float> (EMBEDDING per row) columns, in id order."""
    return (
        spark.range(rows, numPartitions=partitions)
        .withColumn("x", F.col("id") * 0.5)
        .withColumn("flag", F.col("id") % 3 == 0)
        .withColumn("name", F.concat(F.lit("row-"), F.col("id").cast("string")))
        .withColumn("jpeg", F.encode(F.concat(F.lit("\xff\xd8"), F.col("name")), "iso-8859-1"))
        .withColumn(
            "embedding",
            F.transform(
                F.sequence(F.lit(0), F.lit(EMBEDDING - 1)), lambda i: F.col("id") + i / 8.0
            ).cast("array<float>"),
        )
    )


def expected(ids: np.ndarray) -> dict[str, Any]:
    """What ``frame`` holds for these ids, as a bale batch."""
    names = [f"row-{i}" for i in ids.tolist()]
    return {
        "id": ids.astype(np.int64),
        "x": ids * 0.5,
        "flag": ids % 3 == 0,
        "name": names,
        "jpeg": [b"\xff\xd8" + n.encode() for n in names],
        "embedding": (ids[:, None] + np.arange(EMBEDDING) / 8.0).astype(np.float32),
    }


def assert_batches_equal(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert list(got) == list(want)
    for name, values in want.items():
        if isinstance(values, np.ndarray):
            assert got[name].dtype == values.dtype, name
            np.testing.assert_array_equal(got[name], values, err_msg=name)
        else:
            assert list(got[name]) == values, name


def test_to_bale_equals_what_one_writer_writes(spark: SparkSession, tmp_path: Path) -> None:
    target = tmp_path / "train.bale"
    with bounded(spark):
        report = to_bale(frame(spark, 2_000, 4), target, metadata={"source": "spark"})
    assert report.rows == 2_000
    assert [s.rows for s in report.sources] == [500] * 4  # one part per partition, in order
    assert not (tmp_path / "train.bale.parts").exists()

    single = tmp_path / "single.bale"
    with bale.Writer(single) as writer:
        writer.write(expected(np.arange(2_000)))
    with bale.open(target) as merged, bale.open(single) as one:
        assert merged.schema == one.schema
        assert merged.schema.describe()["embedding"] == f"float32[{EMBEDDING}]"
        assert merged.metadata["source"] == "spark"
        assert_batches_equal(merged.read(), one.read())  # row for row
    assert verify(target).ok


def test_a_task_failing_once_is_retried_and_writes_its_rows_once(
    spark: SparkSession, tmp_path: Path
) -> None:
    flag = tmp_path / "fail-once"
    flag.touch()
    fail_once = str(flag)

    def fail_in_partition_1(batches: Iterator[Any]) -> Iterator[Any]:
        """Pass batches on; partition 1 fails on its 3rd batch, while its part is half written,
        the first time only."""
        from pyspark import TaskContext

        context = TaskContext.get()
        for number, batch in enumerate(batches):
            if context is not None and context.partitionId() == 1 and number == 2:
                try:
                    os.remove(fail_once)
                except FileNotFoundError:
                    pass
                else:
                    raise RuntimeError("planted failure")
            yield batch

    df = frame(spark, 2_000, 4)
    failing = df.mapInArrow(fail_in_partition_1, df.schema)
    target = tmp_path / "retried.bale"
    with bounded(spark):
        report = to_bale(failing, target)
    assert not flag.exists()  # the failure happened
    assert report.rows == 2_000
    with bale.open(target) as ds:
        assert_batches_equal(ds.read(), expected(np.arange(2_000)))
    assert verify(target).ok


def test_after_a_shuffle_sorting_within_partitions_gives_the_same_file(
    spark: SparkSession, tmp_path: Path
) -> None:
    """The documented recipe for a shuffled DataFrame: each partition sorted by a key. Some
    partitions are empty (a filter): they count as parts of 0 rows."""
    df = (
        frame(spark, 1_000, 3)
        .filter(F.col("id") % 7 != 0)
        .repartition(5, "name")
        .sortWithinPartitions("id")
    )
    with bounded(spark):
        first = to_bale(df, tmp_path / "a.bale")
        second = to_bale(df, tmp_path / "b.bale")
    assert (tmp_path / "a.bale").read_bytes() == (tmp_path / "b.bale").read_bytes()
    assert len(first.sources) == len(second.sources) == 5
    ids = np.array([i for i in range(1_000) if i % 7])
    with bale.open(tmp_path / "a.bale") as ds:
        got = ds.read()
        assert sorted(got["id"].tolist()) == ids.tolist()  # every row exactly once
        order = np.argsort(got["id"], kind="stable")
        np.testing.assert_array_equal(got["embedding"][order], expected(ids)["embedding"])
        start = 0
        for source in first.sources:  # each part in id order
            part = got["id"][start : start + source.rows]
            assert (np.diff(part) > 0).all()
            start += source.rows


def test_read_bale_gives_the_rows_in_file_order(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "table.bale"
    ids = np.arange(3_000)
    with bale.Writer(path, row_group_bytes=16_384) as writer:
        for start in range(0, 3_000, 500):
            writer.write(expected(ids[start : start + 500]))
    with bale.open(path) as ds:
        groups = ds.num_row_groups
    assert groups > 4

    with bounded(spark):
        df = read_bale(spark, str(path), groups_per_task=2)
        assert df.rdd.getNumPartitions() == -(-groups // 2)
        table = df.toArrow()
        picked = read_bale(spark, [str(path)], columns=["name", "id"]).collect()
    got = {name: table.column(name) for name in table.column_names}
    want = expected(ids)
    np.testing.assert_array_equal(got["id"].to_numpy(), want["id"])
    np.testing.assert_array_equal(got["x"].to_numpy(), want["x"])
    np.testing.assert_array_equal(got["flag"].to_numpy(zero_copy_only=False), want["flag"])
    assert got["name"].to_pylist() == want["name"]
    assert got["jpeg"].to_pylist() == want["jpeg"]
    embedding = np.array(got["embedding"].to_pylist(), np.float32)
    np.testing.assert_array_equal(embedding, want["embedding"])
    assert [tuple(r) for r in picked] == list(zip(want["name"], want["id"].tolist(), strict=True))


def test_columns_bale_cannot_store_are_refused_by_name(spark: SparkSession, tmp_path: Path) -> None:
    target = tmp_path / "bad.bale"
    when = spark.range(10).withColumn("when", F.current_timestamp())
    with pytest.raises(bale.SchemaError, match=r"column 'when'.*timestamp"):
        to_bale(when, target)  # on the driver, before any task

    nulls = spark.range(20, numPartitions=2).withColumn(
        "label", F.when(F.col("id") == 13, F.lit(None)).otherwise(F.col("id"))
    )
    with (
        bounded(spark),
        pytest.raises(Exception, match=r"column 'label'.*partition 1, its row 3.*null"),
    ):
        to_bale(nulls, target)
    # Arrays of one length per partition, another in the next: the merge names the part.
    shapes = spark.range(20, numPartitions=2).withColumn(
        "e", F.sequence(F.lit(0), (F.col("id") >= 10).cast("long"))
    )
    with bounded(spark), pytest.raises(bale.SchemaError, match=r"part-000001.*column 'e'"):
        to_bale(shapes, target)
    assert not target.exists()
    assert not (tmp_path / "bad.bale.parts").exists()  # a failed job removes its parts

    (tmp_path / "taken.bale").write_bytes(b"not mine")
    with pytest.raises(bale.TargetExistsError):
        to_bale(spark.range(3), tmp_path / "taken.bale")


def test_a_failed_job_rerun_with_resume_keeps_its_finished_parts(
    spark: SparkSession, tmp_path: Path
) -> None:
    broken = tmp_path / "partition-2-broken"
    broken.touch()
    still_broken = str(broken)

    def fail_in_partition_2(batches: Iterator[Any]) -> Iterator[Any]:
        from pyspark import TaskContext

        context = TaskContext.get()
        for batch in batches:
            if context is not None and context.partitionId() == 2 and os.path.exists(still_broken):
                raise RuntimeError("planted failure, every attempt")
            yield batch

    df = frame(spark, 1_000, 4)
    failing = df.mapInArrow(fail_in_partition_2, df.schema)
    target = tmp_path / "resumed.bale"
    parts = bale.PartSet(target)
    with bounded(spark), pytest.raises(Exception, match="planted failure"):
        to_bale(failing, target, resume=True)
    assert not target.exists()
    # Spark cancels the tasks still running when it gives up; partition 2 started only once
    # partition 0 or 1 had finished (2 threads), so at least one part is complete.
    finished = sorted(parts.completed())
    assert finished and 2 not in finished
    # A finished part replaced by other rows: a re-run that rewrote it would bring back the
    # real rows.
    kept = finished[0]
    planted = expected(np.arange(10_000, 10_250))
    parts.write_part(kept, planted, skip_complete=False)

    broken.unlink()
    with bounded(spark):
        report = to_bale(failing, target, resume=True)
    assert [s.rows for s in report.sources] == [250] * 4
    ids = np.arange(1_000)
    ids[kept * 250 : (kept + 1) * 250] = np.arange(10_000, 10_250)
    want = expected(ids)
    with bale.open(target) as ds:
        assert_batches_equal(ds.read(), want)
    assert not (tmp_path / "resumed.bale.parts").exists()


def test_the_map_in_pandas_recipe_of_the_docs_gives_the_same_file(
    spark: SparkSession, tmp_path: Path
) -> None:
    """docs/DISTRIBUTED.md, "Spark": the recipe by hand, as printed there, makes the same bytes
    as ``to_bale``."""
    import pandas as pd
    from pyspark import TaskContext

    df = frame(spark, 1_000, 3).drop("x", "flag")
    parts = bale.PartSet(str(tmp_path / "by-hand.bale"))

    def write(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        index = TaskContext.get().partitionId()  # the same in every attempt of this task
        batches = (
            {
                "id": f["id"].to_numpy(),  # numbers -> scalars
                "name": f["name"].tolist(),  # strings -> str
                "jpeg": f["jpeg"].tolist(),  # binary -> bytes
                "embedding": np.stack(f["embedding"].tolist()),  # array<float> -> (rows, 8)
            }
            for f in frames
            if len(f)
        )
        info = parts.write_part(index, batches)
        yield pd.DataFrame({"index": [index], "rows": [info.rows]})

    with bounded(spark):
        done = df.mapInPandas(write, "index long, rows long").collect()
        report = parts.merge(count=len(done))
        to_bale(df, tmp_path / "helper.bale")
    assert report.rows == 1_000
    assert (tmp_path / "by-hand.bale").read_bytes() == (tmp_path / "helper.bale").read_bytes()


def test_arrow_batches_become_bale_batches_and_bad_rows_are_named() -> None:
    """The task's conversion alone (no Spark): nested arrays keep their shape; ragged arrays
    and null elements name the partition's row, counted across its batches."""
    import pyarrow as pa

    nested = pa.array([[[1, 2], [3, 4]], [[5, 6], [7, 8]]], pa.list_(pa.list_(pa.int16())))
    batch = pa.RecordBatch.from_arrays([nested, pa.array([b"a", b"b"])], names=["m", "raw"])
    [(types, values)] = list(_bale_batches(iter([batch]), 0, "t.bale"))
    assert types == {"m": bale.Array("int16", (2, 2)), "raw": bale.Bytes()}
    np.testing.assert_array_equal(values["m"], np.arange(1, 9, dtype=np.int16).reshape(2, 2, 2))

    def rows(*lists: list[Any]) -> pa.RecordBatch:
        return pa.RecordBatch.from_arrays([pa.array(list(lists), pa.list_(pa.float32()))], ["e"])

    first = rows([1.0, 2.0], [3.0, 4.0])
    with pytest.raises(bale.SchemaError, match=r"column 'e'.*partition 4, its row 3:.*3 elem"):
        list(_bale_batches(iter([first, rows([1.0, 2.0], [1.0, 2.0, 3.0])]), 4, "t.bale"))
    with pytest.raises(bale.SchemaError, match=r"column 'e'.*partition 4, its row 2: a null elem"):
        list(_bale_batches(iter([first, rows([1.0, None])]), 4, "t.bale"))
    with pytest.raises(bale.SchemaError, match=r"column 'e'.*partition 4, its row 1: a null value"):
        list(_bale_batches(iter([rows([1.0], None)]), 4, "t.bale"))
    inner = pa.array([[[1.0]], [None]], pa.list_(pa.list_(pa.float32())))
    with pytest.raises(bale.SchemaError, match=r"column 'e'.*partition 4, its row 1: a null array"):
        list(_bale_batches(iter([pa.RecordBatch.from_arrays([inner], ["e"])]), 4, "t.bale"))
