"""bale files read from URLs (loopback HTTP with Range, moto's S3) through ``bale.open`` and the
Loader: the same rows as the local file, two requests to open, errors naming the URL."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from remote_helpers import BUCKET, Store, http_store, s3_store
from remote_servers import FaultProxy, RangeServer

import bale
from bale._core.dataset import reader_of
from bale.errors import ObjectNotFoundError

ROWS = 900


def columns() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "image": rng.integers(0, 40, (ROWS, 16, 16, 3), dtype=np.uint8),
        "feature": rng.standard_normal((ROWS, 24)).astype(np.float32),
        "raw": rng.integers(0, 255, (ROWS, 10), dtype=np.uint8),  # stored as is: mapped locally
        "label": np.arange(ROWS, dtype=np.int64) % 7,
        "blob": [rng.bytes(int(n)) for n in rng.integers(0, 300, ROWS)],
        "name": [f"row {i} é" for i in range(ROWS)],
    }


@pytest.fixture(scope="module")
def local_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("remote-datasets")
    data = columns()
    files = {}
    for name, options in (("plain", {}), ("random", {"random_access": True})):
        path = folder / f"{name}.bale"
        bale.write(path, data, codecs={"raw": "none"}, row_group_rows=100, **options)
        files[name] = path
    return files


@pytest.fixture(params=["http", "s3"])
def remote(
    request: pytest.FixtureRequest, range_server: RangeServer, local_files: dict[str, Path]
) -> Store:
    if request.param == "http":
        store = http_store(range_server, "obstore")
    else:
        proxy: FaultProxy = request.getfixturevalue("s3_proxy")
        store = s3_store(request.getfixturevalue("s3_client"), "obstore", proxy)
    for name, path in local_files.items():
        store.put(f"{name}.bale", path.read_bytes())
    return store


def assert_batches_equal(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, (np.ndarray, np.generic)):
            np.testing.assert_array_equal(got[key], value)
        else:
            assert got[key] == value, key


@pytest.mark.parametrize("name", ["plain", "random"])
def test_a_url_reads_the_same_rows_as_the_local_file(
    remote: Store, local_files: dict[str, Path], name: str
) -> None:
    url = remote.url(f"{name}.bale")
    idx = np.random.default_rng(1).permutation(ROWS)[:70]
    with (
        bale.open(local_files[name]) as local,
        bale.open(url, storage_options=remote.storage_options) as ds,
    ):
        assert ds.path == url and len(ds) == ROWS and ds.columns == local.columns
        assert not reader_of(ds).mappable  # a remote object is read by ranges, never mapped
        assert_batches_equal(ds.read(), local.read())
        assert_batches_equal(ds.take(idx), local.take(idx))
        assert_batches_equal(ds[100:250], local[100:250])
        for i in (0, 99, 100, 457, ROWS - 1):
            assert_batches_equal(ds[i], local[i])
        assert_batches_equal(ds.read_row_group(3), local.read_row_group(3))


def test_opening_a_url_costs_at_most_two_requests(remote: Store) -> None:
    before = remote.count()
    with bale.open(remote.url("plain.bale"), storage_options=remote.storage_options) as ds:
        assert remote.count() - before <= 2
        assert ds.schema.names[0] == "image"


def test_a_loader_epoch_over_a_url_equals_the_local_one(
    remote: Store, local_files: dict[str, Path]
) -> None:
    url = remote.url("plain.bale")
    epochs = []
    for path, options in ((local_files["plain"], None), (url, remote.storage_options)):
        with bale.Loader(path, 64, shuffle="chunks", seed=3, storage_options=options) as loader:
            loader.set_epoch(1)
            epochs.append([batch for batch in loader])
    assert len(epochs[0]) == len(epochs[1]) > 5
    for mine, theirs in zip(epochs[1], epochs[0], strict=True):
        assert_batches_equal(mine, theirs)


def test_a_pickled_dataset_reopens_the_url_with_its_options(remote: Store) -> None:
    url = remote.url("plain.bale")
    with bale.open(url, storage_options=remote.storage_options) as ds:
        copy = pickle.loads(pickle.dumps(ds))
        try:
            assert copy.path == url
            assert_batches_equal(copy[[5, 800, 3]], ds[[5, 800, 3]])
        finally:
            copy.close()


def test_a_missing_object_names_its_url(remote: Store) -> None:
    url = remote.url("nope.bale")
    with pytest.raises(ObjectNotFoundError) as info:
        bale.open(url, storage_options=remote.storage_options)
    assert BUCKET in str(info.value) and "nope.bale" in str(info.value)


def test_storage_options_are_refused_for_a_local_path(local_files: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="apply to URLs"):
        bale.open(local_files["plain"], storage_options={"region": "x"})


def test_a_loader_epoch_fetches_each_byte_about_once(remote: Store) -> None:
    url = remote.url("plain.bale")
    with bale.Loader(
        url, 64, shuffle="chunks", seed=5, storage_options=remote.storage_options
    ) as loader:
        source = reader_of(loader._files.datasets[0]).source
        before = source.bytes_fetched
        rows = sum(len(batch["label"]) for batch in loader)
        fetched = source.bytes_fetched - before
        assert rows == ROWS
        # Row groups are asked for ahead, in the epoch's order, and read from what was fetched.
        assert fetched <= 1.05 * source.size(), (fetched, source.size())


def test_a_glob_of_parts_reads_as_one_dataset(
    s3_client: Any, s3_proxy: FaultProxy, tmp_path: Path
) -> None:
    store = s3_store(s3_client, "obstore", s3_proxy)
    data = columns()
    parts = []
    for k, (a, b) in enumerate(((0, 300), (300, 650), (650, ROWS))):
        part = tmp_path / f"train-{k}.bale"
        bale.write(part, {name: values[a:b] for name, values in data.items()}, row_group_rows=100)
        store.put(f"glob/train-{k}.bale", part.read_bytes())
        parts.append(part)
    store.put("glob/other.bale", parts[0].read_bytes())
    pattern = f"s3://{BUCKET}/glob/train-*.bale"
    options = store.storage_options
    with bale.Loader(pattern, 128, shuffle="none", storage_options=options) as loader:
        assert loader.paths == [f"s3://{BUCKET}/glob/train-{k}.bale" for k in range(3)]
        labels = np.concatenate([batch["label"] for batch in loader])
    np.testing.assert_array_equal(labels, data["label"])
    with bale.Loader(f"s3://{BUCKET}/glob/", 128, storage_options=options) as loader:
        assert len(loader.paths) == 4  # a prefix: every .bale object under it
    with bale.Loader(str(tmp_path / "train-*.bale"), 128, shuffle="none") as loader:
        assert loader.paths == [str(p) for p in parts]
    with pytest.raises(bale.BaleError, match=r"no \.bale file matches"):
        bale.Loader(f"s3://{BUCKET}/glob/test-*.bale", 128, storage_options=options)


def test_remote_options_reach_the_source_and_workers(remote: Store, tmp_path: Path) -> None:
    from bale.io.remote import RemoteOptions

    options = RemoteOptions(cache_dir=str(tmp_path / "cache"), cache_bytes=1 << 30)
    url = remote.url("plain.bale")
    with bale.open(url, storage_options=remote.storage_options, remote_options=options) as ds:
        first = ds.read()
        copy = pickle.loads(pickle.dumps(ds))  # what a spawned worker gets
    try:
        before = remote.count()
        assert_batches_equal(copy.read(), first)  # every range from the disk cache
        assert remote.count() - before <= 2  # at most the reopening
    finally:
        copy.close()
    counts = []
    for _ in range(2):  # epoch 1 fills the cache with the Loader's ranges, epoch 2 reads them
        with bale.Loader(
            url, 128, storage_options=remote.storage_options, remote_options=options
        ) as loader:
            before = remote.count()
            assert sum(len(b["label"]) for b in loader) == ROWS
            counts.append(remote.count() - before)
    # Epoch 2 reads from the disk cache. Not always every range: the cache skips storing a
    # range rather than wait for its lock (by design), so under load a few may be fetched again.
    assert counts[0] > 0 and counts[1] <= counts[0] // 4, counts
    with pytest.raises(ValueError, match="apply to URLs"):
        bale.open(tmp_path / "x.bale", remote_options=options)
