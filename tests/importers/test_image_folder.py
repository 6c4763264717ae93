"""Image folders as RowSources (bale.importers.image_folder): classes, files, names and splits."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data as skdata
from image_samples import jpeg, read_all

from bale import BaleError
from bale.format.schema import Array, Bytes, String
from bale.importers.image_folder import ImageFolderSource, find_splits, split_classes


def test_folder_rows_are_files_bytes_labels_and_paths(
    folder: tuple[Path, dict[str, bytes]],
) -> None:
    root, files = folder
    source = ImageFolderSource(root)
    assert source.metadata["classes"] == ["cat", "coffee", "rocket"]
    assert source.num_rows == len(files) + 2  # the corrupt and truncated files are rows too
    assert dict(source.column_types) == {
        "image": Bytes(),
        "label": Array("int64"),
        "path": String(),
    }
    batch = read_all(source)
    assert sorted(batch.columns["path"]) == sorted(files)
    for path, data, label in zip(
        batch.columns["path"], batch.columns["image"], batch.columns["label"], strict=True
    ):
        assert data == files[path]  # stored unchanged, byte for byte
        assert source.metadata["classes"][label] == path.split("/")[0]
    assert batch.columns["label"].dtype == np.int64
    skipped = {s.where: s.reason for s in batch.skipped}
    assert set(skipped) == {"cat/corrupt.jpg", "rocket/truncated.jpg"}
    assert "Premature end" in skipped["rocket/truncated.jpg"]
    # rows are numbered in sorted path order, skipped ones included
    all_paths = sorted([*files, "cat/corrupt.jpg", "rocket/truncated.jpg"])
    assert [all_paths[r] for r in batch.rows.tolist()] == batch.columns["path"]


def test_flat_folder_is_unlabeled(tmp_path: Path) -> None:
    data = jpeg(skdata.rocket()[:50, :50])
    (tmp_path / "b.jpg").write_bytes(data)
    (tmp_path / "a.JPG").write_bytes(data)
    source = ImageFolderSource(tmp_path)
    assert "label" not in source.column_types and "classes" not in source.metadata
    batch = read_all(source)
    assert batch.columns["path"] == ["a.JPG", "b.jpg"] and "label" not in batch.columns


def test_nested_folders_inside_a_class_are_included(tmp_path: Path) -> None:
    data = jpeg(skdata.rocket()[:50, :50])
    (tmp_path / "dog" / "2020").mkdir(parents=True)
    (tmp_path / "dog" / "2020" / "x.jpg").write_bytes(data)
    (tmp_path / "dog" / "y.jpg").write_bytes(data)
    batch = read_all(ImageFolderSource(tmp_path))
    assert batch.columns["path"] == ["dog/2020/x.jpg", "dog/y.jpg"]


def test_empty_folders_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(BaleError, match="no image files found"):
        ImageFolderSource(tmp_path)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "readme.txt").write_text("x")
    with pytest.raises(BaleError, match=r"no image files found .*class folders \['cat'\]"):
        ImageFolderSource(tmp_path)
    with pytest.raises(BaleError, match="not a folder"):
        ImageFolderSource(tmp_path / "missing")


def test_images_beside_class_folders_are_an_error(folder: tuple[Path, dict[str, bytes]]) -> None:
    root, files = folder
    (root / "stray.jpg").write_bytes(files["cat/00.jpg"])
    with pytest.raises(BaleError, match=r"both class folders .*\(stray\.jpg\)"):
        ImageFolderSource(root)


@pytest.mark.skipif(sys.platform != "linux", reason="needs a file system that takes any bytes")
def test_non_utf8_file_name_is_named(folder: tuple[Path, dict[str, bytes]]) -> None:
    root, files = folder
    bad = os.path.join(os.fsencode(root), b"cat", b"caf\xe9.jpg")
    with open(bad, "wb") as f:
        f.write(files["cat/00.jpg"])
    with pytest.raises(BaleError, match=r"not valid UTF-8.*b'cat/caf\\xe9.jpg'"):
        ImageFolderSource(root)


def test_given_classes_fix_label_ids(folder: tuple[Path, dict[str, bytes]]) -> None:
    root, _ = folder
    source = ImageFolderSource(root, classes=["ant", "cat", "coffee", "rocket"])
    batch = read_all(source)
    for path, label in zip(batch.columns["path"], batch.columns["label"], strict=True):
        assert ["ant", "cat", "coffee", "rocket"][label] == path.split("/")[0]
    with pytest.raises(BaleError, match=r"class folders \['rocket'\] are not in the given"):
        ImageFolderSource(root, classes=["cat", "coffee"])


def test_split_folders_are_found(tmp_path: Path) -> None:
    for split, classes in {"train": ["a", "b"], "valid": ["a", "c"], "test": []}.items():
        (tmp_path / split).mkdir()
        for c in classes:
            (tmp_path / split / c).mkdir()
    splits = find_splits(tmp_path)
    assert splits == {s: str(tmp_path / s) for s in ("test", "train", "valid")}
    assert split_classes(splits) == ["a", "b", "c"]
    (tmp_path / "other").mkdir()
    assert find_splits(tmp_path) == {}  # another folder: a class folder tree, not splits
    assert find_splits(tmp_path / "train") == {}
