"""The `bale split` command: cut a file's rows into train/valid/test files by ratios."""

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
    show_progress,
    storage_options,
)
from bale.errors import CorruptFileError
from bale.ops.split import split


def add_split_command(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "split",
        help="split a file into train/valid/test files by ratios",
        description="Split the rows of FILE into one new file per name (default train, valid, "
        "test beside FILE). Every row lands in exactly one output; counts are the ratios times "
        "the rows, rounded so they add up. A file shuffled when packed (or with "
        "--assume-shuffled, or --no-shuffle) is cut into contiguous ranges and its row groups "
        "are copied without recompression; otherwise rows are assigned by a seeded random "
        "permutation and their row groups rewritten (blocks compressed again, losslessly: values "
        "and JPEG/PNG bytes are unchanged). FILE and --out-dir may be URLs (s3://, gs://, az://; FILE also "
        "https://, ...): outputs are uploaded as objects, each whole or not at all; see "
        "--storage-option. More in the bale repository's docs/SPLIT.md.",
    )
    parser.add_argument("file")
    parser.add_argument(
        "--ratios",
        type=_ratios,
        default=(0.8, 0.1, 0.1),
        help="comma-separated fractions adding up to 1 (default 0.8,0.1,0.1)",
    )
    parser.add_argument(
        "--names",
        type=_names,
        default=("train", "valid", "test"),
        help="comma-separated split names, one per ratio (default train,valid,test)",
    )
    parser.add_argument(
        "--stratify",
        metavar="COLUMN",
        help="keep each class of COLUMN (integer or string labels) in the same proportions",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random assignment")
    parser.add_argument(
        "--shuffle",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="--shuffle: always assign rows at random; --no-shuffle: always cut contiguous "
        "ranges (copies row groups); default: decide from the file's metadata",
    )
    parser.add_argument(
        "--assume-shuffled",
        action="store_true",
        help="the rows are already in random order: cut contiguous ranges, copying row groups",
    )
    parser.add_argument(
        "--out-dir",
        help="directory or URL prefix for the outputs (default: beside FILE), e.g. "
        "s3://bucket/splits",
    )
    parser.add_argument(
        "--pattern",
        default="{name}.bale",
        help="output file names; {name} is the split name, {stem} FILE's name without .bale "
        "(default {name}.bale)",
    )
    parser.add_argument(
        "--allow-empty", action="store_true", help="write a split that gets no rows as empty"
    )
    add_overwrite_flag(parser, "replace existing outputs")
    add_storage_option(parser)
    add_quiet_flag(parser)
    parser.set_defaults(run=run_split)


def _ratios(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers like 0.8,0.1,0.1, got {text!r}"
        ) from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(","))


def run_split(args: argparse.Namespace) -> int:
    options = storage_options(args, args.file, args.out_dir or "")
    try:
        report = split(
            args.file,
            args.ratios,
            names=args.names,
            out_dir=args.out_dir,
            pattern=args.pattern,
            stratify=args.stratify,
            seed=args.seed,
            shuffle=args.shuffle,
            assume_shuffled=args.assume_shuffled,
            allow_empty=args.allow_empty,
            overwrite=args.overwrite,
            storage_options=options,
            progress=show_progress(args),
        )
    except CorruptFileError as exc:
        return fail("split", exc, EXIT_DAMAGED)
    except ValueError as exc:  # bad ratios, names, options or output URLs; SchemaError
        return fail("split", exc, EXIT_ERROR)
    print(report.summary())
    return EXIT_OK
