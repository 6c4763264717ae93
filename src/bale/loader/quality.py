"""Shuffle quality: how far per-batch class mixing is from an i.i.d. shuffle (dispersion ratio).

For a batch of B rows with class counts n_c and dataset class shares p_c, the dispersion is
``D = sum_c (n_c - B p_c)^2 / (B p_c)``. Under i.i.d. sampling its expectation is exactly C - 1
(C classes with p_c > 0), so the **dispersion ratio** ``R = mean(D) / (C - 1)`` is 1.0 for an
i.i.d. shuffle, and about B for batches that each hold a single class (no shuffle on
class-sorted data). The bale repository's docs/LOADER.md reports R for each shuffle mode and
window size.

>>> round(dispersion_ratio([np.array([0, 1, 0, 1]), np.array([1, 0, 1, 0])], [0.5, 0.5]), 2)
0.0
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def batch_dispersion(labels: np.ndarray, class_shares: np.ndarray) -> float:
    """D for one batch of integer class labels."""
    counts = np.bincount(labels, minlength=len(class_shares)).astype(np.float64)
    expected = len(labels) * class_shares
    present = class_shares > 0
    return float((((counts - expected) ** 2)[present] / expected[present]).sum())


def dispersion_ratio(
    batches: Iterable[np.ndarray], class_shares: Sequence[float] | np.ndarray
) -> float:
    """R over the given batches (1.0 = i.i.d.; larger = batches clumped by class)."""
    shares = np.asarray(class_shares, dtype=np.float64)
    degrees = int((shares > 0).sum()) - 1
    values = [batch_dispersion(np.asarray(b), shares) for b in batches if len(b)]
    if degrees < 1 or not values:
        raise ValueError("need at least two classes and one non-empty batch")
    return float(np.mean(values)) / degrees
