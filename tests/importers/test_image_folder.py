"""Image folders as RowSources (bale.importers.image_folder): classes, files, names and splits."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data as skdata
from image_samples import jpeg, read_all

from bale import BaleError
from bale.format.schema import Array, Bytes, String
from bale.importers.base import SourceBatch
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


def _read_within(source: ImageFolderSource, fifo: Path, seconds: float = 30) -> SourceBatch:
    """``read_all(source)`` in a thread; if it is still blocked after ``seconds`` (opening the
    FIFO), a writer is opened and closed to release it, and the test fails."""
    done: list[Any] = []
    thread = threading.Thread(target=lambda: done.append(read_all(source)), daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(seconds)
        pytest.fail(f"reading the folder blocked on the FIFO {fifo}")
    batch: SourceBatch = done[0]
    return batch


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("size", [None, (24, 32)])
def test_fifo_in_a_folder_is_skipped_with_its_reason(
    folder: tuple[Path, dict[str, bytes]], size: tuple[int, int] | None
) -> None:
    root, files = folder
    fifo = root / "cat" / "0.jpg"  # sorts first: also the file a decoded size is taken from
    os.mkfifo(fifo)
    source = ImageFolderSource(root, size=size)  # the files' bytes, or decoded and resized
    batch = _read_within(source, fifo)
    skipped = {s.where: s.reason for s in batch.skipped}
    assert set(skipped) == {"cat/0.jpg", "cat/corrupt.jpg", "rocket/truncated.jpg"}
    assert "not a regular file: a FIFO" in skipped["cat/0.jpg"]
    assert sorted(batch.columns["path"]) == sorted(files)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_first_in_a_folder_decoded_at_its_own_size(tmp_path: Path) -> None:
    data = jpeg(skdata.rocket()[:40, :50])
    (tmp_path / "b.jpg").write_bytes(data)
    fifo = tmp_path / "a.jpg"  # the first file: the decoded size comes from the next one
    os.mkfifo(fifo)
    source = ImageFolderSource(tmp_path, keep_bytes=False)
    batch = _read_within(source, fifo)
    assert batch.columns["image"].shape == (1, 40, 50, 3)
    assert [s.where for s in batch.skipped] == ["a.jpg"]


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_device_in_a_folder_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "b.jpg").write_bytes(jpeg(skdata.rocket()[:40, :50]))
    (tmp_path / "a.jpg").symlink_to("/dev/zero")  # read, it would never end
    batch = read_all(ImageFolderSource(tmp_path))
    assert [(s.where, s.reason) for s in batch.skipped] == [
        ("a.jpg", "SpecialFileError: not a regular file: a character device")
    ]
    assert batch.columns["path"] == ["b.jpg"]
