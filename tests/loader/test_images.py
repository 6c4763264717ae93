"""Image batch transforms (bale.loader.images.DecodeImages) on real photos from scikit-image."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import simplejpeg
import skimage.data as skdata
from PIL import Image

import bale
from bale import BaleError, images
from bale.images import DecodeImages, decode_image, image_size

NAMES = ("astronaut", "coffee", "chelsea")  # 512x512, 400x600, 300x451


@pytest.fixture(autouse=True)
def no_launcher_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)


def jpeg(array: np.ndarray, quality: int = 90) -> bytes:
    return bytes(simplejpeg.encode_jpeg(np.ascontiguousarray(array), quality=quality))


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def full_decode(data: bytes) -> np.ndarray:
    return np.asarray(simplejpeg.decode_jpeg(data, colorspace="RGB"))


def pil_resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(array))
    return np.asarray(image.resize((size[1], size[0]), Image.Resampling.BILINEAR))


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.int64) - b.astype(np.int64)).mean())


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {name: getattr(skdata, name)() for name in NAMES}


@pytest.fixture(scope="module")
def jpegs(photos: dict[str, np.ndarray]) -> list[bytes]:
    """The three photos as JPEGs, each its own size."""
    return [jpeg(photos[name]) for name in NAMES]


@pytest.fixture(scope="module")
def equal_jpegs(photos: dict[str, np.ndarray]) -> list[bytes]:
    """128x96 crops of the photos: equal sizes, different contents."""
    return [jpeg(photos[name][40:168, 60:156]) for name in NAMES]


# -- decoding ------------------------------------------------------------------------------------


def test_no_size_decodes_exactly_like_simplejpeg(equal_jpegs: list[bytes]) -> None:
    labels = np.array([4, 5, 6])
    batch = {"image": list(equal_jpegs), "label": labels}
    out = DecodeImages()(batch)
    assert set(out) == {"image", "label"}
    assert out["label"] is labels
    assert batch["image"] == equal_jpegs  # the input batch is not modified
    images_ = out["image"]
    assert images_.dtype == np.uint8 and images_.shape == (3, 128, 96, 3)
    for got, data in zip(images_, equal_jpegs, strict=True):
        np.testing.assert_array_equal(got, full_decode(data))


def test_other_column_name(equal_jpegs: list[bytes]) -> None:
    out = DecodeImages("pixels")({"pixels": equal_jpegs[:2]})
    np.testing.assert_array_equal(out["pixels"][1], full_decode(equal_jpegs[1]))


def test_different_sizes_need_a_size(jpegs: list[bytes]) -> None:
    with pytest.raises(BaleError, match="size"):
        DecodeImages()({"image": jpegs})


@pytest.mark.parametrize("size", [(64, 64), (96, 128), (300, 20)])
def test_size_gives_shape_and_dtype(jpegs: list[bytes], size: tuple[int, int]) -> None:
    out = DecodeImages(size=size)({"image": jpegs})["image"]
    assert out.shape == (3, *size, 3)
    assert out.dtype == np.uint8
    assert out.flags.c_contiguous


def test_size_resizes_the_whole_image(jpegs: list[bytes]) -> None:
    out = DecodeImages(size=(60, 90))({"image": jpegs})["image"]
    for got, data in zip(out, jpegs, strict=True):
        assert mean_abs_diff(got, pil_resize(full_decode(data), (60, 90))) < 6


def test_size_equal_to_the_image_is_an_exact_decode(photos: dict[str, np.ndarray]) -> None:
    data = jpeg(photos["coffee"])
    out = DecodeImages(size=(400, 600))({"image": [data]})["image"][0]
    np.testing.assert_array_equal(out, full_decode(data))


def test_center_crop(jpegs: list[bytes]) -> None:
    coffee = jpegs[1]  # 400 x 600: the centre square is columns 100..499
    out = DecodeImages(size=(100, 100), center_crop=True)({"image": [coffee]})["image"][0]
    assert out.shape == (100, 100, 3)
    full = full_decode(coffee)
    assert mean_abs_diff(out, pil_resize(full[:, 100:500], (100, 100))) < 6
    assert mean_abs_diff(out, pil_resize(full[:, :400], (100, 100))) > 20  # not the left square
    # Non-square output: astronaut 512x512 to 64x96 keeps full width, the middle 341 rows.
    astronaut = jpegs[0]
    out = DecodeImages(size=(64, 96), center_crop=True)({"image": [astronaut]})["image"][0]
    assert out.shape == (64, 96, 3)
    expected = pil_resize(full_decode(astronaut)[85:426], (64, 96))
    assert mean_abs_diff(out, expected) < 8


def test_random_resized_crop_uses_reduced_dct_and_matches_reference(
    jpegs: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    boxes: list[tuple[int, int, int, int]] = []
    decodes: list[tuple[tuple[int, int] | None, tuple[int, ...]]] = []
    real_crop_box, real_decode = images._crop_box, images.decode_image

    def record_box(*args: Any) -> tuple[int, int, int, int]:
        box = real_crop_box(*args)
        boxes.append(box)
        return box

    def record_decode(data: bytes, min_size: tuple[int, int] | None = None) -> np.ndarray:
        array = real_decode(data, min_size)
        decodes.append((min_size, array.shape))
        return array

    monkeypatch.setattr(images, "_crop_box", record_box)
    monkeypatch.setattr(images, "decode_image", record_decode)
    size = (64, 64)
    transform = DecodeImages(size=size, random_resized_crop=(0.25, 1.0), seed=3)
    batch = jpegs * 3
    out = transform({"image": batch})["image"]
    assert out.shape == (9, 64, 64, 3) and out.dtype == np.uint8
    assert len(boxes) == len(decodes) == 9
    assert len(set(boxes)) == 9  # a different crop for each image
    diffs = []
    for got, data, box, (min_size, decoded) in zip(out, batch, boxes, decodes, strict=True):
        height, width = image_size(data)
        top, left, h, w = box
        assert 0.25 * height * width * 0.99 <= h * w <= height * width
        assert 3 / 4 * 0.99 <= w / h <= 4 / 3 * 1.01
        # Decoded at a reduced DCT scale (at most half size for these >= 150-pixel crops) ...
        assert min_size is not None
        assert decoded[0] <= height // 2 and decoded[1] <= width // 2
        assert decoded[0] >= min_size[0] and decoded[1] >= min_size[1]
        # ... still enough pixels for the crop: close to a full-resolution reference. (The crop
        # origin is floored at the reduced scale, see test_random_resized_crop_is_not_shifted,
        # hence the loose per-image bound; a wrong box or scale gives 30 and more.)
        reference = pil_resize(full_decode(data)[top : top + h, left : left + w], size)
        diffs.append(mean_abs_diff(got, reference))
    assert max(diffs) < 16, diffs
    assert np.mean(diffs) < 10, diffs


@pytest.fixture(scope="module")
def ramp() -> bytes:
    """1024x1024: red = x, green = y (scaled to 0..255), so a crop's mean colour says where it is."""
    yy, xx = np.mgrid[0:1024, 0:1024] * (255 / 1023)
    return jpeg(np.stack([xx, yy, np.full_like(xx, 128)], axis=2).round().astype(np.uint8), 95)


def crop_centre_errors(
    ramp: bytes, monkeypatch: pytest.MonkeyPatch, transform: DecodeImages, n: int = 40
) -> np.ndarray:
    """(n, 2): where each output's centre lies minus where its crop box's centre is (pixels)."""
    boxes: list[tuple[int, int, int, int]] = []
    real_crop_box = images._crop_box

    def record_box(*args: Any) -> tuple[int, int, int, int]:
        boxes.append(real_crop_box(*args))
        return boxes[-1]

    monkeypatch.setattr(images, "_crop_box", record_box)
    out = transform({"image": [ramp] * n})["image"].astype(np.float64)
    centres = out[..., :2].mean(axis=(1, 2))[:, ::-1] * (1023 / 255)  # (y, x)
    expected = np.array([(t + (h - 1) / 2, le + (w - 1) / 2) for t, le, h, w in boxes])
    return centres - expected


def test_random_resized_crop_is_roughly_where_the_box_says(
    ramp: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    transform = DecodeImages(size=(32, 32), random_resized_crop=(0.3, 0.6), seed=0)
    errors = crop_centre_errors(ramp, monkeypatch, transform)
    assert np.abs(errors).max() < 12  # within about one 1/8-scale pixel


def test_random_resized_crop_is_not_shifted(ramp: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    transform = DecodeImages(size=(32, 32), random_resized_crop=(0.3, 0.6), seed=0)
    errors = crop_centre_errors(ramp, monkeypatch, transform)
    # Resizing the exact box of the reduced decode is within 1.5 pixels, without bias.
    assert np.abs(errors.mean(axis=0)).max() < 1.5, errors.mean(axis=0)
    assert np.abs(errors).max() < 3, np.abs(errors).max()


def test_random_resized_crop_covers_scales(jpegs: list[bytes]) -> None:
    small = DecodeImages(size=(32, 32), random_resized_crop=(0.05, 0.06), seed=0)
    big = DecodeImages(size=(32, 32), random_resized_crop=(1.0, 1.0), ratio=(1.0, 1.0), seed=0)
    whole = DecodeImages(size=(32, 32))
    data = [jpegs[0]]  # square: a full-area crop of ratio 1 is the whole image
    np.testing.assert_array_equal(big({"image": data})["image"], whole({"image": data})["image"])
    assert mean_abs_diff(small({"image": data})["image"], whole({"image": data})["image"]) > 10


def test_hflip(equal_jpegs: list[bytes]) -> None:
    flipped = DecodeImages(hflip=1.0)({"image": equal_jpegs})["image"]
    kept = DecodeImages(hflip=0.0)({"image": equal_jpegs})["image"]
    for a, b, data in zip(flipped, kept, equal_jpegs, strict=True):
        reference = full_decode(data)
        np.testing.assert_array_equal(a, reference[:, ::-1])
        np.testing.assert_array_equal(b, reference)
    assert flipped.flags.c_contiguous


def test_hflip_half_flips_some(equal_jpegs: list[bytes]) -> None:
    batch = equal_jpegs * 10
    out = DecodeImages(hflip=0.5, seed=0)({"image": batch})["image"]
    flips = [
        bool(np.array_equal(o, full_decode(d)[:, ::-1])) for o, d in zip(out, batch, strict=True)
    ]
    assert 5 <= sum(flips) <= 25


def test_normalize(equal_jpegs: list[bytes]) -> None:
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    out = DecodeImages(normalize=(mean, std))({"image": equal_jpegs})["image"]
    assert out.dtype == np.float32 and out.shape == (3, 128, 96, 3)
    raw = np.stack([full_decode(d) for d in equal_jpegs]).astype(np.float64)
    expected = (raw / 255 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    channel_means = out.astype(np.float64).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(channel_means, expected.mean(axis=(0, 1, 2)), atol=1e-5)


def test_layout_chw(equal_jpegs: list[bytes]) -> None:
    hwc = DecodeImages(size=(40, 50))({"image": equal_jpegs})["image"]
    chw = DecodeImages(size=(40, 50), layout="CHW")({"image": equal_jpegs})["image"]
    assert chw.shape == (3, 3, 40, 50) and chw.flags.c_contiguous
    np.testing.assert_array_equal(chw, hwc.transpose(0, 3, 1, 2))
    norm = DecodeImages(size=(40, 50), layout="CHW", normalize=((0.5,) * 3, (0.5,) * 3))
    out = norm({"image": equal_jpegs})["image"]
    assert out.dtype == np.float32 and out.shape == (3, 3, 40, 50)
    np.testing.assert_allclose(out, (hwc.transpose(0, 3, 1, 2) / 255 - 0.5) / 0.5, atol=1e-5)


def test_seed_makes_augmentation_reproducible(jpegs: list[bytes]) -> None:
    def augment(seed: int | None) -> np.ndarray:
        transform = DecodeImages(size=(48, 48), random_resized_crop=(0.1, 1), hflip=0.5, seed=seed)
        return transform({"image": jpegs * 2})["image"]

    np.testing.assert_array_equal(augment(7), augment(7))
    assert not np.array_equal(augment(7), augment(8))
    assert not np.array_equal(augment(None), augment(None))


def test_seeded_augmentation_differs_between_batches(photos: dict[str, np.ndarray]) -> None:
    astronaut = photos["astronaut"]
    first = [jpeg(astronaut[i * 16 : i * 16 + 64, :64]) for i in range(16)]
    second = [jpeg(astronaut[i * 16 : i * 16 + 64, 200:264]) for i in range(16)]
    transform = DecodeImages(hflip=0.5, seed=0)

    def flips(batch: list[bytes]) -> list[bool]:
        out = transform({"image": batch})["image"]
        return [
            bool(np.array_equal(o, full_decode(d)[:, ::-1]))
            for o, d in zip(out, batch, strict=True)
        ]

    assert flips(first) != flips(second)  # the same pattern for 16 flips has p = 2**-16


@pytest.mark.parametrize(
    "damage", [lambda d: d[:3] + b"not a jpeg at all" * 10, lambda d: d[: len(d) // 2]]
)
@pytest.mark.parametrize("size", [None, (32, 32)])
def test_corrupt_jpeg_raises_with_batch_index(
    equal_jpegs: list[bytes], damage: Any, size: tuple[int, int] | None
) -> None:
    batch = [equal_jpegs[0], equal_jpegs[1], damage(equal_jpegs[2])]
    with pytest.raises(BaleError, match="cannot decode image") as info:
        DecodeImages(size=size)({"image": batch})
    assert info.value.batch_index == 2  # type: ignore[attr-defined]
    assert info.value.column == "image"
    assert info.value.__cause__ is not None


def test_png_goes_through_pillow(
    photos: dict[str, np.ndarray], jpegs: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    chelsea = photos["chelsea"]
    gray = (chelsea.mean(axis=2)).astype(np.uint8)
    pngs = [png(chelsea), png(gray)]
    assert image_size(pngs[0]) == chelsea.shape[:2]

    def no_jpeg(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a PNG was given to the JPEG decoder")

    with monkeypatch.context() as m:
        m.setattr(simplejpeg, "decode_jpeg", no_jpeg)
        out = DecodeImages()({"image": pngs})["image"]
        np.testing.assert_array_equal(out[0], chelsea)  # lossless
        np.testing.assert_array_equal(out[1], np.repeat(gray[..., None], 3, axis=2))
        np.testing.assert_array_equal(decode_image(pngs[0], (10, 10)), chelsea)
    mixed = DecodeImages(size=(50, 70))({"image": [pngs[0], jpegs[0]]})["image"]
    assert mixed.shape == (2, 50, 70, 3)
    assert mean_abs_diff(mixed[0], pil_resize(chelsea, (50, 70))) < 2


# -- through the Loader --------------------------------------------------------------------------


@pytest.fixture
def image_file(tmp_path: Path, equal_jpegs: list[bytes]) -> str:
    data = [equal_jpegs[i % 3] for i in range(24)]
    data[13] = b"\xff\xd8\xff" + b"garbage" * 20  # stored intact, but not a decodable image
    path = tmp_path / "images.bale"
    bale.write(path, {"image": data, "label": np.arange(24)}, row_group_rows=5)
    return str(path)


def test_loader_decode_error_names_the_row(image_file: str) -> None:
    decode = DecodeImages(size=(32, 32))
    loader = bale.Loader(image_file, 6, shuffle="chunks", seed=1, batch_transform=decode)
    with loader, pytest.raises(BaleError) as info:
        list(loader)
    error = info.value
    assert error.path == image_file and error.rows == (13, 14)
    assert repr(image_file) in str(error) and re.search(r"\brow 13\b", str(error))
    assert isinstance(error.__cause__, BaleError) and "cannot decode" in str(error)


def test_loader_skips_undecodable_rows(image_file: str) -> None:
    decode = DecodeImages(size=(32, 32), hflip=0.5)
    with bale.Loader(
        image_file, 6, shuffle="full", seed=1, batch_transform=decode, on_error="skip"
    ) as loader:
        batches = list(loader)
    rows = sorted(int(v) for b in batches for v in b["label"])
    assert rows == [r for r in range(24) if r != 13]
    assert loader.skipped_rows == 1
    for batch in batches:
        assert batch["image"].shape == (len(batch["label"]), 32, 32, 3)
