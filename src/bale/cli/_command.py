"""What every `bale` command module shares: the Subcommands type, exit codes, common flags, errors,
and URL handling (``--storage-option``, credentials never printed, outputs kept local)."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from collections.abc import Iterator
from typing import Any, TypeAlias

from bale._progress import progress_wanted
from bale.errors import BaleError
from bale.io.remote_url import is_remote, redact_url

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


def add_quiet_flag(parser: argparse.ArgumentParser) -> None:
    """``-q/--quiet`` (and its older spelling ``--no-progress``): no progress bar. A bar is only
    ever drawn when stderr is a terminal; see ``show_progress``."""
    parser.add_argument(
        "-q",
        "--quiet",
        "--no-progress",
        dest="quiet",
        action="store_true",
        help="no progress bar (none is drawn when stderr is not a terminal anyway)",
    )


def show_progress(args: argparse.Namespace) -> bool:
    """Whether the command should draw a progress bar: not ``--quiet`` and stderr a terminal."""
    return progress_wanted(bool(getattr(args, "quiet", False)))


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0 (rates, sizes in MB)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def add_columns_option(parser: argparse.ArgumentParser, help: str = "only these columns") -> None:
    parser.add_argument("--columns", nargs="+", help=help)


def add_overwrite_flag(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--overwrite", action="store_true", help=help)


# -- URLs: storage options, outputs -------------------------------------------------------------


def add_storage_option(parser: argparse.ArgumentParser) -> None:
    """``--storage-option KEY=VALUE``, repeatable: options of the store's client for the
    command's URLs, inputs and outputs (collected in ``args.storage_options`` as (key, value)
    pairs; see ``storage_options``)."""
    parser.add_argument(
        "--storage-option",
        dest="storage_options",
        action="append",
        type=_key_value,
        metavar="KEY=VALUE",
        help="an option of the store's client for the URLs given (s3://, gs://, az://, https://, "
        "...), by fsspec's names: key, secret, token, endpoint_url, region, anon, profile, "
        "headers, ... VALUE is read as JSON when it parses (true, 5, {...}), else as a string. "
        "Repeat for more (a key given twice: the last wins). Values are never printed. "
        "Credentials also come from the environment (AWS_*, GOOGLE_*, AZURE_*) and config files.",
    )


def _key_value(text: str) -> tuple[str, Any]:
    # The text may be a secret: no message here ever repeats it.
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected KEY=VALUE (the value is not shown)")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def storage_options(args: argparse.Namespace, *paths: str) -> dict[str, Any] | None:
    """The ``--storage-option`` pairs as a dict (None when none was given); a BaleError when
    given but none of ``paths`` is a URL (local files take no options)."""
    pairs = getattr(args, "storage_options", None)
    if not pairs:
        return None
    if not any(is_remote(p) for p in paths):
        raise BaleError(
            "--storage-option applies to URL inputs (s3://, gs://, az://, https://, ...); "
            "no input is one"
        )
    return dict(pairs)


@contextlib.contextmanager
def reading(*paths: str) -> Iterator[None]:
    """Around a command's reads: when an input is a URL, a ValueError (storage options the
    store's client refuses: it names the keys, never a value) becomes a BaleError, which
    ``main`` reports as the command's error rather than a traceback."""
    try:
        yield
    except ValueError as exc:
        if isinstance(exc, BaleError) or not any(is_remote(p) for p in paths):
            raise
        raise BaleError(str(exc)) from None


def shown(path: str) -> str:
    """A path or URL as the CLI prints it: a URL without its credentials."""
    return redact_url(path)


def refuse_remote_output(path: str | None, what: str) -> None:
    """A clear BaleError when an output would go to object storage (not supported yet)."""
    if path is not None and is_remote(path):
        raise BaleError(
            f"{what} {shown(path)!r} is a URL: writing to object storage is not supported yet "
            "(write to a local path and upload it)"
        )
