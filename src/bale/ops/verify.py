"""Checking every block of a file against its checksum and decoder, and the frame index against
the blocks' frames (`bale verify`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bale._core.dataset import Dataset, reader_of
from bale.errors import BaleError, CorruptFileError


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


def verify(
    path: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> VerifyReport:
    """Read and check every block. Errors opening the file (not bale, truncated, newer version)
    are raised; damaged blocks are collected so one report lists all of them. ``path`` may be a
    URL, read with ``storage_options`` (see ``bale.open``); the report names it without
    credentials.

    >>> verify("s3://bucket/train.bale", storage_options={"profile": "research"}).ok  # doctest: +SKIP
    True
    """
    problems: list[BaleError] = []
    checked = 0
    with Dataset(path, verify=True, cache_bytes=0, storage_options=storage_options) as ds:
        reader = reader_of(ds)
        index_problem = reader.frames.problem()
        if index_problem is not None:
            problems.append(CorruptFileError(index_problem, path=ds.path))
        for group in range(ds.num_row_groups):
            for position, column in enumerate(ds.schema.columns):
                checked += 1
                rows = reader.groups.rows_of(group)
                try:
                    payload = reader.payload(group, position)
                    reader.decode(group, position, column, payload)
                except BaleError as exc:
                    problems.append(exc)
                    continue
                frames_problem = (
                    None if index_problem else reader.frames.block_problem(group, position, payload)
                )
                if frames_problem is not None:
                    problems.append(
                        CorruptFileError(
                            frames_problem, path=ds.path, column=column.name, rows=rows
                        )
                    )
        return VerifyReport(ds.path, len(ds), checked, problems)
