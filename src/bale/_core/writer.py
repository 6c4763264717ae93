"""Rows in -> row groups -> blocks -> file: the only code that writes bale files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Literal

import numpy as np

from bale._core.batches import (
    ColumnData,
    batch_length,
    infer_schema_types,
    pack_var_rows,
    to_column_data,
)
from bale._core.blocks import StoredBlock, StoredGroup
from bale._core.defaults import DEFAULT_ROW_GROUP_BYTES, default_codec, shuffle_typesize
from bale._core.layout import read_index
from bale._version import __version__
from bale.codecs import Codec, codec_from_config, parse_codec
from bale.codecs.framing import encode_block
from bale.errors import BaleError, BaleWriteError, SchemaError
from bale.format.constants import DEFAULT_SEGMENT_BYTES, MAX_SEGMENT_BYTES
from bale.format.footer import BlockRecord, FileIndex, pack_footer
from bale.format.header import (
    checksum_parts,
    dump_json,
    pack_group_prefix,
    pack_header,
    pack_trailer,
    padding,
)
from bale.format.schema import Array, Column, ColumnType, Schema
from bale.io.sink import FileSink
from bale.io.source import LocalSource

SchemaLike = Schema | Mapping[str, ColumnType]


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

    Memory stays bounded by about one row group (``row_group_bytes`` of raw data) plus the batch
    being written. Exceptions inside a ``with`` block leave the rows so far in ``NAME.partial``
    (complete and readable) rather than publishing them under ``NAME``.
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
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        self.path = os.fspath(path)
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
        self._pending: dict[str, list[ColumnData]] = {}
        self._pending_rows = 0
        self._closed = False
        self._failed: BaleWriteError | None = None
        self._append_codecs: dict[str, dict[str, Any]] = {}
        self._footer_replaced = True  # a new file has no old footer to replace
        self._original_metadata: dict[str, Any] | None = None
        self.metadata: dict[str, Any] = dict(metadata or {})
        try:
            dump_json(self.metadata)
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"metadata must be JSON-serialisable: {exc}", path=self.path) from exc

        if mode == "a" and os.path.exists(self.path):
            self._open_for_append(schema)
        else:
            self._sink = FileSink(self.path, "create", overwrite=overwrite)
            self._index: FileIndex | None = None
            self._given_types = dict(schema.items()) if isinstance(schema, Mapping) else None
            self._given_schema = schema if isinstance(schema, Schema) else None
            self._segment_bytes = segment_bytes
        self._check_codec_names()

    # -- setup --------------------------------------------------------------------------------

    def _open_for_append(self, schema: SchemaLike | None) -> None:
        # Lock first: another appender may be rewriting the footer right now.
        self._sink = FileSink(self.path, "update")
        source = LocalSource(self.path)
        try:
            index, footer_offset = read_index(source)
            if schema is not None:
                self._check_same_schema(index.schema, schema)
        except BaseException:
            self._sink.close()
            raise
        finally:
            source.close()
        self._sink.offset = footer_offset
        self._given_types = None
        self._given_schema = None
        self._footer_replaced = False
        self._original_metadata = dict(index.metadata)
        # Codecs given when appending apply to the new row groups (each block records its own).
        self._append_codecs = {
            name: codec.for_itemsize(shuffle_typesize(index.schema[name].type)).config()
            for name, codec in self._codec_overrides.items()
            if name in index.schema
        }
        self._index = FileIndex(
            index.schema,
            {**index.metadata, **self.metadata},
            list(index.codecs),
            index.groups.copy(),
            index.blocks.copy(),
            index.segment_bytes,
            dict(index.extra),
        )
        self.metadata = self._index.metadata
        self._segment_bytes = index.segment_bytes

    def _check_same_schema(self, existing: Schema, given: SchemaLike) -> None:
        given_types = {c.name: c.type for c in given} if isinstance(given, Schema) else dict(given)
        existing_types = {c.name: c.type for c in existing}
        if given_types != existing_types:
            raise SchemaError(
                f"cannot append: the file's columns are {existing.describe()}, "
                f"the given schema has {Schema(tuple(Column(n, t, {}) for n, t in given_types.items())).describe()}",
                path=self.path,
            )

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
            if override is not None:
                codec = override.for_itemsize(shuffle_typesize(column_type)).config()
            elif stored:
                codec = stored
            else:
                codec = default_codec(column_type, _sample_bytes(first_batch.get(name))).config()
            columns.append(Column(name, column_type, codec))
        return Schema(tuple(columns))

    def _start(self, schema: Schema) -> None:
        """Write the header of a new file. The header repeats the schema so repair needs no footer."""
        header = pack_header(
            {
                "schema": schema.to_json(),
                "metadata": self.metadata,
                "segment_bytes": self._segment_bytes,
                "created_by": f"bale {__version__}",
            }
        )
        self._sink.write([header])
        self._index = FileIndex.empty(schema, self.metadata, self._segment_bytes)

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
        return done + self._pending_rows

    def write(self, batch: Mapping[str, Any]) -> None:
        """Append a batch: a dict of column name -> array (or list) with one entry per row.

        The whole batch is validated before any of it is buffered: a bad batch raises
        ``SchemaError`` and leaves the file as it was.
        """
        self._check_open()
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
            self._start(resolved)
        schema = self._require_index().schema
        first = self.rows_written
        n = batch_length(batch, schema, self.path, first)
        if n == 0:
            return
        rows = (first, first + n)
        converted = {
            c.name: to_column_data(c.name, c.type, batch[c.name], self.path, rows) for c in schema
        }
        for name, data in converted.items():
            self._pending.setdefault(name, []).append(data)
        self._pending_rows += n
        if self._rows_per_group is None:
            self._rows_per_group = self._estimate_rows_per_group(converted, n)
        while self._pending_rows >= self._rows_per_group:
            self._flush_group_or_fail(self._rows_per_group)
        if self._pending_rows:
            self._own_batch_remainder()

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
        index = self._require_index()
        if group.segment_bytes != self._segment_bytes:
            raise SchemaError(
                f"cannot copy a row group framed in segments of {group.segment_bytes} bytes "
                f"into a file framed in {self._segment_bytes}-byte segments",
                path=self.path,
            )
        if set(group.blocks) != set(index.schema.names):
            raise SchemaError(
                f"cannot copy a row group with columns {sorted(group.blocks)} into a file with "
                f"columns {index.schema.names}",
                path=self.path,
            )
        if self._pending_rows:
            self._flush_group_or_fail(self._pending_rows)
        encoded = [group.blocks[c.name] for c in index.schema]
        for column, block in zip(index.schema, encoded, strict=True):
            if (
                isinstance(column.type, Array)
                and block.raw_size != group.num_rows * column.type.row_nbytes
            ):
                raise SchemaError(
                    f"a copied block holds {block.raw_size} bytes, expected "
                    f"{group.num_rows * column.type.row_nbytes} for {group.num_rows} rows",
                    path=self.path,
                    column=column.name,
                )
        try:
            self._write_group(index, group.num_rows, encoded)
        except BaleWriteError as exc:
            self._failed = exc
            raise

    def flush(self) -> None:
        """Write buffered rows now as a (possibly short) row group."""
        self._check_open()
        if self._pending_rows:
            self._flush_group_or_fail(self._pending_rows)

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
        under ``NAME``; an appended file keeps the rows added so far. If even that fails (a full
        disk), the complete row groups stay on disk for ``bale repair``."""
        if self._closed:
            return
        if self._failed is not None:  # the file is left exactly as the failed write left it
            self._release()
            return
        try:
            self._finish(commit=False)
        except Exception:
            pass
        finally:
            self._release()

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

    def _require_index(self) -> FileIndex:
        if self._index is None:
            raise RuntimeError("internal error: the file header has not been written")
        return self._index

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"writer for {self.path!r} is closed")
        if self._failed is not None:
            raise self._failure_error()

    def _failure_error(self) -> BaleWriteError:
        failed = self._failed
        return BaleWriteError(
            f"an earlier write failed ({failed.detail if failed else 'unknown'}); this writer "
            f"writes nothing more. `bale repair {self.path}` recovers every complete row group",
            path=self._sink.path,
            errno=failed.errno if failed else None,
            strerror=failed.strerror if failed else None,
        )

    def _flush_group_or_fail(self, n: int) -> None:
        """Write a row group. If the disk refuses it, the writer stops for good: the rows of
        that group are no longer buffered, so writing any later row would leave a gap."""
        try:
            self._flush_group(n)
        except BaleWriteError as exc:
            self._failed = exc
            raise BaleWriteError(
                f"{exc.detail}; rows before row {self._require_index().num_rows} are safe: "
                f"run `bale repair {self.path}` to recover them",
                path=exc.path,
                errno=exc.errno,
                strerror=exc.strerror,
            ) from exc

    def _estimate_rows_per_group(self, converted: Mapping[str, ColumnData], n: int) -> int:
        row_bytes = 0.0
        for data in converted.values():
            if isinstance(data, np.ndarray):
                row_bytes += data.nbytes / n if n else 0
            else:
                row_bytes += 8 + sum(len(r) for r in data) / n
        return max(1, int(self._row_group_bytes // max(row_bytes, 1.0)))

    def _own_batch_remainder(self) -> None:
        """Copy the unflushed tail of the batch just written (always the last buffered chunk):
        callers may reuse their arrays once ``write`` returns."""
        for chunks in self._pending.values():
            if chunks and isinstance(chunks[-1], np.ndarray):
                chunks[-1] = chunks[-1].copy()

    def _take_pending(self, n: int) -> dict[str, ColumnData]:
        taken: dict[str, ColumnData] = {}
        for name, chunks in self._pending.items():
            parts: list[ColumnData] = []
            need = n
            while need:
                chunk = chunks[0]
                if len(chunk) <= need:
                    parts.append(chunks.pop(0))
                    need -= len(chunk)
                else:
                    parts.append(chunk[:need])
                    chunks[0] = chunk[need:]
                    need = 0
            if parts and isinstance(parts[0], np.ndarray):
                taken[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)  # type: ignore[arg-type]
            else:
                taken[name] = [row for part in parts for row in part]
        self._pending_rows -= n
        return taken

    def _flush_group(self, n: int) -> None:
        index = self._require_index()
        data = self._take_pending(n)
        columns = list(index.schema)

        def encode(column: Column) -> StoredBlock:
            return self._encode_block(column, data[column.name])

        if self._threads > 1 and len(columns) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="bale-writer")
            encoded = list(self._pool.map(encode, columns))
        else:
            encoded = [encode(c) for c in columns]
        self._write_group(index, n, encoded)

    def _encode_block(self, column: Column, data: ColumnData) -> StoredBlock:
        if isinstance(data, np.ndarray):
            raw = memoryview(data.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
        else:
            raw = memoryview(pack_var_rows(data))
        config = self._append_codecs.get(column.name, dict(column.codec))
        codec = codec_from_config(config)
        try:
            parts = encode_block(codec, raw, self._segment_bytes)
        except Exception as exc:  # a codec library error: name the column, keep the file intact
            raise BaleError(
                f"encoding with {codec!r} failed: {exc}", path=self.path, column=column.name
            ) from exc
        return StoredBlock(parts, len(raw), checksum_parts(parts), config)

    def _write_group(self, index: FileIndex, n: int, encoded: list[StoredBlock]) -> None:
        relative = 0
        offsets = []
        block_json = []
        for block in encoded:
            offsets.append(relative)
            block_json.append(
                {
                    "offset": relative,
                    "stored_size": block.stored_size,
                    "raw_size": block.raw_size,
                    "checksum": block.checksum,
                    "codec": block.codec,
                }
            )
            relative += block.stored_size + padding(block.stored_size)
        group_json = dump_json({"rows": n, "blocks": block_json})
        if not self._footer_replaced:
            # Appending: drop the old footer first, so an interrupted append reads as an
            # unfinished file that `bale repair` completes, never as a stale footer.
            self._sink.truncate_here()
            self._footer_replaced = True
        group_offset = self._sink.write([pack_group_prefix(group_json), group_json])
        data_start = self._sink.offset
        records = []
        for block, relative_offset in zip(encoded, offsets, strict=True):
            offset = self._sink.write(block.parts)
            if offset != data_start + relative_offset:
                raise RuntimeError("internal error: block layout drifted from the group header")
            records.append(
                BlockRecord(offset, block.stored_size, block.raw_size, block.checksum, block.codec)
            )
        index.append_group(n, group_offset, self._sink.offset - group_offset, records)

    def _finish(self, *, commit: bool) -> None:
        if self._index is None:
            if self._given_schema is None and self._given_types is None:
                self._sink.discard()
                raise SchemaError(
                    "no rows were written and no schema was given, so there is no file to create",
                    path=self.path,
                )
            self._start(self._resolve_schema({}))
        if self._pending_rows:
            self._flush_group_or_fail(self._pending_rows)
        index = self._require_index()
        if not self._footer_replaced and self.metadata == self._original_metadata:
            self._sink.close()  # an append that added nothing leaves the file untouched
            return
        dump_json(self.metadata)  # fail before touching the file if metadata became invalid
        index.metadata = self.metadata
        footer = pack_footer(index, f"bale {__version__}")
        footer_offset = self._sink.write([footer], align=False)
        self._sink.write([pack_trailer(footer_offset, footer)], align=False)
        self._sink.truncate_here()
        if commit:
            self._sink.commit()
        else:
            self._sink.sync()
            self._sink.close()

    def __del__(self) -> None:
        # A writer dropped without close() releases its lock; its complete row groups stay on
        # disk for `bale repair` (nothing is finished or published implicitly).
        sink = getattr(self, "_sink", None)
        if sink is not None and not getattr(self, "_closed", True):
            sink.close()

    def _release(self) -> None:
        self._closed = True
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._sink.close()


def _sample_bytes(values: Any) -> list[bytes]:
    """Up to 64 rows of a bytes column of the first batch, to recognise compressed media."""
    if values is None or (isinstance(values, np.ndarray) and values.dtype.kind not in "SO"):
        return []
    return [bytes(v) for v in list(values[:64]) if isinstance(v, (bytes, bytearray, memoryview))]


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

    Options are those of ``Writer`` (schema, overwrite, codecs, metadata, row_group_bytes...).
    """
    schema = options.pop("schema", None)
    with Writer(path, schema, **options) as writer:
        writer.write(columns)
