"""bale.adapters.ray / bale.ray: bale files as a Ray Datasource, and a Datasink that writes one
part per task and merges them into one file; on a real local Ray with 2 CPUs."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pytest

import bale

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

import bale.ray  # noqa: E402
from bale.adapters.ray import (  # noqa: E402
    BaleDatasink,
    BaleDatasource,
    bale_batch,
    column_type_of,
    split_runs,
)
from bale.ops.verify import verify  # noqa: E402

#: Ray warns about its own settings when it makes its DataContext (use_push_based_shuffle).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")

#: No Ray job here should take more than a few seconds; a hang fails the test instead.
JOB_SECONDS = 120


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """One local Ray for the module: 2 CPUs, no dashboard, worker logs kept off the terminal."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        configure_logging=True,
    )
    # Functions and classes of this module travel by value: the workers cannot import tests/.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.execution_options.preserve_order = True
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    try:
        yield
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        ray.shutdown()


@pytest.fixture(autouse=True)
def bounded() -> Iterator[None]:
    """Every test ends within JOB_SECONDS: a stuck Ray job raises in the main thread."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"the test ran over {JOB_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(JOB_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def every_kind(rows: int, start: int = 0) -> dict[str, Any]:
    """Rows of every column kind: fixed arrays of several dtypes, scalars, bytes, strings."""
    rng = np.random.default_rng(start)
    ids = np.arange(start, start + rows)
    return {
        "image": rng.integers(0, 256, (rows, 6, 5, 3), dtype=np.uint8),
        "embedding": rng.standard_normal((rows, 7)).astype(np.float32),
        "coords": rng.integers(-(2**40), 2**40, (rows, 2), dtype=np.int64),
        "half": rng.standard_normal((rows, 3)).astype(np.float16),
        "mask": rng.random((rows, 4)) > 0.5,
        "id": ids.astype(np.int64),
        "score": rng.random(rows),
        "flag": ids % 3 == 0,
        "blob": [bytes([i % 251]) * (i % 9) for i in ids],
        "text": [f"row {i} é{'x' * (i % 5)}" for i in ids],
    }


def equal_batches(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert list(a) == list(b)
    for name in a:
        if isinstance(a[name], np.ndarray):
            assert isinstance(b[name], np.ndarray), name
            assert a[name].dtype == b[name].dtype, name
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        else:
            assert list(a[name]) == list(b[name]), name


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two files of every kind, row groups of 64 rows (uneven at each file's end)."""
    folder = tmp_path_factory.mktemp("ray")
    out = []
    for i, rows in enumerate((300, 201)):
        path = folder / f"train-{i}.bale"
        bale.write(path, every_kind(rows, start=1000 * i), row_group_rows=64)
        out.append(path)
    return out


def all_rows(paths: list[Path]) -> dict[str, Any]:
    pieces = [bale.open(p)[:] for p in paths]
    return {
        name: np.concatenate([p[name] for p in pieces])
        if isinstance(pieces[0][name], np.ndarray)
        else [v for p in pieces for v in p[name]]
        for name in pieces[0]
    }


def as_bale_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """A numpy batch from Ray: bytes and strings as lists, as bale gives them."""
    return {k: v if v.dtype != object else list(v) for k, v in batch.items()}


# -- pure parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "parts", "expected"),
    [
        ([10, 10, 10, 10], 2, [(0, 2), (2, 4)]),
        ([10, 10, 10, 10], 4, [(0, 1), (1, 2), (2, 3), (3, 4)]),
        ([10, 10, 10], 9, [(0, 1), (1, 2), (2, 3)]),  # at most one range per item
        ([100, 1, 1, 1], 3, [(0, 1), (1, 2), (2, 4)]),  # every range non-empty
        ([1, 1, 1, 100], 2, [(0, 3), (3, 4)]),
        ([0, 0, 0, 0], 2, [(0, 2), (2, 4)]),
        ([5], 1, [(0, 1)]),
    ],
)
def test_split_runs_cuts_contiguous_ranges_of_about_equal_weight(
    weights: list[int], parts: int, expected: list[tuple[int, int]]
) -> None:
    assert split_runs(weights, parts) == expected


def test_importing_bale_ray_does_not_import_ray() -> None:
    probe = "import sys, bale.ray; print('ray' in sys.modules, sorted(bale.ray.__all__))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(maxsplit=1) == [
        "False",
        "['BaleDatasink', 'BaleDatasource', 'read_bale']\n",
    ]
    assert bale.ray.read_bale is bale.adapters.ray.read_bale


def test_files_of_different_types_are_refused_naming_the_file_and_column(
    files: list[Path], tmp_path: Path
) -> None:
    other = tmp_path / "other.bale"
    rows = every_kind(10)
    rows["embedding"] = rows["embedding"].astype(np.float64)
    bale.write(other, rows)
    with pytest.raises(bale.SchemaError, match="float64") as caught:
        BaleDatasource([files[0], other])
    assert caught.value.column == "embedding" and caught.value.path == str(other)
    BaleDatasource([files[0], other], columns=["image", "text"])  # the shared columns are fine
    with pytest.raises(KeyError, match="nope"):
        BaleDatasource(files, columns=["nope"])
    with pytest.raises(bale.BaleError, match=r"no \.bale file matches"):
        BaleDatasource(str(tmp_path / "missing-*.bale"))


def test_ragged_and_nested_columns_are_refused_naming_the_column() -> None:
    pa = pytest.importorskip("pyarrow")
    assert column_type_of(pa.field("x", pa.list_(pa.float32(), 3))) == bale.Array("float32", (3,))
    nested = pa.array([[[1, 2], [3, 4]], [[5, 6], [7, 8]]], pa.list_(pa.list_(pa.int8(), 2), 2))
    types, batch = bale_batch(pa.table({"n": nested}).slice(1, 1))  # an offset into the values
    assert types == {"n": bale.Array("int8", (2, 2))}
    np.testing.assert_array_equal(batch["n"], np.array([[[5, 6], [7, 8]]], np.int8))
    for kind in (pa.list_(pa.int64()), pa.struct([("a", pa.int8())]), pa.timestamp("s")):
        with pytest.raises(bale.SchemaError) as caught:
            column_type_of(pa.field("bad", kind))
        assert caught.value.column == "bad"


# -- reading ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_metadata_comes_from_the_footers(files: list[Path]) -> None:
    source = BaleDatasource([str(files[0].parent / "train-*.bale")])
    footers = [bale.open(p) for p in files]
    sizes = [s for f in footers for s in f.row_group_sizes]  # 64-row groups, uneven at the ends
    raw = [int(b) for f in footers for b in f.index.blocks["raw_size"].sum(axis=1)]
    assert source.estimate_inmemory_data_size() == sum(raw)
    for parallelism in (1, 3, 100):
        tasks = source.get_read_tasks(parallelism)
        assert len(tasks) == min(parallelism, len(sizes))
        assert [t.metadata.num_rows for t in tasks] == [
            sum(sizes[a:b]) for a, b in split_runs(raw, parallelism)
        ]
        assert sum(t.metadata.size_bytes for t in tasks) == sum(raw)
        assert {f for t in tasks for f in t.metadata.input_files} == {str(p) for p in files}
    ds = bale.ray.read_bale(files, override_num_blocks=4)
    assert ds.count() == sum(len(f) for f in footers)
    schema = ds.schema()
    assert schema.names == footers[0].schema.names
    assert str(schema.types[schema.names.index("blob")]) == "binary"
    assert str(schema.types[schema.names.index("text")]) == "string"


@pytest.mark.slow
def test_read_bale_gives_every_column_kind_in_file_order(files: list[Path]) -> None:
    ds = bale.ray.read_bale(files, override_num_blocks=3)
    got = as_bale_batch(ds.take_batch(10_000, batch_format="numpy"))
    equal_batches(all_rows(files), got)
    assert got["image"].shape == (501, 6, 5, 3) and got["half"].dtype == np.float16
    assert isinstance(got["blob"][5], bytes) and isinstance(got["text"][5], str)
    # Projection: the read tasks read only the selected columns.
    picked = bale.ray.read_bale(files[1], columns=["text", "id"]).select_columns(["id"])
    np.testing.assert_array_equal(picked.take_batch(500)["id"], np.arange(1000, 1201))


# -- writing ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_round_trip_equals_the_file_one_writer_makes(files: list[Path], tmp_path: Path) -> None:
    target = tmp_path / "merged.bale"
    sink = bale.ray.BaleDatasink(target, metadata={"source": "ray"})
    bale.ray.read_bale(files, override_num_blocks=3).write_datasink(sink)
    single = tmp_path / "single.bale"
    rows = all_rows(files)
    with bale.Writer(single) as writer:
        writer.write(rows)
    merged, expected = bale.open(target), bale.open(single)
    assert merged.schema.describe() == expected.schema.describe()
    equal_batches(expected[:], merged[:])
    assert merged.metadata["source"] == "ray"
    assert verify(target).problems == []
    assert sink.report is not None and sink.report.rows == len(expected)
    assert [s.rows for s in sink.report.sources] == [
        t.metadata.num_rows for t in BaleDatasource(files).get_read_tasks(3)
    ]
    assert not os.path.exists(f"{target}.parts")  # parts removed after the merge


@pytest.mark.slow
def test_same_input_gives_the_same_bytes(files: list[Path], tmp_path: Path) -> None:
    outputs = []
    for run, concurrency in enumerate((1, 2)):
        target = tmp_path / f"run{run}.bale"
        ds = bale.ray.read_bale(files, override_num_blocks=4)
        ds.write_datasink(bale.ray.BaleDatasink(target), concurrency=concurrency)
        outputs.append(target.read_bytes())
    assert outputs[0] == outputs[1]


def double_embedding(batch: dict[str, Any]) -> dict[str, Any]:
    return {"id": batch["id"], "embedding": batch["embedding"] * 2}


class FailOnceAfterWriting(BaleDatasink):
    """Task 1 fails once after its part is complete (a flag file says it already did)."""

    def __init__(self, target: Path, flag: Path) -> None:
        super().__init__(target)
        self.flag = str(flag)

    def write(self, blocks: Any, ctx: Any) -> Any:
        info = super().write(blocks, ctx)
        if ctx.task_idx == 1 and not os.path.exists(self.flag):
            Path(self.flag).write_text(json.dumps(info.rows))
            raise RuntimeError("injected failure after the part was written")
        return info


@pytest.mark.slow
def test_a_task_retried_after_its_part_was_written_adds_no_rows(
    files: list[Path], tmp_path: Path
) -> None:
    target, flag = tmp_path / "retried.bale", tmp_path / "failed-once"
    ds = bale.ray.read_bale(files, columns=["id", "embedding"], override_num_blocks=3)
    ds.map_batches(double_embedding, batch_format="numpy").write_datasink(
        FailOnceAfterWriting(target, flag),
        ray_remote_args={"max_retries": 2, "retry_exceptions": True},
    )
    assert flag.exists() and json.loads(flag.read_text()) > 0  # the failure did happen
    got = bale.open(target)[:]
    np.testing.assert_array_equal(got["id"], all_rows(files)["id"])  # every row once, in order
    np.testing.assert_array_equal(got["embedding"], all_rows(files)["embedding"] * 2)


def die_once_mid_part(batch: dict[str, Any], flag: str) -> dict[str, Any]:
    """Kills its worker process the first time it sees row 250: mid-part, as a lost node."""
    if 250 in batch["id"] and not os.path.exists(flag):
        Path(flag).touch()
        os._exit(1)
    return batch


@pytest.mark.slow
def test_a_worker_killed_mid_part_is_retried_and_rows_appear_once(
    files: list[Path], tmp_path: Path
) -> None:
    target, flag = tmp_path / "killed.bale", tmp_path / "died-once"
    ds = bale.ray.read_bale(files, columns=["id", "text"], override_num_blocks=2)
    ds.map_batches(
        die_once_mid_part, batch_size=50, batch_format="numpy", fn_kwargs={"flag": str(flag)}
    ).write_datasink(bale.ray.BaleDatasink(target, row_group_rows=32))
    assert flag.exists()
    got = bale.open(target)[:]
    expected = all_rows(files)
    np.testing.assert_array_equal(got["id"], expected["id"])
    assert got["text"] == expected["text"]
    assert verify(target).problems == []


def always_fail(batch: dict[str, Any]) -> dict[str, Any]:
    if 1100 in batch["id"]:
        raise ValueError("this row cannot be processed")
    return batch


@pytest.mark.slow
def test_a_failed_job_leaves_no_target_and_no_parts(files: list[Path], tmp_path: Path) -> None:
    target = tmp_path / "failed.bale"
    ds = bale.ray.read_bale(files, columns=["id"], override_num_blocks=3)
    with pytest.raises(Exception, match="this row cannot be processed"):
        ds.map_batches(always_fail).write_datasink(bale.ray.BaleDatasink(target))
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.slow
def test_an_existing_target_is_kept_unless_overwrite(files: list[Path], tmp_path: Path) -> None:
    target = tmp_path / "exists.bale"
    target.write_bytes(b"keep me")
    ds = bale.ray.read_bale(files, columns=["id"], override_num_blocks=2)
    with pytest.raises(Exception, match="overwrite=True"):
        ds.write_datasink(bale.ray.BaleDatasink(target))
    assert target.read_bytes() == b"keep me"
    ds.write_datasink(bale.ray.BaleDatasink(target, overwrite=True))
    assert len(bale.open(target)) == 501


def ragged(batch: dict[str, Any]) -> dict[str, Any]:
    return {"id": batch["id"], "bad": [np.zeros(i % 3) for i in batch["id"]]}


@pytest.mark.slow
def test_a_ragged_column_fails_the_write_naming_it(files: list[Path], tmp_path: Path) -> None:
    target = tmp_path / "ragged.bale"
    ds = bale.ray.read_bale(files, columns=["id"], override_num_blocks=2)
    with pytest.raises(Exception, match="column 'bad'"):
        ds.map_batches(ragged, batch_format="numpy").write_datasink(BaleDatasink(target))
    assert not target.exists()


def to_images(batch: dict[str, Any]) -> dict[str, Any]:
    """A preprocessing step: each id becomes a 224x224x3 uint8 image and a label."""
    ids = batch["id"].astype(np.int64)
    ramp = np.arange(224, dtype=np.int64)
    images = (ids[:, None, None, None] + ramp[None, :, None, None] + np.arange(3)) % 256
    images = np.broadcast_to(images, (len(ids), 224, 224, 3)).astype(np.uint8)
    return {
        "image": images,
        "label": (ids % 10).astype(np.int16),
        "name": [f"{i}.jpg" for i in ids],
    }


@pytest.mark.slow
def test_images_made_by_map_batches_are_written_through_the_sink(tmp_path: Path) -> None:
    target = tmp_path / "train.bale"
    ds = ray.data.from_items([{"id": i} for i in range(40)], override_num_blocks=4)
    ds.map_batches(to_images, batch_size=8, batch_format="numpy").write_datasink(
        bale.ray.BaleDatasink(target)
    )
    got = bale.open(target)
    assert got.schema.describe() == {
        "image": "uint8[224,224,3]",
        "label": "int16",
        "name": "string",
    }
    expected = to_images({"id": np.arange(40)})
    equal_batches({**expected, "name": list(expected["name"])}, got[:])
    assert verify(target).problems == []


def normalise(batch: dict[str, Any]) -> dict[str, Any]:
    """The usual preprocessing: images as float16 in [0, 1], plus their mean brightness."""
    images = batch["image"].astype(np.float16) / np.float16(255)
    return {"image": images, "brightness": images.mean(axis=(1, 2, 3)).astype(np.float32)}


@pytest.mark.slow
def test_read_images_map_batches_write_datasink(tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image")
    folder = tmp_path / "raw"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(6):  # of different sizes: read_images resizes them all
        pixels = rng.integers(0, 256, (20 + 7 * i, 30 + 3 * i, 3), dtype=np.uint8)
        image.fromarray(pixels).save(folder / f"{i}.png")
    target = tmp_path / "train.bale"
    ds = ray.data.read_images(str(folder), size=(224, 224), mode="RGB", override_num_blocks=3)
    ds.map_batches(normalise, batch_format="numpy").write_datasink(bale.ray.BaleDatasink(target))
    got = bale.open(target)
    assert len(got) == 6
    assert got.schema.describe() == {"image": "float16[224,224,3]", "brightness": "float32"}
    expected = normalise(
        ray.data.read_images(str(folder), size=(224, 224), mode="RGB").take_batch(6)
    )
    rows = got[:]
    order = np.argsort(rows["brightness"])  # read_images lists files in its own order
    np.testing.assert_array_equal(
        rows["image"][order], expected["image"][np.argsort(expected["brightness"])]
    )


@pytest.mark.slow
def test_leftover_parts_are_removed_unless_resume(files: list[Path], tmp_path: Path) -> None:
    """A complete part left by an earlier run of index 0 holds other rows: a new write replaces
    it; with resume=True (the same job run again) it is kept and skipped."""
    from bale.ops.parts import PartSet

    ds = bale.ray.read_bale(files, columns=["id"], override_num_blocks=2)
    for resume in (False, True):
        target = tmp_path / f"resume-{resume}.bale"
        planted = PartSet(target).write_part(0, {"id": np.arange(-5, 0, dtype=np.int64)})
        ds.write_datasink(bale.ray.BaleDatasink(target, resume=resume))
        ids = bale.open(target)["id"][:]
        expected = all_rows(files)["id"]
        if resume:
            assert planted.rows == 5
            np.testing.assert_array_equal(ids[:5], np.arange(-5, 0))  # part 0 skipped, kept
            np.testing.assert_array_equal(ids[5:], expected[len(expected) - len(ids) + 5 :])
        else:
            np.testing.assert_array_equal(ids, expected)


@pytest.mark.slow
def test_min_rows_per_part_makes_fewer_fuller_parts(tmp_path: Path) -> None:
    ds = ray.data.range(400, override_num_blocks=8)
    parts = {}
    for min_rows in (None, 200):
        sink = bale.ray.BaleDatasink(tmp_path / f"{min_rows}.bale", min_rows_per_part=min_rows)
        ds.write_datasink(sink)
        assert sink.report is not None
        parts[min_rows] = [s.rows for s in sink.report.sources]
        np.testing.assert_array_equal(bale.open(sink.target)["id"][:], np.arange(400))
    assert parts[None] == [50] * 8
    assert sum(parts[200]) == 400 and min(parts[200]) >= 200


@pytest.mark.slow
def test_tasks_without_rows_leave_empty_parts_and_pandas_blocks_are_written(
    tmp_path: Path,
) -> None:
    from ray.data.expressions import col

    sink = bale.ray.BaleDatasink(tmp_path / "filtered.bale")
    ray.data.range(100, override_num_blocks=4).filter(expr=col("id") < 10).write_datasink(sink)
    assert sink.report is not None
    assert [s.rows for s in sink.report.sources] == [10, 0, 0, 0]
    np.testing.assert_array_equal(bale.open(sink.target)["id"][:], np.arange(10))

    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": np.arange(5), "s": list("abcde"), "b": [b"x", b"", b"z", b"", b"y"]})
    target = tmp_path / "pandas.bale"
    ray.data.from_pandas(frame).map_batches(lambda d: d, batch_format="pandas").write_datasink(
        bale.ray.BaleDatasink(target)
    )
    equal_batches(
        {"a": np.arange(5), "s": list("abcde"), "b": [b"x", b"", b"z", b"", b"y"]},
        bale.open(target)[:],
    )

    with pytest.raises(bale.BaleError, match="no rows"):
        ray.data.range(10).filter(expr=col("id") < 0).write_datasink(
            bale.ray.BaleDatasink(tmp_path / "none.bale")
        )
    assert not (tmp_path / "none.bale").exists()


@pytest.fixture(scope="module")
def s3(files: list[Path]) -> Iterator[dict[str, Any]]:
    """moto's S3 server on 127.0.0.1 holding the two files; fsspec-style options for it."""
    pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    admin = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    try:
        admin.create_bucket(Bucket="ray")
        for path in files:
            admin.put_object(Bucket="ray", Key=f"in/{path.name}", Body=path.read_bytes())
        yield {
            "key": "testing",
            "secret": "testing",
            "endpoint_url": endpoint,
            "client_kwargs": {"region_name": "us-east-1"},
        }
    finally:
        admin.close()
        from bale.io.remote_client import close_shared_connections

        close_shared_connections()
        server.stop()


@pytest.mark.slow
def test_urls_in_and_out(files: list[Path], s3: dict[str, Any]) -> None:
    ds = bale.ray.read_bale("s3://ray/in/train-*.bale", storage_options=s3, override_num_blocks=3)
    sink = bale.ray.BaleDatasink("s3://ray/out/merged.bale", storage_options=s3)
    ds.write_datasink(sink)
    with bale.open("s3://ray/out/merged.bale", storage_options=s3) as merged:
        equal_batches(all_rows(files), merged[:])
    assert verify("s3://ray/out/merged.bale", storage_options=s3).problems == []
    fs = pytest.importorskip("s3fs").S3FileSystem(**s3, skip_instance_cache=True)
    assert fs.find("ray/out/") == ["ray/out/merged.bale"]  # the parts are gone
