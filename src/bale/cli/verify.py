"""The `bale verify` command: check a whole file; the exit code says intact (0) or damaged (1)."""

from __future__ import annotations

import argparse
import json

from bale.cli._command import (
    EXIT_DAMAGED,
    EXIT_OK,
    Subcommands,
    add_json_flag,
    add_quiet_flag,
    add_storage_option,
    reading,
    show_progress,
    storage_options,
)
from bale.ops.verify import verify

DESCRIPTION = """\
Check a whole .bale file and list everything wrong, each with the file, row group, column, rows
and what disagreed.

Default (reads every byte once, decodes nothing): every checksum in the file (trailer, footer,
header JSON, each row group's JSON, every block, the frame index) and every second copy against
the footer: the header's schema and segment_bytes; each row group's record (BGRP magic, JSON
length and checksum, rows, each block's offset, sizes, checksum and codec, the group's length);
groups in order, blocks inside their group and aligned, padding bytes zero, array blocks of
rows x row size, each segmented block's frames against the frame index. Passing proves the file
holds the bytes written: reads return the rows written, and `bale repair` (which rebuilds a
footer from the header and the row group records) would rebuild the same footer.

--deep also decodes every block: the stored bytes decode with their codec to the recorded size,
bytes/string row lengths add up, strings are UTF-8, bools are 0 or 1. Passing proves every row
can be read with the codec libraries installed here. It catches what checksums cannot: a block
that a faulty encoder wrote (or a file crafted with matching checksums).

Exit 0: intact. Exit 1: damaged (or an unfinished file: `bale repair` recovers it). Exit 2: the
file cannot be read (not a bale file, a newer format, missing). FILE may be a URL (s3://,
gs://, az://, https://, ...): see --storage-option."""


def add_verify_command(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "verify",
        help="check every checksum and record of a file (--deep: decode every block too); "
        "exit code 0 if intact, 1 if damaged",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file")
    parser.add_argument(
        "--deep",
        action="store_true",
        help="also decode every block and check its rows (slower: as fast as the codecs decode)",
    )
    add_json_flag(parser)
    add_quiet_flag(parser)
    add_storage_option(parser)
    parser.set_defaults(run=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    with reading(args.file):
        report = verify(
            args.file,
            deep=args.deep,
            progress=show_progress(args),
            storage_options=storage_options(args, args.file),
        )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.summary())
    return EXIT_OK if report.ok else EXIT_DAMAGED
