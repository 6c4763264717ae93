"""The `bale split` command: cut a file's rows into train/valid/test files by ratios."""

from __future__ import annotations

import argparse

from bale.cli._command import (
    EXIT_DAMAGED,
    EXIT_ERROR,
    EXIT_OK,
    Subcommands,
    add_overwrite_flag,
    fail,
    refuse_remote_output,
)
from bale.errors import BaleError, CorruptFileError
from bale.io.remote_url import is_remote, parse_url
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
        "permutation and re-encoded. FILE may be a URL (s3://, gs://, https://, ...; credentials "
        "from the environment) with a local --out-dir. See docs/SPLIT.md.",
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
    parser.add_argument("--out-dir", help="directory for the outputs (default: beside FILE)")
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
    parser.set_defaults(run=run_split)


def _check_locations(file: str, out_dir: str | None) -> None:
    """Outputs stay local; a URL input needs --out-dir, and no credentials in the URL itself
    (the input's name is recorded in each output's metadata)."""
    refuse_remote_output(out_dir, "--out-dir")
    if not is_remote(file):
        return
    url = parse_url(file)
    if out_dir is None:
        raise BaleError(
            f"the outputs would be written beside {url.display!r}, but writing to object "
            "storage is not supported yet: give a local --out-dir"
        )
    if url.has_userinfo or url.has_query:
        raise BaleError(
            f"{url.display!r} carries credentials in the URL, which split would record in "
            "the outputs' metadata: give them through the environment instead"
        )


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
    _check_locations(args.file, args.out_dir)
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
        )
    except CorruptFileError as exc:
        return fail("split", exc, EXIT_DAMAGED)
    except ValueError as exc:  # bad ratios, names or options; SchemaError
        return fail("split", exc, EXIT_ERROR)
    print(report.summary())
    return EXIT_OK
