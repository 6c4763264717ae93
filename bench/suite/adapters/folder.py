"""A folder of files, one per row in class sub-folders (JPEGs as .jpg, arrays as .npy), read by a
PyTorch DataLoader with worker processes: the ImageFolder layout most pipelines start from."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.suite.adapters.base import WORKERS, Adapter, Batch, Row, spec_of
from bench.suite.data import Source, Spec


class Folder(Adapter):
    name = "folder+DataLoader"
    dists = ("torch",)
    module = "torch"
    shuffle_note = "DataLoader(shuffle=True, num_workers=2): a uniform permutation of files"

    def write(self, source: Source, out: Path) -> None:
        width = len(str(len(source)))
        suffix = ".jpg" if source.spec.is_bytes else ".npy"
        for label in np.unique(source.label):
            (out / f"{label:03d}").mkdir()
        for i in range(len(source)):
            x, label = source.row(i)
            path = out / f"{label:03d}" / f"{i:0{width}d}{suffix}"
            if source.spec.is_bytes:
                path.write_bytes(x)
            else:
                with open(path, "wb") as f:
                    np.save(f, x)

    def open(self, out: Path, spec: Spec) -> None:
        self.spec = spec
        # Sorted by file name, which is the row number: sequential order = written order.
        self.items = sorted(
            ((p, int(p.parent.name)) for p in out.glob("*/*") if p.is_file()),
            key=lambda item: item[0].name,
        )

    def _loader(self, batch_size: int, shuffle: bool, seed: int) -> Any:
        import torch
        from torch.utils.data import DataLoader

        generator = torch.Generator()
        generator.manual_seed(seed)
        return DataLoader(
            _Files(self.items, spec_of(self).is_bytes),
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=WORKERS,
            collate_fn=_collate,
            generator=generator,
            persistent_workers=False,
        )

    def iter_sequential(self, batch_size: int) -> Iterator[Batch]:
        yield from self._loader(batch_size, False, 0)

    def iter_shuffled(self, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
        yield from self._loader(batch_size, True, seed * 1000 + epoch)

    def get_row(self, i: int) -> Row:
        return _Files(self.items, spec_of(self).is_bytes)[i]


class _Files:
    """A map-style dataset over the files (module level so that workers can unpickle it)."""

    def __init__(self, items: list[tuple[Path, int]], is_bytes: bool) -> None:
        self.items = items
        self.is_bytes = is_bytes

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Row:
        path, label = self.items[i]
        data = path.read_bytes()
        if self.is_bytes:
            return data, label
        return np.load(io.BytesIO(data)), label


def _collate(rows: list[Row]) -> Batch:
    xs = [r[0] for r in rows]
    labels = np.array([r[1] for r in rows], dtype=np.int64)
    if isinstance(xs[0], bytes):
        return xs, labels
    return np.stack(xs), labels
