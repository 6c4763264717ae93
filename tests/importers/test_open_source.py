"""open_source's choice of importer (bale.importers): by extension, by folder content, with hints."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
from image_samples import write_manifest

import bale.importers as importers
from bale import BaleError
from bale.importers import open_source
from bale.importers.base import RowSource, SourceBatch
from bale.importers.image_folder import ImageFolderSource
from bale.importers.manifest import ManifestSource


def test_open_source_picks_folders_and_manifests(
    tmp_path: Path, folder: tuple[Path, dict[str, bytes]], manifest_rows: list[dict[str, Any]]
) -> None:
    root, _ = folder
    assert isinstance(open_source(root), ImageFolderSource)
    assert isinstance(open_source(str(root), size=(8, 8)), ImageFolderSource)
    for kind in ("csv", "json", "jsonl"):
        manifest = write_manifest(tmp_path / f"m.{kind}", manifest_rows, kind)
        assert isinstance(open_source(manifest), ManifestSource)


def test_open_source_errors(tmp_path: Path, folder: tuple[Path, dict[str, bytes]]) -> None:
    root, _ = folder
    with pytest.raises(BaleError, match="no such file or folder; bale pack reads an image folder"):
        open_source(tmp_path / "nothing")
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    with pytest.raises(BaleError, match=r"cannot tell what '.parquet' holds.*\.npy"):
        open_source(tmp_path / "x.parquet")
    with pytest.raises(BaleError, match=r"\['trust'\] do not apply to image folder input"):
        open_source(root, trust=True)
    for split in ("train", "test"):
        (tmp_path / "kaggle" / split).mkdir(parents=True)
    with pytest.raises(BaleError, match=r"split folders \(test, train\).*pack_splits"):
        open_source(tmp_path / "kaggle")


class _FakeSource(RowSource):
    def __init__(self, path: str, **options: Any) -> None:
        self.path = path
        self.options = options

    @property
    def num_rows(self) -> int:
        return 0

    def read(self, start: int, stop: int) -> SourceBatch:
        raise NotImplementedError


@pytest.mark.parametrize(
    ("create", "module", "cls"),
    [
        ("a.npy", "bale.importers.npy", "NpySource"),
        ("a.NPZ", "bale.importers.npy", "NpzSource"),
        ("a.h5", "bale.importers.hdf5", "Hdf5Source"),
        ("a.hdf5", "bale.importers.hdf5", "Hdf5Source"),
        ("a.pkl", "bale.importers.pickle", "PickleSource"),
        ("a.pickle", "bale.importers.pickle", "PickleSource"),
        ("a.zarr/", "bale.importers.zarr", "ZarrSource"),
        ("group/.zgroup", "bale.importers.zarr", "ZarrSource"),
        ("v3/zarr.json", "bale.importers.zarr", "ZarrSource"),
        ("table/__rootdirs__", "bale.importers.bcolz", "BcolzSource"),
        ("carray/meta/sizes", "bale.importers.bcolz", "BcolzSource"),
    ],
)
def test_open_source_dispatches_array_formats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, create: str, module: str, cls: str
) -> None:
    fake = types.ModuleType(module)
    setattr(fake, cls, type(cls, (_FakeSource,), {}))
    monkeypatch.setitem(sys.modules, module, fake)
    if create.endswith("/"):
        (tmp_path / create).mkdir()
    else:
        (tmp_path / create).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / create).write_bytes(b"")
    target = str(tmp_path / create.rstrip("/").split("/")[0])  # the file, or the top folder
    source = open_source(target, flag=1)
    assert type(source).__name__ == cls
    assert source.path == target and source.options == {"flag": 1}  # type: ignore[attr-defined]


def test_open_source_explains_a_missing_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.h5").write_bytes(b"")

    def no_h5py(name: str) -> Any:
        raise ModuleNotFoundError("No module named 'h5py'", name="h5py")

    monkeypatch.setattr(importers.importlib, "import_module", no_h5py)
    with pytest.raises(BaleError, match=r"needs the 'h5py' package: pip install h5py"):
        open_source(tmp_path / "a.h5")


def test_open_source_explains_a_missing_importer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.zarr").mkdir()
    monkeypatch.setitem(sys.modules, "bale.importers.zarr", None)
    with pytest.raises(BaleError, match=r"needs bale\.importers\.zarr"):
        open_source(tmp_path / "a.zarr")


def test_open_source_turns_an_import_error_at_open_into_a_bale_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class NeedsLibrary(_FakeSource):
        def __init__(self, path: str) -> None:
            raise ImportError("reading HDF5 needs h5py: pip install h5py")

    fake = types.ModuleType("bale.importers.hdf5")
    fake.Hdf5Source = NeedsLibrary  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bale.importers.hdf5", fake)
    (tmp_path / "a.h5").write_bytes(b"")
    with pytest.raises(BaleError, match="pip install h5py"):
        open_source(tmp_path / "a.h5")
