"""Several files read as one dataset: global rows and row groups, mapped columns, sizes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bale._core.dataset import Batch, Dataset, reader_of
from bale._core.mapped import MappedColumn
from bale.errors import BaleError
from bale.io.remote_url import is_remote
from bale.loader.budget import DataSizes
from bale.loader.collate import merge


@dataclass(frozen=True)
class Files:
    """Several files read as one dataset: global row numbers and row groups across files."""

    datasets: list[Dataset]
    row_starts: np.ndarray  # first global row of each file
    group_file: np.ndarray  # file of each global row group
    group_local: np.ndarray  # row group number inside its file

    @classmethod
    def open(
        cls,
        paths: Sequence[str],
        columns: Sequence[str] | None,
        cache_bytes: int,
        storage_options: Mapping[str, Any] | None = None,
        remote_options: Any = None,
    ) -> Files:
        datasets: list[Dataset] = []
        try:
            for path in paths:
                remote = is_remote(path)
                datasets.append(
                    Dataset(
                        path,
                        cache_bytes=cache_bytes,
                        storage_options=storage_options if remote else None,
                        remote_options=remote_options if remote else None,
                    )
                )
            first = datasets[0].schema
            for ds in datasets[1:]:
                if ds.schema.describe() != first.describe():
                    raise BaleError(
                        f"all files of one Loader need the same columns: {ds.schema.describe()} "
                        f"differs from {first.describe()} in {datasets[0].path!r}",
                        path=ds.path,
                    )
            reader_of(datasets[0]).check_columns(columns)
        except BaseException:
            for ds in datasets:
                ds.close()
            raise
        sizes = [len(ds) for ds in datasets]
        row_starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        group_file = np.concatenate(
            [np.full(ds.num_row_groups, i, np.int64) for i, ds in enumerate(datasets)]
        )
        group_local = np.concatenate([np.arange(ds.num_row_groups) for ds in datasets])
        return cls(datasets, row_starts, group_file, group_local.astype(np.int64))

    @property
    def group_sizes(self) -> np.ndarray:
        return np.concatenate([np.asarray(ds.row_group_sizes, np.int64) for ds in self.datasets])

    @property
    def num_rows(self) -> int:
        """Rows in all files together."""
        return int(self.row_starts[-1] + len(self.datasets[-1]))

    def sizes(self, columns: Sequence[str] | None) -> DataSizes:
        """Decoded sizes of these columns (None: all), for the loader's memory plan."""
        readers = [reader_of(ds) for ds in self.datasets]
        group_bytes = max(1, max(r.decoded_group_bytes(columns) for r in readers))
        # Uncompressed columns are gathered from the mapped files: windows do not hold them.
        held = [n for n in columns or self.datasets[0].schema.names if not self.mapped(n)]
        held_bytes = max(r.decoded_group_bytes(held) for r in readers)
        mapped_bytes = sum(
            reader_of(ds).decoded_group_bytes([n]) * ds.num_row_groups
            for ds in self.datasets
            for n in (columns or ds.schema.names)
            if reader_of(ds).mapped_column(n) is not None
        )
        group_sizes = self.group_sizes
        return DataSizes(
            group_bytes=group_bytes,
            held_bytes=held_bytes,
            mapped_bytes=mapped_bytes,
            rows_per_group=max(1, int(np.median(group_sizes))) if self.num_rows else 1,
            num_row_groups=len(group_sizes),
            num_files=len(self.datasets),
        )

    def mapped(self, name: str) -> bool:
        """Whether column ``name`` is uncompressed (read from the mapped file) in every file."""
        return all(reader_of(ds).mapped_column(name) is not None for ds in self.datasets)

    def gather_mapped(self, names: Sequence[str], rows: np.ndarray) -> Batch:
        """Mapped columns' values of these global rows, in this order: one gather per file."""
        files, local = self.locate(rows)
        out: Batch = {}
        for name in names:
            if len(self.datasets) == 1 or len(rows) == 0:
                out[name] = self.mapped_column(0, name).gather(local)
                continue
            parts = []
            for f in np.unique(files).tolist():
                positions = np.flatnonzero(files == f)
                parts.append(
                    (positions, {name: self.mapped_column(f, name).gather(local[positions])})
                )
            out[name] = merge(parts, len(rows))[name]
        return out

    def release_mapped(self, names: Sequence[str], rows: np.ndarray) -> None:
        """Unmap the row groups these rows lie in (served windows) from this process."""
        files, local = self.locate(rows)
        for f in np.unique(files).tolist():
            ds = self.datasets[f]
            groups = np.unique(reader_of(ds).groups.groups_of(local[files == f]))
            for name in names:
                self.mapped_column(f, name).release(groups)

    def mapped_column(self, file: int, name: str) -> MappedColumn:
        mapped = reader_of(self.datasets[file]).mapped_column(name)
        if mapped is None:
            raise RuntimeError(f"internal error: column {name!r} is not mapped")
        return mapped

    def locate(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        file = np.searchsorted(self.row_starts, rows, side="right") - 1
        return file, rows - self.row_starts[file]

    def close(self) -> None:
        for ds in self.datasets:
            ds.close()
