"""Progress bars for long commands: a tqdm bar on a terminal when wanted and installed, else nothing.

Every long operation (pack, split, concat, merge, verify, export, repair, recompress, codecs)
takes ``progress: bool`` and reports through :class:`Progress`; the CLI turns it on by default,
and ``--quiet`` / ``--no-progress`` turn it off. A bar is drawn only when stderr is a terminal,
so logs and pipes never fill with carriage returns.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

__all__ = ["Progress", "progress_wanted"]

log = logging.getLogger("bale")


def progress_wanted(quiet: bool = False) -> bool:
    """True when a bar would be seen: not ``quiet`` and stderr is a terminal."""
    if quiet:
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):  # a closed or detached stderr
        return False


class Progress:
    """A tqdm bar (count/s, ETA, MB/s) when ``enabled``, stderr is a terminal and tqdm is
    installed; otherwise every call does nothing. Use as a context manager.

    >>> with Progress(True, total=1000, description="verifying", unit="blocks") as bar:
    ...     bar.update(10, nbytes=1 << 20)
    """

    def __init__(
        self,
        enabled: bool,
        total: int | None,
        description: str,
        *,
        unit: str = "rows",
        force: bool = False,
    ) -> None:
        self._bar: Any = None
        self._bytes = 0
        self._started = time.perf_counter()
        if not enabled or not (force or progress_wanted()):
            return
        try:
            from tqdm import tqdm
        except ImportError:
            log.info("no progress bar: tqdm is not installed (pip install tqdm)")
            return
        self._bar = tqdm(
            total=total,
            desc=description,
            unit=unit,
            unit_scale=(total or 0) >= 100_000,  # 1.2M rows, not 1200000; small counts exact
            dynamic_ncols=True,
            file=sys.stderr,
            leave=False,
        )

    @property
    def active(self) -> bool:
        """Whether a bar is being drawn."""
        return self._bar is not None

    def update(self, count: int, nbytes: int = 0) -> None:
        """Advance by ``count`` units; ``nbytes`` (if any) feeds the MB/s figure."""
        if self._bar is None:
            return
        if nbytes:
            self._bytes += nbytes
            elapsed = max(1e-9, time.perf_counter() - self._started)
            self._bar.set_postfix_str(f"{self._bytes / 1e6 / elapsed:.1f} MB/s", refresh=False)
        self._bar.update(count)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
