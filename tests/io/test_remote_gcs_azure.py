"""gs:// and az:// URLs against loopback emulators through the real clients: Azure Blob Storage
(Azurite) through obstore and adlfs, Google Cloud Storage (gcp-storage-emulator) through gcsfs.
The same rows as the local file, the requests an opening costs, a replaced object reported,
missing objects and refused keys as bale errors naming the URL, and the Writer's upload: the
local file's bytes, nothing published by a killed writer, overwrite semantics.

What the emulators cannot show (docs/REMOTE.md): gcp-storage-emulator's XML API, which
object_store's GCS client speaks, has no HEAD, no multipart upload, no suffix ranges and no
ETag / Last-Modified headers, so obstore's gs:// reads and writes are tested only as far as the
request reaching it (a missing object); it checks no credentials."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import multiprocessing
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from emulators import (
    AZURE_ACCOUNT,
    AZURE_CONTAINER,
    AZURE_KEY,
    GCS_BUCKET,
    Emulator,
    azure_connection_string,
    azure_container_client,
    gcs_put,
    start_azurite,
    start_gcs,
)
from remote_children import digest
from remote_helpers import QUICK, assert_columns_equal, bounded, kill_writer_midway, skip_without
from remote_servers import FaultProxy

import bale
from bale._core.layout import read_header, read_index
from bale.errors import (
    AccessDeniedError,
    CorruptFileError,
    ObjectNotFoundError,
    TargetExistsError,
)
from bale.io import remote_obstore, remote_sink
from bale.io.remote import RemoteSource
from bale.io.remote_sink import UploadOptions

ROWS = 1200
PART = 5 << 20  # the smallest part: a few MiB make an upload of several blocks


def columns(rows: int = ROWS, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 40, (rows, 16, 16, 3), dtype=np.uint8),
        "feature": rng.standard_normal((rows, 12)).astype(np.float32),
        "label": np.arange(rows, dtype=np.int64) % 7,
        "name": [f"row {i} é" for i in range(rows)],
    }


def epoch(path: str | Path, **kwargs: Any) -> list[dict[str, Any]]:
    with bale.Loader(path, 100, shuffle="chunks", seed=4, **kwargs) as loader:
        loader.set_epoch(2)
        return bounded(lambda: list(loader), 60)


@pytest.fixture(scope="module")
def local_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gcs-azure") / "train.bale"
    bale.write(path, columns(), row_group_rows=150)
    return path


# -- Azure (Azurite) ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def azurite() -> Iterator[Emulator]:
    skip_without("obstore", "adlfs")
    emulator = start_azurite()
    try:
        with azure_container_client(emulator.endpoint) as container:
            container.create_container()  # type: ignore[attr-defined]
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def container(azurite: Emulator) -> Iterator[Any]:
    with azure_container_client(azurite.endpoint) as client:
        yield client


def az_url(name: str) -> str:
    return f"az://{AZURE_CONTAINER}/{name}"


def az_options(endpoint: str, key: str = AZURE_KEY) -> dict[str, Any]:
    """adlfs's option, which obstore's client translates: one dict serves both clients."""
    return {"connection_string": azure_connection_string(endpoint, key)}


@pytest.fixture(scope="module")
def az_train(azurite: Emulator, local_file: Path) -> str:
    with azure_container_client(azurite.endpoint) as container:
        container.upload_blob("train.bale", local_file.read_bytes(), overwrite=True)  # type: ignore[attr-defined]
    return az_url("train.bale")


@pytest.mark.parametrize("backend", ["obstore", "fsspec"])
def test_azure_reads_the_same_rows_and_epoch_as_the_local_file(
    azurite: Emulator, az_train: str, local_file: Path, backend: str
) -> None:
    options = az_options(azurite.endpoint)
    remote = dataclasses.replace(QUICK, backend=backend)  # type: ignore[arg-type]
    with bale.open(az_train, storage_options=options, remote_options=remote) as ds:
        assert ds.path == az_train and len(ds) == ROWS
        assert_columns_equal(bounded(ds.read), columns())
    got = epoch(az_train, storage_options=options, remote_options=remote)
    want = epoch(local_file)
    assert len(got) == len(want) == ROWS // 100
    for mine, theirs in zip(got, want, strict=True):
        assert_columns_equal(mine, theirs)


@pytest.mark.parametrize(("backend", "requests"), [("obstore", 3), ("fsspec", 3)])
def test_opening_an_azure_object_costs_three_requests(
    azurite: Emulator, az_train: str, backend: str, requests: int
) -> None:
    """Azure has no suffix ranges: the size comes first (a HEAD / adlfs's properties), then the
    tail, and the head (obstore asks for it beside the first request). Counted by the source:
    the test proxy cannot relay HEAD answers (it sends Content-Length: 0)."""
    remote = dataclasses.replace(QUICK, backend=backend)  # type: ignore[arg-type]
    source = RemoteSource(az_train, az_options(azurite.endpoint), options=remote)
    try:
        bounded(lambda: (read_index(source), read_header(source)))
        assert source.backend == backend and source.requests == requests
    finally:
        source.close()


def test_an_azure_object_replaced_while_open_is_reported(
    azurite: Emulator, container: Any, local_file: Path
) -> None:
    """Reads carry If-Match with the ETag seen at open: Azurite answers 412 once the blob
    changed, never bytes of the new blob in the old one's layout."""
    container.upload_blob("replaced.bale", local_file.read_bytes(), overwrite=True)
    remote = dataclasses.replace(QUICK, backend="obstore")
    url = az_url("replaced.bale")
    with bale.open(url, storage_options=az_options(azurite.endpoint), remote_options=remote) as ds:
        first = ds[:10]
        other = Path(local_file.parent / "other.bale")
        bale.write(other, columns(seed=1), row_group_rows=150, overwrite=True)
        container.upload_blob("replaced.bale", other.read_bytes(), overwrite=True)
        with pytest.raises(CorruptFileError, match="changed after it was opened") as changed:
            bounded(lambda: ds[ROWS - 10 :])
        assert changed.value.path == url
        assert_columns_equal(first, {k: v[:10] for k, v in columns().items()})


@pytest.mark.parametrize("backend", ["obstore", "fsspec"])
def test_a_missing_azure_object_is_object_not_found(azurite: Emulator, backend: str) -> None:
    url = az_url("missing/none.bale")
    remote = dataclasses.replace(QUICK, backend=backend)  # type: ignore[arg-type]
    with pytest.raises(ObjectNotFoundError) as missing:
        bounded(
            lambda: bale.open(
                url, storage_options=az_options(azurite.endpoint), remote_options=remote
            )
        )
    assert missing.value.path == url and url in str(missing.value)
    assert AZURE_KEY not in str(missing.value)


@pytest.mark.parametrize("backend", ["obstore", "fsspec"])
def test_a_wrong_azure_key_is_access_denied(azurite: Emulator, az_train: str, backend: str) -> None:
    """Azurite checks shared-key signatures: a key that is not the account's is refused (403)."""
    wrong = AZURE_KEY[:-8] + "AAAAAAA="
    remote = dataclasses.replace(QUICK, backend=backend)  # type: ignore[arg-type]
    with pytest.raises(AccessDeniedError) as refused:
        bounded(
            lambda: bale.open(
                az_train, storage_options=az_options(azurite.endpoint, wrong), remote_options=remote
            )
        )
    error = refused.value
    assert error.path == az_train
    for text in (str(error), repr(error)):
        assert wrong not in text and AZURE_KEY not in text


# -- Azure: writing ---------------------------------------------------------------------------------


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    options = UploadOptions(part_bytes=PART, parts_in_flight=2, backend="obstore", remote=QUICK)
    monkeypatch.setattr(remote_sink, "DEFAULT_UPLOAD_OPTIONS", options)


def big_columns(rows: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {"x": rng.integers(0, 256, (rows, 4096), dtype=np.uint8), "i": np.arange(rows)}


def test_a_writer_with_a_wrong_azure_key_is_access_denied(
    azurite: Emulator, container: Any, small_parts: None
) -> None:
    """The check for an existing blob (a HEAD) is refused before anything is uploaded."""
    wrong = AZURE_KEY[:-8] + "AAAAAAA="
    url = az_url("refused.bale")
    with pytest.raises(AccessDeniedError) as refused:
        bale.Writer(url, storage_options=az_options(azurite.endpoint, wrong))
    assert refused.value.path == url
    for text in (str(refused.value), repr(refused.value)):
        assert wrong not in text and AZURE_KEY not in text
    assert "refused.bale" not in {b.name for b in container.list_blobs()}


@pytest.mark.slow
def test_a_writer_uploads_the_local_files_bytes_as_blocks(
    azurite: Emulator, container: Any, small_parts: None, tmp_path: Path
) -> None:
    """~13 MiB in 5 MiB parts: Azure blocks, committed at close; the blob is the local file."""
    data = big_columns(3200, 0)
    local = tmp_path / "local.bale"
    bale.write(local, data, codecs={"x": "none"})
    url = az_url("written.bale")
    options = az_options(azurite.endpoint)
    with bale.Writer(url, storage_options=options, codecs={"x": "none"}) as writer:
        for start in range(0, 3200, 800):
            bounded(lambda s=start: writer.write({k: v[s : s + 800] for k, v in data.items()}))
        assert writer._sink.parts_sent >= 2  # type: ignore[attr-defined]
        assert "written.bale" not in {b.name for b in container.list_blobs()}
    blob = container.get_blob_client("written.bale")
    assert blob.download_blob().readall() == local.read_bytes()
    committed, uncommitted = blob.get_block_list("all")
    assert len(committed) >= 3 and not uncommitted


@pytest.mark.slow
def test_overwriting_an_azure_blob(
    azurite: Emulator, container: Any, small_parts: None, local_file: Path
) -> None:
    """overwrite=False refuses an existing blob before any upload; overwrite=True keeps the old
    blob readable, whole, until the new one is committed; a failed overwrite leaves it."""
    old = local_file.read_bytes()
    container.upload_blob("over.bale", old, overwrite=True)
    url = az_url("over.bale")
    options = az_options(azurite.endpoint)
    with pytest.raises(TargetExistsError) as exists:
        bale.Writer(url, storage_options=options)
    assert exists.value.path == url
    blob = container.get_blob_client("over.bale")
    new = big_columns(2000, 1)
    with bale.Writer(url, storage_options=options, overwrite=True, codecs={"x": "none"}) as writer:
        bounded(lambda: writer.write(new))
        assert writer._sink.parts_sent >= 1  # type: ignore[attr-defined]
        assert blob.download_blob().readall() == old
    got = blob.download_blob().readall()
    assert got != old
    with (
        pytest.raises(RuntimeError, match="stop"),
        bale.Writer(url, storage_options=options, overwrite=True) as writer,
    ):
        writer.write(big_columns(100, 2))
        raise RuntimeError("stop")
    assert blob.download_blob().readall() == got


CHILD = r"""
import sys, time
import numpy as np
import bale
from bale.io import remote_sink

url, connection_string = sys.argv[1:3]
remote_sink.DEFAULT_UPLOAD_OPTIONS = remote_sink.UploadOptions(
    part_bytes=5 << 20, parts_in_flight=2, backend="obstore"
)
rows = np.random.default_rng(0).integers(0, 256, (64, 16384), dtype=np.uint8)  # 1 MiB
options = {"connection_string": connection_string}
with bale.Writer(url, storage_options=options, overwrite=True, codecs={"x": "none"}) as w:
    for i in range(100_000):  # a slow source: 1 MiB each 20 ms, killed long before its end
        w.write({"x": rows})
        time.sleep(0.02)
"""


@pytest.mark.slow
@pytest.mark.parametrize("previous", [False, True], ids=["new", "over-an-old-blob"])
def test_a_killed_azure_writer_leaves_no_blob_or_the_previous_one(
    azurite: Emulator, container: Any, local_file: Path, previous: bool
) -> None:
    """SIGKILL while blocks are uploading: the name holds nothing (or the old blob, byte for
    byte); the staged blocks stay uncommitted (Azure discards them after 7 days)."""
    name = f"killed-{previous}.bale"
    old = local_file.read_bytes()
    if previous:
        container.upload_blob(name, old, overwrite=True)
    blob = container.get_blob_client(name)

    def staged() -> int:
        with contextlib.suppress(Exception):  # 404 until a block is staged
            return len(blob.get_block_list("uncommitted")[1])
        return 0

    kill_writer_midway(
        [CHILD, az_url(name), azure_connection_string(azurite.endpoint)], staged, "block"
    )
    assert staged() >= 1  # blocks were sent, none committed
    if previous:
        assert blob.download_blob().readall() == old
    else:
        assert name not in {b.name for b in container.list_blobs()}


# -- GCS (gcp-storage-emulator) -----------------------------------------------------------------


@pytest.fixture(scope="module")
def gcs() -> Iterator[Emulator]:
    """The emulator, and gcsfs without its experimental bucket-type lookup: gcsfs 2026.x asks
    the Storage Control gRPC API for every bucket (uncached when it fails), which an emulator
    of the JSON API does not serve: each read would wait out the RPC's 30 s timeout."""
    skip_without("gcsfs")
    import fsspec

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # read when gcsfs is imported
        chosen = fsspec.get_filesystem_class("gs")
        if "Extended" in chosen.__name__:  # gcsfs was imported earlier, with the lookup on
            plain = importlib.import_module("gcsfs.core").GCSFileSystem
            for protocol in ("gs", "gcs"):
                fsspec.register_implementation(protocol, plain, clobber=True)
        emulator = start_gcs()
        try:
            yield emulator
        finally:
            emulator.stop()
            for protocol in ("gs", "gcs"):
                fsspec.register_implementation(protocol, chosen, clobber=True)


@pytest.fixture
def gcs_proxy(gcs: Emulator) -> Iterator[FaultProxy]:
    proxy = FaultProxy(gcs.endpoint)
    yield proxy
    proxy.close()


def gcs_options(endpoint: str) -> dict[str, Any]:
    """gcsfs's names; obstore's client translates endpoint_url to its base_url."""
    return {"endpoint_url": endpoint, "token": "anon"}


@pytest.fixture(scope="module")
def gs_train(gcs: Emulator, local_file: Path) -> str:
    gcs_put(gcs.endpoint, "data/train.bale", local_file.read_bytes())
    return f"gs://{GCS_BUCKET}/data/train.bale"


FSSPEC = dataclasses.replace(QUICK, backend="fsspec")


def test_gcs_reads_the_same_rows_and_epoch_as_the_local_file(
    gcs: Emulator, gs_train: str, local_file: Path
) -> None:
    options = gcs_options(gcs.endpoint)
    with bale.open(gs_train, storage_options=options, remote_options=FSSPEC) as ds:
        assert ds.path == gs_train and len(ds) == ROWS
        assert_columns_equal(bounded(ds.read), columns())
    got = epoch(gs_train, storage_options=options, remote_options=FSSPEC)
    for mine, theirs in zip(got, epoch(local_file), strict=True):
        assert_columns_equal(mine, theirs)


def test_opening_a_gcs_object_through_gcsfs(gcs_proxy: FaultProxy, gs_train: str) -> None:
    """fsspec's generic path: bale asks for the size (gcsfs's info), the tail, then the head:
    3 requests, 2 of them ranged downloads. On the wire gcsfs's info is more: a metadata GET
    with a one-result listing beside it (in case the name is a folder), and here a second
    metadata GET; no other download."""
    source = RemoteSource(gs_train, gcs_options(gcs_proxy.endpoint), options=FSSPEC)
    try:
        bounded(lambda: (read_index(source), read_header(source)))
    finally:
        source.close()
    assert source.requests == 3
    sent = [(method, path, headers.get("Range")) for method, path, headers in gcs_proxy.requests]
    downloads = [r for r in sent if "alt=media" in r[1]]
    assert [r[2] for r in downloads] == [
        f"bytes={source.size() - 65536}-{source.size() - 1}",
        "bytes=0-65535",
    ]
    others = [r for r in sent if "alt=media" not in r[1]]
    assert all(m == "GET" and "/storage/v1/b/" in p and not r for m, p, r in others), sent
    assert 1 <= len(others) <= 3, sent


@pytest.mark.parametrize("backend", ["obstore", "fsspec"])
def test_a_missing_gcs_object_is_object_not_found(gcs: Emulator, backend: str) -> None:
    """Through obstore too: endpoint_url reaches object_store as base_url (the request goes to
    the emulator, which answers 404)."""
    url = f"gs://{GCS_BUCKET}/data/none.bale"
    remote = dataclasses.replace(QUICK, backend=backend)  # type: ignore[arg-type]
    with pytest.raises(ObjectNotFoundError) as missing:
        bounded(
            lambda: bale.open(url, storage_options=gcs_options(gcs.endpoint), remote_options=remote)
        )
    assert missing.value.path == url and url in str(missing.value)


# -- forked children ------------------------------------------------------------------------------


def read_in_child(url: str, options: dict[str, Any], results: Any) -> None:
    try:
        source = RemoteSource(url, options, options=QUICK)
        data = source.read(0, source.size())
        results.put(("ok", source.backend, digest(data)))
    except BaseException as exc:
        results.put(("error", type(exc).__name__, str(exc)))


def read_forked(url: str, options: dict[str, Any]) -> tuple[Any, ...]:
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    child = ctx.Process(target=read_in_child, args=(url, options, results))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        child.start()
    try:
        report: tuple[Any, ...] = results.get(timeout=60)
    except Exception:
        child.kill()
        pytest.fail("the forked child did not answer: a hang")
    finally:
        child.join(10)
        results.close()
        results.join_thread()
    return report


@pytest.mark.parametrize("store", ["az", "gs"])
def test_a_child_forked_after_obstore_started_reads_through_adlfs_or_gcsfs(
    store: str, request: pytest.FixtureRequest, local_file: Path
) -> None:
    """obstore's runtime does not survive fork: the parent makes a real obstore request first,
    then a forked child (a DataLoader worker under 'fork') reads the URL through fsspec."""
    if store == "az":
        emulator: Emulator = request.getfixturevalue("azurite")
        url, options = request.getfixturevalue("az_train"), az_options(emulator.endpoint)
        assert bounded(lambda: remote_sink.object_exists(url, options))  # a HEAD, by obstore
    else:
        emulator = request.getfixturevalue("gcs")
        url, options = request.getfixturevalue("gs_train"), gcs_options(emulator.endpoint)
        missing = url.replace("train.bale", "none.bale")
        remote = dataclasses.replace(QUICK, backend="obstore")
        with pytest.raises(ObjectNotFoundError):  # a GET answered 404, through obstore
            bounded(lambda: RemoteSource(missing, options, options=remote))
    assert remote_obstore._RUNTIME_PID[0] == os.getpid()  # obstore's runtime started here
    report = read_forked(url, options)
    assert report == ("ok", "fsspec", digest(local_file.read_bytes())), report


# -- option names ---------------------------------------------------------------------------------


def test_an_azure_connection_string_becomes_obstores_keys() -> None:
    text = azure_connection_string("http://127.0.0.1:1")
    assert remote_obstore._azure_config({"connection_string": text}) == {
        "account_name": AZURE_ACCOUNT,
        "account_key": AZURE_KEY,  # its trailing "=" kept
        "endpoint": f"http://127.0.0.1:1/{AZURE_ACCOUNT}",
    }
    sas = "BlobEndpoint=https://a.blob.core.windows.net;SharedAccessSignature=sv=1&sig=x%3D"
    assert remote_obstore._azure_config({"connection_string": sas}) == {
        "endpoint": "https://a.blob.core.windows.net",
        "sas_key": "sv=1&sig=x%3D",
    }
    assert remote_obstore._azure_config({"connection_string": "UseDevelopmentStorage=true"}) == {
        "use_emulator": True
    }
    china = "AccountName=a;AccountKey=k==;EndpointSuffix=core.chinacloudapi.cn"
    assert remote_obstore._azure_config({"connection_string": china})["endpoint"] == (
        "https://a.blob.core.chinacloudapi.cn"
    )
    with pytest.raises(ValueError, match="connection_string") as bad:
        remote_obstore._azure_config({"connection_string": "AccountKey=secret;nonsense"})
    assert "secret" not in str(bad.value)


def test_gcs_endpoint_url_becomes_base_url() -> None:
    config = remote_obstore._gcs_config({"endpoint_url": "http://127.0.0.1:1", "token": "anon"})
    assert config == {"base_url": "http://127.0.0.1:1", "skip_signature": True}
