"""`bale.pack`: stream a RowSource into one shuffled .bale file; the API and the steps of a pack.

>>> report = bale.pack("photos/", "photos.bale", size=(224, 224))   # doctest: +SKIP
>>> print(report.summary())                                        # doctest: +SKIP

The shuffled order is the rows sorted by ``shuffle_keys(row, seed)``: a seeded bijection of the
row number onto 64-bit keys, so the order is an exact uniform-looking permutation that the same
seed reproduces. Sources with random access are read in that order directly (``take``); the
others are shuffled in two passes through temporary bucket files (see ``_buckets``).

One owner per module: ``_settings`` (the options), ``_workers`` (reading batches, in worker
processes or not), ``_cluster`` / ``_dask`` / ``_ray`` (reading batches on a cluster), ``_output`` (the file written), ``_buckets`` (the two-pass shuffle),
``_progress`` (the bar).
"""

from __future__ import annotations

import inspect
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bale._core.columns import human_bytes
from bale._core.defaults import DEFAULT_ROW_GROUP_BYTES
from bale._core.shuffle import shuffle_keys
from bale._progress import Progress
from bale.codecs import Codec
from bale.errors import BaleError, TargetExistsError
from bale.importers import open_source, open_sources
from bale.importers.base import RowSource, SkippedRow
from bale.importers.image_folder import ImageFolderSource, find_splits, split_classes
from bale.io.remote_url import is_remote, redact_url
from bale.io.sink import partial_path_for
from bale.ops.pack._buckets import bucket_shuffle
from bale.ops.pack._output import LOGGED_SKIPS, PackOutput
from bale.ops.pack._settings import (
    DEFAULT_MEMORY_BUDGET,
    CodecChoice,
    CodecGoal,
    PackSettings,
    Scheduler,
    engine,
    pack_settings,
)
from bale.ops.pack._workers import (
    BatchReader,
    SourceReader,
    refuse_main_module_import,
    row_ranges,
    task_rows,
)

__all__ = ["DEFAULT_MEMORY_BUDGET", "PackReport", "pack", "pack_splits", "shuffle_keys"]


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
            f"  {human_bytes(self.file_bytes)} on disk, "
            f"{human_bytes(self.data_bytes)} of row data, "
            f"{self.seconds:.1f} s, {self.rows_per_second:,.0f} rows/s, "
            f"{self.mb_per_second:.1f} MB/s",
        ]
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} unreadable row(s):")
            lines.extend(f"    {s.where}: {s.reason}" for s in self.skipped[:LOGGED_SKIPS])
            if len(self.skipped) > LOGGED_SKIPS:
                lines.append(f"    ... and {len(self.skipped) - LOGGED_SKIPS} more")
        return "\n".join(lines)


PackInput = RowSource | str | os.PathLike[str]


def pack(
    source: PackInput | Sequence[PackInput] | Mapping[str, PackInput],
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
    random_access: bool = False,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    temp_dir: str | os.PathLike[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    scheduler: Scheduler | None = None,
    **source_options: Any,
) -> PackReport:
    """Write every row of ``source`` (a RowSource, or a path given to ``open_source`` with
    ``source_options``) to the new file ``out``, shuffled with ``seed`` unless ``shuffle=False``.
    A list of inputs, or ``{column: input}``, joins aligned inputs as the columns of one file
    (``open_sources``: equal lengths, shuffled together). A source with no rows gives a file
    with its columns and no rows.

    >>> bale.pack("photos/", "photos.bale")                      # doctest: +SKIP
    >>> bale.pack("train.h5", "train.bale", datasets=["x", "y"])  # doctest: +SKIP
    >>> bale.pack("data.h5:train", "train.bale")                  # one group  # doctest: +SKIP
    >>> bale.pack({"x": "X.bcolz", "y": "y.bcolz"}, "xy.bale")    # doctest: +SKIP

    - ``codecs``: None (bale's defaults), ``"auto"`` (measured by ``bale.measure.advisor`` on the first
      rows, for ``codec_goal``), one spec for every column (``"zstd:3"``), or ``{column: spec}``
      where the key ``"*"`` stands for every other column (its value may be ``"auto"``).
    - ``workers``: processes reading and decoding rows, for picklable sources (others are read
      in this process). Default: one per CPU, started only when the first rows read slower
      than 256 MB/s (image decoding, decompression), not for e.g. memory-mapped .npy files.
      Scripts that start workers need the ``if __name__ == "__main__":`` guard.
    - ``strict``: stop at the first unreadable row instead of skipping it.
    - ``random_access``: write frames of about 16 KiB (whole rows) with a frame index (``Writer(random_access=True)``)
      so random rows decode only their frame, at some cost in sequential decoding.
    - ``memory_budget``: bytes of rows held at once, and the size of a shuffle bucket.
    - ``temp_dir``: where the shuffle buckets of sources without random access go (default: the
      output's folder, or the system's temporary folder when ``out`` is a URL); they need about
      as much free space as the data.
    - ``storage_options``: for an ``out`` URL (``s3://``, ``gs://``, ``az://``), its client's
      options (credentials, endpoint, region; the bale repository's docs/REMOTE.md). The file is
      streamed to the store as a multipart upload, published only when the pack succeeds.
    - ``scheduler``: read, check and resize the source on a cluster instead of local processes:
      a Dask scheduler address (``"tcp://host:8786"``) or a ``dask.distributed.Client``; or
      ``"ray"`` (the Ray this process is connected to, else a running cluster, else a local
      one) or ``"ray://head:10001"``. The file is the one a local pack writes (same rows, same
      order, same skips); it is written here, and workers must see the source at the same path
      (a shared file system) or URL, which is checked on every worker first.

      >>> bale.pack("/shared/photos", "photos.bale", size=(224, 224),
      ...           scheduler="tcp://head:8786")                   # doctest: +SKIP

    On any error or interrupt nothing is left behind: no ``out``, no ``out.partial``, no buckets
    (an upload is aborted).
    """
    refuse_main_module_import()
    settings = pack_settings(
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
        random_access=random_access,
        storage_options=storage_options,
        scheduler=scheduler,
    )
    if isinstance(source, RowSource):
        if source_options:
            raise TypeError(
                f"options {sorted(source_options)} are for opening a path; the given "
                f"{type(source).__name__} is already open"
            )
        return _pack(source, os.fspath(out), settings)
    if isinstance(source, (str, os.PathLike)):
        opened = open_source(source, **source_options)
    else:
        opened = open_sources(source, **source_options)
    with opened:
        return _pack(opened, os.fspath(out), settings)


def pack_splits(
    root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    **options: Any,
) -> dict[str, PackReport]:
    """Pack each split folder of ``root`` (``train/``, ``valid/``|``val/``|``validation/``,
    ``test/``, ``test_stg1/``...: two or more, all named like splits) into ``out_dir/<split>.bale``, with one class list for all splits (the union of
    their class folders, sorted). A split without class folders is unlabeled: its file has no
    ``label`` column (its metadata still lists the classes).

    ``options`` are those of ``pack`` and of ``ImageFolderSource`` (``size=``, ...). ``out_dir``
    may be a URL prefix (``s3://bucket/packed``), with ``storage_options``.

    >>> reports = bale.pack_splits("kaggle/", "packed/", size=(128, 128))   # doctest: +SKIP
    >>> sorted(reports)                                                     # doctest: +SKIP
    ['test', 'train', 'valid']
    """
    refuse_main_module_import()
    root = os.fspath(root)
    splits = find_splits(root)
    if not splits:
        raise BaleError(
            "no split folders: expected two or more folders, all named like splits (train/, "
            "valid/, val/, validation/, dev/, test/, test_*/, ...) and no other folders",
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
    if is_remote(out_dir):
        targets = {name: f"{out_dir.rstrip('/')}/{name}.bale" for name in splits}
    else:
        os.makedirs(out_dir, exist_ok=True)
        targets = {name: os.path.join(out_dir, f"{name}.bale") for name in splits}
    for target in targets.values():  # refuse before packing anything
        _check_target(
            target,
            bool(pack_options.get("overwrite", False)),
            pack_options.get("storage_options"),
        )
    reports = {}
    for name, folder in splits.items():
        with ImageFolderSource(folder, classes=classes, **source_options) as source:
            reports[name] = pack(source, targets[name], **pack_options)
    return reports


# -- the pack ---------------------------------------------------------------------------------


def _pack(source: RowSource, out: str, settings: PackSettings) -> PackReport:
    started = time.perf_counter()
    if not is_remote(out):
        if os.path.isdir(out):
            raise BaleError("the output is a folder; give a file name such as data.bale", path=out)
        folder = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(folder):
            raise BaleError(f"the output folder {folder!r} does not exist", path=out)
    _check_target(out, settings.overwrite, settings.storage_options)
    n = source.num_rows
    if not settings.shuffle:
        method = None
    elif source.random_access:
        method = "permuted reads"
    else:
        method = "buckets"
    output = PackOutput(source, out, settings, method)
    try:
        if n == 0:  # an empty source: a file with its columns and no rows
            output.start_empty()
        else:
            _read_into(source, output, settings, method)
        output.close()
    except BaseException:
        output.abort()
        raise
    seconds = time.perf_counter() - started
    return PackReport(
        source=source.path,
        path=redact_url(out) if is_remote(out) else out,
        rows=int(output.info["rows"]),
        skipped=tuple(output.skipped),
        file_bytes=output.file_bytes,
        data_bytes=output.data_bytes,
        seconds=seconds,
        shuffled=settings.shuffle,
        seed=settings.seed if settings.shuffle else None,
    )


def _read_into(
    source: RowSource, output: PackOutput, settings: PackSettings, method: str | None
) -> None:
    """Every row of ``source`` into ``output``, in the order ``method`` makes."""
    n = source.num_rows
    with _reader(source, settings) as reader:
        rows_per_task = task_rows(source, settings.memory_budget, reader.in_flight)
        if method is None:
            with Progress(settings.progress, n, "packing") as bar:
                for batch in reader.read(row_ranges(n, rows_per_task)):
                    output.add(batch, bar)
        elif method == "permuted reads":
            order = np.argsort(shuffle_keys(np.arange(n), settings.seed))
            chunks = (order[a : a + rows_per_task] for a in range(0, n, rows_per_task))
            with Progress(settings.progress, n, "packing") as bar:
                for batch in reader.take(chunks):
                    output.add(batch, bar)
        else:
            bucket_shuffle(source, reader, output, settings, rows_per_task)


def _reader(source: RowSource, settings: PackSettings) -> SourceReader:
    """What reads the source: the cluster named by ``settings.scheduler``, else this machine's
    worker processes (as many as help: one task's rows each at least)."""
    scheduler = settings.scheduler
    if scheduler is None:
        wanted = settings.workers or os.cpu_count() or 1
        tasks = math.ceil(source.num_rows / task_rows(source, settings.memory_budget, 1))
        return BatchReader(source, min(wanted, max(1, tasks)), adaptive=settings.workers is None)
    if engine(scheduler) == "ray":
        from bale.ops.pack._ray import RayReader  # imports Ray only when asked for

        return RayReader(source, None if scheduler == "ray" else str(scheduler))
    from bale.ops.pack._dask import DaskReader  # imports dask.distributed only when asked for

    return DaskReader(source, scheduler)


def _check_target(
    out: str, overwrite: bool, storage_options: Mapping[str, Any] | None = None
) -> None:
    if overwrite:
        return
    if is_remote(out):
        # Imported for URLs only: `import bale` loads no remote client module.
        from bale.io.remote_sink import object_exists

        if object_exists(out, storage_options):
            raise TargetExistsError(
                "an object exists at this URL; pass overwrite=True (--overwrite)",
                path=redact_url(out),
            )
        return
    if os.path.exists(out):
        raise TargetExistsError("the file exists; pass overwrite=True (--overwrite)", path=out)
    partial = partial_path_for(out)
    # An empty partial (a writer killed before its first batch) holds nothing: the Writer takes
    # it over, as it does outside pack. One with bytes may hold rows worth recovering.
    if os.path.exists(partial) and os.path.getsize(partial) > 0:
        raise TargetExistsError(
            f"{partial!r} is left from an interrupted write: `bale repair {out}` recovers its "
            "rows, or pass overwrite=True (--overwrite) to replace it",
            path=out,
        )
