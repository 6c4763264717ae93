"""The `bale` command: its parser, the file commands (info, verify, repair, export), exit codes. Exit codes: 0 ok, 1 damaged data, 2 error."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import numpy as np

from bale._core.dataset import Dataset, reader_of
from bale._version import __version__
from bale.cli.bench import add_bench_command
from bale.cli.codecs import add_codecs_command
from bale.cli.pack import add_pack_command
from bale.cli.split import add_split_commands
from bale.codecs import codec_spec
from bale.errors import BaleError
from bale.format.schema import Array
from bale.ops.repair import repair
from bale.ops.verify import verify

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

EXIT_OK = 0
EXIT_DAMAGED = 1
EXIT_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_ERROR
    try:
        return int(args.run(args))
    except (BaleError, OSError) as exc:
        print(f"bale {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"bale {args.command}: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bale",
        description="Inspect, check, repair and export .bale dataset files.",
    )
    parser.add_argument("--version", action="version", version=f"bale {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add_commands in COMMAND_GROUPS:
        add_commands(commands)
    return parser


def _add_file_commands(commands: Subcommands) -> None:
    """info, verify, repair, export: the commands that look at one existing file."""
    info = commands.add_parser(
        "info",
        help="rows, columns, codecs, compression ratios, row groups and metadata of a file",
        description="Describe a .bale file: rows, columns (dtype, shape, codec, stored size, "
        "ratio), row groups and metadata. Reads only the footer.",
    )
    info.add_argument("file")
    info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    info.set_defaults(run=_info)

    check = commands.add_parser(
        "verify",
        help="check every block's checksum; exit code 0 if intact, 1 if damaged",
        description="Read every block of a .bale file, checking its checksum and that it "
        "decodes to the recorded size. Exit 0: intact. Exit 1: damaged blocks (listed with "
        "column and row range). Exit 2: the file cannot be opened.",
    )
    check.add_argument("file")
    check.set_defaults(run=_verify)

    fix = commands.add_parser(
        "repair",
        help="recover the complete row groups of an interrupted write",
        description="After a writer was killed or the disk filled up, rebuild the footer of "
        "FILE (an interrupted append) or of FILE.partial (an interrupted new file, which is "
        "then renamed to FILE). Every completely written row group is kept.",
    )
    fix.add_argument("file")
    fix.set_defaults(run=_repair)

    export = commands.add_parser(
        "export",
        help="write each column to .npy files in a directory",
        description="Export every column (or --columns) to DIR: array columns as COLUMN.npy; "
        "bytes and string columns as COLUMN.data.npy (uint8, all rows concatenated; UTF-8 "
        "for strings) plus COLUMN.offsets.npy (int64, row i is data[offsets[i]:offsets[i+1]]); "
        "metadata as metadata.json. No pickled objects are written.",
    )
    export.add_argument("file")
    export.add_argument("directory")
    export.add_argument("--columns", nargs="+", help="only these columns")
    export.add_argument("--overwrite", action="store_true", help="replace existing .npy files")
    export.set_defaults(run=_export)


# Each entry adds its subcommands; a command module owns its parser and its `run` function.
COMMAND_GROUPS: tuple[Callable[[Subcommands], None], ...] = (
    _add_file_commands,
    add_split_commands,
    add_pack_command,
    add_codecs_command,
    add_bench_command,
)


def _describe(ds: Dataset) -> dict[str, Any]:
    index = ds.index
    columns = []
    for position, column in enumerate(ds.schema.columns):
        blocks = index.blocks[:, position]
        raw = int(blocks["raw_size"].sum())
        stored = int(blocks["stored_size"].sum())
        codecs = sorted({codec_spec(index.codecs[int(c)]) for c in blocks["codec"]}) or [
            codec_spec(column.codec)
        ]
        entry: dict[str, Any] = {
            "name": column.name,
            "kind": column.type.kind,
            "codec": ", ".join(codecs),
            "raw_bytes": raw,
            "stored_bytes": stored,
            "ratio": round(raw / stored, 3) if stored else None,
        }
        if isinstance(column.type, Array):
            entry["dtype"] = column.type.dtype
            entry["shape"] = list(column.type.shape)
        columns.append(entry)
    return {
        "path": ds.path,
        "rows": len(ds),
        "row_groups": ds.num_row_groups,
        "file_bytes": os.path.getsize(ds.path),
        "columns": columns,
        "metadata": ds.metadata,
    }


def _info(args: argparse.Namespace) -> int:
    with Dataset(args.file) as ds:
        description = _describe(ds)
    if args.json:
        print(json.dumps(description, indent=2))
        return EXIT_OK
    sizes = [c["stored_bytes"] for c in description["columns"]]
    groups = description["row_groups"]
    print(f"{description['path']}")
    print(f"  rows        {description['rows']}")
    print(
        f"  row groups  {groups}"
        + (f" (~{description['rows'] // groups} rows each)" if groups else "")
    )
    print(f"  file size   {_human(description['file_bytes'])}")
    print("  columns:")
    header = f"    {'name':<16} {'type':<22} {'codec':<28} {'stored':>10} {'ratio':>7}"
    print(header)
    for column, stored in zip(description["columns"], sizes, strict=True):
        kind = column["kind"]
        if kind == "array":
            dims = ",".join(str(d) for d in column["shape"])
            kind = f"{column['dtype']}[{dims}]" if dims else column["dtype"]
        ratio = f"{column['ratio']:.2f}x" if column["ratio"] else "-"
        print(
            f"    {column['name']:<16} {kind:<22} {column['codec']:<28} {_human(stored):>10} {ratio:>7}"
        )
    if description["metadata"]:
        text = json.dumps(description["metadata"], indent=2, ensure_ascii=False)
        if len(text) > 2000:
            text = text[:2000] + "\n    ... (use --json for all of it)"
        print("  metadata:")
        print("\n".join("    " + line for line in text.splitlines()))
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    report = verify(args.file)
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_DAMAGED


def _repair(args: argparse.Namespace) -> int:
    report = repair(args.file)
    print(report.summary())
    return EXIT_DAMAGED if report.damaged_row_groups else EXIT_OK


def _export(args: argparse.Namespace) -> int:
    os.makedirs(args.directory, exist_ok=True)
    with Dataset(args.file) as ds:
        names = args.columns or ds.schema.names
        for name in names:
            if name not in ds.schema:
                raise BaleError(f"no column {name!r}; columns are {ds.schema.names}", path=ds.path)
        for name in names:
            written = _export_column(ds, name, args.directory, args.overwrite)
            print(f"  {name}: {', '.join(written)}")
        meta_path = os.path.join(args.directory, "metadata.json")
        with open(meta_path, "w", encoding="utf-8") as f:
            json.dump(ds.metadata, f, indent=2, ensure_ascii=False)
    print(f"exported {len(names)} column(s) of {args.file} to {args.directory}")
    return EXIT_OK


def _new_path(directory: str, name: str, overwrite: bool) -> str:
    path = os.path.join(directory, name)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    return path


def _export_column(ds: Dataset, name: str, directory: str, overwrite: bool) -> list[str]:
    """Stream one column to .npy, a row group at a time, so memory stays bounded."""
    column = ds.schema[name]
    if isinstance(column.type, Array):
        path = _new_path(directory, f"{name}.npy", overwrite)
        out = np.lib.format.open_memmap(
            path, mode="w+", dtype=column.type.numpy_dtype, shape=(len(ds), *column.type.shape)
        )
        start = 0
        for group in range(ds.num_row_groups):
            block = reader_of(ds).load_block(group, name)
            out[start : start + len(block)] = block
            start += len(block)
        out.flush()
        del out
        return [os.path.basename(path)]
    data_path = _new_path(directory, f"{name}.data.npy", overwrite)
    offsets_path = _new_path(directory, f"{name}.offsets.npy", overwrite)
    total = int(ds.index.blocks[:, ds.schema.index(name)]["raw_size"].sum()) - 8 * len(ds)
    data = np.lib.format.open_memmap(data_path, mode="w+", dtype=np.uint8, shape=(total,))
    offsets = np.lib.format.open_memmap(
        offsets_path, mode="w+", dtype=np.int64, shape=(len(ds) + 1,)
    )
    offsets[0] = 0
    row = byte = 0
    for group in range(ds.num_row_groups):
        block = reader_of(ds).load_block(group, name)
        if isinstance(block, np.ndarray):
            raise BaleError(
                "internal error: bytes column decoded as an array", path=ds.path, column=name
            )
        n = len(block)
        data[byte : byte + len(block.data)] = np.frombuffer(block.data, np.uint8)
        offsets[row + 1 : row + n + 1] = block.offsets[1:] + byte
        row += n
        byte += len(block.data)
    data.flush()
    offsets.flush()
    del data, offsets
    return [os.path.basename(data_path), os.path.basename(offsets_path)]


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


if __name__ == "__main__":
    sys.exit(main())
