"""bale.adapters.dask / bale.dask: columns as dask arrays chunked by row group."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale
from bale._core.dataset import Dataset

da = pytest.importorskip("dask.array")

from bale.dask import from_bale  # noqa: E402

ROWS = 1000


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    target = tmp_path_factory.mktemp("dask") / "rows.bale"
    with bale.Writer(target, row_group_rows=300) as writer:
        writer.write(
            {
                "x": rng.standard_normal((700, 4, 2)).astype(np.float32),
                "label": np.arange(700, dtype=np.int16),
                "blob": [b"a"] * 700,
            }
        )
        writer.flush()  # uneven row groups: 300, 300, 100, 300
        writer.write(
            {
                "x": rng.standard_normal((300, 4, 2)).astype(np.float32),
                "label": np.arange(700, ROWS, dtype=np.int16),
                "blob": [b"b"] * 300,
            }
        )
    return target


def test_chunks_match_row_groups(path: Path) -> None:
    sizes = bale.open(path).row_group_sizes
    assert sizes == (300, 300, 100, 300)
    x = from_bale(path, "x")
    assert x.shape == (ROWS, 4, 2) and x.dtype == np.float32
    assert x.chunks == (sizes, (4,), (2,))
    assert from_bale(path, "label").chunks == (sizes,)
    assert len(x.__dask_graph__()) == len(sizes)  # one task per row group, nothing else


def test_compute_equals_the_column(path: Path) -> None:
    ds = bale.open(path)
    for column in ("x", "label"):
        np.testing.assert_array_equal(from_bale(path, column).compute(), ds[column][:])
    assert int(from_bale(path, "label").sum().compute()) == sum(range(ROWS))
    np.testing.assert_allclose(
        from_bale(path, "x").mean(axis=0).compute(), ds["x"][:].mean(axis=0), rtol=1e-4, atol=1e-6
    )


def test_each_chunk_reads_one_row_group_once(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[tuple[int, Any]] = []
    original = Dataset.read_row_group

    def spy(self: Dataset, group: int, columns: Any = None) -> Any:
        reads.append((group, columns))
        return original(self, group, columns)

    monkeypatch.setattr(Dataset, "read_row_group", spy)
    from_bale(path, "x").sum().compute(scheduler="threads")
    assert sorted(reads) == [(g, ["x"]) for g in range(bale.open(path).num_row_groups)]
    reads.clear()
    from_bale(path, "x")[350:360].compute()  # only the group holding those rows
    assert reads == [(1, ["x"])]


def test_graph_pickles_by_path(path: Path) -> None:
    x = from_bale(path, "label")
    clone = pickle.loads(pickle.dumps(x))
    np.testing.assert_array_equal(clone.compute(), np.arange(ROWS))


def test_name_changes_when_the_file_changes(path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.bale"
    copy.write_bytes(path.read_bytes())
    before = from_bale(copy, "label").name
    assert from_bale(copy, "label").name == before  # deterministic
    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert from_bale(copy, "label").name != before


def test_bytes_column_and_unknown_column(path: Path) -> None:
    with pytest.raises(bale.SchemaError, match="array columns"):
        from_bale(path, "blob")
    with pytest.raises(KeyError, match="nope"):
        from_bale(path, "nope")
