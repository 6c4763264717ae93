"""Writing a file's columns to .npy files and its metadata to JSON, no pickles (`bale export`)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, BinaryIO

import numpy as np

from bale._core.dataset import Dataset, reader_of
from bale.errors import BaleError
from bale.format.schema import Array
from bale.io.remote_url import is_remote, redact_url


def export(
    path: str | os.PathLike[str],
    directory: str | os.PathLike[str],
    columns: Sequence[str] | None = None,
    *,
    overwrite: bool = False,
    on_column: Callable[[str, list[str]], None] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """Write every column (or ``columns``) of the file at ``path`` to ``directory``: an array
    column as ``NAME.npy``; a bytes or string column as ``NAME.data.npy`` (uint8, the rows
    concatenated, UTF-8 for strings) plus ``NAME.offsets.npy`` (int64: row i is
    ``data[offsets[i]:offsets[i + 1]]``); the metadata as ``metadata.json``. Columns are
    streamed a row group at a time, so memory stays bounded. ``on_column(name, file_names)`` is
    called as each column is done. Returns the paths written, ``metadata.json`` last. ``path``
    may be a URL, read with ``storage_options`` (see ``bale.open``); ``directory`` is local.

    >>> export("train.bale", "out/", ["label", "caption"])  # doctest: +SKIP
    ['out/label.npy', 'out/caption.data.npy', 'out/caption.offsets.npy', 'out/metadata.json']
    """
    directory = os.fspath(directory)
    if is_remote(directory):
        raise BaleError(
            "export writes .npy files to a local directory; writing to object storage is not "
            f"supported yet: {redact_url(directory)!r}"
        )
    os.makedirs(directory, exist_ok=True)
    written: list[str] = []
    with Dataset(path, storage_options=storage_options) as ds:
        names = list(columns or ds.schema.names)
        for name in names:
            if name not in ds.schema:
                raise BaleError(f"no column {name!r}; columns are {ds.schema.names}", path=ds.path)
        for name in names:
            files = _export_column(ds, name, directory, overwrite)
            written += [os.path.join(directory, f) for f in files]
            if on_column is not None:
                on_column(name, files)
        meta_path = os.path.join(directory, "metadata.json")
        with open(meta_path, "w", encoding="utf-8") as f:
            json.dump(ds.metadata, f, indent=2, ensure_ascii=False)
    return [*written, meta_path]


def _new_path(directory: str, name: str, overwrite: bool) -> str:
    path = os.path.join(directory, name)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    return path


def _export_column(ds: Dataset, name: str, directory: str, overwrite: bool) -> list[str]:
    """One column to .npy file(s), a row group at a time; returns the file names."""
    column = ds.schema[name]
    reader = reader_of(ds)
    if isinstance(column.type, Array):
        path = _new_path(directory, f"{name}.npy", overwrite)
        out = np.lib.format.open_memmap(
            path, mode="w+", dtype=column.type.numpy_dtype, shape=(len(ds), *column.type.shape)
        )
        start = 0
        for group in range(ds.num_row_groups):
            block = reader.load_block(group, name)
            out[start : start + len(block)] = block
            start += len(block)
        out.flush()
        del out
        return [os.path.basename(path)]
    data_path = _new_path(directory, f"{name}.data.npy", overwrite)
    offsets_path = _new_path(directory, f"{name}.offsets.npy", overwrite)
    offsets = np.lib.format.open_memmap(
        offsets_path, mode="w+", dtype=np.int64, shape=(len(ds) + 1,)
    )
    offsets[0] = 0
    row = byte = 0
    with open(data_path, "wb") as data:
        # The total size is known only at the end: stream the rows after a header, then rewrite
        # the header with the real shape (.npy headers leave room for the first axis to grow).
        _write_bytes_header(data, 0)
        data_start = data.tell()
        for group in range(ds.num_row_groups):
            block = reader.load_block(group, name)
            if isinstance(block, np.ndarray):
                raise BaleError(
                    "internal error: bytes column decoded as an array", path=ds.path, column=name
                )
            n = len(block)
            data.write(block.data)
            offsets[row + 1 : row + n + 1] = block.offsets[1:] + byte
            row += n
            byte += len(block.data)
        data.seek(0)
        _write_bytes_header(data, byte)
        if data.tell() != data_start:
            raise BaleError(f"internal error: the .npy header of {data_path} changed size")
    offsets.flush()
    del offsets
    return [os.path.basename(data_path), os.path.basename(offsets_path)]


def _write_bytes_header(f: BinaryIO, size: int) -> None:
    """The .npy header of a uint8 array of ``size`` items, as ``np.lib.format.open_memmap``
    writes it."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False}
    np.lib.format.write_array_header_1_0(f, {**header, "shape": (size,)})
