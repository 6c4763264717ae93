"""Batch values: rows collated into a batch; batches merged, filtered and copied."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bale._core.dataset import Batch


def collate(rows: Sequence[Mapping[str, Any]]) -> Batch:
    """Rows (dicts) -> a batch: NumPy values stacked into one array, anything else as a list."""
    if not rows:
        return {}
    out: Batch = {}
    for key in rows[0]:
        values = [row[key] for row in rows]
        first = values[0]
        if isinstance(first, (np.ndarray, np.generic, int, float, bool)):
            out[key] = np.stack([np.asarray(v) for v in values])
        else:
            out[key] = values
    return out


def own(batch: Batch) -> Batch:
    """Copies of arrays that are views of cached blocks (read-only, shared between callers)."""
    return {
        k: v.copy() if isinstance(v, np.ndarray) and not v.flags.writeable else v
        for k, v in batch.items()
    }


def select(values: Any, keep: np.ndarray) -> Any:
    """One column's values where ``keep`` (a boolean mask) is true."""
    if isinstance(values, np.ndarray):
        return values[keep]
    return [v for v, k in zip(values, keep.tolist(), strict=True) if k]


def merge(parts: list[tuple[np.ndarray, Batch]], n: int) -> Batch:
    """A batch of ``n`` rows from parts, each (its rows' positions in the result, its batch)."""
    out: Batch = {}
    for key in parts[0][1]:
        first = parts[0][1][key]
        if isinstance(first, np.ndarray):
            result: Any = np.empty((n, *first.shape[1:]), first.dtype)
        else:
            result = [None] * n
        for positions, batch in parts:
            if isinstance(result, np.ndarray):
                result[positions] = batch[key]
            else:
                for p, v in zip(positions.tolist(), batch[key], strict=True):
                    result[p] = v
        out[key] = result
    return out
