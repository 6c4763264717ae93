"""A new object on S3, GCS or Azure written as bale writes a file: aligned appends buffered into
the parts of a multipart upload, published whole by ``commit()`` and never before; a failure or
``discard()`` aborts the upload, so the name keeps the previous object, or none."""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import sys
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from bale._types import Buffer
from bale.errors import (
    AccessDeniedError,
    BaleError,
    BaleWriteError,
    RemoteReadError,
    TargetExistsError,
)
from bale.io import remote_fsspec, remote_obstore
from bale.io.remote_client import (
    Backend,
    MiB,
    RemoteOptions,
    Transient,
    import_client,
    options_key,
    shared_connection,
    with_retries,
)
from bale.io.remote_url import AZURE_SCHEMES, GCS_SCHEMES, S3_SCHEMES, RemoteURL, parse_url

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

T = TypeVar("T")

#: S3's smallest part (all but the last); GCS and Azure take smaller ones
MIN_PART_BYTES = 5 * MiB
WRITABLE_SCHEMES = S3_SCHEMES | GCS_SCHEMES | AZURE_SCHEMES


@dataclass(frozen=True)
class UploadOptions:
    """How a remote sink uploads. Memory: at most ``parts_in_flight + 1`` parts of
    ``part_bytes`` (80 MiB by default), whatever the object's size. S3 allows 10,000 parts, so
    16 MiB parts make objects of up to 156 GiB. Time: each request is bounded by ``remote``'s
    limits and retries (``RemoteOptions``), as reads are.

    >>> UploadOptions(part_bytes=32 << 20).parts_in_flight
    4
    """

    part_bytes: int = 16 * MiB
    parts_in_flight: int = 4
    #: "auto": obstore where it can run in this process, else fsspec (s3fs) for s3:// URLs
    backend: Backend = "auto"
    remote: RemoteOptions = field(default_factory=RemoteOptions)

    def __post_init__(self) -> None:
        if self.part_bytes < MIN_PART_BYTES:
            raise ValueError(f"UploadOptions.part_bytes must be >= {MIN_PART_BYTES} (S3's minimum)")
        if self.parts_in_flight < 1:
            raise ValueError("UploadOptions.parts_in_flight must be >= 1")
        if self.backend not in ("auto", "obstore", "fsspec"):
            raise ValueError(
                f"UploadOptions.backend: 'auto', 'obstore' or 'fsspec', not {self.backend!r}"
            )


#: What ``bale.Writer`` uses for URLs (tests swap it for one forcing a backend).
DEFAULT_UPLOAD_OPTIONS = UploadOptions()


class RemoteSink:
    """A new object that bale appends aligned byte runs to, with ``FileSink``'s interface.

    Bytes are copied into a part buffer; each full part goes to the store (``parts_in_flight``
    uploading at once) and the object exists only once ``commit()`` completes the upload. A
    failed write, ``discard()``, ``close()`` without commit, or a dead process never publish
    anything: the first three abort the upload; a killed process leaves an incomplete upload,
    invisible to readers, which the bucket's lifecycle rule removes (the bale repository's
    docs/REMOTE.md).

    Unlike a local file there is no lock: two writers of one name each publish a whole
    object, the last to complete wins. With ``overwrite=False`` an existing object is refused
    when the sink opens, and again just before completing.
    """

    keeps_partial = False
    mode = "create"

    def __init__(
        self,
        url: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        alignment: int,
        overwrite: bool = False,
        options: UploadOptions | None = None,
    ) -> None:
        self._url = parse_url(url)
        self.target = self.path = self._url.display
        self.alignment = alignment
        self.overwrite = overwrite
        self.options = options or DEFAULT_UPLOAD_OPTIONS
        if self._url.scheme not in WRITABLE_SCHEMES or not self._url.key:
            raise ValueError(
                f"bale writes objects to s3://, gs:// and az:// (abfs://) URLs naming a key, "
                f"not {self.target!r}"
            )
        self._upload = _make_upload(self._url, dict(storage_options or {}), self.options)
        self._pid = os.getpid()
        self.offset = 0
        self.closed = False
        self._part = bytearray()
        self._fill = 0
        self.parts_sent = 0
        self._failed = False
        if not overwrite and self._upload.exists():
            raise TargetExistsError(
                "an object exists at this URL; pass overwrite=True to replace it (object stores "
                "cannot append: write a new object)",
                path=self.target,
            )

    @property
    def backend(self) -> str:
        """The client uploading: "obstore" or "fsspec"."""
        return self._upload.name

    def write(self, buffers: Sequence[Buffer], *, align: bool = True) -> int:
        """Append buffers (then zero padding to the alignment); return where they start. The
        buffers are copied before this returns."""
        self._check_writable()
        start = self.offset
        pieces = [memoryview(b).cast("B") for b in buffers]
        total = sum(len(p) for p in pieces)
        if align:
            pad = -(start + total) % self.alignment
            if pad:
                pieces.append(memoryview(bytes(pad)))
        part_bytes = self.options.part_bytes
        for piece in pieces:
            while len(piece):
                if not self._part:
                    self._part = bytearray(part_bytes)
                n = min(len(piece), part_bytes - self._fill)
                self._part[self._fill : self._fill + n] = piece[:n]
                self._fill += n
                self.offset += n
                piece = piece[n:]
                if self._fill == part_bytes:
                    # Handed over, never touched again: the client may upload it without a copy.
                    part, self._part, self._fill = self._part, bytearray(), 0
                    self._guarded(self._upload.put_part, part)
                    self.parts_sent += 1
        return start

    def truncate_here(self) -> None:
        """Nothing to drop: a new object only grows (its end is always the offset)."""

    def sync(self) -> None:
        """Nothing is durable before ``commit()``; uploads in flight continue."""

    def commit(self) -> None:
        """Upload the last part and complete the upload: the object appears, whole, at once."""
        self._check_writable()
        last = memoryview(self._part)[: self._fill]
        if not self.overwrite:
            exists = self._guarded(self._upload.exists)
            if exists:
                self.discard()
                raise TargetExistsError(
                    "an object appeared at this URL while writing; the upload was aborted and "
                    "nothing was written over it",
                    path=self.target,
                )
        self._guarded(self._upload.complete, last)
        last.release()
        self._part, self._fill = bytearray(), 0
        self.closed = True

    def discard(self) -> None:
        """Abort the upload: nothing is published, the parts sent are deleted."""
        if self.closed:
            return
        self.closed = True
        self._part, self._fill = bytearray(), 0
        # A forked child never touches its parent's upload; nor does an interpreter shutting
        # down (fsspec's event loop thread may be gone: the abort would wait out its time limit).
        if os.getpid() == self._pid and not sys.is_finalizing():
            with contextlib.suppress(Exception):  # best effort: a left upload is never visible
                self._upload.abort()

    def close(self) -> None:
        """Closing without ``commit()`` discards."""
        self.discard()

    def __repr__(self) -> str:
        return f"RemoteSink({self.target!r})"

    def _check_writable(self) -> None:
        if self.closed:
            raise ValueError(f"the upload to {self.target!r} is closed")
        if self._failed:
            raise upload_error("an earlier upload failed; nothing more is sent", self.target)

    def _guarded(self, call: Callable[..., T], *args: Any) -> T:
        """``call()``; any failure aborts the upload and is raised as a BaleWriteError, the
        error the Writer stops for good on."""
        try:
            return call(*args)
        except BaseException as exc:
            self._failed = True
            self.discard()
            if isinstance(exc, BaleWriteError) or not isinstance(exc, Exception):
                raise
            raise _as_write_error(exc, self.target) from None


def object_exists(
    url: str, storage_options: Mapping[str, Any] | None = None, options: UploadOptions | None = None
) -> bool:
    """Whether an object is at ``url`` (one HEAD request): a pack checks before reading."""
    parsed = parse_url(url)
    upload = _make_upload(parsed, dict(storage_options or {}), options or DEFAULT_UPLOAD_OPTIONS)
    return upload.exists()


def delete_object(url: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Delete the object at ``url`` (nothing there: nothing to do), through the client an upload
    to it would use, under the same time limits and retries: an output published by a step
    that then failed as a whole (``bale.split``) is taken back."""
    parsed = parse_url(url)
    _make_upload(parsed, dict(storage_options or {}), DEFAULT_UPLOAD_OPTIONS).delete()


# -- the clients --------------------------------------------------------------------------------


class _Upload(ABC):
    """One object's upload through one client; raises bale errors naming the URL only."""

    name: str

    @abstractmethod
    def exists(self) -> bool:
        """Whether the object exists now (AccessDeniedError and the like when it cannot tell)."""

    @abstractmethod
    def delete(self) -> None:
        """Delete the object (a missing one is not an error)."""

    @abstractmethod
    def put_part(self, part: bytearray) -> None:
        """Send one full part; may return before it is uploaded (a bounded number in flight)."""

    @abstractmethod
    def complete(self, last: memoryview) -> None:
        """Send the last (possibly short or empty) part and publish the object."""

    @abstractmethod
    def abort(self) -> None:
        """Forget the upload and delete its parts."""


def _make_upload(
    url: RemoteURL, storage_options: dict[str, Any], options: UploadOptions
) -> _Upload:
    backend = options.backend
    usable = remote_obstore.serves(url) and remote_obstore.usable_in_this_process()
    if backend == "obstore" or (backend == "auto" and usable):
        if not usable:
            import_client("obstore", url.scheme)
            raise ValueError(
                "obstore cannot run in a process forked after it made a request (its "
                f"runtime's threads do not survive fork): {url.display}"
            )
        return _ObstoreUpload(url, storage_options, options)
    if url.scheme in S3_SCHEMES:
        return _S3Upload(url, storage_options, options)
    raise ValueError(
        f"writing {url.scheme}:// URLs needs obstore in this process, which is not installed "
        "or cannot run here (a process forked after obstore started: start it with 'spawn' "
        f"or 'forkserver'): {url.display}"
    )


class _ObstoreUpload(_Upload):
    """object_store's buffered writer: one PUT for an object under one part, else a multipart
    upload; parts upload in object_store's runtime while bale encodes the next ones."""

    name = "obstore"

    def __init__(
        self, url: RemoteURL, storage_options: dict[str, Any], options: UploadOptions
    ) -> None:
        self._obstore: Any = import_client("obstore", url.scheme)
        self._display = url.display
        self._key = url.key
        self._options = options
        key = ("obstore", url.scheme, url.netloc, options_key(storage_options), options.remote)
        try:
            self._store = shared_connection(
                key,
                lambda: remote_obstore._store(url, dict(storage_options), options.remote),
            )
        except BaleError:
            raise
        except Exception as exc:  # a rejected option: name the keys, never a value
            raise ValueError(
                f"obstore cannot build a {url.scheme}:// client from the storage options given "
                f"(keys: {sorted(storage_options)}): {type(exc).__name__}; the bale "
                "repository's docs/REMOTE.md has the option names"
            ) from None
        self._writer: Any = None

    def _open(self) -> Any:
        remote_obstore._RUNTIME_PID[0] = os.getpid()  # forked children must not use obstore
        if self._writer is None:
            self._writer = self._obstore.open_writer(
                self._store,
                self._key,
                buffer_size=self._options.part_bytes,
                max_concurrency=self._options.parts_in_flight,
            )
        return self._writer

    def exists(self) -> bool:
        remote_obstore._RUNTIME_PID[0] = os.getpid()
        try:
            self._obstore.head(self._store, self._key)
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise _obstore_error(
                exc, "checking for an existing object (HEAD)", self._display
            ) from None
        return True

    def delete(self) -> None:
        remote_obstore._RUNTIME_PID[0] = os.getpid()
        try:
            self._obstore.delete(self._store, self._key)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise _obstore_error(exc, "deleting the object", self._display) from None

    def put_part(self, part: bytearray) -> None:
        try:
            self._open().write(part)
        except Exception as exc:
            raise _obstore_error(exc, "uploading a part", self._display) from None

    def complete(self, last: memoryview) -> None:
        writer = self._open()
        try:
            if len(last):
                writer.write(last)
            self._writer = None  # closed (or failed) for good either way
            writer.close()
        except Exception as exc:
            raise _obstore_error(exc, "completing the upload", self._display) from None

    def abort(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:  # its context exit with an exception aborts (no other API)
            writer.__exit__(BaleWriteError, BaleWriteError("aborted"), None)


class _S3Upload(_Upload):
    """S3's multipart API called through s3fs's client (a process where obstore cannot run):
    create, upload parts (``parts_in_flight`` threads), complete or abort. Each request runs
    under the attempt's time limit and bale's bounded retries; an object under one part is one
    PUT at commit."""

    name = "fsspec"

    def __init__(
        self, url: RemoteURL, storage_options: dict[str, Any], options: UploadOptions
    ) -> None:
        fsspec: Any = import_client("fsspec", url.scheme)
        import_client("s3fs", url.scheme)
        self._sync: Any = importlib.import_module("fsspec.asyn").sync
        self._display = url.display
        self._options = options
        remote = options.remote
        self._timeout = remote.request_timeout_s + remote.connect_timeout_s
        kwargs = remote_fsspec._with_time_limits(url.scheme, dict(storage_options), remote)
        key = ("fsspec", url.scheme, options_key(storage_options), remote)  # the readers' too

        def make() -> tuple[Any, str]:
            fs, path = fsspec.core.url_to_fs(url.url, skip_instance_cache=True, **kwargs)
            if isinstance(getattr(fs, "retries", None), int):
                fs.retries = 1  # s3fs's own retry loop: one attempt (bale's loop retries)
            return fs, path

        try:
            self._fs, _ = shared_connection(key, make)
        except Exception as exc:
            raise ValueError(
                f"fsspec cannot build an {url.scheme}:// filesystem from the storage options "
                f"given (keys: {sorted(storage_options)}): {type(exc).__name__}"
            ) from None
        self._bucket, self._key, _ = self._fs.split_path(self._fs._strip_protocol(url.url))
        self._upload_id: str | None = None
        self._etags: dict[int, str] = {}
        self._parts = 0
        self._pending: deque[Future[None]] = deque()
        self._pool: ThreadPoolExecutor | None = None

    def exists(self) -> bool:
        try:
            self._call("checking for an existing object (HEAD)", "head_object")
        except _Missing:
            return False
        return True

    def delete(self) -> None:
        self._call("deleting the object", "delete_object")

    def put_part(self, part: bytearray) -> None:
        if self._upload_id is None:
            started = self._call("starting the upload", "create_multipart_upload")
            self._upload_id = str(started["UploadId"])
        if self._pool is None:
            # Imported here: concurrent.futures pulls in logging, a cost `import bale` need not pay.
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(
                self._options.parts_in_flight, thread_name_prefix="bale-upload"
            )
        while len(self._pending) >= self._options.parts_in_flight:
            self._wait(self._pending.popleft())
        self._parts += 1
        number = self._parts
        self._pending.append(self._pool.submit(self._send_part, number, bytes(part)))

    def _send_part(self, number: int, data: bytes) -> None:
        answer = self._call(
            f"uploading part {number}",
            "upload_part",
            UploadId=self._upload_id,
            PartNumber=number,
            Body=data,
        )
        self._etags[number] = str(answer["ETag"])

    def _wait(self, future: Future[None]) -> None:
        # each part's requests are bounded by the retry loop; this bound is only a backstop
        future.result(timeout=self._options.remote.attempt_bound_s + self._timeout)

    def complete(self, last: memoryview) -> None:
        if self._upload_id is None:
            self._call("uploading the object (PUT)", "put_object", Body=bytes(last))
            return
        if len(last):
            self.put_part(bytearray(last))
        while self._pending:
            self._wait(self._pending.popleft())
        parts = [{"PartNumber": n, "ETag": self._etags[n]} for n in sorted(self._etags)]
        self._call(
            "completing the upload",
            "complete_multipart_upload",
            UploadId=self._upload_id,
            MultipartUpload={"Parts": parts},
        )
        self._upload_id = None
        self._shutdown()

    def abort(self) -> None:
        for future in self._pending:
            future.cancel()
        upload_id, self._upload_id = self._upload_id, None
        self._shutdown()
        if upload_id is not None:
            self._call("aborting the upload", "abort_multipart_upload", UploadId=upload_id)

    def _shutdown(self) -> None:
        pending, self._pending = list(self._pending), deque()
        for future in pending:
            with contextlib.suppress(Exception):
                self._wait(future)
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def _call(self, what: str, method: str, **request: Any) -> Any:
        """One S3 request under the attempt's time limit, retried with backoff."""
        request.update(Bucket=self._bucket, Key=self._key)

        async def attempt() -> Any:
            return await self._fs._call_s3(method, **request)

        def once() -> Any:
            try:
                return self._sync(self._fs.loop, attempt, timeout=self._timeout)
            except Exception as exc:
                raise _sort_s3(
                    exc, what, self._display, missing_ok=method == "head_object"
                ) from None

        try:
            return with_retries(once, self._options.remote, what, self._display)
        except RemoteReadError as exc:  # the retries ran out
            raise upload_error(exc.detail, self._display) from None


class _Missing(Exception):
    """HEAD found no object (not an error when checking before writing)."""


def _sort_s3(exc: Exception, what: str, display: str, *, missing_ok: bool) -> Exception:
    """An s3fs / botocore failure as Transient (retried) or a bale error; never their messages."""
    if isinstance(exc, BaleError):
        return exc
    status = remote_fsspec._boto_status(exc)
    if status is None and isinstance(exc, FileNotFoundError):
        status = 404
    if status is None and isinstance(exc, PermissionError):
        status = 403
    if status == 404 and missing_ok:
        return _Missing()
    if status is not None and (status in (408, 429) or status >= 500):
        return Transient(f"HTTP {status}")
    if status is not None:
        return _status_error(status, what, display)
    if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__:
        return Transient("timed out")
    if isinstance(exc, OSError) or remote_fsspec._from_http_library(exc):
        return Transient(f"the connection failed ({type(exc).__name__})")
    return upload_error(f"{what} failed: {type(exc).__name__}", display)


def _obstore_error(exc: Exception, what: str, display: str) -> BaleError:
    """obstore's failure (its own retries spent) as a bale error; never its message (it holds
    the request URL and the configuration)."""
    errors: Any = importlib.import_module("obstore.exceptions")
    status = remote_obstore._status(exc)
    if status is None and isinstance(exc, FileNotFoundError):
        status = 404
    if status is None and isinstance(
        exc, (errors.PermissionDeniedError, errors.UnauthenticatedError)
    ):
        status = 403
    if status is not None:
        return _status_error(status, what, display)
    return upload_error(f"{what} failed: {remote_obstore._reason(exc, None)}", display)


def _status_error(status: int, what: str, display: str) -> BaleError:
    if status == 404:
        return upload_error(f"{what} failed: no such bucket (HTTP 404)", display, errno.ENOENT)
    if status in (401, 403):
        return AccessDeniedError(
            f"the store refused access ({what}): check the credentials and the bucket's "
            "permissions",
            path=display,
        )
    return upload_error(f"{what} was refused: HTTP {status}", display)


def upload_error(detail: str, display: str, code: int = errno.EIO) -> BaleWriteError:
    """A failed upload as a BaleWriteError with the errno that fits it (EIO by default)."""
    return BaleWriteError(detail, path=display, errno=code, strerror=os.strerror(code))


def _as_write_error(exc: Exception, display: str) -> BaleWriteError:
    """A failure while writing as the BaleWriteError the Writer stops on (access refused keeps
    its words, with errno EACCES)."""
    if isinstance(exc, BaleError):
        code = errno.EACCES if isinstance(exc, PermissionError) else errno.EIO
        return upload_error(exc.detail, display, code)
    return upload_error(f"the upload failed: {type(exc).__name__}", display)
