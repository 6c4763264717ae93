"""The `bale concat` command: join files with the same columns, copying their row groups."""

from __future__ import annotations

import argparse

from bale.cli._command import (
    EXIT_DAMAGED,
    EXIT_ERROR,
    EXIT_OK,
    Subcommands,
    add_overwrite_flag,
    add_quiet_flag,
    add_storage_option,
    fail,
    reading,
    show_progress,
    storage_options,
)
from bale.errors import CorruptFileError
from bale.ops.concat import concat


def add_concat_command(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "concat",
        help="join files with the same columns into one file",
        description="Write the rows of INPUT files, in order, to OUT (the last argument). The "
        "inputs need the same column names and types. Row groups are copied without "
        "recompression. OUT gets the first input's metadata plus a 'bale.concat' entry "
        "listing the inputs. INPUTs and OUT may be URLs (s3://, gs://, az://; https:// for "
        "inputs): see --storage-option; OUT is then published whole when done. More in the "
        "bale repository's docs/SPLIT.md.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="INPUT... OUT")
    add_overwrite_flag(parser, "replace OUT if it exists")
    add_storage_option(parser)
    add_quiet_flag(parser)
    parser.set_defaults(run=run_concat)


def run_concat(args: argparse.Namespace) -> int:
    if len(args.files) < 2:
        return fail("concat", "give one or more INPUT files and then OUT")
    *inputs, out = args.files
    options = storage_options(args, *args.files)
    try:
        with reading(*args.files):
            report = concat(
                inputs,
                out,
                overwrite=args.overwrite,
                storage_options=options,
                progress=show_progress(args),
            )
    except CorruptFileError as exc:
        return fail("concat", exc, EXIT_DAMAGED)
    except ValueError as exc:  # SchemaError, an output that is also an input
        return fail("concat", exc, EXIT_ERROR)
    print(report.summary())
    return EXIT_OK
