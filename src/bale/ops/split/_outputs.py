"""Writing the split files (local files or objects): one pass over the input's row groups, each
copied as stored or decoded and divided, and the outputs published all together or not at all."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bale._core.columns import take_batch_rows
from bale._core.dataset import Dataset, reader_of
from bale._core.writer import Writer
from bale._progress import Progress
from bale.io.locations import remove
from bale.io.remote_url import is_remote


@dataclass
class Tally:
    """What went into one output: row groups copied as stored, their rows, and rows rewritten
    (decoded and compressed again, losslessly, into new row groups)."""

    groups_copied: int = 0
    rows_copied: int = 0
    rows_reencoded: int = 0
    file_bytes: int = 0  # the file's or object's size, once published


def write_outputs(
    ds: Dataset,
    targets: Sequence[str],
    metadata: Sequence[Mapping[str, Any]],
    assignment: np.ndarray,
    copy_whole_groups: bool,
    overwrite: bool,
    storage_options: Mapping[str, Any] | None = None,
    *,
    progress: bool = False,
) -> list[Tally]:
    """One pass over the input's row groups, each read once. A group whose rows all go to one
    output is copied as stored when ``copy_whole_groups``; otherwise its rows are decoded and
    written to the outputs they belong to, in input order. ``storage_options`` are those of
    the targets that are URLs; ``progress`` draws a bar of the input's rows."""
    sizes = ds.row_group_sizes
    rows_per_group = max(sizes, default=1)
    writers: list[Writer] = []
    tallies = [Tally() for _ in targets]
    local = [t for t in targets if not is_remote(t)]
    for directory in {os.path.dirname(t) for t in local} - {""}:
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
                    storage_options=storage_options if is_remote(target) else None,
                )
            )
        with Progress(progress, len(ds), "splitting") as bar:
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
                else:
                    batch = ds.read_row_group(group)
                    for i in np.unique(owners).tolist():
                        rows = np.flatnonzero(owners == i)
                        writers[i].write(take_batch_rows(batch, rows))
                        tallies[i].rows_reencoded += len(rows)
                bar.update(size)
    except BaseException:
        _discard(writers)
        raise
    _finish(writers, targets, storage_options)
    for tally, writer in zip(tallies, writers, strict=True):
        tally.file_bytes = writer._sink.offset  # the whole file: trailer included
    return tallies


def _finish(
    writers: Sequence[Writer], targets: Sequence[str], storage_options: Mapping[str, Any] | None
) -> None:
    """Close (publish) every writer. If one fails, the others are discarded and the files or
    objects already published by this call are deleted, so none of them is left."""
    for k, writer in enumerate(writers):
        try:
            writer.close()
        except BaseException:
            _discard(writers[k:])
            for target in targets[:k]:
                remove(target, storage_options)
            raise


def _discard(writers: Sequence[Writer]) -> None:
    """Stop writers without publishing: a local writer's unfinished ``NAME.partial`` is removed,
    an upload is aborted (its parts deleted)."""
    for writer in writers:  # only the writers created
        writer.discard()
