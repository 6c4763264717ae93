"""One rank of the multi-process tests in test_distributed.py: run as a script, once per rank.

    python distributed_worker.py CONFIG.json RANK

The rank joins a gloo process group on 127.0.0.1, builds ``TorchIterableDataset`` without rank
or world size (they come from torch.distributed) and iterates it through a ``DataLoader`` with
worker processes. ``mode`` in the config says what it records:

- ``"epoch"``: one whole epoch; writes the ids and content digests of every batch it got, and
  the batch counts of all ranks gathered over gloo, to ``out/rank{RANK}.json``.
- ``"resume"``: resumes from the checkpoint file if there is one (rank 0 reads it and
  broadcasts it), then after every batch gathers the batch's ids and every rank's
  ``state_dict(batches_seen, num_workers=K)`` on rank 0, which replaces the checkpoint
  atomically with the state and the ids consumed by all ranks so far. With ``hold_at`` every
  rank stops after that batch and waits to be killed.

Every rank dumps its stack and exits after ``deadline_s`` (faulthandler), so that nothing
outlives a test that failed to kill it.
"""

from __future__ import annotations

import faulthandler
import hashlib
import json
import os
import sys
import time
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from bale.adapters.torch import TorchIterableDataset


def _value(column: Any) -> Any:
    return column.numpy() if hasattr(column, "numpy") else column  # a tensor, as NumPy


def _update(h: Any, name: str, item: Any) -> None:
    if isinstance(item, (bytes, bytearray, memoryview, str)):
        raw = item.encode() if isinstance(item, str) else bytes(item)
        h.update(f"{name}:{type(item).__name__}:{len(raw)}:".encode())
    else:
        array = np.asarray(item)
        raw = array.tobytes()
        h.update(f"{name}:{array.dtype.str}:{array.shape}:".encode())
    h.update(raw)


def row_digest(batch: dict[str, Any], i: int) -> str:
    """Digest of row ``i`` of a batch (tensors or NumPy arrays, lists of bytes or strings):
    every column's name, dtype, shape and bytes."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(batch):
        _update(h, name, _value(batch[name])[i])
    return h.hexdigest()


def batch_digest(batch: dict[str, Any]) -> str:
    """Digest of a whole batch, computed column by column (so the order of rows counts)."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(batch):
        column = _value(batch[name])
        if isinstance(column, np.ndarray):
            _update(h, name, column)
        else:
            for item in column:
                _update(h, name, item)
    return h.hexdigest()


def write_json_atomic(path: str, value: Any) -> None:
    """Replace ``path`` in one step: a reader (or a later run) sees the old file or the new one.
    A SIGKILL loses nothing already written, so no fsync is needed for these tests."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def make_loader(data: TorchIterableDataset, workers: int, context: str | None) -> DataLoader:
    options: dict[str, Any] = {}
    if workers:
        options = {"multiprocessing_context": context, "timeout": 60}
    return DataLoader(data, batch_size=None, num_workers=workers, **options)


def run_epoch(config: dict[str, Any], rank: int, world_size: int) -> None:
    data = TorchIterableDataset(config["path"], config["batch_size"], **config["loader"])
    workers = config["num_workers"]
    batches = []
    types: dict[str, str] = {}
    for batch in make_loader(data, workers, config["context"]):
        ids = [int(i) for i in batch["id"].tolist()]
        types = {name: type(value).__name__ for name, value in batch.items()}
        batches.append(
            {
                "ids": ids,
                "rows": [row_digest(batch, i) for i in range(len(ids))],
                "digest": batch_digest(batch),
            }
        )
    counts: list[Any] = [None] * world_size
    dist.all_gather_object(counts, len(batches))
    rows = [sum(len(b["ids"]) for b in batches)]
    total = torch.tensor(rows, dtype=torch.int64)
    dist.all_reduce(total)
    result = {
        "rank": rank,
        "detected": [data.loader_kwargs["rank"], data.loader_kwargs["world_size"]],
        "group": [dist.get_rank(), dist.get_world_size()],
        "env": [os.environ.get("RANK"), os.environ.get("WORLD_SIZE")],
        "types": types,
        "batches": batches,
        "gathered_counts": counts,
        "total_rows": int(total.item()),
    }
    write_json_atomic(os.path.join(config["out"], f"rank{rank}.json"), result)
    dist.barrier()


def run_resume(config: dict[str, Any], rank: int, world_size: int) -> None:
    path = config["checkpoint"]
    box: list[Any] = [None]
    if rank == 0 and os.path.exists(path):
        with open(path) as f:
            box[0] = json.load(f)
    dist.broadcast_object_list(box, src=0)  # every rank resumes from the same checkpoint
    checkpoint = box[0]
    workers, batch_size = config["num_workers"], config["batch_size"]
    data = TorchIterableDataset(config["path"], batch_size, **config["loader"])
    if checkpoint is not None:
        data.load_state_dict(checkpoint["state"])
        data.set_epoch(checkpoint["state"]["epoch"])
    runs = checkpoint["runs"] if checkpoint is not None else []
    this = {
        "world_size": world_size,
        "workers": workers,
        "batch_size": batch_size,
        "batches": 0,
        "ids": [],
    }
    runs.append(this)
    seen, state = 0, data.state_dict(0, num_workers=workers)
    for seen, batch in enumerate(make_loader(data, workers, config["context"]), start=1):
        ids = [int(i) for i in batch["id"].tolist()]
        state = data.state_dict(seen, num_workers=workers)
        gathered: list[Any] = [None] * world_size
        dist.all_gather_object(gathered, ["step", seen, ids, state])  # the ranks' "training step"
        if rank == 0:
            for r, (tag, n, _, other) in enumerate(gathered):
                if (tag, n) != ("step", seen):
                    raise RuntimeError(f"rank {r} is at {tag} {n}, rank 0 at batch {seen}")
                if other != state:
                    raise RuntimeError(f"rank {r}'s state {other} differs from rank 0's {state}")
            for _, _, rank_ids, _ in gathered:
                this["ids"].extend(rank_ids)
            this["batches"] = seen
            checkpoint = {"run": config["run"], "state": state, "runs": runs, "done": False}
            write_json_atomic(path, checkpoint)
        if seen == config.get("hold_at"):
            time.sleep(config["deadline_s"])  # wait for the SIGKILL (faulthandler ends it first)
        time.sleep(config["step_s"])
    gathered = [None] * world_size
    dist.all_gather_object(gathered, ["end", seen, [], None])
    if rank == 0:
        if any(g[:2] != ["end", seen] for g in gathered):
            raise RuntimeError(f"ranks ended at different batches: {gathered}")
        checkpoint = {"run": config["run"], "state": state, "runs": runs, "done": True}
        write_json_atomic(path, checkpoint)
    dist.barrier()


def main() -> None:
    with open(sys.argv[1]) as f:
        config = json.load(f)
    rank = int(sys.argv[2])
    faulthandler.dump_traceback_later(config["deadline_s"], exit=True)
    world_size = config["world_size"]
    timeout = timedelta(seconds=config["gloo_timeout_s"])
    if config["init"] == "env":  # MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE
        dist.init_process_group("gloo", init_method="env://", timeout=timeout)
    else:  # RANK and WORLD_SIZE are not set: bale can learn them only from torch.distributed
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{config['port']}",
            rank=rank,
            world_size=world_size,
            timeout=timeout,
        )
    try:
        if config["mode"] == "epoch":
            run_epoch(config, rank, world_size)
        else:
            run_resume(config, rank, world_size)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
