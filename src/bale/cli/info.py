"""The `bale info` command: a file's rows, columns, codecs, sizes and metadata, as text or JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any

from bale._core.columns import human_bytes
from bale.cli._command import (
    EXIT_OK,
    Subcommands,
    add_json_flag,
    add_storage_option,
    reading,
    storage_options,
)
from bale.ops.info import describe


def add_info_command(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "info",
        help="rows, columns, codecs, compression ratios, row groups and metadata of a file",
        description="Describe a .bale file: rows, columns (dtype, shape, codec, stored size, "
        "ratio), row groups and metadata. Reads only the footer. FILE may be a URL (s3://, "
        "gs://, az://, https://, ...): see --storage-option.",
    )
    parser.add_argument("file")
    add_storage_option(parser)
    add_json_flag(parser)
    parser.set_defaults(run=run_info)


def run_info(args: argparse.Namespace) -> int:
    with reading(args.file):
        description = describe(args.file, storage_options=storage_options(args, args.file))
    if args.json:
        print(json.dumps(description, indent=2))
    else:
        print(_text(description))
    return EXIT_OK


def _text(description: dict[str, Any]) -> str:
    groups = description["row_groups"]
    lines = [
        f"{description['path']}",
        f"  rows        {description['rows']}",
        f"  row groups  {groups}"
        + (f" (~{description['rows'] // groups} rows each)" if groups else ""),
        f"  file size   {human_bytes(description['file_bytes'])}",
        "  columns:",
        f"    {'name':<16} {'type':<22} {'codec':<28} {'stored':>10} {'ratio':>7}",
    ]
    for column in description["columns"]:
        kind = column["kind"]
        if kind == "array":
            dims = ",".join(str(d) for d in column["shape"])
            kind = f"{column['dtype']}[{dims}]" if dims else column["dtype"]
        ratio = f"{column['ratio']:.2f}x" if column["ratio"] else "-"
        stored = human_bytes(column["stored_bytes"])
        lines.append(
            f"    {column['name']:<16} {kind:<22} {column['codec']:<28} {stored:>10} {ratio:>7}"
        )
    if description["metadata"]:
        text = json.dumps(description["metadata"], indent=2, ensure_ascii=False)
        if len(text) > 2000:
            text = text[:2000] + "\n    ... (use --json for all of it)"
        lines.append("  metadata:")
        lines += ["    " + line for line in text.splitlines()]
    return "\n".join(lines)
