"""The `bale merge` command: join part files into one by copying their bytes as stored, or
finish a distributed write whose parts are all written (``--parts N``)."""

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
from bale.ops.merge import merge
from bale.ops.parts import PartSet


def add_merge_command(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "merge",
        help="join part files into one, copying their row groups byte for byte",
        description="Write the rows of INPUT files, in order, to OUT (the last argument), "
        "copying their row groups as stored: nothing is decoded or recompressed, so it runs "
        "at the speed of a file copy. The inputs need the same column names and types and the "
        "same frame size (bale concat re-encodes what differs). With --parts N and only OUT: "
        "merge OUT.parts/part-000000.bale ... part-(N-1), the parts a distributed write "
        "(bale.PartSet, bale.dask.to_bale, bale.ray.BaleDatasink) left, and remove them. "
        "Paths may be URLs (s3://, gs://, az://): see --storage-option.",
    )
    parser.add_argument(
        "files", nargs="+", metavar="FILE", help="INPUT... OUT, or OUT with --parts"
    )
    parser.add_argument(
        "--parts", type=int, metavar="N", help="merge the N parts of OUT's distributed write"
    )
    parser.add_argument("--keep-parts", action="store_true", help="with --parts: keep the parts")
    parser.add_argument(
        "--verify", action="store_true", help="check every block's checksum while copying"
    )
    add_overwrite_flag(parser, "replace OUT if it exists")
    add_storage_option(parser)
    add_quiet_flag(parser)
    parser.set_defaults(run=run_merge)


def run_merge(args: argparse.Namespace) -> int:
    *inputs, out = args.files
    options = storage_options(args, *args.files)
    if args.parts is not None and inputs:
        return fail("merge", "with --parts give only OUT (its parts are OUT.parts/part-*.bale)")
    if args.parts is None and not inputs:
        return fail("merge", "give one or more INPUT files and then OUT, or --parts N and OUT")
    try:
        with reading(*args.files):
            if args.parts is not None:
                parts = PartSet(out, storage_options=options, overwrite=args.overwrite)
                report = parts.merge(
                    args.parts,
                    keep_parts=args.keep_parts,
                    verify=args.verify,
                    progress=show_progress(args),
                )
            else:
                report = merge(
                    inputs,
                    out,
                    overwrite=args.overwrite,
                    storage_options=options,
                    verify=args.verify,
                    progress=show_progress(args),
                )
    except CorruptFileError as exc:
        return fail("merge", exc, EXIT_DAMAGED)
    except ValueError as exc:  # SchemaError, an output that is also an input
        return fail("merge", exc, EXIT_ERROR)
    print(report.summary())
    return EXIT_OK
