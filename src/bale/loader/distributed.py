"""Which rank of how many this process is: from torch.distributed or the launcher's variables."""

from __future__ import annotations

import os
import sys


def detect_distributed() -> tuple[int, int]:
    """(rank, world_size): from an initialised torch.distributed, else the RANK / WORLD_SIZE
    variables torchrun and most launchers set, else (0, 1). Called when a Loader is built.

    Inconsistent sources are an error, never a silent (0, 1) that would make every rank read
    the whole epoch: RANK without WORLD_SIZE (or the reverse), values that are not integers or
    out of range, or variables that disagree with the initialised process group."""
    env = os.environ
    from_env: tuple[int, int] | None = None
    if "RANK" in env or "WORLD_SIZE" in env:
        if "RANK" not in env or "WORLD_SIZE" not in env:
            raise ValueError(
                "RANK and WORLD_SIZE must be set together (found only "
                f"{'RANK' if 'RANK' in env else 'WORLD_SIZE'}); or pass rank= and world_size="
            )
        try:
            from_env = int(env["RANK"]), int(env["WORLD_SIZE"])
        except ValueError:
            raise ValueError(
                f"RANK={env['RANK']!r} and WORLD_SIZE={env['WORLD_SIZE']!r} must be integers"
            ) from None
        if from_env[1] < 1 or not 0 <= from_env[0] < from_env[1]:
            raise ValueError(f"RANK={from_env[0]} is not in 0..WORLD_SIZE-1={from_env[1] - 1}")
    # Only a program that already imported torch.distributed can have initialised it; importing
    # torch here just to ask would cost every Loader seconds.
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        from_group = int(dist.get_rank()), int(dist.get_world_size())
        if from_env is not None and from_env != from_group:
            raise ValueError(
                f"torch.distributed says rank {from_group[0]} of {from_group[1]} but RANK and "
                f"WORLD_SIZE say {from_env[0]} of {from_env[1]}; pass rank= and world_size= to "
                "say which is meant"
            )
        return from_group
    return from_env if from_env is not None else (0, 1)


def resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """(rank, world_size): the values given, the missing ones detected (``detect_distributed``),
    checked to be a rank of that world."""
    if rank is None or world_size is None:
        detected_rank, detected_world = detect_distributed()
        rank = detected_rank if rank is None else rank
        world_size = detected_world if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"rank must be in 0..world_size-1, got rank={rank}, world_size={world_size}"
        )
    return rank, world_size
