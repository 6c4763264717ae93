"""Image folders and manifests as RowSources (bale.importers.image_folder), and open_source's choice."""

from __future__ import annotations

import io
import json
import os
import pickle
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import simplejpeg
import skimage.data as skdata
from PIL import Image

import bale.importers as importers
from bale import BaleError
from bale.format.schema import Array, Bytes, String
from bale.images import DecodeImages
from bale.importers import open_source
from bale.importers.base import RowSource, SourceBatch
from bale.importers.image_folder import (
    ImageFolderSource,
    ManifestSource,
    find_splits,
    split_classes,
)

PHOTOS = {"cat": "chelsea", "coffee": "coffee", "rocket": "rocket"}


def jpeg(array: np.ndarray, quality: int = 85) -> bytes:
    return bytes(simplejpeg.encode_jpeg(np.ascontiguousarray(array), quality=quality))


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def make_folder(root: Path, per_class: int = 4) -> dict[str, bytes]:
    """Class folders of real photo crops (JPEG, one PNG), plus a corrupt and a truncated JPEG.
    Returns relative path -> the file's bytes for the readable images."""
    files: dict[str, bytes] = {}
    for label, name in PHOTOS.items():
        photo = getattr(skdata, name)()
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            crop = photo[i * 9 : i * 9 + 60 + 4 * i, i * 11 : i * 11 + 80]
            files[f"{label}/{i:02d}.jpg"] = jpeg(crop)
    files["coffee/zz.png"] = png(skdata.coffee()[100:140, 200:250])
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    good = files["cat/00.jpg"]
    (root / "cat" / "corrupt.jpg").write_bytes(np.random.default_rng(0).bytes(500))
    (root / "rocket" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "cat" / ".DS_Store").write_bytes(b"junk")
    (root / "cat" / "notes.txt").write_text("not an image")
    return files


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "photos"
    return root, make_folder(root)


def read_all(source: RowSource) -> SourceBatch:
    return source.read(0, source.num_rows)


# -- image folders ----------------------------------------------------------------------------


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


def test_take_returns_rows_in_the_order_asked(folder: tuple[Path, dict[str, bytes]]) -> None:
    root, files = folder
    source = ImageFolderSource(root)
    batch = source.take([7, 2, 5])
    assert batch.rows.tolist() == [7, 2, 5]
    assert [files[p] for p in batch.columns["path"]] == batch.columns["image"]
    with pytest.raises(IndexError):
        source.take([source.num_rows])


def test_verify_false_stores_unreadable_files_too(folder: tuple[Path, dict[str, bytes]]) -> None:
    root, files = folder
    batch = read_all(ImageFolderSource(root, verify=False))
    assert not batch.skipped and len(batch) == len(files) + 2


@pytest.mark.parametrize("mode", ["crop", "stretch"])
def test_size_decodes_to_fixed_shape_arrays(
    folder: tuple[Path, dict[str, bytes]], mode: Any
) -> None:
    root, files = folder
    source = ImageFolderSource(root, size=(24, 40), resize_mode=mode)
    assert source.column_types["image"] == Array("uint8", (24, 40, 3))
    assert source.metadata["image_size"] == [24, 40] and source.metadata["resize_mode"] == mode
    batch = read_all(source)
    images = batch.columns["image"]
    assert images.shape == (len(files), 24, 40, 3) and images.dtype == np.uint8
    reference = DecodeImages(size=(24, 40), center_crop=mode == "crop")
    for path, image in zip(batch.columns["path"], images, strict=True):
        expected = reference({"image": [files[path]]})["image"][0]
        np.testing.assert_array_equal(image, expected)
    # the content is the photo: compare the PNG (lossless) with Pillow's own resize
    png_row = batch.columns["path"].index("coffee/zz.png")
    original = skdata.coffee()[100:140, 200:250]
    if mode == "stretch":
        pil = Image.fromarray(original).resize((40, 24), Image.Resampling.BILINEAR)
        diff = np.abs(images[png_row].astype(int) - np.asarray(pil).astype(int)).mean()
        assert diff < 2
    else:  # centre crop of a 40x50 image to aspect 24:40 keeps rows 5..35
        pil = Image.fromarray(original[5:35]).resize((40, 24), Image.Resampling.BILINEAR)
        diff = np.abs(images[png_row].astype(int) - np.asarray(pil).astype(int)).mean()
        assert diff < 4


def test_decoding_at_native_size_needs_equal_sizes(tmp_path: Path) -> None:
    photo = skdata.astronaut()
    (tmp_path / "a").mkdir()
    crops = [photo[i * 20 : i * 20 + 32, :48] for i in range(3)]
    for i, crop in enumerate(crops):
        (tmp_path / "a" / f"{i}.png").write_bytes(png(crop))
    batch = read_all(ImageFolderSource(tmp_path, keep_bytes=False))
    np.testing.assert_array_equal(batch.columns["image"], np.stack(crops))  # PNG is lossless

    (tmp_path / "a" / "3.png").write_bytes(png(photo[:40, :48]))
    source = ImageFolderSource(tmp_path, keep_bytes=False)
    with pytest.raises(BaleError, match=r"a/3.png is 40x48 but the first image .* 32x48.*--size"):
        read_all(source)


def test_keep_bytes_with_size_is_refused(folder: tuple[Path, dict[str, bytes]]) -> None:
    with pytest.raises(ValueError, match="pass one of the two"):
        ImageFolderSource(folder[0], size=(8, 8), keep_bytes=True)
    with pytest.raises(ValueError, match="resize_mode"):
        ImageFolderSource(folder[0], size=(8, 8), resize_mode="squash")  # type: ignore[arg-type]


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


def test_source_survives_pickling(folder: tuple[Path, dict[str, bytes]]) -> None:
    source = ImageFolderSource(folder[0], size=(16, 16))
    assert source.picklable and source.random_access
    copy = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(
        copy.take([3, 1]).columns["image"], source.take([3, 1]).columns["image"]
    )


def test_row_size_hint_follows_the_files(folder: tuple[Path, dict[str, bytes]]) -> None:
    root, files = folder
    hint = ImageFolderSource(root).row_nbytes_hint
    sizes = [len(d) for d in files.values()]
    assert min(sizes) / 2 < hint < max(sizes) * 2
    assert ImageFolderSource(root, size=(10, 20)).row_nbytes_hint == 600


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


# -- manifests --------------------------------------------------------------------------------


def write_manifest(path: Path, rows: list[dict[str, Any]], kind: str) -> Path:
    if kind == "csv":
        names = list(rows[0])
        lines = [",".join(names)]
        for row in rows:
            lines.append(",".join(_csv_cell(row[n]) for n in names))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif kind == "json":
        path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    else:
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _csv_cell(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, list) else str(value)
    return f'"{text}"' if "," in text else text


@pytest.fixture
def manifest_rows(folder: tuple[Path, dict[str, bytes]]) -> list[dict[str, Any]]:
    _, files = folder
    rows = []
    for i, path in enumerate(sorted(files)):
        rows.append(
            {
                "file": f"photos/{path}",
                "class": path.split("/")[0],
                "box": [i, i + 0.5, 10, 20],
                "score": i * 2,
                "note": f"row {i}",
            }
        )
    return rows


@pytest.mark.parametrize("kind", ["csv", "json", "jsonl"])
def test_manifest_columns(
    tmp_path: Path,
    folder: tuple[Path, dict[str, bytes]],
    manifest_rows: list[dict[str, Any]],
    kind: str,
) -> None:
    _, files = folder
    manifest = write_manifest(tmp_path / f"m.{kind}", manifest_rows, kind)
    source = ManifestSource(manifest)
    assert source.metadata["classes"] == ["cat", "coffee", "rocket"]
    assert dict(source.column_types) == {
        "image": Bytes(),
        "label": Array("int64"),
        "path": String(),
        "box": Array("float32", (4,)),
        "score": Array("int64"),
        "note": String(),
    }
    batch = read_all(source)
    assert not batch.skipped
    for i, row in enumerate(manifest_rows):
        assert batch.columns["path"][i] == row["file"]
        assert batch.columns["image"][i] == files[row["file"].removeprefix("photos/")]
        assert source.metadata["classes"][batch.columns["label"][i]] == row["class"]
        np.testing.assert_array_equal(batch.columns["box"][i], np.float32(row["box"]))
        assert batch.columns["score"][i] == row["score"]
        assert batch.columns["note"][i] == row["note"]


def test_manifest_integer_labels_are_kept(
    tmp_path: Path, manifest_rows: list[dict[str, Any]]
) -> None:
    rows = [{"path": r["file"], "label": 7 - i} for i, r in enumerate(manifest_rows[:5])]
    source = ManifestSource(write_manifest(tmp_path / "m.csv", rows, "csv"))
    assert "classes" not in source.metadata
    assert read_all(source).columns["label"].tolist() == [7, 6, 5, 4, 3]


def test_manifest_missing_files_are_listed_with_lines(
    tmp_path: Path, manifest_rows: list[dict[str, Any]]
) -> None:
    rows = [dict(r) for r in manifest_rows]
    rows[2]["file"] = "photos/cat/nope.jpg"
    rows[5]["file"] = "photos/gone.jpg"
    manifest = write_manifest(tmp_path / "m.csv", rows, "csv")
    with pytest.raises(
        BaleError,
        match=r"2 of 13 files listed do not exist .*line 4: photos/cat/nope.jpg; "
        r"line 7: photos/gone.jpg.*--skip-missing",
    ):
        ManifestSource(manifest)
    source = ManifestSource(manifest, missing="skip")
    batch = read_all(source)
    assert [(s.row, s.where, s.reason) for s in batch.skipped] == [
        (2, "photos/cat/nope.jpg (line 4)", "file not found"),
        (5, "photos/gone.jpg (line 7)", "file not found"),
    ]
    assert len(batch) == 11 and 2 not in batch.rows and 5 not in batch.rows


def test_manifest_root_option(
    tmp_path: Path, folder: tuple[Path, dict[str, bytes]], manifest_rows: list[dict[str, Any]]
) -> None:
    root, files = folder
    rows = [{"image": r["file"].removeprefix("photos/"), "y": r["class"]} for r in manifest_rows]
    manifest = write_manifest(tmp_path / "sub.json", rows, "json")
    with pytest.raises(BaleError, match="do not exist"):
        ManifestSource(manifest)
    batch = read_all(ManifestSource(manifest, root=root))
    assert [files[p] for p in batch.columns["path"]] == batch.columns["image"]


def test_manifest_errors_name_the_line(tmp_path: Path, manifest_rows: list[dict[str, Any]]) -> None:
    rows = [dict(r) for r in manifest_rows]
    rows[3]["box"] = [1, 2, 3]
    with pytest.raises(
        BaleError, match=r"line 4: a value of shape \(3,\) where line 1 has shape \(4,\)"
    ):
        ManifestSource(write_manifest(tmp_path / "a.jsonl", rows, "jsonl"))
    rows = [dict(r) for r in manifest_rows]
    rows[1]["class"] = ""
    with pytest.raises(BaleError, match="line 3: empty label"):
        ManifestSource(write_manifest(tmp_path / "b.csv", rows, "csv"))
    rows = [{"file": r["file"], "path": "x"} for r in manifest_rows]
    with pytest.raises(BaleError, match="'path' would collide"):
        ManifestSource(write_manifest(tmp_path / "c.csv", rows, "csv"), path_column="file")
    rows = [{"where": r["file"]} for r in manifest_rows]
    with pytest.raises(BaleError, match="no path column"):
        ManifestSource(write_manifest(tmp_path / "d.csv", rows, "csv"))
    (tmp_path / "e.csv").write_bytes(b"path,label\n\xff\xfe.jpg,1\n")
    with pytest.raises(BaleError, match="not UTF-8"):
        ManifestSource(tmp_path / "e.csv")
    (tmp_path / "f.json").write_text('[{"path": "a.jpg"}, 3]')
    with pytest.raises(BaleError, match="list of objects"):
        ManifestSource(tmp_path / "f.json")
    (tmp_path / "g.jsonl").write_text('{"path": "a.jpg"}\n{oops\n')
    with pytest.raises(BaleError, match="line 2: not JSON"):
        ManifestSource(tmp_path / "g.jsonl")
    (tmp_path / "h.csv").write_text("path,label\n")
    with pytest.raises(BaleError, match="lists no rows"):
        ManifestSource(tmp_path / "h.csv")


def test_manifest_mixed_text_and_numbers(
    tmp_path: Path, manifest_rows: list[dict[str, Any]]
) -> None:
    rows = [dict(r) for r in manifest_rows]
    rows[0]["score"] = "high"
    with pytest.raises(BaleError, match="entry 2: a number in a column that also holds text"):
        ManifestSource(write_manifest(tmp_path / "a.json", rows, "json"))
    # in CSV every cell is text: a column that is not all numbers stays text
    batch = read_all(ManifestSource(write_manifest(tmp_path / "a.csv", rows, "csv")))
    assert batch.columns["score"][:2] == ["high", "2"]


# -- open_source ------------------------------------------------------------------------------


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
