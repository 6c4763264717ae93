"""The `bale repair` command: recover the complete row groups of an interrupted write."""

from __future__ import annotations

import argparse

from bale.cli._command import EXIT_DAMAGED, EXIT_OK, Subcommands, add_quiet_flag, show_progress
from bale.ops.repair import repair


def add_repair_command(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "repair",
        help="recover the complete row groups of an interrupted write",
        description="After a writer was killed or the disk filled up, rebuild the footer of "
        "FILE (an interrupted append) or of FILE.partial (an interrupted new file, which is "
        "then renamed to FILE). Every completely written row group is kept. A FILE.partial "
        "that ends before its header (a writer killed before its first batch) holds nothing: "
        "it is removed, and FILE can be written afresh.",
    )
    parser.add_argument("file")
    add_quiet_flag(parser)
    parser.set_defaults(run=run_repair)


def run_repair(args: argparse.Namespace) -> int:
    report = repair(args.file, progress=show_progress(args))
    print(report.summary())
    return EXIT_DAMAGED if report.damaged_row_groups else EXIT_OK
