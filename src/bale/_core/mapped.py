"""Zero-copy reads of uncompressed fixed-size columns: the file mapped once, each block's
checksum verified once, rows gathered straight from the mapping in a single copy."""

from __future__ import annotations

import contextlib
import math
import mmap
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from bale._core.blocks import check_block, normalized_bool
from bale._core.forksafe import ForkSafeLock
from bale._core.rowmap import RowGroupMap
from bale.codecs import stored_codec
from bale.codecs.simple import NoCompression
from bale.errors import CorruptFileError
from bale.format.constants import ALIGNMENT
from bale.format.footer import FileIndex
from bale.format.schema import Array, Column

_PAGE = mmap.PAGESIZE


def can_map(index: FileIndex, position: int) -> bool:
    """Whether every block of column ``position`` stores its rows as they are in memory: an
    array column of non-empty rows whose blocks all use codec ``none`` in a single segment and
    hold exactly their group's rows. A column with any other block is read by decoding, which
    reports the block that does not fit (the rows of a mapping would be cut from wrong bytes)."""
    column = index.schema.columns[position]
    if not isinstance(column.type, Array) or column.type.row_nbytes == 0 or index.num_rows == 0:
        return False
    blocks = index.blocks[:, position]
    if not len(blocks):
        return False
    codec_ids = np.unique(blocks["codec"]).tolist()
    if not all(isinstance(stored_codec(index.codecs[int(i)]), NoCompression) for i in codec_ids):
        return False
    sizes = blocks["stored_size"]
    return bool(
        (sizes == blocks["raw_size"]).all()
        and int(sizes.max()) <= int(index.segment_bytes)
        and not _misfit_groups(index, position).size
    )


def _misfit_groups(index: FileIndex, position: int) -> np.ndarray:
    """Row groups whose block of array column ``position`` (rows of at least one byte) does
    not hold exactly rows x row size bytes. Divides rather than multiplies: no product wraps."""
    column_type = index.schema.columns[position].type
    assert isinstance(column_type, Array) and column_type.row_nbytes > 0
    row_nbytes = np.uint64(column_type.row_nbytes)
    raw = index.blocks[:, position]["raw_size"]
    fits = (raw % row_nbytes == 0) & (raw // row_nbytes == index.groups["num_rows"])
    return np.flatnonzero(~fits)


class MappedColumn:
    """Rows of one uncompressed array column, read from a read-only mapping of the file.

    Every row starts at a multiple of ``unit`` bytes (blocks are 64-byte aligned, rows have a
    fixed size), so one strided view with a row starting at every unit turns any gather into a
    single NumPy fancy-index: one copy from the page cache, as a memmap does. A block's checksum
    is verified the first time any of its rows is read through this object (``verify=True``);
    damaged bytes raise CorruptFileError and are never returned.
    """

    def __init__(
        self,
        mapping: mmap.mmap,
        index: FileIndex,
        position: int,
        *,
        path: str,
        verify: bool,
    ) -> None:
        column = index.schema.columns[position]
        column_type = column.type
        if not isinstance(column_type, Array):
            raise TypeError("only array columns can be mapped")
        misfit = _misfit_groups(index, position)
        if misfit.size:
            group = int(misfit[0])
            start = int(index.groups[group]["row_start"])
            raise CorruptFileError(
                f"the block holds {int(index.blocks[group, position]['raw_size'])} bytes, expected "
                f"{int(index.groups[group]['num_rows']) * column_type.row_nbytes} for its rows",
                path=path,
                column=column.name,
                rows=(start, start + int(index.groups[group]["num_rows"])),
            )
        self.column: Column = column
        self.path = path
        self._mapping = mapping
        self._dtype = column_type.numpy_dtype
        self._shape = column_type.shape
        self._row_nbytes = column_type.row_nbytes
        unit = math.gcd(ALIGNMENT, self._row_nbytes)
        self._units_per_row = self._row_nbytes // unit
        data = np.frombuffer(mapping, np.uint8)
        self._rows_view = as_strided(
            data,
            shape=((len(data) - self._row_nbytes) // unit + 1, self._row_nbytes),
            strides=(unit, 1),
            writeable=False,
        )
        blocks = index.blocks[:, position]
        self._offsets = blocks["offset"].astype(np.int64)
        self._sizes = blocks["stored_size"].astype(np.int64)
        self._checksums = blocks["checksum"]
        if bool((self._offsets % unit).any()):
            raise CorruptFileError(
                f"a block of an uncompressed column is not {unit}-byte aligned",
                path=path,
                column=column.name,
            )
        self._first_unit = self._offsets // unit
        self._groups = RowGroupMap(index.groups["row_start"], index.groups["num_rows"])
        self._verified = np.zeros(len(blocks), bool) if verify else np.ones(len(blocks), bool)
        self._all_verified = not verify
        self._lock = ForkSafeLock()

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """Rows (valid, non-negative row numbers of the file, any order) as a new array."""
        rows = np.asarray(rows, np.int64)
        groups = self._groups.groups_of(rows)
        self._verify(groups)
        units = (
            self._first_unit[groups] + (rows - self._groups.starts[groups]) * self._units_per_row
        )
        out: np.ndarray = self._rows_view[units]
        return normalized_bool(out.view(self._dtype).reshape((len(rows), *self._shape)))

    def row(self, row: int) -> np.ndarray:
        """One row (a valid, non-negative row number) as a new array: ``gather`` without its
        NumPy index arithmetic, for single random rows."""
        group = self._groups.group_of(row)
        if not self._all_verified and not self._verified[group]:
            self._verify(np.array([group]))
        unit = (
            int(self._first_unit[group])
            + (row - self._groups.start_of(group)) * self._units_per_row
        )
        value: np.ndarray = self._rows_view[unit].view(self._dtype).reshape(self._shape)
        return normalized_bool(value.copy())

    def read(self, start: int, stop: int) -> np.ndarray:
        """Contiguous rows start..stop-1 as a new array."""
        return self.gather(np.arange(start, stop, dtype=np.int64))

    def verify_groups(self, groups: np.ndarray) -> None:
        """Check the blocks of these row groups now (a no-op for blocks already checked)."""
        self._verify(np.asarray(groups, np.int64))

    def _verify(self, groups: np.ndarray) -> None:
        if self._all_verified:  # the common case once an epoch has touched every block
            return
        pending = np.unique(groups[~self._verified[groups]])
        for group in pending.tolist():
            offset, size = int(self._offsets[group]), int(self._sizes[group])
            check_block(
                memoryview(self._mapping)[offset : offset + size],
                int(self._checksums[group]),
                path=self.path,
                column=self.column.name,
                rows=self._groups.rows_of(group),
            )
            with self._lock:
                self._verified[group] = True
        self._all_verified = bool(self._verified.all())

    def will_need(self, group: int) -> None:
        """Ask the kernel to start reading this group's block now (asynchronously)."""
        offset, size = int(self._offsets[group]), int(self._sizes[group])
        first = offset // _PAGE * _PAGE
        self._mapping.madvise(mmap.MADV_WILLNEED, first, offset + size - first)

    def release(self, groups: np.ndarray) -> None:
        """Unmap these groups' pages from this process (they stay in the OS page cache): a
        shuffled epoch then holds only the windows it serves, not the whole file, in RSS."""
        for group in np.asarray(groups, np.int64).tolist():
            offset, size = int(self._offsets[group]), int(self._sizes[group])
            first = -(-offset // _PAGE) * _PAGE  # whole pages inside the block only
            last = (offset + size) // _PAGE * _PAGE
            if last > first:
                self._mapping.madvise(mmap.MADV_DONTNEED, first, last - first)


def map_file(fileno: int) -> mmap.mmap:
    """A read-only shared mapping of a whole file."""
    return mmap.mmap(fileno, 0, access=mmap.ACCESS_READ)


def unmap(mapping: Any) -> None:
    """Close a mapping unless arrays still view it (then it closes when they are gone)."""
    with contextlib.suppress(BufferError):
        mapping.close()
