"""Importers: turn what users already have into RowSources for `bale.pack` (``open_source`` picks one).

>>> from bale.importers import open_source
>>> source = open_source("photos/", size=(224, 224))   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bale.errors import BaleError
from bale.importers.base import RowSource, SkippedRow, SourceBatch
from bale.importers.image_folder import find_splits, split_folder_problem
from bale.importers.joined import JoinedSource

__all__ = ["JoinedSource", "RowSource", "SkippedRow", "SourceBatch", "open_source", "open_sources"]

SourcePath = str | os.PathLike[str]


@dataclass(frozen=True)
class _Importer:
    """Where a RowSource class lives, what it reads, and what to install when it cannot load."""

    module: str
    name: str
    kind: str
    install: str | None  # the pip package it needs beyond bale's own dependencies


_IMAGE_FOLDER = _Importer(
    "bale.importers.image_folder", "ImageFolderSource", "image folder", "simplejpeg Pillow"
)
_MANIFEST = _Importer("bale.importers.manifest", "ManifestSource", "manifest", "simplejpeg Pillow")
_ZARR = _Importer("bale.importers.zarr", "ZarrSource", "zarr", "'zarr>=3'")
_BCOLZ = _Importer("bale.importers.bcolz", "BcolzSource", "bcolz", None)  # needs no bcolz

_BY_EXTENSION: dict[str, _Importer] = {
    ".csv": _MANIFEST,
    ".tsv": _MANIFEST,
    ".json": _MANIFEST,
    ".jsonl": _MANIFEST,
    ".ndjson": _MANIFEST,
    ".npy": _Importer("bale.importers.npy", "NpySource", "npy", None),
    ".npz": _Importer("bale.importers.npy", "NpzSource", "npz", None),
    ".h5": _Importer("bale.importers.hdf5", "Hdf5Source", "HDF5", "h5py"),
    ".hdf5": _Importer("bale.importers.hdf5", "Hdf5Source", "HDF5", "h5py"),
    ".pkl": _Importer("bale.importers.pickle", "PickleSource", "pickle", None),
    ".pickle": _Importer("bale.importers.pickle", "PickleSource", "pickle", None),
    ".zarr": _ZARR,
}

#: compressions PickleSource recognises by their first bytes, as in ``x.pkl.gz``
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zstd")

ACCEPTED = (
    "an image folder (one sub-folder per class, or images directly inside), a manifest "
    "(.csv, .tsv, .json, .jsonl), .npy, .npz, .h5/.hdf5, .pkl/.pickle (also .pkl.gz, .bz2, .xz, "
    ".zst), a zarr array or group "
    "(.zarr or a folder with .zarray/.zgroup/zarr.json), or a bcolz carray/ctable folder"
)


def open_source(path: SourcePath, **options: Any) -> RowSource:
    """The RowSource for ``path``, chosen by its extension or, for a folder, by what it holds.

    ``options`` go to that source's constructor (``size=(224, 224)`` for images, ``root=`` for a
    manifest, ``trust=True`` for pickle, ``datasets=[...]`` or ``group=`` for HDF5); an option
    the source does not take is an error naming the options it does take. ``FILE.h5:GROUP``
    reads one group of an HDF5 file (``group="GROUP"``).
    """
    path, options = _split_group(os.fspath(path), options)
    importer, source_class = _class_for(path)
    _check_options(source_class, importer, options, path)
    return _construct(source_class, importer, path, options)


def open_sources(
    sources: Mapping[str, SourcePath | RowSource] | Sequence[SourcePath | RowSource],
    **options: Any,
) -> JoinedSource:
    """Several aligned inputs as the columns of one source (``JoinedSource``): a list (each
    keeps its column names: ``X.npy``, ``y.npy`` -> ``X``, ``y``) or ``{name: input}`` (a
    one-column input becomes column ``name``). Inputs are paths or open RowSources; each path
    gets the ``options`` its importer takes, and an option no input takes is an error.

    >>> src = open_sources({"x": "X.bcolz", "y": "y.bcolz"})   # doctest: +SKIP
    """
    named = isinstance(sources, Mapping)
    items = list(sources.items()) if isinstance(sources, Mapping) else [(None, s) for s in sources]
    if not items:
        raise ValueError("no sources to join")
    opened: list[RowSource] = []
    parts: list[tuple[str | None, RowSource]] = []
    used: set[str] = set()
    try:
        for name, item in items:
            if isinstance(item, RowSource):
                parts.append((name, item))
                continue
            path, wanted = _split_group(os.fspath(item), options)
            importer, source_class = _class_for(path)
            taken = _accepted(source_class)
            given = wanted if taken is None else {k: v for k, v in wanted.items() if k in taken}
            used.update(given)
            source = _construct(source_class, importer, path, given)
            opened.append(source)
            parts.append((name, source))
        unused = sorted(set(options) - used)
        if unused:
            raise BaleError(
                f"option(s) {unused} apply to none of the inputs "
                f"({', '.join(source.path for _, source in parts)})"
            )
        if named:
            return JoinedSource({str(n): s for n, s in parts}, owned=opened)
        return JoinedSource([s for _, s in parts], owned=opened)
    except BaseException:
        for source in opened:
            source.close()
        raise


def _split_group(path: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``FILE.h5:GROUP`` -> (``FILE.h5``, options with ``group="GROUP"``)."""
    if os.path.exists(path) or ":" not in path:
        return path, options
    base, _, group = path.rpartition(":")
    if os.path.splitext(base)[1].lower() in (".h5", ".hdf5") and os.path.isfile(base) and group:
        if "group" in options:
            raise BaleError(f"the group is given twice: {path!r} and group={options['group']!r}")
        return base, {**options, "group": group}
    return path, options


def _class_for(path: str) -> tuple[_Importer, type[RowSource]]:
    if not os.path.exists(path):
        raise BaleError(f"no such file or folder; bale pack reads {ACCEPTED}", path=path)
    importer = _importer_for(path)
    return importer, _load(importer, path)


def _construct(
    source_class: type[RowSource], importer: _Importer, path: str, options: dict[str, Any]
) -> RowSource:
    try:
        return source_class(path, **options)  # type: ignore[call-arg]
    except ImportError as exc:  # an optional library the importer loads when it opens a file
        raise BaleError(f"reading {importer.kind} input: {exc}", path=path) from exc


def _importer_for(path: str) -> _Importer:
    extension = os.path.splitext(path.rstrip("/"))[1].lower()
    if os.path.isdir(path):
        names = set(os.listdir(path))
        if extension == ".zarr" or names & {".zarray", ".zgroup", "zarr.json"}:
            return _ZARR
        if names & {"__rootdirs__", "__attrs__"} or _has_bcolz_meta(path):
            return _BCOLZ
        splits = find_splits(path)
        if splits:
            raise BaleError(
                f"holds split folders ({', '.join(splits)}): pack them with "
                "bale.pack_splits(root, out_dir) or `bale pack ROOT OUT_DIR/` (one file per split)",
                path=path,
            )
        problem = split_folder_problem(path)
        if problem:
            raise BaleError(problem, path=path)
        return _IMAGE_FOLDER
    importer = _BY_EXTENSION.get(extension)
    if importer is None and extension in _COMPRESSED:
        # pandas' to_pickle("x.pkl.gz") and friends: PickleSource reads the compression
        inner = os.path.splitext(path[: -len(extension)])[1].lower()
        if inner in (".pkl", ".pickle"):
            importer = _BY_EXTENSION[inner]
    if importer is None and extension == ".bale":
        raise BaleError(
            f"is already a .bale file: bale pack reads {ACCEPTED}. To write it again with other "
            f"codecs run `bale recompress {path} OUT --codec auto` (the codecs `bale codecs` "
            "recommends), or --codec CODEC / COLUMN=CODEC; see `bale recompress --help`",
            path=path,
        )
    if importer is None:
        raise BaleError(
            f"cannot tell what {extension or 'this file'!r} holds; bale pack reads {ACCEPTED}",
            path=path,
        )
    return importer


def _has_bcolz_meta(path: str) -> bool:
    """A bcolz carray keeps its layout in ``meta/`` (``sizes``, ``storage``) beside ``data/``."""
    meta = os.path.join(path, "meta")
    return os.path.isdir(meta) and (
        os.path.exists(os.path.join(meta, "sizes")) or os.path.exists(os.path.join(meta, "storage"))
    )


def _load(importer: _Importer, path: str) -> type[RowSource]:
    try:
        module = importlib.import_module(importer.module)
    except ImportError as exc:
        if exc.name == importer.module:
            raise BaleError(
                f"reading {importer.kind} input needs {importer.module}, which this "
                "installation of bale does not have",
                path=path,
            ) from exc
        hint = f": pip install {importer.install}" if importer.install else ""
        raise BaleError(
            f"reading {importer.kind} input needs the {exc.name or importer.install!r} "
            f"package{hint}",
            path=path,
        ) from exc
    source_class = getattr(module, importer.name, None)
    if not isinstance(source_class, type) or not issubclass(source_class, RowSource):
        raise BaleError(f"{importer.module} has no RowSource {importer.name}", path=path)
    return source_class


def _accepted(source_class: type[RowSource]) -> list[str] | None:
    """The options a source class takes (None: any, it has ``**options``)."""
    parameters = list(inspect.signature(source_class).parameters.values())[1:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return [p.name for p in parameters]


def _check_options(
    source_class: type[RowSource], importer: _Importer, options: dict[str, Any], path: str
) -> None:
    accepted = _accepted(source_class)
    if accepted is None:
        return
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise BaleError(
            f"option(s) {unknown} do not apply to {importer.kind} input; "
            f"{source_class.__name__} takes {accepted or 'no options'}",
            path=path,
        )
