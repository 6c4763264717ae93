"""Loader throughput (`bale bench`): samples/s a ``bale.Loader`` delivers, warm and cold, the
CPU it spends per batch, and whether a training loop at a given step rate would wait for its
input.

>>> report = measure_loader("train.bale", batch_size=256, threads=4, cold=True)  # doctest: +SKIP
>>> report.warm.samples_per_s, report.warm.cpu_s_per_batch  # doctest: +SKIP
>>> print(report.verdict(step_rate=120, step_cores=1).text)  # doctest: +SKIP
your model takes 120 steps/s of batch 256 = 30,720 samples/s; bale delivers ...

The loader is timed alone, with every core to itself. Training shares those cores: a step
computed on the CPU (or its Python thread, for an accelerator) takes some of them, and decoding
gets the rest. So the verdict also compares the loader's CPU demand (its measured core-seconds
per batch, at the training's step rate) with the cores the step leaves free (``step_cores``);
without ``step_cores`` it says that it assumes a step that leaves the cores free (the verdict:
``bale.measure.verdict``).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from bale._core.dataset import Dataset, reader_of
from bale.codecs import codec_from_config
from bale.errors import BaleError
from bale.format.schema import Bytes
from bale.images import DecodeImages
from bale.io.pagecache import (
    evict_files,
    process_read_bytes,
    read_through,
    total_resident_bytes,
)
from bale.io.remote_url import is_remote, redact_url
from bale.loader.order import ShuffleMode
from bale.loader.pipeline import BatchTransform, Loader
from bale.measure.verdict import Verdict, available_cores, input_bound_verdict

__all__ = [
    "LoaderRun",
    "ThroughputReport",
    "Verdict",
    "available_cores",
    "input_bound_verdict",
    "measure_loader",
    "parse_transform",
]

MB = 1e6
Phase = Literal["warm", "cold"]
_TRANSFORM = re.compile(r"^(none|decode-jpeg)(?:-(\d+))?$")


@dataclass(frozen=True)
class LoaderRun:
    """One timed pass of the Loader. Rates count from the Loader's creation to the last batch,
    so the time to fill the first shuffle window is included."""

    phase: Phase
    samples: int  # rows delivered
    batches: int
    seconds: float
    time_to_first_batch_s: float
    full_epochs: int  # epochs iterated to their end (0: stopped by the time limit)
    raw_bytes: float  # decoded bytes of the rows read, from the file's block sizes
    stored_bytes: float  # bytes of the rows read as stored in the file
    resident_before: int | None = None  # page-cache bytes of the files at the start (mincore):
    # after the eviction of a cold run, near 0 shows that the eviction worked
    device_read_bytes: int | None = None  # bytes this process read from storage (/proc/self/io)
    cpu_seconds: float | None = None  # CPU time of the process (all threads, and children)
    # during the run: what reading, decoding and the transform cost the cores

    @property
    def cpu_s_per_batch(self) -> float | None:
        """Core-seconds of CPU the loader spent per batch."""
        if self.cpu_seconds is None or not self.batches:
            return None
        return self.cpu_seconds / self.batches

    @property
    def cores_busy(self) -> float | None:
        """Cores the loader kept busy on average (CPU seconds over wall seconds)."""
        if self.cpu_seconds is None or not self.seconds > 0:
            return None
        return self.cpu_seconds / self.seconds

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0

    @property
    def batches_per_s(self) -> float:
        return self.batches / self.seconds if self.seconds > 0 else 0.0

    @property
    def raw_mbps(self) -> float:
        return self.raw_bytes / MB / self.seconds if self.seconds > 0 else 0.0

    @property
    def stored_mbps(self) -> float:
        return self.stored_bytes / MB / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            samples_per_s=round(self.samples_per_s, 1),
            batches_per_s=round(self.batches_per_s, 2),
            raw_mbps=round(self.raw_mbps, 1),
            stored_mbps=round(self.stored_mbps, 1),
            cpu_s_per_batch=_rounded(self.cpu_s_per_batch, 6),
            cores_busy=_rounded(self.cores_busy, 2),
        )
        return out


@dataclass(frozen=True)
class ThroughputReport:
    """What ``measure_loader`` measured, with the settings it used."""

    paths: list[str]
    rows: int
    file_bytes: int
    raw_bytes: int
    batch_size: int
    threads: int
    shuffle: ShuffleMode
    transform: str
    max_seconds: float
    epochs: int
    warm: LoaderRun
    cold: LoaderRun | None

    def verdict(self, step_rate: float, step_cores: float | None = None) -> Verdict:
        """Would training at ``step_rate`` steps/s wait for this loader? ``step_cores``: the
        cores the training step itself keeps busy (all of them for a model trained on the CPU,
        about 1 for an accelerator's Python thread); None says the verdict assumes it is 0."""
        return input_bound_verdict(
            step_rate,
            self.batch_size,
            self.warm.samples_per_s,
            self.cold.samples_per_s if self.cold else None,
            loader_cpu_s_per_batch=self.warm.cpu_s_per_batch,
            cores=available_cores(),
            step_cores=step_cores,
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["warm"] = self.warm.to_dict()
        out["cold"] = self.cold.to_dict() if self.cold else None
        return out


def parse_transform(spec: str, image_column: str) -> BatchTransform | None:
    """``none``; ``decode-jpeg`` (full size: all images must share one size); ``decode-jpeg-N``
    (a random N x N crop-and-resize with horizontal flips, as ImageNet training does)."""
    match = _TRANSFORM.match(spec)
    if match is None:
        raise ValueError(
            f"unknown transform {spec!r}; expected none, decode-jpeg or decode-jpeg-SIZE "
            "(e.g. decode-jpeg-224)"
        )
    kind, size = match.groups()
    if kind == "none":
        if size is not None:
            raise ValueError(f"unknown transform {spec!r}: 'none' takes no size")
        return None
    if size is None:
        return DecodeImages(image_column)
    side = int(size)
    if side < 1:
        raise ValueError(f"transform size must be >= 1, got {spec!r}")
    return DecodeImages(image_column, size=(side, side), random_resized_crop=(0.08, 1.0), hflip=0.5)


def measure_loader(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    batch_size: int = 256,
    threads: int = 4,
    shuffle: ShuffleMode = "chunks",
    transform: str = "none",
    image_column: str | None = None,
    columns: Sequence[str] | None = None,
    max_seconds: float = 5.0,
    epochs: int = 1,
    cold: bool = False,
    seed: int = 0,
    storage_options: Mapping[str, Any] | None = None,
) -> ThroughputReport:
    """Iterate a ``bale.Loader`` for at most ``epochs`` epochs or ``max_seconds`` (whichever
    ends first) and time it. With ``cold``, a first pass runs after dropping the files from the
    page cache (``bale.io.pagecache.evict_files``); the warm pass runs after reading the files
    once (when they fit in half the free memory).

    URLs (``s3://``, ``https://``, ...) are read with ``storage_options``, as the Loader reads
    them; they have no page cache (both runs fetch them, ``resident_before`` is None), and the
    report lists them without credentials.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = [os.fspath(p) for p in paths]
    if not files:
        raise ValueError("measure_loader needs at least one file")
    if epochs < 1 or not max_seconds > 0:
        raise ValueError(f"epochs and max_seconds must be positive, got {epochs}, {max_seconds}")
    parse_transform(transform, "image")  # a bad spec fails before any file is read
    options = dict(storage_options) if storage_options else None
    rows, file_bytes, raw_bytes, stored_bytes, bytes_column = _describe_files(
        files, columns, options
    )
    chosen_column = image_column or bytes_column
    if transform != "none" and chosen_column is None:
        raise BaleError(
            f"transform {transform!r} needs a bytes column of encoded images; the file has none",
            path=redact_url(files[0]),
        )
    batch_transform = parse_transform(transform, chosen_column or "image")
    per_row_raw = raw_bytes / rows if rows else 0.0
    per_row_stored = stored_bytes / rows if rows else 0.0

    def run(phase: Phase) -> LoaderRun:
        return _timed_run(
            phase,
            files,
            batch_size=batch_size,
            threads=threads,
            shuffle=shuffle,
            transform=batch_transform,
            columns=columns,
            max_seconds=max_seconds,
            epochs=epochs,
            seed=seed,
            per_row=(per_row_raw, per_row_stored),
            storage_options=options,
        )

    local = [f for f in files if not is_remote(f)]  # objects in a store have no page cache
    cold_run = None
    if cold:
        evict_files(local)
        cold_run = run("cold")
    # The warm run's `resident_before` shows how much was cached when the files did not fit.
    read_through(local)
    warm_run = run("warm")
    return ThroughputReport(
        paths=[redact_url(f) for f in files],
        rows=rows,
        file_bytes=file_bytes,
        raw_bytes=raw_bytes,
        batch_size=batch_size,
        threads=threads,
        shuffle=shuffle,
        transform=transform,
        max_seconds=max_seconds,
        epochs=epochs,
        warm=warm_run,
        cold=cold_run,
    )


def _describe_files(
    files: list[str], columns: Sequence[str] | None, storage_options: dict[str, Any] | None
) -> tuple[int, int, int, int, str | None]:
    """(rows, file bytes, raw and stored bytes of the selected columns, first bytes column)."""
    rows = file_bytes = raw = stored = 0
    bytes_column = None
    for path in files:
        with _open(path, storage_options, cache_bytes=0) as ds:
            reader_of(ds).check_columns(columns)
            names = list(columns) if columns is not None else ds.schema.names
            positions = [ds.schema.index(n) for n in names]
            blocks = ds.index.blocks[:, positions] if ds.num_row_groups else None
            rows += len(ds)
            file_bytes += reader_of(ds).source.size()
            if blocks is not None:
                raw += int(blocks["raw_size"].sum())
                stored += int(blocks["stored_size"].sum())
            if bytes_column is None:
                bytes_column = next(
                    (n for n in names if isinstance(ds.schema[n].type, Bytes)), None
                )
    return rows, file_bytes, raw, stored, bytes_column


def _timed_run(
    phase: Phase,
    files: list[str],
    *,
    batch_size: int,
    threads: int,
    shuffle: ShuffleMode,
    transform: BatchTransform | None,
    columns: Sequence[str] | None,
    max_seconds: float,
    epochs: int,
    seed: int,
    per_row: tuple[float, float],
    storage_options: dict[str, Any] | None,
) -> LoaderRun:
    for path in files:  # codec libraries are imported on first use: never inside the timer
        with _open(path, storage_options) as ds:
            for config in ds.index.codecs:
                codec_from_config(config).warm_up()
    remote = any(is_remote(f) for f in files)
    resident = None if remote else total_resident_bytes(files)
    io_before = process_read_bytes()
    samples = batches = full_epochs = 0
    first_batch = None
    cpu_start = _cpu_seconds()
    start = time.perf_counter()
    loader = Loader(
        files,
        batch_size,
        shuffle=shuffle,
        seed=seed,
        columns=columns,
        batch_transform=transform,
        num_threads=threads,
        rank=0,
        world_size=1,
        storage_options=storage_options,
    )
    try:
        for epoch in range(epochs):
            loader.set_epoch(epoch)
            finished = True
            for batch in loader:
                n = _batch_rows(batch)
                samples += n
                batches += 1
                if first_batch is None:
                    first_batch = time.perf_counter() - start
                if time.perf_counter() - start >= max_seconds:
                    finished = False
                    break
            if not finished:
                break
            full_epochs += 1
        seconds = time.perf_counter() - start
    finally:
        loader.close()
    cpu_seconds = _cpu_seconds() - cpu_start
    io_after = process_read_bytes()
    return LoaderRun(
        phase=phase,
        samples=samples,
        batches=batches,
        seconds=seconds,
        time_to_first_batch_s=first_batch if first_batch is not None else seconds,
        full_epochs=full_epochs,
        raw_bytes=samples * per_row[0],
        stored_bytes=samples * per_row[1],
        resident_before=resident,
        device_read_bytes=(
            io_after - io_before if io_before is not None and io_after is not None else None
        ),
        cpu_seconds=cpu_seconds,
    )


def _cpu_seconds() -> float:
    """CPU time of this process (every thread) and of its finished children: the loader's
    threads decode here, and a transform may run in worker processes."""
    total = time.process_time()
    if sys.platform != "win32":
        import resource  # Unix only

        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        total += children.ru_utime + children.ru_stime
    return total


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _open(path: str, storage_options: dict[str, Any] | None, **kwargs: Any) -> Dataset:
    """A file of the run: the storage options go to URLs only (as the Loader passes them)."""
    return Dataset(path, storage_options=storage_options if is_remote(path) else None, **kwargs)


def _batch_rows(batch: dict[str, Any]) -> int:
    value = next(iter(batch.values()))
    return len(value) if not isinstance(value, np.ndarray) else int(value.shape[0])
