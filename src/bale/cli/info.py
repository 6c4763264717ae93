"""The `bale info` command: a file's rows, columns, codecs, sizes, class counts, image sizes and
metadata, as aligned text or JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any

from bale._core.columns import human_bytes
from bale.cli._command import (
    EXIT_DAMAGED,
    EXIT_OK,
    Subcommands,
    add_json_flag,
    add_storage_option,
    fail,
    reading,
    storage_options,
)
from bale.errors import CorruptFileError
from bale.ops.info import IMAGE_SAMPLE, MAX_CLASSES, describe

#: Widest a value is shown in text before it is cut (--json shows everything).
_WIDTH = 72
_NAME_WIDTH = 40
_METADATA_KEYS = 30

EPILOG = """examples:
  bale info train.bale                        aligned text for a terminal
  bale info --json train.bale | jq .labels    everything, for scripts
  bale info --top 50 --sample 500 train.bale  more classes shown, more images sized
  bale info --footer-only s3://bucket/train.bale   the footer alone: one or two requests
"""


class _Formatter(argparse.HelpFormatter):
    """Wraps the description, keeps the examples' lines as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return text
        return super()._fill_text(text, width, indent)


def add_info_command(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "info",
        help="rows, columns, sizes, class counts, image sizes and metadata of a file",
        description="Describe a .bale file: rows, row groups, file size; per column its type, "
        "codec, size on disk, share of the file, compression ratio and bytes per row; the "
        "class counts of label columns (columns named label, labels, target, y, class or "
        "category; without one, the first three scalar integer columns; named from metadata "
        "'classes'); for "
        f"JPEG/PNG bytes columns the formats and sizes of --sample rows (default {IMAGE_SAMPLE}) "
        "spread over the file; the metadata, summarised (long lists and strings cut; --json "
        "shows all). What is read: the footer; label columns whole (only those columns, for "
        f"exact counts; a column with more than {MAX_CLASSES:,} values is no label); the "
        "sampled rows of bytes columns. --footer-only reads the footer alone. FILE may be a URL "
        "(s3://, gs://, az://, https://, ...): see --storage-option.",
        epilog=EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("file")
    parser.add_argument(
        "--top", type=int, default=10, metavar="N", help="classes shown per label column (10)"
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=IMAGE_SAMPLE,
        metavar="N",
        help=f"rows of each bytes column read to tell images and their sizes ({IMAGE_SAMPLE})",
    )
    parser.add_argument(
        "--footer-only",
        action="store_true",
        help="read only the footer: no class counts, no image sizes (fastest, for big remote files)",
    )
    add_storage_option(parser)
    add_json_flag(parser)
    parser.set_defaults(run=run_info)


def run_info(args: argparse.Namespace) -> int:
    try:
        with reading(args.file):
            description = describe(
                args.file,
                storage_options=storage_options(args, args.file),
                footer_only=args.footer_only,
                image_sample=max(0, args.sample),
            )
    except CorruptFileError as exc:
        if exc.column is None:  # the footer or header itself: --footer-only would not help
            return fail("info", exc, EXIT_DAMAGED)
        return fail(  # in a label column or a sampled row
            "info",
            f"{exc} (bale info reads label columns and sampled rows; --footer-only reads only "
            "the footer, bale verify checks every block)",
            EXIT_DAMAGED,
        )
    if args.json:
        print(json.dumps(description, indent=2, ensure_ascii=False))
    else:
        print(text(description, top=max(0, args.top)))
    return EXIT_OK


def text(description: dict[str, Any], *, top: int = 10) -> str:
    """The description as aligned text for a terminal; nothing in it grows with the file."""
    rows, groups = description["rows"], description["row_groups"]
    lines = [
        f"{description['path']}",
        f"  rows        {rows:,}",
        f"  row groups  {groups:,}" + (f" (~{rows // groups:,} rows each)" if groups else ""),
        f"  file size   {human_bytes(description['file_bytes'])}",
        "  columns:",
        *("    " + line for line in _column_table(description["columns"])),
    ]
    labels = description.get("labels") or {}
    if labels:
        lines.append("  labels (every row counted):")
        for name, label in labels.items():
            lines += ["    " + line for line in _label_lines(name, label, top)]
    images = description.get("images") or {}
    if images:
        lines.append("  images (sampled rows, sizes from their headers):")
        width = max(len(_cut(name, _NAME_WIDTH)) for name in images)
        for name, image in images.items():
            lines.append(f"    {_cut(name, _NAME_WIDTH):<{width}}  {_image_line(image)}")
    if description["metadata"]:
        lines.append("  metadata:")
        lines += ["    " + line for line in _metadata_lines(description["metadata"])]
    return "\n".join(lines)


def _bytes_per_row(n: float) -> str:
    """Stored bytes per row; under 10 B with a decimal (a bool or label column stores a
    fraction of a byte per row, which ``0 B`` would hide)."""
    if n < 0.1:
        return "<0.1 B"
    return f"{n:.1f} B" if n < 10 else human_bytes(n)


def _column_table(columns: list[dict[str, Any]]) -> list[str]:
    header = ("name", "type", "codec", "stored", "share", "ratio", "per row")
    table = [header]
    for column in columns:
        kind = column["kind"]
        if kind == "array":
            dims = ",".join(str(d) for d in column["shape"])
            kind = f"{column['dtype']}[{dims}]" if dims else column["dtype"]
        share = column.get("share")
        per_row = column.get("stored_bytes_per_row")
        table.append(
            (
                _cut(column["name"], _NAME_WIDTH),
                kind,
                _cut(column["codec"], 32),
                human_bytes(column["stored_bytes"]),
                "-" if share is None else f"{share:.1%}",
                f"{column['ratio']:.2f}x" if column["ratio"] else "-",
                "-" if per_row is None else _bytes_per_row(per_row),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    left = 3  # name, type and codec read left to right; sizes line up on the right
    return [
        "  ".join(
            cell.ljust(widths[i]) if i < left else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in table
    ]


def _label_lines(name: str, label: dict[str, Any], top: int) -> list[str]:
    counts = label["counts"]
    per_class = sorted(c["rows"] for c in counts)
    median = per_class[len(per_class) // 2]
    classes = f"{label['classes']:,} classes"
    if label.get("names_from"):
        named = label.get("named_classes")
        if named is not None and named != label["classes"]:
            classes = f"{label['classes']:,} of {named:,} classes present"
        classes += f' (names from metadata "{label["names_from"]}")'
    lines = [
        f"{_cut(name, _NAME_WIDTH)}: {classes}; rows per class: min {per_class[0]:,}, "
        f"median {median:,}, max {per_class[-1]:,}"
    ]
    shown = counts[:top]
    width = max((len(f"{c['rows']:,}") for c in shown), default=0)
    for c in shown:
        value = _cut(json.dumps(c["value"], ensure_ascii=False), 40)
        what = f"{_cut(c['name'], 40)} ({value})" if c.get("name") is not None else value
        lines.append(f"  {c['rows']:>{width},}  {what}")
    if len(counts) > len(shown):
        lines.append(f"  ... {len(counts) - len(shown):,} more classes (--json lists all)")
    return lines


def _image_line(image: dict[str, Any]) -> str:
    formats = ", ".join(f"{n} {kind}" for kind, n in sorted(image["formats"].items()))
    text = f"{image['images']} of {image['sampled_rows']} sampled rows are images ({formats})"
    if "smallest" in image:
        sizes = [image[k] for k in ("smallest", "median_image", "largest")]
        min_, median, max_ = (f"{s['width']}x{s['height']}" for s in sizes)
        text += f"; width x height by pixels: min {min_}, median {median}, max {max_}"
    if image.get("unreadable_headers"):
        text += f"; {image['unreadable_headers']} with headers that do not parse"
    if "sizes_unavailable" in image:
        text += f"; sizes unavailable: {image['sizes_unavailable']}"
    return text


# -- metadata, summarised ---------------------------------------------------------------------


def _metadata_lines(metadata: dict[str, Any], depth: int = 0) -> list[str]:
    lines = []
    items = list(metadata.items())
    for key, value in items[:_METADATA_KEYS]:
        label = _cut(str(key), _NAME_WIDTH)
        compact = _compact(value)
        if isinstance(value, dict) and len(compact) > _WIDTH and depth < 2 and value:
            lines.append(f"{label}:")
            lines += ["  " + line for line in _metadata_lines(value, depth + 1)]
        else:
            lines.append(f"{label}: {_summary(value, compact)}")
    if len(items) > _METADATA_KEYS:
        lines.append(f"... {len(items) - _METADATA_KEYS:,} more keys (--json shows all)")
    return lines


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def _summary(value: Any, compact: str) -> str:
    """One line for a metadata value: itself when short, else what it is and how it starts."""
    if len(compact) <= _WIDTH:
        return compact
    if isinstance(value, str):
        return f"{_cut(compact, _WIDTH)} ({len(value):,} characters)"
    if isinstance(value, list):
        if value and all(isinstance(v, str) for v in value):
            return f"{len(value):,} names ({_first_items(value)})"
        return f"a list of {len(value):,} items: {_cut(compact, _WIDTH - 20)}"
    if isinstance(value, dict):
        keys = "key" if len(value) == 1 else "keys"
        return f"{len(value):,} {keys} ({_first_items([str(k) for k in value])})"
    return _cut(compact, _WIDTH)


def _first_items(names: list[str]) -> str:
    shown: list[str] = []
    used = 0
    for name in names:
        item = _cut(name, 24)
        if shown and used + len(item) + 2 > _WIDTH - 20:
            break
        shown.append(item)
        used += len(item) + 2
    return ", ".join(shown) + (", ..." if len(shown) < len(names) else "")


def _cut(text: str, width: int) -> str:
    """``text`` no wider than ``width``: its middle replaced by "..." (a name's two ends say
    the most: "features/layer_12/...put_mean")."""
    if len(text) <= width:
        return text
    keep = width - 3
    return text[: (keep + 1) // 2] + "..." + text[len(text) - keep // 2 :]
