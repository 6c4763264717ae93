"""The Writer: user batches in -> checked, buffered rows -> row groups encoded by ``encode`` ->
the file on disk through ``groupsink``; which codec each column gets; what a failed write stops."""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import warnings
import weakref
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from bale._core.batches import as_numpy, batch_length, infer_schema_types, to_column_data
from bale._core.blocks import StoredBlock, StoredGroup
from bale._core.defaults import (
    DEFAULT_ROW_GROUP_BYTES,
    RANDOM_ACCESS_SEGMENT_BYTES,
    random_access_segment,
)
from bale._core.encode import column_row_bytes, encode_column_block, rows_per_group, written_codec
from bale._core.groupsink import GroupSink, SchemaLike
from bale._core.rowbuffer import RowBuffer
from bale.codecs import Codec, parse_codec
from bale.errors import BaleError, BaleWriteError, SchemaError
from bale.format.constants import DEFAULT_SEGMENT_BYTES, MAX_SEGMENT_BYTES
from bale.format.footer import FileIndex
from bale.format.header import dump_json
from bale.format.schema import Array, Column, ColumnType, Schema
from bale.io.remote_url import is_remote, redact_url
from bale.io.sink import ByteSink

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

__all__ = ["CodecLike", "SchemaLike", "Writer", "write"]

CodecLike = Codec | str


class Writer:
    """Writes rows to a ``.bale`` file, one row group at a time.

    >>> import numpy as np, bale
    >>> with bale.Writer("/tmp/doc.bale", overwrite=True) as w:  # doctest: +SKIP
    ...     w.write({"x": np.zeros((10, 3), "float32"), "label": np.arange(10)})

    A new file is written as ``NAME.partial`` and renamed to ``NAME`` when ``close()`` succeeds,
    so ``NAME`` only ever holds complete files. If the process dies, ``bale repair NAME``
    recovers every row group that was completely written. ``mode="a"`` appends to an existing
    file in place, leaving the bytes of its earlier row groups untouched.

    ``random_access=True`` stores each block as independently decodable frames of about 16 KiB
    (``segment_bytes``; a whole number of rows of the widest compressed column, so such a row is
    one frame) with a frame index, so that a random row decodes only its frame: much faster
    random rows (``ds[i]``, ``ds.take``, map-style samplers) for about 3 % more bytes and slower
    sequential reads (the bale repository's docs/DECISIONS.md, "Frame size for random access"). A file whose only
    compressed columns are small (JPEG bytes stored as they are, beside a label) keeps one frame
    per block: framing uncompressed bytes gains nothing. ``segment_bytes`` sets the frame size
    yourself.

    Memory stays bounded by about one row group (``row_group_bytes`` of raw data) plus the batch
    being written. Exceptions inside a ``with`` block leave the rows so far in ``NAME.partial``
    (complete and readable) rather than publishing them under ``NAME``. A writer dropped without
    ``close()`` (collected, or still open at interpreter exit) is aborted the same way, buffered
    rows included, with a ``ResourceWarning``: nothing it accepted is lost, nothing is published.

    A URL (``s3://``, ``gs://``, ``az://``) is written as a multipart upload with
    ``storage_options`` for its client (the bale repository's docs/REMOTE.md, "Writing"): memory stays bounded (a few
    16 MiB parts in flight), and the object appears, whole, only when ``close()`` succeeds; an
    exception, ``abort()`` or a dead process publishes nothing (an existing object stays as it
    was until then). Objects cannot be appended to: ``mode="a"`` on a URL is an error.

    >>> with bale.Writer("s3://bucket/train.bale", storage_options={"profile": "ml"}) as w:  # doctest: +SKIP
    ...     w.write({"x": x, "label": labels})
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        schema: SchemaLike | None = None,
        *,
        mode: Literal["w", "a"] = "w",
        overwrite: bool = False,
        codecs: Mapping[str, CodecLike] | None = None,
        metadata: Mapping[str, Any] | None = None,
        row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES,
        row_group_rows: int | None = None,
        threads: int = 1,
        segment_bytes: int | None = None,
        random_access: bool = False,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        target = os.fspath(path)
        remote = is_remote(target)
        # What messages show: a URL without credentials.
        self.path = redact_url(target) if remote else target
        # Random access without a frame size: fitted to the rows once the schema is known.
        self._fit_segment = random_access and segment_bytes is None
        if segment_bytes is None:
            segment_bytes = RANDOM_ACCESS_SEGMENT_BYTES if random_access else DEFAULT_SEGMENT_BYTES
        if mode not in ("w", "a"):
            raise ValueError(f"mode must be 'w' or 'a', got {mode!r}")
        if not 1 <= segment_bytes <= MAX_SEGMENT_BYTES:
            raise ValueError(f"segment_bytes must be in 1..{MAX_SEGMENT_BYTES}")
        if row_group_bytes < 1 or (row_group_rows is not None and row_group_rows < 1):
            raise ValueError("row_group_bytes and row_group_rows must be positive")
        self._codec_overrides = {k: parse_codec(v) for k, v in (codecs or {}).items()}
        self._row_group_bytes = row_group_bytes
        self._rows_per_group = row_group_rows
        self._threads = max(1, threads)
        self._pool: ThreadPoolExecutor | None = None
        self._pending = RowBuffer()
        self._closed = False
        self._failed: BaleWriteError | None = None
        self._append_codecs: dict[str, dict[str, Any]] = {}
        self.metadata: dict[str, Any] = dict(metadata or {})
        try:
            dump_json(self.metadata)
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"metadata must be JSON-serialisable: {exc}", path=self.path) from exc

        self._given_types: dict[str, ColumnType] | None = None
        self._given_schema: Schema | None = None
        if mode == "a" and remote:
            detail = (
                "objects in a store cannot be appended to (they are immutable): write a new "
                "object, or append to a local copy and upload it"
            )
            raise BaleWriteError(
                detail,
                path=self.path,
                errno=errno.EOPNOTSUPP,
                strerror=os.strerror(errno.EOPNOTSUPP),
            )
        if mode == "a" and os.path.exists(self.path):
            self._file = GroupSink.reopen(self.path, schema, self.metadata)
            index = self._file.require_index()
            self.metadata = index.metadata
            # Codecs given when appending apply to the new row groups (each block records its own).
            self._append_codecs = {
                name: written_codec(index.schema[name].type, codec).config()
                for name, codec in self._codec_overrides.items()
                if name in index.schema
            }
        else:
            self._file = GroupSink.create(
                target,
                overwrite=overwrite,
                segment_bytes=segment_bytes,
                storage_options=storage_options,
            )
            self._given_types = dict(schema.items()) if isinstance(schema, Mapping) else None
            self._given_schema = schema if isinstance(schema, Schema) else None
        self._check_codec_names()
        # Set last: only a writer that was handed to its caller is aborted when dropped, and only
        # in the process that made it (a forked child's copy never touches the parent's file).
        self._pid = os.getpid()
        _track_open(self)

    # -- setup --------------------------------------------------------------------------------

    @property
    def _sink(self) -> ByteSink:  # the locked file or the upload; a crash test reads its offset
        return self._file.sink

    @property
    def _index(self) -> FileIndex | None:
        return self._file.index

    def _check_codec_names(self) -> None:
        if self._index is not None:
            names = set(self._index.schema.names)
        elif self._given_schema is not None:
            names = set(self._given_schema.names)
        elif self._given_types is not None:
            names = set(self._given_types)
        else:
            return  # checked again once the first batch fixes the schema
        unknown = sorted(set(self._codec_overrides) - names)
        if unknown:
            self._sink.discard()
            raise SchemaError(f"codecs given for unknown columns {unknown}", path=self.path)

    def _resolve_schema(self, first_batch: Mapping[str, Any]) -> Schema:
        """The schema with each column's codec: a codec given for the column, else the one a
        given Schema records, else the default for its type (bytes columns sniff the batch)."""
        if self._given_schema is not None:
            given: list[tuple[str, ColumnType, dict[str, Any] | None]] = [
                (c.name, c.type, dict(c.codec)) for c in self._given_schema
            ]
        else:
            types = (
                self._given_types
                if self._given_types is not None
                else infer_schema_types(first_batch)
            )
            given = [(name, column_type, None) for name, column_type in types.items()]
        columns = []
        for name, column_type, stored in given:
            override = self._codec_overrides.get(name)
            if override is None and stored:
                codec = stored
            else:
                codec = written_codec(column_type, override, first_batch.get(name)).config()
            columns.append(Column(name, column_type, codec))
        return Schema(tuple(columns))

    def _start(self, schema: Schema, first_batch: Mapping[str, Any] | None = None) -> None:
        if self._fit_segment:
            self._file.segment_bytes = random_access_segment(
                schema, _sample_row_bytes(schema, first_batch), self._row_group_bytes
            )
        self._file.start(schema, self.metadata)

    # -- public API ---------------------------------------------------------------------------

    @property
    def schema(self) -> Schema | None:
        """The file's schema; None until the first batch when it is inferred. When a schema was
        given, codecs of bytes columns shown before the first batch are provisional (they are
        chosen from the first rows: JPEG/PNG bytes are stored uncompressed)."""
        if self._index is not None:
            return self._index.schema
        if self._given_schema is not None or self._given_types is not None:
            return self._resolve_schema({})
        return None

    @property
    def rows_written(self) -> int:
        """Rows accepted so far, buffered ones included."""
        done = self._index.num_rows if self._index is not None else 0
        return done + self._pending.rows

    def write(self, batch: Mapping[str, Any]) -> None:
        """Append a batch: a dict of column name -> array (or list) with one entry per row.

        The whole batch is validated before any of it is buffered: a bad batch raises
        ``SchemaError`` and leaves the file as it was.
        """
        self._check_open()
        # Framework arrays (torch, JAX, CuPy on the host, anything with __array__) become NumPy
        # once, here, so schema inference and validation see what will be stored.
        batch = {name: as_numpy(name, value, self.path) for name, value in batch.items()}
        if self._index is None:
            try:
                resolved = self._resolve_schema(batch)
            except BaleError as exc:
                if exc.path is None:
                    exc = type(exc)(exc.detail, path=self.path, column=exc.column, rows=exc.rows)
                raise exc from None
            unknown = sorted(set(self._codec_overrides) - set(resolved.names))
            if unknown:
                raise SchemaError(f"codecs given for unknown columns {unknown}", path=self.path)
            self._start(resolved, batch)
        schema = self._file.require_index().schema
        first = self.rows_written
        n = batch_length(batch, schema, self.path, first)
        if n == 0:
            return
        rows = (first, first + n)
        converted = {
            c.name: to_column_data(c.name, c.type, batch[c.name], self.path, rows) for c in schema
        }
        self._pending.add(converted, n)
        if self._rows_per_group is None:
            self._rows_per_group = rows_per_group(
                column_row_bytes(converted, n), self._row_group_bytes
            )
        while self._pending.rows >= self._rows_per_group:
            self._flush_group_or_fail(self._rows_per_group)
        # Callers may reuse their arrays once `write` returns.
        self._pending.own_last_chunks()

    def write_row(self, row: Mapping[str, Any]) -> None:
        """Append one row (a dict of column -> value). Rows are buffered into full row groups."""
        self.write({k: _as_single_row(v) for k, v in row.items()})

    def write_stored_group(self, group: StoredGroup) -> None:
        """Append a row group copied from another file (``Dataset.stored_group``) without
        decompressing it: its blocks keep their codecs and checksums. Buffered rows are written
        first, so rows stay in the order given. The file must have the same column types and
        the same segment size; a new file without a schema takes the group's columns' types."""
        self._check_open()
        if self._index is None:
            if self._given_schema is None and self._given_types is None:
                raise SchemaError(
                    "write_stored_group needs a schema for a new file: pass schema= "
                    "(e.g. the source Dataset's schema)",
                    path=self.path,
                )
            self._start(self._resolve_schema({}))
        self._file.check_copy(group)
        if self._pending.rows:
            self._flush_group_or_fail(self._pending.rows)
        encoded = self._file.copied_blocks(group)
        try:
            self._file.write_group(group.num_rows, encoded)
        except BaleWriteError as exc:
            self._failed = exc
            raise

    def flush(self) -> None:
        """Write buffered rows now as a (possibly short) row group."""
        self._check_open()
        if self._pending.rows:
            self._flush_group_or_fail(self._pending.rows)

    def close(self) -> None:
        """Write what is buffered, the footer and the trailer; publish the file under its name."""
        if self._closed:
            return
        if self._failed is not None:
            self._release()
            raise self._failure_error()
        try:
            dump_json(self.metadata)
        except (TypeError, ValueError) as exc:
            raise SchemaError(
                f"metadata must be JSON-serialisable ({exc}); fix writer.metadata and call "
                "close() again - nothing has been lost",
                path=self.path,
            ) from exc
        try:
            self._finish(commit=True)
        except BaleWriteError as exc:
            self._failed = exc
            raise
        finally:
            self._release()

    def abort(self) -> None:
        """Stop writing. A new file is finished as a readable ``NAME.partial`` but not published
        under ``NAME`` (a new file that accepted no row is removed: there is nothing to keep);
        an appended file keeps the rows added so far. If even that fails (a full
        disk), the complete row groups stay on disk for ``bale repair``. An upload to a URL is
        aborted: nothing is published."""
        self._abort(wait=True)

    def discard(self) -> None:
        """Stop writing and keep nothing of a new file: ``abort()``, then remove its
        ``NAME.partial`` (an upload is aborted by ``abort()`` already). For the operations that
        promise to leave nothing behind on failure (pack, split, concat, recompress); an
        appended file keeps its rows, as with ``abort()``."""
        sink = self._sink
        partial = (
            sink.path if sink.keeps_partial and getattr(sink, "mode", None) == "create" else None
        )
        try:
            self.abort()
        finally:
            if partial is not None:
                with contextlib.suppress(OSError):  # already gone, or the original error wins
                    os.unlink(partial)

    def _abort(self, *, wait: bool) -> None:
        """``abort()``; ``wait=False`` does not wait for the encoder pool's idle threads."""
        if self._closed:
            return
        if not self._sink.keeps_partial:
            self._sink.discard()
            self._release(wait=wait)
            return
        if self._failed is not None:  # the file is left exactly as the failed write left it
            self._release(wait=wait)
            return
        if self.rows_written == 0 and getattr(self._sink, "mode", None) == "create":
            # Nothing was accepted (the first batch was refused, or no batch came): a partial
            # would hold no row, and the next run would be told to repair it. Remove it.
            try:
                self._sink.discard()
            except OSError:
                pass
            finally:
                self._release(wait=wait)
            return
        try:
            self._finish(commit=False)
        except Exception:
            pass
        finally:
            self._release(wait=wait)

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- internals ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"writer for {self.path!r} is closed")
        if self._failed is not None:
            raise self._failure_error()

    def _failure_error(self) -> BaleWriteError:
        failed = self._failed
        detail = (
            f"an earlier write failed ({failed.detail if failed else 'unknown'}); this writer "
            f"writes nothing more. {self._what_is_left()}"
        )
        return BaleWriteError(
            detail,
            path=self._sink.path,
            errno=failed.errno if failed else None,
            strerror=failed.strerror if failed else None,
        )

    def _stopped(self, exc: BaleWriteError, left: str) -> BaleWriteError:
        """``exc`` with what is left of the file added to its words."""
        detail = f"{exc.detail}; {left}"
        # A store has no OS message: the detail is the strerror that OSError's str() shows.
        strerror = exc.strerror if self._sink.keeps_partial else detail
        return BaleWriteError(detail, path=exc.path, errno=exc.errno, strerror=strerror)

    def _what_is_left(self) -> str:
        if self._sink.keeps_partial:
            return f"`bale repair {self.path}` recovers every complete row group"
        return "the upload was aborted: nothing was published under this name"

    def _flush_group_or_fail(self, n: int) -> None:
        """Write a row group. If the disk refuses it, the writer stops for good: the rows of
        that group are no longer buffered, so writing any later row would leave a gap."""
        try:
            self._flush_group(n)
        except BaleWriteError as exc:
            self._failed = exc
            if self._sink.keeps_partial:
                left = (
                    f"rows before row {self._file.require_index().num_rows} are safe: "
                    f"run `bale repair {self.path}` to recover them"
                )
            else:
                left = self._what_is_left()
            raise self._stopped(exc, left) from exc

    def _flush_group(self, n: int) -> None:
        index = self._file.require_index()
        data = self._pending.take(n)
        columns = list(index.schema)

        def encode(column: Column) -> StoredBlock:
            config = self._append_codecs.get(column.name, column.codec)
            return encode_column_block(
                config,
                data[column.name],
                self._file.segment_bytes,
                path=self.path,
                column=column.name,
            )

        if self._threads > 1 and len(columns) > 1:
            if self._pool is None:
                # Imported here: concurrent.futures pulls in logging, a cost `import bale` need
                # not pay for single-threaded writers.
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="bale-writer")
            encoded = list(self._pool.map(encode, columns))
        else:
            encoded = [encode(c) for c in columns]
        self._file.write_group(n, encoded)

    def _finish(self, *, commit: bool) -> None:
        if self._index is None:
            if self._given_schema is None and self._given_types is None:
                self._sink.discard()
                raise SchemaError(
                    "no rows were written and no schema was given, so there is no file to create",
                    path=self.path,
                )
            self._start(self._resolve_schema({}))
        if self._pending.rows:
            self._flush_group_or_fail(self._pending.rows)
        try:
            self._file.finish(self.metadata, commit=commit)
        except BaleWriteError as exc:
            if self._sink.keeps_partial:
                raise
            raise self._stopped(exc, self._what_is_left()) from None

    def __del__(self) -> None:
        self._abandon()

    def _abandon(self) -> None:
        """What a writer dropped without ``close()`` does (collected, or open at interpreter
        exit): ``abort()``, so the rows it accepted, buffered ones included, are kept as
        ``abort()`` keeps them, then a ResourceWarning saying where they are. A forked child's
        copy does nothing: the file and its lock are the parent's."""
        if getattr(self, "_closed", True):
            return
        if getattr(self, "_pid", None) != os.getpid():
            if getattr(self, "_pid", None) is None and hasattr(self, "_file"):
                self._file.sink.close()  # __init__ failed: release the lock, as before
            self._closed = True
            return
        if self._sink.closed:  # discarded by a failed write or check; nothing more to keep
            self._release(wait=False)
            return
        rows = self.rows_written
        failed = self._failed is not None
        self._abort(wait=False)
        warnings.warn(
            f"bale.Writer for {self.path!r} was not closed (call close() or use `with`): "
            f"{self._left_after_abort(rows, failed)}",
            ResourceWarning,
            stacklevel=2,
        )

    def _left_after_abort(self, rows: int, failed: bool) -> str:
        """Where an aborted writer's rows are, in words, for the ResourceWarning."""
        sink = self._sink
        if failed:
            return f"an earlier write failed; {self._what_is_left()}"
        if not sink.keeps_partial:
            return f"the upload was aborted and its {rows} rows were not published"
        if sink.path == self.path:
            return f"{rows} rows in all are kept in place"
        if not os.path.exists(sink.path):
            return "no rows were written and no file was kept"
        return (
            f"its {rows} rows are kept, readable, in {sink.path!r} and not published under "
            f"{self.path!r}: `bale repair {self.path}` publishes them"
        )

    def _release(self, *, wait: bool = True) -> None:
        self._closed = True
        _OPEN_WRITERS.discard(self)
        self._pending.clear()
        if self._pool is not None:
            # A dropped writer may be collected in any thread (one of its own pool's included):
            # it does not wait for the pool's idle threads, which end on their own.
            self._pool.shutdown(wait=wait)
        self._sink.close()


#: Writers open in this process, aborted at interpreter exit if still open (a collected one is
#: aborted by ``__del__``); ``__del__`` alone may run after the modules it needs are torn down.
_OPEN_WRITERS: weakref.WeakSet[Writer] = weakref.WeakSet()
_exit_hook_registered = False


def _track_open(writer: Writer) -> None:
    global _exit_hook_registered
    _OPEN_WRITERS.add(writer)
    if not _exit_hook_registered:  # registered with the first writer, not at import
        _exit_hook_registered = True
        atexit.register(_abandon_open_writers)


def _abandon_open_writers() -> None:
    for writer in list(_OPEN_WRITERS):
        writer._abandon()


def _as_single_row(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value[np.newaxis]
    if isinstance(value, np.generic):
        return np.asarray(value)[np.newaxis]
    return [value]  # Python scalars, bytes, str, nested lists: converted with the column's dtype


def write(
    path: str | os.PathLike[str],
    columns: Mapping[str, Any],
    **options: Any,
) -> None:
    """Write a whole dataset in one call: ``bale.write("train.bale", {"x": x, "y": y})``.

    Options are those of ``Writer`` (schema, overwrite, codecs, metadata, row_group_bytes,
    storage_options for a URL such as ``"s3://bucket/train.bale"``...).
    """
    schema = options.pop("schema", None)
    with Writer(path, schema, **options) as writer:
        writer.write(columns)


def _sample_row_bytes(
    schema: Schema, batch: Mapping[str, Any] | None, sample: int = 64
) -> dict[str, float] | None:
    """Raw bytes per row of each column, estimated from a batch's first rows (None without one):
    enough to tell which columns fill a row group."""
    if not batch:
        return None
    out: dict[str, float] = {}
    for column in schema:
        if isinstance(column.type, Array):
            out[column.name] = float(column.type.row_nbytes)
            continue
        values = list(batch.get(column.name, [])[:sample])
        sizes = [
            len(v.encode("utf-8", "surrogatepass") if isinstance(v, str) else v) for v in values
        ]
        out[column.name] = 8.0 + (sum(sizes) / len(sizes) if sizes else 0.0)
    return out
