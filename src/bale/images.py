"""Images: JPEG/PNG bytes -> uint8 HWC (decode, crop, resize, flip, normalise), shared by the importers, the loader and measuring.

JPEGs are decoded with simplejpeg (libjpeg-turbo), using reduced-size DCT decoding whenever the
output is smaller than the source: decoding at 1/2, 1/4 or 1/8 scale skips most of the work.
Other formats go through Pillow. Both release the GIL, so the Loader's threads decode in
parallel. Chosen by measurement: the bale repository's docs/DECISIONS.md.

>>> decode = DecodeImages("jpeg", size=(224, 224), random_resized_crop=(0.08, 1.0), hflip=0.5)
>>> loader = bale.Loader("train.bale", 256, batch_transform=decode)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import xxhash

from bale.errors import BaleError

Batch = dict[str, Any]
_JPEG_MAGIC = b"\xff\xd8\xff"


def _simplejpeg() -> Any:
    try:
        import simplejpeg
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "decoding images needs simplejpeg and Pillow: pip install simplejpeg Pillow"
        ) from exc
    return simplejpeg


def _pil_image() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover
        raise ImportError("decoding images needs Pillow: pip install Pillow") from exc
    return Image


def image_size(data: bytes) -> tuple[int, int]:
    """(height, width) of encoded image bytes, reading only the header."""
    if data.startswith(_JPEG_MAGIC):
        height, width, _, _ = _simplejpeg().decode_jpeg_header(data)
        return int(height), int(width)
    with _pil_image().open(io.BytesIO(data)) as image:
        width, height = image.size
    return int(height), int(width)


def decode_image(data: bytes, min_size: tuple[int, int] | None = None) -> np.ndarray:
    """Encoded bytes -> uint8 RGB array (H, W, 3). With ``min_size`` (h, w), a JPEG may be
    decoded at a reduced scale that still covers at least that many pixels."""
    if data.startswith(_JPEG_MAGIC):
        sj = _simplejpeg()
        if min_size is not None:
            return np.asarray(
                sj.decode_jpeg(
                    data, colorspace="RGB", min_height=min_size[0], min_width=min_size[1]
                )
            )
        return np.asarray(sj.decode_jpeg(data, colorspace="RGB"))
    image_module = _pil_image()
    with image_module.open(io.BytesIO(data)) as image:
        if min_size is not None:
            image.draft("RGB", (min_size[1], min_size[0]))
        if image.mode.startswith("I") or image.mode == "F":
            return _high_depth_to_rgb(image)
        return np.asarray(image.convert("RGB"))


def _high_depth_to_rgb(image: Any) -> np.ndarray:
    """A 16-bit greyscale image (Pillow mode "I;16*", or "I" holding values 0..65535, as older
    Pillows open 16-bit PNGs) scaled to 8 bits: Pillow's convert("RGB") clips every value above
    255, so a 16-bit photo came out white. 32-bit and floating-point images have no known
    range: a BaleError, which importers report as a skipped file with this reason."""
    values = np.asarray(image)
    if image.mode == "F" or values.dtype.kind == "f":
        raise BaleError(
            f"a floating-point greyscale image (Pillow mode {image.mode!r}) has no known 8-bit "
            "range: convert it to 8 or 16 bits first"
        )
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if low < 0 or high > 0xFFFF:
        raise BaleError(
            f"a 32-bit greyscale image (Pillow mode {image.mode!r}, values {low}..{high}) has "
            "no known 8-bit range: convert it to 8 or 16 bits first"
        )
    # Round to nearest: 0 -> 0, 65535 -> 255, 257 * k -> k exactly.
    scaled = ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    return np.repeat(scaled[:, :, None], 3, axis=2)


def _resize(
    array: np.ndarray,
    size: tuple[int, int],
    box: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    """Resize ``array`` (or the sub-pixel ``box`` = left, top, right, bottom of it) to ``size``."""
    if box is None and array.shape[:2] == size:
        return array
    image_module = _pil_image()
    image = image_module.fromarray(np.ascontiguousarray(array))
    return np.asarray(image.resize((size[1], size[0]), image_module.Resampling.BILINEAR, box=box))


def _crop_box(
    height: int,
    width: int,
    rng: np.random.Generator,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> tuple[int, int, int, int]:
    """(top, left, h, w) as torchvision's RandomResizedCrop draws it (10 tries, then centre)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@dataclass
class DecodeImages:
    """A batch transform: decode ``column`` (encoded bytes) into a uint8 array (B, H, W, 3).

    - ``size=(h, w)``: resize to this size (needed unless all images share one size);
      with ``random_resized_crop=(min_scale, max_scale)`` a random crop of that area fraction
      and aspect ``ratio`` is taken first (as torchvision's RandomResizedCrop), decoding the JPEG
      at the smallest DCT scale that keeps the crop at least ``size``.
    - ``center_crop=True``: resize the shorter side then crop the centre (evaluation).
    - ``hflip``: probability of a horizontal flip.
    - ``normalize=(mean, std)``: return float32 ``(x / 255 - mean) / std`` instead of uint8.
    - ``layout="CHW"`` for PyTorch-style channel-first output.
    - ``seed``: augmentations are reproducible per (seed, batch contents).
    """

    column: str = "image"
    size: tuple[int, int] | None = None
    random_resized_crop: tuple[float, float] | None = None
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    center_crop: bool = False
    hflip: float = 0.0
    normalize: tuple[Sequence[float], Sequence[float]] | None = None
    layout: Literal["HWC", "CHW"] = "HWC"
    seed: int | None = None
    _local: threading.local = field(default_factory=threading.local, repr=False)

    def __call__(self, batch: Batch, *, rows: np.ndarray | None = None, epoch: int = 0) -> Batch:
        """Decode one batch. The Loader passes the batch's global ``rows`` and the ``epoch``, so
        with ``seed`` set every row gets the same augmentation in the same epoch, whatever
        thread or process decodes it, and a different one in the next epoch."""
        encoded = batch[self.column]
        rng = self._rng(encoded, rows, epoch)
        images = [self._one(data, rng, i) for i, data in enumerate(encoded)]
        if self.size is None and len({im.shape for im in images}) > 1:
            raise BaleError(
                "images of different sizes need size=(h, w) to be stacked into a batch",
                column=self.column,
            )
        out: np.ndarray = np.stack(images) if images else np.zeros((0, 0, 0, 3), np.uint8)
        if self.normalize is not None:
            mean = np.asarray(self.normalize[0], np.float32)
            std = np.asarray(self.normalize[1], np.float32)
            out = (out.astype(np.float32) * np.float32(1 / 255) - mean) / std
        if self.layout == "CHW":
            out = np.ascontiguousarray(out.transpose(0, 3, 1, 2))
        result = dict(batch)
        result[self.column] = out
        return result

    def _rng(
        self, encoded: Sequence[bytes], rows: np.ndarray | None, epoch: int
    ) -> np.random.Generator:
        if self.seed is None:
            generator = getattr(self._local, "rng", None)
            if generator is None:
                generator = self._local.rng = np.random.default_rng()
            return generator
        # Deterministic: keyed by the seed, the epoch and which rows these are (or, called
        # outside a Loader, by all the batch's bytes). xxhash, not hash(): Python salts
        # str/bytes hashes per process.
        hasher = xxhash.xxh3_64()
        if rows is not None:
            hasher.update(np.ascontiguousarray(rows, dtype="<i8").tobytes())
        else:
            for data in encoded:
                hasher.update(data)
        return np.random.default_rng([self.seed, epoch, hasher.intdigest()])

    def _one(self, data: bytes, rng: np.random.Generator, index: int) -> np.ndarray:
        try:
            image = self._decode_one(bytes(data), rng)
        except (BaleError, ImportError):  # a missing library fails every row alike: say it once
            raise
        except Exception as exc:
            error = BaleError(
                f"cannot decode image: {type(exc).__name__}: {exc}", column=self.column
            )
            error.batch_index = index  # type: ignore[attr-defined]  # the Loader maps it to a row
            raise error from exc
        if self.hflip and rng.random() < self.hflip:
            image = image[:, ::-1]
        return np.ascontiguousarray(image)

    def _decode_one(self, data: bytes, rng: np.random.Generator) -> np.ndarray:
        size = self.size
        if size is None:
            return decode_image(data)
        height, width = image_size(data)
        if self.random_resized_crop is not None:
            top, left, h, w = _crop_box(height, width, rng, self.random_resized_crop, self.ratio)
        elif self.center_crop:
            scale = max(size[0] / height, size[1] / width)
            h, w = round(size[0] / scale), round(size[1] / scale)
            top, left = (height - h) // 2, (width - w) // 2
        else:
            top, left, h, w = 0, 0, height, width
        # Decode at the smallest scale that keeps the crop at least `size` pixels.
        factor = min(h / size[0], w / size[1])
        min_size = (math.ceil(height / factor), math.ceil(width / factor)) if factor > 1 else None
        image = decode_image(data, min_size)
        sy, sx = image.shape[0] / height, image.shape[1] / width
        # The crop box scaled to the reduced image, kept fractional: rounding it would shift
        # the crop by up to one reduced pixel (8 source pixels at 1/8 scale).
        box = (left * sx, top * sy, (left + w) * sx, (top + h) * sy)
        return _resize(image, size, box)
