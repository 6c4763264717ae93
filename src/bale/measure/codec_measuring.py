"""Measuring codecs on a sample, each column encoded exactly as ``bale.Writer`` stores it (the
shared encode path, ``bale._core.encode``): which candidates, timing on one thread, and the
check that every candidate gives its input back."""

from __future__ import annotations

import gc
import math
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from bale._core.batches import ColumnData, infer_type, to_column_data
from bale._core.defaults import DEFAULT_ROW_GROUP_BYTES, looks_compressed
from bale._core.encode import (
    column_row_bytes,
    encode_payload,
    raw_block,
    raw_nbytes,
    rows_per_group,
    sniff_rows,
    written_codec,
)
from bale._progress import Progress
from bale.codecs import Codec, NoCompression, codec_spec, parse_codec
from bale.codecs.framing import decode_block
from bale.errors import BaleError, CodecError, CorruptFileError
from bale.format.constants import DEFAULT_SEGMENT_BYTES
from bale.format.schema import Array, Bytes, ColumnType
from bale.measure.codec_report import (
    GOALS,
    TINY_COLUMN_SHARE,
    AdvisorReport,
    CodecResult,
    ColumnReport,
    Goal,
)
from bale.measure.codec_words import describe_column
from bale.measure.machine import describe_machine
from bale.measure.sampling import DEFAULT_SAMPLE_BYTES

__all__ = ["candidate_codecs", "measure_codecs", "recommend_codecs"]

MB: Final[float] = 1e6

# Default candidates whose first row group predicts more compression CPU time than this over
# the whole sample are skipped (zstd 19, blosc2 clevel 9 on 16 MB); `thorough=True` measures them.
_SLOW_CODEC_SECONDS: Final[float] = 1.0
# Compression is repeated only while its total time stays under this; decoding, which the
# goals weigh most, always gets every repeat.
_COMPRESS_REPEAT_SECONDS: Final[float] = 0.3

_STANDALONE: Final[tuple[str, ...]] = ("none", "lz4", "zstd:1", "zstd:3", "zstd:9", "zstd:19")
_ALREADY_COMPRESSED: Final[tuple[str, ...]] = ("none", "lz4", "zstd:1", "zstd:3")
# blosc2 maps zstd clevel c to libzstd level 2c-1, and clevel 9 to 22 (~5 MB/s).
_BLOSC2_QUICK: Final[tuple[tuple[str, int], ...]] = (("lz4", 5), ("zstd", 1), ("zstd", 5))
_BLOSC2_THOROUGH: Final[tuple[tuple[str, int], ...]] = tuple(
    (cname, level) for cname in ("lz4", "zstd", "zlib") for level in (1, 5, 9)
)


def measure_codecs(
    samples: Mapping[str, Any],
    *,
    candidates: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    repeats: int = 3,
    threads: int = 1,
    thorough: bool = False,
    row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES,
    max_bytes: int = DEFAULT_SAMPLE_BYTES,
    progress: bool = False,
) -> AdvisorReport:
    """Measure codecs on each column of ``samples`` (a batch as given to ``Writer.write``).

    ``candidates``: specs for every column, or a mapping column -> specs; by default a set that
    suits each column's kind (``candidate_codecs``), plus the codec bale would pick by default.
    ``none`` is always measured. ``threads`` measures that many columns at once (each codec
    still runs on one thread). Each column is cut into row groups of about ``row_group_bytes``
    as the Writer would; above ``max_bytes`` of a column, evenly spread groups are kept.
    A column holding less than ``TINY_COLUMN_SHARE`` (1%) of each row's raw bytes (a label
    beside images) is tiny: unless ``candidates`` name codecs for it, only bale's default is
    measured, and every goal keeps it. ``progress``: a bar on a terminal, one step per codec.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    started = time.perf_counter()
    columns = _prepare(samples, row_group_bytes, max_bytes)
    plans = {
        name: _plan(name, prepared, candidates, thorough) for name, prepared in columns.items()
    }
    total = sum(plan.steps for plan in plans.values())

    with Progress(progress, total, "measuring codecs", unit="codecs") as bar:

        def run(item: tuple[str, _Prepared]) -> ColumnReport:
            name, prepared = item
            plan = plans[name]
            planned = plan.steps
            done = 0

            def measured(raw_bytes: int) -> None:
                nonlocal done
                done += 1
                if done <= planned:
                    bar.update(1, nbytes=raw_bytes)

            report = _measure_column(
                name,
                prepared,
                plan.specs,
                repeats,
                limit_time=not (plan.explicit or thorough),
                tiny=plan.tiny,
                measured=measured,
            )
            if done < planned:  # duplicates of one config and invalid specs are not measured
                bar.update(planned - done)
            return report

        items = list(columns.items())
        if threads > 1 and len(items) > 1:
            with ThreadPoolExecutor(
                min(threads, len(items)), thread_name_prefix="bale-advisor"
            ) as ex:
                reports = list(ex.map(run, items))
        else:
            reports = [run(item) for item in items]
    return AdvisorReport(
        columns={r.name: r for r in reports},
        machine=describe_machine(),
        cores=os.cpu_count() or 1,
        repeats=repeats,
        seconds=time.perf_counter() - started,
    )


def recommend_codecs(
    samples: Mapping[str, Any],
    goal: Goal = "balanced",
    *,
    read_rate: float | None = None,
) -> dict[str, str]:
    """Column -> codec spec chosen by measuring ``samples`` (see ``measure_codecs`` and the goals
    in ``bale.measure.advisor``). ``read_rate``: MB/s of raw data the training must read per core;
    the pick then decodes at least that fast.

    >>> codecs = recommend_codecs(first_batch, "balanced")  # doctest: +SKIP
    >>> bale.write("train.bale", data, codecs=codecs)  # doctest: +SKIP
    """
    if goal not in GOALS:
        raise ValueError(f"goal must be one of {GOALS}, got {goal!r}")
    return measure_codecs(samples).recommend(goal, read_rate)


def candidate_codecs(
    column_type: ColumnType, sniff: Sequence[bytes] = (), *, thorough: bool = False
) -> list[str]:
    """The specs worth measuring for a column: ``sniff`` holds a few rows of a bytes column, to
    recognise already-compressed media (measured quickly: none, lz4, zstd 1 and 3)."""
    if not isinstance(column_type, Array):
        if isinstance(column_type, Bytes) and looks_compressed(sniff) and not thorough:
            return list(_ALREADY_COMPRESSED)
        return list(_STANDALONE)
    if column_type.numpy_dtype.itemsize == 1:
        # Shuffling bytes of 1-byte items changes nothing; bytedelta differences neighbours.
        filters: tuple[str, ...] = ("bitshuffle", "shuffle+bytedelta")
    else:
        filters = ("shuffle", "bitshuffle", "shuffle+bytedelta")
    grid = _BLOSC2_THOROUGH if thorough else _BLOSC2_QUICK
    blosc2 = [f"blosc2:{cname}:{level}:{f}" for cname, level in grid for f in filters]
    return [*_STANDALONE, *blosc2]


@dataclass(frozen=True)
class _Plan:
    specs: list[str]  # the candidates to measure besides none and bale's default
    explicit: bool  # named by the caller: measured whatever they cost, even for a tiny column
    tiny: bool  # only bale's default is measured

    @property
    def steps(self) -> int:
        """Progress steps of the column: ``none`` and each spec, or one for a tiny column."""
        return 1 if self.tiny else len(self.specs) + 1


def _plan(
    name: str,
    prepared: _Prepared,
    candidates: Sequence[str] | Mapping[str, Sequence[str]] | None,
    thorough: bool,
) -> _Plan:
    if isinstance(candidates, Mapping):
        named = list(candidates.get(name, ()))
    else:
        named = list(candidates) if candidates is not None else []
    if named:
        return _Plan(named, explicit=True, tiny=False)
    if prepared.row_share < TINY_COLUMN_SHARE:
        return _Plan([], explicit=False, tiny=True)
    return _Plan(
        candidate_codecs(prepared.type, prepared.sniff, thorough=thorough), False, tiny=False
    )


@dataclass(frozen=True)
class _Prepared:
    type: ColumnType
    blocks: list[memoryview]  # raw bytes of each row group, as the Writer would encode them
    rows: int
    sniff: list[bytes]  # first rows of a bytes column (recognising compressed media)
    data: Any  # the column's data in stored form (for describing it)
    row_share: float  # the column's part of each row's raw bytes


def _prepare(
    samples: Mapping[str, Any], row_group_bytes: int, max_bytes: int
) -> dict[str, _Prepared]:
    """Each column converted and cut into row groups exactly as the Writer would store it."""
    if not samples:
        raise ValueError("samples must hold at least one column")
    types: dict[str, ColumnType] = {}
    converted: dict[str, ColumnData] = {}
    lengths = set()
    for name, value in samples.items():
        types[name] = infer_type(name, value)
        n = len(value)
        converted[name] = to_column_data(name, types[name], value, "<sample>", (0, n))
        lengths.add(n)
    if len(lengths) > 1 or 0 in lengths:
        sizes = {name: len(samples[name]) for name in samples}
        raise BaleError(f"sample columns need the same number of rows (> 0), got {sizes}")
    n = lengths.pop()
    row_bytes_of = column_row_bytes(converted, n)
    per_group = rows_per_group(row_bytes_of, row_group_bytes)
    row_bytes = sum(row_bytes_of.values())
    out = {}
    for name, data in converted.items():
        column_type = types[name]
        starts = list(range(0, n, per_group))
        column_group_bytes = raw_nbytes(data) / len(starts)
        keep = max(1, math.ceil(max_bytes / max(column_group_bytes, 1.0)))
        if keep < len(starts):
            picked = np.unique(np.linspace(0, len(starts) - 1, keep).round().astype(int))
            starts = [starts[int(i)] for i in picked]
        blocks = [raw_block(data[a : min(a + per_group, n)]) for a in starts]
        sniff = sniff_rows(data) if isinstance(column_type, Bytes) else []
        share = row_bytes_of[name] / row_bytes if row_bytes else 1.0
        out[name] = _Prepared(column_type, blocks, n, sniff, data, max(share, 1e-9))
    return out


def _as_written(spec: str, column_type: ColumnType) -> Codec:
    """The codec ``Writer(codecs={column: spec})`` records for this column type."""
    return written_codec(column_type, parse_codec(spec))


def _measure_column(
    name: str,
    prepared: _Prepared,
    specs: Sequence[str],
    repeats: int,
    *,
    limit_time: bool,
    tiny: bool = False,
    measured: Callable[[int], None] | None = None,
) -> ColumnReport:
    default = written_codec(prepared.type, first_rows=prepared.data)  # what the Writer picks
    default_config = default.config()
    chosen: list[tuple[str, Codec, bool]] = []  # (spec, codec as written, time-limited)
    excluded: dict[str, str] = {}
    for spec in [] if tiny else ["none", *specs]:
        try:
            codec = _as_written(spec, prepared.type)
        except CodecError as exc:
            excluded[spec] = f"invalid spec: {exc}"
            continue
        if all(c.config() != codec.config() for _, c, _ in chosen):
            # bale's default is the baseline: measured whatever it costs.
            limited = limit_time and codec.config() != default_config
            chosen.append((codec_spec(codec.config()), codec, limited))
    settable_default = any(c.config() == default_config for _, c, _ in chosen)
    if not settable_default:
        chosen.append((codec_spec(default_config), default, False))

    results = []
    for spec, codec, limited in chosen:
        config = codec.config()
        is_default = config == default_config
        settable = not is_default or settable_default
        try:
            result = _measure_codec(codec, prepared.blocks, repeats, limited)
            if measured is not None:
                measured(result.raw_bytes)
        except _Skipped as exc:
            excluded[spec if settable else f"{spec} (bale's default)"] = str(exc)
            continue
        except CodecError as exc:  # the codec refused this data: report it, measure the rest
            excluded[spec] = f"failed: {type(exc).__name__}: {exc}"
            continue
        results.append(
            CodecResult(
                spec,
                config,
                result.raw_bytes,
                result.stored_bytes,
                result.compress_mbps,
                result.decompress_mbps,
                result.compress_wall_mbps,
                result.decompress_wall_mbps,
                is_default=is_default,
                settable=settable,
            )
        )
    results.sort(key=lambda r: (-r.ratio, -r.decompress_mbps))
    return ColumnReport(
        name=name,
        column_type=prepared.type,
        rows=prepared.rows,
        raw_bytes=sum(len(b) for b in prepared.blocks),
        description=describe_column(prepared.type, prepared.data, prepared.sniff),
        results=results,
        excluded=excluded,
        row_share=prepared.row_share,
        tiny=tiny,
    )


class _Skipped(Exception):
    """A candidate left out (too slow for a quick run, or not giving its input back)."""


@dataclass(frozen=True)
class _Measured:
    raw_bytes: int
    stored_bytes: int
    compress_mbps: float  # per second of the measuring thread's CPU time
    decompress_mbps: float
    compress_wall_mbps: float  # per second of wall-clock time (perf_counter)
    decompress_wall_mbps: float


@dataclass(frozen=True)
class _Timing:
    cpu_s: float
    wall_s: float


def _measure_codec(
    codec: Codec, blocks: list[memoryview], repeats: int, limit_time: bool
) -> _Measured:
    raw_bytes = sum(len(b) for b in blocks)
    segment = DEFAULT_SEGMENT_BYTES
    if isinstance(codec, NoCompression):
        # Stored as is: writing and reading do no codec work (reads are zero-copy views).
        return _Measured(raw_bytes, raw_bytes, math.inf, math.inf, math.inf, math.inf)
    codec.warm_up()  # its library is imported on first use: never inside a timer
    if limit_time and len(blocks) > 1:
        first = _timed(lambda: encode_payload(codec, blocks[0], segment))
        # CPU time, not wall time: which candidates run should not depend on the machine's load.
        projected = first.cpu_s * raw_bytes / max(len(blocks[0]), 1)
        if projected > _SLOW_CODEC_SECONDS:
            raise _Skipped(
                f"skipped: compressing the sample would take about {projected:.1f} s of CPU "
                "(measure it with thorough=True / --thorough)"
            )
    payloads: list[bytes] = []

    def compress() -> None:
        payloads[:] = [_joined(encode_payload(codec, b, segment)) for b in blocks]

    compress_times = [_timed(compress)]
    while (
        len(compress_times) < repeats
        and sum(t.wall_s for t in compress_times) < _COMPRESS_REPEAT_SECONDS
    ):
        compress_times.append(_timed(compress))
    for block, payload in zip(blocks, payloads, strict=True):
        try:
            decoded = decode_block(codec, memoryview(payload), len(block), segment)
        except CorruptFileError as exc:
            raise _Skipped(f"excluded: decoding failed ({type(exc).__name__}: {exc})") from exc
        if memoryview(decoded).cast("B") != block:
            raise _Skipped("excluded: decoding did not give the input back")
    views = [memoryview(p) for p in payloads]

    def decompress() -> None:
        for view, block in zip(views, blocks, strict=True):
            decode_block(codec, view, len(block), segment)

    decompress_times = [_timed(decompress) for _ in range(repeats)]

    def speed(times: list[_Timing], cpu: bool) -> float:
        seconds = statistics.median(t.cpu_s if cpu else t.wall_s for t in times)
        return raw_bytes / MB / max(seconds, 1e-9)

    return _Measured(
        raw_bytes,
        sum(len(p) for p in payloads),
        speed(compress_times, cpu=True),
        speed(decompress_times, cpu=True),
        speed(compress_times, cpu=False),
        speed(decompress_times, cpu=False),
    )


def _joined(parts: list[Any]) -> bytes:
    return bytes(parts[0]) if len(parts) == 1 else b"".join(bytes(p) for p in parts)


def _timed(fn: Any) -> _Timing:
    """Run ``fn`` once, timing this thread's CPU time and the wall clock. On a shared machine
    the wall clock also measures the scheduler; every codec runs on the calling thread, so its
    CPU time (user + sys) is what it costs a core."""
    # A GC pause would land in whichever codec happens to trigger it.
    enabled = gc.isenabled()
    gc.disable()
    try:
        cpu, wall = time.thread_time(), time.perf_counter()
        fn()
        return _Timing(time.thread_time() - cpu, time.perf_counter() - wall)
    finally:
        if enabled:
            gc.enable()
