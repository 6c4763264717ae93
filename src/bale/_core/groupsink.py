"""A bale file on disk while rows are added to it: a new file's header, or an existing file
reopened after its last row group (append); each row group's header and blocks; the footer and
trailer that finish it; and the checks that what is added fits the file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bale._core.blocks import StoredBlock, StoredGroup
from bale._core.layout import read_index
from bale._version import __version__
from bale.errors import SchemaError, UnsupportedFeatureError, UnsupportedVersionError
from bale.format.constants import ALIGNMENT, FORMAT_VERSION
from bale.format.footer import BlockRecord, FileIndex, pack_footer
from bale.format.frames import (
    FRAME_DTYPE,
    FRAME_INDEX_KEY,
    FrameIndexInfo,
    FrameLayout,
    frame_counts,
    frame_layout,
    frame_records,
    pack_region,
)
from bale.format.header import (
    checksum,
    dump_json,
    pack_group_prefix,
    pack_header,
    pack_trailer,
    padding,
)
from bale.format.schema import Array, Column, ColumnType, Schema, Unsupported
from bale.io.remote_url import is_remote
from bale.io.sink import ByteSink, FileSink
from bale.io.source import LocalSource

SchemaLike = Schema | Mapping[str, ColumnType]


class GroupSink:
    """Row groups appended to one file, which this object holds locked (``FileSink``), or to a
    new object on S3, GCS or Azure (``bale.io.remote_sink.RemoteSink``, a multipart upload).

    ``create`` starts ``NAME.partial`` or the upload (published by ``finish(commit=True)``);
    ``reopen`` appends to an existing local file in place, leaving the bytes of its earlier row
    groups untouched.
    """

    def __init__(
        self,
        sink: ByteSink,
        segment_bytes: int,
        index: FileIndex | None = None,
        original_metadata: dict[str, Any] | None = None,
        frames: list[np.ndarray] | None = None,
    ) -> None:
        self.sink = sink
        self.segment_bytes = segment_bytes
        self.index = index  # None until a new file's header is written
        # Frame-index records (bale.format.frames), one array per row group, written at finish.
        self.frames: list[np.ndarray] = frames if frames is not None else []
        # An appended file keeps its old footer until the first new group replaces it.
        self._footer_replaced = original_metadata is None
        self._original_metadata = original_metadata

    @classmethod
    def create(
        cls,
        path: str,
        *,
        overwrite: bool,
        segment_bytes: int,
        storage_options: Mapping[str, Any] | None = None,
    ) -> GroupSink:
        """A new file at ``path``: a local file, or an object for a URL (``storage_options``
        for its client)."""
        sink: ByteSink
        if is_remote(path):
            # Imported for URLs only: `import bale` loads no remote client module.
            from bale.io.remote_sink import RemoteSink

            sink = RemoteSink(path, storage_options, alignment=ALIGNMENT, overwrite=overwrite)
        else:
            if storage_options:
                raise ValueError(
                    f"storage_options apply to URLs (s3://, gs://, az://); {path!r} is a local path"
                )
            sink = FileSink(path, "create", alignment=ALIGNMENT, overwrite=overwrite)
        return cls(sink, segment_bytes)

    @classmethod
    def reopen(cls, path: str, schema: SchemaLike | None, metadata: Mapping[str, Any]) -> GroupSink:
        """An existing file, to add row groups after its last one. ``schema``, when given, must
        have the file's columns; ``metadata`` is merged over the file's."""
        # Lock first: another appender may be rewriting the footer right now.
        sink = FileSink(path, "update", alignment=ALIGNMENT)
        source = LocalSource(path)
        try:
            index, footer_offset = read_index(source)
            check_appendable(index, path)
            if schema is not None:
                check_same_schema(index.schema, schema, path)
            frames, data_end = existing_frames(source, index, footer_offset)
        except BaseException:
            sink.close()
            raise
        finally:
            source.close()
        sink.offset = data_end  # the new groups replace the frame index and the footer
        merged = FileIndex(
            index.schema,
            {**index.metadata, **metadata},
            list(index.codecs),
            index.groups.copy(),
            index.blocks.copy(),
            index.segment_bytes,
            dict(index.extra),
        )
        merged.extra.pop(FRAME_INDEX_KEY, None)  # rewritten by finish
        return cls(sink, index.segment_bytes, merged, dict(index.metadata), frames)

    @property
    def path(self) -> str:
        """The file's name (a new file is written as ``NAME.partial`` until published)."""
        return self.sink.target

    def require_index(self) -> FileIndex:
        if self.index is None:
            raise RuntimeError("internal error: the file header has not been written")
        return self.index

    def start(self, schema: Schema, metadata: dict[str, Any]) -> None:
        """Write a new file's header. The header repeats the schema so repair needs no footer."""
        header = pack_header(
            {
                "schema": schema.to_json(),
                "metadata": metadata,
                "segment_bytes": self.segment_bytes,
                "created_by": f"bale {__version__}",
            }
        )
        self.sink.write([header])
        self.index = FileIndex.empty(schema, metadata, self.segment_bytes)

    def write_group(self, n: int, encoded: Sequence[StoredBlock]) -> None:
        """Write one row group: its header (block offsets, sizes, checksums, codecs), then its
        blocks, each aligned; the index records it."""
        index = self.require_index()
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
            self.sink.truncate_here()
            self._footer_replaced = True
        group_offset = self.sink.write([pack_group_prefix(group_json), group_json])
        data_start = self.sink.offset
        frames = [frame_records(b.parts, b.raw_size, self.segment_bytes) for b in encoded]
        records = []
        for block, relative_offset in zip(encoded, offsets, strict=True):
            offset = self.sink.write(block.parts)
            if offset != data_start + relative_offset:
                raise RuntimeError("internal error: block layout drifted from the group header")
            records.append(
                BlockRecord(offset, block.stored_size, block.raw_size, block.checksum, block.codec)
            )
        index.append_group(n, group_offset, self.sink.offset - group_offset, records)
        self.frames.append(np.concatenate(frames) if frames else np.zeros(0, FRAME_DTYPE))

    def finish(self, metadata: dict[str, Any], *, commit: bool) -> None:
        """Write the footer and trailer; with ``commit``, make the file durable and publish a
        new one under its name. An append that added nothing leaves the file untouched."""
        index = self.require_index()
        if not self._footer_replaced and metadata == self._original_metadata:
            self.sink.close()
            return
        dump_json(metadata)  # fail before touching the file if metadata became invalid
        index.metadata = metadata
        region = pack_region(self.frames)
        index.extra.pop(FRAME_INDEX_KEY, None)
        if region:
            region_offset = self.sink.write([region])
            info = FrameIndexInfo(region_offset, len(region), len(self.frames), checksum(region))
            index.extra[FRAME_INDEX_KEY] = info.to_json()
        footer = pack_footer(index, f"bale {__version__}")
        footer_offset = self.sink.write([footer], align=False)
        self.sink.write([pack_trailer(footer_offset, footer)], align=False)
        self.sink.truncate_here()
        if commit:
            self.sink.commit()
        else:
            self.sink.sync()
            self.sink.close()

    def check_copy(self, group: StoredGroup) -> None:
        """A row group copied from another file must be framed in this file's segment size and
        have exactly its columns."""
        index = self.require_index()
        if group.segment_bytes != self.segment_bytes:
            raise SchemaError(
                f"cannot copy a row group framed in segments of {group.segment_bytes} bytes "
                f"into a file framed in {self.segment_bytes}-byte segments",
                path=self.path,
            )
        if set(group.blocks) != set(index.schema.names):
            raise SchemaError(
                f"cannot copy a row group with columns {sorted(group.blocks)} into a file with "
                f"columns {index.schema.names}",
                path=self.path,
            )

    def copied_blocks(self, group: StoredGroup) -> list[StoredBlock]:
        """A copied group's blocks in this file's column order, each array block checked to
        hold exactly the group's rows."""
        index = self.require_index()
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
        return encoded


def check_appendable(index: FileIndex, path: str) -> None:
    """Refuse to append to a file of a newer minor format version (this writer would drop what
    that version added, or write it wrongly) or with a column this bale cannot read. Appending
    to the same or an older minor keeps every key this bale does not know: footer, columns and
    codec configs are written back as they were read, with this bale's version."""
    major, minor = index.version
    if minor > FORMAT_VERSION[1]:
        mine = f"{FORMAT_VERSION[0]}.{FORMAT_VERSION[1]}"
        raise UnsupportedVersionError(
            f"cannot append: the file was written by format {major}.{minor}; this bale writes "
            f"{mine}; appending could drop what {major}.{minor} added: use a newer bale, or "
            "concat into a new file",
            path=path,
        )
    for column in index.schema:
        if isinstance(column.type, Unsupported):
            raise UnsupportedFeatureError(
                f"cannot append: {column.type.what} is not known to this bale (written by a "
                "newer bale? upgrade bale to append to this file)",
                path=path,
                column=column.name,
            )


def check_same_schema(existing: Schema, given: SchemaLike, path: str) -> None:
    """Appending with a schema: it must have the file's columns and types."""
    given_types = {c.name: c.type for c in given} if isinstance(given, Schema) else dict(given)
    existing_types = {c.name: c.type for c in existing}
    if given_types != existing_types:
        raise SchemaError(
            f"cannot append: the file's columns are {existing.describe()}, "
            f"the given schema has {Schema(tuple(Column(n, t, {}) for n, t in given_types.items())).describe()}",
            path=path,
        )


def existing_frames(
    source: LocalSource, index: FileIndex, footer_offset: int
) -> tuple[list[np.ndarray], int]:
    """An existing file's frame-index records, one array per row group, and where its data ends
    (the start of its frame index when that lies just before the footer, else the footer's).

    Groups the file's index does not cover (appended by a writer that kept no index) get their
    records from their blocks' stored bytes."""
    layout = frame_layout(index, footer_offset)
    records = np.zeros(0, FRAME_DTYPE)
    covered = 0  # groups whose records come from the file's frame index
    data_end = footer_offset
    if isinstance(layout, FrameLayout):
        info = layout.info
        region = bytes(source.read(info.offset, info.length))
        if checksum(region) == info.checksum:
            records, covered = np.frombuffer(region, FRAME_DTYPE), info.groups
            end = info.offset + info.length
            if end + padding(end) == footer_offset:
                data_end = info.offset
    counts = frame_counts(index.blocks["raw_size"], index.segment_bytes)
    per_group: list[np.ndarray] = []
    for g, blocks in enumerate(index.blocks):
        if g < covered:
            assert isinstance(layout, FrameLayout)
            start = int(layout.starts[g, 0])
            per_group.append(records[start : start + int(counts[g].sum())])
            continue
        group = [
            frame_records(
                [source.read(int(b["offset"]), int(b["stored_size"]))],
                int(b["raw_size"]),
                index.segment_bytes,
            )
            for b in blocks
            if b["raw_size"] > index.segment_bytes
        ]
        per_group.append(np.concatenate(group) if group else np.zeros(0, FRAME_DTYPE))
    return per_group, data_end
