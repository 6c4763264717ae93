"""Image folders (one sub-folder per class) as RowSources: finding the classes, files and splits.

The rows (``image``, ``label``, ``path``) are read by ``ImageFilesSource`` (image_files.py).

>>> source = ImageFolderSource("photos/")               # photos/cat/1.jpg, photos/dog/2.png, ...
>>> source.num_rows, source.metadata["classes"]        # doctest: +SKIP
(2, ['cat', 'dog'])
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from bale.errors import BaleError
from bale.importers.image_files import SHOWN, ImageFilesSource, ResizeMode
from bale.importers.splits import SPLIT_NAMES, is_split_name

__all__ = [
    "IMAGE_EXTENSIONS",
    "SPLIT_NAMES",
    "ImageFolderSource",
    "class_folders",
    "find_splits",
    "split_classes",
    "split_folder_problem",
]

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


class ImageFolderSource(ImageFilesSource):
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
    not end in one of ``extensions``. FIFOs, devices and sockets are skipped (and counted) like
    unreadable images.
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
                f"holds both class folders ({', '.join(folders[:SHOWN])}) and images directly "
                f"inside it ({', '.join(loose[:SHOWN])}): move the images into class folders "
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
                + (f" inside the class folders {folders[:SHOWN]}" if folders else "")
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

    Anything that is not a folder counts: a FIFO, device or socket is skipped when read, with
    its reason (never opened for reading: that could block or never end).
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
        shown = ", ".join(repr(b) for b in bad[:SHOWN])
        raise BaleError(
            f"{len(bad)} file name(s) are not valid UTF-8 and cannot be stored in the text "
            f"'path' column: {shown}" + (" ..." if len(bad) > SHOWN else "") + "; rename them",
            path=root,
        )


def find_splits(root: str | os.PathLike[str]) -> dict[str, str]:
    """``{split: folder}`` when ``root`` holds split folders (two or more, all named like
    splits: ``train/`` and ``valid/``, ``val/``, ``test/``, ``test_stg1/``, ...; no other
    folders); else ``{}``."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        return {}
    folders = class_folders(root)
    if len(folders) < 2 or not all(is_split_name(f) for f in folders):
        return {}
    return {name: os.path.join(root, name) for name in folders}


def split_folder_problem(root: str | os.PathLike[str]) -> str | None:
    """Why ``root`` cannot be packed as one image folder although some of its folders are
    named like splits (None when none is, or when it is a split root): a lone ``train/`` would
    become one class named "train", and ``train/`` beside ``cat/`` a class among classes."""
    root = os.fspath(root)
    folders = class_folders(root)
    splits = [f for f in folders if is_split_name(f)]
    if not splits or find_splits(root):
        return None
    example = os.path.join(root, splits[0])
    pack_one = f"`bale pack {example} {splits[0]}.bale` (bale.pack({example!r}, ...))"
    if len(folders) == 1:
        return (
            f"holds only the split folder {splits[0]}/, whose sub-folders are the classes; "
            f"packing it as it is would make one class named {splits[0]!r}. Pack the split "
            f"itself: {pack_one}"
        )
    others = [f for f in folders if f not in splits]
    return (
        f"folders {splits} are named like dataset splits but sit beside {others[:SHOWN]}, "
        f"named like classes. Pack a split itself ({pack_one}); or keep only split folders "
        "here (train/, valid/, test/, test_*/) and `bale pack ROOT OUT_DIR/` writes one file "
        "per split; classes really named like splits can be packed from Python with "
        "ImageFolderSource(root)"
    )


def split_classes(splits: Mapping[str, str]) -> list[str]:
    """The union of the class folders of all splits, sorted: one label numbering for every split."""
    names: set[str] = set()
    for folder in splits.values():
        names.update(class_folders(folder))
    return sorted(names)
