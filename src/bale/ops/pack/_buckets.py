"""The two-pass bucket shuffle: an exact shuffle of a source read only in order, through temporary
bucket files, holding one bucket in memory at a time."""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile

import numpy as np

from bale._core.columns import batch_nbytes, human_bytes, take_batch_rows
from bale._core.dataset import Dataset
from bale._core.shuffle import shuffle_keys
from bale._core.writer import Writer
from bale._progress import Progress
from bale.format.schema import Array
from bale.importers.base import RowSource, SourceBatch
from bale.io.remote_url import is_remote
from bale.ops.pack._output import PackOutput, write_rows
from bale.ops.pack._settings import PackSettings
from bale.ops.pack._workers import SourceReader, row_ranges

log = logging.getLogger("bale.pack")

_ROW_COLUMN = "__bale_pack_row"  # the source row number, stored in bucket files only
_MAX_BUCKETS = 4096


def bucket_shuffle(
    source: RowSource,
    reader: SourceReader,
    output: PackOutput,
    settings: PackSettings,
    rows_per_task: int,
) -> None:
    """An exact shuffle of a source read only in order, holding one bucket in memory at a time.

    Pass 1 reads the source sequentially and appends each row to bucket ``key >> shift`` (the
    top bits of its shuffle key), so bucket b holds exactly the rows whose keys fall in the b-th
    key range. Pass 2 loads one bucket at a time, sorts it by key and writes it: buckets in
    order, each sorted, is the whole source sorted by key. Buckets are lz4-compressed .bale
    files in a hidden folder next to the output, each removed as soon as it is written out;
    together they take about as much space as the data.
    """
    n = source.num_rows
    if settings.temp_dir is not None:
        parent: str | None = settings.temp_dir
    elif is_remote(output.out):
        parent = None  # the system's temporary folder: buckets stay local
    else:
        parent = os.path.dirname(os.path.abspath(output.out))
    folder = tempfile.mkdtemp(prefix=f".{os.path.basename(output.out)}.pack-", dir=parent)
    buckets: list[Writer | None] = []
    shift = np.uint64(64)
    bucket_bytes = 0
    try:
        with Progress(settings.progress, n, "shuffling 1/2") as bar:
            for batch in reader.read(row_ranges(n, rows_per_task)):
                output.note_skipped(batch)
                if len(batch):
                    types = output.start(batch)
                    if not buckets:
                        bits, bucket_bytes = _bucket_plan(source, batch, settings)
                        buckets = [None] * (1 << bits)
                        shift = np.uint64(64 - bits)
                    keys = shuffle_keys(batch.rows, settings.seed)
                    which = (
                        (keys >> shift).astype(np.int64)
                        if len(buckets) > 1
                        else np.zeros(len(keys), np.int64)
                    )
                    order = np.argsort(which, kind="stable")
                    bounds = np.flatnonzero(np.diff(which[order])) + 1
                    for part in np.split(order, bounds):
                        b = int(which[part[0]])
                        bucket_writer = buckets[b]
                        if bucket_writer is None:
                            bucket_writer = buckets[b] = Writer(
                                os.path.join(folder, f"bucket-{b:05d}.bale"),
                                {**types, _ROW_COLUMN: Array("int64")},
                                codecs={**dict.fromkeys(types, "lz4"), _ROW_COLUMN: "lz4"},
                                row_group_bytes=bucket_bytes,
                            )
                        columns = take_batch_rows(batch.columns, part)
                        columns[_ROW_COLUMN] = batch.rows[part]
                        write_rows(bucket_writer, columns, batch.rows[part], source.path)
                bar.update(len(batch) + len(batch.skipped), batch_nbytes(batch.columns))
        for writer in buckets:
            if writer is not None:
                writer.close()
        with Progress(settings.progress, n - len(output.skipped), "shuffling 2/2") as bar:
            for writer in buckets:
                if writer is None:
                    continue
                with Dataset(writer.path, cache_bytes=0) as bucket:
                    data = bucket.read()
                os.unlink(writer.path)
                rows = data.pop(_ROW_COLUMN)
                order = np.argsort(shuffle_keys(rows, settings.seed))
                step = max(1, settings.row_group_bytes // max(1, batch_nbytes(data) // len(rows)))
                for a in range(0, len(order), step):
                    part = order[a : a + step]
                    columns = take_batch_rows(data, part)
                    output.write(columns, rows[part])
                    bar.update(len(part), batch_nbytes(columns))
                del data
    finally:
        for writer in buckets:
            if writer is not None:
                writer.abort()
        shutil.rmtree(folder, ignore_errors=True)


def _bucket_plan(source: RowSource, first: SourceBatch, settings: PackSettings) -> tuple[int, int]:
    """(bits, row_group_bytes) of the buckets: 2**bits buckets of at most about a third of the
    memory budget each (pass 2 holds one bucket plus the part being written)."""
    row_bytes = max(source.row_nbytes_hint, batch_nbytes(first.columns) // max(1, len(first))) + 8
    total = source.num_rows * row_bytes
    needed = math.ceil(total * 1.25 / max(1, settings.memory_budget // 3))
    bits = max(0, math.ceil(math.log2(needed))) if needed > 1 else 0
    limit = _max_buckets()
    if (1 << bits) > limit:
        bits = int(math.log2(limit))
        log.warning(
            "the data (~%s) needs more shuffle buckets than can be open at once (%d); each "
            "bucket will hold ~%s, more than memory_budget/3: raise memory_budget",
            human_bytes(total),
            limit,
            human_bytes(total >> bits),
        )
    # Every open bucket buffers one row group: keep them together within a third of the budget.
    buffer = max(4096, min(settings.row_group_bytes, settings.memory_budget // (3 << bits)))
    return bits, buffer


def _max_buckets() -> int:
    try:
        import resource  # POSIX only

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            soft = 1 << 20
    except (ImportError, OSError, ValueError):
        soft = 1024
    usable = min(_MAX_BUCKETS, max(1, soft - 128))
    return 1 << int(math.log2(usable))
