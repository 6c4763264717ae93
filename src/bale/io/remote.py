"""Reading byte ranges of a remote object (S3, GCS, Azure, HTTP, any fsspec URL) with the
interface of LocalSource: a kept tail and head, read-ahead, a disk cache, retries, picklable and
fork-safe; and the default options of sources opened without options (``bale.open``)."""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bale.errors import RemoteReadError, TruncatedFileError
from bale.io import remote_fsspec, remote_obstore
from bale.io.diskcache import DiskCache, environment_settings, range_key
from bale.io.readahead import ReadAhead
from bale.io.remote_client import (
    RangeClient,
    RemoteOptions,
    Tail,
    Transient,
    import_client,
    packages_for,
    process_lock,
    with_retries,
)
from bale.io.remote_url import RemoteURL, is_remote, parse_url, redact_url

__all__ = [
    "RemoteOptions",
    "RemoteSource",
    "default_options",
    "is_remote",
    "redact_url",
    "set_default_options",
]

log = logging.getLogger(__name__)

# What set_default_options was last given: applied over the environment's cache settings.
_DEFAULT_CHANGES: dict[str, Any] = {}


def set_default_options(**changes: Any) -> None:
    """Set the options of the remote sources this process opens without ``options=`` (those of
    ``bale.open``, ``bale.Dataset``, ``bale.Loader``): ``RemoteOptions`` fields, which win over
    the environment (``BALE_CACHE_DIR``, ``BALE_CACHE_BYTES``). Called with nothing: back to
    the built-in defaults and the environment. Checked at once (an unknown field or a bad value
    is a TypeError or ValueError). Forked workers inherit the setting; workers started by
    ``spawn`` or ``forkserver`` reopen files with their own defaults (set the environment
    variables for them).

    >>> set_default_options(cache_dir="/nvme/bale-cache", cache_bytes=200 << 30)  # doctest: +SKIP
    """
    RemoteOptions(**changes)
    global _DEFAULT_CHANGES
    _DEFAULT_CHANGES = dict(changes)


def default_options() -> RemoteOptions:
    """The options of a source opened without ``options=``: the built-in defaults, then
    ``BALE_CACHE_DIR`` / ``BALE_CACHE_BYTES`` from the environment (read now), then what
    ``set_default_options`` was given."""
    return RemoteOptions(**{**environment_settings(), **_DEFAULT_CHANGES})


@dataclass
class _ProcessState:
    """What a source holds for one process: its client (sessions, connections, an event loop or
    runtime), its read-ahead threads, and the lock guarding them."""

    pid: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    client: RangeClient | None = None
    read_ahead: ReadAhead | None = None


class RemoteSource:
    """A remote object read only by byte ranges, with the methods of LocalSource but fileno.

    Opening costs one request: a suffix-range GET of the last ``options.tail_bytes`` (64 KiB)
    whose answer carries the object's size and ETag (protocols other than S3, GCS, Azure and
    HTTP go through fsspec's generic path, which asks for the size first: two requests).
    That tail is kept, so reading a bale file's trailer and a footer up to 64 KiB costs nothing
    more; the first read inside the first ``options.head_bytes`` fetches and keeps them (the
    header and schema). ``requests`` counts the requests made (retries inside the obstore
    client not included), ``bytes_fetched`` the bytes received.

    ``will_need`` starts fetching a range in the background into a bounded in-memory read-ahead
    (``options.read_ahead_bytes``), which later reads of that range are served from.

    With ``options.cache_dir``, every range fetched (the head included, not the tail: opening
    must ask the store for the version anyway) is also kept in a disk cache shared by the
    node's processes (``bale.io.diskcache.DiskCache``, at most ``options.cache_bytes``), keyed
    by the URL, the ETag seen at open, the size and the range, and looked up before fetching;
    a cache that fails or is full only means reading from the store. Without ``options``, the
    source takes ``default_options()`` (the environment's ``BALE_CACHE_DIR``).

    Threads share one client. A forked child makes its own client on first use and never
    touches its parent's (obstore's runtime does not survive fork: a child forked after the
    parent used obstore reads through fsspec); a pickled source carries the URL, the storage
    options, the options, and the size and ETag seen at open (no request to reopen it).

    Errors name the URL without credentials; ``storage_options`` are never shown.

    >>> source = RemoteSource("s3://bucket/train.bale", {"anon": True})  # doctest: +SKIP
    >>> trailer = source.read(source.size() - 40, 40)  # doctest: +SKIP
    """

    _state: _ProcessState
    _tail: bytes
    _head: bytes | None
    _counter_lock: threading.Lock
    _requests: int
    _bytes_fetched: int

    def __init__(
        self,
        url: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        options: RemoteOptions | None = None,
    ) -> None:
        self._url: RemoteURL = parse_url(url)
        self._storage_options = dict(storage_options or {})
        self.options = options or default_options()
        self._disk = _disk_cache(self.options)
        self._size: int | None = None
        self._etag: str | None = None
        self._start_state()
        self._open()  # fail early: a missing object or refused credentials raise here

    # -- public ---------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The URL as shown in messages: no password, no query values."""
        return self._url.display

    @property
    def requests(self) -> int:
        """Requests this source made in this process (retries within obstore not counted)."""
        return self._requests

    @property
    def bytes_fetched(self) -> int:
        """Body bytes received in this process (the opening tail and head included)."""
        return self._bytes_fetched

    @property
    def disk_cache(self) -> DiskCache | None:
        """The disk cache this source keeps ranges in (``options.cache_dir``), or None."""
        return self._disk

    @property
    def backend(self) -> str:
        """The client this process reads through: "obstore" or "fsspec"."""
        return self._client().name

    def size(self) -> int:
        size = self._size
        return size if size is not None else self._open()

    def read(self, offset: int, size: int) -> bytes | bytearray:
        """Exactly ``size`` bytes at ``offset``, or TruncatedFileError if the object is shorter
        (other failures: ObjectNotFoundError, AccessDeniedError, RemoteReadError)."""
        if offset < 0 or size < 0:
            raise ValueError(f"cannot read {size} bytes at offset {offset}")
        stop = offset + size
        total = self.size()
        if stop > total:
            raise TruncatedFileError(
                f"expected {size} bytes at offset {offset}, the object ends after "
                f"{max(0, total - offset)}",
                path=self.path,
            )
        if size == 0:
            return b""
        tail_start = total - len(self._tail)
        if offset >= tail_start:
            return self._tail[offset - tail_start : stop - tail_start]
        head = self._head
        if head is None and stop <= min(self.options.head_bytes, tail_start):
            head = self._load_head(tail_start)
        if head is not None and stop <= len(head):
            return head[offset:stop]
        if stop > tail_start:  # the part in the kept tail costs nothing
            return self.read(offset, tail_start - offset) + self._tail[: stop - tail_start]
        read_ahead = self._state_here().read_ahead
        if read_ahead is not None:
            data = read_ahead.take(offset, stop, self.options.attempt_bound_s)
            if data is not None:
                return data
        return self._fetch_cached(offset, stop)

    def will_need(self, offset: int, size: int) -> None:
        """Start fetching ``[offset, offset + size)`` in the background, into the read-ahead
        (bounded by ``options.read_ahead_bytes``; a hint that does not fit is dropped, never
        waited on). Ranges in the kept tail or head need nothing."""
        if size <= 0 or self.options.read_ahead_bytes <= 0:
            return
        total = self.size()
        stop = min(offset + size, total)
        head = self._head
        if offset >= total - len(self._tail) or (head is not None and stop <= len(head)):
            return
        state = self._state_here()
        if state.read_ahead is None:
            with state.lock:
                if state.read_ahead is None:
                    state.read_ahead = ReadAhead(
                        self._fetch_cached,
                        self.options.read_ahead_bytes,
                        self.options.read_ahead_requests,
                    )
        # A range in the disk cache is read here and now (a page-cache copy: far cheaper than
        # a hop through the read-ahead's threads); anything else is fetched in the background.
        cached = self._cached(offset, stop)
        if cached is None or not state.read_ahead.hold(offset, stop, cached):
            state.read_ahead.start(offset, stop)

    def evict_from_page_cache(self) -> None:
        """Drop what this source holds in memory beyond the opening tail (the head, the
        read-ahead), so the next reads go to the store (or to the disk cache, which stays):
        cold-read measurements."""
        self._head = None
        state = self._state_here()
        if state.read_ahead is not None:
            state.read_ahead.clear()

    def close(self) -> None:
        """Release this process's client and read-ahead threads; a later read makes new ones."""
        state = self._state_here()
        with state.lock:
            if state.read_ahead is not None:
                state.read_ahead.close()
                state.read_ahead = None
            if state.client is not None:
                state.client.close()
                state.client = None

    def __enter__(self) -> RemoteSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteSource({self.path!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {
            "url": self._url.url,
            "storage_options": self._storage_options,
            "options": self.options,
            "size": self._size,
            "etag": self._etag,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._url = parse_url(state["url"])
        self._storage_options = dict(state["storage_options"])
        self.options = state["options"]
        self._disk = _disk_cache(self.options)
        self._size = state["size"]
        self._etag = state["etag"]
        self._start_state()
        if self._size is not None:
            self._tail = b""  # reads go to the store, pinned to the version opened

    # -- per process ----------------------------------------------------------------------------

    def _start_state(self) -> None:
        self._state = _ProcessState(os.getpid())
        self._tail = b""
        self._head = None
        self._counter_lock = threading.Lock()
        self._requests = 0
        self._bytes_fetched = 0

    def _state_here(self) -> _ProcessState:
        state = self._state
        pid = os.getpid()
        if state.pid == pid:
            return state
        with process_lock():
            state = self._state
            if state.pid != pid:
                if state.client is not None:
                    state.client.abandon()  # the parent's: its sockets are the parent's too
                self._state = state = _ProcessState(pid)
                self._counter_lock = threading.Lock()
                self._requests = self._bytes_fetched = 0
            return state

    def _client(self) -> RangeClient:
        state = self._state_here()
        client = state.client
        if client is not None:
            return client
        with state.lock:
            if state.client is None:
                state.client = self._make_client()
            return state.client

    def _make_client(self) -> RangeClient:
        url, backend = self._url, self.options.backend
        if backend != "fsspec" and remote_obstore.serves(url):
            if remote_obstore.usable_in_this_process():
                return remote_obstore.ObstoreClient(url, self._storage_options, self.options)
            if backend == "obstore" or not _fsspec_installed():
                raise RemoteReadError(
                    "obstore cannot read in a process forked after it made a request (its "
                    "runtime's threads do not survive fork): start workers with 'spawn' or "
                    "'forkserver', or install fsspec's client: pip install "
                    f"{packages_for(url.scheme, 'fsspec')}",
                    path=self.path,
                )
        elif backend == "obstore":
            import_client("obstore", url.scheme)
            raise ValueError(
                f"the obstore client does not read {self.path!r} (a URL with its own query or "
                "credentials, or another protocol): use backend 'auto' or 'fsspec'"
            )
        return remote_fsspec.FsspecClient(url, self._storage_options, self.options)

    # -- requests -------------------------------------------------------------------------------

    def _open(self) -> int:
        """Request 1: the tail, and with it the size and ETag; returns the size. Where the
        client can (obstore) and there is no disk cache, request 2, the head, is sent at the
        same time: opening a bale file then takes one round trip instead of two."""
        client = self._client()
        # With a disk cache, the head is looked up there once the ETag is known (a hit costs no
        # request); without one, it is fetched beside the tail.
        beside = self.options.head_bytes > 0 and self._disk is None
        head = _HeadBeside(client, self.options.head_bytes) if beside else None
        tail: Tail = with_retries(
            lambda: self._checked_tail(client), self.options, "opening", self.path
        )
        self._etag = tail.etag  # sent as If-Match only with options.pin_version
        self._tail = tail.data
        self._size = tail.size
        if head is not None:
            self._keep_head(head, tail)
        return tail.size

    def _keep_head(self, head: _HeadBeside, tail: Tail) -> None:
        """Keep the head fetched beside the tail if it arrived within the attempt bound, whole,
        and from the same version of the object (else the first read of the head fetches it
        again, pinned)."""
        answer = head.result(self.options.attempt_bound_s)
        if head.sent:
            self._count(1, len(answer[0]) if answer is not None else 0)
        tail_start = tail.size - len(tail.data)
        if answer is None or tail_start <= 0:
            return
        data, etag = answer
        wanted = min(self.options.head_bytes, tail_start)
        if etag == tail.etag and len(data) >= wanted:
            self._head = data[:wanted]

    def _checked_tail(self, client: RangeClient) -> Tail:
        tail = client.tail(self.options.tail_bytes)
        self._count(tail.requests, len(tail.data))
        if len(tail.data) != min(tail.size, self.options.tail_bytes):
            raise Transient(
                f"the tail read returned {len(tail.data)} bytes of an object of {tail.size}"
            )
        return tail

    def _load_head(self, tail_start: int) -> bytes:
        state = self._state_here()
        with state.lock:
            head = self._head
            if head is None:
                head = bytes(self._fetch_cached(0, min(self.options.head_bytes, tail_start)))
                self._head = head
        return head

    def _fetch_cached(self, start: int, stop: int) -> bytes | bytearray:
        """Bytes ``[start, stop)`` from the disk cache, else from the store (then kept there).
        An object without a known version (no strong ETag) is never cached: a replaced object
        must never be answered with the old one's bytes."""
        data = self._cached(start, stop)
        if data is not None:
            return data
        data = self._fetch(start, stop)
        if self._disk is not None and self._etag is not None:
            key = range_key(self._url.url, self._etag, self.size(), start, stop - start)
            self._disk.put(key, data)
        return data

    def _cached(self, start: int, stop: int) -> bytes | bytearray | None:
        """Bytes ``[start, stop)`` from the disk cache, or None."""
        cache, etag = self._disk, self._etag
        if cache is None or etag is None:
            return None
        key = range_key(self._url.url, etag, self.size(), start, stop - start)
        data = cache.get(key, stop - start)
        return data if data is not None and len(data) == stop - start else None

    def _fetch(self, start: int, stop: int) -> bytes:
        """Bytes ``[start, stop)`` from the store, retried, checked for length."""
        client = self._client()
        pinned = self._etag if self.options.pin_version else None

        def attempt() -> bytes:
            data = client.get(start, stop, pinned)
            self._count(1, len(data))
            if len(data) == stop - start:
                return data
            if len(data) > stop - start:
                raise RemoteReadError(
                    f"asked for bytes {start}..{stop - 1}, the server sent {len(data)} bytes: "
                    "it does not answer byte-range requests",
                    path=self.path,
                )
            raise Transient(f"asked for {stop - start} bytes, {len(data)} arrived")

        return with_retries(attempt, self.options, f"reading bytes {start}..{stop - 1}", self.path)

    def _count(self, requests: int, received: int) -> None:
        with self._counter_lock:
            self._requests += requests
            self._bytes_fetched += received


class _HeadBeside:
    """The head of an object fetched in a thread of its own while the tail is fetched."""

    def __init__(self, client: RangeClient, n: int) -> None:
        self.sent = False
        self._answer: tuple[bytes, str | None] | None = None
        self._client = client
        self._n = n
        if type(client).head is RangeClient.head:
            self._thread: threading.Thread | None = None
            return
        self.sent = True
        self._thread = threading.Thread(target=self._fetch, name="bale-open-head", daemon=True)
        self._thread.start()

    def _fetch(self) -> None:
        try:
            self._answer = self._client.head(self._n)
        except Exception:  # any failure: the head is fetched later, with retries
            self._answer = None

    def result(self, timeout: float) -> tuple[bytes, str | None] | None:
        if self._thread is None:
            return None
        self._thread.join(timeout)
        return None if self._thread.is_alive() else self._answer


def _disk_cache(options: RemoteOptions) -> DiskCache | None:
    if options.cache_dir is None or options.cache_bytes == 0:
        return None
    return DiskCache(options.cache_dir, options.cache_bytes)


def _fsspec_installed() -> bool:
    return importlib.util.find_spec("fsspec") is not None
