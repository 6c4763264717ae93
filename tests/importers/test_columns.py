"""Shared array-importer helpers (bale.importers.columns): chunk-aligned reads, column choice, clashes."""

from __future__ import annotations

import numpy as np

from bale.format.schema import Array
from bale.importers.columns import (
    AlignedRangeReader,
    FieldColumn,
    clashing_names,
    field_columns,
    select_common_length,
)


def test_aligned_reader_decodes_each_chunk_once() -> None:
    data = np.arange(100)
    fetched: list[tuple[int, int]] = []

    def fetch(a: int, b: int) -> np.ndarray:
        fetched.append((a, b))
        return data[a:b]

    reader = AlignedRangeReader(fetch, chunk_rows=10, num_rows=100)
    out = [reader.read(a, b) for a, b in [(0, 7), (7, 15), (15, 15), (15, 33), (33, 100)]]
    np.testing.assert_array_equal(np.concatenate(out), data)
    assert fetched == [(0, 10), (10, 20), (15, 15), (20, 40), (40, 100)]


def test_select_common_length_keeps_the_largest_arrays_rows() -> None:
    shapes = {"mean": (3,), "images": (100, 8, 8), "labels": (100,), "classes": (3,), "s": ()}
    nbytes = {"mean": 24, "images": 6400, "labels": 800, "classes": 30, "s": 8}
    kept, skipped = select_common_length(shapes, nbytes)
    assert kept == ["images", "labels"]
    assert skipped == {"mean": [3], "classes": [3], "s": []}


def test_clashing_names_are_the_names_given_twice() -> None:
    columns = {
        "a/b": [FieldColumn("a.b", None, Array("int64"))],
        "a.b": [FieldColumn("a.b", None, Array("int64"))],
        "t": field_columns("t", np.dtype([("x", "i4"), ("y", "f4")]), (), path="f"),
    }
    assert clashing_names(columns) == ["a.b"]
    assert clashing_names({"t": columns["t"]}) == []
