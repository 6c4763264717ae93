"""TorchIterableDataset under real torch.distributed jobs: gloo ranks on 127.0.0.1, each with
DataLoader worker processes, killed with SIGKILL mid-epoch and resumed with other world sizes.

Each rank is a process running distributed_worker.py (see its docstring). Every rank and
DataLoader worker is bounded in time: the test kills the job's process group on any timeout,
and each rank exits on its own after a deadline.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("torch.distributed")

import bale

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("distributed_worker.py")
_spec = importlib.util.spec_from_file_location("bale_distributed_worker", WORKER)
assert _spec is not None and _spec.loader is not None
worker_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker_module)
row_digest = worker_module.row_digest
batch_digest = worker_module.batch_digest

ROWS = 4003  # 81 row groups of 50 rows (the last of 3); not a multiple of any consumer count
GROUP_ROWS = 50
WINDOW_GROUPS = 2  # windows of 100 rows: 41 windows
DEADLINE_S = 80  # a rank that is still running then dumps its stack and exits
JOB_TIMEOUT_S = 60  # the test kills a job that takes longer


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4003 rows written by bale.Writer in uneven pieces: ids, variable-length bytes (some
    empty), a float array, a string and an uncompressed (mapped) uint8 array."""
    rng = np.random.default_rng(11)
    path = tmp_path_factory.mktemp("distributed") / "train.bale"
    codecs = {"blob": "zstd", "pixels": "none"}
    with bale.Writer(path, codecs=codecs, row_group_rows=GROUP_ROWS) as writer:
        start = 0
        for size in (700, 1, 1299, 2003):
            i = np.arange(start, start + size, dtype=np.int64)
            writer.write(
                {
                    "id": i,
                    "blob": [rng.bytes(int(n)) for n in rng.integers(0, 120, size)],
                    "x": rng.standard_normal((size, 3, 5)).astype(np.float32),
                    "name": [f"row {k} " + "\u00e9" * (k % 4) for k in i.tolist()],
                    "pixels": rng.integers(0, 256, (size, 24), dtype=np.uint8),
                }
            )
            start += size
    assert start == ROWS
    ds = bale.open(path)
    assert len(ds) == ROWS and ds.num_row_groups == 81
    ds.close()
    return path


@pytest.fixture(scope="module")
def reference(data_path: Path) -> dict[int, str]:
    """Row digests from a plain single-process read: ``bale.open(path).read()``."""
    with bale.open(data_path) as ds:
        rows = ds.read()
        assert rows["id"].tolist() == list(range(ROWS))
        return {i: row_digest(rows, i) for i in range(ROWS)}


# -- launching and killing jobs ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Job:
    """The rank processes of one job, all in one process group (their DataLoader workers,
    forkserver and resource tracker too), so one killpg reaches all of them at once."""

    name: str
    procs: list[subprocess.Popen[bytes]]
    logs: list[Path]
    pgid: int
    killed: bool = False
    killed_pids: set[int] = field(default_factory=set)

    def output(self) -> str:
        parts = []
        for rank, log in enumerate(self.logs):
            text = log.read_text(errors="replace") if log.exists() else ""
            rc = self.procs[rank].returncode if rank < len(self.procs) else None
            parts.append(f"--- {self.name} rank {rank} (rc={rc}) ---\n{text[-3000:]}")
        return "\n".join(parts)

    def kill(self) -> None:
        """SIGKILL the whole process group at once, reap the ranks, and wait (bounded) until
        none of the processes the job had (ranks and all their descendants: DataLoader
        workers, forkserver, resource tracker) is alive."""
        self.killed = True
        table = processes()
        self.killed_pids = descendants(table, {p.pid for p in self.procs}) | {
            pid for pid, (_, _, group) in table.items() if group == self.pgid
        }
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):  # checked just below
                proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while (alive := self.alive()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive, f"processes of {self.name} outlived SIGKILL: {alive}"

    def alive(self) -> list[int]:
        """Processes of the job still alive (zombies excepted: orphaned workers may stay
        zombies until PID 1 reaps them; they hold nothing)."""
        table = processes()
        return sorted(
            pid
            for pid, (state, _, group) in table.items()
            if state not in ("Z", "X") and (pid in self.killed_pids or group == self.pgid)
        )


@dataclass
class Jobs:
    started: list[Job] = field(default_factory=list)

    def cleanup(self) -> None:
        for job in self.started:
            if not job.killed and any(p.poll() is None for p in job.procs):
                job.kill()


@pytest.fixture
def jobs() -> Iterator[Jobs]:
    """Kills whatever a failed test left running."""
    tracker = Jobs()
    yield tracker
    tracker.cleanup()


def processes() -> dict[int, tuple[str, int, int]]:
    """pid: (state, parent pid, process group) of every process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry)] = (fields[0], int(fields[1]), int(fields[2]))
    return table


def descendants(table: dict[int, tuple[str, int, int]], roots: set[int]) -> set[int]:
    found = set(roots) & set(table)
    while True:
        more = {pid for pid, (_, parent, _) in table.items() if parent in found} - found
        if not more:
            return found
        found |= more


def launch(jobs: Jobs, tmp: Path, name: str, config: dict[str, Any]) -> Job:
    """Start ``config["world_size"]`` ranks of distributed_worker.py in a new process group."""
    world_size = config["world_size"]
    port = free_port()
    config = {**config, "port": port, "deadline_s": DEADLINE_S, "gloo_timeout_s": 30}
    config_path = tmp / f"{name}.json"
    config_path.write_text(json.dumps(config))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_PORT")
    }
    env.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        GLOO_SOCKET_IFNAME="lo",  # gloo's sockets on the loopback interface only
        OMP_NUM_THREADS="1",
        PYTHONFAULTHANDLER="1",
    )
    procs: list[subprocess.Popen[bytes]] = []
    logs = [tmp / f"{name}-rank{rank}.log" for rank in range(world_size)]
    pgid = 0
    job = Job(name, procs, logs, pgid)
    jobs.started.append(job)
    for rank in range(world_size):
        rank_env = dict(env)
        if config["init"] == "env":
            rank_env.update(RANK=str(rank), WORLD_SIZE=str(world_size))
        # Rank 0 leads a new process group (0: its own pid); the other ranks join it.
        group: dict[str, Any]
        if sys.version_info >= (3, 11):
            group = {"process_group": pgid}
        else:  # pragma: no cover - Python 3.10
            group = {"preexec_fn": lambda pgid=pgid: os.setpgid(0, pgid)}
        with open(logs[rank], "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, str(WORKER), str(config_path), str(rank)],
                env=rank_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                **group,
            )
        procs.append(proc)
        if rank == 0:
            pgid = job.pgid = proc.pid
    return job


class PortTaken(Exception):
    """Rank 0 could not listen on the port chosen for the job: another process took it between
    free_port() and the rendezvous. Nothing of the job ran; it is started again."""


def fail(job: Job, why: str) -> NoReturn:
    job.kill()
    output = job.output()
    if "EADDRINUSE" in output:
        raise PortTaken(job.name)
    pytest.fail(f"{job.name} {why}:\n{output}")


def wait_for(job: Job, timeout: float = JOB_TIMEOUT_S) -> None:
    """Wait until every rank exits 0; on a failure or the timeout, kill the job and fail."""
    deadline = time.monotonic() + timeout
    while True:
        codes = [p.poll() for p in job.procs]
        if all(c == 0 for c in codes):
            return
        if any(c not in (None, 0) for c in codes):
            fail(job, "failed")
        if time.monotonic() > deadline:
            fail(job, f"did not finish in {timeout} s")
        time.sleep(0.05)


def kill_after_checkpoint(job: Job, checkpoint: Path, run: int, batches: int) -> None:
    """SIGKILL the job's process group as soon as run ``run`` has checkpointed ``batches``
    batches (the ranks go on meanwhile, so the kill lands at some later batch)."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        if any(p.poll() is not None for p in job.procs):
            fail(job, "exited before it was killed")
        if time.monotonic() > deadline:
            fail(job, f"never checkpointed {batches} batches")
        try:
            saved = read_json(checkpoint)
        except FileNotFoundError:
            saved = None
        if saved is not None and saved["run"] == run and saved["runs"][run]["batches"] >= batches:
            job.kill()
            return
        time.sleep(0.02)


def run_job(
    jobs: Jobs,
    tmp: Path,
    name: str,
    config: dict[str, Any],
    kill: tuple[Path, int, int] | None = None,
) -> Job:
    """Run a job to its end, or with ``kill=(checkpoint, run, batches)`` SIGKILL it mid-way;
    started again (at most twice) if its port was taken."""
    for attempt in range(3):
        job = launch(jobs, tmp, f"{name}-{attempt}", config)
        try:
            if kill is None:
                wait_for(job)
            else:
                kill_after_checkpoint(job, *kill)
            return job
        except PortTaken:
            continue
    pytest.fail(f"{name}: the rendezvous port was taken 3 times")


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def expected_rank_ids(
    path: Path, rank: int, world_size: int, batch_size: int, workers: int, **options: Any
) -> list[list[int]]:
    """The ids of each batch rank ``rank`` should get from a DataLoader with ``workers``
    workers: each worker's batches from bale.Loader, taken from the workers in turn."""
    with bale.Loader(
        path,
        batch_size,
        rank=rank,
        world_size=world_size,
        **{**options, "columns": ["id"], "num_threads": 1},
    ) as loader:
        per_worker = [
            [b["id"].tolist() for b in loader.iter_batches(0, worker=w, num_workers=workers)]
            for w in range(workers)
        ]
    out = []
    for i in range(max(len(b) for b in per_worker)):
        out.extend(b[i] for b in per_worker if i < len(b))
    return out


# -- one epoch over 4 gloo ranks x 2 DataLoader workers -----------------------------------------


@pytest.mark.parametrize(
    ("partition", "init"),
    [("drop", "tcp"), ("pad", "env")],
    ids=["drop-rank_from_process_group", "pad-env_and_process_group"],
)
def test_epoch_over_gloo_ranks_and_workers(
    tmp_path: Path,
    jobs: Jobs,
    data_path: Path,
    reference: dict[int, str],
    partition: str,
    init: str,
) -> None:
    """4 ranks x 2 DataLoader workers (8 consumers): every row of the epoch once across ranks
    ("drop": fewer than 8 rows left out; "pad": every row, fewer than 8 repeats), the same
    number of batches on every rank, each batch in the order bale.Loader defines for that
    consumer, and the bytes of every row equal to a plain single-process read.

    With ``init="tcp"`` the ranks join the group by ``init_method`` and RANK / WORLD_SIZE are
    not set: TorchIterableDataset learns rank and world size from torch.distributed alone.
    With ``"env"`` (env://) both sources are set and agree."""
    world_size, workers, batch_size = 4, 2, 32
    options = {
        "shuffle": "chunks",
        "seed": 17,
        "window_groups": WINDOW_GROUPS,
        "partition": partition,
        "num_threads": 1,
    }
    config = {
        "mode": "epoch",
        "init": init,
        "path": str(data_path),
        "world_size": world_size,
        "batch_size": batch_size,
        "num_workers": workers,
        "context": "fork",
        "loader": options,
        "out": str(tmp_path),
    }
    run_job(jobs, tmp_path, f"epoch-{partition}", config)
    results = [read_json(tmp_path / f"rank{rank}.json") for rank in range(world_size)]

    consumers = world_size * workers
    share = ROWS // consumers if partition == "drop" else -(-ROWS // consumers)
    per_worker_batches = -(-share // batch_size)
    all_ids: list[int] = []
    consumer_groups: list[set[int]] = []
    for rank, result in enumerate(results):
        assert result["detected"] == result["group"] == [rank, world_size]
        want_env = [str(rank), str(world_size)] if init == "env" else [None, None]
        assert result["env"] == want_env
        assert result["types"] == {
            "id": "Tensor",
            "blob": "list",
            "x": "Tensor",
            "name": "list",
            "pixels": "Tensor",
        }
        batches = result["batches"]
        # Same number of batches on every rank, as gathered over gloo too.
        assert len(batches) == workers * per_worker_batches
        assert result["gathered_counts"] == [len(batches)] * world_size
        assert result["total_rows"] == consumers * share
        ids = [b["ids"] for b in batches]
        assert ids == expected_rank_ids(data_path, rank, world_size, batch_size, workers, **options)
        for batch in batches:
            # Every row's bytes are those of a single-process read of the file.
            assert batch["rows"] == [reference[i] for i in batch["ids"]]
            all_ids.extend(batch["ids"])
        for worker in range(workers):  # the DataLoader takes one batch from each worker in turn
            rows = [i for b in batches[worker::workers] for i in b["ids"]]
            assert len(rows) == share
            consumer_groups.append({i // GROUP_ROWS for i in rows})
    # Whole batches, with their order of rows, equal those of bale.open(path).take(ids).
    with bale.open(data_path) as ds:
        for result in results:
            for batch in result["batches"]:
                assert batch["digest"] == batch_digest(ds.take(batch["ids"]))

    assert len(all_ids) == consumers * share
    if partition == "drop":
        assert len(set(all_ids)) == len(all_ids)  # never twice
        assert ROWS - len(all_ids) == ROWS % consumers < consumers
    else:
        assert set(all_ids) == set(range(ROWS))  # every row
        repeats = len(all_ids) - ROWS
        assert 0 < repeats < consumers
    # Each consumer reads a contiguous stretch of the stream: two share at most one row group.
    for a in range(consumers):
        for b in range(a + 1, consumers):
            assert len(consumer_groups[a] & consumer_groups[b]) <= 1, (a, b)


# -- SIGKILL mid-epoch and resume with other world sizes -----------------------------------------


@dataclass(frozen=True)
class Run:
    world_size: int
    workers: int
    batch_size: int
    kill_after: int | None = None  # SIGKILL the job once a checkpoint this far exists
    hold_at: int | None = None  # the ranks stop after this batch (so the kill is mid-epoch)


# Per start method of the DataLoader workers: fork runs the full configuration; spawn and
# forkserver, whose workers each start a Python that imports torch, a smaller one (the last run
# without workers) to keep the file's time bounded on a 2-core machine.
SCENARIOS = {
    "fork": [
        Run(world_size=3, workers=2, batch_size=32, kill_after=5, hold_at=12),
        Run(world_size=2, workers=1, batch_size=24, kill_after=6, hold_at=14),
        Run(world_size=3, workers=2, batch_size=40),  # finishes the epoch
    ],
    "small": [
        Run(world_size=2, workers=2, batch_size=32, kill_after=5, hold_at=12),
        Run(world_size=2, workers=1, batch_size=24, kill_after=6, hold_at=14),
        Run(world_size=3, workers=0, batch_size=40),  # finishes the epoch
    ],
}


@pytest.mark.parametrize("context", ["fork", "spawn", "forkserver"])
def test_sigkill_mid_epoch_and_resume_with_other_world_sizes(
    tmp_path: Path, jobs: Jobs, data_path: Path, context: str
) -> None:
    """Three runs of one epoch, each resuming from the checkpoint of the one before (with
    fork: 3 ranks x 2 DataLoader workers x batches of 32, SIGKILLed mid-epoch; then 2 ranks x
    1 worker x 24, SIGKILLed too; then 3 ranks x 2 workers x 40 to the end of the epoch). The
    state is ``state_dict(batches_seen, num_workers=K)``, equal on every rank, saved by rank 0
    after every batch with the ids that all ranks consumed up to that batch. Counting only
    batches up to each run's last checkpoint (what a resumed training counts), every row is
    consumed exactly once, except fewer rows than the last run has consumers ("drop")."""
    runs = SCENARIOS["fork" if context == "fork" else "small"]
    checkpoint = tmp_path / "checkpoint.json"
    options = {
        "shuffle": "chunks",
        "seed": 23,
        "window_groups": WINDOW_GROUPS,
        "partition": "drop",
        "num_threads": 1,
    }
    phases: list[list[int]] = []
    for index, run in enumerate(runs):
        config = {
            "mode": "resume",
            "init": "tcp",
            "run": index,
            "path": str(data_path),
            "world_size": run.world_size,
            "batch_size": run.batch_size,
            "num_workers": run.workers,
            "context": context,
            "loader": options,
            "checkpoint": str(checkpoint),
            "hold_at": run.hold_at,
            "step_s": 0.02 if run.kill_after is not None else 0.0,
        }
        kill = None if run.kill_after is None else (checkpoint, index, run.kill_after)
        job = run_job(jobs, tmp_path, f"run{index}-{context}", config, kill)
        saved = read_json(checkpoint)
        assert saved["run"] == index
        done = saved["runs"][index]
        assert (done["world_size"], done["workers"], done["batch_size"]) == (
            run.world_size,
            run.workers,
            run.batch_size,
        )
        assert len(done["ids"]) == done["batches"] * run.batch_size * run.world_size or (
            run.kill_after is None  # the last batches of an epoch may be short
        )
        if run.kill_after is not None:
            # The kill took the ranks and their live DataLoader workers (with spawn, the
            # resource tracker; with forkserver, the server).
            assert len(job.killed_pids) >= run.world_size * (1 + run.workers)
            assert saved["done"] is False
            assert run.kill_after <= done["batches"] <= run.hold_at
            phases.append([run.world_size, max(1, run.workers), run.batch_size, done["batches"]])
            assert saved["state"]["epoch"] == 0
            assert saved["state"]["phases"] == phases  # the kill was mid-epoch
        else:
            assert saved["done"] is True
            assert (saved["state"]["epoch"], saved["state"]["phases"]) == (1, [])

    consumed = [i for run in saved["runs"] for i in run["ids"]]
    repeated = sorted(i for i, n in Counter(consumed).items() if n > 1)
    assert not repeated, f"rows consumed twice: {repeated[:20]}"
    assert set(consumed) <= set(range(ROWS))
    last = runs[-1]
    assert ROWS - len(consumed) < last.world_size * max(1, last.workers)  # "drop"
