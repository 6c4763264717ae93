"""What the remote-source tests share besides fixtures: quick time limits, the credentials they
use, a bound on every call that could hang, S3 names and listings, a check that columns read back
equal, and a store as a test sees it (a module of its own,
with a name no other test directory uses, so test modules import it rather than conftest)."""

from __future__ import annotations

import dataclasses
import importlib.util
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pytest
from remote_servers import FaultProxy, RangeServer

from bale.io import remote_sink
from bale.io.remote import RemoteOptions, RemoteSource

T = TypeVar("T")

BUCKET = "bale-test"
#: Credentials the S3 tests use; tests check that neither ever appears in an error or a repr.
S3_KEY = "AKIABALETESTKEY0001"
S3_SECRET = "bale-test-secret-value-0123456789"

#: Quick limits: every wait in the fault tests ends in a second or two.
QUICK = RemoteOptions(
    connect_timeout_s=1.0,
    read_timeout_s=0.4,
    request_timeout_s=3.0,
    max_retries=4,
    retry_timeout_s=2.0,
    backoff_initial_s=0.01,
    backoff_max_s=0.05,
)

#: S3's smallest part: a few MiB make a multipart upload of several parts.
PART = 5 << 20

REQUIRES = {
    "obstore": ("obstore",),
    "fsspec": ("fsspec", "aiohttp"),
    "fsspec-s3": ("fsspec", "s3fs"),
}


def missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def skip_without(*modules: str) -> None:
    absent = missing(*modules)
    if absent:
        pytest.skip(f"needs {', '.join(absent)} (pip install 'bale[remote]')")


def quick_uploads(monkeypatch: pytest.MonkeyPatch, backend: str) -> str:
    """Writers upload through ``backend`` with 5 MiB parts, two in flight, and quick limits
    (until the test ends); skips the test where that client is not installed."""
    skip_without(*REQUIRES["fsspec-s3" if backend == "fsspec" else backend])
    options = remote_sink.UploadOptions(
        part_bytes=PART,
        parts_in_flight=2,
        backend=backend,  # type: ignore[arg-type]
        remote=QUICK,
    )
    monkeypatch.setattr(remote_sink, "DEFAULT_UPLOAD_OPTIONS", options)
    return backend


def url(name: str) -> str:
    """The S3 URL of ``name`` in the test bucket."""
    return f"s3://{BUCKET}/{name}"


def keys(admin: Any, prefix: str = "") -> list[str]:
    """The keys in the test bucket under ``prefix``, sorted."""
    listed = admin.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"] for o in listed)


def assert_columns_equal(got: dict[str, Any], want: dict[str, Any]) -> None:
    """The same column names, arrays equal to the element, lists of values equal."""
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(got[key], value)
        else:
            assert list(got[key]) == list(value), key


def kill_writer_midway(
    args: list[str], started: Callable[[], object], what: str, settle_s: float = 0.0
) -> None:
    """Runs ``python -c args...``, waits (30 s at most) until ``started()`` says the writer has
    sent ``what``, lets it run ``settle_s`` more, then SIGKILLs it; fails with its stderr if it
    exits first. The child is reaped whatever happens."""
    child = subprocess.Popen(
        [sys.executable, "-c", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert child.stderr is not None
    try:
        deadline = time.monotonic() + 30
        while not started():
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, f"the writer sent no {what} in 30 s"
            time.sleep(0.05)
        time.sleep(settle_s)
        child.send_signal(signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
    finally:
        child.kill()
        child.wait(10)
        child.stderr.close()


def bounded(call: Callable[[], T], seconds: float = 20.0) -> T:
    """``call()`` in a thread; fails the test if it has not returned within ``seconds`` (a hang),
    and re-raises what it raised."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still running after {seconds} s: a hang")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


@dataclass
class Store:
    """One loopback store as a test sees it: ``url(name)`` for an object, ``put(name, data)``,
    the storage options for it, the requests it answered (``count()``), and its backend."""

    kind: str  # "http" or "s3"
    backend: str
    url: Callable[[str], str]
    put: Callable[[str, bytes], None]
    storage_options: dict[str, Any]
    count: Callable[[], int]

    def open(self, name: str, options: RemoteOptions = QUICK, **changes: Any) -> RemoteSource:
        settings = dataclasses.replace(options, **{"backend": self.backend, **changes})
        return RemoteSource(self.url(name), self.storage_options, options=settings)


def s3_admin(endpoint: str) -> Any:
    """A boto3 client for setting up objects (moto accepts any key while auth is off)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
    )


def s3_options(endpoint: str, key: str = S3_KEY, secret: str = S3_SECRET) -> dict[str, Any]:
    """fsspec-style options (s3fs names), which the obstore client translates."""
    return {
        "key": key,
        "secret": secret,
        "endpoint_url": endpoint,
        "client_kwargs": {"region_name": "us-east-1"},
    }


def http_store(server: RangeServer, backend: str, endpoint: str | None = None) -> Store:
    skip_without(*REQUIRES[backend])
    base = endpoint or server.endpoint
    return Store(
        kind="http",
        backend=backend,
        url=lambda name: f"{base}/{BUCKET}/{name}",
        put=lambda name, data: server.objects.__setitem__(f"/{BUCKET}/{name}", data),
        storage_options={},
        count=lambda: server.request_count,
    )


def s3_store(admin: Any, backend: str, proxy: FaultProxy) -> Store:
    """moto's S3 through ``proxy`` (which counts the requests); ``admin`` puts objects."""
    skip_without(*REQUIRES["fsspec-s3" if backend == "fsspec" else backend])
    return Store(
        kind="s3",
        backend=backend,
        url=lambda name: f"s3://{BUCKET}/{name}",
        put=lambda name, data: admin.put_object(Bucket=BUCKET, Key=name, Body=data),
        storage_options=s3_options(proxy.endpoint),
        count=lambda: proxy.request_count,
    )
