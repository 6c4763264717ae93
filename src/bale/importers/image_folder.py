"""Image folders (one sub-folder per class) and manifests (CSV / JSON) as RowSources for `bale.pack`.

Both produce the same columns: ``image`` (the file's bytes, unchanged, or with ``size=(h, w)``
a uint8 RGB array of exactly that shape), ``label`` (int64; absent for unlabeled data), ``path``
(the file's path as given: relative to the folder, or as written in the manifest) and, for
manifests, one column per extra manifest column.

>>> source = ImageFolderSource("photos/")               # photos/cat/1.jpg, photos/dog/2.png, ...
>>> source.num_rows, source.metadata["classes"]        # doctest: +SKIP
(2, ['cat', 'dog'])
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from bale.errors import BaleError
from bale.format.schema import Array, Bytes, ColumnType, String
from bale.images import DecodeImages, decode_image, image_size
from bale.importers.base import RowSource, SkippedRow, SourceBatch

ResizeMode = Literal["crop", "stretch"]
MissingFiles = Literal["error", "skip"]

#: File name endings read as images (case-insensitive): whatever Pillow or simplejpeg decodes.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".webp",
    ".tif",
    ".tiff",
    ".ppm",
    ".pgm",
)
#: Folder names that make a root a split root (train/ plus at least one other).
SPLIT_NAMES: tuple[str, ...] = ("train", "valid", "val", "validation", "test")
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
_SHOWN = 5  # how many offending files or lines an error message lists


# -- decoding --------------------------------------------------------------------------------


class _ImageFiles(RowSource):
    """Rows backed by image files: shared by folders and manifests (reading, decoding, skipping)."""

    def __init__(
        self,
        path: str,
        root: str,
        files: list[str],
        *,
        labels: np.ndarray | None,
        classes: list[str] | None,
        extras: dict[str, np.ndarray | list[str]],
        extra_types: dict[str, ColumnType],
        missing: np.ndarray | None,
        lines: list[str] | None,
        size: tuple[int, int] | None,
        resize_mode: ResizeMode,
        keep_bytes: bool | None,
        verify: bool,
    ) -> None:
        if size is not None:
            if len(size) != 2 or min(int(size[0]), int(size[1])) < 1:
                raise ValueError(f"size must be (height, width) with both >= 1, got {size!r}")
            size = (int(size[0]), int(size[1]))
            if keep_bytes:
                raise ValueError(
                    "keep_bytes=True stores the files unchanged, size= decodes and resizes "
                    "them: pass one of the two"
                )
        if resize_mode not in ("crop", "stretch"):
            raise ValueError(f"resize_mode must be 'crop' or 'stretch', got {resize_mode!r}")
        self.path = path
        self.root = root
        self._files = files
        self._labels = labels
        self._classes = classes
        self._extras = extras
        self._extra_types = extra_types
        self._missing = missing
        self._lines = lines
        self._size = size
        self._resize_mode: ResizeMode = resize_mode
        self._keep_bytes = keep_bytes if keep_bytes is not None else size is None
        self._verify = verify
        self._native_shape: tuple[int, int, int] | None = None

    # -- RowSource ------------------------------------------------------------------------------

    @property
    def num_rows(self) -> int:
        return len(self._files)

    @property
    def random_access(self) -> bool:
        return True

    @property
    def picklable(self) -> bool:
        return True

    @property
    def column_types(self) -> Mapping[str, ColumnType]:
        types: dict[str, ColumnType] = {"image": self._image_type()}
        if self._labels is not None:
            types["label"] = Array("int64")
        types["path"] = String()
        types.update(self._extra_types)
        return types

    @property
    def metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self._classes is not None:
            out["classes"] = list(self._classes)
        if self._size is not None:
            out["image_size"] = list(self._size)
            out["resize_mode"] = self._resize_mode
        return out

    @property
    def row_nbytes_hint(self) -> int:
        if not self._keep_bytes:
            return int(np.prod(self._image_type().shape))  # type: ignore[union-attr]
        sample = [self._full_path(i) for i in range(0, self.num_rows, max(1, self.num_rows // 32))]
        sizes = []
        for file in sample[:32]:
            try:
                sizes.append(os.path.getsize(file))
            except OSError:
                continue
        return int(np.mean(sizes)) + 64 if sizes else 1 << 16

    def read(self, start: int, stop: int) -> SourceBatch:
        return self.take(np.arange(max(0, start), min(stop, self.num_rows)))

    def take(self, rows: Sequence[int] | np.ndarray) -> SourceBatch:
        rows = np.asarray(rows, dtype=np.int64)
        decoder = (
            DecodeImages("image", size=self._size, center_crop=self._resize_mode == "crop")
            if self._size is not None
            else None
        )
        kept: list[int] = []
        images: list[Any] = []
        skipped: list[SkippedRow] = []
        for row in rows.tolist():
            if not 0 <= row < self.num_rows:
                raise IndexError(f"row {row} out of range for {self.num_rows} rows of {self.path}")
            if self._missing is not None and self._missing[row]:
                skipped.append(SkippedRow(row, self._where(row), "file not found"))
                continue
            try:
                images.append(self._load(row, decoder))
            except _WrongShapeError:
                raise
            except Exception as exc:  # any decoder failure means: this file cannot be stored
                reason = exc.detail if isinstance(exc, BaleError) else str(exc)
                skipped.append(SkippedRow(row, self._where(row), f"{type(exc).__name__}: {reason}"))
                continue
            kept.append(row)
        index = np.asarray(kept, dtype=np.int64)
        columns: dict[str, Any] = {"image": self._stack(images)}
        if self._labels is not None:
            columns["label"] = self._labels[index]
        columns["path"] = [self._files[i] for i in kept]
        for name, values in self._extras.items():
            columns[name] = (
                values[index] if isinstance(values, np.ndarray) else [values[i] for i in kept]
            )
        return SourceBatch(columns, index, skipped)

    # -- internals ------------------------------------------------------------------------------

    def _where(self, row: int) -> str:
        return self._files[row] + (f" ({self._lines[row]})" if self._lines is not None else "")

    def _full_path(self, row: int) -> str:
        return os.path.join(self.root, self._files[row])

    def _load(self, row: int, decoder: DecodeImages | None) -> Any:
        with open(self._full_path(row), "rb") as f:
            data = f.read()
        if not data:
            raise ValueError("the file is empty")
        if decoder is not None:
            return decoder({"image": [data]})["image"][0]
        if self._keep_bytes:
            if self._verify:
                decode_image(data, (1, 1))  # the cheapest full decode: 1/8 scale for JPEG
            return data
        image = decode_image(data)
        expected = self._image_type().shape  # type: ignore[union-attr]
        if image.shape != expected:
            raise _WrongShapeError(
                f"{self._files[row]} is {image.shape[0]}x{image.shape[1]} but the first image "
                f"({self._files[0]}) is {expected[0]}x{expected[1]}: decoded images must all "
                "have one size; pass size=(h, w) (`--size HxW`) to resize them, or keep the "
                "encoded bytes",
                path=self.path,
                rows=(row, row + 1),
            )
        return image

    def _image_type(self) -> ColumnType:
        if self._keep_bytes:
            return Bytes()
        if self._size is not None:
            return Array("uint8", (*self._size, 3))
        if self._native_shape is None:
            self._native_shape = self._reference_shape()
        return Array("uint8", self._native_shape)

    def _reference_shape(self) -> tuple[int, int, int]:
        """The size of the first readable image: all decoded images must share it."""
        for row in range(self.num_rows):
            if self._missing is not None and self._missing[row]:
                continue
            try:
                with open(self._full_path(row), "rb") as f:
                    height, width = image_size(f.read())
            except (OSError, ValueError, BaleError):
                continue
            return (height, width, 3)
        raise BaleError("none of the images can be read", path=self.path)

    def _stack(self, images: list[Any]) -> Any:
        if self._keep_bytes:
            return images
        shape = self._image_type().shape  # type: ignore[union-attr]
        if not images:
            return np.zeros((0, *shape), np.uint8)
        return np.stack(images)


class _WrongShapeError(BaleError):
    """A decoded image whose size differs from the first one: a setting to fix, never skipped."""


# -- image folders ---------------------------------------------------------------------------


class ImageFolderSource(_ImageFiles):
    """Images under ``root``: one sub-folder per class (labels are the sorted folder names'
    positions) or, with no sub-folders, unlabeled images (no ``label`` column).

    - ``size=(h, w)``: decode and store uint8 RGB arrays of exactly that shape. ``resize_mode=
      "crop"`` (default) keeps the aspect ratio: the shorter side is scaled to fit and the centre
      is cut out; ``"stretch"`` scales the whole image to ``size``.
    - without ``size``: the files' bytes are stored unchanged (``keep_bytes=True``); with
      ``keep_bytes=False`` images are decoded at their own size, which must be the same for all.
    - ``verify``: decode each image once (at 1/8 scale for JPEG) so that corrupt files are
      skipped rather than stored.
    - ``classes``: the class list to use (e.g. the union over splits); folders not in it are
      an error.

    Hidden files and folders (names starting with ".") are ignored, so are files whose names do
    not end in one of ``extensions``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        size: tuple[int, int] | None = None,
        resize_mode: ResizeMode = "crop",
        keep_bytes: bool | None = None,
        verify: bool = True,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        classes: Sequence[str] | None = None,
    ) -> None:
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise BaleError("not a folder", path=root)
        endings = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
        folders = class_folders(root)
        loose = _image_files(root, endings, recursive=False)
        if folders and loose:
            raise BaleError(
                f"holds both class folders ({', '.join(folders[:_SHOWN])}) and images directly "
                f"inside it ({', '.join(loose[:_SHOWN])}): move the images into class folders "
                "or remove them",
                path=root,
            )
        labels: np.ndarray | None = None
        class_names: list[str] | None = None
        if folders:
            class_names = list(classes) if classes is not None else folders
            unknown = sorted(set(folders) - set(class_names))
            if unknown:
                raise BaleError(
                    f"class folders {unknown} are not in the given classes {class_names}",
                    path=root,
                )
            ids = {name: i for i, name in enumerate(class_names)}
            files: list[str] = []
            label_list: list[int] = []
            for name in folders:
                found = _image_files(os.path.join(root, name), endings, recursive=True)
                files.extend(f"{name}/{f}" for f in found)
                label_list.extend([ids[name]] * len(found))
            labels = np.asarray(label_list, dtype=np.int64)
        else:
            files = loose
            class_names = list(classes) if classes is not None else None
        _check_names(root, files)
        if not files:
            raise BaleError(
                f"no image files found in it (looked for {', '.join(endings)}"
                + (f" inside the class folders {folders[:_SHOWN]}" if folders else "")
                + ")",
                path=root,
            )
        super().__init__(
            root,
            root,
            files,
            labels=labels,
            classes=class_names,
            extras={},
            extra_types={},
            missing=None,
            lines=None,
            size=size,
            resize_mode=resize_mode,
            keep_bytes=keep_bytes,
            verify=verify,
        )


def class_folders(root: str) -> list[str]:
    """The non-hidden sub-folders of ``root``, sorted: the class names of an image folder."""
    with os.scandir(root) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _image_files(folder: str, endings: tuple[str, ...], *, recursive: bool) -> list[str]:
    """Image files under ``folder`` as sorted '/'-separated relative paths (hidden ones skipped).

    Anything that is not a folder counts (a FIFO too): an unreadable entry is reported when read.
    """
    found: list[str] = []
    with os.scandir(folder) as entries:
        listed = sorted(entries, key=lambda e: e.name)
    for entry in listed:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if recursive:
                found.extend(
                    f"{entry.name}/{sub}"
                    for sub in _image_files(entry.path, endings, recursive=True)
                )
        elif entry.name.lower().endswith(endings):
            found.append(entry.name)
    return found


def _check_names(root: str, files: list[str]) -> None:
    """File names must be UTF-8: the ``path`` column is text."""
    bad = []
    for name in files:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            bad.append(os.fsencode(name))
    if bad:
        shown = ", ".join(repr(b) for b in bad[:_SHOWN])
        raise BaleError(
            f"{len(bad)} file name(s) are not valid UTF-8 and cannot be stored in the text "
            f"'path' column: {shown}" + (" ..." if len(bad) > _SHOWN else "") + "; rename them",
            path=root,
        )


def find_splits(root: str | os.PathLike[str]) -> dict[str, str]:
    """``{split: folder}`` when ``root`` holds split folders (``train/`` and at least one of
    ``valid/``, ``val/``, ``validation/``, ``test/``, and no other folders); else ``{}``."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        return {}
    folders = class_folders(root)
    if "train" not in folders or len(folders) < 2 or not set(folders) <= set(SPLIT_NAMES):
        return {}
    return {name: os.path.join(root, name) for name in folders}


def split_classes(splits: Mapping[str, str]) -> list[str]:
    """The union of the class folders of all splits, sorted: one label numbering for every split."""
    names: set[str] = set()
    for folder in splits.values():
        names.update(class_folders(folder))
    return sorted(names)


# -- manifests -------------------------------------------------------------------------------


class ManifestSource(_ImageFiles):
    """Images listed in a CSV or JSON manifest (a list of objects, or JSON lines).

    One column holds the image paths (``path_column``, default: the first of path, image, file,
    filename, ...), relative to ``root`` (default: the manifest's folder) or absolute. An optional
    label column (``label_column``, default: label, class, category, target or y): integers are
    kept, text labels become ids into the sorted class names (recorded in the metadata). Every
    other column is stored too: numbers (and lists of numbers, e.g. a box ``[x, y, w, h]``) as
    int64 arrays when all are integers, float32 otherwise; anything else as text.

    Files that do not exist are an error listing them with their manifest line, unless
    ``missing="skip"``: then they are skipped and counted like unreadable images.
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
            shown = [f"{where[i]}: {files[i]}" for i in np.flatnonzero(absent)[:_SHOWN]]
            raise BaleError(
                f"{int(absent.sum())} of {len(files)} files listed do not exist under "
                f"{root!r} ({'; '.join(shown)}"
                + (" ..." if absent.sum() > _SHOWN else "")
                + "); fix the paths, pass root= (`--manifest-root`), or skip them with "
                "missing='skip' (`--skip-missing`)",
                path=manifest,
            )
        labels, class_names = (None, list(classes) if classes is not None else None)
        if label_name is not None:
            labels, class_names = _labels(manifest, records, where, label_name, classes)
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
            extras[name], extra_types[name] = _extra_column(manifest, records, where, name)
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


def _labels(
    manifest: str,
    records: list[dict[str, Any]],
    where: list[str],
    name: str,
    classes: Sequence[str] | None,
) -> tuple[np.ndarray, list[str] | None]:
    values = []
    for record, line in zip(records, where, strict=True):
        value = record.get(name)
        if value is None or value == "":
            raise BaleError(f"{line}: empty label", path=manifest, column=name)
        values.append(value)
    as_ints = [_as_int(v) for v in values]
    if classes is None and all(v is not None for v in as_ints):
        return np.asarray(as_ints, dtype=np.int64), None
    texts = [str(v) for v in values]
    class_names = list(classes) if classes is not None else sorted(set(texts))
    ids = {c: i for i, c in enumerate(class_names)}
    unknown = sorted(set(texts) - set(ids))
    if unknown:
        raise BaleError(
            f"labels {unknown[:_SHOWN]} are not in the given classes", path=manifest, column=name
        )
    return np.asarray([ids[t] for t in texts], dtype=np.int64), class_names


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _number_value(value: Any) -> Any:
    """A number or a (nested) list of numbers from a JSON value or a CSV cell, else None."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return None
        else:
            for convert in (int, float):
                try:
                    return convert(text)
                except ValueError:
                    pass
            return None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, list):
        items = [_number_value(v) for v in value]
        return None if any(v is None for v in items) else items
    return None


def _shape(value: Any) -> tuple[int, ...] | None:
    try:
        return tuple(np.shape(value))
    except ValueError:  # ragged nested lists
        return None


def _extra_column(
    manifest: str, records: list[dict[str, Any]], where: list[str], name: str
) -> tuple[np.ndarray | list[str], ColumnType]:
    raw = [record.get(name) for record in records]
    numbers = [_number_value(v) for v in raw]
    if all(v is not None for v in numbers):
        first = _shape(numbers[0])
        for value, line in zip(numbers, where, strict=True):
            if _shape(value) != first or first is None:
                raise BaleError(
                    f"{line}: a value of shape {_shape(value) or 'ragged'} where {where[0]} has shape "
                    f"{first}: every row of a number column needs one shape",
                    path=manifest,
                    column=name,
                )
        is_int = all(
            isinstance(x, int) for x in np.asarray(numbers, dtype=object).reshape(-1).tolist()
        )
        array = np.asarray(numbers, dtype=np.int64 if is_int else np.float32)
        return array, Array(array.dtype.name, array.shape[1:])
    texts = []
    for value, line in zip(raw, where, strict=True):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise BaleError(
                f"{line}: a number in a column that also holds text; store one kind per column",
                path=manifest,
                column=name,
            )
        if value is None:
            texts.append("")
        elif isinstance(value, str):
            texts.append(value)
        else:
            texts.append(json.dumps(value, ensure_ascii=False))
    return texts, String()
