"""bale show's contact sheets: every tile holds its row's picture (real photos as JPEG and PNG
bytes, uint8 arrays in every layout), captions carry class names, rows are chosen as asked,
and nothing is overwritten unasked."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage import data

import bale
from bale.errors import BaleError, TargetExistsError
from bale.ops.show import _LINE, _PAD, contact_sheet, parse_rows, sheet_path

PHOTOS = {
    "astronaut": data.astronaut(),
    "coffee": data.coffee(),
    "chelsea": data.chelsea(),
    "camera": data.camera(),
}


def _encoded(array: np.ndarray, fmt: str) -> bytes:
    out = io.BytesIO()
    options = {"quality": 90} if fmt == "JPEG" else {}
    Image.fromarray(array).save(out, format=fmt, **options)
    return out.getvalue()


def _tile(sheet: Path, index: int, per_row: int, size: int) -> np.ndarray:
    """The size x size square of tile ``index`` (top-left layout, as contact_sheet draws)."""
    tile_w, tile_h = size + 2 * _PAD, size + 2 * _PAD + 2 * _LINE
    x, y = (index % per_row) * tile_w + _PAD, (index // per_row) * tile_h + _PAD
    with Image.open(sheet) as image:
        return np.asarray(image.convert("RGB"))[y : y + size, x : x + size].astype(np.int16)


def _expected(array: np.ndarray, size: int) -> np.ndarray:
    """The picture scaled to fit size x size and centred on the sheet's background."""
    picture = Image.fromarray(array).convert("RGB")
    picture.thumbnail((size, size), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (size, size), (32, 32, 32))
    canvas.paste(picture, ((size - picture.width) // 2, (size - picture.height) // 2))
    return np.asarray(canvas).astype(np.int16)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    path = tmp_path / "photos.bale"
    names = list(PHOTOS)
    images = [_encoded(PHOTOS[n], "JPEG") for n in names] + [
        _encoded(PHOTOS[n], "PNG") for n in names
    ]
    bale.write(
        path,
        {
            "image": images,
            "label": np.array([0, 1, 2, 3] * 2),
            "path": [f"{n}.x" for n in names * 2],
        },
        metadata={"classes": names},
    )
    return path


def test_each_tile_shows_its_photo_and_its_class_name(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "sheet.png"
    sheet = contact_sheet(photos, out=out, size=96)
    assert sheet.path == str(out) and sheet.rows == tuple(range(8))
    assert (sheet.column, sheet.label_column) == ("image", "label")
    assert sheet.captions[:4] == ("0: astronaut", "1: coffee", "2: chelsea", "3: camera")
    assert sheet.failed == {}
    assert (sheet.width, sheet.height) == (3 * (96 + 8), 3 * (96 + 8 + 24))
    names = list(PHOTOS)
    for row in range(8):
        want = _expected(PHOTOS[names[row % 4]], 96)
        got = _tile(out, row, 3, 96)
        assert np.abs(got - want).mean() < 6, row  # JPEGs decode at reduced scale
        others = [
            np.abs(got - _expected(PHOTOS[n], 96)).mean() for n in names if n != names[row % 4]
        ]
        assert min(others) > 20, row  # and it is not another photo


@pytest.mark.parametrize(
    ("shape", "to_array"),
    [
        ((48, 40), lambda a: a[..., 0]),
        ((48, 40, 1), lambda a: a[..., :1]),
        ((48, 40, 3), lambda a: a),
        (
            (48, 40, 4),
            lambda a: np.concatenate([a, np.full((*a.shape[:2], 1), 255, np.uint8)], -1),
        ),
        ((3, 48, 40), lambda a: np.moveaxis(a, -1, 0)),
    ],
)
def test_uint8_arrays_in_every_layout(
    tmp_path: Path, shape: tuple[int, ...], to_array: Any
) -> None:
    small = [
        np.asarray(Image.fromarray(p if p.ndim == 3 else np.stack([p] * 3, -1)).resize((40, 48)))
        for p in PHOTOS.values()
    ]
    rows = np.stack([to_array(p) for p in small])
    assert rows.shape[1:] == shape
    path = tmp_path / "arrays.bale"
    bale.write(path, {"pixels": rows, "y": np.arange(4)})
    sheet = contact_sheet(path, out=tmp_path / "a.png", size=48)
    assert sheet.captions == ("0: 0", "1: 1", "2: 2", "3: 3")
    for i, p in enumerate(small):
        want = p[..., 0] if len(shape) == 2 or shape[-1] == 1 else p
        view = want if want.ndim == 3 else np.stack([want] * 3, -1)
        expected = np.full((48, 48, 3), 32, np.int16)
        expected[:, 4:44] = view
        assert np.abs(_tile(tmp_path / "a.png", i, 2, 48) - expected).max() <= 1, (shape, i)


def test_rows_random_and_defaults(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sheet = contact_sheet(photos, "5,1,-1")
    assert sheet.path == "photos.png" and (tmp_path / "photos.png").exists()
    assert sheet.rows == (5, 1, 7)
    with pytest.raises(TargetExistsError, match="overwrite"):
        contact_sheet(photos)
    first = contact_sheet(photos, random=3, seed=4, out="r1.png")
    again = contact_sheet(photos, random=3, seed=4, out="r2.png")
    assert first.rows == again.rows and list(first.rows) == sorted(set(first.rows))
    assert len(first.rows) == 3
    with pytest.raises(BaleError, match=r"rows \[8\] are outside the file's 8 rows \(0..7\)"):
        contact_sheet(photos, [8], out="x.png")
    with pytest.raises(ValueError, match="expected START:STOP"):
        contact_sheet(photos, "a:b", out="x.png")
    assert len(contact_sheet(photos, random=5000, out="all.png").rows) == 8  # all 8 shown


def test_too_many_rows_says_how_many_were_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "many.bale"
    bale.write(path, {"image": np.zeros((2000, 8, 8), np.uint8)})
    # --random 5000 read "2000 rows asked for": the count it had been cut to
    with pytest.raises(BaleError, match=r"5000 rows asked for; a sheet holds at most 1024"):
        contact_sheet(path, random=5000, out=tmp_path / "x.png")
    with pytest.raises(BaleError, match=r"1500 rows asked for"):
        contact_sheet(path, "0:1500", out=tmp_path / "x.png")


def test_a_file_without_images_says_what_an_image_column_is(tmp_path: Path) -> None:
    path = tmp_path / "feats.bale"
    bale.write(path, {"x": np.zeros((4, 8), "float32"), "label": np.arange(4)})
    with pytest.raises(BaleError, match=r"no column holds images .*uint8 arrays shaped") as raised:
        contact_sheet(path, out=tmp_path / "s.png")
    assert raised.value.path == str(path)
    with pytest.raises(BaleError, match=r"column 'x' .* does not hold images"):
        contact_sheet(path, column="x", out=tmp_path / "s.png")
    assert not (tmp_path / "s.png").exists()


def test_an_undecodable_row_is_a_tile_that_says_so(tmp_path: Path) -> None:
    good = _encoded(PHOTOS["coffee"], "JPEG")
    path = tmp_path / "broken.bale"
    bale.write(path, {"image": [good, good[:200] + b"\x00" * 10, good], "label": ["a", "b", "c"]})
    sheet = contact_sheet(path, out=tmp_path / "s.png")
    assert list(sheet.failed) == [1]
    assert sheet.captions == ("0: a", "1: b", "2: c")


def test_parse_rows_and_sheet_path() -> None:
    assert parse_rows("0:4", 10) == [0, 1, 2, 3]
    assert parse_rows("8:", 10) == [8, 9]
    assert parse_rows(":9:4", 10) == [0, 4, 8]
    assert parse_rows("1, 3,5", 10) == [1, 3, 5]
    assert sheet_path("/data/train.bale") == "train.png"
    assert sheet_path("s3://bucket/dir/valid.bale") == "valid.png"


def test_small_images_are_enlarged_to_fill_their_tiles(tmp_path: Path) -> None:
    # MNIST/CIFAR-sized rows were drawn at 28x28 in the middle of a 128-pixel tile: specks
    digits = np.stack(
        [np.asarray(Image.fromarray(PHOTOS["camera"]).resize((28, 28))), PHOTOS["camera"][:28, :28]]
    )
    path = tmp_path / "mnist.bale"
    bale.write(path, {"image": digits, "label": np.array([0, 1])})
    contact_sheet(path, out=tmp_path / "m.png", size=128)
    for i, digit in enumerate(digits):
        expected = np.full((128, 128), 32, np.int16)
        expected[8:120, 8:120] = np.kron(digit, np.ones((4, 4), np.uint8))  # 4x: 112 pixels
        got = _tile(tmp_path / "m.png", i, 2, 128)
        assert np.array_equal(got[..., 0], expected), i
