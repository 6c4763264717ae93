"""The fsspec client: ranged reads through fsspec's filesystems (aiohttp HTTP, s3fs, gcsfs, adlfs,
chained URLs). HTTP and S3 open with one suffix-range GET and pin the ETag as the obstore client
does; other protocols ask for the size first. Each attempt runs under a time limit."""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Any

from bale.errors import (
    AccessDeniedError,
    BaleError,
    CorruptFileError,
    ObjectNotFoundError,
    RemoteReadError,
)
from bale.io.remote_client import (
    RangeClient,
    RemoteOptions,
    Tail,
    Transient,
    import_client,
    options_key,
    packages_for,
    shared_connection,
)
from bale.io.remote_url import HTTP_SCHEMES, S3_SCHEMES, RemoteURL, is_chain

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class _Status(Exception):
    """An HTTP answer other than the bytes asked for."""

    def __init__(self, status: int, content_range: str | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.content_range = content_range


class FsspecClient(RangeClient):
    name = "fsspec"

    def __init__(
        self, url: RemoteURL, storage_options: Mapping[str, Any], options: RemoteOptions
    ) -> None:
        fsspec: Any = import_client("fsspec", url.scheme)
        self._sync: Any = importlib.import_module("fsspec.asyn").sync
        self._display = url.display
        self._timeout = options.request_timeout_s + options.connect_timeout_s
        kwargs = _with_time_limits(url.scheme, dict(storage_options), options)
        chain = is_chain(url.url)  # a chain's filesystem depends on the whole URL
        key = ("fsspec", url.url if chain else url.scheme, options_key(storage_options), options)

        def make() -> tuple[Any, str]:
            fs, path = fsspec.core.url_to_fs(url.url, skip_instance_cache=True, **kwargs)
            if url.scheme in S3_SCHEMES and isinstance(getattr(fs, "retries", None), int):
                fs.retries = 1  # s3fs's own retry loop (a class attribute): one attempt
            return fs, path

        try:
            self._fs, path = shared_connection(key, make)
        except ImportError as exc:
            # fsspec re-raises the import's error as its own message, the module named below it
            missing = exc.name or getattr(exc.__cause__, "name", None) or f"fsspec: {exc}"
            raise ImportError(
                f"reading {url.scheme}:// URLs through fsspec needs its filesystem package "
                f"({missing}), which is not installed: pip install "
                f"{packages_for(url.scheme, 'fsspec')}"
            ) from None
        except Exception as exc:
            # the filesystem rejected an option; name the keys given, never a value
            raise ValueError(
                f"fsspec cannot build a {url.scheme}:// filesystem from the storage options "
                f"given (keys: {sorted(storage_options)}): {type(exc).__name__}"
            ) from None
        self._path = path if chain else self._fs._strip_protocol(url.url)
        self._async = bool(getattr(self._fs, "async_impl", False)) and not getattr(
            self._fs, "asynchronous", False
        )
        self._protocol = "generic"
        if not chain and url.scheme in HTTP_SCHEMES and hasattr(self._fs, "set_session"):
            self._protocol = "http"
        elif not chain and url.scheme in S3_SCHEMES and hasattr(self._fs, "_call_s3"):
            self._protocol = "s3"

    # -- the contract ---------------------------------------------------------------------------

    def tail(self, n: int) -> Tail:
        if self._protocol == "generic":
            return self._generic_tail(n)
        what = "opening (a suffix-range GET)"
        try:
            content_range, etag, data = self._run(self._ranged(f"bytes=-{n}", None), what)
        except _Status as answer:
            # An empty object has no last bytes: S3 answers 416, some servers 200
            if answer.status in (200, 416):
                empty = self._call(lambda: self._fs.info(self._path), "opening (the size)")
                if int(empty["size"]) == 0:
                    return Tail(0, None, b"", 2)
            raise self._error_for(answer.status, what) from None
        total = _total(content_range, data)
        return Tail(total, _strong(etag), data, 1)

    def get(self, start: int, stop: int, etag: str | None) -> bytes:
        what = f"GET of bytes {start}..{stop - 1}"
        if self._protocol == "generic":
            if self._async:
                data = self._run(self._fs._cat_file(self._path, start=start, end=stop), what)
            else:
                data = self._call(
                    lambda: self._fs.cat_file(self._path, start=start, end=stop), what
                )
            return bytes(data)
        try:
            content_range, _, data = self._run(
                self._ranged(f"bytes={start}-{stop - 1}", etag), what
            )
        except _Status as answer:
            raise self._error_for(answer.status, what) from None
        match = _CONTENT_RANGE.match(content_range or "")
        if match is None or int(match.group(1)) != start:
            raise RemoteReadError(
                f"asked for bytes {start}..{stop - 1}, the server answered with another range "
                f"({content_range or 'the whole object'}): it does not answer byte-range requests",
                path=self._display,
            )
        return bytes(data)

    def close(self) -> None:
        self._fs = None

    # -- requests -------------------------------------------------------------------------------

    async def _ranged(
        self, byte_range: str, etag: str | None
    ) -> tuple[str | None, str | None, bytes]:
        """One ranged GET: (Content-Range, ETag, body), or _Status for another answer."""
        if self._protocol == "s3":
            return await self._s3_get(byte_range, etag)
        return await self._http_get(byte_range, etag)

    async def _http_get(
        self, byte_range: str, etag: str | None
    ) -> tuple[str | None, str | None, bytes]:
        fs = self._fs
        session = await fs.set_session()
        kwargs = dict(fs.kwargs)
        headers = dict(kwargs.pop("headers", None) or {})
        headers["Range"] = byte_range
        if etag is not None:
            headers["If-Match"] = etag
        async with session.get(fs.encode_url(self._path), headers=headers, **kwargs) as response:
            if response.status != 206:
                # 200 is the whole object (the Range ignored): never downloaded
                raise _Status(response.status, response.headers.get("Content-Range"))
            body = await response.read()
            return response.headers.get("Content-Range"), response.headers.get("ETag"), body

    async def _s3_get(
        self, byte_range: str, etag: str | None
    ) -> tuple[str | None, str | None, bytes]:
        fs = self._fs
        bucket, key, version = fs.split_path(self._path)
        request: dict[str, Any] = {"Bucket": bucket, "Key": key, "Range": byte_range}
        if version:
            request["VersionId"] = version
        if etag is not None:
            request["IfMatch"] = etag
        try:
            response = await fs._call_s3("get_object", **request)
        except OSError as exc:
            status = _boto_status(exc)
            if status is None:
                raise
            raise _Status(status, _boto_header(exc, "content-range")) from None
        try:
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status != 206:  # 200 is the whole object (the Range ignored): never downloaded
                raise _Status(int(status or 0), response.get("ContentRange"))
            body = await response["Body"].read()
        finally:
            response["Body"].close()
        return response.get("ContentRange"), response.get("ETag"), body

    def _generic_tail(self, n: int) -> Tail:
        info = self._call(lambda: self._fs.info(self._path), "opening (the size)")
        size = int(info["size"])
        start = max(0, size - n)
        if not size:
            return Tail(0, None, b"", 1)
        what = f"GET of bytes {start}..{size - 1}"
        if self._async:
            data = self._run(self._fs._cat_file(self._path, start=start, end=size), what)
        else:
            data = self._call(lambda: self._fs.cat_file(self._path, start=start, end=size), what)
        return Tail(size, None, bytes(data), 2)

    def _run(self, coroutine: Any, what: str) -> Any:
        """A coroutine on fsspec's event loop, under the attempt's time limit."""

        async def bounded() -> Any:
            return await coroutine

        try:
            return self._sync(self._fs.loop, bounded, timeout=self._timeout)
        except _Status:
            raise
        except Exception as exc:
            raise self._sort(exc, what) from None
        finally:
            coroutine.close()  # never awaited if the loop refused it

    def _call(self, run: Any, what: str) -> Any:
        try:
            return run()
        except Exception as exc:
            raise self._sort(exc, what) from None

    def _sort(self, exc: Exception, what: str) -> Exception:
        """Retry (Transient) or a bale error; never the library's message (URLs, headers)."""
        if isinstance(exc, BaleError):
            return exc
        status = getattr(exc, "status", None)
        if not isinstance(status, int):  # azure-core's HttpResponseError (adlfs): status_code
            status = getattr(exc, "status_code", None)
        status = status if isinstance(status, int) else _boto_status(exc)
        if isinstance(exc, FileNotFoundError) and status is None:
            status = 404
        if isinstance(exc, PermissionError) and status is None:
            status = 403
        if status is not None:
            return self._error_for(status, what)
        # asyncio's TimeoutError is the builtin from 3.11; fsspec's is FSTimeoutError
        if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__:
            return Transient(f"{what}: timed out")
        if isinstance(exc, OSError) or _from_http_library(exc):
            return Transient(f"{what}: {type(exc).__name__}")
        return RemoteReadError(f"{what} failed: {type(exc).__name__}", path=self._display)

    def _error_for(self, status: int, what: str) -> Exception:
        if status == 404:
            return ObjectNotFoundError(f"no object at this URL ({what})", path=self._display)
        if status in (401, 403):
            return AccessDeniedError(
                f"the store refused access ({what}): check the credentials and the bucket's "
                "permissions",
                path=self._display,
            )
        if status == 412:
            return CorruptFileError(
                "the object changed after it was opened (its ETag no longer matches): open it "
                "again to read the new version",
                path=self._display,
            )
        if status in (408, 429) or status >= 500:
            return Transient(f"{what}: HTTP {status}")
        if status == 200:
            return RemoteReadError(
                f"the server does not answer byte-range requests ({what})", path=self._display
            )
        return RemoteReadError(f"{what} was refused: HTTP {status}", path=self._display)


def _total(content_range: str | None, data: bytes) -> int:
    match = _CONTENT_RANGE.match(content_range or "")
    if match is None or match.group(3) == "*":
        raise Transient("the answer to a suffix range did not give the object's size")
    return int(match.group(3))


def _strong(etag: object) -> str | None:
    """An ETag fit for If-Match: weak ones (W/"...") never match under strong comparison."""
    if not isinstance(etag, str) or not etag or etag.startswith("W/"):
        return None
    return etag


def _boto_status(exc: BaseException) -> int | None:
    """The HTTP status of a botocore ClientError that s3fs translated into an OSError."""
    cause = exc.__cause__ or exc.__context__
    response = getattr(cause, "response", None) or getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if isinstance(status, int) else None


def _boto_header(exc: BaseException, name: str) -> str | None:
    cause = exc.__cause__ or exc.__context__
    response = getattr(cause, "response", None)
    if not isinstance(response, dict):
        return None
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    value = headers.get(name)
    return value if isinstance(value, str) else None


def _from_http_library(exc: Exception) -> bool:
    """Transport errors of aiohttp and botocore (disconnects, bodies cut short), checked by
    module so neither is imported here."""
    return any(
        cls.__module__.split(".")[0] in ("aiohttp", "botocore", "aiobotocore", "urllib3")
        for cls in type(exc).__mro__
    )


def _with_time_limits(
    scheme: str, kwargs: dict[str, Any], options: RemoteOptions
) -> dict[str, Any]:
    """The library's own time limits set from ``options`` (where the caller set none), and its
    own retries off: bale's loop is the one place retries are counted and bounded."""
    if scheme in HTTP_SCHEMES:
        aiohttp: Any = import_client("aiohttp", scheme)
        client_kwargs = dict(kwargs.get("client_kwargs") or {})
        client_kwargs.setdefault(
            "timeout",
            aiohttp.ClientTimeout(
                total=options.request_timeout_s,
                connect=options.connect_timeout_s,
                sock_read=options.read_timeout_s,
            ),
        )
        kwargs["client_kwargs"] = client_kwargs
    elif scheme in S3_SCHEMES:
        config_kwargs = dict(kwargs.get("config_kwargs") or {})
        config_kwargs.setdefault("connect_timeout", options.connect_timeout_s)
        config_kwargs.setdefault("read_timeout", options.read_timeout_s)
        config_kwargs.setdefault("retries", {"total_max_attempts": 1})
        kwargs["config_kwargs"] = config_kwargs
    return kwargs
