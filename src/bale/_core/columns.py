"""Column values in a batch, whatever their kind (an array, or a list of bytes/str/objects):
subset, concatenate, measure. The one copy of these helpers for every layer.

>>> take_rows([b"a", b"bc", b"d"], np.array([2, 0]))
[b'd', b'a']
>>> values_nbytes([b"a", b"bc"]), human_bytes(3 << 20)
(3, '3.0 MiB')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Batch = dict[str, Any]


def take_rows(values: Any, rows: np.ndarray) -> Any:
    """``values[rows]`` for an array; the same rows, in order, for a list."""
    if isinstance(values, np.ndarray):
        return values[rows]
    return [values[i] for i in rows.tolist()]


def take_batch_rows(batch: Mapping[str, Any], rows: np.ndarray) -> Batch:
    """Every column of ``batch`` at ``rows``."""
    return {name: take_rows(values, rows) for name, values in batch.items()}


def concat_values(pieces: Sequence[Any]) -> Any:
    """Pieces of one column joined: one array (no copy for a single piece), or one list."""
    if isinstance(pieces[0], np.ndarray):
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
    return [value for piece in pieces for value in piece]


def values_nbytes(values: Any) -> int:
    """Payload bytes of one column's values: an array's bytes, or the sum of the items' lengths."""
    if isinstance(values, np.ndarray) and values.dtype != object:
        return int(values.nbytes)
    return sum(len(v) for v in values)


def batch_nbytes(batch: Mapping[str, Any]) -> int:
    """Payload bytes of a whole batch."""
    return sum(values_nbytes(values) for values in batch.values())


def human_bytes(n: float) -> str:
    """A byte count as short text: ``512 B``, ``1.5 KiB`` ... ``2.0 TiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
