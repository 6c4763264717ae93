"""Rows backed by image files, shared by image folders and manifests: reading, decoding, checking.

Both sources produce the same columns: ``image`` (the file's bytes, unchanged, or with
``size=(h, w)`` a uint8 RGB array of exactly that shape), ``label`` (int64; absent for unlabeled
data), ``path`` (the file's path as given: relative to the folder, or as written in the manifest)
and, for manifests, one column per extra manifest column. A file that cannot be read or decoded
is skipped (a ``SkippedRow``); a decoded image whose size differs from the first is an error.
Only regular files are read: a folder's FIFOs, devices and sockets are skipped with the reason
(reading one would block or never end); a FIFO a manifest names is read, as the user asked.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from bale.errors import BaleError
from bale.format.schema import Array, Bytes, ColumnType, String
from bale.images import DecodeImages, decode_image, image_size
from bale.importers.base import RowSource, SkippedRow, SourceBatch
from bale.io.source import file_kind

ResizeMode = Literal["crop", "stretch"]
SHOWN = 5  # how many offending files or lines an error message lists


class ImageFilesSource(RowSource):
    """Rows backed by image files: shared by folders and manifests (reading, decoding, skipping).

    Subclasses find the files and their labels; this class turns them into rows.
    """

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
        read_fifos: bool = False,
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
        self._read_fifos = read_fifos
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
            except (_WrongShapeError, ImportError):
                # a setting to fix, or a library missing (Pillow, simplejpeg): the same for
                # every file, so stop at the first with its install hint rather than skip all
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
        data = read_image_file(self._full_path(row), read_fifos=self._read_fifos)
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
                path = self._full_path(row)
                height, width = image_size(read_image_file(path, read_fifos=self._read_fifos))
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


def read_image_file(path: str, *, read_fifos: bool) -> bytes:
    """The bytes of a regular file (or, with ``read_fifos``, of a FIFO: blocking until its writer
    finishes). Anything else raises ``SpecialFileError`` without blocking: ``open`` of a FIFO
    with no writer never returns, and a device such as /dev/zero never ends."""
    if read_fifos and stat.S_ISFIFO(os.stat(path).st_mode):
        with open(path, "rb") as f:
            return f.read()
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb", closefd=True) as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise SpecialFileError(f"not a regular file: {file_kind(mode)}", path=path)
        os.set_blocking(fd, True)
        return f.read()


class SpecialFileError(BaleError):
    """A file to read is a FIFO, device, socket or folder: skipped, never read."""


class _WrongShapeError(BaleError):
    """A decoded image whose size differs from the first one: a setting to fix, never skipped."""
