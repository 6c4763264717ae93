"""Joining files of one schema into one file (`bale concat`) by copying their row groups as stored."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bale._core.dataset import Dataset, reader_of
from bale._core.writer import Writer
from bale._progress import Progress
from bale.errors import SchemaError, TargetExistsError
from bale.io.open import open_source
from bale.io.remote_url import is_remote, redact_url
from bale.ops.merge import check_not_an_input, differing_columns, differing_keys
from bale.ops.split import REWRITTEN

#: Metadata keys that describe how one input was made; they move into "bale.concat".
_PER_FILE_KEYS = ("bale.split", "bale.concat")


@dataclass(frozen=True)
class ConcatSource:
    """One input of ``concat``: its rows, how many row groups were copied as stored, and how
    many rows were rewritten (``rows_reencoded``: decoded and compressed again, losslessly, into
    new row groups)."""

    path: str
    rows: int
    groups_copied: int
    rows_reencoded: int


@dataclass(frozen=True)
class ConcatReport:
    """What ``concat`` wrote: the output file and what came from each input."""

    path: str
    rows: int
    file_bytes: int
    sources: tuple[ConcatSource, ...]

    def summary(self) -> str:
        lines = [f"{self.path}: {self.rows} rows, {self.file_bytes / 2**20:.1f} MiB"]
        for s in self.sources:
            lines.append(
                f"  from {s.path}: {s.rows} rows ({s.groups_copied} row "
                f"group{'' if s.groups_copied == 1 else 's'} copied as stored, "
                f"{s.rows_reencoded} rows rewritten)"
            )
        lines.append(REWRITTEN)
        return "\n".join(lines)


def concat(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> ConcatReport:
    """Write the rows of ``inputs``, in that order, to one new file ``out``.

    >>> bale.concat(["part-0.bale", "part-1.bale"], "all.bale")  # doctest: +SKIP

    The inputs must have the same columns (names and types; column order and codecs may differ).
    Row groups are copied as stored, keeping each block's codec; an input framed with a
    different segment size than the first is decoded and rewritten with the first input's
    codecs (losslessly). Different columns raise ``SchemaError`` naming both files and the columns.

    ``out`` gets the first input's schema and metadata, except the per-file keys
    ``"bale.split"`` and ``"bale.concat"``, plus ``"bale.concat": {"sources": [...], "rows":
    [...], "metadata": [...]}``: each input's path, row count and those per-file keys, and
    ``"differing_keys"``, the metadata keys whose values are not the same in every input.

    Inputs and ``out`` may be URLs (``s3://``, ``gs://``, ``az://``; ``https://`` for inputs),
    with ``storage_options`` for their client; ``out`` is then written as a multipart upload,
    published whole when done (the bale repository's docs/REMOTE.md, "Writing").

    A damaged block raises ``CorruptFileError`` naming the input, column and rows; nothing is
    left under ``out`` (nor ``out.partial``, nor an object).

    ``bale.merge`` joins files faster (their bytes copied as stored) but never re-encodes.
    ``progress=True`` draws a bar of the rows on stderr when it is a terminal.
    """
    paths = [os.fspath(p) for p in inputs]
    target = os.fspath(out)
    if isinstance(inputs, (str, bytes)) or not paths:
        raise ValueError("concat needs a list of one or more input files")
    remote = is_remote(target)
    if storage_options and not any(is_remote(p) for p in [*paths, target]):
        raise ValueError(
            "storage_options apply to URLs (s3://, gs://, https://, ...); no path is one"
        )
    check_not_an_input(paths, target)
    if not remote and os.path.exists(target) and not overwrite:
        raise TargetExistsError("the file exists; pass overwrite=True to replace it", path=target)
    with contextlib.ExitStack() as stack:
        datasets = [
            stack.enter_context(
                Dataset(p, cache_bytes=0, storage_options=storage_options if is_remote(p) else None)
            )
            for p in paths
        ]
        first = datasets[0]
        for ds in datasets[1:]:
            _check_same_columns(first, ds)
        metadata = _merged_metadata(datasets)
        writer = Writer(
            target,
            first.schema,
            overwrite=overwrite,
            metadata=metadata,
            row_group_rows=max(first.row_group_sizes, default=None),
            segment_bytes=first.index.segment_bytes,
            storage_options=storage_options if remote else None,
        )
        sources = []
        try:
            with Progress(progress, sum(len(ds) for ds in datasets), "concatenating") as bar:
                for ds in datasets:
                    sources.append(_append(writer, ds, first.index.segment_bytes, bar))
            writer.close()
        except BaseException:
            writer.discard()
            raise
    rows = sum(s.rows for s in sources)
    if remote:
        with contextlib.closing(open_source(target, storage_options)) as written:
            size = written.size()
        return ConcatReport(redact_url(target), rows, size, tuple(sources))
    return ConcatReport(target, rows, os.path.getsize(target), tuple(sources))


def _check_same_columns(first: Dataset, other: Dataset) -> None:
    differing = differing_columns(first.schema, other.schema)
    if not differing:
        return
    shown_a, shown_b = first.schema.describe(), other.schema.describe()
    problems = []
    for name in differing:
        if name not in shown_b:
            problems.append(f"{name!r} ({shown_a[name]}) only in the first")
        elif name not in shown_a:
            problems.append(f"{name!r} ({shown_b[name]}) only in the second")
        else:
            problems.append(
                f"{name!r} is {shown_a[name]} in the first, {shown_b[name]} in the second"
            )
    raise SchemaError(
        f"cannot concatenate {first.path!r} and {other.path!r}, their columns differ: "
        + "; ".join(problems),
        path=other.path,
        column=differing[0],
    )


def _merged_metadata(datasets: Sequence[Dataset]) -> dict[str, Any]:
    metas = [ds.metadata for ds in datasets]
    differing = differing_keys(metas, _PER_FILE_KEYS)
    merged = {k: v for k, v in metas[0].items() if k not in _PER_FILE_KEYS}
    merged["bale.concat"] = {
        "sources": [ds.path for ds in datasets],
        "rows": [len(ds) for ds in datasets],
        "metadata": [{k: m[k] for k in _PER_FILE_KEYS if k in m} for m in metas],
        "differing_keys": differing,
    }
    return merged


def _append(writer: Writer, ds: Dataset, segment_bytes: int, bar: Progress) -> ConcatSource:
    copy = ds.index.segment_bytes == segment_bytes
    copied = reencoded = 0
    for group in range(ds.num_row_groups):
        if copy:
            writer.write_stored_group(reader_of(ds).stored_group(group))
            copied += 1
        else:
            batch = ds.read_row_group(group)
            writer.write(batch)
            reencoded += ds.row_group_sizes[group]
        bar.update(ds.row_group_sizes[group])
    return ConcatSource(ds.path, len(ds), copied, reencoded)
