"""The options of one `bale.pack`: their types and defaults, checked before anything is read."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bale.codecs import Codec, parse_codec

#: Bytes of rows held at once: read-ahead batches, and one bucket in a two-pass shuffle.
DEFAULT_MEMORY_BUDGET = 512 << 20

CodecChoice = str | Codec
CodecGoal = Literal["balanced", "smallest", "fastest"]  # bale.measure.advisor's goals


@dataclass(frozen=True)
class PackSettings:
    """The options of one pack, checked (see ``pack`` for each)."""

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
    random_access: bool
    memory_budget: int
    temp_dir: str | None
    #: the output's client options when it is a URL (credentials: never shown)
    storage_options: Mapping[str, Any] | None = field(default=None, repr=False)


def pack_settings(
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
    random_access: bool = False,
    temp_dir: str | os.PathLike[str] | None,
    storage_options: Mapping[str, Any] | None = None,
) -> PackSettings:
    """``pack``'s keyword arguments checked (a bad codec spec fails now, not after reading the
    source) and normalised: one codec spec becomes ``{"*": spec}``, paths become strings."""
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
    return PackSettings(
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
        random_access=random_access,
        memory_budget=memory_budget,
        temp_dir=os.fspath(temp_dir) if temp_dir is not None else None,
        storage_options=dict(storage_options) if storage_options else None,
    )
