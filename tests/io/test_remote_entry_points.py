"""Every read entry point besides ``bale.open`` and the Loader over URLs (loopback HTTP with
Range, moto's S3): the torch, grain, keras and dask adapters give what they give for the local
file, in worker processes too, and the CLI's read commands take ``--storage-option`` and never
print a storage option's value."""

from __future__ import annotations

import functools
import json
import pickle
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from remote_helpers import BUCKET, S3_KEY, S3_SECRET, s3_options, skip_without
from remote_servers import RangeServer

import bale
from bale.cli.main import main

ROWS = 240
GROUP = 40
X = np.random.default_rng(0).standard_normal((ROWS, 4, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def local_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("entry-points") / "rows.bale"
    bale.write(
        path,
        {
            "id": np.arange(ROWS, dtype=np.int64),
            "x": X,
            "blob": [rng.bytes(int(n)) for n in rng.integers(0, 60, ROWS)],
        },
        row_group_rows=GROUP,
    )
    return path


@dataclass(frozen=True)
class Remote:
    """One URL of the local file's bytes and the storage options that read it."""

    kind: str
    url: str
    options: dict[str, Any]


@pytest.fixture(scope="module")
def http_remote(range_server: RangeServer, local_file: Path) -> Remote:
    skip_without("obstore", "fsspec", "aiohttp")  # forked children read through fsspec
    range_server.objects[f"/{BUCKET}/rows.bale"] = local_file.read_bytes()
    return Remote("http", f"{range_server.endpoint}/{BUCKET}/rows.bale", {})


@pytest.fixture(scope="module")
def s3_remote(moto_endpoint: str, s3_client: Any, local_file: Path) -> Remote:
    skip_without("obstore", "fsspec", "s3fs")
    s3_client.put_object(Bucket=BUCKET, Key="rows.bale", Body=local_file.read_bytes())
    return Remote("s3", f"s3://{BUCKET}/rows.bale", s3_options(moto_endpoint))


@pytest.fixture(params=["http", "s3"])
def remote(request: pytest.FixtureRequest) -> Remote:
    return request.getfixturevalue(f"{request.param}_remote")  # type: ignore[no-any-return]


def assert_same(got: Any, want: Any) -> None:
    """Rows and batches: dicts (or tuples) of arrays, tensors, scalars and lists of bytes."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys()
        for key in want:
            assert_same(got[key], want[key])
    elif isinstance(want, (tuple, list)) and not isinstance(want, (bytes, str)):
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            assert_same(a, b)
    elif hasattr(want, "numpy"):  # a tensor
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    elif isinstance(want, (np.ndarray, np.generic)):
        np.testing.assert_array_equal(got, want)
    else:
        assert got == want


# -- torch ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch() -> Any:
    return pytest.importorskip("torch")


def test_torch_map_style_over_a_url(torch: Any, remote: Remote, local_file: Path) -> None:
    from bale.adapters.torch import ChunkSampler, TorchDataset

    local = TorchDataset(local_file)
    ds = TorchDataset(remote.url, storage_options=remote.options)
    assert len(ds) == ROWS and ds.path == remote.url
    for i in (0, 39, 40, 199, ROWS - 1):
        assert_same(ds[i], local[i])
    assert_same(ds.__getitems__([5, 230, 41]), local.__getitems__([5, 230, 41]))
    # The sampler of a TorchDataset uses its open file; given the URL, the options.
    want = list(ChunkSampler(local, seed=2, rank=0, world_size=1))
    assert list(ChunkSampler(ds, seed=2, rank=0, world_size=1)) == want
    by_url = ChunkSampler(remote.url, seed=2, rank=0, world_size=1, storage_options=remote.options)
    assert list(by_url) == want
    clone = pickle.loads(pickle.dumps(ds))  # what spawn workers get
    assert_same(clone[77], local[77])
    for each in (ds, clone, local):
        each.close()


def check_backend(expected: str, worker_id: int) -> None:
    """A DataLoader worker's check (worker_init_fn) that its file reads through ``expected``."""
    from torch.utils.data import get_worker_info

    from bale._core.dataset import reader_of

    info = get_worker_info()
    assert info is not None
    backend = reader_of(info.dataset.dataset).source.backend
    if backend != expected:
        raise AssertionError(f"worker {worker_id} reads through {backend}, not {expected}")


def dataloader_rows(torch: Any, dataset: Any, context: str) -> list[int]:
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=16,
        num_workers=2,
        multiprocessing_context=context,
        worker_init_fn=functools.partial(
            check_backend, "fsspec" if context == "fork" else "obstore"
        ),
        timeout=60,
    )
    ids: list[int] = []
    for batch in loader:
        ids += batch["id"].tolist()
        np.testing.assert_array_equal(batch["x"].numpy(), X[batch["id"].numpy()])
    return ids


@pytest.mark.parametrize(("store", "context"), [("http", "fork"), ("s3", "fork"), ("s3", "spawn")])
def test_torch_map_style_in_dataloader_workers(
    torch: Any, request: pytest.FixtureRequest, store: str, context: str
) -> None:
    """Forked workers (of a parent that read through obstore) read through fsspec; spawned
    ones reopen the URL with the pickled options and read through obstore."""
    from bale.adapters.torch import TorchDataset

    remote: Remote = request.getfixturevalue(f"{store}_remote")
    ds = TorchDataset(remote.url, columns=["id", "x"], storage_options=remote.options)
    assert ds[3]["id"].item() == 3  # the parent reads first: obstore has started here
    assert sorted(dataloader_rows(torch, ds, context)) == list(range(ROWS))
    ds.close()


def test_torch_iterable_over_a_url(torch: Any, remote: Remote, local_file: Path) -> None:
    from bale.adapters.torch import TorchIterableDataset

    def epoch(data: TorchIterableDataset) -> list[dict[str, Any]]:
        data.set_epoch(1)
        return list(data)

    local = TorchIterableDataset(local_file, 32, seed=5, num_threads=2)
    data = TorchIterableDataset(
        remote.url, 32, seed=5, num_threads=2, storage_options=remote.options
    )
    assert_same(epoch(data), epoch(local))
    for each in (data, local):
        each.close()


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_torch_iterable_in_dataloader_workers(
    torch: Any, s3_remote: Remote, local_file: Path, context: str
) -> None:
    from bale.adapters.torch import TorchIterableDataset

    data = TorchIterableDataset(
        s3_remote.url, 32, seed=5, storage_options=s3_remote.options, columns=["id", "x"]
    )
    data.set_epoch(2)
    loader = torch.utils.data.DataLoader(
        data, batch_size=None, num_workers=2, multiprocessing_context=context, timeout=60
    )
    ids = [i for batch in loader for i in batch["id"].tolist()]
    local = TorchIterableDataset(local_file, 32, seed=5, columns=["id", "x"])
    local.set_epoch(2)
    want = torch.utils.data.DataLoader(local, batch_size=None, num_workers=0)
    # The same rows as the workers' shares of the local file's epoch, in the DataLoader's order.
    assert sorted(ids) == list(range(ROWS))
    assert len(ids) == sum(len(b["id"]) for b in want)
    data.close()
    local.close()


# -- grain, keras --------------------------------------------------------------------------------


def test_grain_source_over_a_url(remote: Remote, local_file: Path) -> None:
    from bale.adapters.grain import ChunkIndexSampler, GrainSource

    local = GrainSource(local_file)
    source = GrainSource(remote.url, storage_options=remote.options)
    assert len(source) == ROWS
    assert_same(source[123], local[123])
    assert_same(source._getitems([7, 200, 8]), local._getitems([7, 200, 8]))
    assert repr(source) == repr(local).replace(str(local_file), remote.url)
    clone = pickle.loads(pickle.dumps(source))  # grain's worker processes
    assert_same(clone[199], local[199])
    want = [ChunkIndexSampler(local, seed=1, rank=0, world_size=1)[i].record_key for i in range(9)]
    sampler = ChunkIndexSampler(source, seed=1, rank=0, world_size=1)
    assert [sampler[i].record_key for i in range(9)] == want
    by_url = ChunkIndexSampler(
        remote.url, seed=1, rank=0, world_size=1, storage_options=remote.options
    )
    assert [by_url[i].record_key for i in range(9)] == want
    grain = pytest.importorskip("grain.python")
    loader = grain.DataLoader(
        data_source=source,
        sampler=sampler,
        worker_count=0,
        operations=[grain.Batch(40)],
        shard_options=grain.NoSharding(),
    )
    first = next(iter(loader))
    np.testing.assert_array_equal(first["id"], [sampler[i].record_key for i in range(40)])


@pytest.fixture(scope="module")
def keras() -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as patch:
        if "keras" not in sys.modules:
            patch.setenv("KERAS_BACKEND", "torch")
        pytest.importorskip("torch")
        module = pytest.importorskip("keras")
        if module.backend.backend() != "torch":
            pytest.skip("keras was imported with another backend")
        yield module


def test_keras_sequence_over_a_url(keras: Any, remote: Remote, local_file: Path) -> None:
    from bale.adapters.keras import EpochBatches, KerasSequence, keras_generator

    local = KerasSequence(local_file, 32, x="x", y="id", seed=4)
    seq = KerasSequence(remote.url, 32, x="x", y="id", seed=4, storage_options=remote.options)
    assert len(seq) == len(local)
    for i in (0, 3, len(seq) - 1):
        assert_same(seq[i], local[i])
    seq.on_epoch_end()
    local.on_epoch_end()
    assert_same(seq[1], local[1])
    # What a sequence holds pickles with the URL and options (KerasSequence's class is made
    # on first use, so pickling goes through EpochBatches, which holds all of its state).
    batches = EpochBatches(remote.url, 32, x="x", y="id", seed=4, storage_options=remote.options)
    batches.set_epoch(1)
    clone = pickle.loads(pickle.dumps(batches))
    assert_same(clone[2], local[2])
    got = keras_generator(remote.url, 64, "x", "id", epochs=1, storage_options=remote.options)
    want = keras_generator(local_file, 64, "x", "id", epochs=1)
    assert_same(list(got), list(want))


# -- dask ----------------------------------------------------------------------------------------


def test_dask_from_a_url_in_processes(remote: Remote, local_file: Path) -> None:
    dask = pytest.importorskip("dask")
    from bale.dask import from_bale

    x = from_bale(remote.url, "x", chunks=GROUP * 2, storage_options=remote.options)
    want = bale.open(local_file).read()["x"]
    idx = np.random.default_rng(1).permutation(ROWS)[:50]
    total, gathered, part = dask.compute(
        x.sum(axis=0), x[idx], x[100:130, 2], scheduler="processes", num_workers=2
    )
    np.testing.assert_allclose(total, want.sum(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(gathered, want[idx])
    np.testing.assert_array_equal(part, want[100:130, 2])
    again = from_bale(remote.url, "x", chunks=GROUP * 2, storage_options=remote.options)
    assert again.name == x.name  # deterministic, and no option in it
    assert all(str(v) not in x.name for v in remote.options.values())
    clone = pickle.loads(pickle.dumps(x))
    np.testing.assert_array_equal(clone[[3, 1]].compute(scheduler="threads"), want[[3, 1]])


def test_dask_name_changes_when_the_object_is_replaced(
    http_remote: Remote, range_server: RangeServer, tmp_path: Path
) -> None:
    pytest.importorskip("dask")
    from bale.dask import from_bale

    key = f"/{BUCKET}/replaced.bale"
    url = http_remote.url.replace("rows.bale", "replaced.bale")
    range_server.objects[key] = bale_bytes(tmp_path / "a.bale", 1)
    before = from_bale(url, "x").name
    range_server.objects[key] = bale_bytes(tmp_path / "b.bale", 2)
    after = from_bale(url, "x")
    assert after.name != before
    np.testing.assert_array_equal(after.compute(scheduler="threads"), np.full((10, 2), 2.0))


def bale_bytes(path: Path, value: float) -> bytes:
    bale.write(path, {"x": np.full((10, 2), value, np.float32)})
    return path.read_bytes()


# -- CLI -----------------------------------------------------------------------------------------


def s3_flags(remote: Remote) -> list[str]:
    """The moto S3 options as --storage-option flags (the region as JSON, the rest as strings)."""
    return [
        "--storage-option",
        f"key={S3_KEY}",
        "--storage-option",
        f"secret={S3_SECRET}",
        "--storage-option",
        f"endpoint_url={remote.options['endpoint_url']}",
        "--storage-option",
        'client_kwargs={"region_name": "us-east-1"}',
    ]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    for secret in (S3_SECRET, S3_KEY, "hunter2"):
        assert secret not in out and secret not in err
    return code, out, err


def test_cli_info_over_s3(
    s3_remote: Remote, local_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = s3_flags(s3_remote)
    code, out, _ = run_cli(capsys, "info", s3_remote.url, *flags)
    assert code == 0 and out.startswith(s3_remote.url) and f"rows        {ROWS}" in out
    code, out, _ = run_cli(capsys, "info", s3_remote.url, *flags, "--json")
    got = json.loads(out)
    _, local_out, _ = run_cli(capsys, "info", str(local_file), "--json")
    want = json.loads(local_out)
    assert got["path"] == s3_remote.url
    assert {**got, "path": None} == {**want, "path": None}


def test_cli_info_never_shows_credentials(
    http_remote: Remote, capsys: pytest.CaptureFixture[str]
) -> None:
    """A URL's user:password is shown as ***, a storage option's value never: in output and
    in errors."""
    with_password = http_remote.url.replace("http://", "http://me:hunter2@")
    code, out, _ = run_cli(capsys, "info", with_password, "--json")
    assert code == 0 and json.loads(out)["path"] == http_remote.url.replace("//", "//***@")
    missing = http_remote.url.replace("rows.bale", "missing.bale?token=hunter2")
    code, _, err = run_cli(
        capsys, "info", missing, "--storage-option", 'headers={"X-Secret": "hunter2"}'
    )
    assert code == 2 and "missing.bale" in err and "token=***" in err


def test_cli_errors_over_s3_never_show_the_options(
    s3_remote: Remote, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = s3_flags(s3_remote)
    code, _, err = run_cli(capsys, "verify", f"s3://{BUCKET}/nope.bale", *flags)
    assert code == 2 and "nope.bale" in err
    code, _, err = run_cli(
        capsys, "info", s3_remote.url, *flags, "--storage-option", "no_such_option=hunter2"
    )
    assert code == 2 and "no_such_option" in err


def test_cli_verify_export_codecs_bench_over_s3(
    s3_remote: Remote, local_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = s3_flags(s3_remote)
    code, out, _ = run_cli(capsys, "verify", s3_remote.url, *flags)
    assert code == 0 and out.strip() == f"{s3_remote.url}: OK ({ROWS} rows, 18 blocks checked)"

    code, out, _ = run_cli(capsys, "export", s3_remote.url, str(tmp_path / "out"), *flags)
    assert code == 0 and f"exported 3 column(s) of {s3_remote.url}" in out
    main(["export", str(local_file), str(tmp_path / "want")])
    capsys.readouterr()
    for name in ("id.npy", "x.npy", "blob.data.npy", "blob.offsets.npy"):
        np.testing.assert_array_equal(
            np.load(tmp_path / "out" / name), np.load(tmp_path / "want" / name)
        )

    code, out, _ = run_cli(
        capsys, "codecs", s3_remote.url, *flags, "--candidates", "zstd:1", "--repeats", "1",
        "--columns", "x", "--json",
    )  # fmt: skip
    report = json.loads(out)
    assert code == 0 and report["source"] == s3_remote.url and "x" in report["columns"]

    code, out, _ = run_cli(
        capsys, "bench", s3_remote.url, *flags, "--seconds", "2", "--batch-size", "32",
        "--threads", "2", "--cold", "--json",
    )  # fmt: skip
    report = json.loads(out)
    assert code == 0 and report["paths"] == [s3_remote.url] and report["rows"] == ROWS
    assert report["warm"]["samples"] > 0 and report["cold"]["resident_before"] is None
    code, out, _ = run_cli(capsys, "bench", s3_remote.url, *flags, "--seconds", "1", "--cold")
    assert code == 0 and "URLs have no page cache" in out


def test_cli_split_and_concat_read_urls_and_write_locally(
    http_remote: Remote, local_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(
        capsys, "split", http_remote.url, "--out-dir", str(tmp_path), "--no-shuffle"
    )
    assert code == 0 and out.startswith(http_remote.url)
    parts = [str(tmp_path / f"{name}.bale") for name in ("train", "valid", "test")]
    code, out, _ = run_cli(capsys, "concat", http_remote.url, *parts, str(tmp_path / "all.bale"))
    assert code == 0 and f"from {http_remote.url}" in out
    with bale.open(tmp_path / "all.bale") as joined, bale.open(local_file) as local:
        assert len(joined) == 2 * ROWS
        assert_same(joined[ROWS:], local[:])


def test_cli_refuses_to_write_over_http(
    http_remote: Remote, local_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (
        ["export", str(local_file), "https://example.invalid/out"],
        ["split", str(local_file), "--out-dir", "https://example.invalid/splits"],
        ["split", http_remote.url],  # the outputs would go beside the input, over HTTP
    ):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and "s3://, gs:// and az://" in err, argv


def test_cli_storage_option_parsing(local_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bale.cli._command import _key_value

    assert _key_value("anon=true") == ("anon", True)
    assert _key_value("endpoint_url=http://127.0.0.1:9000") == (
        "endpoint_url",
        "http://127.0.0.1:9000",
    )
    assert _key_value('client_kwargs={"region_name": "x"}') == (
        "client_kwargs",
        {"region_name": "x"},
    )
    assert _key_value("secret=a=b") == ("secret", "a=b")
    code, _, err = run_cli(capsys, "info", str(local_file), "--storage-option", "anon=true")
    assert code == 2 and "applies to URL inputs" in err
    with pytest.raises(SystemExit):
        main(["info", str(local_file), "--storage-option", "hunter2"])  # no KEY=
    _, err = capsys.readouterr()
    assert "KEY=VALUE" in err and "hunter2" not in err
