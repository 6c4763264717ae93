"""The options of one `bale.pack`: their types and defaults, checked before anything is read."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from bale.codecs import Codec, parse_codec

if TYPE_CHECKING:
    from distributed import Client

#: Bytes of rows held at once: read-ahead batches, and one bucket in a two-pass shuffle.
DEFAULT_MEMORY_BUDGET = 512 << 20

CodecChoice = str | Codec
CodecGoal = Literal["balanced", "smallest", "fastest"]  # bale.measure.advisor's goals
#: Where a pack reads its source: a Dask scheduler address (``"tcp://host:8786"``) or a
#: ``distributed.Client``; ``"ray"`` (the Ray this process is connected to, a running cluster,
#: or a local one) or a Ray client address (``"ray://head:10001"``).
Scheduler: TypeAlias = "str | Client"
Engine = Literal["dask", "ray"]


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
    #: the cluster reading the source (None: this machine)
    scheduler: Scheduler | None = None
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
    scheduler: Scheduler | None = None,
) -> PackSettings:
    """``pack``'s keyword arguments checked (a bad codec spec fails now, not after reading the
    source) and normalised: one codec spec becomes ``{"*": spec}``, paths become strings."""
    if memory_budget < 1 or row_group_bytes < 1:
        raise ValueError("memory_budget and row_group_bytes must be positive")
    if codec_goal not in ("balanced", "smallest", "fastest"):
        raise ValueError(f"codec_goal must be balanced, smallest or fastest, got {codec_goal!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if scheduler is not None:
        engine(scheduler)  # a wrong kind of value fails now
        if workers is not None:
            raise ValueError(
                "workers= counts local processes; with scheduler= the cluster's workers read "
                "the source: pass one of the two"
            )
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
        scheduler=scheduler.strip() if isinstance(scheduler, str) else scheduler,
    )


def engine(scheduler: Scheduler) -> Engine:
    """Which engine ``scheduler`` names: ``"ray"`` and ``ray://`` addresses are Ray; other
    addresses and ``distributed.Client`` objects are Dask."""
    if isinstance(scheduler, str):
        text = scheduler.strip()
        if not text:
            raise ValueError("scheduler must be a Dask scheduler address, 'ray' or 'ray://...'")
        return "ray" if text == "ray" or text.startswith("ray://") else "dask"
    try:
        from distributed import Client
    except ImportError:  # without dask.distributed no object is a Client
        is_client = False
    else:
        is_client = isinstance(scheduler, Client)
    if not is_client:
        raise TypeError(
            "scheduler must be an address (a Dask scheduler's 'tcp://host:8786', 'ray' or "
            f"'ray://head:10001') or a dask.distributed.Client, got {type(scheduler).__name__}"
        )
    return "dask"
