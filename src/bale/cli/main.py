"""The `bale` command's entry point: the parser built from the command modules, dispatch, errors."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from bale._version import __version__
from bale.cli._command import (
    EXIT_DAMAGED,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Subcommands,
    fail,
)
from bale.cli.bench import add_bench_command
from bale.cli.codecs import add_codecs_command
from bale.cli.concat import add_concat_command
from bale.cli.export import add_export_command
from bale.cli.info import add_info_command
from bale.cli.merge import add_merge_command
from bale.cli.pack import add_pack_command
from bale.cli.recompress import add_recompress_command
from bale.cli.repair import add_repair_command
from bale.cli.show import add_show_command
from bale.cli.split import add_split_command
from bale.cli.verify import add_verify_command
from bale.errors import BaleError

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_DAMAGED",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "main",
]

# stdout's reader went away (`bale info f | head`): the status a shell reports for a command
# killed by SIGPIPE (128 + 13), as `cat` or `yes` get, so `set -o pipefail` scripts see the same
EXIT_BROKEN_PIPE = 141

# In the order `bale --help` lists them. Each adds its parser, whose `run` default runs it.
COMMANDS: tuple[Callable[[Subcommands], None], ...] = (
    add_info_command,
    add_show_command,
    add_verify_command,
    add_repair_command,
    add_export_command,
    add_split_command,
    add_concat_command,
    add_merge_command,
    add_pack_command,
    add_recompress_command,
    add_codecs_command,
    add_bench_command,
)


EXAMPLES = """\
examples:
  bale pack photos/ photos.bale            class sub-folders -> one file
  bale split photos.bale --stratify label  train.bale, valid.bale, test.bale
  bale info train.bale                     columns, sizes, classes, image sizes
  bale show train.bale --random 64         a contact sheet PNG: look first
  bale codecs train.bale                   which codec suits each column
  bale recompress train.bale small.bale --codec auto
                                           apply that advice to the file
  bale verify train.bale                   every checksum; exit 1 if damaged
  bale repair train.bale                   after a killed writer (NAME.partial)

`bale COMMAND --help` shows each command's options and more examples.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run `bale` with ``argv`` (default: the process's arguments); returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_ERROR
    try:
        code = int(args.run(args))
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's final flush
        return code
    except BrokenPipeError:
        return _reader_gone()
    except (BaleError, OSError) as exc:
        return fail(args.command, exc)
    except ImportError as exc:  # an optional library missing: one line with its install hint
        return fail(args.command, exc)
    except KeyboardInterrupt:
        print(f"bale {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _reader_gone() -> int:
    """stdout's reader closed the pipe: stop without a word, as `cat` does. Python ignores
    SIGPIPE, so the write raised instead; stdout now points at /dev/null so that the
    interpreter's last flush of what is still buffered cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a file descriptor (captured in-process)
        pass
    return EXIT_BROKEN_PIPE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bale",
        description="Make, inspect, check, repair, split, join and export .bale dataset files; "
        "measure codecs and loader throughput.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"bale {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
