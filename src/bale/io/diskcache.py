"""A bounded LRU cache of byte ranges on local disk, shared by every process and thread of a
node, that never blocks and never fails a read: how a remote source keeps what it fetched."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import struct
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from bale.format.header import checksum

try:
    import fcntl
except ImportError:  # pragma: no cover (not POSIX: the cache stores nothing)
    fcntl = None  # type: ignore[assignment]

__all__ = ["CACHE_BYTES_ENV", "CACHE_DIR_ENV", "DiskCache", "parse_bytes", "range_key"]

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "BALE_CACHE_DIR"
CACHE_BYTES_ENV = "BALE_CACHE_BYTES"

#: An entry: this header, then the payload. The digest is the key's (as in the file name: a file
#: copied or renamed under another key is refused), the checksum is the payload's XXH3-64.
_HEADER = struct.Struct("<8s16sQQ")
_MAGIC = b"BALERNG1"
_ENTRY = ".range"
_TEMP = ".part"  # ".<digest>.<bytes reserved>.<pid>.<random>.part", counted by its reservation
_LOCK = ".bale-cache.lock"  # flock'ed for accounting and eviction; holds the bytes in use
_COUNTER = struct.Struct("<Q")
_LOW_WATER = 0.9  # an eviction makes room for 10% more, so scans stay rare
_STALE_TEMP_S = 600.0  # a temporary file untouched this long belongs to a dead writer
_PAUSE_S = 5.0  # after a failed write, this process stores nothing for a while (a full disk)
# The lock is held for microseconds (a count read and written, a file created) unless an
# eviction scans. Threads of one process queue for it at most _THREAD_WAIT_S; another process
# holding it is tried _LOCK_TRIES times, _LOCK_PAUSE_S apart; then the write is skipped. Writes
# come mostly from the read-ahead's threads: 32 of them queueing behind decoding threads that
# hold the GIL waited past 50 ms and skipped 16 of 189 row groups (fetched again next epoch).
_THREAD_WAIT_S = 0.5
_LOCK_TRIES = 4
_LOCK_PAUSE_S = 0.001
_READ_CHUNK = 1 << 30
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class DiskCache:
    """Byte strings by key in ``directory``, at most ``max_bytes`` of files (headers included),
    the least recently used evicted first. Every process and thread may use one directory at once.

    ``get`` returns the bytes stored for a key, checked against the checksum stored with them,
    or None: a missing, damaged or unreadable entry is a miss (a damaged one is deleted).
    ``put`` stores bytes unless it cannot at once: it never waits for a lock, never raises, and a
    full cache evicts the entries read longest ago. Errors are logged at DEBUG level only.

    How: one file per entry, written under a temporary name and renamed into place (a reader
    sees a whole entry or none); a hit stamps the entry's mtime (the LRU order). A lock file,
    taken with a non-blocking ``flock`` (another process holding it past a few tries, ~3 ms,
    means: store nothing this time), holds the bytes in use; a write reserves its size there
    before writing, and one that would pass ``max_bytes`` first rescans the directory and
    deletes the least recently used entries.
    Nothing is held open between calls: the object pickles, and survives fork and threads.

    >>> cache = DiskCache("/tmp/bale-cache", 16 << 30)  # doctest: +SKIP
    >>> key = range_key(url, etag, object_size, offset=0, length=4096)  # doctest: +SKIP
    >>> cache.put(key, data)  # doctest: +SKIP
    True
    >>> cache.get(key) == data  # doctest: +SKIP
    True
    """

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        if int(max_bytes) < 0:
            raise ValueError(f"DiskCache: max_bytes must be >= 0, not {max_bytes}")
        self.directory = os.path.abspath(os.fspath(directory))  # one lock per directory
        self.max_bytes = int(max_bytes)
        # what this process saw (not exact under threads; for tests and curiosity)
        self.hits = self.misses = self.stored = self.evicted = self.errors = 0
        self._paused_until = 0.0

    def __repr__(self) -> str:
        return f"DiskCache({self.directory!r}, max_bytes={self.max_bytes})"

    # -- public ---------------------------------------------------------------------------------

    def get(self, key: str, size: int | None = None) -> bytes | bytearray | None:
        """The bytes stored for ``key``, or None (missing, damaged, unreadable). Knowing their
        ``size`` saves a system call."""
        if self.max_bytes == 0:
            return None
        digest = _digest(key)
        path = self.entry_path(key)
        try:
            fd = os.open(path, os.O_RDONLY | _CLOEXEC)
        except FileNotFoundError:
            self.misses += 1
            return None
        except Exception as exc:
            self._failed("opening", path, exc)
            return None
        try:
            data = self._read_entry(fd, digest, path, size)
        except Exception as exc:
            self._failed("reading", path, exc)
            data = None
        finally:
            os.close(fd)
        if data is None:
            self.misses += 1
        else:
            self.hits += 1
        return data

    def put(self, key: str, data: bytes | bytearray | memoryview) -> bool:
        """Store ``data`` under ``key``; False where it was not stored (no room, the lock busy,
        an entry already there, a failed write). Never raises."""
        size = _HEADER.size + len(data)
        if size > self.max_bytes or fcntl is None or time.monotonic() < self._paused_until:
            return False
        digest = _digest(key)
        path = self.entry_path(key)
        temp: str | None = None
        try:
            if os.path.exists(path):
                return False  # another process stored it meanwhile
            reserved = self._reserve(digest, size)
            if reserved is None:
                return False
            temp, fd = reserved
            header = _HEADER.pack(_MAGIC, digest, len(data), checksum(data))
            with open(fd, "wb", closefd=True) as file:
                file.write(header)
                file.write(data)
            os.replace(temp, path)
            temp = None
            self.stored += 1
            return True
        except Exception as exc:
            self._paused_until = time.monotonic() + _PAUSE_S
            self._failed("writing", path, exc)
            return False
        finally:
            if temp is not None:
                _unlink(temp)

    def entry_path(self, key: str) -> str:
        """The file that holds (or would hold) ``key``'s entry."""
        return os.path.join(self.directory, _digest(key).hex() + _ENTRY)

    def usage(self) -> int:
        """Bytes of the entries (and of writes under way) in the directory now: a scan."""
        try:
            return sum(size for _, _, size in self._scan())
        except OSError:
            return 0

    def clear(self) -> None:
        """Delete every entry (writes under way finish or fail on their own)."""
        try:
            for name, _, _ in self._scan():
                if name.endswith(_ENTRY):
                    _unlink(os.path.join(self.directory, name))
        except OSError as exc:
            self._failed("clearing", self.directory, exc)

    # -- entries --------------------------------------------------------------------------------

    def _read_entry(
        self, fd: int, digest: bytes, path: str, size: int | None
    ) -> bytes | bytearray | None:
        # Few system calls: each releases the GIL, and taking it back from busy decoding
        # threads can cost a switch interval (5 ms).
        if size is None:
            size = max(0, os.fstat(fd).st_size - _HEADER.size)
        header, payload = _read_parts(fd, size)
        if header is not None and payload is not None:
            magic, stored_digest, length, stored_checksum = _HEADER.unpack_from(header)
            if (
                magic == _MAGIC
                and stored_digest == digest
                and length == size
                and checksum(payload) == stored_checksum
            ):
                _touch(fd, path)
                return payload
        log.debug("bale cache: %s is damaged, deleted (the range is fetched again)", path)
        self.errors += 1
        try:  # only the file read, not one another process renamed there since
            stat = os.fstat(fd)
            now = os.stat(path)
            if (now.st_ino, now.st_dev) == (stat.st_ino, stat.st_dev):
                os.unlink(path)
        except OSError:
            pass
        return None

    def _reserve(self, digest: bytes, size: int) -> tuple[str, int] | None:
        """Under the lock: count ``size`` more bytes in use (evicting first if they would pass
        ``max_bytes``) and create the temporary file that holds the reservation. None if the
        lock is busy or the room cannot be made."""
        os.makedirs(self.directory, exist_ok=True)
        threads = _thread_lock(self.directory)
        if not threads.acquire(timeout=_THREAD_WAIT_S):
            return None
        try:
            return self._reserve_locked(digest, size)
        finally:
            threads.release()

    def _reserve_locked(self, digest: bytes, size: int) -> tuple[str, int] | None:
        if fcntl is None:  # pragma: no cover (put checks)
            return None
        # A descriptor of its own each time: flock excludes other open files, so forked
        # children (which share inherited descriptors) exclude their parent too.
        lock = os.open(
            os.path.join(self.directory, _LOCK), os.O_RDWR | os.O_CREAT | _CLOEXEC, 0o644
        )
        try:
            for attempt in range(_LOCK_TRIES):
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if attempt == _LOCK_TRIES - 1:
                        return None  # another process is evicting: skip, never wait for it
                    time.sleep(_LOCK_PAUSE_S)
            counter = os.pread(lock, _COUNTER.size, 0)
            used = _COUNTER.unpack(counter)[0] if len(counter) == _COUNTER.size else None
            if used is None or used + size > self.max_bytes:
                used = self._evict(size)
                if used + size > self.max_bytes:
                    return None  # the rest is reserved by writes under way
            # counted first: a failure from here on leaves the count too high, never too low
            # (too high only brings the next rescan, which counts afresh)
            os.pwrite(lock, _COUNTER.pack(used + size), 0)
            name = f".{digest.hex()}.{size}.{os.getpid()}.{secrets.token_hex(4)}{_TEMP}"
            temp = os.path.join(self.directory, name)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC, 0o644)
            return temp, fd
        finally:
            os.close(lock)  # releases the flock

    def _evict(self, size: int) -> int:
        """Under the lock: the bytes in use, counted afresh, after deleting the least recently
        used entries until ``size`` more fit below the low-water mark."""
        room = self.max_bytes - size
        low = int(self.max_bytes * _LOW_WATER) - size
        target = low if low >= 0 else room
        entries = []
        used = 0
        for name, stamp, bytes_ in self._scan(remove_stale=True):
            used += bytes_
            if name.endswith(_ENTRY):
                entries.append((stamp, name, bytes_))
        entries.sort()
        for _, name, bytes_ in entries:
            if used <= target:
                break
            if _unlink(os.path.join(self.directory, name)):
                self.evicted += 1
            used -= bytes_
        return used

    def _scan(self, remove_stale: bool = False) -> Iterator[tuple[str, int, int]]:
        """(name, mtime in ns, bytes) of each entry and each write under way (counted by its
        reservation); stale temporary files are deleted when ``remove_stale``."""
        now = time.time_ns()
        with os.scandir(self.directory) as found:
            for item in found:
                name = item.name
                try:
                    if name.endswith(_ENTRY):
                        stat = item.stat(follow_symlinks=False)
                        yield name, stat.st_mtime_ns, stat.st_size
                    elif name.endswith(_TEMP) and name.startswith("."):
                        stat = item.stat(follow_symlinks=False)
                        if now - stat.st_mtime_ns > _STALE_TEMP_S * 1e9:
                            if remove_stale:
                                _unlink(item.path)
                            continue
                        yield name, stat.st_mtime_ns, int(name.split(".")[2])
                except (OSError, ValueError, IndexError):
                    continue  # gone meanwhile, or not one of ours

    def _failed(self, what: str, path: str, exc: BaseException) -> None:
        self.errors += 1
        log.debug("bale cache: %s %s failed (%s): reading from the store", what, path, exc)


# One lock per directory for the threads of a process: a lock held by a parent's thread at fork
# stays held in the child, so each process makes its own (dict.setdefault is atomic).
_THREAD_LOCKS: dict[tuple[int, str], threading.Lock] = {}


def _thread_lock(directory: str) -> threading.Lock:
    return _THREAD_LOCKS.setdefault((os.getpid(), directory), threading.Lock())


def range_key(url: str, version: str, size: int, offset: int, length: int) -> str:
    """The key of bytes ``[offset, offset + length)`` of one version of an object (its ETag and
    size). It holds the URL as given, credentials included: it is only ever hashed."""
    return f"{url}\n{version}\n{size}\n{offset}\n{length}"


def environment_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``cache_dir`` and ``cache_bytes`` from ``BALE_CACHE_DIR`` and ``BALE_CACHE_BYTES``
    (only those set), for ``RemoteOptions``; a size that does not parse is a ValueError."""
    environ = os.environ if environ is None else environ
    settings: dict[str, Any] = {}
    directory = environ.get(CACHE_DIR_ENV, "").strip()
    if directory:
        settings["cache_dir"] = directory
    size = environ.get(CACHE_BYTES_ENV, "").strip()
    if size:
        try:
            settings["cache_bytes"] = parse_bytes(size)
        except ValueError:
            raise ValueError(
                f"{CACHE_BYTES_ENV}={size!r}: a number of bytes, e.g. 50000000000, 50GB or 64GiB"
            ) from None
    return settings


_SIZE = re.compile(r"(\d+(?:\.\d*)?)\s*([kmgt]?)(i?)(b?)", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_bytes(text: str) -> int:
    """A size in bytes: ``"1000"``, ``"64MiB"`` or ``"64M"`` (powers of 1024), ``"50GB"``
    (powers of 1000).

    >>> parse_bytes("2KiB"), parse_bytes("2K"), parse_bytes("2kB")
    (2048, 2048, 2000)
    """
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not a size in bytes: {text!r}")
    number, unit, binary, byte = match.groups()
    decimal = unit and byte and not binary
    if binary and not unit:
        raise ValueError(f"not a size in bytes: {text!r}")
    return int(float(number) * (1000 if decimal else 1024) ** _POWERS[unit.lower()])


def _digest(key: str) -> bytes:
    return hashlib.blake2b(key.encode(), digest_size=16).digest()


def _read_parts(fd: int, size: int) -> tuple[bytes | None, bytearray | bytes | None]:
    """An entry's header and its ``size`` payload bytes, read in one system call straight into
    buffers of their own (no copy to split them), or (None, None) when the file is not exactly
    that long (one byte more is asked for: a longer file is damaged)."""
    if _HEADER.size + size + 1 > _READ_CHUNK:
        raw = _pread_all(fd, _HEADER.size + size + 1, 0)
        if len(raw) != _HEADER.size + size:
            return None, None
        return raw[: _HEADER.size], raw[_HEADER.size :]
    header, payload, extra = bytearray(_HEADER.size), bytearray(size), bytearray(1)
    if os.preadv(fd, [header, payload, extra], 0) != _HEADER.size + size:
        return None, None
    return bytes(header), payload


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    if length <= _READ_CHUNK:
        return os.pread(fd, length, offset)
    parts = []
    while length > 0:
        part = os.pread(fd, min(length, _READ_CHUNK), offset)
        if not part:
            break
        parts.append(part)
        offset += len(part)
        length -= len(part)
    return b"".join(parts)


def _touch(fd: int, path: str) -> None:
    """Mark an entry used now (its mtime: the LRU order); a failure only ages it."""
    try:
        if os.utime in os.supports_fd:
            os.utime(fd)
        else:  # pragma: no cover
            os.utime(path)
    except OSError:
        pass


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except OSError:
        return False
