"""The .bale file a pack writes: created from the first rows read (their types, codecs and the
metadata), skipped rows counted and logged, and removed entirely if the pack fails."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from bale._core.batches import infer_schema_types
from bale._core.columns import batch_nbytes
from bale._core.writer import Writer
from bale._progress import Progress
from bale.errors import BaleError, SchemaError
from bale.format.schema import ColumnType
from bale.importers.base import RowSource, SkippedRow, SourceBatch
from bale.ops.pack._settings import CodecChoice, PackSettings

log = logging.getLogger("bale.pack")

#: Unreadable rows logged one by one; the rest are only counted (the report lists them all).
LOGGED_SKIPS = 10


class PackOutput:
    """The file being written: created on the first rows (their types and codecs fix the
    schema), with skipped rows counted and the metadata completed on close."""

    def __init__(
        self, source: RowSource, out: str, settings: PackSettings, method: str | None
    ) -> None:
        self.source = source
        self.out = out
        self.settings = settings
        self.writer: Writer | None = None
        self.types: dict[str, ColumnType] | None = None
        self.skipped: list[SkippedRow] = []
        self.data_bytes = 0
        self.file_bytes = 0  # the file's size, once closed
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
            if len(self.skipped) <= LOGGED_SKIPS:
                log.warning("skipping %s: %s", row.where, row.reason)
            elif len(self.skipped) == LOGGED_SKIPS + 1:
                log.warning("more unreadable rows skipped; the pack report lists them all")

    def start(self, batch: SourceBatch) -> dict[str, ColumnType]:
        """Create the file from the first non-empty batch; return the columns' types."""
        if self.types is None:
            self._create(_types_of(self.source, batch.columns), batch.columns)
        return self.types  # type: ignore[return-value]  # set by _create

    def start_empty(self) -> None:
        """Create the file of a source with no rows, from the columns' types it knows."""
        known = self.source.column_types
        if not known:
            raise BaleError(
                "the source has no rows, and without rows the types of its columns cannot be "
                "told (arrays of Python objects hold str or bytes); write the empty file with "
                "bale.Writer(path, schema) instead",
                path=self.source.path,
            )
        self._create(dict(known), {})

    def _create(self, types: dict[str, ColumnType], sample: Mapping[str, Any]) -> None:
        self.types = types
        metadata = {**self.source.metadata, **self.settings.metadata, "bale.pack": self.info}
        self.writer = Writer(
            self.out,
            types,
            overwrite=self.settings.overwrite,
            codecs=_codecs(self.settings, sample, list(types)),
            metadata=metadata,
            row_group_bytes=self.settings.row_group_bytes,
            random_access=self.settings.random_access,
            storage_options=self.settings.storage_options,
        )

    def add(self, batch: SourceBatch, bar: Progress) -> None:
        """Skip-check and write a batch already in output order."""
        self.note_skipped(batch)
        if len(batch):
            self.start(batch)
            self.write(batch.columns, batch.rows)
        bar.update(len(batch) + len(batch.skipped), batch_nbytes(batch.columns))

    def write(self, columns: Mapping[str, Any], rows: np.ndarray) -> None:
        if self.writer is None:
            raise RuntimeError("internal error: rows written before the file was created")
        write_rows(self.writer, columns, rows, self.source.path)
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
        self.file_bytes = self.writer._sink.offset

    def abort(self) -> None:
        """Leave nothing behind: the writer's ``NAME.partial`` is removed, not kept (an upload
        to a URL is aborted by the writer)."""
        if self.writer is not None:
            self.writer.discard()


def write_rows(writer: Writer, columns: Mapping[str, Any], rows: np.ndarray, source: str) -> None:
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
    settings: PackSettings, sample: Mapping[str, Any], names: list[str]
) -> dict[str, CodecChoice] | None:
    if settings.codecs is None:
        return None
    given = dict(settings.codecs)
    default = given.pop("*", None)
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise SchemaError(f"codecs given for unknown columns {unknown}; columns are {names}")
    chosen: dict[str, CodecChoice] = {}
    if default == "auto" and not sample:
        pass  # no rows to measure (an empty source): bale's default codecs
    elif default == "auto":
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


def _types_of(source: RowSource, columns: Mapping[str, Any]) -> dict[str, ColumnType]:
    """The file's columns: the source's types, and for any column the source does not type
    (a bcolz array of Python objects) the type its first values show, in the batch's order."""
    known = dict(source.column_types or {})
    missing = {name: value for name, value in columns.items() if name not in known}
    if not known:
        return infer_schema_types(columns)
    inferred = infer_schema_types(missing) if missing else {}
    order = list(columns) + [name for name in known if name not in columns]
    return {name: known[name] if name in known else inferred[name] for name in order}


def _kind(source: RowSource) -> str:
    """``ImageFolderSource`` -> ``image_folder``: the source's kind, for the file's metadata."""
    name = type(source).__name__.removesuffix("Source") or type(source).__name__
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
