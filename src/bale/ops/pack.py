"""`bale.pack`: stream a RowSource into one shuffled .bale file (order, workers, buckets, report).

>>> report = bale.pack("photos/", "photos.bale", size=(224, 224))   # doctest: +SKIP
>>> print(report.summary())                                        # doctest: +SKIP

The shuffled order is the rows sorted by ``shuffle_keys(row, seed)``: a seeded bijection of the
row number onto 64-bit keys, so the order is an exact uniform-looking permutation that the same
seed reproduces. Sources with random access are read in that order directly (``take``); the
others are shuffled in two passes through temporary bucket files (see ``_bucket_shuffle``).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import multiprocessing
import os
import pickle
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from bale._core.batches import infer_schema_types
from bale._core.columns import batch_nbytes, human_bytes, take_batch_rows
from bale._core.dataset import Dataset
from bale._core.defaults import DEFAULT_ROW_GROUP_BYTES
from bale._core.shuffle import shuffle_keys
from bale._core.writer import Writer
from bale.codecs import Codec, parse_codec
from bale.errors import BaleError, SchemaError, TargetExistsError
from bale.format.schema import Array, ColumnType
from bale.importers import open_source
from bale.importers.base import RowSource, SkippedRow, SourceBatch
from bale.importers.image_folder import ImageFolderSource, find_splits, split_classes
from bale.io.sink import partial_path_for

__all__ = ["DEFAULT_MEMORY_BUDGET", "PackReport", "pack", "pack_splits", "shuffle_keys"]

#: Bytes of rows held at once: read-ahead batches, and one bucket in a two-pass shuffle.
DEFAULT_MEMORY_BUDGET = 512 << 20

log = logging.getLogger("bale.pack")

_ROW_COLUMN = "__bale_pack_row"  # the source row number, stored in bucket files only
_TASK_BYTES = 4 << 20  # rows read per task: large enough to amortise, small enough to overlap
_MAX_TASK_ROWS = 1 << 16
_MAX_BUCKETS = 4096
# A source read this fast in one process gains nothing from workers (copying between processes
# costs about as much), nor does one whose reads take about as long as sending them away.
_FAST_SOURCE = 256e6  # bytes/s
_QUICK_TASK = 0.002  # seconds
_LOGGED_SKIPS = 10

CodecChoice = str | Codec
CodecGoal = Literal["balanced", "smallest", "fastest"]  # bale.measure.advisor's goals


@dataclass(frozen=True)
class PackReport:
    """What ``pack`` did: rows written, rows skipped (with file and reason), sizes and speed."""

    source: str
    path: str
    rows: int
    skipped: tuple[SkippedRow, ...]
    file_bytes: int  # size of the .bale file written
    data_bytes: int  # bytes of row data written (before compression)
    seconds: float
    shuffled: bool
    seed: int | None

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_second(self) -> float:
        """Row data (before compression) per second, in MB (10^6 bytes)."""
        return self.data_bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        lines = [
            f"packed {self.rows} rows from {self.source} into {self.path}"
            + (f" (shuffled, seed {self.seed})" if self.shuffled else " (source order)"),
            f"  {human_bytes(self.file_bytes)} on disk, {human_bytes(self.data_bytes)} of row data, "
            f"{self.seconds:.1f} s, {self.rows_per_second:,.0f} rows/s, "
            f"{self.mb_per_second:.1f} MB/s",
        ]
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} unreadable row(s):")
            lines.extend(f"    {s.where}: {s.reason}" for s in self.skipped[:_LOGGED_SKIPS])
            if len(self.skipped) > _LOGGED_SKIPS:
                lines.append(f"    ... and {len(self.skipped) - _LOGGED_SKIPS} more")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Settings:
    shuffle: bool
    seed: int
    codecs: Mapping[str, CodecChoice] | None
    codec_goal: CodecGoal
    workers: int | None  # None: one per CPU, started only for sources slow to read
    progress: bool
    strict: bool
    overwrite: bool
    metadata: Mapping[str, Any]
    row_group_bytes: int
    memory_budget: int
    temp_dir: str | None


def pack(
    source: RowSource | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    shuffle: bool = True,
    seed: int = 0,
    codecs: str | Codec | Mapping[str, CodecChoice] | None = None,
    codec_goal: CodecGoal = "balanced",
    workers: int | None = None,
    progress: bool = True,
    strict: bool = False,
    overwrite: bool = False,
    metadata: Mapping[str, Any] | None = None,
    row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    temp_dir: str | os.PathLike[str] | None = None,
    **source_options: Any,
) -> PackReport:
    """Write every row of ``source`` (a RowSource, or a path given to ``open_source`` with
    ``source_options``) to the new file ``out``, shuffled with ``seed`` unless ``shuffle=False``.

    >>> bale.pack("photos/", "photos.bale")                      # doctest: +SKIP
    >>> bale.pack("train.h5", "train.bale", datasets=["x", "y"])  # doctest: +SKIP

    - ``codecs``: None (bale's defaults), ``"auto"`` (measured by ``bale.measure.advisor`` on the first
      rows, for ``codec_goal``), one spec for every column (``"zstd:3"``), or ``{column: spec}``
      where the key ``"*"`` stands for every other column (its value may be ``"auto"``).
    - ``workers``: processes reading and decoding rows, for picklable sources (others are read
      in this process). Default: one per CPU, started only when the first rows read slower
      than 256 MB/s (image decoding, decompression), not for e.g. memory-mapped .npy files.
      Scripts that start workers need the ``if __name__ == "__main__":`` guard.
    - ``strict``: stop at the first unreadable row instead of skipping it.
    - ``memory_budget``: bytes of rows held at once, and the size of a shuffle bucket.
    - ``temp_dir``: where the shuffle buckets of sources without random access go (default: the
      output's folder); they need about as much free space as the data.

    On any error or interrupt nothing is left behind: no ``out``, no ``out.partial``, no buckets.
    """
    settings = _settings(
        shuffle=shuffle,
        seed=seed,
        codecs=codecs,
        codec_goal=codec_goal,
        workers=workers,
        progress=progress,
        strict=strict,
        overwrite=overwrite,
        metadata=metadata,
        row_group_bytes=row_group_bytes,
        memory_budget=memory_budget,
        temp_dir=temp_dir,
    )
    if isinstance(source, RowSource):
        if source_options:
            raise TypeError(
                f"options {sorted(source_options)} are for opening a path; the given "
                f"{type(source).__name__} is already open"
            )
        return _pack(source, os.fspath(out), settings)
    with open_source(source, **source_options) as opened:
        return _pack(opened, os.fspath(out), settings)


def pack_splits(
    root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    **options: Any,
) -> dict[str, PackReport]:
    """Pack each split folder of ``root`` (``train/``, ``valid/``|``val/``|``validation/``,
    ``test/``) into ``out_dir/<split>.bale``, with one class list for all splits (the union of
    their class folders, sorted). A split without class folders is unlabeled: its file has no
    ``label`` column (its metadata still lists the classes).

    ``options`` are those of ``pack`` and of ``ImageFolderSource`` (``size=``, ...).

    >>> reports = bale.pack_splits("kaggle/", "packed/", size=(128, 128))   # doctest: +SKIP
    >>> sorted(reports)                                                     # doctest: +SKIP
    ['test', 'train', 'valid']
    """
    root = os.fspath(root)
    splits = find_splits(root)
    if not splits:
        raise BaleError(
            "no split folders: expected train/ and at least one of valid/, val/, validation/, "
            "test/ (and no other folders)",
            path=root,
        )
    pack_names = {
        p.name
        for p in inspect.signature(pack).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    pack_options = {k: v for k, v in options.items() if k in pack_names}
    source_options = {k: v for k, v in options.items() if k not in pack_names}
    classes = split_classes(splits)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    targets = {name: os.path.join(out_dir, f"{name}.bale") for name in splits}
    for target in targets.values():  # refuse before packing anything
        _check_target(target, bool(pack_options.get("overwrite", False)))
    reports = {}
    for name, folder in splits.items():
        with ImageFolderSource(folder, classes=classes, **source_options) as source:
            reports[name] = pack(source, targets[name], **pack_options)
    return reports


# -- the pack ---------------------------------------------------------------------------------


def _settings(
    *,
    shuffle: bool,
    seed: int,
    codecs: str | Codec | Mapping[str, CodecChoice] | None,
    codec_goal: CodecGoal,
    workers: int | None,
    progress: bool,
    strict: bool,
    overwrite: bool,
    metadata: Mapping[str, Any] | None,
    row_group_bytes: int,
    memory_budget: int,
    temp_dir: str | os.PathLike[str] | None,
) -> _Settings:
    if memory_budget < 1 or row_group_bytes < 1:
        raise ValueError("memory_budget and row_group_bytes must be positive")
    if codec_goal not in ("balanced", "smallest", "fastest"):
        raise ValueError(f"codec_goal must be balanced, smallest or fastest, got {codec_goal!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if isinstance(codecs, (str, Codec)):
        codecs = {"*": codecs}
    for name, spec in (codecs or {}).items():
        if not (name == "*" and spec == "auto"):
            parse_codec(spec)  # a bad spec fails now, not after reading the source
    return _Settings(
        shuffle=shuffle,
        seed=int(seed),
        codecs=dict(codecs) if codecs is not None else None,
        codec_goal=codec_goal,
        workers=workers,
        progress=progress,
        strict=strict,
        overwrite=overwrite,
        metadata=dict(metadata or {}),
        row_group_bytes=row_group_bytes,
        memory_budget=memory_budget,
        temp_dir=os.fspath(temp_dir) if temp_dir is not None else None,
    )


def _pack(source: RowSource, out: str, settings: _Settings) -> PackReport:
    started = time.perf_counter()
    if os.path.isdir(out):
        raise BaleError("the output is a folder; give a file name such as data.bale", path=out)
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise BaleError(f"the output folder {folder!r} does not exist", path=out)
    _check_target(out, settings.overwrite)
    n = source.num_rows
    if n == 0:
        raise BaleError("the source has no rows", path=source.path)
    if not settings.shuffle:
        method = None
    elif source.random_access:
        method = "permuted reads"
    else:
        method = "buckets"
    output = _Output(source, out, settings, method)
    wanted = settings.workers or os.cpu_count() or 1
    workers = min(wanted, max(1, math.ceil(n / _task_rows(source, settings, 1))))
    try:
        with _BatchReader(source, workers, adaptive=settings.workers is None) as reader:
            rows_per_task = _task_rows(source, settings, reader.in_flight)
            if method is None:
                with _Progress(settings.progress, n, "packing") as bar:
                    for batch in reader.read(_ranges(n, rows_per_task)):
                        output.add(batch, bar)
            elif method == "permuted reads":
                order = np.argsort(shuffle_keys(np.arange(n), settings.seed))
                chunks = (order[a : a + rows_per_task] for a in range(0, n, rows_per_task))
                with _Progress(settings.progress, n, "packing") as bar:
                    for batch in reader.take(chunks):
                        output.add(batch, bar)
            else:
                _bucket_shuffle(source, reader, output, settings, rows_per_task)
        output.close()
    except BaseException:
        output.abort()
        raise
    return output.report(time.perf_counter() - started)


def _check_target(out: str, overwrite: bool) -> None:
    if overwrite:
        return
    if os.path.exists(out):
        raise TargetExistsError("the file exists; pass overwrite=True (--overwrite)", path=out)
    partial = partial_path_for(out)
    if os.path.exists(partial):
        raise TargetExistsError(
            f"{partial!r} is left from an interrupted write; pass overwrite=True (--overwrite) "
            "to replace it",
            path=out,
        )


def _task_rows(source: RowSource, settings: _Settings, in_flight: int) -> int:
    row_bytes = max(1, source.row_nbytes_hint)
    task_bytes = min(_TASK_BYTES, settings.memory_budget // (4 * max(1, in_flight)))
    return max(1, min(_MAX_TASK_ROWS, task_bytes // row_bytes))


def _ranges(n: int, step: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, step):
        yield start, min(n, start + step)


class _Output:
    """The file being written: created on the first rows (their types and codecs fix the
    schema), with skipped rows counted and the metadata completed on close."""

    def __init__(
        self, source: RowSource, out: str, settings: _Settings, method: str | None
    ) -> None:
        self.source = source
        self.out = out
        self.settings = settings
        self.writer: Writer | None = None
        self.types: dict[str, ColumnType] | None = None
        self.skipped: list[SkippedRow] = []
        self.data_bytes = 0
        self.info: dict[str, Any] = {
            "shuffled": settings.shuffle,
            "seed": settings.seed if settings.shuffle else None,
            "shuffle_method": method,
            "source": source.path,
            "source_kind": _kind(source),
            "rows": 0,
            "skipped": 0,
        }

    def note_skipped(self, batch: SourceBatch) -> None:
        for row in batch.skipped:
            if self.settings.strict:
                raise BaleError(
                    f"cannot read {row.where}: {row.reason} (stopped by strict; without it "
                    "unreadable rows are skipped and counted)",
                    path=self.source.path,
                    rows=(row.row, row.row + 1),
                )
            self.skipped.append(row)
            if len(self.skipped) <= _LOGGED_SKIPS:
                log.warning("skipping %s: %s", row.where, row.reason)
            elif len(self.skipped) == _LOGGED_SKIPS + 1:
                log.warning("more unreadable rows skipped; the pack report lists them all")

    def start(self, batch: SourceBatch) -> dict[str, ColumnType]:
        """Create the file from the first non-empty batch; return the columns' types."""
        if self.types is None:
            known = self.source.column_types
            self.types = dict(known) if known is not None else infer_schema_types(batch.columns)
            metadata = {
                **self.source.metadata,
                **self.settings.metadata,
                "bale.pack": self.info,
            }
            self.writer = Writer(
                self.out,
                self.types,
                overwrite=self.settings.overwrite,
                codecs=_codecs(self.settings, batch.columns, list(self.types)),
                metadata=metadata,
                row_group_bytes=self.settings.row_group_bytes,
            )
        return self.types

    def add(self, batch: SourceBatch, bar: _Progress) -> None:
        """Skip-check and write a batch already in output order."""
        self.note_skipped(batch)
        if len(batch):
            self.start(batch)
            self.write(batch.columns, batch.rows)
        bar.update(len(batch) + len(batch.skipped), batch_nbytes(batch.columns))

    def write(self, columns: Mapping[str, Any], rows: np.ndarray) -> None:
        if self.writer is None:
            raise RuntimeError("internal error: rows written before the file was created")
        _write(self.writer, columns, rows, self.source.path)
        self.data_bytes += batch_nbytes(columns)

    def close(self) -> None:
        if self.writer is None:
            first = (
                f" (e.g. {self.skipped[0].where}: {self.skipped[0].reason})" if self.skipped else ""
            )
            raise BaleError(
                f"no rows could be read: {len(self.skipped)} skipped{first}", path=self.source.path
            )
        self.info["rows"] = self.writer.rows_written
        self.info["skipped"] = len(self.skipped)
        self.writer.metadata["bale.pack"] = self.info
        self.writer.close()

    def abort(self) -> None:
        """Leave nothing behind: the writer's ``NAME.partial`` is removed, not kept."""
        if self.writer is None:
            return
        try:
            self.writer.abort()
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial_path_for(self.out))

    def report(self, seconds: float) -> PackReport:
        return PackReport(
            source=self.source.path,
            path=self.out,
            rows=int(self.info["rows"]),
            skipped=tuple(self.skipped),
            file_bytes=os.path.getsize(self.out),
            data_bytes=self.data_bytes,
            seconds=seconds,
            shuffled=self.settings.shuffle,
            seed=self.settings.seed if self.settings.shuffle else None,
        )


def _write(writer: Writer, columns: Mapping[str, Any], rows: np.ndarray, source: str) -> None:
    """``writer.write``, with a schema mismatch reported in the source's terms."""
    try:
        writer.write(columns)
    except SchemaError as exc:
        contiguous = len(rows) > 0 and bool(np.all(np.diff(rows) == 1))
        shown = ", ".join(str(r) for r in rows[:5].tolist()) + (" ..." if len(rows) > 5 else "")
        raise SchemaError(
            f"source rows [{shown}] do not fit the columns set by the first rows read: "
            f"{exc.detail}",
            path=source,
            column=exc.column,
            rows=(int(rows[0]), int(rows[-1]) + 1) if contiguous else None,
        ) from exc


def _codecs(
    settings: _Settings, sample: Mapping[str, Any], names: list[str]
) -> dict[str, CodecChoice] | None:
    if settings.codecs is None:
        return None
    given = dict(settings.codecs)
    default = given.pop("*", None)
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise SchemaError(f"codecs given for unknown columns {unknown}; columns are {names}")
    chosen: dict[str, CodecChoice] = {}
    if default == "auto":
        try:
            from bale.measure.advisor import recommend_codecs
        except ImportError as exc:
            raise BaleError(
                "codecs='auto' needs bale.measure.advisor, which this installation does not have"
            ) from exc
        chosen = dict(recommend_codecs(dict(sample), settings.codec_goal))
    elif default is not None:
        chosen = dict.fromkeys(names, default)
    chosen.update(given)
    return {k: v for k, v in chosen.items() if k in names}


def _kind(source: RowSource) -> str:
    """``ImageFolderSource`` -> ``image_folder``: the source's kind, for the file's metadata."""
    name = type(source).__name__.removesuffix("Source") or type(source).__name__
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


# -- the two-pass bucket shuffle ----------------------------------------------------------------


def _bucket_shuffle(
    source: RowSource,
    reader: _BatchReader,
    output: _Output,
    settings: _Settings,
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
    parent = settings.temp_dir or os.path.dirname(os.path.abspath(output.out))
    folder = tempfile.mkdtemp(prefix=f".{os.path.basename(output.out)}.pack-", dir=parent)
    buckets: list[Writer | None] = []
    shift = np.uint64(64)
    bucket_bytes = 0
    try:
        with _Progress(settings.progress, n, "shuffling 1/2") as bar:
            for batch in reader.read(_ranges(n, rows_per_task)):
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
                        if buckets[b] is None:
                            buckets[b] = Writer(
                                os.path.join(folder, f"bucket-{b:05d}.bale"),
                                {**types, _ROW_COLUMN: Array("int64")},
                                codecs={**dict.fromkeys(types, "lz4"), _ROW_COLUMN: "lz4"},
                                row_group_bytes=bucket_bytes,
                            )
                        columns = take_batch_rows(batch.columns, part)
                        columns[_ROW_COLUMN] = batch.rows[part]
                        _write(buckets[b], columns, batch.rows[part], source.path)  # type: ignore[arg-type]
                bar.update(len(batch) + len(batch.skipped), batch_nbytes(batch.columns))
        for writer in buckets:
            if writer is not None:
                writer.close()
        with _Progress(settings.progress, n - len(output.skipped), "shuffling 2/2") as bar:
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


def _bucket_plan(source: RowSource, first: SourceBatch, settings: _Settings) -> tuple[int, int]:
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


# -- reading in worker processes ----------------------------------------------------------------

_worker_source: RowSource | None = None


def _start_worker(source: RowSource) -> None:
    global _worker_source
    # Ctrl-C reaches the whole process group: the main process handles it and stops workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_source = source


def _worker_read(start: int, stop: int) -> SourceBatch:
    if _worker_source is None:
        raise RuntimeError("internal error: worker has no source")
    return _worker_source.read(start, stop)


def _worker_take(rows: np.ndarray) -> SourceBatch:
    if _worker_source is None:
        raise RuntimeError("internal error: worker has no source")
    return _worker_source.take(rows)


def _can_pickle(source: RowSource) -> bool:
    try:
        pickle.dumps(source)
    except Exception as exc:  # pickle raises TypeError, AttributeError, PicklingError...
        log.info("reading %s in this process: it cannot be pickled (%s)", source.path, exc)
        return False
    return True


class _BatchReader:
    """Source batches in order: read here, or by worker processes with bounded work in flight.

    With ``adaptive`` (workers not chosen by the caller), the first batch is read here and
    workers start only if it took a while and came slower than ``_FAST_SOURCE``: reading
    memory-mapped arrays
    in other processes would only add copying, and skipping workers spares such sources the
    rules of multiprocessing (a main module guarded by ``if __name__ == "__main__"``).
    """

    def __init__(self, source: RowSource, workers: int, *, adaptive: bool) -> None:
        self.source = source
        self._workers = workers if workers > 1 and source.picklable else 1
        self._adaptive = adaptive
        self._pool: ProcessPoolExecutor | None = None
        self._decided = False
        self.in_flight = 2 * self._workers if self._workers > 1 else 1

    def read(self, ranges: Iterable[tuple[int, int]]) -> Iterator[SourceBatch]:
        return self._run(((_worker_read, (a, b)) for a, b in ranges))

    def take(self, chunks: Iterable[np.ndarray]) -> Iterator[SourceBatch]:
        return self._run((_worker_take, (rows,)) for rows in chunks)

    def _run(self, tasks: Iterator[tuple[Any, tuple[Any, ...]]]) -> Iterator[SourceBatch]:
        if not self._decided:
            first = next(tasks, None)
            if first is None:
                return
            started = time.perf_counter()
            batch = self._here(*first)
            seconds = time.perf_counter() - started
            yield batch
            self._decided = True
            slow = seconds > _QUICK_TASK and batch_nbytes(batch.columns) < _FAST_SOURCE * seconds
            if self._workers > 1 and (slow or not self._adaptive):
                self._pool = self._start_pool()
        if self._pool is None:
            for function, args in tasks:
                yield self._here(function, args)
            return
        pool = self._pool
        yield from self._ordered(pool.submit(function, *args) for function, args in tasks)

    def _here(self, function: Any, args: tuple[Any, ...]) -> SourceBatch:
        if function is _worker_take:
            return self.source.take(*args)
        return self.source.read(*args)

    def _start_pool(self) -> ProcessPoolExecutor | None:
        if not _can_pickle(self.source):
            return None
        methods = multiprocessing.get_all_start_methods()
        # Not fork: forking a process with threads (a progress bar's, the caller's) can
        # deadlock the child.
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        return ProcessPoolExecutor(
            self._workers, mp_context=context, initializer=_start_worker, initargs=(self.source,)
        )

    def _ordered(self, futures: Iterator[Future[SourceBatch]]) -> Iterator[SourceBatch]:
        pending: deque[Future[SourceBatch]] = deque()
        try:
            for future in futures:
                pending.append(future)
                if len(pending) >= self.in_flight:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BrokenProcessPool as exc:
            raise BaleError(
                "a worker process died while reading. In a script, call bale.pack under "
                '`if __name__ == "__main__":` (worker processes import the main module), or '
                "pass workers=1; a worker may also have run out of memory (fewer workers or a "
                f"smaller memory budget help). ({exc})",
                path=self.source.path,
            ) from exc

    def __enter__(self) -> _BatchReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if exc_type is None:
            pool.shutdown(wait=True)
            return
        # Stop now, even workers blocked in a read: shutdown() alone would wait for them.
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(5)
            if process.is_alive():
                process.kill()


# -- progress -------------------------------------------------------------------------------------


class _Progress:
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

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
