"""The `bale codecs` command: measure codecs on a sample of a file or source and recommend one per column."""

from __future__ import annotations

import argparse
import json
import math
import os
from typing import Any

from bale._core.defaults import RANDOM_ACCESS_SEGMENT_BYTES
from bale.cli._command import (
    EXIT_OK,
    Subcommands,
    add_columns_option,
    add_json_flag,
    add_quiet_flag,
    add_storage_option,
    positive_float,
    reading,
    show_progress,
    shown,
    storage_options,
)
from bale.errors import BaleError
from bale.format.constants import DEFAULT_SEGMENT_BYTES, FILE_MAGIC
from bale.importers import open_source
from bale.io.remote_url import is_remote
from bale.measure.advisor import (
    DEFAULT_SAMPLE_BYTES,
    GOALS,
    AdvisorReport,
    ColumnReport,
    measure_codecs,
    sample_file,
    sample_source,
)


def add_codecs_command(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "codecs",
        help="measure codecs on a sample of each column and recommend one",
        description="Read a sample of SOURCE (a .bale file, or anything `bale pack` reads: an "
        "image folder, .npy, .h5, ...), compress and decompress each column with candidate "
        "codecs on one thread, and print per column: ratio, compress and decompress speed "
        "(MB/s of raw data per core), the recommended codec and why. Goals: smallest = best "
        "ratio decoding at >= 100 MB/s; balanced = best ratio decoding at >= 300 MB/s and "
        "compressing at >= 100 MB/s (within 2%: the faster decoder); fastest = the codec that "
        "compresses and decodes fastest together, within 10% of the best ratio (or 1% of the "
        "raw size). balanced and fastest store data as is when no codec saves 5%. A column "
        "under 1% of each row's bytes (labels, paths beside images) is tiny: it keeps bale's "
        "default, in one line. A URL (s3://, gs://, az://, https://, ...) is read as a .bale "
        "file: see "
        "--storage-option. More in the bale repository's docs/CODECS.md.",
    )
    parser.add_argument("source", help="a .bale file or URL, or a source `bale pack` reads")
    add_storage_option(parser)
    parser.add_argument("--goal", choices=GOALS, default="balanced", help="default: balanced")
    parser.add_argument(
        "--read-rate",
        type=positive_float,
        metavar="MB/s",
        help="raw MB/s the training must read per core: recommend the smallest codec that "
        "decodes at least this fast",
    )
    add_columns_option(parser)
    parser.add_argument(
        "--sample-mb",
        type=positive_float,
        default=DEFAULT_SAMPLE_BYTES / 2**20,
        help="sample about this many MiB of the largest column (default 16)",
    )
    parser.add_argument(
        "--candidates",
        nargs="+",
        metavar="SPEC",
        help="measure these codec specs for every column instead of the default set "
        "(e.g. zstd:3 lz4 blosc2:zstd:1:bitshuffle)",
    )
    parser.add_argument(
        "--thorough",
        action="store_true",
        help="more candidates (blosc2 lz4/zstd/zlib at levels 1, 5, 9; zstd 19 always): slower",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per codec (median)")
    add_json_flag(parser)
    add_quiet_flag(parser)
    parser.set_defaults(run=run_codecs)


def run_codecs(args: argparse.Namespace) -> int:
    if args.repeats < 1:
        raise BaleError(f"--repeats must be >= 1, got {args.repeats}")
    max_bytes = int(args.sample_mb * 2**20)
    options = storage_options(args, args.source)
    with reading(args.source):
        sample, where = _read_sample(args.source, args.columns, max_bytes, options)
    report = measure_codecs(
        sample,
        candidates=args.candidates,
        repeats=args.repeats,
        thorough=args.thorough,
        progress=show_progress(args),
    )
    if args.json:
        out = report.to_dict(args.goal, args.read_rate)
        out["source"] = shown(args.source)
        out["sample"] = where
        print(json.dumps(out, indent=2))
        return EXIT_OK
    print(_text(report, args.goal, args.read_rate, shown(args.source), where))
    return EXIT_OK


def _read_sample(
    path: str, columns: list[str] | None, max_bytes: int, options: dict[str, Any] | None
) -> tuple[dict[str, Any], str]:
    """(sample batch, a few words on where it came from)."""
    if _is_bale_file(path):
        sample = sample_file(path, columns=columns, max_bytes=max_bytes, storage_options=options)
        return sample, "evenly spread row groups"
    with open_source(path) as source:
        return sample_source(source, columns=columns, max_bytes=max_bytes), "evenly spread rows"


def _is_bale_file(path: str) -> bool:
    if is_remote(path):  # importers read local sources only: a URL is read as a .bale file
        return True
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        return f.read(len(FILE_MAGIC)) == FILE_MAGIC


def _text(
    report: AdvisorReport, goal: Any, read_rate: float | None, source: str, where: str
) -> str:
    lines = [
        f"Codecs for {source} (goal: {goal}"
        + (f", read rate {read_rate:,.0f} MB/s per core" if read_rate else "")
        + ")",
        f"Measured on {report.machine}; speeds are MB/s of raw data per core (one thread's "
        f"CPU time), median of {report.repeats}; sample: {where}; took {report.seconds:.1f} s.",
        "'-': no codec work (none stores rows as they are). '*': the recommendation.",
    ]
    for column in report.columns.values():
        lines.append("")
        lines.extend(_column_lines(column, goal, read_rate))
    recommendation = report.recommend(goal, read_rate)
    lines.append("")
    lines.append(f"Writer codecs: {json.dumps(recommendation)}")
    left_out = [name for name in report.columns if name not in recommendation]
    if left_out:
        lines.append(f"  (bale's default is the pick for {left_out}: leave their codecs unset)")
    lines.append("")
    lines.append(
        "Rows read at random indices (a map-style DataLoader with shuffle=True, Keras "
        "fit(shuffle=True), lookups) decode their whole row group's block by default; write with "
        "`bale pack --random-access` (Writer(random_access=True)) to decode only the "
        f"frames of about {RANDOM_ACCESS_SEGMENT_BYTES >> 10} KiB that hold a row, for slower sequential "
        "reads (the bale repository's README, 'Random access'). The 'random row' lines estimate "
        "the codec time."
    )
    return "\n".join(lines)


def _column_lines(column: ColumnReport, goal: Any, read_rate: float | None) -> list[str]:
    if column.tiny:
        return [f"{column.name}: {column.reason(goal, read_rate)}"]
    choice = column.choose(goal, read_rate)
    lines = [
        f"{column.name}: {column.description}; {column.rows:,} rows, "
        f"{_size(column.raw_bytes)} measured"
    ]
    width = max(len("codec"), *(len(r.label) for r in column.results)) + 2
    lines.append(f"    {'codec':<{width}} {'ratio':>7} {'compress':>10} {'decompress':>11}")
    for result in column.results:
        mark = "*" if result is choice else " "
        note = ""
        if result is choice:
            note = "  <- recommended"
        elif result.is_default:
            note = "  (bale's default)"
        lines.append(
            f"  {mark} {result.label:<{width}} {result.ratio:>6.3f}x "
            f"{_speed(result.compress_mbps):>10} {_speed(result.decompress_mbps):>11}{note}"
        )
    for spec, why in column.excluded.items():
        lines.append(f"    {spec}: {why}")
    lines.append(f"  why: {column.reason(goal, read_rate)}")
    default_us = column.random_row_us(choice, DEFAULT_SEGMENT_BYTES)
    if default_us == 0:
        lines.append("  random row: no decoding (a row is a slice of the stored bytes)")
    else:
        framed_us = column.random_row_us(choice, RANDOM_ACCESS_SEGMENT_BYTES)
        lines.append(
            f"  random row (est. from the decode speed): {default_us:,.0f} us as written by "
            f"default, {framed_us:,.0f} us with --random-access"
        )
    return lines


def _size(n: int) -> str:
    return f"{n / 1024:,.1f} KiB" if n < 2**20 else f"{n / 2**20:,.1f} MiB"


def _speed(value: float) -> str:
    return "-" if math.isinf(value) else f"{value:,.0f}"
