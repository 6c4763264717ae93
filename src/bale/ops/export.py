"""Writing a file's columns to .npy files and its metadata to JSON, no pickles, in a local
directory or under a URL prefix on S3, GCS or Azure (`bale export`); with ``images=True``,
image columns as viewable image files in one folder per class, listed in ``labels.csv``."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from bale._core.blocks import VarRows
from bale._core.dataset import Dataset, reader_of
from bale._progress import Progress
from bale.errors import BaleError, TargetExistsError
from bale.format.schema import Array
from bale.io import locations
from bale.io.remote_url import is_remote, redact_url
from bale.io.sink import ByteSink, FileSink
from bale.ops.image_columns import (
    ImageColumn,
    LabelColumn,
    find_label_column,
    image_columns,
    pil,
)


def export(
    path: str | os.PathLike[str],
    directory: str | os.PathLike[str],
    columns: Sequence[str] | None = None,
    *,
    overwrite: bool = False,
    on_column: Callable[[str, list[str]], None] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    images: bool = False,
    label: str | None = None,
    progress: bool = False,
) -> list[str]:
    """Write every column (or ``columns``) of the file at ``path`` to ``directory``: an array
    column as ``NAME.npy``; a bytes or string column as ``NAME.data.npy`` (uint8, the rows
    concatenated, UTF-8 for strings) plus ``NAME.offsets.npy`` (int64: row i is
    ``data[offsets[i]:offsets[i + 1]]``); the metadata as ``metadata.json``, written last.
    Columns are streamed a row group at a time, so memory stays bounded. ``on_column(name,
    file_names)`` is called as each column is done. Returns the paths written (URLs without
    credentials), ``metadata.json`` last.

    Every file appears whole or not at all: a local one is written as ``NAME.partial`` and
    renamed, an object is uploaded by multipart upload (the bale repository's docs/REMOTE.md,
    "Writing"). Existing files are refused (``TargetExistsError``) before anything is written,
    unless ``overwrite``. If the export fails, the files of the columns already done stay (each
    whole, and ``metadata.json`` absent).

    ``path`` may be a URL (``bale.open``'s); ``directory`` a local directory or a prefix on
    ``s3://``, ``gs://`` or ``az://``; ``storage_options`` apply to both.

    ``images=True``: image columns (``bale.ops.image_columns``: JPEG/PNG/... bytes, uint8
    arrays shaped like pictures) are written as viewable files instead of .npy: encoded rows as
    stored with their format's extension, arrays as PNG, to ``CLASS/ROW.EXT`` when the file has
    a label column (``label``, or one named label, y, target, ...; CLASS is the class name from
    ``metadata["classes"]``, else the label) and to ``ROW.EXT`` otherwise (``COLUMN/`` first
    when several columns hold images; ROW zero-padded to sort in row order), plus
    ``labels.csv`` (row, file, label, class, and path: the source path ``bale pack`` stored
    in a string column ``path``, when there is one). Other columns are exported as .npy as without it.
    Image files are written whole (a local one as ``NAME.partial`` renamed, without fsync);
    an existing one is refused before anything is written (on object storage, each object as it
    is written) unless ``overwrite``.

    >>> export("train.bale", "out/", ["label", "caption"])  # doctest: +SKIP
    ['out/label.npy', 'out/caption.data.npy', 'out/caption.offsets.npy', 'out/metadata.json']
    >>> export("s3://b/train.bale", "s3://b/train-npy", storage_options={"anon": False})  # doctest: +SKIP
    """
    source, directory = os.fspath(path), os.fspath(directory)
    if storage_options and not (is_remote(source) or is_remote(directory)):
        raise ValueError(
            "storage_options apply to URLs (s3://, gs://, az://, https://, ...); "
            f"{source!r} and {directory!r} are local paths"
        )
    written: list[str] = []
    with Dataset(source, storage_options=storage_options if is_remote(source) else None) as ds:
        names = list(columns or ds.schema.names)
        for name in names:
            if name not in ds.schema:
                raise BaleError(f"no column {name!r}; columns are {ds.schema.names}", path=ds.path)
        pictures = image_columns(ds, names) if images else []
        if images and not pictures:
            raise BaleError(
                f"--images: none of the columns {names} holds images (JPEG/PNG/... bytes, or "
                "uint8 arrays shaped (H, W), (H, W, 1|3|4) or (1|3|4, H, W))",
                path=ds.path,
            )
        labels = (
            find_label_column(ds, label, exclude=[c.name for c in pictures]) if images else None
        )
        plain = [n for n in names if n not in {c.name for c in pictures}]
        out = _Outputs(directory, storage_options, overwrite)
        extra = ["labels.csv"] if pictures else []
        out.check([f for name in plain for f in _file_names(ds, name)] + extra + ["metadata.json"])
        if any(p.layout != "encoded" for p in pictures):
            pil()  # arrays are written as PNG: a missing Pillow stops us before any file
        plan = _ImagePlan(ds, pictures, labels) if pictures else None
        if plan is not None and not out.remote and not overwrite:
            plan.check_local(out)
        total = len(ds) * len(names)
        with Progress(progress, total, "exporting", unit="rows") as bar:
            for name in plain:
                files = _export_column(ds, name, out, bar)
                written += [out.shown(f) for f in files]
                if on_column is not None:
                    on_column(name, files)
            if plan is not None:
                for name, files in plan.write(out, bar).items():
                    written += [out.shown(f) for f in files]
                    if on_column is not None:
                        on_column(name, files)
                written.append(out.shown("labels.csv"))
        meta = json.dumps(ds.metadata, indent=2, ensure_ascii=False).encode()
        with out.open("metadata.json") as sink:
            sink.write([meta], align=False)
    return [*written, out.shown("metadata.json")]


class _Outputs:
    """The files of one export: named in a local directory or under a URL prefix, checked
    before writing, each opened as a sink that publishes it whole on success."""

    def __init__(
        self, directory: str, storage_options: Mapping[str, Any] | None, overwrite: bool
    ) -> None:
        self.directory = directory
        self.remote = is_remote(directory)
        self.storage_options = storage_options if self.remote else None
        self.overwrite = overwrite

    def target(self, name: str) -> str:
        return locations.join(self.directory, name)

    def shown(self, name: str) -> str:
        target = self.target(name)
        return redact_url(target) if self.remote else target

    def check(self, names: Sequence[str]) -> None:
        """Every name writable, and none there already unless ``overwrite``: before any write."""
        for name in names:
            if self.remote:
                locations.check_writable(self.target(name))
        if not self.overwrite:
            for name in names:
                if locations.exists(self.target(name), self.storage_options):
                    raise TargetExistsError(
                        "it exists; pass overwrite=True (--overwrite) to replace it",
                        path=self.shown(name),
                    )
        if not self.remote:
            os.makedirs(self.directory, exist_ok=True)

    def put(self, name: str, data: bytes) -> None:
        """A small file written whole: locally as ``NAME.partial`` renamed (no fsync: an image
        export writes thousands), remotely as one object."""
        if self.remote:
            with self.open(name) as sink:
                sink.write([data], align=False)
            return
        target = self.target(name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        partial = f"{target}.partial"
        with open(partial, "wb") as f:
            f.write(data)
        os.replace(partial, target)

    def open(self, name: str) -> _Published:
        target = self.target(name)
        sink: ByteSink
        if self.remote:
            # Imported here, as bale._core.groupsink does: most exports are local.
            from bale.io.remote_sink import RemoteSink

            sink = RemoteSink(target, self.storage_options, alignment=1, overwrite=self.overwrite)
        else:
            sink = FileSink(target, "create", alignment=1, overwrite=self.overwrite)
        return _Published(sink)


class _Published:
    """A sink as a context: committed (the file published) when the block ends normally,
    discarded (nothing published) when it raises."""

    def __init__(self, sink: ByteSink) -> None:
        self.sink = sink

    def __enter__(self) -> ByteSink:
        return self.sink

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is None:
            self.sink.commit()
        else:
            self.sink.discard()


def _npy_header(dtype: np.dtype[Any], shape: tuple[int, ...]) -> bytes:
    """The .npy header ``np.save`` writes for an array of ``dtype`` and ``shape``."""
    header = io.BytesIO()
    d = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(header, d)
    return header.getvalue()


def _as_bytes(array: np.ndarray) -> memoryview:
    """An array's bytes in C order, without a copy when it is contiguous (a memoryview of the
    array itself cannot express every dtype: datetimes, ml_dtypes)."""
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8).data


def file_stem(name: str) -> str:
    """The file name a column's name gives: itself, with ``%``, ``/``, ``\\`` and NUL written
    as ``%25``, ``%2F``, ``%5C`` and ``%00`` (a column named ``../x`` must never write outside
    the output folder; ``urllib.parse.unquote`` gives the name back)."""
    for char, code in (("%", "%25"), ("/", "%2F"), ("\\", "%5C"), ("\0", "%00")):
        name = name.replace(char, code)
    return name


def _file_names(ds: Dataset, name: str) -> list[str]:
    stem = file_stem(name)
    if isinstance(ds.schema[name].type, Array):
        return [f"{stem}.npy"]
    return [f"{stem}.data.npy", f"{stem}.offsets.npy"]


def _export_column(ds: Dataset, name: str, out: _Outputs, bar: Progress) -> list[str]:
    """One column to .npy file(s), a row group at a time; returns the file names."""
    column = ds.schema[name]
    reader = reader_of(ds)
    files = _file_names(ds, name)
    if isinstance(column.type, Array):
        with out.open(files[0]) as sink:
            shape = (len(ds), *column.type.shape)
            sink.write([_npy_header(column.type.numpy_dtype, shape)], align=False)
            for group in range(ds.num_row_groups):
                block = reader.load_block(group, name)
                if not isinstance(block, np.ndarray):
                    raise BaleError(
                        "internal error: array column decoded as bytes", path=ds.path, column=name
                    )
                sink.write([_as_bytes(block)], align=False)
                bar.update(len(block), block.nbytes)
        return files
    # The header comes first, so the data's size must be known before the rows: a block of
    # variable-length rows holds 8 bytes of length per row, then the rows (checked on decode).
    index = ds.index
    raw = index.blocks[:, ds.schema.index(name)]["raw_size"].astype(np.int64)
    data_bytes = int((raw - 8 * index.groups["num_rows"].astype(np.int64)).sum())
    with out.open(files[0]) as data, out.open(files[1]) as offsets:
        data.write([_npy_header(np.dtype(np.uint8), (data_bytes,))], align=False)
        offsets.write([_npy_header(np.dtype("<i8"), (len(ds) + 1,))], align=False)
        offsets.write([bytes(8)], align=False)  # offsets[0] = 0
        byte = 0
        for group in range(ds.num_row_groups):
            block = reader.load_block(group, name)
            if isinstance(block, np.ndarray):
                raise BaleError(
                    "internal error: bytes column decoded as an array", path=ds.path, column=name
                )
            data.write([block.data], align=False)
            offsets.write([_as_bytes(block.offsets[1:].astype("<i8") + byte)], align=False)
            byte += len(block.data)
            bar.update(len(block), len(block.data))
        if byte != data_bytes:
            raise BaleError(
                f"the rows hold {byte} bytes, the footer's block sizes {data_bytes}",
                path=ds.path,
                column=name,
            )
    return files


def folder_name(text: str) -> str:
    """A class name as a folder name: ``file_stem``'s escapes, and ``.``/``..`` written as
    ``%2E``/``%2E%2E`` (never the folder itself or its parent); an empty name is ``_``."""
    stem = file_stem(text)
    if stem in (".", ".."):
        return stem.replace(".", "%2E")
    return stem or "_"


#: the column bale pack writes with each image's source path
SOURCE_PATH_COLUMN = "path"


class _ImagePlan:
    """Where each row of the image columns goes (``[COLUMN/][CLASS/]ROW.EXT``), the local
    check that none is there yet, and the writing of the files and ``labels.csv``."""

    def __init__(self, ds: Dataset, pictures: list[ImageColumn], labels: LabelColumn | None):
        self.ds = ds
        self.pictures = pictures
        self.labels = labels
        self.width = len(str(max(len(ds) - 1, 0)))
        # One value per row: small (a scalar or a short string), read once for folders and csv.
        self.values: Any = ds.read(columns=[labels.name])[labels.name] if labels else None
        # bale pack's path column (image folders, manifests): where each image came from, the
        # name a Kaggle test set's predictions are keyed by
        path = next((c for c in ds.schema if c.name == SOURCE_PATH_COLUMN), None)
        self.paths: list[str] | None = None
        if path is not None and path.type.kind == "string":
            self.paths = list(ds.read(columns=[path.name])[path.name])

    def stem(self, picture: ImageColumn, row: int) -> str:
        """The file name of ``row`` without its extension, relative to the export folder."""
        parts = [file_stem(picture.name)] if len(self.pictures) > 1 else []
        if self.labels is not None:
            parts.append(folder_name(self.labels.class_name(self.values[row])))
        parts.append(f"{row:0{self.width}d}")
        return "/".join(parts)

    def check_local(self, out: _Outputs) -> None:
        """Refuse, before anything is written, a file already named like one to be written
        (whatever its extension)."""
        planned: dict[str, set[str]] = {}
        for picture in self.pictures:
            for row in range(len(self.ds)):
                folder, _, name = self.stem(picture, row).rpartition("/")
                planned.setdefault(folder, set()).add(name)
        for folder, names in planned.items():
            where = out.target(folder) if folder else out.directory
            if not os.path.isdir(where):
                continue
            for entry in os.listdir(where):
                if entry.split(".", 1)[0] in names:
                    raise TargetExistsError(
                        "it exists; pass overwrite=True (--overwrite) to replace it",
                        path=os.path.join(where, entry),
                    )

    def write(self, out: _Outputs, bar: Progress) -> dict[str, list[str]]:
        """Every image file and ``labels.csv`` (written last, whole); column -> files written."""
        files: dict[str, list[str]] = {p.name: [] for p in self.pictures}
        reader = reader_of(self.ds)
        with out.open("labels.csv") as sink:
            heading = "row,file,label,class" + (",path" if self.paths is not None else "")
            sink.write([f"{heading}\n".encode()], align=False)
            start = 0
            for group in range(self.ds.num_row_groups):
                count = self.ds.row_group_sizes[group]
                for picture in self.pictures:
                    block = reader.load_block(group, picture.name)
                    lines = io.StringIO()
                    table = csv.writer(lines, lineterminator="\n")
                    nbytes = 0
                    for local in range(count):
                        row = start + local
                        value = block.row(local) if isinstance(block, VarRows) else block[local]
                        name = f"{self.stem(picture, row)}.{picture.extension(value)}"
                        data = picture.file_bytes(value)
                        out.put(name, data)
                        nbytes += len(data)
                        files[picture.name].append(name)
                        cells = [row, name, *self._label_cells(row)]
                        table.writerow(cells if self.paths is None else [*cells, self.paths[row]])
                    sink.write([lines.getvalue().encode()], align=False)
                    bar.update(count, nbytes)
                start += count
        return files

    def _label_cells(self, row: int) -> list[str]:
        if self.labels is None:
            return ["", ""]
        value = self.values[row]
        text = value if isinstance(value, str) else str(int(value))
        return [text, self.labels.class_name(value)]
