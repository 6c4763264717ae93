"""The `bale split` and `bale concat` commands: their parsers, and printing what was written."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from bale.errors import CorruptFileError
from bale.ops.concat import concat
from bale.ops.split import split

if TYPE_CHECKING:
    from bale.cli.main import Subcommands

# The exit codes of bale.cli.main (not imported: main imports this module).
_EXIT_OK = 0
_EXIT_DAMAGED = 1
_EXIT_ERROR = 2


def add_split_commands(commands: Subcommands) -> None:
    """split and concat: the commands that make new files from the rows of existing ones."""
    parser = commands.add_parser(
        "split",
        help="split a file into train/valid/test files by ratios",
        description="Split the rows of FILE into one new file per name (default train, valid, "
        "test beside FILE). Every row lands in exactly one output; counts are the ratios times "
        "the rows, rounded so they add up. A file shuffled when packed (or with "
        "--assume-shuffled, or --no-shuffle) is cut into contiguous ranges and its row groups "
        "are copied without recompression; otherwise rows are assigned by a seeded random "
        "permutation and re-encoded. See docs/SPLIT.md.",
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
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.set_defaults(run=_split)

    joiner = commands.add_parser(
        "concat",
        help="join files with the same columns into one file",
        description="Write the rows of INPUT files, in order, to OUT (the last argument). The "
        "inputs need the same column names and types. Row groups are copied without "
        "recompression. OUT gets the first input's metadata plus a 'bale.concat' entry "
        "listing the inputs. See docs/SPLIT.md.",
    )
    joiner.add_argument("files", nargs="+", metavar="FILE", help="INPUT... OUT")
    joiner.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    joiner.set_defaults(run=_concat)


def _ratios(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers like 0.8,0.1,0.1, got {text!r}"
        ) from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(","))


def _split(args: argparse.Namespace) -> int:
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
        return _fail("split", exc, _EXIT_DAMAGED)
    except ValueError as exc:  # bad ratios, names or options; SchemaError
        return _fail("split", exc, _EXIT_ERROR)
    print(report.summary())
    return _EXIT_OK


def _concat(args: argparse.Namespace) -> int:
    if len(args.files) < 2:
        return _fail("concat", ValueError("give one or more INPUT files and then OUT"), _EXIT_ERROR)
    *inputs, out = args.files
    try:
        report = concat(inputs, out, overwrite=args.overwrite)
    except CorruptFileError as exc:
        return _fail("concat", exc, _EXIT_DAMAGED)
    except ValueError as exc:  # SchemaError, an output that is also an input
        return _fail("concat", exc, _EXIT_ERROR)
    print(report.summary())
    return _EXIT_OK


def _fail(command: str, exc: Exception, code: int) -> int:
    print(f"bale {command}: error: {exc}", file=sys.stderr)
    return code
