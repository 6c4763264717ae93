"""Checking every block of a file against its checksum and decoder (`bale verify`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from bale._core.dataset import Dataset, reader_of
from bale.errors import BaleError


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of ``verify``: ``ok`` is True only if every block checked out."""

    path: str
    rows: int
    blocks_checked: int
    problems: list[BaleError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return f"{self.path}: OK ({self.rows} rows, {self.blocks_checked} blocks checked)"
        lines = [f"{self.path}: {len(self.problems)} damaged block(s) of {self.blocks_checked}"]
        lines += [f"  {problem}" for problem in self.problems]
        return "\n".join(lines)


def verify(path: str | os.PathLike[str]) -> VerifyReport:
    """Read and check every block. Errors opening the file (not bale, truncated, newer version)
    are raised; damaged blocks are collected so one report lists all of them."""
    problems: list[BaleError] = []
    checked = 0
    with Dataset(path, verify=True, cache_bytes=0) as ds:
        for group in range(ds.num_row_groups):
            for column in ds.schema.names:
                checked += 1
                try:
                    reader_of(ds).load_block(group, column)
                except BaleError as exc:
                    problems.append(exc)
        return VerifyReport(ds.path, len(ds), checked, problems)
