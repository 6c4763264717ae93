"""The `bale verify` command: check every block; the exit code says intact (0) or damaged (1)."""

from __future__ import annotations

import argparse

from bale.cli._command import (
    EXIT_DAMAGED,
    EXIT_OK,
    Subcommands,
    add_storage_option,
    reading,
    storage_options,
)
from bale.ops.verify import verify


def add_verify_command(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "verify",
        help="check every block's checksum; exit code 0 if intact, 1 if damaged",
        description="Read every block of a .bale file, checking its checksum and that it "
        "decodes to the recorded size. Exit 0: intact. Exit 1: damaged blocks (listed with "
        "column and row range). Exit 2: the file cannot be opened. FILE may be a URL (s3://, "
        "gs://, az://, https://, ...): see --storage-option.",
    )
    parser.add_argument("file")
    add_storage_option(parser)
    parser.set_defaults(run=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    with reading(args.file):
        report = verify(args.file, storage_options=storage_options(args, args.file))
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_DAMAGED
