"""The `bale export` command: each column to .npy files in a directory or under a URL prefix,
listed as written; with --images, image columns as viewable files plus labels.csv."""

from __future__ import annotations

import argparse

from bale.cli._command import (
    EXIT_OK,
    Subcommands,
    add_columns_option,
    add_overwrite_flag,
    add_quiet_flag,
    add_storage_option,
    fail,
    reading,
    show_progress,
    shown,
    storage_options,
)
from bale.ops.export import export

EPILOG = """examples:
  bale export train.bale out/                  every column as .npy, metadata.json
  bale export train.bale out/ --columns label  one column
  bale export photos.bale pics/ --images       pics/cat/0042.jpg ..., pics/labels.csv
  bale export train.bale s3://bucket/npy/ --storage-option profile=ml
"""


def add_export_command(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "export",
        help="write each column to .npy files in a directory (--images: image files + labels.csv)",
        description="Export every column (or --columns) to DIR: array columns as COLUMN.npy; "
        "bytes and string columns as COLUMN.data.npy (uint8, all rows concatenated; UTF-8 "
        "for strings) plus COLUMN.offsets.npy (int64, row i is data[offsets[i]:offsets[i+1]]); "
        "metadata as metadata.json, last. No pickled objects are written. Each file appears whole "
        "or not at all. FILE may be a URL (s3://, gs://, az://, https://, ...) and DIR a local "
        "directory or a prefix on s3://, gs:// or az:// (each file an object, uploaded by "
        "multipart upload): see --storage-option. With --images, columns holding images "
        "(JPEG/PNG/... bytes, or uint8 arrays shaped (H, W), (H, W, 1|3|4) or (1|3|4, H, W)) "
        "become image files you can open: DIR/CLASS/ROW.jpg (bytes as stored, with their "
        "format's extension; arrays as .png) when a label column exists (CLASS: the class "
        "name from metadata['classes'], else the label), else DIR/ROW.EXT, plus DIR/labels.csv "
        "(row,file,label,class, and path: the source path bale pack stored, if any); the other "
        "columns are exported as .npy.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file")
    parser.add_argument("directory")
    add_columns_option(parser)
    parser.add_argument(
        "--images",
        action="store_true",
        help="image columns as viewable image files in one folder per class, plus labels.csv",
    )
    parser.add_argument(
        "--label",
        metavar="COLUMN",
        help="with --images: the label column (default: one named label, labels, y, target, "
        "class or category)",
    )
    add_storage_option(parser)
    add_overwrite_flag(parser, "replace existing files")
    add_quiet_flag(parser)
    parser.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    if args.label and not args.images:
        return fail("export", "--label goes with --images (it names the folders of image files)")
    if args.directory == "-":
        return fail(
            "export", "DIR '-': export writes files into a folder, not to standard output; name one"
        )
    options = storage_options(args, args.file, args.directory)
    exported = 0

    def done(name: str, files: list[str]) -> None:
        nonlocal exported
        exported += 1
        if len(files) > 3:  # an image column: thousands of files
            print(f"  {name}: {len(files)} files ({files[0]}, ..., {files[-1]})")
        else:
            print(f"  {name}: {', '.join(files)}")

    with reading(args.file, args.directory):
        export(
            args.file,
            args.directory,
            args.columns,
            overwrite=args.overwrite,
            on_column=done,
            storage_options=options,
            images=args.images,
            label=args.label,
            progress=show_progress(args),
        )
    if args.images:
        print("  labels.csv: row, file, label, class of each image file")
    print(f"exported {exported} column(s) of {shown(args.file)} to {shown(args.directory)}")
    return EXIT_OK
