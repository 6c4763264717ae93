"""The `bale recompress` command: write a .bale file again with other codecs (`--codec auto`:
what `bale codecs` recommends), verified, streaming row group by row group."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from bale.cli._command import (
    EXIT_DAMAGED,
    EXIT_ERROR,
    EXIT_OK,
    Subcommands,
    add_json_flag,
    add_overwrite_flag,
    add_quiet_flag,
    add_storage_option,
    fail,
    positive_float,
    reading,
    show_progress,
    storage_options,
)
from bale.errors import CorruptFileError
from bale.measure.advisor import DEFAULT_SAMPLE_BYTES, GOALS
from bale.ops.recompress import AUTO, RecompressReport, recompress

EPILOG = """examples:
  bale recompress feats.bale feats2.bale --codec auto
      every column: the codec `bale codecs feats.bale` recommends (goal balanced)
  bale recompress feats.bale feats2.bale --codec auto --goal smallest
  bale recompress feats.bale feats2.bale --codec zstd:9
      every column in zstd level 9
  bale recompress feats.bale feats2.bale --codec x=blosc2:lz4:5:shuffle label=none
      only these columns; the others keep their codecs
  bale recompress feats.bale feats2.bale --codec auto path=zstd:19
      path in zstd:19, every other column as `bale codecs` recommends
  bale recompress s3://bucket/a.bale s3://bucket/b.bale --codec auto --storage-option profile=ml
"""


def add_recompress_command(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "recompress",
        help="write a .bale file again with other codecs (--codec auto: what `bale codecs` "
        "recommends)",
        description="Write the rows of IN to a new file OUT with other codecs. Column names, "
        "types, metadata, row order, row groups and frame size are kept; only the codecs "
        "change. IN is read one row group at a time (memory stays about one row group). "
        "Verified: every re-encoded block is decoded again and compared byte for byte with "
        "IN's decoded block before it is written; blocks whose codec does not change are "
        "copied as stored, their checksums checked. OUT is written as OUT.partial and renamed "
        "when complete; on any error neither is left. IN and OUT may be URLs (s3://, gs://, "
        "az://; https:// for IN): see --storage-option. Prints each column's codec and size "
        "before and after.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="IN", help="the .bale file (or URL) to read")
    parser.add_argument("output", metavar="OUT", help="the new file (or URL) to write")
    parser.add_argument(
        "--codec",
        dest="codecs",
        nargs="+",
        action="extend",
        metavar="[COLUMN=]CODEC",
        help="CODEC alone: for every column not named; COLUMN=CODEC: for that column (repeat "
        "for more). CODEC is a spec as `bale codecs` prints it (none, lz4, zstd:3, "
        "blosc2:zstd:1:shuffle, ...) or 'auto': measure codecs on a sample as `bale codecs` "
        "does and apply its recommendation for --goal. Columns not named, without a CODEC "
        "alone, keep their codecs. Default: auto",
    )
    parser.add_argument(
        "--goal", choices=GOALS, default="balanced", help="for 'auto' (default: balanced)"
    )
    parser.add_argument(
        "--read-rate",
        type=positive_float,
        metavar="MB/s",
        help="for 'auto': raw MB/s the training must read per core (as `bale codecs`)",
    )
    parser.add_argument(
        "--sample-mb",
        type=positive_float,
        default=DEFAULT_SAMPLE_BYTES / 2**20,
        help="for 'auto': sample about this many MiB of the largest column (default 16)",
    )
    add_overwrite_flag(parser, "replace OUT if it exists")
    add_storage_option(parser)
    add_quiet_flag(parser)
    add_json_flag(parser)
    parser.set_defaults(run=run_recompress)


def parse_codec_args(values: list[str] | None) -> tuple[str | None, dict[str, str]]:
    """``--codec`` values -> (the spec for every column not named, column -> spec). A
    ValueError when two specs are given for all columns or one column is named twice."""
    default: str | None = None
    per_column: dict[str, str] = {}
    for value in values or [AUTO]:
        # Codec specs hold no '=': the last one ends a column name that may hold '=' itself.
        column, sep, spec = value.rpartition("=")
        if not spec.strip():
            raise ValueError(f"--codec {value!r}: expected CODEC or COLUMN=CODEC")
        if not sep:
            if default is not None and default != spec:
                raise ValueError(
                    f"--codec: two codecs for every column ({default!r} and {spec!r}); "
                    "name a column as COLUMN=CODEC"
                )
            default = spec
        elif column in per_column and per_column[column] != spec:
            raise ValueError(f"--codec: column {column!r} given twice")
        else:
            per_column[column] = spec
    return default, per_column


def run_recompress(args: argparse.Namespace) -> int:
    try:
        default, per_column = parse_codec_args(args.codecs)
    except ValueError as exc:
        return fail("recompress", exc)
    options = storage_options(args, args.input, args.output)
    codecs: str | dict[str, str] = per_column if per_column else (default or AUTO)
    try:
        with reading(args.input, args.output):
            report = recompress(
                args.input,
                args.output,
                codecs,
                default=default if per_column else None,
                goal=args.goal,
                read_rate=args.read_rate,
                sample_bytes=int(args.sample_mb * 2**20),
                overwrite=args.overwrite,
                storage_options=options,
                progress=show_progress(args),
            )
    except CorruptFileError as exc:
        return fail("recompress", exc, EXIT_DAMAGED)
    except ValueError as exc:  # bad specs, unknown columns, an output that is an input
        return fail("recompress", exc, EXIT_ERROR)
    if args.json:
        print(json.dumps(_as_dict(report), indent=2))
    else:
        print(report.summary())
    return EXIT_OK


def _as_dict(report: RecompressReport) -> dict[str, object]:
    out = asdict(report)
    for column, counted in zip(out["columns"], report.columns, strict=True):
        column["ratio_before"] = round(counted.ratio_before, 4)
        column["ratio_after"] = round(counted.ratio_after, 4)
    return out
