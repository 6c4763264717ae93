"""Checking a whole file (`bale verify`): every checksum, the header and row group records against
the footer, padding, the frame index, and with ``deep`` every block decoded."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bale._core.dataset import Dataset, reader_of
from bale._core.integrity import (
    block_place_problems,
    block_size_problem,
    check_group_record,
    check_header,
    decoded_problem,
    header_length_problem,
    padding_problems,
)
from bale._core.reader import FileReader
from bale._progress import Progress
from bale._types import Buffer
from bale.codecs import UnsupportedCodec
from bale.errors import BaleError, CorruptFileError
from bale.format.footer import BlockRecord
from bale.format.header import checksum
from bale.format.schema import Column, Unsupported
from bale.io.open import open_source
from bale.io.remote_url import redact_url

#: A row group up to this size is read with one read (its record, blocks and padding); a larger
#: one block by block, so memory stays about one block.
GROUP_READ_BYTES = 64 << 20

Part = Literal["footer", "header", "row group", "block", "frame index"]


@dataclass(frozen=True)
class Problem:
    """One thing found wrong: the ``part`` of the file, the row ``group`` (None for the header,
    footer and frame index) and the error naming file, column, rows and what disagreed."""

    part: Part
    group: int | None
    error: BaleError

    def to_json(self) -> dict[str, Any]:
        return {
            "part": self.part,
            "row_group": self.group,
            "column": self.error.column,
            "rows": list(self.error.rows) if self.error.rows is not None else None,
            "message": str(self.error),
        }


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of ``verify``: ``ok`` is True only if nothing was found wrong; ``problems``
    are the errors (``findings`` says which part of the file each concerns)."""

    path: str
    rows: int
    blocks_checked: int
    findings: list[Problem] = field(default_factory=list)
    row_groups: int = 0
    bytes_checked: int = 0
    deep: bool = False
    notes: list[str] = field(default_factory=list)
    #: Notes that only help explain damage (the header's metadata differs from the footer's,
    #: as after every ``bale pack``): in ``to_json()`` and beside damage, not on an intact file.
    quiet_notes: list[str] = field(default_factory=list)
    #: Columns whose kind, dtype or codec this bale does not know: checksums checked, not decoded.
    unsupported_columns: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[BaleError]:
        return [finding.error for finding in self.findings]

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        mode = ", every block decoded" if self.deep else ""
        if self.deep and self.unsupported_columns:
            mode += f" but those of {', '.join(map(repr, self.unsupported_columns))}"
        if self.ok:
            head = f"{self.path}: OK ({self.rows} rows, {self.blocks_checked} blocks checked{mode})"
            return "\n".join([head, *(f"  note: {note}" for note in self.notes)])
        notes = [f"  note: {note}" for note in [*self.notes, *self.quiet_notes]]
        counts = []
        parts: tuple[tuple[Part, int | None], ...] = (
            ("footer", None),
            ("header", None),
            ("frame index", None),
            ("row group", self.row_groups),
            ("block", self.blocks_checked),
        )
        for part, whole in parts:
            found = self._damaged(part)
            if found:
                label = {"row group": "row group record(s)", "block": "block(s)"}.get(part, part)
                counts.append(
                    f"{found} damaged {label} of {whole}" if whole is not None else f"the {label}"
                )
        lines = [f"{self.path}: DAMAGED: {'; '.join(counts)}"]
        lines += [f"  {problem}" for problem in self.problems]
        return "\n".join(lines + notes)

    def _damaged(self, part: Part) -> int:
        """How many row groups (blocks: (group, column) pairs) have a problem of this part."""
        return len({(f.group, f.error.column) for f in self.findings if f.part == part})

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (``bale verify --json``)."""
        return {
            "path": self.path,
            "ok": self.ok,
            "deep": self.deep,
            "rows": self.rows,
            "row_groups": self.row_groups,
            "blocks_checked": self.blocks_checked,
            "bytes_checked": self.bytes_checked,
            "problems": [finding.to_json() for finding in self.findings],
            "notes": [*self.notes, *self.quiet_notes],
            "unsupported_columns": list(self.unsupported_columns),
        }


def verify(
    path: str | os.PathLike[str],
    *,
    deep: bool = False,
    progress: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> VerifyReport:
    """Check a whole file and report everything found wrong; ``report.ok`` when nothing was.

    Always (passing proves the file holds exactly the bytes its writer wrote: every read returns
    them, and `bale repair`, which rebuilds a footer from the header and the row group records,
    would rebuild the same footer):

    - the trailer and footer checksums, and the footer's tables (checked when opening);
    - the header JSON: its checksum, its required keys, its schema and ``segment_bytes`` equal
      to the footer's (its metadata may differ, having changed after creation: a note; its
      ``created_by`` is free text with no second copy);
    - every row group's record at the footer's offset: the ``BGRP`` magic, the JSON length and
      checksum, and its JSON against the footer: rows, each block's offset (from the group's
      data start), stored size, raw size, checksum and codec, and the group's length;
    - the row groups in order, the first where the header ends; every block inside its group
      and aligned; every padding byte of the header and the groups zero;
    - every block's bytes against its checksum, and its raw size against the group's rows
      (array columns: rows x row size);
    - the frame index (format 1.1): its checksum, and each segmented block's frames against it.

    With ``deep``, also every block decoded with its codec: the stored bytes decode to the
    recorded size, bytes/string row lengths add up, strings are UTF-8 (passing proves every row
    decodes with the codec libraries installed here). Without it a block is checked as stored:
    one that a faulty encoder wrote (or a file crafted with matching checksums) passes, and
    fails when read. ``deep`` costs a decode of the whole file.

    Errors opening the file (not a bale file, a newer major version, no such file, the store
    unreachable) are raised. A damaged or missing footer is a problem in the report (a
    ``TruncatedFileError`` for an unfinished write: ``bale repair`` recovers it). ``path`` may
    be a URL, read with ``storage_options`` (see ``bale.open``); the report names it without
    credentials. ``progress`` draws a bar (blocks, MB/s) on a terminal.

    >>> verify("train.bale").ok  # doctest: +SKIP
    True
    >>> verify("s3://bucket/train.bale", deep=True, storage_options={"anon": True})  # doctest: +SKIP
    """
    try:
        ds = Dataset(path, verify=False, cache_bytes=0, storage_options=storage_options)
    except CorruptFileError as exc:
        return _unopenable(path, exc, deep, storage_options)
    with ds:
        return _Verifier(reader_of(ds), deep, progress).run()


def _unopenable(
    path: str | os.PathLike[str],
    exc: CorruptFileError,
    deep: bool,
    storage_options: Mapping[str, Any] | None,
) -> VerifyReport:
    """The report on a file that does not open: its footer or trailer is damaged or missing
    (an unfinished write), or its header's JSON length is."""
    shown = exc.path or redact_url(os.fspath(path))
    source = open_source(path, storage_options)
    try:
        header = header_length_problem(source)
    finally:
        source.close()
    if header is not None:
        problem = Problem("header", None, CorruptFileError(header, path=shown))
    else:
        problem = Problem("footer", None, exc)
    return VerifyReport(shown, 0, 0, [problem], deep=deep)


class _Verifier:
    """One run of ``verify`` over an open file."""

    def __init__(self, reader: FileReader, deep: bool, progress: bool) -> None:
        self.reader = reader
        self.source = reader.source
        self.index = reader.index
        self.path = reader.path
        self.deep = deep
        self.progress = progress
        self.findings: list[Problem] = []
        self.notes: list[str] = []
        self.quiet_notes: list[str] = []
        self.unsupported_columns: list[str] = []
        self.bytes_checked = 0

    def run(self) -> VerifyReport:
        index, schema = self.index, self.index.schema
        header = check_header(self.source, index)
        for problem in header.problems:
            self._add("header", None, f"{problem} (`bale repair` needs it to rebuild a footer)")
        self.quiet_notes = list(header.notes)
        frames_problem = self.reader.frames.problem()
        if frames_problem is not None:
            self._add("frame index", None, frames_problem)
        previous_end = header.end
        groups = len(index.groups)
        with Progress(
            self.progress, total=groups * len(schema), description="verifying", unit="blocks"
        ) as bar:
            for group in range(groups):
                record = index.groups[group]
                offset, length = int(record["offset"]), int(record["length"])
                if group == 0 and offset != header.end:
                    self._add(
                        "header",
                        None,
                        f"the header prefix's JSON length puts the first row group at byte "
                        f"{header.end}; the footer puts it at byte {offset}",
                    )
                elif offset < previous_end:
                    self._add(
                        "row group",
                        group,
                        f"the footer puts row group {group} at byte {offset}, inside the one "
                        f"before it (which ends at byte {previous_end})",
                    )
                previous_end = max(previous_end, offset + length)
                self._check_group(group, offset, length, bar, skip_frames=frames_problem)
        return VerifyReport(
            self.path,
            index.num_rows,
            groups * len(schema),
            self.findings,
            row_groups=groups,
            bytes_checked=self.bytes_checked,
            deep=self.deep,
            notes=self.notes,
            quiet_notes=self.quiet_notes,
            unsupported_columns=self.unsupported_columns,
        )

    def _check_group(
        self, group: int, offset: int, length: int, bar: Progress, skip_frames: str | None
    ) -> None:
        index, schema = self.index, self.index.schema
        num_rows = int(index.groups[group]["num_rows"])
        blocks = [
            BlockRecord(
                int(b["offset"]),
                int(b["stored_size"]),
                int(b["raw_size"]),
                int(b["checksum"]),
                index.codecs[int(b["codec"])],
            )
            for b in index.blocks[group]
        ]
        span = self._read(offset, length) if length <= GROUP_READ_BYTES else None

        def read(at: int, size: int) -> Buffer:
            if span is not None and offset <= at and at + size <= offset + length:
                return memoryview(span)[at - offset : at - offset + size]
            return self._read(at, size)

        record = check_group_record(read, offset, length, num_rows, blocks, schema)
        for problem in record.problems:
            self._add("row group", group, f"row group {group}: {problem}")
        placed = block_place_problems(offset, length, blocks, schema)
        for name, problem in placed:
            self._add("row group", group, f"row group {group}: {problem}", name)
        if record.json_end is not None and not placed:
            for problem in padding_problems(read, offset, length, record.json_end, blocks):
                self._add("row group", group, f"row group {group}: {problem}")
        for position, (column, block) in enumerate(zip(schema.columns, blocks, strict=True)):
            unsupported = self._unsupported(group, position, column, block.raw_size)
            size_problem = (
                None if unsupported else block_size_problem(column, num_rows, block.raw_size)
            )
            if size_problem is not None:
                self._add("block", group, size_problem, column.name)
                bar.update(1, nbytes=block.stored_size)
                continue
            payload = read(block.offset, block.stored_size)
            self.bytes_checked += block.stored_size
            if checksum(payload) != block.checksum:
                self._add(
                    "block",
                    group,
                    "block checksum mismatch (the stored bytes were changed or damaged)",
                    column.name,
                )
            else:
                frames = (
                    None
                    if skip_frames
                    else self.reader.frames.block_problem(group, position, payload)
                )
                if frames is not None:
                    self._add("frame index", group, frames, column.name)
                if self.deep and not unsupported:
                    self._decode(group, position, payload)
            bar.update(1, nbytes=block.stored_size)

    def _decode(self, group: int, position: int, payload: Buffer) -> None:
        column = self.index.schema.columns[position]
        try:
            decoded = self.reader.decode(group, position, column, payload)  # verify=False
        except BaleError as exc:
            self._add("block", group, exc.detail, column.name)
            return
        problem = decoded_problem(column, decoded, self.reader.groups.rows_of(group)[0])
        if problem is not None:
            self._add("block", group, problem, column.name)

    def _unsupported(self, group: int, position: int, column: Column, raw_size: int) -> bool:
        """Whether this bale cannot decode the block (a kind, dtype or codec added by a later
        minor): its checksum is still checked; its size and values cannot be, which is said once
        per column in the notes, not reported as damage."""
        what = None
        codec = self.reader.codec(group, position)
        if isinstance(column.type, Unsupported):
            what = column.type.what
        elif raw_size and isinstance(codec, UnsupportedCodec):
            what = f"codec {codec.config().get('id')!r}"
        if what is None:
            return False
        note = (
            f"column {column.name!r} uses {what}, unknown to this bale (written by a newer "
            "one?): its blocks' checksums were checked, their values could not be decoded"
        )
        if column.name not in self.unsupported_columns:
            self.unsupported_columns.append(column.name)
            self.notes.append(note)
        return True

    def _read(self, offset: int, size: int) -> Buffer:
        # Within the file (the footer's bounds were checked at open): a failure here is the
        # store's (network, I/O) and is raised, not reported as damage.
        return self.source.read(offset, size)

    def _add(self, part: Part, group: int | None, message: str, column: str | None = None) -> None:
        rows = self.reader.groups.rows_of(group) if group is not None else None
        error = CorruptFileError(message, path=self.path, column=column, rows=rows)
        self.findings.append(Problem(part, group, error))
