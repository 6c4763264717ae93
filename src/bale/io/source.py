"""Reading byte ranges of a local file with pread: thread-safe, fork-safe, picklable by path."""

from __future__ import annotations

import os
import shlex
import stat
import threading
from typing import Any, Protocol

from bale.errors import MissingFileError, NotABaleFileError, TruncatedFileError
from bale.io.sink import partial_path_for

# Linux caps one read(2) at 0x7ffff000 bytes; larger ranges are read in pieces of this size.
_MAX_SINGLE_READ = 1 << 30


class ByteSource(Protocol):
    """What the reader needs of a file: ``LocalSource`` here, ``bale.io.remote.RemoteSource``
    for URLs."""

    @property
    def path(self) -> str: ...

    def size(self) -> int: ...

    def read(self, offset: int, size: int) -> bytes | bytearray: ...

    def will_need(self, offset: int, size: int) -> None: ...

    def evict_from_page_cache(self) -> None: ...

    def close(self) -> None: ...


def missing_file_error(path: str, detail: str | None = None) -> MissingFileError:
    """A MissingFileError for ``path``; unless ``detail`` is given, it says whether
    ``NAME.partial`` is there (with its size) and which ``bale repair`` finishes it."""
    return MissingFileError(detail or _missing_file_detail(path), path=path)


def _missing_file_detail(path: str) -> str:
    message = "no such file"
    partial = partial_path_for(path)
    try:
        size = os.stat(partial).st_size
    except OSError:
        return message
    return message + (
        f"; {partial!r} ({size:,} bytes) is there: a write of this file is still running or "
        f"was interrupted. If no writer is running, run `bale repair {shlex.quote(path)}` to "
        "recover its complete row groups"
    )


def open_regular_file(path: str) -> int:
    """A read-only descriptor of ``path``, or NotABaleFileError when it is a folder, a FIFO, a
    device or a socket: opened without blocking (a FIFO with no writer would block ``open``
    forever) and its type checked on the descriptor, so a file swapped in meanwhile is caught.
    A missing file is a MissingFileError (which points to ``bale repair`` after a killed
    writer)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise missing_file_error(path) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotABaleFileError(
                f"is {file_kind(mode)}, not a bale file (a bale file is a regular file)",
                path=path,
            )
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def file_kind(mode: int) -> str:
    """What a ``st_mode`` is, in words: "a folder", "a FIFO (named pipe)", ..."""
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISREG, "a regular file"),
    )
    return next((words for test, words in kinds if test(mode)), "not a regular file")


class LocalSource:
    """A local file read only through positional reads (no shared file offset).

    Threads share one descriptor. A forked child reopens its own descriptor on first use, and a
    pickled source (spawn / forkserver workers) carries only its path, so the same object works
    in DataLoader workers under every start method.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = -1
        self._fileno()  # fail early (FileNotFoundError) and pin the file we opened

    def _fileno(self) -> int:
        pid = os.getpid()
        fd = self._fd
        if fd is not None and self._pid == pid:
            return fd
        with self._lock:
            if self._fd is None or self._pid != pid:
                self._fd = open_regular_file(self.path)
                self._pid = pid
            return self._fd

    def fileno(self) -> int:
        """This process's descriptor of the file (reopened after a fork)."""
        return self._fileno()

    def size(self) -> int:
        return os.fstat(self._fileno()).st_size

    def read(self, offset: int, size: int) -> bytes | bytearray:
        """Exactly ``size`` bytes at ``offset``, or TruncatedFileError."""
        fd = self._fileno()
        if size <= _MAX_SINGLE_READ:
            data = os.pread(fd, size, offset)
            if len(data) == size:
                return data
        buffer = bytearray(size)
        view = memoryview(buffer)
        done = 0
        while done < size:
            n = os.preadv(fd, [view[done : done + _MAX_SINGLE_READ]], offset + done)
            if n == 0:
                raise TruncatedFileError(
                    f"expected {size} bytes at offset {offset}, the file ends after {done}",
                    path=self.path,
                )
            done += n
        return buffer

    def will_need(self, offset: int, size: int) -> None:
        """Ask the kernel to start reading a range now (asynchronously), so a later read of it
        finds the data in the page cache: disk I/O overlaps with decoding."""
        os.posix_fadvise(self._fileno(), offset, size, os.POSIX_FADV_WILLNEED)

    def evict_from_page_cache(self) -> None:
        """Ask the kernel to drop this file's cached pages (for cold-cache measurements)."""
        fd = self._fileno()
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._lock = threading.Lock()
        self._fd = None
        self._pid = -1
