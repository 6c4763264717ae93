"""Which input rows go to which split: counts by largest remainder (overall and per class), and
each row's split for contiguous ranges, a seeded permutation or a stratified division."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from bale._core.dataset import Dataset
from bale.errors import SchemaError
from bale.format.schema import Array


def largest_remainder(total: int, ratios: Sequence[Fraction | float]) -> list[int]:
    """Integers proportional to ``ratios`` that add up to ``total`` exactly: each is the floor of
    its exact share, and the rows left over go to the largest fractional parts (ties: first)."""
    weights = [Fraction(r) for r in ratios]
    whole = sum(weights)
    exact = [total * w / whole for w in weights]
    counts = [math.floor(e) for e in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def class_counts(class_sizes: Sequence[int], ratios: Sequence[Fraction | float]) -> list[list[int]]:
    """Rows of each class per split: ``table[c][i]``. Each row of the table adds up to its class
    size, and each entry is within one row of its exact share ``size * ratio``. The rows left
    over after rounding down go, class by class, to the splits whose totals are furthest below
    their overall largest-remainder count, so split sizes match an unstratified split where the
    rounding allows. Then a class with at least as many rows as there are splits gets at least
    one row in every split, taken from the split most above its share, even where that share is
    below one row (the only case where an entry is more than one row from its share)."""
    weights = [Fraction(r) for r in ratios]
    whole = sum(weights)
    k = len(weights)
    exact = [[size * w / whole for w in weights] for size in class_sizes]
    table = [[math.floor(e) for e in row] for row in exact]
    quota = largest_remainder(sum(class_sizes), weights)
    for i in range(k):
        quota[i] -= sum(row[i] for row in table)
    leftover = [size - sum(row) for size, row in zip(class_sizes, table, strict=True)]
    for c in sorted(range(len(class_sizes)), key=lambda c: (-leftover[c], c)):
        ranked = sorted(range(k), key=lambda i: (-quota[i], -(exact[c][i] - table[c][i]), i))
        for i in ranked[: leftover[c]]:
            table[c][i] += 1
            quota[i] -= 1
    for c, size in enumerate(class_sizes):
        if size < k:
            continue
        for j in range(k):
            if table[c][j] == 0:
                donor = max(
                    (i for i in range(k) if table[c][i] >= 2),
                    key=lambda i: (table[c][i] - exact[c][i], -i),
                )
                table[c][donor] -= 1
                table[c][j] += 1
    return table


def _assignment_dtype(splits: int) -> np.dtype[Any]:
    return np.dtype(np.min_scalar_type(max(splits - 1, 0)))


def contiguous_assignment(counts: Sequence[int]) -> np.ndarray:
    """Each row's split: the first ``counts[0]`` rows go to split 0, the next ``counts[1]`` to
    split 1, and so on."""
    return np.repeat(np.arange(len(counts), dtype=_assignment_dtype(len(counts))), counts)


def random_assignment(counts: Sequence[int], seed: int) -> np.ndarray:
    """Each row's split: ``counts[i]`` rows, chosen by a permutation seeded with ``seed``, go to
    split i."""
    permutation = np.random.default_rng(seed).permutation(sum(counts))
    assignment = np.empty(sum(counts), _assignment_dtype(len(counts)))
    start = 0
    for i, count in enumerate(counts):
        assignment[permutation[start : start + count]] = i
        start += count
    return assignment


def stratified_assignment(
    ds: Dataset, column: str, ratios: Sequence[Fraction], seed: int
) -> tuple[list[int], np.ndarray]:
    """Each class's rows, shuffled with one generator seeded by ``seed`` (classes in sorted
    order), divided by ``class_counts``. Returns the total per split and each row's split."""
    labels = _class_codes(ds, column)
    class_sizes = np.bincount(labels).tolist() if labels.size else []
    table = class_counts(class_sizes, ratios)
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(labels), _assignment_dtype(len(ratios)))
    rows_of_class = np.argsort(labels, kind="stable")
    bounds = np.cumsum([0, *class_sizes])
    for c, counts in enumerate(table):
        rows = rng.permutation(rows_of_class[bounds[c] : bounds[c + 1]])
        start = 0
        for i, count in enumerate(counts):
            assignment[rows[start : start + count]] = i
            start += count
    totals = [sum(row[i] for row in table) for i in range(len(ratios))]
    return totals, assignment


def _class_codes(ds: Dataset, column: str) -> np.ndarray:
    if column not in ds.schema:
        raise SchemaError(
            f"cannot stratify by {column!r}: no such column; columns are {ds.schema.names}",
            path=ds.path,
        )
    column_type = ds.schema[column].type
    if isinstance(column_type, Array) and (
        column_type.shape != () or column_type.numpy_dtype.kind not in "biu"
    ):
        raise SchemaError(
            f"cannot stratify by a {column_type.dtype}{list(column_type.shape)} column: "
            "expected one integer, bool, string or bytes value per row",
            path=ds.path,
            column=column,
        )
    values = ds.column(column)[:]
    if not isinstance(values, np.ndarray):
        values = np.array(values, dtype=object)
    _, codes = np.unique(values, return_inverse=True)
    return np.asarray(codes, dtype=np.int64).reshape(-1)
