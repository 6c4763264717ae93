"""Re-encoding a file's columns with other codecs (`bale recompress`), row group by row group,
each new block decoded and compared with the old one before it is written.

>>> report = bale.recompress("feats.bale", "feats-small.bale", "auto", goal="smallest")  # doctest: +SKIP
>>> print(report.summary())  # doctest: +SKIP

Each row group of the input is read as stored (checksums verified), each column's block decoded
to its raw bytes, encoded with the column's new codec, decoded again and compared byte for byte
with the raw bytes, then written through ``bale.Writer.write_stored_group``: the output keeps the
input's schema (column names and types), metadata, row order, row groups and frame size, and
only the codecs change. A block whose codec is already the one asked for is copied as stored.
Memory stays bounded by about one row group (raw, old and new encodings of one block at a time).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bale._core.blocks import StoredBlock, StoredGroup
from bale._core.dataset import Dataset, reader_of
from bale._core.encode import encode_payload, written_codec
from bale._core.writer import Writer
from bale._progress import Progress
from bale.codecs import codec_from_config, codec_spec, parse_codec
from bale.codecs.framing import decode_block
from bale.errors import BaleError, CodecError, CorruptFileError, SchemaError, TargetExistsError
from bale.format.header import checksum_parts
from bale.format.schema import Column, Schema
from bale.io.open import open_source
from bale.io.remote_url import is_remote, redact_url
from bale.measure.advisor import DEFAULT_SAMPLE_BYTES, GOALS, Goal, measure_codecs, sample_file
from bale.ops.merge import check_not_an_input

__all__ = ["AUTO", "VERIFIED", "ColumnRecompressed", "RecompressReport", "recompress"]

#: The codec spec that means "what ``bale codecs`` recommends for this column".
AUTO = "auto"

#: How recompress checks what it writes, in words (the report and ``--help`` say it).
VERIFIED = (
    "each re-encoded block decoded again and compared byte for byte with the input's before "
    "it was written; blocks copied as stored: checksums checked"
)


@dataclass(frozen=True)
class ColumnRecompressed:
    """One column before and after: codecs (specs; several joined by ``|`` when the input's
    blocks differ), raw bytes, bytes stored, and how many blocks were re-encoded or copied."""

    name: str
    codec_before: str
    codec_after: str
    raw_bytes: int
    stored_before: int
    stored_after: int
    blocks_reencoded: int
    blocks_copied: int
    why: str  # "given", "auto (goal balanced)", "kept"

    @property
    def ratio_before(self) -> float:
        return self.raw_bytes / self.stored_before if self.stored_before else 1.0

    @property
    def ratio_after(self) -> float:
        return self.raw_bytes / self.stored_after if self.stored_after else 1.0


@dataclass(frozen=True)
class RecompressReport:
    """What ``recompress`` wrote: the output, each column's sizes before and after, the time
    spent measuring codecs (``--codec auto``) and in all."""

    source: str
    path: str
    rows: int
    row_groups: int
    columns: tuple[ColumnRecompressed, ...]
    file_bytes_before: int
    file_bytes_after: int
    measure_seconds: float
    seconds: float
    #: What the advisor recommended for the 'auto' columns (column -> spec; a column left out
    #: got bale's default for its type, as ``bale codecs`` advises then).
    advice: Mapping[str, str] = field(default_factory=dict)
    verified: str = VERIFIED

    def summary(self) -> str:
        name_w = max([len("column"), *(len(c.name) for c in self.columns)])
        before_w = max([len("codec before"), *(len(c.codec_before) for c in self.columns)])
        after_w = max([len("codec after"), *(len(c.codec_after) for c in self.columns)])
        lines = [
            f"{self.path}: {self.rows} rows in {self.row_groups} row group(s) from {self.source}",
            f"  {'column':<{name_w}}  {'codec before':<{before_w}}  {'codec after':<{after_w}}"
            f"  {'before':>10}  {'after':>10}  {'ratio':>13}  blocks",
        ]
        for c in self.columns:
            lines.append(
                f"  {c.name:<{name_w}}  {c.codec_before:<{before_w}}  {c.codec_after:<{after_w}}"
                f"  {_size(c.stored_before):>10}  {_size(c.stored_after):>10}"
                f"  {c.ratio_before:>5.2f}x->{c.ratio_after:>5.2f}x"
                f"  {c.blocks_reencoded} re-encoded, {c.blocks_copied} copied ({c.why})"
            )
        change = (
            self.file_bytes_after / self.file_bytes_before - 1 if self.file_bytes_before else 0.0
        )
        lines.append(
            f"  file: {_size(self.file_bytes_before)} -> {_size(self.file_bytes_after)} "
            f"({change:+.1%}) in {self.seconds:.1f} s"
            + (f" ({self.measure_seconds:.1f} s measuring codecs)" if self.measure_seconds else "")
        )
        lines.append(f"  verified: {self.verified}")
        return "\n".join(lines)


def recompress(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    codecs: str | Mapping[str, str] = AUTO,
    *,
    default: str | None = None,
    goal: Goal = "balanced",
    read_rate: float | None = None,
    sample_bytes: int = DEFAULT_SAMPLE_BYTES,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> RecompressReport:
    """Write ``src``'s rows to a new file ``dst`` with other codecs; return what changed.

    >>> bale.recompress("feats.bale", "new.bale")  # doctest: +SKIP
    >>> bale.recompress("feats.bale", "new.bale", "zstd:3")  # doctest: +SKIP
    >>> bale.recompress("feats.bale", "new.bale", {"x": "blosc2:lz4:5:shuffle"}, default="auto")  # doctest: +SKIP

    ``codecs``: one spec for every column (``"zstd:3"``, ``"none"``, ``"auto"``), or a mapping
    column -> spec; the columns a mapping leaves out get ``default`` (a spec or ``"auto"``), or
    keep their codecs when ``default`` is None. ``"auto"`` measures codecs on a sample of about
    ``sample_bytes`` of the largest such column, as ``bale codecs`` does, and applies its
    recommendation for ``goal`` and ``read_rate`` (``bale.measure.advisor``).

    Schema, metadata, row order, row groups and frame size are kept. Every re-encoded block is
    decoded again and compared byte for byte with the input's before it is written; blocks whose
    codec does not change are copied as stored (checksums checked). ``dst`` is written as
    ``dst.partial`` and renamed when complete (``bale.Writer``); on any error nothing is left
    under ``dst`` or ``dst.partial``. ``src`` and ``dst`` may be URLs (``s3://``, ``gs://``,
    ``az://``; ``https://`` for ``src``), with ``storage_options`` for their client.
    """
    started = time.perf_counter()
    source, target = os.fspath(src), os.fspath(dst)
    if goal not in GOALS:
        raise ValueError(f"goal must be one of {GOALS}, got {goal!r}")
    if storage_options and not (is_remote(source) or is_remote(target)):
        raise ValueError(
            "storage_options apply to URLs (s3://, gs://, az://, https://, ...); "
            f"{source!r} and {target!r} are local paths"
        )
    check_not_an_input([source], target)
    remote = is_remote(target)
    if not remote and os.path.exists(target) and not overwrite:
        raise TargetExistsError("the file exists; pass overwrite=True to replace it", path=target)
    src_options = storage_options if is_remote(source) else None
    with Dataset(source, cache_bytes=0, storage_options=src_options) as ds:
        wanted = _wanted_specs(ds, codecs, default)
        _check_specs(source, wanted)  # before anything is measured or written
        measure_started = time.perf_counter()
        targets, why, advice = _target_codecs(
            ds, source, wanted, goal, read_rate, sample_bytes, src_options
        )
        measure_seconds = time.perf_counter() - measure_started if AUTO in wanted.values() else 0.0
        schema = Schema(
            tuple(Column(c.name, c.type, targets.get(c.name) or dict(c.codec)) for c in ds.schema)
        )
        reader = reader_of(ds)
        before_bytes = reader.source.size()
        writer = Writer(
            target,
            schema,
            overwrite=overwrite,
            metadata=ds.metadata,
            segment_bytes=ds.index.segment_bytes,
            storage_options=storage_options if remote else None,
        )
        tally = {c.name: _Tally() for c in ds.schema}
        try:
            with Progress(progress, len(ds), "recompressing") as bar:
                for group in range(ds.num_row_groups):
                    stored = reader.stored_group(group)
                    span = reader.groups.rows_of(group)
                    blocks = {
                        name: _recoded(block, targets.get(name), stored, ds.path, name, span, tally)
                        for name, block in stored.blocks.items()
                    }
                    writer.write_stored_group(
                        StoredGroup(stored.num_rows, blocks, stored.segment_bytes)
                    )
                    bar.update(stored.num_rows, sum(b.raw_size for b in blocks.values()))
            writer.close()
        except BaseException:
            writer.discard()
            raise
        rows, groups, shown_source = len(ds), ds.num_row_groups, ds.path
    if remote:
        with contextlib.closing(open_source(target, storage_options)) as written:
            after_bytes = written.size()
        shown_target = redact_url(target)
    else:
        after_bytes, shown_target = os.path.getsize(target), target
    columns = tuple(
        tally[c.name].result(c.name, dict(c.codec), targets.get(c.name), why[c.name])
        for c in schema
    )
    return RecompressReport(
        shown_source,
        shown_target,
        rows,
        groups,
        columns,
        before_bytes,
        after_bytes,
        measure_seconds,
        time.perf_counter() - started,
        advice,
    )


def _wanted_specs(
    ds: Dataset, codecs: str | Mapping[str, str], default: str | None
) -> dict[str, str]:
    """Column -> the spec asked for (``"auto"`` included); columns left out keep their codecs."""
    if isinstance(codecs, str):
        if default is not None:
            raise ValueError("default= goes with a mapping of codecs, not with one spec for all")
        return {name: codecs.strip().lower() for name in ds.schema.names}
    unknown = sorted(set(codecs) - set(ds.schema.names))
    if unknown:
        raise SchemaError(
            f"codecs given for unknown columns {unknown}; the columns are {ds.schema.names}",
            path=ds.path,
            column=unknown[0],
        )
    wanted = {name: spec.strip().lower() for name, spec in codecs.items()}
    if default is not None:
        for name in ds.schema.names:
            wanted.setdefault(name, default.strip().lower())
    return wanted


def _check_specs(source: str, wanted: Mapping[str, str]) -> None:
    """Refuse a codec spec that does not parse, naming the file and the columns it was for."""
    columns_of: dict[str, list[str]] = {}
    for name, spec in wanted.items():
        if spec != AUTO:
            columns_of.setdefault(spec, []).append(name)
    for spec, names in columns_of.items():
        try:
            parse_codec(spec)
        except CodecError as exc:
            column = names[0] if len(names) == 1 else None
            which = "" if column else f" (for columns {names})"
            raise CodecError(f"{exc.detail}{which}", path=source, column=column) from exc


def _target_codecs(
    ds: Dataset,
    source: str,
    wanted: Mapping[str, str],
    goal: Goal,
    read_rate: float | None,
    sample_bytes: int,
    storage_options: Mapping[str, Any] | None,
) -> tuple[dict[str, dict[str, Any]], dict[str, str], dict[str, str]]:
    """(column -> the codec config to write, column -> why, the advisor's picks), for the
    columns asked for."""
    why = {name: "kept" for name in ds.schema.names}
    targets: dict[str, dict[str, Any]] = {}
    auto = [name for name in ds.schema.names if wanted.get(name) == AUTO]
    sample: dict[str, Any] = {}
    picks: dict[str, str] = {}
    if auto and len(ds):
        sample = sample_file(
            source,
            columns=auto,
            max_bytes=sample_bytes,
            storage_options=storage_options,
        )
        picks = measure_codecs(sample).recommend(goal, read_rate)
    for column in ds.schema:
        spec = wanted.get(column.name)
        if spec is None:
            continue
        if spec == AUTO:
            why[column.name] = f"auto, goal {goal}"
            pick = picks.get(column.name)
            # No pick: the advisor's choice is bale's default for the type, in a form no spec
            # expresses (channels-last images), or there are no rows to measure.
            given = parse_codec(pick) if pick is not None else None
            codec = written_codec(column.type, given, sample.get(column.name))
        else:
            why[column.name] = "given"
            codec = written_codec(column.type, parse_codec(spec))
        targets[column.name] = codec.config()
    return targets, why, picks


def _recoded(
    block: StoredBlock,
    target: dict[str, Any] | None,
    group: StoredGroup,
    path: str,
    column: str,
    rows: tuple[int, int],
    tally: dict[str, _Tally],
) -> StoredBlock:
    """``block`` in the ``target`` codec, checked by decoding it again; as stored when it
    already is in that codec (or no codec was asked for)."""
    count = tally[column]
    count.add_before(block)
    if target is None or block.codec == target:
        count.add_after(block, reencoded=False)
        return block
    payload = _joined(block.parts)
    try:
        raw = decode_block(
            codec_from_config(block.codec), payload, block.raw_size, group.segment_bytes
        )
    except CorruptFileError as exc:
        raise CorruptFileError(exc.detail, path=path, column=column, rows=rows) from exc
    raw_view = memoryview(raw).cast("B")
    if len(raw_view) != block.raw_size:
        raise CorruptFileError(
            f"block decoded to {len(raw_view)} bytes, expected {block.raw_size}",
            path=path,
            column=column,
            rows=rows,
        )
    codec = codec_from_config(target)
    parts = encode_payload(codec, raw_view, group.segment_bytes)
    again = decode_block(codec, _joined(parts), block.raw_size, group.segment_bytes)
    if memoryview(again).cast("B") != raw_view:
        raise BaleError(
            f"the block re-encoded with {codec_spec(target)} does not decode to the same "
            "bytes: nothing was published; try another codec",
            path=path,
            column=column,
            rows=rows,
        )
    new = StoredBlock(parts, block.raw_size, checksum_parts(parts), dict(target))
    count.add_after(new, reencoded=True)
    return new


def _joined(parts: list[Any]) -> memoryview:
    if len(parts) == 1:
        return memoryview(parts[0]).cast("B")
    return memoryview(b"".join(memoryview(p).cast("B") for p in parts))


class _Tally:
    """One column's counts as the groups go by."""

    def __init__(self) -> None:
        self.raw = self.before = self.after = self.reencoded = self.copied = 0
        self.codecs_before: dict[str, None] = {}  # in order of first use
        self.codecs_after: dict[str, None] = {}

    def add_before(self, block: StoredBlock) -> None:
        self.raw += block.raw_size
        self.before += block.stored_size
        self.codecs_before[codec_spec(block.codec)] = None

    def add_after(self, block: StoredBlock, *, reencoded: bool) -> None:
        self.after += block.stored_size
        self.codecs_after[codec_spec(block.codec)] = None
        if reencoded:
            self.reencoded += 1
        else:
            self.copied += 1

    def result(
        self, name: str, schema_codec: dict[str, Any], target: dict[str, Any] | None, why: str
    ) -> ColumnRecompressed:
        before = "|".join(self.codecs_before) or codec_spec(schema_codec)
        after = "|".join(self.codecs_after) or codec_spec(target or schema_codec)
        return ColumnRecompressed(
            name,
            before,
            after,
            self.raw,
            self.before,
            self.after,
            self.reencoded,
            self.copied,
            why,
        )


def _size(n: int) -> str:
    if n < 2**20:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 2**20:.1f} MiB"
