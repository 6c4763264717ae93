"""What every `bale` command module shares: the Subcommands type, exit codes, common flags, errors."""

from __future__ import annotations

import argparse
import sys
from typing import TypeAlias

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

EXIT_OK = 0
EXIT_DAMAGED = 1  # the data is damaged (verify, repair, split and concat of a corrupt file)
EXIT_ERROR = 2  # the command could not run: bad arguments, a missing or unreadable file
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


def fail(command: str, exc: BaseException | str, code: int = EXIT_ERROR) -> int:
    """Print ``bale COMMAND: error: ...`` to stderr; return ``code`` for the command to exit with."""
    print(f"bale {command}: error: {exc}", file=sys.stderr)
    return code


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def add_columns_option(parser: argparse.ArgumentParser, help: str = "only these columns") -> None:
    parser.add_argument("--columns", nargs="+", help=help)


def add_overwrite_flag(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--overwrite", action="store_true", help=help)
