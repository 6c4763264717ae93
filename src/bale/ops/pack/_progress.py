"""A pack's progress bar: the shared ``bale._progress.Progress`` (rows/s, ETA, MB/s)."""

from __future__ import annotations

from bale._progress import Progress

__all__ = ["Progress"]
