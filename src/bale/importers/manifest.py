"""CSV / JSON manifests of image files as RowSources: reading the manifest and finding its columns.

The rows (``image``, ``label``, ``path``, extras) are read by ``ImageFilesSource``
(image_files.py); the label and extra columns are typed by manifest_columns.py.

>>> source = ManifestSource("train.csv", size=(224, 224))   # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from bale.errors import BaleError
from bale.format.schema import ColumnType
from bale.importers.image_files import SHOWN, ImageFilesSource, ResizeMode
from bale.importers.manifest_columns import extra_column, label_ids

MissingFiles = Literal["error", "skip"]
PATH_COLUMNS: tuple[str, ...] = (
    "path",
    "image",
    "file",
    "filename",
    "file_name",
    "filepath",
    "image_path",
    "img",
)
LABEL_COLUMNS: tuple[str, ...] = ("label", "class", "category", "target", "y")


class ManifestSource(ImageFilesSource):
    """Images listed in a CSV or JSON manifest (a list of objects, or JSON lines).

    One column holds the image paths (``path_column``, default: the first of path, image, file,
    filename, ...), relative to ``root`` (default: the manifest's folder) or absolute. An optional
    label column (``label_column``, default: label, class, category, target or y): integers are
    kept, text labels become ids into the sorted class names (recorded in the metadata). Every
    other column is stored too: numbers (and lists of numbers, e.g. a box ``[x, y, w, h]``) as
    int64 arrays when all are integers, float32 otherwise; anything else as text.

    Files that do not exist are an error listing them with their manifest line, unless
    ``missing="skip"``: then they are skipped and counted like unreadable images. A FIFO listed
    is read (blocking until its writer finishes); devices, sockets and folders are skipped.
    Image options (``size``, ``resize_mode``, ``keep_bytes``, ``verify``) are those of
    ``ImageFolderSource``.
    """

    def __init__(
        self,
        manifest: str | os.PathLike[str],
        *,
        root: str | os.PathLike[str] | None = None,
        size: tuple[int, int] | None = None,
        resize_mode: ResizeMode = "crop",
        keep_bytes: bool | None = None,
        verify: bool = True,
        path_column: str | None = None,
        label_column: str | None = None,
        missing: MissingFiles = "error",
        classes: Sequence[str] | None = None,
    ) -> None:
        manifest = os.fspath(manifest)
        if missing not in ("error", "skip"):
            raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
        records, where = _read_manifest(manifest)
        if not records:
            raise BaleError("the manifest lists no rows", path=manifest)
        names = list(dict.fromkeys(k for r in records for k in r))
        path_name = _pick_column(manifest, names, path_column, PATH_COLUMNS, "path", True) or ""
        label_name = _pick_column(manifest, names, label_column, LABEL_COLUMNS, "label", False)
        root = os.fspath(root) if root is not None else os.path.dirname(os.path.abspath(manifest))
        files = []
        for record, line in zip(records, where, strict=True):
            value = record.get(path_name)
            if not isinstance(value, str) or not value:
                raise BaleError(f"{line}: no file path in column {path_name!r}", path=manifest)
            files.append(value)
        absent = np.array([not os.path.exists(os.path.join(root, f)) for f in files], dtype=bool)
        if absent.any() and missing == "error":
            shown = [f"{where[i]}: {files[i]}" for i in np.flatnonzero(absent)[:SHOWN]]
            raise BaleError(
                f"{int(absent.sum())} of {len(files)} files listed do not exist under "
                f"{root!r} ({'; '.join(shown)}"
                + (" ..." if absent.sum() > SHOWN else "")
                + "); fix the paths, pass root= (`--manifest-root`), or skip them with "
                "missing='skip' (`--skip-missing`)",
                path=manifest,
            )
        labels, class_names = (None, list(classes) if classes is not None else None)
        if label_name is not None:
            labels, class_names = label_ids(manifest, records, where, label_name, classes)
        extras: dict[str, np.ndarray | list[str]] = {}
        extra_types: dict[str, ColumnType] = {}
        for name in names:
            if name in (path_name, label_name):
                continue
            if name in ("image", "path", "label"):
                raise BaleError(
                    f"the manifest column {name!r} would collide with the output column of "
                    "that name; rename it or choose path_column= / label_column=",
                    path=manifest,
                    column=name,
                )
            extras[name], extra_types[name] = extra_column(manifest, records, where, name)
        super().__init__(
            manifest,
            root,
            files,
            labels=labels,
            classes=class_names,
            extras=extras,
            extra_types=extra_types,
            missing=absent if absent.any() else None,
            lines=where,
            size=size,
            resize_mode=resize_mode,
            keep_bytes=keep_bytes,
            verify=verify,
            read_fifos=True,  # named by the user: read, as `cat` would (a folder's are skipped)
        )


def _read_manifest(path: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The manifest's records and, for each, where it is ("line 5" / "entry 5") for messages."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BaleError(
            f"the manifest is not UTF-8 text (byte {exc.start}); save it as UTF-8", path=path
        ) from exc
    lower = path.lower()
    if lower.endswith((".csv", ".tsv")):
        reader = csv.DictReader(
            io.StringIO(text), dialect="excel-tab" if lower.endswith(".tsv") else "excel"
        )
        records: list[dict[str, Any]] = []
        where = []
        try:
            for record in reader:
                if None in record:
                    raise BaleError(
                        f"line {reader.line_num}: more fields than the header has", path=path
                    )
                records.append({k: v for k, v in record.items() if k})
                where.append(f"line {reader.line_num}")
        except csv.Error as exc:
            raise BaleError(f"line {reader.line_num}: {exc}", path=path) from exc
        return records, where
    if lower.endswith((".jsonl", ".ndjson")) or not text.lstrip().startswith("["):
        records, where = [], []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BaleError(f"line {number}: not JSON: {exc.msg}", path=path) from exc
            if not isinstance(record, dict):
                raise BaleError(f"line {number}: expected a JSON object", path=path)
            records.append(record)
            where.append(f"line {number}")
        return records, where
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaleError(f"line {exc.lineno}: not JSON: {exc.msg}", path=path) from exc
    if not isinstance(loaded, list) or not all(isinstance(r, dict) for r in loaded):
        raise BaleError("expected a JSON list of objects (or JSON lines)", path=path)
    return loaded, [f"entry {i}" for i in range(1, len(loaded) + 1)]


def _pick_column(
    manifest: str,
    names: list[str],
    given: str | None,
    candidates: tuple[str, ...],
    role: str,
    required: bool,
) -> str | None:
    if given is not None:
        if given not in names:
            raise BaleError(f"no {role} column {given!r}; columns are {names}", path=manifest)
        return given
    lowered = {n.lower(): n for n in names}
    for candidate in candidates:
        if candidate in lowered:
            return lowered[candidate]
    if required:
        raise BaleError(
            f"no {role} column: expected one of {list(candidates)} or {role}_column=; "
            f"columns are {names}",
            path=manifest,
        )
    return None
