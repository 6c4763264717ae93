"""Rebuilding the footer of an interrupted file from its header and row groups (`bale repair`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from bale._core.layout import (
    Header,
    ScannedGroup,
    block_reads_back,
    read_header,
    read_index,
    scan_groups,
)
from bale._progress import Progress
from bale._version import __version__
from bale.codecs import UnsupportedCodec, stored_codec
from bale.errors import (
    BaleError,
    CodecError,
    TargetExistsError,
    UnsupportedFeatureError,
    UnsupportedVersionError,
)
from bale.format.constants import ALIGNMENT, FILE_MAGIC, FORMAT_VERSION, HEADER_PREFIX_SIZE
from bale.format.footer import FileIndex, pack_footer
from bale.format.header import pack_trailer, unpack_header_prefix
from bale.format.schema import Unsupported
from bale.io.sink import FileSink, partial_path_for
from bale.io.source import LocalSource, missing_file_error


@dataclass(frozen=True)
class RepairReport:
    """What ``repair`` did: the file it produced and how many rows it saved."""

    path: str
    repaired_from: str
    rows: int
    row_groups: int
    bytes_dropped: int
    already_complete: bool
    damaged_row_groups: list[int] = field(default_factory=list)
    skipped_bytes: int = 0
    #: the partial held no complete header (the writer died before its first row group), so
    #: there was nothing to recover and it was deleted; ``path`` was not created
    removed: bool = False
    #: the partial was complete (an aborted writer finishes it readable): it was published as it
    #: was, with its own footer (metadata set after creation included); nothing was dropped
    published_as_is: bool = False

    def summary(self) -> str:
        if self.removed:
            return (
                f"{self.repaired_from}: nothing to recover ({self.bytes_dropped} bytes, no "
                "complete header: the writer stopped before its first row group); removed it, "
                f"so {self.path} can be written afresh"
            )
        if self.already_complete:
            return f"{self.path}: already complete ({self.rows} rows); nothing to repair"
        if self.published_as_is:
            return (
                f"{self.path}: published {self.repaired_from} as it was ({self.rows} rows in "
                f"{self.row_groups} row group{'' if self.row_groups == 1 else 's'}; it was "
                "complete, from an aborted writer: nothing dropped)"
            )
        text = (
            f"{self.path}: recovered {self.rows} rows in {self.row_groups} row groups from "
            f"{self.repaired_from}; dropped {self.bytes_dropped} bytes of unfinished data"
        )
        if self.skipped_bytes:
            text += (
                f"; skipped {self.skipped_bytes} bytes of damaged row-group headers in the middle "
                "of the file (their rows are lost; later groups were kept)"
            )
        if self.damaged_row_groups:
            text += (
                f"; row groups {self.damaged_row_groups} have damaged blocks and will raise "
                "CorruptFileError when read"
            )
        return text


def repair(path: str | os.PathLike[str], *, progress: bool = False) -> RepairReport:
    """Make ``path`` a complete bale file again after an interrupted write.

    Repairs ``path`` itself if it exists (an interrupted append), else ``path.partial`` (an
    interrupted new file), which is then renamed to ``path``; ``NAME.partial`` given as ``path``
    is repaired as ``NAME`` (renamed to it) unless ``NAME`` exists. Every structurally complete row
    group is kept; a damaged group at the end (the one being written when the writer died) is
    dropped; a damaged group in the middle is kept and reported, so reading it raises
    ``CorruptFileError`` instead of its rows vanishing. Bytes of kept groups are never changed.
    ``progress=True`` draws a bar of the row groups checked on stderr when it is a terminal.

    >>> bale.ops.repair.repair("train.bale").summary()  # doctest: +SKIP
    'train.bale: recovered 5000 rows in 40 row groups from train.bale.partial; ...'
    """
    target = os.fspath(path)
    suffix = partial_path_for("")
    if target.endswith(suffix) and os.path.exists(target):
        final = target[: -len(suffix)]
        if final and not os.path.exists(final):
            # `bale repair NAME.partial` (the file the user sees) means NAME: it was repaired in
            # place and left named .partial, so NAME still read as missing
            return repair(final, progress=progress)
    partial = partial_path_for(target)
    if os.path.exists(target):
        complete = _complete_index(target)
        if complete is not None:
            return RepairReport(target, target, complete.num_rows, len(complete.groups), 0, True)
        repaired = _rebuild(target, progress)
    elif os.path.exists(partial):
        dropped = _remove_if_headerless(partial)
        if dropped is not None:
            return RepairReport(target, partial, 0, 0, dropped, False, removed=True)
        complete = _complete_partial(partial)
        if complete is not None:
            if os.path.exists(target):  # appeared meanwhile: never replace it silently
                raise TargetExistsError(f"complete data kept in {partial!r}", path=target)
            os.replace(partial, target)
            rows, groups = complete.num_rows, len(complete.groups)
            return RepairReport(target, partial, rows, groups, 0, False, published_as_is=True)
        repaired = _rebuild(partial, progress)
        if os.path.exists(target):  # appeared meanwhile: never replace it silently
            raise TargetExistsError(f"repaired data kept in {partial!r}", path=target)
        os.replace(partial, target)
    else:
        raise missing_file_error(target, f"nothing to repair: neither it nor {partial!r} exists")
    return RepairReport(target, *repaired)  # type: ignore[arg-type]


def _remove_if_headerless(partial: str) -> int | None:
    """Delete ``partial`` and return its size if it ends before its header JSON does (a writer
    killed before its first batch leaves 0 bytes): it holds no rows and not even a schema.
    Anything that does not start like a bale file is left alone (NotABaleFileError)."""
    sink = FileSink(partial, "update", alignment=ALIGNMENT)  # a live writer holds the lock
    source = LocalSource(partial)
    try:
        size = source.size()
        first = bytes(source.read(0, min(size, HEADER_PREFIX_SIZE)))
        if size < HEADER_PREFIX_SIZE and FILE_MAGIC.startswith(first[: len(FILE_MAGIC)]):
            headerless = True
        else:
            prefix = unpack_header_prefix(first, partial)
            headerless = size < HEADER_PREFIX_SIZE + prefix.json_length
        if headerless:
            os.unlink(partial)  # still under the lock: no writer can be using it
    finally:
        source.close()
        sink.close()
    return size if headerless else None


def _complete_partial(partial: str) -> FileIndex | None:
    """The index of a partial that is a complete file (an aborted writer finishes its partial
    readable), checked under the writer lock so a live writer's partial is never published;
    None when it needs rebuilding."""
    sink = FileSink(partial, "update", alignment=ALIGNMENT)  # FileLockedError if being written
    try:
        return _complete_index(partial)
    finally:
        sink.close()


def _complete_index(path: str) -> FileIndex | None:
    source = LocalSource(path)
    try:
        return read_index(source)[0]
    except BaleError:
        return None
    finally:
        source.close()


def _rebuild(path: str, progress: bool) -> tuple[str, int, int, int, bool, list[int], int]:
    source = LocalSource(path)
    sink = FileSink(
        path, "update", alignment=ALIGNMENT
    )  # takes the writer lock: never repair a file being written
    try:
        header = read_header(source)
        size = source.size()
        groups = list(scan_groups(source, header))
        _check_repairable(header, groups, path)
        damaged = []
        with Progress(progress, len(groups), "repairing", unit="row groups") as bar:
            for i, g in enumerate(groups):  # every block read back: the long part
                if not all(block_reads_back(source, b, header.segment_bytes) for b in g.blocks):
                    damaged.append(i)
                bar.update(1, nbytes=g.length)
        while damaged and damaged[-1] == len(groups) - 1:  # the unfinished tail
            damaged.pop()
            groups.pop()
        index = FileIndex.empty(header.schema, header.metadata, header.segment_bytes)
        for group in groups:
            index.append_group(group.num_rows, group.offset, group.length, group.blocks)
        data_end = groups[-1].offset + groups[-1].length if groups else header.end
        sink.offset = data_end
        footer = pack_footer(index, f"bale {__version__} (repaired)")
        footer_offset = sink.write([footer], align=False)
        sink.write([pack_trailer(footer_offset, footer)], align=False)
        sink.truncate_here()
        sink.sync()
    finally:
        sink.close()
        source.close()
    skipped = sum(g.skipped_before for g in groups)
    return path, index.num_rows, len(groups), max(0, size - data_end), False, damaged, skipped


def _check_repairable(header: Header, groups: list[ScannedGroup], path: str) -> None:
    """Refuse, before anything is written, a file this bale cannot give a true footer: one
    created by a newer minor version (the footer it writes would say this bale's version, lower
    than the header's, which readers refuse), or whose header schema or row groups use a
    column kind, dtype or codec a newer minor added (the footer would claim this bale's version
    for them). The file is left as it was, for a newer bale to repair."""
    major, minor = header.version
    mine = f"{FORMAT_VERSION[0]}.{FORMAT_VERSION[1]}"
    if minor > FORMAT_VERSION[1]:
        raise UnsupportedVersionError(
            f"cannot repair: the file was created by format {major}.{minor}; this bale writes "
            f"{mine} and would drop what {major}.{minor} added: repair it with a newer bale "
            "(the file is unchanged)",
            path=path,
        )
    for column in header.schema:
        if isinstance(column.type, Unsupported):
            raise UnsupportedFeatureError(
                f"cannot repair: {column.type.what} is not known to this bale (written by a "
                "newer bale? repair it with a newer bale; the file is unchanged)",
                path=path,
                column=column.name,
            )
    row = 0
    for group in groups:
        for column, block in zip(header.schema, group.blocks, strict=True):
            try:
                codec = stored_codec(block.codec)
            except CodecError:
                continue  # an invalid config: the block does not read back (damage, below)
            if isinstance(codec, UnsupportedCodec):
                raise UnsupportedFeatureError(
                    f"cannot repair: the row group at byte {group.offset} uses codec "
                    f"{codec.codec_id!r}, not known to this bale (written by a newer bale? "
                    "repair it with a newer bale; the file is unchanged)",
                    path=path,
                    column=column.name,
                    rows=(row, row + group.num_rows),
                )
        row += group.num_rows
