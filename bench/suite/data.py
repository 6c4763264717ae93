"""The suite's source data: the three kinds from bench/photo_data.py, sorted by class, cached on disk.

Every tool is written from the same in-memory source and must give the same rows back. Rows
are sorted by class label (stable), the worst case for a shuffle, so the shuffled epoch of
every tool also yields its shuffle quality. A cached kind lives in ``DIR/<kind>/``:
``x.npy`` (arrays) or ``x.pkl`` (list of JPEG bytes), ``label.npy`` and ``spec.json``; read
measurements load only the spec and labels.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

KINDS = ("jpeg", "uint8", "act")
DESCRIPTIONS = {
    "jpeg": "ImageNet-like JPEG files (~375x500, quality 90, real photos)",
    "uint8": "decoded 64x64x3 uint8 images",
    "act": "sparse float32 activations (32x16x16 ReLU outputs of a conv on photo crops)",
}
SEED = 2024


@dataclass(frozen=True)
class Spec:
    """What a reader needs to know about a kind without loading its rows."""

    kind: str
    rows: int
    shape: tuple[int, ...] | None  # one row's shape for arrays; None for variable-size bytes
    dtype: str | None
    raw_bytes: int  # payload bytes of all rows (x only)

    @property
    def is_bytes(self) -> bool:
        return self.shape is None

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "shape": list(self.shape) if self.shape else None}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Spec:
        shape = tuple(d["shape"]) if d["shape"] is not None else None
        return cls(d["kind"], d["rows"], shape, d["dtype"], d["raw_bytes"])


@dataclass(frozen=True)
class Source:
    """Rows of one kind: ``x`` (an array, or a list of JPEG bytes) and int64 ``label``."""

    spec: Spec
    x: NDArray[Any] | list[bytes]
    label: NDArray[np.int64]

    def __len__(self) -> int:
        return self.spec.rows

    def row(self, i: int) -> tuple[Any, int]:
        return self.x[i], int(self.label[i])


def _generate(kind: str, rows: int) -> tuple[NDArray[Any] | list[bytes], NDArray[np.int64]]:
    from bench import photo_data

    if kind == "jpeg":
        jpegs, labels = photo_data.jpeg_images(rows, seed=SEED)
        order = np.argsort(labels, kind="stable")
        return [jpegs[i] for i in order], labels[order]
    if kind == "uint8":
        images, labels = photo_data.labelled_uint8_images(rows, SEED, hw=64)
    elif kind == "act":
        # sparse_activations crops its 32x32 inputs from this same stream of labelled images.
        _, labels = photo_data.labelled_uint8_images(rows, SEED, hw=32)
        images = photo_data.sparse_activations(rows, seed=SEED)
    else:
        raise ValueError(f"unknown data kind {kind!r}; expected one of {KINDS}")
    order = np.argsort(labels, kind="stable")
    return images[order], labels[order]


def prepare(directory: Path, kind: str, rows: int) -> Spec:
    """Generate ``rows`` rows of ``kind`` into ``directory/kind`` unless already there."""
    target = directory / kind
    spec_path = target / "spec.json"
    if spec_path.exists():
        spec = load_spec(directory, kind)
        if spec.rows == rows:
            return spec
    target.mkdir(parents=True, exist_ok=True)
    x, label = _generate(kind, rows)
    if isinstance(x, list):
        with open(target / "x.pkl", "wb") as f:
            pickle.dump(x, f, protocol=pickle.HIGHEST_PROTOCOL)
        spec = Spec(kind, rows, None, None, sum(len(r) for r in x))
    else:
        np.save(target / "x.npy", x)
        spec = Spec(kind, rows, tuple(x.shape[1:]), x.dtype.str, int(x.nbytes))
    np.save(target / "label.npy", label)
    spec_path.write_text(json.dumps(spec.to_json()))
    return spec


def load_spec(directory: Path, kind: str) -> Spec:
    return Spec.from_json(json.loads((directory / kind / "spec.json").read_text()))


def load_labels(directory: Path, kind: str) -> NDArray[np.int64]:
    labels: NDArray[np.int64] = np.load(directory / kind / "label.npy")
    return labels


def load(directory: Path, kind: str) -> Source:
    spec = load_spec(directory, kind)
    if spec.is_bytes:
        with open(directory / kind / "x.pkl", "rb") as f:
            x: NDArray[Any] | list[bytes] = pickle.load(f)
    else:
        x = np.load(directory / kind / "x.npy")
    return Source(spec, x, load_labels(directory, kind))


def make_source(kind: str, x: NDArray[Any] | list[bytes], label: NDArray[np.int64]) -> Source:
    """A source from rows in memory (the tests' small data)."""
    if isinstance(x, list):
        spec = Spec(kind, len(x), None, None, sum(len(r) for r in x))
    else:
        spec = Spec(kind, len(x), tuple(x.shape[1:]), x.dtype.str, int(x.nbytes))
    return Source(spec, x, np.asarray(label, dtype=np.int64))
