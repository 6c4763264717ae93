"""Deterministic benchmark data built from the real photos bundled in scikit-image.

This module owns the three data kinds bale's benchmarks measure on: ImageNet-like JPEG
bytes, small uint8 image tensors, and sparse float32 conv activations. Everything is
derived from photos shipped inside the ``skimage`` wheel (nothing is downloaded), so the
pixel statistics are those of real camera images rather than synthetic noise, which
matters because compressors behave very differently on the two.

All generators are deterministic for a given ``(n, seed)`` and prefix-stable: the first
``k`` samples of ``gen(n, seed)`` equal ``gen(k, seed)``, so a benchmark may ask for more
data later without changing what it measured before. Bit-identical output across
machines is expected but not promised: Pillow's resampling and libjpeg versions, and for
the activations the BLAS matmul kernels, may round differently.

Run ``.venv/bin/python -m bench.photo_data`` to print sizes, timings and sparsity. (Named so
as not to shadow Hugging Face's ``datasets``, which the comparative suite measures.)
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator

import numpy as np
import simplejpeg
from numpy.typing import NDArray
from PIL import Image, ImageEnhance


def _photo_loaders() -> tuple[tuple[str, Callable[[], NDArray[np.uint8]]], ...]:
    # Colour photographs of natural scenes only: synthetic images (colorwheel, logo) and
    # the grayscale textures would make the data unrealistically easy or hard to compress.
    # The files behind these loaders are inside the skimage wheel; loaders that need pooch
    # (and therefore the network) are deliberately absent. Imported lazily because
    # skimage.data is slow to import and only the generators need it.
    import skimage.data as sk

    return (
        ("astronaut", sk.astronaut),
        ("coffee", sk.coffee),
        ("chelsea", sk.chelsea),
        ("rocket", sk.rocket),
        ("motorcycle_left", lambda: _stereo_motorcycle()[0]),
        ("motorcycle_right", lambda: _stereo_motorcycle()[1]),
        ("hubble_deep_field", sk.hubble_deep_field),
        ("immunohistochemistry", sk.immunohistochemistry),
        ("retina", sk.retina),
    )


@functools.cache
def _stereo_motorcycle() -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    import skimage.data as sk

    left, right, _disparity = sk.stereo_motorcycle()  # type: ignore[no-untyped-call]
    return left, right


@functools.cache
def photo_names() -> tuple[str, ...]:
    """Names of the source photos; index ``i`` is class label ``i``."""
    return tuple(name for name, _ in _photo_loaders())


@functools.cache
def _photos() -> tuple[Image.Image, ...]:
    images = []
    for _, load in _photo_loaders():
        pixels = np.ascontiguousarray(load()[..., :3], dtype=np.uint8)
        images.append(Image.fromarray(pixels, mode="RGB"))
    return tuple(images)


def _crop_box(
    rng: np.random.Generator, src_w: int, src_h: int, scale: tuple[float, float], aspect: float
) -> tuple[float, float, float, float]:
    """A RandomResizedCrop-style box covering ``scale`` of the source area at ~``aspect``."""
    area = src_w * src_h * rng.uniform(*scale)
    # Log-uniform jitter of the aspect ratio, as torchvision does, but narrow so that
    # resizing does not visibly distort the photo.
    ratio = aspect * math.exp(rng.uniform(math.log(0.85), math.log(1 / 0.85)))
    w = min(src_w, math.sqrt(area * ratio))
    h = min(src_h, math.sqrt(area / ratio))
    x0 = rng.uniform(0, src_w - w)
    y0 = rng.uniform(0, src_h - h)
    return (x0, y0, x0 + w, y0 + h)


def _augmented_crop(
    rng: np.random.Generator,
    label: int,
    out_hw: tuple[int, int],
    scale: tuple[float, float],
) -> Image.Image:
    """One random crop of photo ``label``: resize, horizontal flip, colour jitter."""
    src = _photos()[label]
    out_h, out_w = out_hw
    box = _crop_box(rng, src.width, src.height, scale, out_w / out_h)
    # reducing_gap lets Pillow box-reduce large crops first; 3x cheaper for retina-sized
    # sources with no visible difference at these output sizes.
    img = src.resize((out_w, out_h), Image.Resampling.BILINEAR, box=box, reducing_gap=2.0)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    # Colour jitter in the torchvision default range; Pillow's enhancers run in C, which
    # keeps per-image cost low for the many small images.
    brightness, contrast, saturation = rng.uniform(0.8, 1.2, size=3)
    img = ImageEnhance.Brightness(img).enhance(float(brightness))
    img = ImageEnhance.Contrast(img).enhance(float(contrast))
    return ImageEnhance.Color(img).enhance(float(saturation))


def _labels(rng: np.random.Generator) -> Iterator[int]:
    n_classes = len(photo_names())
    while True:
        yield int(rng.integers(n_classes))


def jpeg_images(
    n: int,
    seed: int,
    size: tuple[int, int] = (375, 500),
    size_jitter: float = 0.1,
    quality: int = 90,
) -> tuple[list[bytes], NDArray[np.int64]]:
    """``n`` ImageNet-like JPEG files and their class labels.

    Each image is a random crop of one source photo (its index is the label), resized to
    ``size`` (height, width) with each side varied by up to ``size_jitter``; a fifth are
    portrait like in ImageNet. Encoded at ``quality`` with 4:2:0 chroma subsampling, the
    libjpeg default that most ImageNet files use. Files average about 46 KiB, against
    ImageNet's ~110 KiB: the bundled photos are small, so most crops are upscaled and
    carry less fine detail. For codec choice that does not matter (JPEG bytes are near
    incompressible either way); for loader throughput it means cheaper decodes.
    """
    rng = np.random.default_rng(seed)
    labels = _labels(rng)
    out: list[bytes] = []
    classes = np.empty(n, dtype=np.int64)
    for i in range(n):
        label = next(labels)
        h, w = size
        if rng.random() < 0.2:
            h, w = w, h
        h = round(h * rng.uniform(1 - size_jitter, 1 + size_jitter))
        w = round(w * rng.uniform(1 - size_jitter, 1 + size_jitter))
        img = _augmented_crop(rng, label, (h, w), scale=(0.5, 1.0))
        pixels = np.asarray(img)
        out.append(
            simplejpeg.encode_jpeg(
                pixels, quality=quality, colorspace="RGB", colorsubsampling="420"
            )
        )
        classes[i] = label
    return out, classes


def uint8_images(n: int, seed: int, hw: int = 64) -> NDArray[np.uint8]:
    """``(n, hw, hw, 3)`` uint8 HWC images: downscaled random crops of the photos.

    Comparable to CIFAR / downsampled-ImageNet tensors stored without JPEG.
    """
    return labelled_uint8_images(n, seed, hw)[0]


def labelled_uint8_images(
    n: int, seed: int, hw: int = 64
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """``uint8_images(n, seed, hw)`` and the class label (source photo) of each image."""
    rng = np.random.default_rng(seed)
    labels = _labels(rng)
    out = np.empty((n, hw, hw, 3), dtype=np.uint8)
    classes = np.empty(n, dtype=np.int64)
    for i in range(n):
        classes[i] = next(labels)
        out[i] = np.asarray(_augmented_crop(rng, int(classes[i]), (hw, hw), scale=(0.08, 1.0)))
    return out, classes


# A fixed layer, independent of the data seed, so that every call sees the same "model".
_CONV_SEED = 0xBA1E
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _conv_params(channels: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    rng = np.random.default_rng(_CONV_SEED)
    # He initialisation for a 3x3x3 receptive field; the small random bias spreads the
    # per-channel sparsity around 50 %, as BatchNorm shifts do in trained networks.
    fan_in = 3 * 3 * 3
    weight = rng.normal(0.0, math.sqrt(2.0 / fan_in), size=(fan_in, channels))
    bias = rng.normal(0.0, 0.25, size=channels)
    return weight.astype(np.float32), bias.astype(np.float32)


def sparse_activations(
    n: int, seed: int, channels: int = 32, hw: int = 16, batch: int = 512
) -> NDArray[np.float32]:
    """``(n, channels, hw, hw)`` float32 ReLU outputs of a fixed random 3x3/stride-2 conv.

    Inputs are ``2*hw`` square photo crops normalised with the ImageNet mean/std, so the
    output has the spatially correlated zeros (about half) of real early-layer activations.
    """
    weight, bias = _conv_params(channels)
    images = uint8_images(n, seed, hw=2 * hw)
    out = np.empty((n, channels, hw, hw), dtype=np.float32)
    for start in range(0, n, batch):
        x = images[start : start + batch].astype(np.float32) / 255.0
        x = (x - _IMAGENET_MEAN) / _IMAGENET_STD
        x = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        # im2col without copies until the reshape: (b, hw, hw, 3, 3, 3) windows, stride 2.
        win = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))[:, ::2, ::2]
        cols = win.reshape(-1, weight.shape[0])
        y = np.maximum(cols @ weight + bias, 0.0).reshape(-1, hw, hw, channels)
        out[start : start + batch] = y.transpose(0, 3, 1, 2)
    return out


def _main() -> None:
    mib = 2**20
    t0 = time.perf_counter()
    _photos()
    print(f"loaded {len(photo_names())} photos in {time.perf_counter() - t0:.2f} s")

    t0 = time.perf_counter()
    jpegs, labels = jpeg_images(1100, seed=0)
    sizes = np.array([len(j) for j in jpegs])
    print(
        f"jpeg_images(1100): {sizes.sum() / mib:.1f} MiB, mean {sizes.mean() / 1024:.0f} KiB "
        f"(min {sizes.min() / 1024:.0f}, max {sizes.max() / 1024:.0f}), "
        f"classes {np.bincount(labels).tolist()}, {time.perf_counter() - t0:.1f} s"
    )

    t0 = time.perf_counter()
    imgs = uint8_images(8533, seed=0)
    print(
        f"uint8_images(8533): shape {imgs.shape}, {imgs.nbytes / mib:.1f} MiB, "
        f"{time.perf_counter() - t0:.1f} s"
    )

    t0 = time.perf_counter()
    act = sparse_activations(3200, seed=0)
    zero = float(np.mean(act == 0))
    per_channel = np.mean(act == 0, axis=(0, 2, 3))
    print(
        f"sparse_activations(3200): shape {act.shape}, {act.nbytes / mib:.1f} MiB, "
        f"zero fraction {zero:.3f} (per channel {per_channel.min():.2f}-"
        f"{per_channel.max():.2f}), {time.perf_counter() - t0:.1f} s"
    )


if __name__ == "__main__":
    _main()
