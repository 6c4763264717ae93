"""What a remote source asks of an object-store client (the opening tail read, ranged GETs), the
options that bound every wait, and the retry loop with exponential backoff."""

from __future__ import annotations

import importlib
import os
import random
import threading
import time
import types
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal, TypeVar

from bale.errors import RemoteReadError
from bale.io.remote_url import AZURE_SCHEMES, GCS_SCHEMES, HTTP_SCHEMES, S3_SCHEMES

T = TypeVar("T")
KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

Backend = Literal["auto", "obstore", "fsspec"]


@dataclass(frozen=True)
class RemoteOptions:
    """How a remote source reads: the opening reads, the time limits, the retries, the
    read-ahead, the local disk cache. Every wait is bounded: an attempt by ``connect_timeout_s`` (connecting),
    ``read_timeout_s`` (no byte arriving) and ``request_timeout_s`` (the whole attempt); retries
    stop after ``max_retries`` or once ``retry_timeout_s`` has passed since the first attempt.

    >>> RemoteOptions(max_retries=3, retry_timeout_s=10.0).tail_bytes
    65536
    """

    #: bytes read from the end of the object when it is opened (its size comes with them), kept
    #: so that reads of the trailer and a footer up to this size cost no request
    tail_bytes: int = 64 * KiB
    #: bytes read from the start on the first read that falls inside them (a bale header and its
    #: schema), kept for the reads that follow
    head_bytes: int = 64 * KiB
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    request_timeout_s: float = 120.0
    max_retries: int = 10
    retry_timeout_s: float = 60.0
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 5.0
    #: bytes of ``will_need`` ranges held in memory ahead of their reads, queued, in flight or
    #: fetched and not read yet (0: no read-ahead); the Loader asks for up to half of it
    read_ahead_bytes: int = 128 * MiB
    #: ranges of one source fetched ahead at once (the process's read-ahead pool has as many
    #: threads as the largest value asked for): at 20 ms a request, 32 requests of 1 MiB row
    #: groups in flight carry about 1.6 GB/s
    read_ahead_requests: int = 32
    #: send the ETag seen at open as If-Match on every read, so a replaced object is reported
    #: instead of mixing two versions' bytes (S3, GCS, Azure and HTTP with a strong ETag; the
    #: fsspec client pins only on HTTP and S3)
    pin_version: bool = True
    #: which client: "auto" picks obstore where it can serve the URL in this process, else fsspec
    backend: Backend = "auto"
    #: a directory on local disk keeping the ranges fetched, shared by every process of the node
    #: (``bale.io.diskcache.DiskCache``); None: no disk cache. Entries are keyed by the URL, the
    #: object's ETag, its size and the range: an object without a strong ETag is not cached
    cache_dir: str | None = None
    #: the most bytes of files the disk cache holds (0: store nothing); the least recently used
    #: entries are evicted first
    cache_bytes: int = 16 * GiB

    def __post_init__(self) -> None:
        if self.cache_dir is not None:  # a Path given is kept as a str (options are compared)
            object.__setattr__(self, "cache_dir", os.fspath(self.cache_dir))
        for name in ("tail_bytes", "head_bytes", "read_ahead_bytes", "max_retries", "cache_bytes"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"RemoteOptions.{name} must be >= 0, not {getattr(self, name)}")
        if self.tail_bytes < 64:
            raise ValueError("RemoteOptions.tail_bytes must be at least 64 (a trailer is 40)")
        for name in ("connect_timeout_s", "read_timeout_s", "request_timeout_s"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"RemoteOptions.{name} must be > 0, not {getattr(self, name)}")
        if self.retry_timeout_s < 0 or self.backoff_initial_s < 0 or self.backoff_max_s < 0:
            raise ValueError("RemoteOptions: retry and backoff times must be >= 0")
        if self.read_ahead_requests < 1:
            raise ValueError("RemoteOptions.read_ahead_requests must be >= 1")
        if self.backend not in ("auto", "obstore", "fsspec"):
            raise ValueError(
                f"RemoteOptions.backend: 'auto', 'obstore' or 'fsspec', not {self.backend!r}"
            )

    @property
    def attempt_bound_s(self) -> float:
        """The longest one read can take, all retries included."""
        return self.retry_timeout_s + self.request_timeout_s + self.backoff_max_s


@dataclass(frozen=True)
class Tail:
    """What opening learned: the object's size, its ETag (None without a strong one), its last
    ``min(size, n)`` bytes, and how many requests that took."""

    size: int
    etag: str | None
    data: bytes
    requests: int


class Transient(Exception):
    """A failure worth retrying (a timeout, a 5xx, throttling, a dropped connection, a short
    body); ``reason`` says which in words that carry no credentials."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RangeClient(ABC):
    """One object on one store, read by byte ranges. Raises bale errors naming ``display``
    (never the raw URL) or Transient; never returns bytes other than those asked for."""

    name: str

    @abstractmethod
    def tail(self, n: int) -> Tail:
        """The object's size and last ``n`` bytes, in as few requests as the client can."""

    @abstractmethod
    def get(self, start: int, stop: int, etag: str | None) -> bytes:
        """Bytes ``[start, stop)`` (``0 <= start < stop <= size``), of the version ``etag``
        where the client can pin one."""

    def head(self, n: int) -> tuple[bytes, str | None] | None:
        """The object's first ``n`` bytes (fewer if it is shorter) and the ETag of the version
        they came from (None without a strong one), in one request sent beside ``tail`` at
        open; None where the client does not do that (the first read of the head fetches it
        then). May raise anything: the caller then fetches the head later."""
        return None

    def close(self) -> None:  # noqa: B027 (most clients hold nothing to close)
        """Release connections (this process's own client only)."""

    def abandon(self) -> None:
        """Called in a forked child on the parent's client: keep it alive and unfinalized for
        the life of this process. Closing or freeing it here would touch the parent's
        connections through the descriptors (and the epoll set) a fork shares."""
        keep_forever(self)


# Per-process state. A lock held by a parent's thread at fork stays held in the child forever,
# so each process gets its own lock (dict.setdefault is atomic under the GIL).
_PROCESS_LOCKS: dict[int, threading.Lock] = {}
# Connections shared by the sources of one process: pid -> key -> store or filesystem. Building
# one costs 10-200 ms (TLS roots, botocore's service models), so every source on one bucket
# with the same options uses one, as do its threads.
_SHARED: dict[int, dict[Hashable, Any]] = {}


def process_lock() -> threading.Lock:
    """A lock of this process's own, never one inherited through fork."""
    return _PROCESS_LOCKS.setdefault(os.getpid(), threading.Lock())


def shared_connection(key: Hashable, make: Callable[[], Any]) -> Any:
    """This process's connection object for ``key``, made by ``make()`` on first use. In a
    forked child, the parent's are kept alive but never used (see ``keep_forever``)."""
    pid = os.getpid()
    with process_lock():
        table = _SHARED.get(pid)
        if table is None:
            _abandon_inherited()
            table = _SHARED[pid] = {}
            if not _AT_FORK[0]:
                # Any child, even one that never reads, must set its parent's connections
                # aside before it can free them (a child that exits normally finalizes all).
                # Registered on first use, never on import; children inherit the handler.
                os.register_at_fork(after_in_child=_abandon_inherited)
                _AT_FORK[0] = True
        connection = table.get(key)
        if connection is None:
            connection = table[key] = make()
        return connection


_AT_FORK = [False]


def close_shared_connections() -> None:
    """Close this process's shared connections (obstore clients, fsspec sessions) now rather
    than at exit, for a process done with remote data (and for tests). Sources opened later
    make new ones; sources opened before must not be used again (fsspec's are closed)."""
    with process_lock():
        table = _SHARED.pop(os.getpid(), {})
    for connection in table.values():
        fs = connection[0] if isinstance(connection, tuple) else None
        # fsspec closes a filesystem's session in a weakref finalizer: run it now
        registry = getattr(weakref.finalize, "_registry", {})
        for finalizer in list(registry):
            info = finalizer.peek()
            if fs is not None and info is not None and info[0] is fs:
                finalizer()


def _abandon_inherited() -> None:
    """In a forked child: the parent's connections, kept alive and never finalized here."""
    pid = os.getpid()
    try:
        for parent in [p for p in _SHARED if p != pid]:
            for connection in _SHARED.pop(parent).values():
                keep_forever(connection)
    except Exception:  # pragma: no cover (an at-fork handler must never raise)
        pass


def options_key(storage_options: Mapping[str, Any]) -> str:
    """A hashable stand-in for storage options, for ``shared_connection`` keys only (it holds
    their values: never show it)."""
    return repr(sorted(storage_options.items(), key=lambda item: item[0]))


def keep_forever(obj: object) -> None:
    """Never free ``obj`` nor run its weakref finalizers in this process. A forked child holds
    copies of its parent's sessions; their finalizers (aiohttp, fsspec) would close connections
    and deregister them from an epoll set the parent still uses, stalling the parent's reads."""
    import ctypes
    import gc

    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
    reachable = {id(o) for o in _reachable(obj, gc)}
    registry = getattr(weakref.finalize, "_registry", {})  # CPython's table of finalizers
    for finalizer in list(registry):
        info = finalizer.peek()
        if info is not None and id(info[0]) in reachable:
            finalizer.detach()


_NOT_STATE = (str, bytes, int, float, type, types.FunctionType, types.ModuleType, types.CodeType)


def _reachable(obj: object, gc: ModuleType, limit: int = 2000) -> list[object]:
    """``obj`` and the objects it holds, a bounded breadth-first walk (a session sits a few
    levels down: client -> filesystem -> session) that stays out of functions and modules, so
    it never reaches unrelated objects through a module's globals."""
    seen = {id(obj)}
    found, queue = [obj], [obj]
    while queue and len(found) < limit:
        for ref in gc.get_referents(queue.pop(0)):
            if id(ref) not in seen and not isinstance(ref, _NOT_STATE):
                seen.add(id(ref))
                found.append(ref)
                queue.append(ref)
    return found


def with_retries(
    call: Callable[[], T],
    options: RemoteOptions,
    what: str,
    display: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call()``, retried on Transient with exponential backoff and jitter until it succeeds,
    ``options.max_retries`` retries are spent, or the next attempt would start later than
    ``options.retry_timeout_s`` after the first; then RemoteReadError naming ``display``."""
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            return call()
        except Transient as exc:
            reason = exc.reason
        elapsed = time.monotonic() - started
        delay = min(options.backoff_max_s, options.backoff_initial_s * 2**attempt)
        delay = random.uniform(delay / 2, delay)
        if attempt >= options.max_retries or elapsed + delay > options.retry_timeout_s:
            raise RemoteReadError(
                f"{what} failed after {attempt + 1} attempts in {elapsed:.1f} s: {reason}",
                path=display,
            ) from None
        attempt += 1
        sleep(delay)


#: The filesystem package fsspec needs for each scheme (HTTP: fsspec's own, on aiohttp).
_FSSPEC_FILESYSTEMS: tuple[tuple[frozenset[str], str], ...] = (
    (S3_SCHEMES, "s3fs"),
    (GCS_SCHEMES, "gcsfs"),
    (AZURE_SCHEMES, "adlfs"),
    (HTTP_SCHEMES, "aiohttp"),
)


def packages_for(scheme: str, client: Literal["obstore", "fsspec"] | None = None) -> str:
    """What to ``pip install`` (bale itself is not on PyPI: no extra of bale) for URLs of
    ``scheme``: obstore's client, fsspec's (fsspec and the scheme's filesystem package), or
    both where ``client`` is None: the packages of pyproject.toml's s3, gcs, azure and http extras.

    >>> packages_for("s3"), packages_for("gs", "fsspec"), packages_for("hdfs")
    ('obstore fsspec s3fs', 'fsspec gcsfs', 'fsspec')
    """
    if client == "obstore":
        return "obstore"
    filesystem = next((name for schemes, name in _FSSPEC_FILESYSTEMS if scheme in schemes), None)
    if filesystem is None:  # obstore does not read it; fsspec names the package it lacks
        return "fsspec"
    fsspec = f"fsspec {filesystem}"
    return fsspec if client == "fsspec" else f"obstore {fsspec}"


def import_client(module: str, scheme: str) -> ModuleType:
    """A client library, imported on first use (``import bale`` imports none), or ImportError
    with the install hint."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"reading {scheme}:// URLs needs {module.split('.')[0]!r}, which is not installed: "
            f"pip install {packages_for(scheme, 'obstore' if module == 'obstore' else 'fsspec')}"
        ) from exc
