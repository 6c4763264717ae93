"""A pack's progress bar: tqdm (rows/s, ETA, MB/s) when asked for and installed, else nothing."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger("bale.pack")


class Progress:
    """A tqdm bar (rows/s, ETA, MB/s) when asked for and tqdm is installed; else nothing."""

    def __init__(self, enabled: bool, total: int, description: str) -> None:
        self._bar: Any = None
        self._bytes = 0
        self._started = time.perf_counter()
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            log.info("no progress bar: pip install tqdm")
            return
        self._bar = tqdm(
            total=total,
            desc=description,
            unit="rows",
            unit_scale=total >= 100_000,  # 1.2M rows, not 1200000; small counts stay exact
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def update(self, rows: int, nbytes: int) -> None:
        if self._bar is None:
            return
        self._bytes += nbytes
        elapsed = max(1e-9, time.perf_counter() - self._started)
        self._bar.set_postfix_str(f"{self._bytes / 1e6 / elapsed:.1f} MB/s", refresh=False)
        self._bar.update(rows)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
