"""The engine behind a Dataset: one open file's footer, block reads, checksums, decoding, the
block cache, mapped uncompressed columns and stored-group copies. Internal API for bale's layers."""

from __future__ import annotations

import contextlib
import mmap
import os
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bale._core.blocks import (
    BlockCache,
    Decoded,
    StoredBlock,
    StoredGroup,
    check_block,
    check_readable,
    decode_column_block,
    unsupported_codec,
)
from bale._core.forksafe import ForkSafeLock
from bale._core.frames import MAX_FRAME_SHARE, FrameReader
from bale._core.layout import read_index
from bale._core.mapped import MappedColumn, can_map, map_file, unmap
from bale._core.rowmap import RowGroupMap
from bale.codecs import Codec, UnsupportedCodec, stored_codec
from bale.errors import BaleError, CorruptFileError
from bale.format.footer import FileIndex
from bale.format.schema import Array, Column, Schema, Unsupported
from bale.io.open import open_source
from bale.io.source import ByteSource, LocalSource

if TYPE_CHECKING:
    from bale.io.remote_client import RemoteOptions

DEFAULT_CACHE_BYTES = 64 << 20
#: A column whose decoded size, whole file, is at most this share of the block cache (labels,
#: ids, boxes) is pinned: each of its blocks is decoded at its first random row and kept while
#: the file is open, so its rows then cost a lookup, not a block decode. What is kept is taken
#: from the cache's budget.
PIN_SHARE = 1 / 8
#: Row groups requested from the kernel ahead of a sequential read, so disk reads overlap decoding.
READ_AHEAD_GROUPS = 2


class FileReader:
    """An open ``.bale`` file at block level: which bytes hold which rows, read and checked.

    Safe to share between threads: reads are positional and the cache is locked.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        verify: bool = True,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        storage_options: Mapping[str, Any] | None = None,
        remote_options: RemoteOptions | None = None,
    ) -> None:
        self.verify = verify
        self.source = open_source(path, storage_options, remote_options)
        # A reader dropped without close() (``bale.open(p)[3]``) releases its descriptor or its
        # client when it is collected, in whichever thread that happens. Not at interpreter
        # exit: the OS closes descriptors then, and a remote client's threads may be gone.
        self._finalizer = weakref.finalize(self, _release_source, self.source, os.getpid())
        self._finalizer.atexit = False
        self.path = self.source.path  # a URL without its credentials: what messages show
        try:
            self.index: FileIndex = read_index(self.source)[0]
        except BaseException:
            self.source.close()
            raise
        self.cache = BlockCache(cache_bytes)
        # Codec objects are built once per file, not per block: the hot path stays allocation-free.
        # An id this bale does not know opens as a stand-in: its blocks raise when read.
        try:
            self._codecs = [stored_codec(c) for c in self.index.codecs]
        except BaleError as exc:
            self.source.close()
            raise CorruptFileError(f"footer codec table: {exc.detail}", path=self.path) from exc
        self.groups = RowGroupMap(self.index.groups["row_start"], self.index.groups["num_rows"])
        # Uncompressed array columns of a local file are read from a mapping of the file (made on
        # first use); a remote object is read by ranges only.
        self.mappable = (
            {p for p in range(len(self.schema)) if can_map(self.index, p)}
            if isinstance(self.source, LocalSource)
            else set()
        )
        self._mapping: Any = None
        self._mapped: dict[int, MappedColumn] = {}
        self._map_lock = ForkSafeLock()
        # Random rows of segmented blocks are read frame by frame (format 1.1's frame index).
        self.frames = FrameReader(
            self.source, self.index, self._codecs, self.cache, self.groups, verify=verify
        )
        # Small columns' blocks, decoded once and kept (not evicted) while the file is open.
        self._pinned: dict[tuple[int, int], Decoded] = {}
        self._pin_lock = ForkSafeLock()
        self._pinnable = self._pinnable_columns()

    @property
    def schema(self) -> Schema:
        return self.index.schema

    @property
    def num_row_groups(self) -> int:
        return len(self.groups)

    @property
    def cache_bytes(self) -> int:
        return self.cache.capacity_bytes

    @cache_bytes.setter
    def cache_bytes(self, value: int) -> None:
        with self._pin_lock:  # small columns are pinned again, within the new budget
            self._pinned.clear()
            self.cache.release_reserved()
            self.cache.capacity_bytes = value
            self._pinnable = self._pinnable_columns()

    # -- columns ------------------------------------------------------------------------------

    def select(self, columns: Sequence[str] | None) -> list[tuple[int, Column]]:
        """(position, column) of each named column, all columns for ``None``. KeyError naming
        the file and its columns for an unknown name, TypeError for a bare string."""
        if columns is None:
            return list(enumerate(self.schema.columns))
        if isinstance(columns, str):
            raise TypeError("columns must be a list of names, not a single string")
        out = []
        for name in columns:
            if name not in self.schema:
                raise KeyError(
                    f"no column {name!r} in {self.path!r}; columns are {self.schema.names}"
                )
            out.append((self.schema.index(name), self.schema[name]))
        return out

    def check_columns(self, columns: Sequence[str] | None) -> None:
        """Raise as ``select`` does if any of ``columns`` is unknown."""
        self.select(columns)

    def decoded_group_bytes(self, columns: Sequence[str] | None = None) -> int:
        """Decoded size of an average row group for these columns (to size memory budgets)."""
        if not self.num_row_groups:
            return 0
        positions = [p for p, _ in self.select(columns)]
        return int(self.index.blocks[:, positions]["raw_size"].sum()) // self.num_row_groups

    def mapped_column(self, column: int | str) -> MappedColumn | None:
        """Zero-copy access to an uncompressed array column (codec ``none``), or None for any
        other column. Its rows are gathered straight from a read-only mapping of the file, and
        each block's checksum is verified the first time its rows are read."""
        position = column if isinstance(column, int) else self.schema.index(column)
        if position not in self.mappable:
            return None
        mapped = self._mapped.get(position)
        if mapped is not None:
            return mapped
        with self._map_lock:
            if position not in self._mapped:
                if self._mapping is None:
                    assert isinstance(self.source, LocalSource)  # only local columns map
                    self._mapping = map_file(self.source.fileno())
                self._mapped[position] = MappedColumn(
                    self._mapping, self.index, position, path=self.path, verify=self.verify
                )
            return self._mapped[position]

    # -- blocks -------------------------------------------------------------------------------

    def block(self, group: int, position: int, column: Column) -> Decoded:
        """A decoded block, from the cache or read, checked and decoded now."""
        cached = self.cache.get((group, position))
        if cached is not None:
            return cached
        return self.decode(group, position, column, None)

    def rows(self, group: int, position: int, column: Column, local: Sequence[int]) -> Any:
        """Rows ``local`` (within the group) of one column: an array for an array column, a
        list of bytes for a bytes/string column. A small column is served from its pinned copy;
        a segmented block not in the cache reads only the frames holding the rows; otherwise the
        whole block is read (then cached)."""
        if isinstance(column.type, Unsupported):  # rows_of only for the error: a hot path
            check_readable(column, path=self.path, rows=self.groups.rows_of(group))
        block = self._kept_block(group, position, column)
        if block is None:
            if self.frames.records(group, position) is not None:  # a segmented block, indexed
                rows: Any
                if isinstance(column.type, Array):
                    rows = self.frames.array_rows(group, position, column, local)
                else:
                    rows = self.frames.var_rows(group, position, local)
                if rows is not None:
                    return rows
            block = self.block(group, position, column)
        if isinstance(block, np.ndarray):
            return block[local]
        return [block.row(i) for i in local]

    def row(self, group: int, position: int, column: Column, local: int) -> Any:
        """Row ``local`` (within the group) of one column, as ``rows`` gives it but for one row:
        a read-only array (a view of a cached block or frame where it can be; a NumPy scalar for
        a scalar column) or bytes."""
        if isinstance(column.type, Unsupported):  # rows_of only for the error: a hot path
            check_readable(column, path=self.path, rows=self.groups.rows_of(group))
        block = self._kept_block(group, position, column)
        if block is None and self.frames.records(group, position) is not None:
            value = self.frames.one_row(group, position, column, local)
            if value is not None:
                return value
        if block is None:
            block = self.block(group, position, column)
        if isinstance(block, np.ndarray):
            return block[local]
        return block.row(local)

    def _kept_block(self, group: int, position: int, column: Column) -> Decoded | None:
        """A block already decoded: a small column's pinned block (pinned now if it is not
        yet), else the cached block, else None."""
        if position in self._pinnable:
            block = self._pinned.get((group, position))
            return block if block is not None else self._pin(group, position, column)
        return self.cache.get((group, position))

    def decodes_whole_block(self, group: int, position: int, rows: int) -> bool:
        """Whether reading ``rows`` rows of this block now means decoding it whole (not pinned,
        not cached, not read frame by frame): the work worth a thread of its own."""
        if position in self.mappable:
            return False
        if position in self._pinnable:
            return (group, position) not in self._pinned
        if self.cache.get((group, position)) is not None:
            return False
        records = self.frames.records(group, position)
        return records is None or rows > MAX_FRAME_SHARE * len(records)

    def pinned_bytes(self) -> int:
        """Bytes of small columns' blocks decoded and kept (``PIN_SHARE``)."""
        return sum(v.nbytes for v in self._pinned.values())

    def _pin(self, group: int, position: int, column: Column) -> Decoded:
        """Decode a small column's block and keep it while the file is open. Block by block, so
        damage is reported for the rows asked, as for any other column."""
        block = self._decode_block(group, position, column, None)
        with self._pin_lock:
            if (group, position) not in self._pinned:
                self._pinned[group, position] = block
                self.cache.reserve(block.nbytes)
            return self._pinned[group, position]

    def _pinnable_columns(self) -> set[int]:
        """Columns small enough to pin: decoded size, whole file, at most ``PIN_SHARE`` of the
        cache's budget, all of them together at most twice that. Mapped columns need no pin."""
        budget = self.cache.capacity_bytes * PIN_SHARE
        if not self.num_row_groups or budget <= 0:
            return set()
        sizes = self.index.blocks["raw_size"].sum(axis=0)
        small = sorted(
            (int(size), p)
            for p, size in enumerate(sizes.tolist())
            if p not in self.mappable and 0 < size <= budget
        )
        chosen: set[int] = set()
        total = 0
        for size, position in small:
            if total + size > 2 * budget:
                break
            chosen.add(position)
            total += size
        return chosen

    def load_block(self, group: int, column: str) -> Decoded:
        """One column's decoded block of one row group: an array of shape (rows, ...), or
        ``VarRows`` for bytes/strings. Reads, checks and decodes it (or takes it from the cache)."""
        self._check_group(group)
        position = self.schema.index(column)
        return self.block(group, position, self.schema.columns[position])

    def codec(self, group: int, position: int) -> Codec:
        """The codec of a block (built when the file was opened)."""
        return self._codecs[int(self.index.blocks[group, position]["codec"])]

    def decode(self, group: int, position: int, column: Column, payload: Any) -> Decoded:
        """Decode a block from ``payload`` (read now when None) into the cache."""
        cached = self.cache.get((group, position))
        if cached is not None:
            return cached
        block = self._decode_block(group, position, column, payload)
        self.cache.put((group, position), block)
        return block

    def _decode_block(self, group: int, position: int, column: Column, payload: Any) -> Decoded:
        record = self.index.blocks[group, position]
        if payload is None:
            payload = self._read_payload(record, column, group)
        return decode_column_block(
            payload,
            record,
            self._codecs[int(record["codec"])],
            column,
            int(self.groups.counts[group]),
            segment_bytes=self.index.segment_bytes,
            verify=self.verify,
            path=self.path,
            rows=self.groups.rows_of(group),
        )

    def prefetch_group(self, group: int, columns: Sequence[str] | None = None) -> int:
        """Read (one read when the blocks are adjacent), check and decode a row group's blocks
        into the block cache, ahead of use. Returns the decoded bytes now cached."""
        selected = self.select(columns)
        payloads = self.read_group_span(group, [p for p, _ in selected])
        return sum(
            self.decode(group, position, column, payloads.get(position)).nbytes
            for position, column in selected
        )

    def stored_group(self, group: int) -> StoredGroup:
        """Row group ``group`` as stored (compressed), every block's checksum verified, for
        ``Writer.write_stored_group``: copying between files without recompressing."""
        self._check_group(group)
        positions = list(range(len(self.schema)))
        spans = self.read_group_span(group, positions, use_cache=False)
        blocks = {}
        for position, column in enumerate(self.schema.columns):
            record = self.index.blocks[group, position]
            rows = self.groups.rows_of(group)
            # A copy is written as this bale's format: it cannot carry what it does not know.
            check_readable(column, path=self.path, rows=rows)
            codec = self._codecs[int(record["codec"])]
            if int(record["raw_size"]) and isinstance(codec, UnsupportedCodec):
                raise unsupported_codec(codec, path=self.path, column=column.name, rows=rows)
            payload = spans.get(position)
            if payload is None:
                payload = memoryview(self._read_payload(record, column, group))
            check_block(
                payload,
                int(record["checksum"]),
                path=self.path,
                column=column.name,
                rows=self.groups.rows_of(group),
            )
            blocks[column.name] = StoredBlock(
                [payload],
                int(record["raw_size"]),
                int(record["checksum"]),
                dict(self.index.codecs[int(record["codec"])]),
            )
        return StoredGroup(int(self.groups.counts[group]), blocks, self.index.segment_bytes)

    def read_group_span(
        self, group: int, positions: list[int], *, use_cache: bool = True
    ) -> dict[int, memoryview]:
        """Payloads of several blocks of one group with a single read, when they lie close."""
        needed = [p for p in positions if not use_cache or self.cache.get((group, p)) is None]
        if len(needed) < 2:
            return {}
        records = self.index.blocks[group, needed]
        start, end = _span(records)
        if end - start > 2 * int(records["stored_size"].sum()) + (1 << 16):
            return {}  # far apart: separate reads move less data
        try:
            span = memoryview(self.source.read(start, end - start))
        except BaleError as exc:
            raise CorruptFileError(
                exc.detail, path=self.path, rows=self.groups.rows_of(group)
            ) from exc
        return {
            p: span[int(r["offset"]) - start : int(r["offset"]) - start + int(r["stored_size"])]
            for p, r in zip(needed, records, strict=True)
        }

    def read_ahead(self, group: int, requested: int) -> int:
        """Ask the kernel for the groups after ``group`` (up to READ_AHEAD_GROUPS ahead) that
        were not asked for yet; returns the last group asked for."""
        groups = self.index.groups
        while requested < min(group + READ_AHEAD_GROUPS, self.num_row_groups - 1):
            requested += 1
            self.source.will_need(
                int(groups[requested]["offset"]), int(groups[requested]["length"])
            )
        return requested

    def hint_remote_group(self, group: int, columns: Sequence[str] | None = None) -> int:
        """For a remote file, start fetching the blocks of these columns of a row group in the
        background (the source's bounded read-ahead), ahead of reading them: the same span
        ``read_group_span`` reads. Returns the bytes asked for: 0 for a local file (the kernel
        reads ahead)."""
        if isinstance(self.source, LocalSource):
            return 0
        positions = [p for p, _ in self.select(columns)]
        if not positions:
            return 0
        start, end = _span(self.index.blocks[group, positions])
        if end > start:
            self.source.will_need(start, end - start)
        return max(0, end - start)

    def remote_ahead_bytes(self) -> int:
        """Bytes of row groups one reader may ask a remote file for ahead of its reads: half
        the source's read-ahead (two windows may be read at once); 0 for a local file."""
        if isinstance(self.source, LocalSource):
            return 0
        options = getattr(self.source, "options", None)
        return int(getattr(options, "read_ahead_bytes", 0)) // 2

    def payload(self, group: int, position: int) -> bytes | bytearray:
        """One block's stored bytes, unchecked (``decode`` checks them)."""
        self._check_group(group)
        record = self.index.blocks[group, position]
        return self._read_payload(record, self.schema.columns[position], group)

    def _read_payload(self, record: Any, column: Column, group: int) -> bytes | bytearray:
        try:
            return self.source.read(int(record["offset"]), int(record["stored_size"]))
        except BaleError as exc:
            raise CorruptFileError(
                exc.detail, path=self.path, column=column.name, rows=self.groups.rows_of(group)
            ) from exc

    def _check_group(self, group: int) -> None:
        if not 0 <= group < self.num_row_groups:
            raise IndexError(f"row group {group} out of range for {self.num_row_groups} groups")

    # -- lifecycle ----------------------------------------------------------------------------

    def evict_from_page_cache(self) -> None:
        """Drop this file from the OS page cache, the block cache and the pinned columns
        (cold-read measurements)."""
        self.cache.clear()
        with self._pin_lock:
            self._pinned.clear()
            self.cache.release_reserved()
        if self._mapping is not None:  # mapped pages are not dropped while a process maps them
            self._mapping.madvise(mmap.MADV_DONTNEED)
        self.source.evict_from_page_cache()

    def close(self) -> None:
        self.cache.clear()
        self._pinned.clear()
        with self._map_lock:
            self._mapped.clear()
            if self._mapping is not None:
                unmap(self._mapping)
                self._mapping = None
        self.source.close()


def _release_source(source: ByteSource, opened_by: int) -> None:
    """A collected reader's finalizer: close its source. In a forked child (a DataLoader worker)
    only a local file's own descriptor is closed (``LocalSource.close`` never closes the
    parent's); a remote source inherited from the parent is left alone, as closing it would take
    the process-wide lock, which the collecting thread may hold. Nothing is raised from a
    finalizer: a failed close has nothing left to tell."""
    if os.getpid() != opened_by and not isinstance(source, LocalSource):
        return
    with contextlib.suppress(Exception):
        source.close()


def _span(records: np.ndarray) -> tuple[int, int]:
    """``(start, end)`` of the file bytes from the first to the end of the last of these blocks."""
    return int(records["offset"].min()), int((records["offset"] + records["stored_size"]).max())
