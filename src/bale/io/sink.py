"""Writing a file safely: one writer per path (flock), aligned appends, fsync, atomic rename."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Sequence
from typing import Literal, Protocol

from bale._types import Buffer
from bale.errors import BaleWriteError, FileLockedError, TargetExistsError


def partial_path_for(path: str | os.PathLike[str]) -> str:
    """Where a new file is written until it is complete: ``NAME.partial`` beside the target."""
    return os.fspath(path) + ".partial"


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def is_locked(path: str) -> bool:
    """Whether another process holds the writer lock on ``path`` (False if it doesn't exist)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        if _try_lock(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        return True
    finally:
        os.close(fd)


def _refuse_special_target(target: str) -> None:
    """A directory, FIFO, device or socket at the target can never be replaced by the finished
    file (the rename fails after all the writing): refuse before writing anything. A symlink is
    fine, it is replaced like a file."""
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
        return
    kind = "is a directory" if stat.S_ISDIR(mode) else "is not a regular file"
    raise TargetExistsError(
        f"the target {kind}; a bale file can only replace a regular file: choose another path "
        "(e.g. a file name inside the directory)",
        path=target,
    )


class ByteSink(Protocol):
    """What a file being written needs of its destination: ``FileSink`` here, and
    ``bale.io.remote_sink.RemoteSink`` for a new object on S3, GCS or Azure."""

    #: the name to show in messages (a remote sink's URL without credentials)
    target: str
    #: where the bytes go until they are published (``NAME.partial``; the URL for a remote sink)
    path: str
    alignment: int
    offset: int
    closed: bool
    #: whether a failed or abandoned write leaves its complete row groups for ``bale repair``
    #: (a local ``NAME.partial``) or nothing at all (an aborted upload)
    keeps_partial: bool

    def write(self, buffers: Sequence[Buffer], *, align: bool = True) -> int: ...

    def truncate_here(self) -> None: ...

    def sync(self) -> None: ...

    def commit(self) -> None: ...

    def discard(self) -> None: ...

    def close(self) -> None: ...


class FileSink:
    """An open, exclusively locked file that bale appends aligned byte runs to.

    ``"create"`` writes ``NAME.partial`` and renames it onto ``NAME`` in ``commit()``; readers never
    see a half-written file. ``"update"`` writes the existing file in place from a given offset
    (append, repair). The lock is a ``flock`` on the file itself, which the kernel releases when
    the process dies, so a killed writer never leaves the file locked.
    """

    keeps_partial = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        mode: Literal["create", "update"],
        *,
        alignment: int,
        overwrite: bool = False,
        start: int = 0,
    ) -> None:
        self.target = os.fspath(path)
        self.alignment = alignment  # aligned writes end on a multiple of this many bytes
        self.mode = mode
        self.overwrite = overwrite
        if mode == "create":
            self.path = partial_path_for(self.target)
            self._fd = self._create()
        else:
            self.path = self.target
            self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
            if not _try_lock(self._fd):
                os.close(self._fd)
                raise FileLockedError(
                    "another process is writing this file (one writer at a time)", path=self.path
                )
        self.offset = start
        self.closed = False

    def _create(self) -> int:
        _refuse_special_target(self.target)
        if os.path.exists(self.target):
            if not self.overwrite:
                raise TargetExistsError(
                    "the file exists; pass overwrite=True to replace it or mode='a' to append",
                    path=self.target,
                )
            if is_locked(self.target):
                raise FileLockedError("another process is appending to this file", path=self.target)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o644)
        except FileExistsError:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
            if not _try_lock(fd):
                os.close(fd)
                raise FileLockedError(
                    "another writer is creating this file right now", path=self.target
                ) from None
            # An empty partial nobody holds is what a writer killed before its first batch
            # leaves: nothing to recover, so it is taken over instead of asking for a repair.
            if not self.overwrite and os.fstat(fd).st_size > 0:
                os.close(fd)
                raise TargetExistsError(
                    f"an interrupted write left {self.path!r}; run `bale repair "
                    f"{self.target}` to recover its rows (it removes a partial that holds none), "
                    "or pass overwrite=True to discard it",
                    path=self.target,
                ) from None
            os.ftruncate(fd, 0)
            return fd
        if not _try_lock(fd):  # another creator won the race between open and lock
            os.close(fd)
            raise FileLockedError("another writer is creating this file", path=self.target)
        return fd

    def write(self, buffers: Sequence[Buffer], *, align: bool = True) -> int:
        """Write buffers at the current offset (then zero padding); return where they start."""
        start = self.offset
        pieces = [memoryview(b).cast("B") for b in buffers]
        total = sum(len(p) for p in pieces)
        if align:
            pad = -(start + total) % self.alignment
            if pad:
                pieces.append(memoryview(bytes(pad)))
        try:
            for piece in pieces:
                done = 0
                while done < len(piece):
                    done += os.pwrite(self._fd, piece[done:], self.offset + done)
                self.offset += len(piece)
        except OSError as exc:
            raise BaleWriteError(
                f"write of {total} bytes at offset {start} failed: {exc.strerror or exc}",
                path=self.path,
                errno=exc.errno,
                strerror=exc.strerror,
            ) from exc
        return start

    def truncate_here(self) -> None:
        """Drop everything after the current offset (stale bytes of a replaced footer)."""
        self._call(os.ftruncate, self.offset)

    def sync(self) -> None:
        self._call(os.fsync)

    def _call(self, fn, *args: int) -> None:  # type: ignore[no-untyped-def]
        try:
            fn(self._fd, *args)
        except OSError as exc:
            raise BaleWriteError(
                f"{fn.__name__} failed: {exc.strerror or exc}",
                path=self.path,
                errno=exc.errno,
                strerror=exc.strerror,
            ) from exc

    def commit(self) -> None:
        """Make the file durable and, for a new file, move it to its target name atomically."""
        self.sync()
        if self.mode == "create":
            if not self.overwrite and os.path.exists(self.target):
                raise TargetExistsError(
                    f"the file appeared while writing; the data is kept in {self.path!r}",
                    path=self.target,
                )
            os.replace(self.path, self.target)
            directory = os.open(os.path.dirname(os.path.abspath(self.target)), os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        self.close()

    def discard(self) -> None:
        """Remove a new file that holds nothing worth keeping."""
        if self.mode == "create" and not self.closed:
            os.unlink(self.path)
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._fd)  # also releases the flock
