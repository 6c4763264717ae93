"""A distributed write's staging area (``PartSet``): one part file per task beside the target,
written atomically and idempotently (retries and speculative duplicates never duplicate rows,
finished parts are skipped when a job is re-run), then merged in index order into the target."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bale._core.groupsink import SchemaLike
from bale._core.layout import read_index
from bale._core.writer import Writer
from bale.errors import BaleError
from bale.io.open import open_source
from bale.io.remote_client import packages_for
from bale.io.remote_url import is_remote, parse_url, redact_url
from bale.io.sink import is_locked, partial_path_for
from bale.ops.merge import (
    MergeInput,
    MergeReport,
    MergeSource,
    check_inputs,
    merge_metadata,
    open_inputs,
    write_merged,
)

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = ["MergeReport", "PartInfo", "PartSet"]

_PART_NAME = re.compile(r"part-(\d{6,})\.(bale|empty)$")


@dataclass(frozen=True)
class PartInfo:
    """A complete part: its index, file (or empty-part marker), rows and size in bytes."""

    index: int
    path: str
    rows: int
    file_bytes: int


class PartSet:
    """The parts of a distributed write of ``target``: ``{target}.parts/part-{index:06d}.bale``.

    Each task writes its rows with ``write_part(index, batches)``; when all have finished,
    ``merge(count)`` copies the parts' row groups, in index order, into ``target`` (nothing is
    decoded or recompressed) and removes the parts. A ``PartSet`` holds only strings and dicts:
    it is pickled to Dask, Ray or Spark workers as it is.

    >>> parts = bale.PartSet("s3://bucket/train.bale", storage_options=opts)  # doctest: +SKIP
    >>> def task(i, rows):                        # on the workers, in any order, retried freely
    ...     return parts.write_part(i, rows, schema=schema)
    >>> parts.merge(count=n_tasks)                # on the driver, once every task is done

    - A retried or speculative task never duplicates rows: each attempt writes its own file,
      then replaces the part's name with it atomically (locally ``os.replace``; on object
      storage the multipart upload itself publishes the whole object, or nothing).
    - Re-running a job skips the parts already complete (``skip_complete=True``): a part is
      complete when its trailer and footer read back and check out.
    - A task with no rows and no ``schema=`` leaves an empty-part marker
      (``part-000007.empty``), which ``merge`` counts as a part of 0 rows.
    - The merged file depends only on the rows of each part and their order: the same parts,
      finished in any order by any number of workers, give the same bytes.
    """

    def __init__(
        self,
        target: str | os.PathLike[str],
        *,
        storage_options: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        self.target = os.fspath(target)
        self.remote = is_remote(self.target)
        if storage_options and not self.remote:
            raise ValueError(
                f"storage_options apply to URLs (s3://, gs://, az://); {self.target!r} is a "
                "local path"
            )
        self.storage_options: dict[str, Any] = dict(storage_options or {})
        self.overwrite = overwrite
        self.parts_dir = f"{self.target}.parts"

    def __repr__(self) -> str:
        shown = redact_url(self.target) if self.remote else self.target
        return f"PartSet({shown!r})"

    # -- names and state ----------------------------------------------------------------------

    def part_path(self, index: int) -> str:
        """Where part ``index`` lives once complete."""
        if index < 0:
            raise ValueError(f"a part index is >= 0, not {index}")
        return f"{self.parts_dir}/part-{index:06d}.bale"

    def _marker_path(self, index: int) -> str:
        return f"{self.parts_dir}/part-{index:06d}.empty"

    def _shown(self, path: str) -> str:
        return redact_url(path) if self.remote else path

    def completed(self) -> dict[int, PartInfo]:
        """The parts present and whole (trailer and footer read and checksummed), by index. A
        torn or foreign file under a part's name is not complete."""
        found: dict[int, PartInfo] = {}
        for name in sorted(self._names()):
            match = _PART_NAME.search(name)
            if match is None or name != match.group(0):
                continue
            index = int(match.group(1))
            if index in found:
                continue
            info = self._part_info(index)[0]
            if info is not None:
                found[index] = info
        return dict(sorted(found.items()))

    def is_complete(self, index: int) -> bool:
        """Whether part ``index`` is present and whole."""
        return self._part_info(index)[0] is not None

    def _part_info(self, index: int) -> tuple[PartInfo | None, str]:
        """The part's info, or None and why it is not complete ("" when it is absent)."""
        path = self.part_path(index)
        try:
            with contextlib.closing(open_source(path, self._options())) as source:
                file_index, _ = read_index(source)
                return PartInfo(index, path, file_index.num_rows, source.size()), ""
        except (BaleError, OSError) as exc:
            reason = "" if _absent(exc) else f"{type(exc).__name__}: {exc}"
        marker = self._read_marker(index)
        if marker is not None:
            return marker, ""
        return None, reason

    def _read_marker(self, index: int) -> PartInfo | None:
        path = self._marker_path(index)
        try:
            if self.remote:
                data = self._fs().cat_file(_strip(path))
            else:
                with open(path, "rb") as f:
                    data = f.read()
            entry = json.loads(data)
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("bale.part") != index or entry.get("rows"):
            return None
        return PartInfo(index, path, 0, len(data))

    def _options(self) -> dict[str, Any] | None:
        return self.storage_options if self.remote else None

    # -- writing ------------------------------------------------------------------------------

    def write_part(
        self,
        index: int,
        batches: Mapping[str, Any] | Iterable[Mapping[str, Any]],
        *,
        schema: SchemaLike | None = None,
        skip_complete: bool = True,
        **writer_kwargs: Any,
    ) -> PartInfo:
        """Write part ``index`` from one batch (a dict of columns) or an iterable of batches,
        through ``bale.Writer`` (``writer_kwargs``: codecs, row_group_bytes, segment_bytes,
        metadata, ...; give every part the same ``segment_bytes`` when using
        ``random_access=True``, which fits it to each part's rows otherwise).

        With ``skip_complete`` (the default), a part already complete is returned without
        writing: a re-run job resumes. Safe to call twice at once for the same index (a
        speculative task): each attempt writes its own file and the part's name ends up holding
        exactly one attempt's rows.
        """
        path = self.part_path(index)
        if skip_complete:
            info = self._part_info(index)[0]
            if info is not None:
                return info
        for key in ("overwrite", "mode", "storage_options"):
            if key in writer_kwargs:
                raise TypeError(f"write_part sets {key}= itself")
        metadata = {**dict(writer_kwargs.pop("metadata", None) or {}), "bale.part": index}
        if isinstance(batches, Mapping):
            batches = [batches]
        if self.remote:
            # A multipart upload publishes the whole object at completion, or nothing: written
            # straight to the part's name (a second attempt replaces it, whole). Writing a
            # temporary object and copying it would move every byte twice.
            attempt = path
        else:
            os.makedirs(self.parts_dir, exist_ok=True)
            attempt = f"{self.parts_dir}/part-{index:06d}.{uuid.uuid4().hex}.bale"
        writer = Writer(
            attempt,
            schema,
            overwrite=self.remote,
            metadata=metadata,
            storage_options=self._options(),
            **writer_kwargs,
        )
        try:
            for batch in batches:
                if writer.schema is None and _is_empty(batch):
                    continue  # no types to infer from empty columns: wait for rows
                writer.write(batch)
            if writer.schema is None:  # no rows and no schema: there is no file to make
                writer.abort()
                return self._write_marker(index)
            writer.close()
        except BaseException:
            writer.abort()
            if not self.remote:
                for debris in (attempt, partial_path_for(attempt)):
                    with contextlib.suppress(OSError):
                        os.remove(debris)
            raise
        if not self.remote:
            try:
                os.replace(attempt, path)
            except OSError:
                with contextlib.suppress(OSError):
                    os.remove(attempt)
                raise
        info = self._part_info(index)[0]
        if info is None:
            raise BaleError(
                f"part {index} was written but does not read back as complete",
                path=self._shown(path),
            )
        return info

    def _write_marker(self, index: int) -> PartInfo:
        path = self._marker_path(index)
        data = json.dumps({"bale.part": index, "rows": 0}).encode()
        if self.remote:
            self._fs().pipe_file(_strip(path), data)  # one PUT: whole or absent
        else:
            attempt = f"{path}.{uuid.uuid4().hex}"
            with open(attempt, "wb") as f:
                f.write(data)
            os.replace(attempt, path)
        return PartInfo(index, path, 0, len(data))

    # -- merging ------------------------------------------------------------------------------

    def merge(
        self,
        count: int,
        *,
        metadata: Mapping[str, Any] | None = None,
        keep_parts: bool = False,
        verify: bool = False,
        progress: bool = False,
    ) -> MergeReport:
        """Merge parts ``0..count-1``, in index order, into the target (row groups copied as
        stored; see ``bale.merge``, which also explains ``metadata``, ``verify`` and
        ``progress``), then remove the parts unless ``keep_parts``. Every part must be
        complete: otherwise a ``BaleError`` names the missing and torn ones and nothing is
        written."""
        if count < 1:
            raise ValueError(f"merge needs count >= 1, not {count}")
        infos: list[PartInfo] = []
        missing: list[int] = []
        torn: list[str] = []
        for index in range(count):
            info, reason = self._part_info(index)
            if info is not None:
                infos.append(info)
            elif reason:
                torn.append(f"{index} ({reason})")
            else:
                missing.append(index)
        if missing or torn:
            problems = []
            if missing:
                problems.append(f"missing: {_ranges(missing)}")
            if torn:
                problems.append(f"torn or unreadable: {'; '.join(torn)}")
            raise BaleError(
                f"cannot merge {count} parts from {self._shown(self.parts_dir)!r}, not all are "
                f"complete: {', '.join(problems)}; re-run the tasks that write them",
                path=self._shown(self.parts_dir),
            )
        files = [i.path for i in infos if i.path.endswith(".bale")]
        if not files:
            raise BaleError(
                f"all {count} parts in {self._shown(self.parts_dir)!r} are empty and none has "
                "a schema, so there is no file to make: pass schema= to write_part",
                path=self._shown(self.parts_dir),
            )
        self._drop_stale_partial()
        with open_inputs(files, self._options()) as inputs:
            check_inputs(inputs)
            merged = merge_metadata(
                [i.index.metadata for i in inputs], [i.rows for i in infos], metadata
            )
            file_bytes = write_merged(
                inputs,
                self.target,
                inputs[0].index.schema,
                merged,
                overwrite=self.overwrite,
                storage_options=self._options(),
                verify=verify,
                progress=progress,
            )
            sources = tuple(_sources(infos, inputs))
        report = MergeReport(
            self._shown(self.target),
            sum(i.rows for i in infos),
            file_bytes,
            sum(s.row_groups for s in sources),
            sources,
        )
        if not keep_parts:
            self.remove_parts()
        return report

    def _drop_stale_partial(self) -> None:
        """A merge killed mid-way leaves ``target.partial``; the parts are still whole (they
        go only after a merge succeeds), so a re-run starts again. A merge running now holds
        its lock and is left alone."""
        if self.remote:
            return  # a killed upload publishes nothing
        partial = partial_path_for(self.target)
        if os.path.exists(partial) and not is_locked(partial):
            with contextlib.suppress(FileNotFoundError):
                os.remove(partial)

    def remove_parts(self) -> None:
        """Remove the parts directory (or prefix) and everything in it."""
        if self.remote:
            with contextlib.suppress(FileNotFoundError):
                self._fs().rm(_strip(self.parts_dir), recursive=True)
        else:
            shutil.rmtree(self.parts_dir, ignore_errors=True)

    # -- listing ------------------------------------------------------------------------------

    def _names(self) -> list[str]:
        """The base names of the files in the parts directory."""
        if not self.remote:
            try:
                return os.listdir(self.parts_dir)
            except FileNotFoundError:
                return []
        try:
            found = self._fs().find(_strip(self.parts_dir) + "/")
        except FileNotFoundError:
            return []
        return [str(name).rsplit("/", 1)[-1] for name in found]

    def _fs(self) -> AbstractFileSystem:
        try:
            from fsspec.core import url_to_fs
        except ImportError as exc:
            packages = packages_for(parse_url(self.target).scheme, "fsspec")
            raise ImportError(
                "listing and removing parts on object storage needs fsspec and the store's "
                f"filesystem package: pip install {packages}"
            ) from exc
        # A filesystem of its own (no instance cache): no stale listing, nothing shared across a fork.
        fs, _ = url_to_fs(self.target, skip_instance_cache=True, **self.storage_options)
        return fs


def _is_empty(batch: Mapping[str, Any]) -> bool:
    """Whether a batch has no rows (every column of length 0)."""
    try:
        return all(len(values) == 0 for values in batch.values())
    except TypeError:  # a value without a length: let the Writer say what is wrong
        return False


def _strip(url: str) -> str:
    """A URL as fsspec's filesystem methods take it (bucket/key)."""
    return url.split("://", 1)[1]


def _absent(exc: BaseException) -> bool:
    """Whether opening a part failed because there is no such file or object (a missing
    object raises ``ObjectNotFoundError``, a ``FileNotFoundError``)."""
    return isinstance(exc, FileNotFoundError)


def _sources(infos: list[PartInfo], inputs: list[MergeInput]) -> Iterator[MergeSource]:
    files = iter(inputs)
    for info in infos:
        if info.path.endswith(".bale"):
            item = next(files)
            yield MergeSource(item.path, info.rows, len(item.index.groups))
        else:
            yield MergeSource(info.path, 0, 0)


def _ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5]`` as ``"0-2, 5"``."""
    out: list[str] = []
    start = prev = indices[0]
    for i in [*indices[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(out)
