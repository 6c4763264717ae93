"""Splitting one file into train/valid/test files (`bale split`): which rows go where, and writing them.

Three ways to choose rows (``SplitReport.method``):

- ``"contiguous"``: split i gets the i-th contiguous range of rows. Row groups that lie wholly
  inside a range are copied as stored (no decompression); only the one or two groups a cut
  falls in are decoded and re-encoded. Taken when the file was shuffled when it was packed (its
  metadata says so), when ``assume_shuffled=True``, or when asked with ``shuffle=False``.
- ``"random"``: rows are assigned by a seeded permutation, each split keeping its rows in the
  input's order; every row is re-encoded. The default for files not known to be shuffled.
- ``"stratified"``: ``stratify=COLUMN``; each class's rows are shuffled and divided by the ratios.

Whichever way, each row group of the input is read once, and memory stays bounded by about one
row group plus one row group buffered per output.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from bale._core.columns import take_batch_rows
from bale._core.dataset import Dataset, reader_of
from bale._core.writer import Writer
from bale.errors import SchemaError, TargetExistsError
from bale.format.schema import Array
from bale.io.sink import partial_path_for

SplitMethod = Literal["contiguous", "random", "stratified"]


@dataclass(frozen=True)
class SplitOutput:
    """One file written by ``split``: its rows, and how many were copied vs re-encoded."""

    name: str
    path: str
    rows: int
    groups_copied: int
    rows_copied: int
    rows_reencoded: int
    file_bytes: int


@dataclass(frozen=True)
class SplitReport:
    """What ``split`` did: how rows were chosen (``method``), why, and each output file."""

    source: str
    source_rows: int
    method: SplitMethod
    reason: str
    outputs: tuple[SplitOutput, ...]

    def summary(self) -> str:
        lines = [f"{self.source}: {self.source_rows} rows, split {self.method}: {self.reason}"]
        width = max((len(o.name) for o in self.outputs), default=0)
        for o in self.outputs:
            lines.append(
                f"  {o.name:<{width}}  {o.path}: {o.rows} rows ({o.rows_copied} in "
                f"{o.groups_copied} copied row group(s), {o.rows_reencoded} re-encoded), "
                f"{o.file_bytes / 2**20:.1f} MiB"
            )
        return "\n".join(lines)


@dataclass
class _Tally:
    groups_copied: int = 0
    rows_copied: int = 0
    rows_reencoded: int = 0


def split(
    path: str | os.PathLike[str],
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    *,
    names: Sequence[str] = ("train", "valid", "test"),
    out_dir: str | os.PathLike[str] | None = None,
    pattern: str = "{name}.bale",
    stratify: str | None = None,
    seed: int = 0,
    shuffle: bool | None = None,
    assume_shuffled: bool = False,
    allow_empty: bool = False,
    overwrite: bool = False,
) -> SplitReport:
    """Split the rows of ``path`` into one new file per name, in proportion to ``ratios``.

    >>> report = bale.split("all.bale", (0.8, 0.1, 0.1))  # doctest: +SKIP
    >>> report.outputs[0].path, report.outputs[0].rows      # ('train.bale', 8000)
    >>> bale.split("all.bale", (0.9, 0.1), names=("train", "valid"),
    ...            stratify="label", seed=1)               # doctest: +SKIP

    Every input row lands in exactly one output. Row counts are ``ratios * rows`` rounded by
    largest remainder (they add up exactly). Outputs go to ``out_dir`` (default: the input's
    directory) named ``pattern`` (``{name}`` and ``{stem}``, the input's name without
    ``.bale``). Each keeps the input's schema, codecs and metadata, plus a ``"bale.split"``
    entry recording how it was made.

    ``shuffle``: ``None`` (default) cuts contiguous ranges, copying whole row groups, when the
    file records it was shuffled when packed (or ``assume_shuffled=True``), and otherwise assigns
    rows by a permutation seeded with ``seed``. ``False`` always cuts contiguous ranges (also for
    data that must stay in order, like time series); ``True`` always permutes.

    A split that would get no rows raises ``ValueError`` unless ``allow_empty=True``. If anything
    fails, no output of this call is left behind: unfinished files are removed, and outputs
    already completed by this call are deleted too, so a set of splits is never mixed with an
    older one (with ``overwrite=True``, files they replaced are gone).
    """
    source = os.fspath(path)
    fractions_ = _check_ratios(ratios, names)
    if shuffle is not None and assume_shuffled:
        raise ValueError("give shuffle= or assume_shuffled=, not both")
    if stratify is not None and shuffle is False:
        raise ValueError("stratify= chooses rows per class at random: it cannot use shuffle=False")
    with Dataset(source, cache_bytes=0) as ds:
        n = len(ds)
        targets = _targets(source, names, out_dir, pattern, overwrite)
        method, reason = _choose_method(ds, stratify, shuffle, assume_shuffled)
        if stratify is not None:
            counts, assignment = _stratified_assignment(ds, stratify, fractions_, seed)
        else:
            counts = largest_remainder(n, fractions_)
            assignment = (
                _contiguous_assignment(counts)
                if method == "contiguous"
                else _random_assignment(counts, seed)
            )
        empty = [name for name, count in zip(names, counts, strict=True) if count == 0]
        if empty and not allow_empty:
            raise ValueError(
                f"split(s) {empty} of {source!r} would get no rows ({n} rows, ratios "
                f"{[float(r) for r in fractions_]}); pass allow_empty=True to write empty files"
            )
        metadata = [
            {
                **ds.metadata,
                "bale.split": {
                    "source": source,
                    "source_rows": n,
                    "ratios": [float(r) for r in ratios],
                    "names": list(names),
                    "this": name,
                    "seed": None if method == "contiguous" else seed,
                    "stratify": stratify,
                    "rows": count,
                    "method": method,
                },
            }
            for name, count in zip(names, counts, strict=True)
        ]
        if method == "contiguous":
            starts = np.concatenate([[0], np.cumsum(counts)]).tolist()
            for i, entry in enumerate(metadata):
                entry["bale.split"]["source_range"] = [starts[i], starts[i + 1]]
        tallies = _write_outputs(
            ds, targets, metadata, assignment, method == "contiguous", overwrite
        )
    outputs = tuple(
        SplitOutput(
            name,
            target,
            count,
            tally.groups_copied,
            tally.rows_copied,
            tally.rows_reencoded,
            os.path.getsize(target),
        )
        for name, target, count, tally in zip(names, targets, counts, tallies, strict=True)
    )
    return SplitReport(source, n, method, reason, outputs)


# -- choosing rows ------------------------------------------------------------------------------


def largest_remainder(total: int, ratios: Sequence[Fraction | float]) -> list[int]:
    """Integers proportional to ``ratios`` that add up to ``total`` exactly: each is the floor of
    its exact share, and the rows left over go to the largest fractional parts (ties: first)."""
    weights = [Fraction(r) for r in ratios]
    whole = sum(weights)
    exact = [total * w / whole for w in weights]
    counts = [math.floor(e) for e in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _check_ratios(ratios: Sequence[float], names: Sequence[str]) -> list[Fraction]:
    if isinstance(names, str) or isinstance(ratios, (str, bytes)):
        raise TypeError("ratios and names must be sequences, e.g. (0.8, 0.2) and ('a', 'b')")
    values = list(ratios)
    if not values:
        raise ValueError("ratios must not be empty")
    if len(values) != len(names):
        raise ValueError(f"{len(values)} ratios {values} for {len(names)} names {list(names)}")
    for r in values:
        if isinstance(r, bool) or not isinstance(r, (int, float, np.integer, np.floating)):
            raise TypeError(f"ratios must be numbers, got {r!r}")
        if not math.isfinite(r) or r <= 0:
            raise ValueError(f"ratios must be positive, got {values}")
    if abs(math.fsum(float(r) for r in values) - 1) > 1e-6:
        raise ValueError(f"ratios must add up to 1, got {values} (sum {math.fsum(values)})")
    bad = [n for n in names if not isinstance(n, str) or not n or os.sep in n or n in (".", "..")]
    if bad:
        raise ValueError(f"split names must be non-empty file-name parts, got {bad}")
    if len(set(names)) != len(names):
        raise ValueError(f"split names must be unique, got {list(names)}")
    return [Fraction(float(r)) for r in values]


def _targets(
    source: str,
    names: Sequence[str],
    out_dir: str | os.PathLike[str] | None,
    pattern: str,
    overwrite: bool,
) -> list[str]:
    directory = os.fspath(out_dir) if out_dir is not None else os.path.dirname(source)
    stem = os.path.basename(source)
    stem = stem[: -len(".bale")] if stem.endswith(".bale") else stem
    try:
        targets = [os.path.join(directory, pattern.format(name=n, stem=stem)) for n in names]
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"pattern {pattern!r} may use only {{name}} and {{stem}}: {exc!r}"
        ) from None
    real = [os.path.realpath(t) for t in targets]
    if len(set(real)) != len(real):
        raise ValueError(f"the outputs {targets} are not all different: put {{name}} in pattern")
    if os.path.realpath(source) in real:
        raise ValueError(f"an output would replace the input {source!r}: choose out_dir or names")
    if not overwrite:
        for target in targets:
            if os.path.exists(target):
                raise TargetExistsError(
                    "the file exists; pass overwrite=True to replace it", path=target
                )
    return targets


def shuffled_when_packed(metadata: Mapping[str, Any]) -> bool:
    """Whether ``bale pack`` recorded that it shuffled the rows (``"bale.pack": {"shuffled":
    true}``). A concatenation of shuffled files is not shuffled as a whole, so a file made by
    ``bale concat`` never counts as shuffled."""
    pack = metadata.get("bale.pack")
    return (
        isinstance(pack, Mapping) and pack.get("shuffled") is True and "bale.concat" not in metadata
    )


def _choose_method(
    ds: Dataset, stratify: str | None, shuffle: bool | None, assume_shuffled: bool
) -> tuple[SplitMethod, str]:
    if stratify is not None:
        return "stratified", f"each class of {stratify!r} divided by the ratios; rows re-encoded"
    if shuffle is True:
        return "random", "shuffle=True: rows assigned by a seeded permutation and re-encoded"
    if shuffle is False:
        return "contiguous", "shuffle=False: contiguous ranges, whole row groups copied"
    if assume_shuffled:
        return "contiguous", "assume_shuffled=True: contiguous ranges, whole row groups copied"
    if shuffled_when_packed(ds.metadata):
        return "contiguous", "shuffled when packed: contiguous ranges, whole row groups copied"
    return "random", (
        "not known to be shuffled: rows assigned by a seeded permutation and re-encoded "
        "(shuffle=False or assume_shuffled=True copies row groups instead)"
    )


def _assignment_dtype(splits: int) -> np.dtype[Any]:
    return np.dtype(np.min_scalar_type(max(splits - 1, 0)))


def _contiguous_assignment(counts: Sequence[int]) -> np.ndarray:
    return np.repeat(np.arange(len(counts), dtype=_assignment_dtype(len(counts))), counts)


def _random_assignment(counts: Sequence[int], seed: int) -> np.ndarray:
    permutation = np.random.default_rng(seed).permutation(sum(counts))
    assignment = np.empty(sum(counts), _assignment_dtype(len(counts)))
    start = 0
    for i, count in enumerate(counts):
        assignment[permutation[start : start + count]] = i
        start += count
    return assignment


def _stratified_assignment(
    ds: Dataset, column: str, ratios: Sequence[Fraction], seed: int
) -> tuple[list[int], np.ndarray]:
    """Each class's rows, shuffled with one generator seeded by ``seed`` (classes in sorted
    order), divided by ``class_counts``. Returns the total per split and each row's split."""
    labels = _class_codes(ds, column)
    class_sizes = np.bincount(labels).tolist() if labels.size else []
    table = class_counts(class_sizes, ratios)
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(labels), _assignment_dtype(len(ratios)))
    rows_of_class = np.argsort(labels, kind="stable")
    bounds = np.cumsum([0, *class_sizes])
    for c, counts in enumerate(table):
        rows = rng.permutation(rows_of_class[bounds[c] : bounds[c + 1]])
        start = 0
        for i, count in enumerate(counts):
            assignment[rows[start : start + count]] = i
            start += count
    totals = [sum(row[i] for row in table) for i in range(len(ratios))]
    return totals, assignment


def _class_codes(ds: Dataset, column: str) -> np.ndarray:
    if column not in ds.schema:
        raise SchemaError(
            f"cannot stratify by {column!r}: no such column; columns are {ds.schema.names}",
            path=ds.path,
        )
    column_type = ds.schema[column].type
    if isinstance(column_type, Array) and (
        column_type.shape != () or column_type.numpy_dtype.kind not in "biu"
    ):
        raise SchemaError(
            f"cannot stratify by a {column_type.dtype}{list(column_type.shape)} column: "
            "expected one integer, bool, string or bytes value per row",
            path=ds.path,
            column=column,
        )
    values = ds.column(column)[:]
    if not isinstance(values, np.ndarray):
        values = np.array(values, dtype=object)
    _, codes = np.unique(values, return_inverse=True)
    return np.asarray(codes, dtype=np.int64).reshape(-1)


def class_counts(class_sizes: Sequence[int], ratios: Sequence[Fraction | float]) -> list[list[int]]:
    """Rows of each class per split: ``table[c][i]``. Each row of the table adds up to its class
    size, and each entry is within one row of its exact share ``size * ratio``. The rows left
    over after rounding down go, class by class, to the splits whose totals are furthest below
    their overall largest-remainder count, so split sizes match an unstratified split where the
    rounding allows. Then a class with at least as many rows as there are splits gets at least
    one row in every split, taken from the split most above its share, even where that share is
    below one row (the only case where an entry is more than one row from its share)."""
    weights = [Fraction(r) for r in ratios]
    whole = sum(weights)
    k = len(weights)
    exact = [[size * w / whole for w in weights] for size in class_sizes]
    table = [[math.floor(e) for e in row] for row in exact]
    quota = largest_remainder(sum(class_sizes), weights)
    for i in range(k):
        quota[i] -= sum(row[i] for row in table)
    leftover = [size - sum(row) for size, row in zip(class_sizes, table, strict=True)]
    for c in sorted(range(len(class_sizes)), key=lambda c: (-leftover[c], c)):
        ranked = sorted(range(k), key=lambda i: (-quota[i], -(exact[c][i] - table[c][i]), i))
        for i in ranked[: leftover[c]]:
            table[c][i] += 1
            quota[i] -= 1
    for c, size in enumerate(class_sizes):
        if size < k:
            continue
        for j in range(k):
            if table[c][j] == 0:
                donor = max(
                    (i for i in range(k) if table[c][i] >= 2),
                    key=lambda i: (table[c][i] - exact[c][i], -i),
                )
                table[c][donor] -= 1
                table[c][j] += 1
    return table


# -- writing ------------------------------------------------------------------------------------


def _write_outputs(
    ds: Dataset,
    targets: Sequence[str],
    metadata: Sequence[Mapping[str, Any]],
    assignment: np.ndarray,
    copy_whole_groups: bool,
    overwrite: bool,
) -> list[_Tally]:
    """One pass over the input's row groups, each read once. A group whose rows all go to one
    output is copied as stored when ``copy_whole_groups``; otherwise its rows are decoded and
    written to the outputs they belong to, in input order."""
    sizes = ds.row_group_sizes
    rows_per_group = max(sizes, default=1)
    writers: list[Writer] = []
    tallies = [_Tally() for _ in targets]
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
