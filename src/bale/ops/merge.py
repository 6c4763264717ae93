"""Merging bale files into one by copying their row groups' bytes as stored (`bale.merge`, the
last step of a distributed write): no block is decoded or recompressed, offsets, the frame index
and the footer are rebuilt; local files are copied inside the kernel (``copy_file_range``)."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bale._core.blocks import StoredBlock, check_block
from bale._core.groupsink import GroupSink, existing_frames
from bale._core.layout import read_index
from bale._progress import Progress
from bale.errors import BaleWriteError, SchemaError, TargetExistsError
from bale.format.constants import ALIGNMENT
from bale.format.footer import BLOCK_DTYPE, GROUP_DTYPE, FileIndex
from bale.format.schema import Schema
from bale.io.open import open_source
from bale.io.remote_url import is_remote, redact_url
from bale.io.sink import ByteSink, partial_path_for
from bale.io.source import ByteSource, LocalSource

__all__ = ["PER_FILE_KEYS", "MergeReport", "MergeSource", "merge"]

#: Metadata keys that describe how one input was made; a merged file does not inherit them.
PER_FILE_KEYS = ("bale.split", "bale.concat", "bale.merge", "bale.part")
#: Bytes moved per read/write when the kernel cannot copy (a URL, or ``verify=True``).
_CHUNK = 16 << 20
#: Bytes per copy_file_range call: a whole part in one call would leave the bar standing still.
_KERNEL_CHUNK = 256 << 20


@dataclass(frozen=True)
class MergeSource:
    """One input of a merge: its rows and row groups."""

    path: str
    rows: int
    row_groups: int


@dataclass(frozen=True)
class MergeReport:
    """What a merge wrote: the file, its rows, and what came from each input."""

    path: str
    rows: int
    file_bytes: int
    row_groups: int
    sources: tuple[MergeSource, ...]

    def summary(self) -> str:
        lines = [
            f"{self.path}: {self.rows} rows, {self.row_groups} row group(s), "
            f"{self.file_bytes / 2**20:.1f} MiB from {len(self.sources)} file(s)"
        ]
        lines += [f"  {s.path}: {s.rows} rows" for s in self.sources]
        return "\n".join(lines)


@dataclass
class MergeInput:
    """An input opened for merging: its source, index and frame-index records per group."""

    path: str  # as shown (a URL without credentials)
    source: ByteSource
    index: FileIndex
    frames: list[np.ndarray]


def merge(
    parts: Sequence[str | os.PathLike[str]],
    target: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    verify: bool = False,
    progress: bool = False,
) -> MergeReport:
    """Write the rows of ``parts``, in that order, to one new file ``target``, copying their row
    groups byte for byte: nothing is decoded or recompressed.

    >>> bale.merge(["part-0.bale", "part-1.bale"], "train.bale")  # doctest: +SKIP

    Parts and target may be local paths or URLs (``s3://``, ``gs://``, ``az://``; one
    ``storage_options`` for all of them). The parts must have the same column names and types
    and the same frame size (``segment_bytes``); otherwise ``SchemaError`` names the part and
    the column (``bale.concat`` re-encodes parts framed differently; merge never does).

    The target gets the first part's schema, and ``metadata`` if given, else the first part's
    metadata without the per-file keys (``bale.split``, ``bale.concat``, ``bale.merge``,
    ``bale.part``), plus ``"bale.merge": {"parts": N, "rows": [...], "differing_keys": [...]}``.
    It holds no path or time: merging the same parts gives the same bytes.

    Block checksums travel with the blocks and every read checks them; ``verify=True`` also
    checks each block while copying (a damaged part raises ``CorruptFileError`` naming it, the
    column and the rows) at the cost of reading the data through Python. A failed merge leaves
    nothing under ``target`` (nor ``target.partial``). ``progress=True`` draws a bar of the
    bytes copied on stderr when it is a terminal.
    """
    paths = [os.fspath(p) for p in parts]
    if isinstance(parts, (str, bytes)) or not paths:
        raise ValueError("merge needs a list of one or more part files")
    out = os.fspath(target)
    check_not_an_input(paths, out)
    with open_inputs(paths, storage_options) as inputs:
        check_inputs(inputs)
        merged_metadata = merge_metadata(
            [i.index.metadata for i in inputs], [i.index.num_rows for i in inputs], metadata
        )
        file_bytes = write_merged(
            inputs,
            out,
            inputs[0].index.schema,
            merged_metadata,
            overwrite=overwrite,
            storage_options=storage_options,
            verify=verify,
            progress=progress,
        )
        sources = tuple(MergeSource(i.path, i.index.num_rows, len(i.index.groups)) for i in inputs)
    shown = redact_url(out) if is_remote(out) else out
    return MergeReport(
        shown,
        sum(s.rows for s in sources),
        file_bytes,
        sum(s.row_groups for s in sources),
        sources,
    )


def check_not_an_input(paths: Sequence[str], target: str) -> None:
    """A ValueError when the output is also one of the inputs."""

    def key(p: str) -> str:
        return p if is_remote(p) else os.path.realpath(p)

    if key(target) in {key(p) for p in paths}:
        shown = redact_url(target) if is_remote(target) else target
        raise ValueError(f"the output {shown!r} is also an input: write to a new file")


@contextlib.contextmanager
def open_inputs(
    paths: Sequence[str], storage_options: Mapping[str, Any] | None
) -> Iterator[list[MergeInput]]:
    """Each input's index (trailer and footer checked) and frame records; closed on exit."""
    inputs: list[MergeInput] = []
    try:
        for path in paths:
            options = storage_options if is_remote(path) else None
            source = open_source(path, options)
            try:
                index, footer_offset = read_index(source)
                frames, _ = existing_frames(source, index, footer_offset)  # type: ignore[arg-type]
            except BaseException:
                source.close()
                raise
            inputs.append(MergeInput(source.path, source, index, frames))
        yield inputs
    finally:
        for item in inputs:
            item.source.close()


def differing_columns(a: Schema, b: Schema) -> list[str]:
    """The names, sorted, of the columns one schema lacks or types differently from the other
    (column order and codecs do not count)."""
    types_a = {c.name: c.type for c in a}
    types_b = {c.name: c.type for c in b}
    return sorted(n for n in set(types_a) | set(types_b) if types_a.get(n) != types_b.get(n))


def differing_keys(metas: Sequence[Mapping[str, Any]], excluded: Iterable[str]) -> list[str]:
    """The metadata keys, sorted, whose values are not the same in every mapping (a key missing
    from some counts as differing), leaving out ``excluded``."""
    skip = set(excluded)
    keys = sorted({k for m in metas for k in m if k not in skip})
    missing = object()
    return [k for k in keys if any(m.get(k, missing) != metas[0].get(k, missing) for m in metas)]


def check_inputs(inputs: Sequence[MergeInput]) -> None:
    """Every input has the first one's columns (names and types) and frame size."""
    first = inputs[0]
    shown = first.index.schema.describe()
    for item in inputs[1:]:
        differing = differing_columns(first.index.schema, item.index.schema)
        if differing:
            name = differing[0]
            other = {c.name for c in item.index.schema}
            if name not in other:
                what = f"lacks column {name!r} ({shown[name]}) that {first.path!r} has"
            elif name not in shown:
                what = f"has a column {name!r} ({item.index.schema.describe()[name]}) that {first.path!r} lacks"
            else:
                what = (
                    f"has column {name!r} as {item.index.schema.describe()[name]}, "
                    f"{first.path!r} as {shown[name]}"
                )
            raise SchemaError(f"cannot merge: {item.path!r} {what}", path=item.path, column=name)
        if item.index.segment_bytes != first.index.segment_bytes:
            raise SchemaError(
                f"cannot merge: {item.path!r} is framed in {item.index.segment_bytes}-byte "
                f"segments, {first.path!r} in {first.index.segment_bytes}-byte segments; merge "
                "copies blocks as stored and never re-encodes: write every part with the same "
                "segment_bytes= (random_access=True fits it to each part's rows), or use "
                "bale.concat, which re-encodes",
                path=item.path,
            )


def merge_metadata(
    metas: Sequence[Mapping[str, Any]],
    rows: Sequence[int],
    given: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The merged file's metadata: ``given``, else the first input's without its per-file
    keys; plus ``bale.merge`` (the number of parts, their rows, the keys whose values differ).
    Nothing that varies between runs (paths, times) goes in."""
    differing = differing_keys(metas, PER_FILE_KEYS)
    base = dict(given) if given is not None else dict(metas[0]) if metas else {}
    merged = {k: v for k, v in base.items() if k not in PER_FILE_KEYS}
    merged["bale.merge"] = {"parts": len(rows), "rows": list(rows), "differing_keys": differing}
    return merged


def write_merged(
    inputs: Sequence[MergeInput],
    target: str,
    schema: Schema,
    metadata: dict[str, Any],
    *,
    overwrite: bool,
    storage_options: Mapping[str, Any] | None,
    verify: bool,
    progress: bool = False,
) -> int:
    """Copy every input's row groups into ``target`` and finish it; the file's size. On any
    failure nothing is published and ``target.partial`` is removed. ``progress`` draws a bar
    of the row-group bytes copied."""
    remote = is_remote(target)
    if not remote and not overwrite and os.path.exists(target):
        raise TargetExistsError("the file exists; pass overwrite=True to replace it", path=target)
    file = GroupSink.create(
        target,
        overwrite=overwrite,
        segment_bytes=inputs[0].index.segment_bytes,
        storage_options=storage_options if remote else None,
    )
    total = sum(int(item.index.groups["length"].sum()) for item in inputs)
    bar = Progress(progress, total, "merging", unit="B")
    copier = _Copier(file.sink, verify, bar)
    try:
        file.start(schema, metadata)
        tables = _Tables(file)
        for item in inputs:
            order = [item.index.schema.index(name) for name in schema.names]
            groups = item.index.groups
            aligned = not len(groups) or (
                not (groups["offset"] % ALIGNMENT).any()
                and not (groups["length"] % ALIGNMENT).any()
            )
            if order == list(range(len(order))) and aligned:
                tables.add(item, copier.copy_groups(item))
                file.frames.extend(item.frames)
            else:  # column order differs: each group's header is rewritten (blocks as stored)
                tables.flush()
                _restage_groups(file, item, order, verify, bar)
        tables.flush()
        file.finish(metadata, commit=True)
    except BaseException:
        bar.close()
        copier.close()
        with contextlib.suppress(Exception):
            file.sink.discard()
        if not remote:
            with contextlib.suppress(OSError):
                os.remove(partial_path_for(target))
        raise
    bar.close()
    copier.close()
    return file.sink.offset


class _Tables:
    """Group and block records of copied inputs, added to the file's index in one go (adding
    them group by group would cost time quadratic in the number of groups)."""

    def __init__(self, file: GroupSink) -> None:
        self.file = file
        self.groups: list[np.ndarray] = []
        self.blocks: list[np.ndarray] = []

    def add(self, item: MergeInput, new_offsets: np.ndarray) -> None:
        index = self.file.require_index()
        old = item.index
        if not len(old.groups):
            return
        codec_map = np.array([_codec_number(index.codecs, c) for c in old.codecs], np.uint32)
        shift = new_offsets.astype(np.int64) - old.groups["offset"].astype(np.int64)
        groups = old.groups.copy()
        groups["offset"] = new_offsets
        blocks = old.blocks.copy()
        blocks["offset"] = (blocks["offset"].astype(np.int64) + shift[:, None]).astype(np.uint64)
        blocks["codec"] = codec_map[blocks["codec"]]
        self.groups.append(groups)
        self.blocks.append(blocks)

    def flush(self) -> None:
        if not self.groups:
            return
        index = self.file.require_index()
        groups = np.concatenate([index.groups, *self.groups]).astype(GROUP_DTYPE)
        counts = groups["num_rows"].astype(np.uint64)
        groups["row_start"] = np.concatenate([[0], np.cumsum(counts[:-1], dtype=np.uint64)])
        width = len(index.schema)
        blocks = [b for b in (index.blocks, *self.blocks) if len(b)]
        index.groups = groups
        index.blocks = (
            np.concatenate(blocks).astype(BLOCK_DTYPE)
            if blocks
            else np.zeros((0, width), BLOCK_DTYPE)
        )
        self.groups, self.blocks = [], []


def _codec_number(codecs: list[dict[str, Any]], codec: dict[str, Any]) -> int:
    if codec not in codecs:
        codecs.append(dict(codec))
    return codecs.index(codec)


def _restage_groups(
    file: GroupSink, item: MergeInput, order: list[int], verify: bool, bar: Progress
) -> None:
    """Copy an input whose columns are in another order: each group's blocks, as stored, under
    a new group header in the target's column order."""
    index = item.index
    for g, group in enumerate(index.groups):
        rows = (int(group["row_start"]), int(group["row_start"] + group["num_rows"]))
        blocks = []
        for position in order:
            record = index.blocks[g, position]
            payload = item.source.read(int(record["offset"]), int(record["stored_size"]))
            if verify:
                column = index.schema.columns[position].name
                check_block(
                    payload, int(record["checksum"]), path=item.path, column=column, rows=rows
                )
            blocks.append(
                StoredBlock(
                    [payload],
                    int(record["raw_size"]),
                    int(record["checksum"]),
                    dict(index.codecs[int(record["codec"])]),
                )
            )
        file.write_group(int(group["num_rows"]), blocks)
        bar.update(int(group["length"]))


class _Copier:
    """Moves runs of an input's bytes to the end of the sink: ``copy_file_range`` between local
    files (no bytes through Python; with ``verify``, after reading them to check), else reads
    and writes of ``_CHUNK`` bytes."""

    def __init__(self, sink: ByteSink, verify: bool, bar: Progress) -> None:
        self.sink = sink
        self.verify = verify
        self.bar = bar
        self._fd: int | None = None
        # A local file (a FileSink): a second descriptor on it is ours to write through.
        self._kernel = sink.keeps_partial and hasattr(os, "copy_file_range")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def copy_groups(self, item: MergeInput) -> np.ndarray:
        """Copy the input's row groups in order; their offsets in the target."""
        groups = item.index.groups
        new_offsets = np.zeros(len(groups), np.uint64)
        g = 0
        while g < len(groups):
            start = int(groups[g]["offset"])
            end = start + int(groups[g]["length"])
            last = g
            while last + 1 < len(groups) and int(groups[last + 1]["offset"]) == end:
                last += 1
                end += int(groups[last]["length"])
            destination = self.sink.offset
            new_offsets[g : last + 1] = destination + (groups["offset"][g : last + 1] - start)
            if self.verify:
                self._copy_checked(item, g, last)
            else:
                self._copy(item.source, start, end - start)
            g = last + 1
        return new_offsets

    def _copy(self, source: ByteSource, offset: int, length: int) -> None:
        if self._kernel and isinstance(source, LocalSource):
            with contextlib.suppress(_NoKernelCopy):
                self._kernel_copy(source, offset, length)
                return
        done = 0
        while done < length:
            chunk = source.read(offset + done, min(_CHUNK, length - done))
            self.sink.write([chunk], align=False)
            done += len(chunk)
            self.bar.update(len(chunk))

    def _kernel_copy(self, source: LocalSource, offset: int, length: int) -> None:
        if self._fd is None:
            self._fd = os.open(self.sink.path, os.O_WRONLY | os.O_CLOEXEC)
        start = self.sink.offset
        done = 0
        try:
            while done < length:
                n = os.copy_file_range(
                    source.fileno(),
                    self._fd,
                    min(_KERNEL_CHUNK, length - done),
                    offset + done,
                    start + done,
                )
                if n == 0:
                    raise BaleWriteError(
                        f"{source.path!r} ended {length - done} bytes early while copying",
                        path=self.sink.path,
                    )
                done += n
                self.bar.update(n)
        except OSError as exc:
            if done == 0 and exc.errno in _NO_KERNEL_COPY:
                self._kernel = False
                raise _NoKernelCopy from exc
            raise BaleWriteError(
                f"copying {length} bytes from {source.path!r} at offset {start} failed: "
                f"{exc.strerror or exc}",
                path=self.sink.path,
                errno=exc.errno,
                strerror=exc.strerror,
            ) from exc
        self.sink.offset = start + length

    def _copy_checked(self, item: MergeInput, first: int, last: int) -> None:
        """Groups ``first..last`` (adjacent), read in spans of about ``_CHUNK``, every block
        checked against its checksum before it is written."""
        index = item.index
        g = first
        while g <= last:
            start = int(index.groups[g]["offset"])
            end = g
            while (
                end < last
                and int(index.groups[end + 1]["offset"] + index.groups[end + 1]["length"]) - start
                <= _CHUNK
            ):
                end += 1
            stop = int(index.groups[end]["offset"] + index.groups[end]["length"])
            span = memoryview(item.source.read(start, stop - start))
            for group in range(g, end + 1):
                row_start = int(index.groups[group]["row_start"])
                rows = (row_start, row_start + int(index.groups[group]["num_rows"]))
                for position, column in enumerate(index.schema.columns):
                    record = index.blocks[group, position]
                    at = int(record["offset"]) - start
                    check_block(
                        span[at : at + int(record["stored_size"])],
                        int(record["checksum"]),
                        path=item.path,
                        column=column.name,
                        rows=rows,
                    )
            if self._kernel and isinstance(item.source, LocalSource):
                # The parts do not change: the checked bytes are copied by the kernel, which
                # is faster than writing them back from Python.
                self._copy(item.source, start, stop - start)
            else:
                self.sink.write([span], align=False)
                self.bar.update(stop - start)
            g = end + 1


class _NoKernelCopy(Exception):
    """copy_file_range cannot copy between these files: read and write instead."""


_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF}
