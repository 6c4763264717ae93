"""`bale.split`: one file into train/valid/test files; the API, the checks and the choice of method.

Three ways to choose rows (``SplitReport.method``):

- ``"contiguous"``: split i gets the i-th contiguous range of rows. Row groups that lie wholly
  inside a range are copied as stored (no decompression); only the one or two groups a cut
  falls in are decoded and rewritten. Taken when the file was shuffled when it was packed (its
  metadata says so), when ``assume_shuffled=True``, or when asked with ``shuffle=False``.
- ``"random"``: rows are assigned by a seeded permutation, each split keeping its rows in the
  input's order; every row is rewritten. The default for files not known to be shuffled.
- ``"stratified"``: ``stratify=COLUMN``; each class's rows are shuffled and divided by the ratios.

"Rewritten" rows are decoded and compressed again, with the same codecs, into new row groups:
lossless, values and JPEG/PNG bytes unchanged (``REWRITTEN``, printed under the summary).

Whichever way, each row group of the input is read once, and memory stays bounded by about one
row group plus one row group buffered per output.

The input and the outputs may be URLs (``storage_options`` apply to both): outputs are written as
objects by multipart upload (``bale.Writer``), see the bale repository's docs/REMOTE.md. Which rows go to which output is
``_assignment``'s; writing the outputs is ``_outputs``'s; URLs as output names: ``bale.io.locations``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from bale._core.dataset import Dataset
from bale.errors import TargetExistsError
from bale.io import locations
from bale.io.remote_url import is_remote, redact_url
from bale.ops.split._assignment import (
    class_counts,
    contiguous_assignment,
    largest_remainder,
    random_assignment,
    stratified_assignment,
)
from bale.ops.split._outputs import write_outputs

__all__ = [
    "REWRITTEN",
    "SplitMethod",
    "SplitOutput",
    "SplitReport",
    "class_counts",
    "largest_remainder",
    "shuffled_when_packed",
    "split",
]

SplitMethod = Literal["contiguous", "random", "stratified"]


@dataclass(frozen=True)
class SplitOutput:
    """One file written by ``split``: its rows, how many were copied as stored (in
    ``groups_copied`` row groups) and how many were rewritten (``rows_reencoded``: decoded and
    compressed again, losslessly, into new row groups)."""

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
                f"  {o.name:<{width}}  {o.path}: {o.rows} rows ({o.rows_copied} copied as stored "
                f"in {o.groups_copied} row group{_s(o.groups_copied)}, {o.rows_reencoded} "
                f"rewritten), {o.file_bytes / 2**20:.1f} MiB"
            )
        lines.append(REWRITTEN)
        return "\n".join(lines)


#: What "rewritten" and "copied" mean in the reports of split and concat: "re-encoded" read
#: like a lossy recompression of the images
REWRITTEN = (
    "rewritten: rows decoded and compressed again into new row groups with the same codecs, "
    "losslessly (values and JPEG/PNG bytes unchanged); copied: blocks kept byte for byte"
)


def _s(count: int) -> str:
    return "" if count == 1 else "s"


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
    storage_options: Mapping[str, Any] | None = None,
    progress: bool = False,
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

    ``path`` and ``out_dir`` may be URLs, read and written with ``storage_options`` (see
    ``bale.open`` and ``bale.Writer``); outputs go to ``s3://``, ``gs://`` or ``az://`` objects
    (``out_dir="s3://bucket/splits"``, or beside an input object), each uploaded whole or not at
    all. The report, errors and the outputs' metadata show URLs without credentials.

    >>> bale.split("s3://bucket/all.bale", out_dir="s3://bucket/splits",
    ...            storage_options={"profile": "ml"})  # doctest: +SKIP

    ``progress=True`` draws a bar of the input's rows on stderr when it is a terminal.
    """
    source = os.fspath(path)
    shown = redact_url(source) if is_remote(source) else source
    fractions_ = _check_ratios(ratios, names)
    if shuffle is not None and assume_shuffled:
        raise ValueError("give shuffle= or assume_shuffled=, not both")
    if stratify is not None and shuffle is False:
        raise ValueError("stratify= chooses rows per class at random: it cannot use shuffle=False")
    targets = _targets(source, names, out_dir, pattern)
    if storage_options and not any(is_remote(p) for p in (source, *targets)):
        raise ValueError(
            "storage_options apply to URLs (s3://, gs://, az://, https://, ...); the input and "
            f"the outputs of this split are local paths ({shown!r})"
        )
    remote_input = is_remote(source)
    with Dataset(
        source, cache_bytes=0, storage_options=storage_options if remote_input else None
    ) as ds:
        n = len(ds)
        if not overwrite:
            for target in targets:
                if locations.exists(target, storage_options):
                    what = (
                        "an object exists at this URL" if is_remote(target) else "the file exists"
                    )
                    raise TargetExistsError(
                        f"{what}; pass overwrite=True to replace it", path=_display(target)
                    )
        method, reason = _choose_method(ds, stratify, shuffle, assume_shuffled)
        if stratify is not None:
            counts, assignment = stratified_assignment(ds, stratify, fractions_, seed)
        else:
            counts = largest_remainder(n, fractions_)
            assignment = (
                contiguous_assignment(counts)
                if method == "contiguous"
                else random_assignment(counts, seed)
            )
        empty = [name for name, count in zip(names, counts, strict=True) if count == 0]
        if empty and not allow_empty:
            raise ValueError(
                f"split(s) {empty} of {shown!r} would get no rows ({n} rows, ratios "
                f"{[float(r) for r in fractions_]}); pass allow_empty=True to write empty files"
            )
        metadata = [
            {
                **ds.metadata,
                "bale.split": {
                    "source": shown,  # a URL without credentials
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
        tallies = write_outputs(
            ds,
            targets,
            metadata,
            assignment,
            method == "contiguous",
            overwrite,
            storage_options,
            progress=progress,
        )
    outputs = tuple(
        SplitOutput(
            name,
            _display(target),
            count,
            tally.groups_copied,
            tally.rows_copied,
            tally.rows_reencoded,
            tally.file_bytes,
        )
        for name, target, count, tally in zip(names, targets, counts, tallies, strict=True)
    )
    return SplitReport(shown, n, method, reason, outputs)


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
    source: str, names: Sequence[str], out_dir: str | os.PathLike[str] | None, pattern: str
) -> list[str]:
    """The output names (paths, or URLs as given: they may carry credentials, never shown),
    all different, none the input; URLs only where bale writes objects."""
    directory = os.fspath(out_dir) if out_dir is not None else locations.parent_of(source)
    stem = os.path.basename(source.split("?", 1)[0] if is_remote(source) else source)
    stem = stem[: -len(".bale")] if stem.endswith(".bale") else stem
    try:
        names_ = [pattern.format(name=n, stem=stem) for n in names]
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"pattern {pattern!r} may use only {{name}} and {{stem}}: {exc!r}"
        ) from None
    targets = [locations.join(directory, name) for name in names_]
    for target in targets:
        if is_remote(target):
            locations.check_writable(target)
    identities = [locations.identity(t) for t in targets]
    if len(set(identities)) != len(identities):
        raise ValueError(
            f"the outputs {[_display(t) for t in targets]} are not all different: put {{name}} "
            "in pattern"
        )
    if locations.identity(source) in identities:
        raise ValueError(
            f"an output would replace the input {_display(source)!r}: choose out_dir or names"
        )
    return targets


def _display(location: str) -> str:
    return redact_url(location) if is_remote(location) else location


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
        return (
            "stratified",
            f"each class of {stratify!r} divided by the ratios; every row rewritten",
        )
    if shuffle is True:
        return "random", "shuffle=True: rows assigned by a seeded permutation, every row rewritten"
    if shuffle is False:
        return "contiguous", "shuffle=False: contiguous ranges, whole row groups copied"
    if assume_shuffled:
        return "contiguous", "assume_shuffled=True: contiguous ranges, whole row groups copied"
    if shuffled_when_packed(ds.metadata):
        return "contiguous", "shuffled when packed: contiguous ranges, whole row groups copied"
    return "random", (
        "not known to be shuffled: rows assigned by a seeded permutation, every row rewritten "
        "(shuffle=False or assume_shuffled=True copies row groups instead)"
    )
