"""The bale exception tree: every error bale raises, with the file, column and rows it concerns.

    BaleError
    ├── MissingFileError         (FileNotFoundError)  no file at the path (says so when
    │                                           NAME.partial is there: run `bale repair NAME`)
    ├── NotABaleFileError        (ValueError)   the bytes are not a bale file
    ├── UnsupportedVersionError  (ValueError)   written by a newer, incompatible format version
    ├── UnsupportedFeatureError  (NotImplementedError)  a codec, dtype or column kind added by a
    │                                           later minor version: that column cannot be read
    ├── CorruptFileError         (ValueError)   a checksum, size or structure check failed
    │   └── TruncatedFileError                  the file ends early (e.g. a killed writer)
    ├── SchemaError              (ValueError)   a batch or schema does not fit the file's columns
    ├── CodecError               (ValueError)   an unknown codec id or an invalid codec setting
    ├── TargetExistsError        (FileExistsError)  refusing to overwrite without overwrite=True
    ├── FileLockedError          (BlockingIOError)  another writer holds the file
    ├── BaleWriteError           (OSError)      the disk refused a write (full, quota, I/O error)
    ├── ObjectNotFoundError      (FileNotFoundError)  no object at the URL
    ├── AccessDeniedError        (PermissionError)    the store refused the credentials
    └── RemoteReadError          (OSError)      the store could not be read: retries ran out
                                                (timeouts, 5xx, dropped connections) or it
                                                refused the request (no range support, 4xx)

Errors about a remote object name its URL with any credentials removed (user:password, signed
query values). Library errors (OSError, zstd, blosc2, object-store clients) are translated into
these where they enter bale, so code that catches ``BaleError`` catches everything bale reports
about data.
"""

from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "AccessDeniedError",
    "BaleError",
    "BaleWriteError",
    "CodecError",
    "CorruptFileError",
    "FileLockedError",
    "MissingFileError",
    "NotABaleFileError",
    "ObjectNotFoundError",
    "RemoteReadError",
    "SchemaError",
    "TargetExistsError",
    "TruncatedFileError",
    "UnsupportedFeatureError",
    "UnsupportedVersionError",
]

RowRange = tuple[int, int]


class BaleError(Exception):
    """Root of every bale error. Carries where it happened: ``path``, ``column``, ``rows``."""

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str] | None = None,
        column: str | None = None,
        rows: RowRange | None = None,
    ) -> None:
        self.path = os.fspath(path) if path is not None else None
        self.column = column
        self.rows = rows
        self.detail = message
        super().__init__(self._compose(message))

    def _compose(self, message: str) -> str:
        where = []
        if self.path is not None:
            where.append(f"file {self.path!r}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        if self.rows is not None:
            first, stop = self.rows
            where.append(f"row {first}" if stop - first == 1 else f"rows {first}..{stop - 1}")
        return f"{', '.join(where)}: {message}" if where else message

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Keep attributes when an error crosses a process boundary (DataLoader workers).
        return (
            _rebuild_error,
            (type(self), self.detail, self.path, self.column, self.rows),
        )


def _rebuild_write_error(
    message: str,
    path: str | None,
    column: str | None,
    rows: RowRange | None,
    errno: int | None,
    strerror: str | None,
) -> BaleWriteError:
    return BaleWriteError(
        message, path=path, column=column, rows=rows, errno=errno, strerror=strerror
    )


def _rebuild_error(
    cls: type[BaleError], message: str, path: str | None, column: str | None, rows: RowRange | None
) -> BaleError:
    return cls(message, path=path, column=column, rows=rows)


class MissingFileError(BaleError, FileNotFoundError):
    """No file at a local path. When ``NAME.partial`` is there instead (a killed writer), the
    message says so, with its size, and names the ``bale repair`` that finishes it. ``errno``,
    ``strerror`` and ``filename`` are set as on any FileNotFoundError."""

    def __init__(self, message: str, *, path: str | os.PathLike[str]) -> None:
        super().__init__(message, path=path)
        self.errno = _errno.ENOENT
        self.strerror = os.strerror(_errno.ENOENT)
        self.filename = self.path

    def __str__(self) -> str:
        # OSError's own form ("[Errno 2] No such file or directory: ...") would hide the advice
        return str(self.args[0]) if self.args else self.detail

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_rebuild_missing, (self.detail, self.path))


def _rebuild_missing(message: str, path: str) -> MissingFileError:
    return MissingFileError(message, path=path)


class NotABaleFileError(BaleError, ValueError):
    """The file does not start with bale's magic bytes."""


class UnsupportedVersionError(BaleError, ValueError):
    """The file's major format version is newer than this bale can read."""


class UnsupportedFeatureError(BaleError, NotImplementedError):
    """A column uses a codec id, dtype or column kind this bale does not know: a later minor
    version of the format added it. The rest of the file reads normally; reading this column
    (or a block with that codec) raises this, naming the file, column, rows and the unknown id."""


class CorruptFileError(BaleError, ValueError):
    """Stored bytes failed a checksum, size or structure check; nothing of them is returned."""


class TruncatedFileError(CorruptFileError):
    """The file ends before its footer: an interrupted write. ``bale repair`` recovers it."""


class SchemaError(BaleError, ValueError):
    """A batch (or a given schema) does not match the file's columns."""


class CodecError(BaleError, ValueError):
    """An unknown codec id, or a codec setting outside its valid range."""


class TargetExistsError(BaleError, FileExistsError):
    """The target path exists and ``overwrite=True`` was not given."""


class FileLockedError(BaleError, BlockingIOError):
    """Another writer holds this file; only one writer at a time is allowed."""


class BaleWriteError(BaleError, OSError):
    """The operating system refused a write. Rows written before it are recoverable.

    ``errno`` and ``strerror`` are those of the failed call (``errno.ENOSPC`` for a full disk),
    and ``filename`` is the file being written, as on any OSError."""

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str] | None = None,
        column: str | None = None,
        rows: RowRange | None = None,
        errno: int | None = None,
        strerror: str | None = None,
    ) -> None:
        super().__init__(message, path=path, column=column, rows=rows)
        self.errno = errno
        self.strerror = strerror
        self.filename = self.path

    def __str__(self) -> str:
        # OSError's own form ("[Errno 28] No space left on device: 'x.partial'") would hide the
        # message: which rows are safe, and what to run.
        message = str(self.args[0]) if self.args else self.detail
        if self.errno is not None and self.strerror:
            return f"{message} ([Errno {self.errno}] {self.strerror})"
        return message

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (
            _rebuild_write_error,
            (self.detail, self.path, self.column, self.rows, self.errno, self.strerror),
        )


class ObjectNotFoundError(BaleError, FileNotFoundError):
    """No object at this URL (HTTP 404): a wrong bucket, key or host path."""


class AccessDeniedError(BaleError, PermissionError):
    """The store refused the request (HTTP 401/403): missing, wrong or insufficient credentials."""


class RemoteReadError(BaleError, OSError):
    """A remote object could not be read: transient failures (timeouts, 5xx, throttling, dropped
    connections) outlasted the retries, or the server refused the request as made (it ignores
    byte ranges, or answered with another 4xx). No bytes of a failed read are returned."""
