"""Writing the split files: one pass over the input's row groups, each copied as stored or decoded
and divided, and the outputs published all together or not at all."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bale._core.columns import take_batch_rows
from bale._core.dataset import Dataset, reader_of
from bale._core.writer import Writer
from bale.io.sink import partial_path_for


@dataclass
class Tally:
    """What went into one output: row groups copied as stored, their rows, and rows re-encoded."""

    groups_copied: int = 0
    rows_copied: int = 0
    rows_reencoded: int = 0


def write_outputs(
    ds: Dataset,
    targets: Sequence[str],
    metadata: Sequence[Mapping[str, Any]],
    assignment: np.ndarray,
    copy_whole_groups: bool,
    overwrite: bool,
) -> list[Tally]:
    """One pass over the input's row groups, each read once. A group whose rows all go to one
    output is copied as stored when ``copy_whole_groups``; otherwise its rows are decoded and
    written to the outputs they belong to, in input order."""
    sizes = ds.row_group_sizes
    rows_per_group = max(sizes, default=1)
    writers: list[Writer] = []
    tallies = [Tally() for _ in targets]
    for directory in {os.path.dirname(t) for t in targets} - {""}:
        os.makedirs(directory, exist_ok=True)
    try:
        for target, meta in zip(targets, metadata, strict=True):
            writers.append(
                Writer(
                    target,
                    ds.schema,
                    overwrite=overwrite,
                    metadata=meta,
                    row_group_rows=rows_per_group,
                    segment_bytes=ds.index.segment_bytes,
                )
            )
        start = 0
        for group, size in enumerate(sizes):
            owners = assignment[start : start + size]
            start += size
            if size == 0:
                continue
            first = int(owners[0])
            if copy_whole_groups and bool((owners == first).all()):
                writers[first].write_stored_group(reader_of(ds).stored_group(group))
                tallies[first].groups_copied += 1
                tallies[first].rows_copied += size
                continue
            batch = ds.read_row_group(group)
            for i in np.unique(owners).tolist():
                rows = np.flatnonzero(owners == i)
                writers[i].write(take_batch_rows(batch, rows))
                tallies[i].rows_reencoded += len(rows)
    except BaseException:
        _discard(writers)
        raise
    _finish(writers)
    return tallies


def _finish(writers: Sequence[Writer]) -> None:
    """Close (publish) every writer. If one fails, the others are discarded and the files
    already published by this call are deleted, so none of them is left."""
    published: list[str] = []
    for k, writer in enumerate(writers):
        try:
            writer.close()
        except BaseException:
            _discard(writers[k:])
            for target in published:
                _remove(target)
            raise
        published.append(writer.path)


def _discard(writers: Sequence[Writer]) -> None:
    """Stop writers without publishing and remove their unfinished ``NAME.partial`` files."""
    for writer in writers:
        try:
            writer.abort()
        finally:
            _remove(partial_path_for(writer.path))


def _remove(path: str) -> None:
    # Best effort while another error is on its way up: that error is the one to report.
    with contextlib.suppress(OSError):
        os.remove(path)
