"""The codec advisor's report: what was measured for each column, and what each goal picks from
it (the rules are stated in ``bale.measure.advisor``'s docstring and in ``_goal_rule``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from bale._core.defaults import DEFAULT_ROW_GROUP_BYTES, RANDOM_ACCESS_SEGMENT_BYTES
from bale.codecs import NoCompression
from bale.errors import BaleError
from bale.format.constants import DEFAULT_SEGMENT_BYTES
from bale.format.schema import Array, ColumnType
from bale.measure.codec_words import how_it_works, mbps_text, ratio_text, type_text

__all__ = [
    "BALANCED_MIN_COMPRESS_MBPS",
    "BALANCED_MIN_DECODE_MBPS",
    "BALANCED_RATIO_TIE",
    "FASTEST_RATIO_SLACK",
    "FASTEST_SIZE_SLACK",
    "GOALS",
    "SMALLEST_MIN_DECODE_MBPS",
    "TINY_COLUMN_SHARE",
    "WORTH_COMPRESSING",
    "AdvisorReport",
    "CodecResult",
    "ColumnReport",
    "Goal",
    "near_best_ratio",
    "write_read_mbps",
]

Goal = Literal["balanced", "smallest", "fastest"]
GOALS: Final[tuple[Goal, ...]] = ("balanced", "smallest", "fastest")

#: "smallest" ignores codecs decoding slower than this (MB/s of raw data per core).
SMALLEST_MIN_DECODE_MBPS: Final[float] = 100.0
#: "balanced" keeps codecs decoding at least this fast...
BALANCED_MIN_DECODE_MBPS: Final[float] = 300.0
#: ...and compressing at least this fast (streaming writes, `bale pack`): the codec's own speed
#: on the column, not scaled by the column's share of a row, so the advice never says
#: "compresses at 4 MB/s" under a goal that promises 100.
BALANCED_MIN_COMPRESS_MBPS: Final[float] = 100.0
#: "balanced": ratios this close to the best count as equal; the faster decoder wins.
BALANCED_RATIO_TIE: Final[float] = 0.02
#: "fastest": codecs whose ratio is within this fraction of the best may be picked...
FASTEST_RATIO_SLACK: Final[float] = 0.10
#: ...and so may codecs storing at most this fraction of the raw size more than the best (text
#: at 44x instead of 67x stores 0.8% of raw more: no reason to compress it at 4 MB/s).
FASTEST_SIZE_SLACK: Final[float] = 0.01
#: Below this best ratio (saving < 5%) "balanced" and "fastest" store the bytes as they are.
WORTH_COMPRESSING: Final[float] = 1.05
#: A column holding less than this share of each row's raw bytes (labels, paths beside images)
#: is tiny: whatever its codec, it costs little to store and read, so only bale's default is
#: measured and every goal keeps it.
TINY_COLUMN_SHARE: Final[float] = 0.01


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
    tiny: bool = False  # below TINY_COLUMN_SHARE: only bale's default measured, and kept

    def choose(self, goal: Goal = "balanced", read_rate: float | None = None) -> CodecResult:
        """The result ``goal`` picks (the rules: ``bale.measure.advisor``'s docstring)."""
        if goal not in GOALS:
            raise ValueError(f"goal must be one of {GOALS}, got {goal!r}")
        if read_rate is not None and not read_rate > 0:
            raise ValueError(f"read_rate must be a positive MB/s figure, got {read_rate}")
        if not self.results:
            raise BaleError("no codec could be measured", column=self.name)
        if self.tiny:
            return self._default()
        fallback = self._fallback()
        best_ratio = max(r.ratio for r in self.results)
        floor = _decode_floor(goal, read_rate)
        fast_enough = [r for r in self.results if floor is None or self.row_decode_mbps(r) >= floor]
        if goal == "smallest":
            return max(fast_enough, key=lambda r: (r.ratio, r.decompress_mbps), default=fallback)
        if best_ratio < WORTH_COMPRESSING:
            return fallback
        if goal == "balanced":
            allowed = [r for r in fast_enough if r.compress_mbps >= BALANCED_MIN_COMPRESS_MBPS]
            if not allowed:
                return fallback
            top = max(r.ratio for r in allowed)
            ties = [r for r in allowed if r.ratio >= top * (1 - BALANCED_RATIO_TIE)]
            return max(ties, key=lambda r: (r.decompress_mbps, r.ratio))
        if not fast_enough:  # "fastest"
            return fallback
        top = max(r.ratio for r in fast_enough)
        near = [r for r in fast_enough if near_best_ratio(r.ratio, top)]
        return max(near, key=lambda r: (write_read_mbps(r), r.decompress_mbps, r.ratio))

    def row_decode_mbps(self, result: CodecResult) -> float:
        """``result``'s decode speed in MB/s of whole rows: what the speed floors judge."""
        return result.decompress_mbps / self.row_share

    def random_row_us(self, result: CodecResult, segment_bytes: int) -> float:
        """Estimated codec time, in microseconds, of one row read at a random index from a file
        written with ``result``'s codec and frames of about ``segment_bytes``: the decoded bytes
        it needs over the measured decode speed. As written by default, that is its row group's
        block (about DEFAULT_ROW_GROUP_BYTES x this column's share of a row); with smaller
        frames, the frames holding it: one frame of whole rows for an array column (as
        ``random_access=True`` fits them), the frames the row overlaps plus the frame of the row
        lengths for a bytes column. 0 for ``none``: a row is a slice of the stored bytes. An
        estimate from the sample's speed, not a timing of reads."""
        if math.isinf(result.decompress_mbps) or not self.rows:
            return 0.0
        block = DEFAULT_ROW_GROUP_BYTES * self.row_share
        if segment_bytes < block:
            row = self.raw_bytes / self.rows
            if isinstance(self.column_type, Array):
                needed = row * max(1, segment_bytes // max(int(row), 1))
            else:
                needed = (2 + (row - 1) / segment_bytes) * segment_bytes
            block = min(block, needed)
        return block / result.decompress_mbps  # bytes / (10**6 bytes/s) = microseconds

    def _default(self) -> CodecResult:
        """bale's default for the column (what an unset codec gives)."""
        return next((r for r in self.results if r.is_default), self.results[0])

    def _fallback(self) -> CodecResult:
        """``none`` when it was measured, else the fastest decoder."""
        plain = [r for r in self.results if r.config["id"] == NoCompression.id]
        return plain[0] if plain else max(self.results, key=lambda r: r.decompress_mbps)

    def reason(self, goal: Goal = "balanced", read_rate: float | None = None) -> str:
        """One line in plain words: why ``goal`` picks what it picks."""
        choice = self.choose(goal, read_rate)
        if self.tiny:
            return (
                f"{self.description}: tiny ({_percent(self.row_share)} of each row's bytes): "
                f"keep {choice.label} (bale's default, {ratio_text(choice.ratio)}), not worth "
                "measuring: whatever its codec, it costs little to store and read"
            )
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
        how = how_it_works(choice.spec, choice.config, self.column_type)
        numbers = (
            f"{ratio_text(choice.ratio)} smaller than raw, compresses at "
            f"{mbps_text(choice.compress_mbps)} and decodes at {mbps_text(choice.decompress_mbps)} "
            "per core"
        )
        rule = _goal_rule(goal, read_rate)
        floor = _decode_floor(goal, read_rate)
        if floor is not None and choice.decompress_mbps < floor:
            numbers += f" ({mbps_text(self.row_decode_mbps(choice))} of whole rows)"
        if self.row_share < 0.5 and floor is not None:
            rule += (
                f"; the column is {_percent(self.row_share)} of each row's bytes, so its decode "
                "speed counts that much per row"
            )
        text = f"{self.description}: {how}; {numbers} ({rule})"
        if not choice.settable:
            text += "; this is bale's default for the column: leave its codec unset to get it"
        return text

    def to_dict(self, goal: Goal = "balanced", read_rate: float | None = None) -> dict[str, Any]:
        choice = self.choose(goal, read_rate)
        out: dict[str, Any] = {
            "type": type_text(self.column_type),
            "description": self.description,
            "rows": self.rows,
            "raw_bytes": self.raw_bytes,
            "row_share": round(self.row_share, 6),
            "tiny": self.tiny,
            "recommended": choice.spec,
            "recommended_config": choice.config,
            "recommended_settable": choice.settable,
            "reason": self.reason(goal, read_rate),
            "results": [r.to_dict() for r in self.results],
            "excluded": dict(self.excluded),
            "random_row_us": {
                "default": round(self.random_row_us(choice, DEFAULT_SEGMENT_BYTES), 1),
                "random_access": round(self.random_row_us(choice, RANDOM_ACCESS_SEGMENT_BYTES), 1),
                "what": "estimated codec time of one row at a random index, from the decode "
                "speed: the row's whole block as written by default, its frames with "
                "random_access=True",
            },
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
        that default. So is a tiny column (``ColumnReport.tiny``): it keeps bale's default."""
        out = {}
        for name, column in self.columns.items():
            choice = column.choose(goal, read_rate)
            if choice.settable and not column.tiny:
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


def _decode_floor(goal: Goal, read_rate: float | None) -> float | None:
    """The decode speed (MB/s of whole rows) ``goal`` asks for; None when it asks for none."""
    if read_rate is not None:
        return read_rate
    if goal == "smallest":
        return SMALLEST_MIN_DECODE_MBPS
    return BALANCED_MIN_DECODE_MBPS if goal == "balanced" else None


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
    return (
        "fastest: the codec that compresses and decodes fastest (one write and one read) within "
        f"{FASTEST_RATIO_SLACK:.0%} of the best ratio or {FASTEST_SIZE_SLACK:.0%} of the raw "
        f"size{rate}"
    )


def near_best_ratio(ratio: float, best: float) -> bool:
    """Whether "fastest" may pick a codec of ``ratio`` when the best is ``best``."""
    return ratio >= best / (1 + FASTEST_RATIO_SLACK) or 1 / ratio - 1 / best <= FASTEST_SIZE_SLACK


def write_read_mbps(result: CodecResult) -> float:
    """MB/s of raw data through one compression and one decoding: what "fastest" maximises
    (``inf`` for ``none``). A codec decoding at 1,200 MB/s but compressing at 82 MB/s (zstd 9)
    moves 77 MB/s; one at 750 and 4,800 (blosc2 lz4) moves 650."""
    seconds_per_mb = 1 / result.compress_mbps + 1 / result.decompress_mbps
    return math.inf if seconds_per_mb == 0 else 1 / seconds_per_mb


def _percent(share: float) -> str:
    return f"{share * 100:.2g}%"


def _finite(value: float) -> float | None:
    return round(value, 1) if math.isfinite(value) else None
