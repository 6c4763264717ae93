"""Fixtures for the remote-source tests: loopback servers (a Range-capable HTTP server, moto's S3
server), fault-injecting proxies in front of them, and the stores the tests read, per client.

Everything listens on 127.0.0.1 and stops at the end of the session; tests whose client library
is not installed are skipped with the reason. Shared helpers live in remote_helpers.py.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from remote_helpers import (
    BUCKET,
    Store,
    http_store,
    quick_uploads,
    s3_admin,
    s3_options,
    s3_store,
    skip_without,
)
from remote_servers import FaultProxy, RangeServer

from bale.io.remote_client import close_shared_connections

# -- servers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _leave_no_connection_behind() -> Iterator[None]:
    """After each module: the shared client connections closed and collected, and this
    process's descriptors settled, so nothing of these tests closes a socket later (a later
    test may count descriptors). Set up first, so torn down after the servers."""
    yield
    gc.collect()
    close_shared_connections()
    gc.collect()
    settled, count = time.monotonic() + 2.0, -1
    while time.monotonic() < settled:  # obstore's runtime closes sockets on its own threads
        now = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0
        if now == count:
            break
        count = now
        time.sleep(0.05)


@pytest.fixture(scope="module")
def range_server() -> Iterator[RangeServer]:
    server = RangeServer()
    yield server
    server.close()


@pytest.fixture
def http_proxy(range_server: RangeServer) -> Iterator[FaultProxy]:
    proxy = FaultProxy(range_server.endpoint)
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    skip_without("moto", "boto3", "flask")
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    admin = s3_admin(endpoint)
    admin.create_bucket(Bucket=BUCKET)
    admin.close()
    yield endpoint
    server.stop()


@pytest.fixture(scope="module")
def s3_client(moto_endpoint: str) -> Iterator[Any]:
    """A boto3 client for putting objects into moto (closed after the module)."""
    admin = s3_admin(moto_endpoint)
    yield admin
    admin.close()


@pytest.fixture
def s3_proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(moto_endpoint)
    yield proxy
    proxy.close()


@pytest.fixture(autouse=True)
def _no_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Tests see only the credentials they pass, never the machine's."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "GOOGLE_", "AZURE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


# -- stores, per backend ------------------------------------------------------------------------


@pytest.fixture(params=["obstore", "fsspec"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def http(range_server: RangeServer, backend: str) -> Store:
    return http_store(range_server, backend)


@pytest.fixture
def upload(backend: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Writers of the test upload through ``backend`` with 5 MiB parts and quick limits."""
    return quick_uploads(monkeypatch, backend)


@pytest.fixture
def opts(moto_endpoint: str) -> dict[str, Any]:
    """Storage options for moto's S3, straight (no proxy)."""
    return s3_options(moto_endpoint)


@pytest.fixture(params=["http", "s3"])
def faulty(
    request: pytest.FixtureRequest, range_server: RangeServer, backend: str
) -> tuple[Store, FaultProxy]:
    """A store (the HTTP server, or moto's S3) behind a fault-injecting proxy, which also
    counts the requests, through each backend."""
    if request.param == "http":
        proxy: FaultProxy = request.getfixturevalue("http_proxy")
        store = http_store(range_server, backend, endpoint=proxy.endpoint)
        store.count = lambda: proxy.request_count
    else:
        proxy = request.getfixturevalue("s3_proxy")
        store = s3_store(request.getfixturevalue("s3_client"), backend, proxy)
    return store, proxy


@pytest.fixture
def store(faulty: tuple[Store, FaultProxy]) -> Store:
    """The same tests against the HTTP server and moto's S3, through each backend (behind a
    proxy that injects nothing unless told, and counts requests)."""
    return faulty[0]
