"""The `bale export` command: each column to .npy files in a directory or under a URL prefix,
listed as written."""

from __future__ import annotations

import argparse

from bale.cli._command import (
    EXIT_OK,
    Subcommands,
    add_columns_option,
    add_overwrite_flag,
    add_storage_option,
    reading,
    shown,
    storage_options,
)
from bale.ops.export import export


def add_export_command(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "export",
        help="write each column to .npy files in a directory",
        description="Export every column (or --columns) to DIR: array columns as COLUMN.npy; "
        "bytes and string columns as COLUMN.data.npy (uint8, all rows concatenated; UTF-8 "
        "for strings) plus COLUMN.offsets.npy (int64, row i is data[offsets[i]:offsets[i+1]]); "
        "metadata as metadata.json, last. No pickled objects are written. Each file appears whole "
        "or not at all. FILE may be a URL (s3://, gs://, az://, https://, ...) and DIR a local "
        "directory or a prefix on s3://, gs:// or az:// (each file an object, uploaded by "
        "multipart upload): see --storage-option.",
    )
    parser.add_argument("file")
    parser.add_argument("directory")
    add_columns_option(parser)
    add_storage_option(parser)
    add_overwrite_flag(parser, "replace existing .npy files")
    parser.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    options = storage_options(args, args.file, args.directory)
    exported = 0

    def done(name: str, files: list[str]) -> None:
        nonlocal exported
        exported += 1
        print(f"  {name}: {', '.join(files)}")

    with reading(args.file, args.directory):
        export(
            args.file,
            args.directory,
            args.columns,
            overwrite=args.overwrite,
            on_column=done,
            storage_options=options,
        )
    print(f"exported {exported} column(s) of {shown(args.file)} to {shown(args.directory)}")
    return EXIT_OK
