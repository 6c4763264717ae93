"""Rows of image files (bale.importers.image_files): reading, decoding, resizing, skipping, pickling."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data as skdata
from image_samples import png, read_all
from PIL import Image

from bale import BaleError
from bale.format.schema import Array
from bale.images import DecodeImages
from bale.importers.image_folder import ImageFolderSource


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


def test_16_bit_greyscale_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    """A 16-bit PNG (Pillow mode "I;16") is scaled to 8 bits: Pillow's convert("RGB") clipped
    it to white (mean 254.5 for a photo of mean ~128)."""
    photo = skdata.camera()  # uint8 greyscale
    low_bits = np.random.default_rng(0).integers(0, 256, photo.shape)  # below one 8-bit step
    deep = (photo.astype(np.uint16) * 257 + low_bits - 128).clip(0, 65535).astype(np.uint16)
    (tmp_path / "deep").mkdir()
    (tmp_path / "flat").mkdir()
    deep_png = tmp_path / "deep" / "camera.png"
    Image.fromarray(deep).save(deep_png)
    with Image.open(deep_png) as written:
        assert written.mode.startswith("I")  # really a 16-bit file
    Image.fromarray(photo).save(tmp_path / "flat" / "camera.png")
    size = (128, 96)
    deep_rows = read_all(ImageFolderSource(tmp_path / "deep", size=size))
    flat_rows = read_all(ImageFolderSource(tmp_path / "flat", size=size))
    assert not deep_rows.skipped
    got = deep_rows.columns["image"][0].astype(int)
    want = flat_rows.columns["image"][0].astype(int)
    assert abs(got.mean() - photo.mean()) < 3
    assert np.abs(got - want).max() <= 1  # the same picture, to within rounding
    # decoded at its own size too: every pixel within rounding of the 8-bit photo
    native = read_all(ImageFolderSource(tmp_path / "deep", keep_bytes=False)).columns["image"]
    assert native.shape == (1, *photo.shape, 3)
    assert np.abs(native[0, :, :, 0].astype(int) - photo).max() <= 1


def test_float_and_32_bit_images_are_skipped_with_a_reason(tmp_path: Path) -> None:
    photo = skdata.camera()[:64, :64]
    Image.fromarray(photo.astype(np.float32) / 255).save(tmp_path / "float.tif")
    Image.fromarray(photo.astype(np.int32) * 70000).save(tmp_path / "wide.tif")
    Image.fromarray(photo).save(tmp_path / "good.png")
    batch = read_all(ImageFolderSource(tmp_path, size=(32, 32)))
    assert batch.columns["path"] == ["good.png"]
    reasons = {s.where: s.reason for s in batch.skipped}
    assert "floating-point greyscale image" in reasons["float.tif"]
    assert "32-bit greyscale image" in reasons["wide.tif"]
    assert all("convert it to 8 or 16 bits" in r for r in reasons.values())
