"""The adapter contract every tool implements, and helpers the adapters share.

An adapter writes a :class:`~bench.suite.data.Source` to a directory with the tool's usual
API, then reads it back the way the tool's documentation recommends. Batches are
``(x, labels)``: ``x`` a NumPy array ``(n, *shape)`` for array kinds or a sequence of
bytes-like JPEG files, ``labels`` an int64 array. Rows come back exactly as written.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench.suite.data import Source, Spec

Batch = tuple[Any, NDArray[np.int64]]
Row = tuple[Any, int]


class Unsupported(Exception):
    """The tool cannot do this (e.g. random access on a stream of tar shards); the report says
    so instead of a number."""


class Adapter(ABC):
    """One tool: write once, then open and read. Subclasses set ``name`` and ``shuffle_note``
    (how the shuffled epoch is made, quoted in the report)."""

    name: str = ""
    #: distributions whose versions the results record
    dists: tuple[str, ...] = ()
    #: the module the tool needs; check() imports it
    module: str = "numpy"
    #: whether iter_sequential yields rows in written order (DataLoader workers interleave)
    ordered: bool = True
    #: open() only records the path: the tool's real opening happens in the first epoch
    lazy_open: bool = False
    #: open() loads every row into memory; epochs then read RAM, not the store
    in_memory: bool = False
    shuffle_note: str = ""
    #: how the tool compresses x as written here ("" when it stores x as is)
    compression: str = ""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.spec: Spec | None = None
        self.path: Path | None = None

    def check(self) -> None:
        """Raise ImportError if the tool cannot be used here."""
        import importlib

        importlib.import_module(self.module)

    def versions(self) -> dict[str, str]:
        from importlib import metadata

        out = {}
        for dist in self.dists:
            try:
                out[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                out[dist] = "not installed"
        return out

    @abstractmethod
    def write(self, source: Source, out: Path) -> None:
        """Store all rows of ``source`` under the (empty, existing) directory ``out``."""

    @abstractmethod
    def open(self, out: Path, spec: Spec) -> None:
        """Open what ``write`` stored; keep what the reads need."""

    @abstractmethod
    def iter_sequential(self, batch_size: int) -> Iterator[Batch]:
        """Every row once, in written order."""

    @abstractmethod
    def iter_shuffled(self, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
        """Every row once (up to a dropped remainder), in the tool's recommended shuffle."""

    def get_row(self, i: int) -> Row:
        """Row ``i`` alone (random access)."""
        raise Unsupported(f"{self.name} has no random access to single rows")

    def get_rows(self, indices: NDArray[np.int64]) -> Batch:
        """The rows at ``indices`` (distinct, in any order), in that order: a random batch.

        This default loops over :meth:`get_row`, as users of a tool without a batch read do;
        adapters override it with the tool's own gather where it has one."""
        spec = spec_of(self)
        rows = [self.get_row(int(i)) for i in indices]
        return collate([r[0] for r in rows], [r[1] for r in rows], spec)

    def describe_store(self, out: Path) -> dict[str, Any]:
        """What the report should know about a written store, e.g. how ``x`` is compressed.
        ``compression`` is the adapter's own description unless a subclass reads it back."""
        return {"compression": self.compression}

    def close(self) -> None:  # noqa: B027 - most tools hold nothing that needs closing
        """Release files and worker processes."""

    def files(self, out: Path) -> list[Path]:
        """The files that hold the data: what page-cache eviction and size counting cover."""
        return files_under(out)


# -- helpers ----------------------------------------------------------------------------------


def files_under(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file())


def fsync_tree(out: Path) -> None:
    """Make every file and directory under ``out`` durable: write times include the disk."""
    for p in [*files_under(out), *(d for d in out.rglob("*") if d.is_dir()), out]:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def spec_of(adapter: Adapter) -> Spec:
    if adapter.spec is None:
        raise RuntimeError(f"{adapter.name}: open() first")
    return adapter.spec


def collate(xs: Sequence[Any], labels: Sequence[int], spec: Spec) -> Batch:
    x: Any = list(xs) if spec.is_bytes else np.stack(xs)
    return x, np.asarray(labels, dtype=np.int64)


def index_batches(order: NDArray[np.int64], batch_size: int) -> Iterator[NDArray[np.int64]]:
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def permutation(rows: int, seed: int, epoch: int) -> NDArray[np.int64]:
    """The order that tools without a shuffle of their own are read in (users call this)."""
    return np.random.default_rng([seed, epoch]).permutation(rows).astype(np.int64)


def gather_unique(read: Any, idx: NDArray[np.int64]) -> Any:
    """Read the rows ``idx`` from an array-like whose fancy indexing needs increasing, distinct
    indices (h5py; zarr's ``oindex`` reads best that way): sorted unique indices are read,
    then the rows are put back in the asked order (repeats included)."""
    unique, inverse = np.unique(idx, return_inverse=True)
    got = read(unique)
    return got[inverse]


def gather_sorted(read: Any, idx: NDArray[np.int64]) -> Any:
    """Read the rows ``idx`` from an array-like that needs increasing indices (h5py, zarr,
    memmaps read best that way) and put them back in the asked order."""
    order = np.argsort(idx, kind="stable")
    got = read(idx[order])
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return got[inverse]


#: DataLoader workers for the tools built around a PyTorch DataLoader: the machine's cores.
WORKERS = 2


def shard_bytes(spec: Spec, cap: int = 64 << 20, shards: int = 8) -> int:
    """Shard size for sharded formats: the tools' usual 64 MB, but at least ``shards`` shards so
    that shard shuffling and worker splitting have something to work with on small data."""
    return max(1 << 16, min(cap, spec.raw_bytes // shards))


def torch_batches(dataset: Any, batch_size: int | None, collate: Any, **kw: Any) -> Iterator[Any]:
    """Iterate ``dataset`` through a PyTorch DataLoader with WORKERS worker processes."""
    from torch.utils.data import DataLoader

    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=WORKERS, collate_fn=collate, **kw
    )
    yield from loader
