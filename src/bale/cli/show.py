"""The `bale show` command: a contact sheet PNG of a file's images with their labels."""

from __future__ import annotations

import argparse

from bale.cli._command import (
    EXIT_OK,
    Subcommands,
    add_overwrite_flag,
    add_storage_option,
    fail,
    reading,
    storage_options,
)
from bale.ops.show import DEFAULT_ROWS, MAX_TILES, contact_sheet

EPILOG = f"""examples:
  bale show train.bale                     the first {DEFAULT_ROWS} rows -> ./train.png
  bale show train.bale 0:16                rows 0 to 15
  bale show train.bale 3,7,42 -o few.png   these rows
  bale show train.bale --random 64 --seed 1 --size 192
  bale show pets.bale --column photo --label breed
"""


def add_show_command(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "show",
        help="draw images of a file, with their labels, into one PNG (a contact sheet)",
        description="Draw rows of an image column of FILE as tiles of one PNG, each with its "
        "row number and label (the class name from metadata['classes'] when the file lists "
        "them) under it, and print the PNG's path. Image columns hold JPEG/PNG/GIF/BMP/WebP/"
        "TIFF bytes, or uint8 arrays shaped (H, W), (H, W, 1|3|4) or (1|3|4, H, W). The label "
        "column is a scalar integer or string column named label, labels, y, target, class or "
        f"category (or --label). At most {MAX_TILES} tiles. FILE may be a URL: see "
        "--storage-option.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file")
    parser.add_argument(
        "rows",
        nargs="?",
        metavar="ROWS",
        help=f"START:STOP[:STEP] or a comma-separated list, like 0:64 or 3,7,42 (default: the "
        f"first {DEFAULT_ROWS})",
    )
    parser.add_argument("--rows", dest="rows_option", metavar="ROWS", help="the same as ROWS")
    parser.add_argument(
        "--random", type=int, metavar="N", help="N rows drawn at random (see --seed) instead"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --random (default 0)")
    parser.add_argument("--column", help="the image column (default: the first holding images)")
    parser.add_argument("--label", help="the label column (default: one named label, y, ...)")
    parser.add_argument("--size", type=int, default=128, help="tile size in pixels (default 128)")
    parser.add_argument(
        "--per-row", type=int, metavar="N", help="tiles per row (default: a square grid)"
    )
    parser.add_argument(
        "-o", "--out", metavar="PNG", help="the PNG to write (default: FILE's stem.png, here)"
    )
    add_overwrite_flag(parser, "replace the PNG if it exists")
    add_storage_option(parser)
    parser.set_defaults(run=run_show)


def run_show(args: argparse.Namespace) -> int:
    if args.rows and args.rows_option:
        return fail("show", "give ROWS or --rows, not both")
    options = storage_options(args, args.file)
    try:
        with reading(args.file):
            sheet = contact_sheet(
                args.file,
                args.rows or args.rows_option,
                out=args.out,
                column=args.column,
                label=args.label,
                random=args.random,
                seed=args.seed,
                size=args.size,
                per_row=args.per_row,
                overwrite=args.overwrite,
                storage_options=options,
            )
    except ValueError as exc:  # rows that do not parse, a bad size; BaleErrors are ValueErrors too
        return fail("show", exc)
    print(sheet.path)
    for row, why in sheet.failed.items():
        print(f"  row {row} not drawn: {why}")
    return EXIT_OK
