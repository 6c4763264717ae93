"""The parts of a remote source that need no server: URLs and their redaction, options, the
retry loop's bounds, the read-ahead's cap, and storage options as each client reads them."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from remote_helpers import skip_without

from bale.errors import RemoteReadError
from bale.io.readahead import ReadAhead
from bale.io.remote import RemoteOptions, is_remote, redact_url
from bale.io.remote_client import Transient, with_retries
from bale.io.remote_url import parse_url


@pytest.mark.parametrize(
    ("path", "remote"),
    [
        ("s3://bucket/a.bale", True),
        ("gs://bucket/a.bale", True),
        ("az://container/a.bale", True),
        ("abfs://container@account.dfs.core.windows.net/a.bale", True),
        ("https://host/a.bale", True),
        ("simplecache::s3://bucket/a.bale", True),
        ("memory://a.bale", True),
        ("/data/a.bale", False),
        ("a.bale", False),
        ("file:///data/a.bale", False),
        ("C://data/a.bale", False),
        ("http://[::1]:8080/a.bale", True),
    ],
)
def test_is_remote(path: str, remote: bool) -> None:
    assert is_remote(path) is remote


def test_parse_url_splits_and_hides_credentials() -> None:
    url = parse_url("https://me:pw@host:8080/dir/a%20b.bale?sig=abc")
    assert (url.scheme, url.netloc, url.key) == ("https", "host:8080", "dir/a b.bale")
    assert url.has_userinfo and url.has_query
    assert "pw" not in repr(url) and "abc" not in repr(url)
    assert url.display == "https://***@host:8080/dir/a%20b.bale?sig=***"
    azure = parse_url("abfs://container@account.dfs.core.windows.net/dir/a.bale")
    assert azure.netloc == "container@account.dfs.core.windows.net" and not azure.has_userinfo
    assert azure.display == "abfs://container@account.dfs.core.windows.net/dir/a.bale"
    with pytest.raises(ValueError, match="not a remote URL"):
        parse_url("/local/path")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("s3://bucket/key.bale", "s3://bucket/key.bale"),
        (
            "https://u:p@h/k?X-Amz-Signature=s&X-Amz-Credential=c",
            "https://***@h/k?X-Amz-Signature=***&X-Amz-Credential=***",
        ),
        ("https://h/k?sv=2020&sig=SAS", "https://h/k?sv=***&sig=***"),
        ("https://h/k?opaque", "https://h/k?opaque=***"),
        ("simplecache::https://u:p@h/k", "simplecache::https://***@h/k"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "bad",
    [
        {"tail_bytes": 10},
        {"read_timeout_s": 0},
        {"max_retries": -1},
        {"read_ahead_requests": 0},
        {"backend": "boto"},
        {"retry_timeout_s": -1.0},
    ],
)
def test_options_are_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="RemoteOptions"):
        RemoteOptions(**bad)


def test_retries_stop_at_the_count_and_the_time_bound() -> None:
    options = RemoteOptions(
        max_retries=3, retry_timeout_s=100, backoff_initial_s=1, backoff_max_s=4
    )
    waits: list[float] = []

    def failing() -> bytes:
        raise Transient("HTTP 503")

    with pytest.raises(RemoteReadError, match=r"failed after 4 attempts.*HTTP 503") as info:
        with_retries(failing, options, "reading bytes 0..9", "s3://b/k", sleep=waits.append)
    assert info.value.path == "s3://b/k"
    assert len(waits) == 3
    assert all(0.5 * min(4, 2**i) <= w <= min(4, 2**i) for i, w in enumerate(waits))
    # the time bound: no retry starts after retry_timeout_s
    quick = RemoteOptions(
        max_retries=1000, retry_timeout_s=0.2, backoff_initial_s=0.01, backoff_max_s=0.05
    )
    started = time.monotonic()
    with pytest.raises(RemoteReadError):
        with_retries(failing, quick, "reading", "s3://b/k")
    assert time.monotonic() - started < 0.5


def test_retries_end_when_the_call_succeeds() -> None:
    answers = iter([Transient("timed out"), Transient("HTTP 500"), b"ok"])

    def flaky() -> bytes:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert with_retries(flaky, RemoteOptions(), "reading", "u", sleep=lambda s: None) == b"ok"


def test_the_read_ahead_caps_bytes_and_serves_covered_ranges() -> None:
    data = bytes(range(256)) * 400
    fetched: list[tuple[int, int]] = []
    release = threading.Event()

    def fetch(start: int, stop: int) -> bytes:
        fetched.append((start, stop))
        release.wait(5)
        return data[start:stop]

    ahead = ReadAhead(fetch, max_bytes=30_000, max_requests=2)
    assert ahead.start(0, 10_000) and ahead.start(10_000, 20_000)
    assert ahead.start(5_000, 8_000)  # covered: nothing new
    assert not ahead.start(0, 40_000)  # larger than the cap: dropped
    assert ahead.start(20_000, 35_000)  # over the cap: the oldest range goes
    assert ahead._held <= 30_000
    release.set()
    assert ahead.take(12_000, 15_000, timeout=5) == data[12_000:15_000]
    assert ahead.take(0, 100, timeout=5) is None  # pushed out
    assert ahead.take(34_000, 36_000, timeout=5) is None  # not covered
    ahead.close()


def test_a_range_read_in_full_is_freed_at_once() -> None:
    ahead = ReadAhead(lambda start, stop: bytes(stop - start), max_bytes=1000, max_requests=2)
    assert ahead.start(0, 600)
    assert ahead.take(0, 200, timeout=5) == bytes(200)
    assert ahead._held == 600  # the rest of the range is still to be read
    assert ahead.take(200, 600, timeout=5) == bytes(400)
    assert ahead._held == 0  # every byte taken: room for the next ranges without evictions
    assert ahead.start(0, 1000)
    ahead.close()


def test_the_read_ahead_runs_at_most_max_requests_fetches_at_once() -> None:
    running = 0
    most = 0
    lock = threading.Lock()

    def fetch(start: int, stop: int) -> bytes:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return bytes(stop - start)

    ahead = ReadAhead(fetch, max_bytes=10_000, max_requests=3)
    for i in range(12):
        assert ahead.start(i * 100, (i + 1) * 100)
    for i in range(12):  # every range arrives: the queued ones are sent as slots free up
        assert ahead.take(i * 100, (i + 1) * 100, timeout=10) == bytes(100)
    assert (
        2 <= most <= 3
    )  # never more than the cap (3 unless a loaded machine is slow to start one)
    ahead.close()


def test_a_failed_fetch_ahead_is_forgotten() -> None:
    def fetch(start: int, stop: int) -> bytes:
        raise RemoteReadError("timed out", path="u")

    ahead = ReadAhead(fetch, max_bytes=1000, max_requests=1)
    ahead.start(0, 100)
    assert ahead.take(0, 100, timeout=5) is None
    assert ahead._held == 0
    ahead.close()


def test_fsspec_style_s3_options_become_obstore_config() -> None:
    skip_without("obstore")
    from bale.io.remote_obstore import _s3_config

    config, provider = _s3_config(
        {
            "key": "AK",
            "secret": "SK",
            "token": "ST",
            "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "eu-west-1"},
            "default_block_size": 1 << 20,
        }
    )
    assert config == {
        "access_key_id": "AK",
        "secret_access_key": "SK",
        "session_token": "ST",
        "endpoint": "http://127.0.0.1:9000",
        "region": "eu-west-1",
    }
    assert provider is None
    assert _s3_config({"anon": True})[0] == {"skip_signature": True}


@pytest.mark.parametrize(
    "url", ["gs://bucket/a.bale", "az://container/a.bale", "s3://bucket/a.bale"]
)
def test_stores_for_each_cloud_are_built_without_a_request(url: str) -> None:
    skip_without("obstore")
    from bale.io.remote_obstore import _store

    options = {"gs": {"token": "anon"}, "az": {"account_name": "acct", "anon": True}}
    store = _store(parse_url(url), dict(options.get(url[:2], {"anon": True})), RemoteOptions())
    assert type(store).__name__ in ("GCSStore", "AzureStore", "S3Store")
