"""The codec advisor: measures candidate codecs on a sample of each column and recommends one.

Each column of a sample batch is cut into row groups and encoded exactly as ``bale.Writer`` would
store it with ``codecs={column: spec}``: arrays as their raw bytes (blosc2 tuned to the dtype's
item size), bytes and strings packed as length-prefixed rows. Every candidate is timed on one
thread and its output decoded and compared with the input; a codec that does not give the input
back is excluded. Speeds are MB/s of raw data (1 MB = 10**6 bytes) per core, the median of
``repeats`` runs, counted per second of the measuring thread's CPU time: on a shared machine the
wall clock also measures the other jobs (wall-clock speeds are kept beside them).

>>> report = measure_codecs({"image": images, "label": labels})  # doctest: +SKIP
>>> report.recommend("balanced")  # doctest: +SKIP
{'label': 'zstd:1'}
>>> recommend_codecs(first_batch, "smallest", read_rate=300)  # doctest: +SKIP

The goals, for each column (``read_rate`` replaces the decode floor when given). Speed floors
are judged per row: a column holding a fraction s of each row's raw bytes (``row_share``) passes
a floor of F MB/s when it decodes at F x s MB/s, so a small label column is not held to the
speed of the images beside it (its per-call overhead costs little per row).

- ``"smallest"``: the best ratio among codecs decoding at >= 100 MB/s.
- ``"balanced"``: the best ratio among codecs decoding at >= 300 MB/s and compressing at
  >= 100 MB/s, ratios within 2% of it counting as equal (then the faster decoder wins);
  ``none`` when no codec saves 5% (best ratio below 1.05).
- ``"fastest"``: the fastest decoder among codecs within 10% of the best ratio; ``none`` when no
  codec saves 5%.

``none`` (stored as is: no work to write or read) is always measured and is the fallback.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np

from bale._core.batches import infer_type, pack_var_rows, to_column_data
from bale._core.dataset import Dataset, reader_of
from bale._core.defaults import (
    DEFAULT_ROW_GROUP_BYTES,
    default_codec,
    looks_compressed,
    shuffle_typesize,
)
from bale.codecs import Blosc2, Codec, NoCompression, codec_spec, parse_codec
from bale.codecs.framing import decode_block, encode_block
from bale.errors import BaleError, CodecError
from bale.format.constants import DEFAULT_SEGMENT_BYTES
from bale.format.schema import Array, Bytes, ColumnType, String

if TYPE_CHECKING:
    from bale.importers.base import RowSource

__all__ = [
    "GOALS",
    "AdvisorReport",
    "CodecResult",
    "ColumnReport",
    "Goal",
    "candidate_codecs",
    "describe_machine",
    "measure_codecs",
    "recommend_codecs",
    "sample_file",
    "sample_source",
]

Goal = Literal["balanced", "smallest", "fastest"]
GOALS: Final[tuple[Goal, ...]] = ("balanced", "smallest", "fastest")

MB: Final[float] = 1e6
DEFAULT_SAMPLE_BYTES: Final[int] = 16 << 20

#: "smallest" ignores codecs decoding slower than this (MB/s of raw data per core).
SMALLEST_MIN_DECODE_MBPS: Final[float] = 100.0
#: "balanced" keeps codecs decoding at least this fast...
BALANCED_MIN_DECODE_MBPS: Final[float] = 300.0
#: ...and compressing at least this fast (streaming writes, `bale pack`).
BALANCED_MIN_COMPRESS_MBPS: Final[float] = 100.0
#: "balanced": ratios this close to the best count as equal; the faster decoder wins.
BALANCED_RATIO_TIE: Final[float] = 0.02
#: "fastest": codecs whose ratio is within this fraction of the best may be picked.
FASTEST_RATIO_SLACK: Final[float] = 0.10
#: Below this best ratio (saving < 5%) "balanced" and "fastest" store the bytes as they are.
WORTH_COMPRESSING: Final[float] = 1.05

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


@dataclass(frozen=True)
class CodecResult:
    """One codec measured on one column's sample. ``spec`` is what to pass as
    ``codecs={column: spec}``; ``config`` what the file then records (blosc2's typesize
    included). Speeds are MB/s of raw data per second of one core's CPU time (``*_wall_mbps``:
    by the wall clock); ``math.inf`` for ``none`` (no work)."""

    spec: str
    config: dict[str, Any]
    raw_bytes: int
    stored_bytes: int
    compress_mbps: float
    decompress_mbps: float
    compress_wall_mbps: float = math.nan  # the same runs timed by the wall clock
    decompress_wall_mbps: float = math.nan
    is_default: bool = False  # the codec bale picks when none is given
    settable: bool = True  # False: only bale's default gives this config (no spec does)

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.stored_bytes if self.stored_bytes else 1.0

    @property
    def label(self) -> str:
        """The spec, with blosc2's typesize when a spec alone would not reproduce it."""
        if not self.settable and self.config.get("id") == "blosc2":
            return f"{self.spec} (typesize {self.config['typesize']})"
        return self.spec

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "config": self.config,
            "ratio": round(self.ratio, 4),
            "raw_bytes": self.raw_bytes,
            "stored_bytes": self.stored_bytes,
            "compress_mbps": _finite(self.compress_mbps),
            "decompress_mbps": _finite(self.decompress_mbps),
            "compress_wall_mbps": _finite(self.compress_wall_mbps),
            "decompress_wall_mbps": _finite(self.decompress_wall_mbps),
            "is_default": self.is_default,
            "settable": self.settable,
        }


@dataclass
class ColumnReport:
    """All measurements for one column, and the choice each goal makes from them."""

    name: str
    column_type: ColumnType
    rows: int
    raw_bytes: int
    description: str  # plain words: "uint8 images 64x64x3", "JPEG bytes", "text"
    results: list[CodecResult]
    excluded: dict[str, str] = field(default_factory=dict)  # spec -> why it was not measured
    row_share: float = 1.0  # this column's part of each row's raw bytes (all sampled columns)

    def choose(self, goal: Goal = "balanced", read_rate: float | None = None) -> CodecResult:
        """The result ``goal`` picks (see the module docstring for the rules)."""
        if goal not in GOALS:
            raise ValueError(f"goal must be one of {GOALS}, got {goal!r}")
        if read_rate is not None and not read_rate > 0:
            raise ValueError(f"read_rate must be a positive MB/s figure, got {read_rate}")
        if not self.results:
            raise BaleError("no codec could be measured", column=self.name)
        fallback = self._fallback()
        best_ratio = max(r.ratio for r in self.results)
        decode, compress = self.row_decode_mbps, self.row_compress_mbps
        if goal == "smallest":
            floor = read_rate if read_rate is not None else SMALLEST_MIN_DECODE_MBPS
            allowed = [r for r in self.results if decode(r) >= floor]
            return max(allowed, key=lambda r: (r.ratio, r.decompress_mbps), default=fallback)
        if best_ratio < WORTH_COMPRESSING:
            return fallback
        if goal == "balanced":
            floor = read_rate if read_rate is not None else BALANCED_MIN_DECODE_MBPS
            allowed = [
                r
                for r in self.results
                if decode(r) >= floor and compress(r) >= BALANCED_MIN_COMPRESS_MBPS
            ]
            if not allowed:
                return fallback
            top = max(r.ratio for r in allowed)
            ties = [r for r in allowed if r.ratio >= top * (1 - BALANCED_RATIO_TIE)]
            return max(ties, key=lambda r: (r.decompress_mbps, r.ratio))
        allowed = [r for r in self.results if read_rate is None or decode(r) >= read_rate]
        if not allowed:
            return fallback
        top = max(r.ratio for r in allowed)
        near = [r for r in allowed if r.ratio >= top / (1 + FASTEST_RATIO_SLACK)]
        return max(near, key=lambda r: (r.decompress_mbps, r.ratio))

    def row_decode_mbps(self, result: CodecResult) -> float:
        """``result``'s decode speed in MB/s of whole rows: what the speed floors judge."""
        return result.decompress_mbps / self.row_share

    def row_compress_mbps(self, result: CodecResult) -> float:
        return result.compress_mbps / self.row_share

    def _fallback(self) -> CodecResult:
        """``none`` when it was measured, else the fastest decoder."""
        plain = [r for r in self.results if r.config["id"] == NoCompression.id]
        return plain[0] if plain else max(self.results, key=lambda r: r.decompress_mbps)

    def reason(self, goal: Goal = "balanced", read_rate: float | None = None) -> str:
        """One line in plain words: why ``goal`` picks what it picks."""
        choice = self.choose(goal, read_rate)
        best = max(r.ratio for r in self.results)
        if choice.config["id"] == NoCompression.id:
            if best < WORTH_COMPRESSING:
                why = (
                    f"no codec saves 5% (best {best:.3f}x: already compressed or random), so "
                    "rows are stored as they are and read without decoding"
                )
            else:
                why = "stored as is: no codec meets the speed this goal needs"
            return f"{self.description}: {why}"
        how = _how_it_works(choice, self.column_type)
        numbers = (
            f"{_ratio(choice.ratio)} smaller than raw, compresses at {_mbps(choice.compress_mbps)} "
            f"and decodes at {_mbps(choice.decompress_mbps)} per core"
        )
        rule = _goal_rule(goal, read_rate)
        if self.row_share < 0.5:
            rule += (
                f"; the column is {self.row_share * 100:.2g}% of each row's bytes, so its speeds "
                "count that much per row"
            )
        text = f"{self.description}: {how}; {numbers} ({rule})"
        if not choice.settable:
            text += "; this is bale's default for the column: leave its codec unset to get it"
        return text

    def to_dict(self, goal: Goal = "balanced", read_rate: float | None = None) -> dict[str, Any]:
        choice = self.choose(goal, read_rate)
        out: dict[str, Any] = {
            "type": _type_text(self.column_type),
            "description": self.description,
            "rows": self.rows,
            "raw_bytes": self.raw_bytes,
            "row_share": round(self.row_share, 6),
            "recommended": choice.spec,
            "recommended_config": choice.config,
            "recommended_settable": choice.settable,
            "reason": self.reason(goal, read_rate),
            "results": [r.to_dict() for r in self.results],
            "excluded": dict(self.excluded),
        }
        return out


@dataclass
class AdvisorReport:
    """Measurements of every column, where they were taken, and the recommendations."""

    columns: dict[str, ColumnReport]
    machine: str
    cores: int
    repeats: int
    seconds: float

    def recommend(self, goal: Goal = "balanced", read_rate: float | None = None) -> dict[str, str]:
        """Column -> codec spec for ``Writer(codecs=...)``. A column whose pick is bale's own
        default in a form no spec can express (channels-last uint8 images, whose default sets
        blosc2's typesize to the channel count) is left out: the Writer then applies exactly
        that default."""
        out = {}
        for name, column in self.columns.items():
            choice = column.choose(goal, read_rate)
            if choice.settable:
                out[name] = choice.spec
        return out

    def to_dict(self, goal: Goal = "balanced", read_rate: float | None = None) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "cores": self.cores,
            "speeds": "MB/s of raw data (10**6 bytes) per second of the measuring thread's CPU "
            "time (per core), one thread, median of repeats; *_wall_mbps: the same runs by the "
            "wall clock",
            "repeats": self.repeats,
            "seconds": round(self.seconds, 2),
            "goal": goal,
            "read_rate": read_rate,
            "recommendation": self.recommend(goal, read_rate),
            "columns": {n: c.to_dict(goal, read_rate) for n, c in self.columns.items()},
        }


# -- measuring ----------------------------------------------------------------------------------


def measure_codecs(
    samples: Mapping[str, Any],
    *,
    candidates: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    repeats: int = 3,
    threads: int = 1,
    thorough: bool = False,
    row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES,
    max_bytes: int = DEFAULT_SAMPLE_BYTES,
) -> AdvisorReport:
    """Measure codecs on each column of ``samples`` (a batch as given to ``Writer.write``).

    ``candidates``: specs for every column, or a mapping column -> specs; by default a set that
    suits each column's kind (``candidate_codecs``), plus the codec bale would pick by default.
    ``none`` is always measured. ``threads`` measures that many columns at once (each codec
    still runs on one thread). Each column is cut into row groups of about ``row_group_bytes``
    as the Writer would; above ``max_bytes`` of a column, evenly spread groups are kept.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    started = time.perf_counter()
    columns = _prepare(samples, row_group_bytes, max_bytes)

    def run(item: tuple[str, _Prepared]) -> ColumnReport:
        name, prepared = item
        if candidates is None:
            specs, explicit = (
                candidate_codecs(prepared.type, prepared.sniff, thorough=thorough),
                False,
            )
        elif isinstance(candidates, Mapping):
            specs, explicit = list(candidates.get(name, ())), True
            if not specs:
                specs = candidate_codecs(prepared.type, prepared.sniff, thorough=thorough)
                explicit = False
        else:
            specs, explicit = list(candidates), True
        return _measure_column(
            name, prepared, specs, repeats, limit_time=not (explicit or thorough)
        )

    items = list(columns.items())
    if threads > 1 and len(items) > 1:
        with ThreadPoolExecutor(min(threads, len(items)), thread_name_prefix="bale-advisor") as ex:
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
    in the module docstring). ``read_rate``: MB/s of raw data the training must read per core;
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
    if not samples:
        raise ValueError("samples must hold at least one column")
    converted: dict[str, tuple[ColumnType, Any]] = {}
    lengths = set()
    for name, value in samples.items():
        column_type = infer_type(name, value)
        n = len(value)
        data = to_column_data(name, column_type, value, "<sample>", (0, n))
        converted[name] = (column_type, data)
        lengths.add(n)
    if len(lengths) > 1 or 0 in lengths:
        sizes = {name: len(samples[name]) for name in samples}
        raise BaleError(f"sample columns need the same number of rows (> 0), got {sizes}")
    n = lengths.pop()
    # Rows per group as the Writer estimates them: the group's raw bytes over all columns.
    column_row_bytes = {
        name: data.nbytes / n if isinstance(data, np.ndarray) else 8 + sum(map(len, data)) / n
        for name, (_, data) in converted.items()
    }
    row_bytes = sum(column_row_bytes.values())  # the Writer's estimate, summed in column order
    per_group = max(1, int(row_group_bytes // max(row_bytes, 1.0)))
    out = {}
    for name, (column_type, data) in converted.items():
        starts = list(range(0, n, per_group))
        column_group_bytes = _nbytes(data) / len(starts)
        keep = max(1, math.ceil(max_bytes / max(column_group_bytes, 1.0)))
        if keep < len(starts):
            picked = np.unique(np.linspace(0, len(starts) - 1, keep).round().astype(int))
            starts = [starts[int(i)] for i in picked]
        blocks = [_raw_block(data, a, min(a + per_group, n)) for a in starts]
        sniff = list(data[:64]) if isinstance(column_type, Bytes) else []
        share = column_row_bytes[name] / row_bytes if row_bytes else 1.0
        out[name] = _Prepared(column_type, blocks, n, sniff, data, max(share, 1e-9))
    return out


def _nbytes(data: Any) -> int:
    if isinstance(data, np.ndarray):
        return int(data.nbytes)
    return 8 * len(data) + sum(len(r) for r in data)


def _raw_block(data: Any, a: int, b: int) -> memoryview:
    if isinstance(data, np.ndarray):
        return memoryview(np.ascontiguousarray(data[a:b]).reshape(-1).view(np.uint8))  # type: ignore[arg-type]
    return memoryview(pack_var_rows(data[a:b]))


def _as_written(spec: str, column_type: ColumnType) -> Codec:
    """The codec ``Writer(codecs={column: spec})`` records for this column type: the spec tuned
    to the column's shuffle typesize (writer.py ``_resolve_schema``; tests pin the two
    together): the channel count for channels-last 8-bit images, else the item size."""
    return parse_codec(spec).for_itemsize(shuffle_typesize(column_type))


def _measure_column(
    name: str, prepared: _Prepared, specs: Sequence[str], repeats: int, *, limit_time: bool
) -> ColumnReport:
    default = default_codec(prepared.type, prepared.sniff)
    default_config = default.config()
    chosen: list[tuple[str, Codec, bool]] = []  # (spec, codec as written, time-limited)
    excluded: dict[str, str] = {}
    for spec in ["none", *specs]:
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
        except _Skipped as exc:
            excluded[spec if settable else f"{spec} (bale's default)"] = str(exc)
            continue
        except Exception as exc:  # a codec library error: report it, keep measuring the rest
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
        description=_describe(prepared),
        results=results,
        excluded=excluded,
        row_share=prepared.row_share,
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
    if limit_time and len(blocks) > 1:
        first = _timed(lambda: encode_block(codec, blocks[0], segment))
        # CPU time, not wall time: which candidates run should not depend on the machine's load.
        projected = first.cpu_s * raw_bytes / max(len(blocks[0]), 1)
        if projected > _SLOW_CODEC_SECONDS:
            raise _Skipped(
                f"skipped: compressing the sample would take about {projected:.1f} s of CPU "
                "(measure it with thorough=True / --thorough)"
            )
    payloads: list[bytes] = []

    def compress() -> None:
        payloads[:] = [_joined(encode_block(codec, b, segment)) for b in blocks]

    compress_times = [_timed(compress)]
    while (
        len(compress_times) < repeats
        and sum(t.wall_s for t in compress_times) < _COMPRESS_REPEAT_SECONDS
    ):
        compress_times.append(_timed(compress))
    for block, payload in zip(blocks, payloads, strict=True):
        try:
            decoded = decode_block(codec, memoryview(payload), len(block), segment)
        except Exception as exc:
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


# -- sampling -----------------------------------------------------------------------------------


def sample_file(
    path: str | os.PathLike[str],
    *,
    columns: Sequence[str] | None = None,
    rows: int | None = None,
    max_bytes: int = DEFAULT_SAMPLE_BYTES,
) -> dict[str, Any]:
    """A sample batch from a .bale file: whole row groups spread evenly over the file, as many
    as keep the largest column under about ``max_bytes`` of raw data (and at most ``rows``)."""
    if rows is not None and rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    with Dataset(path, cache_bytes=0) as ds:
        reader_of(ds).check_columns(columns)
        names = list(columns) if columns is not None else ds.schema.names
        groups = ds.num_row_groups
        if not groups:
            raise BaleError("the file has no rows to sample", path=ds.path)
        raw = ds.index.blocks["raw_size"]  # (groups, columns)
        per_column = [float(raw[:, ds.schema.index(n)].mean()) for n in names]
        keep = math.ceil(max_bytes / max(max(per_column), 1.0))
        if rows is not None:
            keep = min(keep, math.ceil(rows / (len(ds) / groups)))
        keep = max(1, min(groups, keep))
        picked = np.unique(np.linspace(0, groups - 1, keep).round().astype(int))
        parts = [ds.read_row_group(int(g), names) for g in picked]
    batch = {name: _concat([p[name] for p in parts]) for name in names}
    if rows is not None:
        batch = {name: value[:rows] for name, value in batch.items()}
    return batch


def sample_source(
    source: RowSource,
    *,
    columns: Sequence[str] | None = None,
    max_bytes: int = DEFAULT_SAMPLE_BYTES,
    pieces: int = 8,
) -> dict[str, Any]:
    """A sample batch from an importer's source (``bale.importers.open_source``): ``pieces``
    contiguous runs of rows spread evenly over it, keeping the largest column under about
    ``max_bytes``. Rows the source cannot read are left out."""
    n = source.num_rows
    if n < 1:
        raise BaleError("the source has no rows to sample", path=source.path)
    probe = source.read(0, min(n, 16)).columns
    names = list(columns) if columns is not None else list(probe)
    unknown = [c for c in names if c not in probe]
    if unknown:
        raise BaleError(f"no columns {unknown}; the source has {list(probe)}", path=source.path)
    row_bytes = max(_value_nbytes(probe[c]) / max(len(probe[c]), 1) for c in names)
    want = max(1, min(n, int(max_bytes // max(row_bytes, 1.0))))
    pieces = max(1, min(pieces, want))
    run = math.ceil(want / pieces)
    starts = np.unique(np.linspace(0, max(n - run, 0), pieces).round().astype(int))
    parts = []
    for start in starts:
        batch = source.read(int(start), min(int(start) + run, n))
        if len(batch):
            parts.append({c: batch.columns[c] for c in names})
    if not parts:
        raise BaleError("no row of the sample could be read", path=source.path)
    return {c: _concat([p[c] for p in parts]) for c in names}


def _value_nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray) and value.dtype != object:
        return int(value.nbytes)
    return sum(len(v) for v in value)


def _concat(pieces: list[Any]) -> Any:
    if isinstance(pieces[0], np.ndarray):
        return np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
    return [row for piece in pieces for row in piece]


# -- words --------------------------------------------------------------------------------------


def describe_machine() -> str:
    """Where measurements were taken: cores, CPU model, load, e.g. "2 cores (Intel(R) Xeon(R)
    Processor), load average 1.3"."""
    cores = os.cpu_count() or 1
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    text = f"{cores} core{'s' if cores != 1 else ''} ({model})" if model else f"{cores} cores"
    if hasattr(os, "getloadavg"):
        text += f", load average {os.getloadavg()[0]:.1f}"
    return text


def _type_text(column_type: ColumnType) -> str:
    if isinstance(column_type, Array):
        dims = ",".join(str(d) for d in column_type.shape)
        return f"{column_type.dtype}[{dims}]" if dims else column_type.dtype
    return column_type.kind


def _describe(prepared: _Prepared) -> str:
    column_type, data = prepared.type, prepared.data
    if isinstance(column_type, Array):
        shape = column_type.shape
        if _channels_last_images(column_type):
            return f"{column_type.dtype} images {'x'.join(str(d) for d in shape)}"
        text = f"{column_type.dtype} arrays" + (f" {list(shape)}" if shape else "")
        if column_type.numpy_dtype.kind in "biufc" and data.size:
            zeros = float(np.count_nonzero(data == 0)) / data.size
            if zeros >= 0.05:
                text += f", {zeros:.0%} zeros"
        return text
    mean = sum(len(r) for r in data) / max(len(data), 1)
    if isinstance(column_type, String):
        return f"text (about {mean:.0f} bytes a row)"
    if looks_compressed(prepared.sniff):
        kind = _media_kind(prepared.sniff)
        return f"{kind} bytes (already compressed, about {mean / 1024:.0f} KiB a row)"
    return f"bytes (about {mean:.0f} bytes a row)"


def _media_kind(sniff: Sequence[bytes]) -> str:
    for magic, kind in ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG", "PNG"), (b"RIFF", "WebP/RIFF")):
        if sum(r.startswith(magic) for r in sniff) * 2 > len(sniff):
            return kind
    return "compressed"


def _channels_last_images(column_type: Array) -> bool:
    shape = column_type.shape
    return column_type.numpy_dtype.itemsize == 1 and len(shape) == 3 and 2 <= shape[-1] <= 4


def _how_it_works(choice: CodecResult, column_type: ColumnType) -> str:
    config = choice.config
    codec_id = config["id"]
    if codec_id == "lz4":
        return "lz4 finds repeated byte sequences and has the fastest decoder of the compressors"
    if codec_id == "zstd":
        what = {
            "array": "runs of zeros and repeated values",
            "string": "repeated words and phrases",
        }
        found = what.get(column_type.kind, "repeated byte sequences")
        if isinstance(column_type, Array) and _channels_last_images(column_type):
            found = "repeated pixel patterns"
        return f"zstd level {config['level']} stores {found} compactly"
    if codec_id != Blosc2.id:
        return f"{choice.spec} compresses it best under this goal"
    cname, filters, typesize = config["cname"], tuple(config["filters"]), config["typesize"]
    images = isinstance(column_type, Array) and _channels_last_images(column_type)
    if "bytedelta" in filters:
        if images and typesize > 1:
            return (
                f"byte-shuffle splits the {typesize} channels into streams and bytedelta lets "
                f"{cname} see smooth pixel differences"
            )
        if typesize > 1:
            return f"byte-shuffle + bytedelta lets {cname} see small differences between neighbouring values"
        return f"bytedelta lets {cname} see small differences between neighbouring bytes"
    if "bitshuffle" in filters:
        return f"bit-shuffle groups each bit of the values together, giving {cname} long runs"
    if "shuffle" in filters and typesize > 1:
        return f"byte-shuffle puts each byte of the {typesize}-byte values together, giving {cname} runs"
    return f"blosc2 {cname} level {config['clevel']} compresses it best under this goal"


def _goal_rule(goal: Goal, read_rate: float | None) -> str:
    if goal == "smallest":
        floor = read_rate if read_rate is not None else SMALLEST_MIN_DECODE_MBPS
        return f"smallest: the best ratio among codecs decoding at >= {floor:,.0f} MB/s"
    if goal == "balanced":
        floor = read_rate if read_rate is not None else BALANCED_MIN_DECODE_MBPS
        return (
            f"balanced: the best ratio among codecs decoding at >= {floor:,.0f} MB/s and "
            f"compressing at >= {BALANCED_MIN_COMPRESS_MBPS:,.0f} MB/s"
        )
    rate = f" decoding at >= {read_rate:,.0f} MB/s" if read_rate is not None else ""
    return f"fastest: the fastest decoder within {FASTEST_RATIO_SLACK:.0%} of the best ratio{rate}"


def _ratio(value: float) -> str:
    return f"{value:.2f}x" if value >= 1.1 else f"{value:.3f}x"


def _mbps(value: float) -> str:
    return "memory speed" if math.isinf(value) else f"{value:,.0f} MB/s"


def _finite(value: float) -> float | None:
    return round(value, 1) if math.isfinite(value) else None
