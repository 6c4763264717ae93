"""A missing object, refused credentials and a truncated object each give their own bale error
naming the URL; no error, repr or log line ever holds a credential."""

from __future__ import annotations

import dataclasses
import logging
import pickle
import re
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from remote_helpers import (
    BUCKET,
    QUICK,
    S3_KEY,
    S3_SECRET,
    Store,
    bounded,
    s3_options,
    skip_without,
)
from remote_servers import RangeServer

import bale
from bale._core.layout import read_index
from bale.errors import (
    AccessDeniedError,
    BaleError,
    ObjectNotFoundError,
    RemoteReadError,
    TruncatedFileError,
)
from bale.io.remote import RemoteOptions, RemoteSource

TOKEN = "Bearer bale-test-token-abcdef123456"


def everything_shown(exc: BaseException, source: object = None) -> str:
    """All text an error could put in front of a person: str, repr, args, the formatted
    traceback with its chained causes, its pickled bytes, and a source's repr."""
    parts = [str(exc), repr(exc), repr(exc.args), "".join(traceback.format_exception(exc))]
    parts.append(pickle.dumps(exc).decode("latin-1"))
    if source is not None:
        parts.append(repr(source))
    return "\n".join(parts)


def test_a_missing_object_is_object_not_found(store: Store) -> None:
    with pytest.raises(ObjectNotFoundError) as info:
        bounded(lambda: store.open("no/such/object.bale"))
    error = info.value
    assert isinstance(error, FileNotFoundError) and isinstance(error, BaleError)
    assert error.path == store.url("no/such/object.bale")
    assert store.url("no/such/object.bale") in str(error)
    assert pickle.loads(pickle.dumps(error)).path == error.path


def test_a_missing_bucket_is_object_not_found(moto_endpoint: str, backend: str) -> None:
    skip_without("s3fs" if backend == "fsspec" else "obstore")
    options = dataclass_replace(QUICK, backend=backend)
    with pytest.raises(ObjectNotFoundError, match=re.escape("s3://no-such-bucket/x.bale")):
        bounded(
            lambda: RemoteSource(
                "s3://no-such-bucket/x.bale", s3_options(moto_endpoint), options=options
            )
        )


def dataclass_replace(options: RemoteOptions, **changes: Any) -> RemoteOptions:
    return dataclasses.replace(options, **changes)


def test_http_credentials_are_sent_and_never_shown(range_server: RangeServer, http: Store) -> None:
    http.put("private.bin", b"p" * 1000)
    range_server.required_header = ("Authorization", TOKEN)
    try:
        options = dataclass_replace(QUICK, backend=http.backend)
        source = RemoteSource(
            http.url("private.bin"), {"headers": {"Authorization": TOKEN}}, options=options
        )
        assert source.read(0, 1000) == b"p" * 1000
        assert TOKEN not in repr(source) and "bale-test-token" not in repr(source)
        wrong = {"headers": {"Authorization": TOKEN + "-wrong"}}
        with pytest.raises(AccessDeniedError) as info:
            bounded(lambda: RemoteSource(http.url("private.bin"), wrong, options=options))
        assert isinstance(info.value, PermissionError)
        assert info.value.path == http.url("private.bin")
        assert "bale-test-token" not in everything_shown(info.value)
    finally:
        range_server.required_header = None


@pytest.fixture
def enforced_auth(moto_endpoint: str, s3_client: Any) -> Any:
    """moto checking signatures and IAM policies: a user with keys but no policy at all."""
    import boto3
    from moto import settings

    iam = boto3.client(
        "iam",
        endpoint_url=moto_endpoint,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
    )
    name = f"nobody-{np.random.default_rng().integers(1 << 30)}"
    iam.create_user(UserName=name)
    keys = iam.create_access_key(UserName=name)["AccessKey"]
    iam.close()
    s3_client.put_object(Bucket=BUCKET, Key="guarded.bin", Body=b"g" * 100)
    before = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    yield keys["AccessKeyId"], keys["SecretAccessKey"]
    settings.INITIAL_NO_AUTH_ACTION_COUNT = before


@pytest.mark.parametrize("who", ["user without a policy", "unknown key"])
def test_refused_s3_credentials_are_access_denied_and_never_shown(
    moto_endpoint: str, backend: str, enforced_auth: tuple[str, str], who: str
) -> None:
    skip_without("s3fs" if backend == "fsspec" else "obstore")
    key, secret = enforced_auth if who == "user without a policy" else (S3_KEY, S3_SECRET)
    options = dataclass_replace(QUICK, backend=backend)
    storage_options = s3_options(moto_endpoint, key=key, secret=secret)
    with pytest.raises(AccessDeniedError) as info:
        bounded(
            lambda: RemoteSource(f"s3://{BUCKET}/guarded.bin", storage_options, options=options)
        )
    shown = everything_shown(info.value)
    assert f"s3://{BUCKET}/guarded.bin" in str(info.value)
    assert secret not in shown and key not in shown


def test_a_truncated_bale_object_is_a_truncated_file_error(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "whole.bale"
    rng = np.random.default_rng(0)
    with bale.Writer(path) as writer:
        for _ in range(3):
            writer.write({"x": rng.integers(0, 255, (1024, 256), np.uint8)})
    data = path.read_bytes()
    store.put("cut.bale", data[: len(data) // 2])  # an upload that stopped half way
    source = store.open("cut.bale")
    with pytest.raises(TruncatedFileError) as info:
        read_index(source)
    assert info.value.path == store.url("cut.bale")
    with pytest.raises(TruncatedFileError, match="the object ends after"):
        source.read(len(data) // 2 - 10, 20)


def test_credentials_in_the_url_are_used_and_never_shown(range_server: RangeServer) -> None:
    """user:password and a signed query (a presigned URL) reach the server, never a message;
    such URLs go through fsspec, which keeps the query as it is."""
    skip_without("fsspec", "aiohttp")
    range_server.objects[f"/{BUCKET}/signed.bin"] = b"s" * 2000
    host = range_server.endpoint.removeprefix("http://")
    url = (
        f"http://alice:pa55word-xyz@{host}/{BUCKET}/signed.bin?X-Amz-Signature=sig-0123456789abcdef"
    )
    source = RemoteSource(url, options=QUICK)
    assert source.backend == "fsspec" and source.read(10, 100) == b"s" * 100
    _, path, headers = range_server.requests[-1]
    assert "X-Amz-Signature=sig-0123456789abcdef" in path and "Authorization" in headers
    assert source.path == f"http://***@{host}/{BUCKET}/signed.bin?X-Amz-Signature=***"
    missing = url.replace("signed.bin", "gone.bin")
    with pytest.raises(ObjectNotFoundError) as info:
        bounded(lambda: RemoteSource(missing, options=QUICK))
    shown = everything_shown(info.value, source)
    assert "pa55word" not in shown and "sig-0123456789abcdef" not in shown


def test_nothing_secret_is_logged(
    moto_endpoint: str, s3_client: Any, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever the client libraries log at DEBUG while bale opens, reads and fails, the
    secret is not in it (bale itself logs nothing)."""
    skip_without("s3fs" if backend == "fsspec" else "obstore")
    s3_client.put_object(Bucket=BUCKET, Key="logged.bin", Body=b"l" * 70000)
    options = dataclass_replace(QUICK, backend=backend)
    with caplog.at_level(logging.DEBUG):
        source = RemoteSource(
            f"s3://{BUCKET}/logged.bin", s3_options(moto_endpoint), options=options
        )
        source.read(0, 100)
        with pytest.raises(ObjectNotFoundError):
            RemoteSource(f"s3://{BUCKET}/absent.bin", s3_options(moto_endpoint), options=options)
    assert S3_SECRET not in caplog.text
    assert not [r for r in caplog.records if r.name.startswith("bale")]


def test_bad_options_name_keys_never_values(http: Store) -> None:
    if http.backend != "obstore":
        pytest.skip("fsspec passes unknown options to the filesystem")
    with pytest.raises(ValueError, match="no_such_option") as info:
        options = dataclass_replace(QUICK, backend="obstore")
        RemoteSource(http.url("x.bin"), {"no_such_option": "hunter2-value"}, options=options)
    assert "hunter2" not in str(info.value)


def test_remote_read_error_is_an_os_error() -> None:
    error = RemoteReadError("timed out", path="s3://b/k")
    assert isinstance(error, OSError) and isinstance(error, BaleError)
    assert str(error) == "file 's3://b/k': timed out"
