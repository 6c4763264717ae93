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
Check a whole .bale file and list everything wrong, each naming the file, the row group, the
column, the rows and what disagreed.

Default mode (reads every byte of the row groups once, decodes nothing):
  - every checksum: trailer and footer, header JSON, each row group's JSON, every block, the
    frame index;
  - every second copy against the footer: the header's schema and segment_bytes; each row
    group's record (BGRP magic, JSON length and checksum; rows; each block's offset, stored and
    raw size, checksum and codec; the group's length);
  - the layout: groups in order, the first where the header ends; blocks inside their group and
    aligned; padding bytes zero; array blocks of rows x row size; segmented blocks' frames as
    the frame index records them.
  Passing proves the file holds exactly the bytes its writer wrote: every read returns them,
  and `bale repair` (which rebuilds a footer from the header and the row group records) would
  rebuild the same footer. Not compared, having no second copy: the header's created_by, and
  its metadata (which may change after creation: a note).

--deep also decodes every block with its codec: the stored bytes decode to the recorded size,
bytes/string row lengths add up, strings are UTF-8. Passing proves every row decodes, with the
codec libraries installed here; it also catches what checksums cannot, a block written wrong by
a faulty encoder (or a file crafted with matching checksums). It takes as long as decoding.

Exit 0: intact. Exit 1: damaged (an unfinished write too: `bale repair` recovers it). Exit 2:
the file cannot be read (not a bale file, a newer format, missing). FILE may be a URL (s3://,
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
