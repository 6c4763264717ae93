"""The Loader (bale.loader.pipeline): epochs, batches, resume, ranks, several files, errors.

Every test file has a label column ``y`` equal to the (global) row number, and ``x[i] = (i, -i)``,
so a batch says exactly which rows it holds and that its columns stayed aligned.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bale
from bale import BaleError, CorruptFileError, Loader
from bale.loader.pipeline import detect_distributed

MODES = ("chunks", "full", "none")
N = 103  # rows in the main test file
GROUP = 10  # rows per row group (the last group has 3)
BATCH = 8


def make_file(path: Path, n: int = N, group: int = GROUP, start: int = 0) -> str:
    y = np.arange(start, start + n, dtype=np.int64)
    x = np.stack([y, -y], axis=1).astype(np.float32)
    bale.write(path, {"x": x, "y": y}, row_group_rows=group)
    return str(path)


def labels(batches: list[dict[str, Any]]) -> list[int]:
    return [int(v) for b in batches for v in b["y"]]


def batch_labels(batches: list[dict[str, Any]]) -> list[list[int]]:
    return [b["y"].tolist() for b in batches]


def check_aligned(batch: dict[str, Any]) -> None:
    y = batch["y"]
    assert batch["x"].dtype == np.float32 and y.dtype == np.int64
    assert batch["x"].shape == (len(y), 2)
    np.testing.assert_array_equal(batch["x"][:, 0], y)
    np.testing.assert_array_equal(batch["x"][:, 1], -y)


def take(loader: Loader, k: int) -> list[dict[str, Any]]:
    """The first k batches of an iteration, leaving the loader positioned after them."""
    it = iter(loader)
    out = [next(it) for _ in range(k)]
    it.close()
    return out


def flip_block(path: str, group: int, column: str) -> None:
    """Damage one column's block of one row group (a byte in the middle of its payload)."""
    with bale.open(path) as ds:
        record = ds.index.blocks[group, ds.schema.index(column)]
        offset = int(record["offset"]) + int(record["stored_size"]) // 2
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def run_with_timeout(fn: Callable[[], Any], timeout: float = 20) -> dict[str, Any]:
    """Run fn in a thread; fail (instead of hanging the suite) if it does not finish."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"did not finish within {timeout} s (hung?)"
    return result


@pytest.fixture(autouse=True)
def no_launcher_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)


@pytest.fixture
def path(tmp_path: Path) -> str:
    return make_file(tmp_path / "train.bale")


@pytest.fixture
def loaders() -> Iterator[Callable[..., Loader]]:
    """Build Loaders that are closed at the end of the test."""
    made: list[Loader] = []

    def make(*args: Any, **kwargs: Any) -> Loader:
        kwargs.setdefault("window_groups", 2)  # several windows, even for these small files
        loader = Loader(*args, **kwargs)
        made.append(loader)
        return loader

    yield make
    for loader in made:
        loader.close()


# -- one epoch -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("drop_last", [False, True])
def test_one_epoch_every_row_once(loaders, path: str, mode: str, drop_last: bool) -> None:
    loader = loaders(path, BATCH, shuffle=mode, seed=3, drop_last=drop_last)
    batches = list(loader)
    for batch in batches:
        assert set(batch) == {"x", "y"}
        check_aligned(batch)
    sizes = [len(b["y"]) for b in batches]
    rows = labels(batches)
    assert len(set(rows)) == len(rows)
    if drop_last:
        assert sizes == [BATCH] * (N // BATCH)
    else:
        assert sizes == [BATCH] * (N // BATCH) + [N % BATCH]
        assert sorted(rows) == list(range(N))
    assert len(loader) == len(batches)
    assert loader.rows_per_epoch() == N
    assert loader.num_rows == N
    if mode == "none":
        assert rows == list(range(len(rows)))
    else:
        assert rows != sorted(rows)


def test_shuffle_bools(loaders, path: str) -> None:
    ordered = loaders(path, BATCH, shuffle=False)
    assert labels(list(ordered)) == list(range(N))
    shuffled = loaders(path, BATCH, shuffle=True, seed=1)
    chunks = loaders(path, BATCH, shuffle="chunks", seed=1)
    assert batch_labels(list(shuffled)) == batch_labels(list(chunks))


@pytest.mark.parametrize(
    "kwargs", [{"batch_size": 0}, {"shuffle": "random"}, {"on_error": "ignore"}]
)
def test_invalid_arguments(path: str, kwargs: dict[str, Any]) -> None:
    options = {"batch_size": 4, **kwargs}
    with pytest.raises(ValueError):
        Loader(path, **options)


@pytest.mark.parametrize("mode", ["chunks", "full"])
def test_same_seed_same_batches_different_seed_different(loaders, path: str, mode: str) -> None:
    a = batch_labels(list(loaders(path, BATCH, shuffle=mode, seed=5)))
    b = batch_labels(list(loaders(path, BATCH, shuffle=mode, seed=5, num_threads=1)))
    c = batch_labels(list(loaders(path, BATCH, shuffle=mode, seed=6)))
    assert a == b
    assert a != c


@pytest.mark.parametrize("mode", ["chunks", "full"])
def test_next_iteration_is_next_epoch_and_set_epoch_reproduces(
    loaders, path: str, mode: str
) -> None:
    loader = loaders(path, BATCH, shuffle=mode, seed=2)
    epochs = [batch_labels(list(loader)) for _ in range(3)]
    assert loader.epoch == 3
    assert epochs[0] != epochs[1] != epochs[2] != epochs[0]
    for epoch in range(3):
        assert sorted(r for b in epochs[epoch] for r in b) == list(range(N))
    other = loaders(path, BATCH, shuffle=mode, seed=2)
    for epoch in (2, 0, 1):
        other.set_epoch(epoch)
        assert batch_labels(list(other)) == epochs[epoch], epoch
    # set_epoch mid-epoch starts that epoch from its beginning.
    take(other, 3)
    other.set_epoch(1)
    assert batch_labels(list(other)) == epochs[1]


def test_none_mode_same_order_every_epoch(loaders, path: str) -> None:
    loader = loaders(path, BATCH, shuffle="none")
    assert labels(list(loader)) == labels(list(loader)) == list(range(N))


# -- resume --------------------------------------------------------------------------------------


def reference(loaders, path: str, epochs: int = 1, **kwargs: Any) -> list[list[list[int]]]:
    loader = loaders(path, BATCH, **kwargs)
    return [batch_labels(list(loader)) for _ in range(epochs)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k", [1, 5, 12])
def test_resume_yields_exactly_the_remaining_batches(loaders, path: str, mode: str, k: int) -> None:
    (ref,) = reference(loaders, path, shuffle=mode, seed=4)
    first = loaders(path, BATCH, shuffle=mode, seed=4)
    seen = batch_labels(take(first, k))
    assert seen == ref[:k]
    state = first.state_dict()
    assert state["phases"] == [[1, 1, BATCH, k]]  # world size, workers, batch size, batches
    resumed = loaders(path, BATCH, shuffle=mode, seed=4)
    resumed.load_state_dict(state)
    assert batch_labels(list(resumed)) == ref[k:]


def test_resume_twice_in_a_row_then_next_epoch(loaders, path: str) -> None:
    ref = reference(loaders, path, epochs=2, shuffle="chunks", seed=8)
    a = loaders(path, BATCH, shuffle="chunks", seed=8)
    got = batch_labels(take(a, 3))
    b = loaders(path, BATCH, shuffle="chunks", seed=8)
    b.load_state_dict(a.state_dict())
    got += batch_labels(take(b, 4))
    c = loaders(path, BATCH, shuffle="chunks", seed=8)
    c.load_state_dict(b.state_dict())
    got += batch_labels(list(c))
    assert got == ref[0]
    assert batch_labels(list(c)) == ref[1]  # and then the next epoch, as without interruption


@pytest.mark.parametrize(("before", "after"), [(1, 4), (4, 1)])
@pytest.mark.parametrize("mode", MODES)
def test_resume_with_different_num_threads(
    loaders, path: str, mode: str, before: int, after: int
) -> None:
    (ref,) = reference(loaders, path, shuffle=mode, seed=1)
    first = loaders(path, BATCH, shuffle=mode, seed=1, num_threads=before)
    seen = batch_labels(take(first, 6))
    resumed = loaders(path, BATCH, shuffle=mode, seed=1, num_threads=after, prefetch=3)
    resumed.load_state_dict(first.state_dict())
    assert seen + batch_labels(list(resumed)) == ref


def test_resume_in_a_later_epoch(loaders, path: str) -> None:
    ref = reference(loaders, path, epochs=3, shuffle="full", seed=1)
    first = loaders(path, BATCH, shuffle="full", seed=1)
    list(first)
    list(first)
    seen = batch_labels(take(first, 2))
    state = first.state_dict()
    assert (state["epoch"], state["phases"]) == (2, [[1, 1, BATCH, 2]])
    resumed = loaders(path, BATCH, shuffle="full", seed=1)
    resumed.load_state_dict(state)
    assert seen + batch_labels(list(resumed)) == ref[2]


def test_resume_with_drop_last(loaders, path: str) -> None:
    (ref,) = reference(loaders, path, shuffle="chunks", seed=3, drop_last=True)
    first = loaders(path, BATCH, shuffle="chunks", seed=3, drop_last=True)
    seen = batch_labels(take(first, 4))
    resumed = loaders(path, BATCH, shuffle="chunks", seed=3, drop_last=True)
    resumed.load_state_dict(first.state_dict())
    assert seen + batch_labels(list(resumed)) == ref
    assert len(ref) == N // BATCH


def test_resume_after_a_completed_epoch_loop(loaders, path: str) -> None:
    """State saved after ``for batch in loader`` finished: the resumed run starts epoch 1."""
    ref = reference(loaders, path, epochs=2, shuffle="chunks", seed=6)
    first = loaders(path, BATCH, shuffle="chunks", seed=6)
    list(first)
    state = first.state_dict()
    assert (state["epoch"], state["phases"]) == (1, [])
    resumed = loaders(path, BATCH, shuffle="chunks", seed=6)
    resumed.load_state_dict(state)
    assert batch_labels(list(resumed)) == ref[1]


@pytest.mark.parametrize("drop_last", [False, True])
def test_resume_from_state_taken_after_the_last_batch(loaders, path: str, drop_last: bool) -> None:
    ref = reference(loaders, path, epochs=2, shuffle="chunks", seed=6, drop_last=drop_last)
    first = loaders(path, BATCH, shuffle="chunks", seed=6, drop_last=drop_last)
    state = None
    for _ in first:
        state = first.state_dict()  # e.g. a checkpoint every k steps that lands on the last one
    assert state is not None
    resumed = loaders(path, BATCH, shuffle="chunks", seed=6, drop_last=drop_last)
    resumed.load_state_dict(state)
    assert batch_labels(list(resumed)) == ref[1]


def test_state_is_small_and_serialisable(loaders, path: str) -> None:
    loader = loaders(path, BATCH, shuffle="full", seed=12345)
    take(loader, 3)
    state = loader.state_dict()
    text = json.dumps(state)
    assert len(text.encode()) < 500
    assert all(isinstance(v, (int, str)) for k, v in state.items() if k != "phases")
    assert all(isinstance(x, int) for phase in state["phases"] for x in phase)
    resumed = loaders(path, BATCH, shuffle="full", seed=12345)
    resumed.load_state_dict(json.loads(text))
    (ref,) = reference(loaders, path, shuffle="full", seed=12345)
    assert batch_labels(list(resumed)) == ref[3:]


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 5},
        {"shuffle": "full"},
        {"shuffle": "none"},
        {"partition": "pad"},
        {"window_groups": 3},
    ],
)
def test_load_state_dict_refuses_different_settings(
    loaders, path: str, change: dict[str, Any]
) -> None:
    first = loaders(path, BATCH, shuffle="chunks", seed=4, rank=0, world_size=1)
    take(first, 2)
    state = first.state_dict()
    options = {"shuffle": "chunks", "seed": 4, "rank": 0, "world_size": 1, **change}
    other = loaders(path, BATCH, **options)
    with pytest.raises(ValueError, match="cannot resume"):
        other.load_state_dict(state)
    assert (other.epoch, other.state_dict()["phases"]) == (0, [])  # unchanged


def test_load_state_dict_refuses_a_different_dataset(loaders, path: str, tmp_path: Path) -> None:
    first = loaders(path, BATCH, seed=4)
    take(first, 2)
    other = loaders(make_file(tmp_path / "other.bale", n=N + 1), BATCH, seed=4)
    with pytest.raises(ValueError, match="num_rows"):
        other.load_state_dict(first.state_dict())


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batch=st.integers(1, 40),
    threads=st.integers(1, 4),
    prefetch=st.one_of(st.none(), st.integers(1, 6)),
    budget=st.sampled_from([(16 << 20) + 20_000, (16 << 20) + 100_000, 64 << 20, 1 << 30]),
    drop_last=st.booleans(),
)
def test_order_does_not_depend_on_memory_budget_batch_size_or_threads(
    path: str, batch: int, threads: int, prefetch: int | None, budget: int, drop_last: bool
) -> None:
    """The window is a function of the data: budgets, batch sizes, threads and prefetch change
    how much is read ahead, never which rows come in which order."""
    with Loader(path, 1, shuffle="chunks", seed=4, window_groups=3) as one:
        reference = np.concatenate([b["y"] for b in one]).tolist()
    with Loader(
        path,
        batch,
        shuffle="chunks",
        seed=4,
        window_groups=3,
        memory_budget=budget,
        num_threads=threads,
        prefetch=prefetch,
        drop_last=drop_last,
    ) as loader:
        got = [b["y"].tolist() for b in loader]
    assert all(len(b) == batch for b in got[:-1])
    flat = [y for b in got for y in b]
    assert flat == reference[: len(flat)]
    assert len(flat) == (len(reference) // batch * batch if drop_last else len(reference))


@pytest.mark.parametrize(("before", "after"), [(BATCH, 3), (3, 64)])
def test_resume_with_a_different_batch_size(path: str, before: int, after: int) -> None:
    with Loader(path, 1, shuffle="chunks", seed=4) as one:
        ref = np.concatenate([b["y"] for b in one]).tolist()
    with Loader(path, before, shuffle="chunks", seed=4) as first:
        seen = np.concatenate([b["y"] for b in take(first, 5)]).tolist()
        state = first.state_dict()
    with Loader(path, after, shuffle="chunks", seed=4) as resumed:
        resumed.load_state_dict(state)
        rest = np.concatenate([b["y"] for b in resumed]).tolist()
    assert seen + rest == ref


@pytest.mark.parametrize("prefetch", [1, 2, 50])
def test_prefetch_depths(loaders, path: str, prefetch: int) -> None:
    (ref,) = reference(loaders, path, shuffle="chunks", seed=2)
    loader = loaders(path, BATCH, shuffle="chunks", seed=2, prefetch=prefetch, num_threads=3)
    assert batch_labels(list(loader)) == ref


def test_prefetch_zero_is_refused_or_works(path: str) -> None:
    try:
        loader = Loader(path, BATCH, shuffle="none", prefetch=0)
    except ValueError:
        return
    with loader:
        result = run_with_timeout(lambda: labels(list(loader)))
    assert result.get("value") == list(range(N)), result


def test_pickled_loader_continues_where_it_was(loaders, path: str) -> None:
    loader = loaders(path, BATCH, shuffle="full", seed=3)
    it = iter(loader)
    seen = [next(it)["y"].tolist() for _ in range(3)]
    copy = pickle.loads(pickle.dumps(loader))
    try:
        rest = batch_labels(list(copy))
    finally:
        copy.close()
    assert seen + rest == reference(loaders, path, shuffle="full", seed=3)[0]
    it.close()


# -- ranks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("partition", ["drop", "pad"])
@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_ranks_share_an_epoch(
    loaders, path: str, mode: str, partition: str, world_size: int
) -> None:
    per_rank = []
    counts = set()
    for rank in range(world_size):
        loader = loaders(
            path,
            BATCH,
            shuffle=mode,
            seed=9,
            rank=rank,
            world_size=world_size,
            partition=partition,
        )
        loader.set_epoch(1)
        batches = list(loader)
        for batch in batches:
            check_aligned(batch)
        counts.add((len(batches), len(loader)))
        assert len(batches) == len(loader)
        per_rank.append(labels(batches))
    assert len(counts) == 1  # equal numbers of batches on every rank
    rows = [r for share in per_rank for r in share]
    assert len({len(share) for share in per_rank}) == 1
    if partition == "drop":
        assert len(rows) == len(set(rows))  # disjoint
        assert N - len(rows) < world_size  # all but fewer than world_size rows
        assert len(per_rank[0]) == N // world_size
    else:
        assert set(rows) == set(range(N))  # every row
        assert len(rows) - N < world_size
        assert len(per_rank[0]) == -(-N // world_size)


def test_detect_distributed_reads_launcher_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    assert detect_distributed() == (0, 1)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK and WORLD_SIZE must be set together"):
        detect_distributed()  # not a silent (0, 1): every rank would read the whole epoch
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert detect_distributed() == (2, 4)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match=r"not in 0\.\.WORLD_SIZE-1"):
        detect_distributed()
    monkeypatch.setenv("WORLD_SIZE", "four")
    with pytest.raises(ValueError, match="must be integers"):
        detect_distributed()


def test_loader_uses_detected_rank(monkeypatch: pytest.MonkeyPatch, loaders, path: str) -> None:
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    detected = loaders(path, BATCH, shuffle="none")
    assert (detected.rank, detected.world_size) == (3, 4)
    assert labels(list(detected)) == list(range(3 * (N // 4), 4 * (N // 4)))
    explicit = loaders(path, BATCH, shuffle="none", rank=0, world_size=1)
    assert labels(list(explicit)) == list(range(N))


def test_detect_distributed_checks_torch_distributed_against_the_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dist = pytest.importorskip("torch.distributed")
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 3)
    assert detect_distributed() == (1, 3)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert detect_distributed() == (1, 3)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match=r"torch\.distributed says rank 1 of 3"):
        detect_distributed()


# -- several files, columns, transforms ----------------------------------------------------------


@pytest.fixture
def three_files(tmp_path: Path) -> list[str]:
    # 17 + 40 + 23 rows, different row group sizes; y is the row number across all three.
    return [
        make_file(tmp_path / "a.bale", n=17, group=5, start=0),
        make_file(tmp_path / "b.bale", n=40, group=10, start=17),
        make_file(tmp_path / "c.bale", n=23, group=7, start=57),
    ]


@pytest.mark.parametrize("mode", MODES)
def test_several_files_are_one_dataset(loaders, three_files: list[str], mode: str) -> None:
    loader = loaders(three_files, BATCH, shuffle=mode, seed=2)
    assert loader.num_rows == 80
    assert len(loader) == 10
    batches = list(loader)
    assert len(batches) == 10
    for batch in batches:
        check_aligned(batch)
    rows = labels(batches)
    assert sorted(rows) == list(range(80))
    if mode == "none":
        assert rows == list(range(80))
    else:
        # Batches mix files (the order is over all rows, not file after file).
        assert rows != sorted(rows)


def test_several_files_resume(loaders, three_files: list[str]) -> None:
    (ref,) = reference(loaders, three_files, shuffle="chunks", seed=5)
    first = loaders(three_files, BATCH, shuffle="chunks", seed=5)
    seen = batch_labels(take(first, 4))
    resumed = loaders(three_files, BATCH, shuffle="chunks", seed=5)
    resumed.load_state_dict(first.state_dict())
    assert seen + batch_labels(list(resumed)) == ref


def test_files_with_different_columns_are_refused(path: str, tmp_path: Path) -> None:
    other = tmp_path / "other.bale"
    bale.write(other, {"y": np.arange(5)})
    with pytest.raises(BaleError, match="same columns"):
        Loader([path, str(other)], BATCH)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_failed_loader_leaks_no_file_descriptors(path: str, tmp_path: Path) -> None:
    other = tmp_path / "other.bale"
    bale.write(other, {"y": np.arange(5)})
    before = open_fds()
    with pytest.raises(KeyError):
        Loader(path, BATCH, columns=["nope"])
    with pytest.raises(BaleError):
        Loader([path, str(other)], BATCH)
    with pytest.raises(FileNotFoundError):
        Loader([path, str(tmp_path / "missing.bale")], BATCH)
    gc.collect()
    assert open_fds() == before


def test_columns_selection(loaders, path: str) -> None:
    loader = loaders(path, BATCH, shuffle="full", seed=1, columns=["y"])
    batches = list(loader)
    assert all(set(b) == {"y"} for b in batches)
    assert sorted(labels(batches)) == list(range(N))
    with pytest.raises(KeyError, match="nope"):
        Loader(path, BATCH, columns=["y", "nope"])


def test_row_transform_and_batch_transform(loaders, path: str) -> None:
    threads: set[str] = set()

    def per_row(row: dict[str, Any]) -> dict[str, Any]:
        threads.add(threading.current_thread().name)
        assert isinstance(row["x"], np.ndarray) and row["x"].shape == (2,)
        return {"y": row["y"], "square": row["y"] ** 2, "name": f"row-{int(row['y'])}"}

    def per_batch(batch: dict[str, Any]) -> dict[str, Any]:
        return {**batch, "size": np.full(len(batch["y"]), len(batch["y"]))}

    loader = loaders(
        path, BATCH, shuffle="chunks", seed=1, transform=per_row, batch_transform=per_batch
    )
    batches = list(loader)
    assert sorted(labels(batches)) == list(range(N))
    for batch in batches:
        assert set(batch) == {"y", "square", "name", "size"}
        np.testing.assert_array_equal(batch["square"], batch["y"] ** 2)
        assert batch["name"] == [f"row-{v}" for v in batch["y"].tolist()]
        np.testing.assert_array_equal(batch["size"], len(batch["y"]))
    assert threads and all(name.startswith("bale-loader") for name in threads)


def test_batch_transform_only(loaders, path: str) -> None:
    loader = loaders(path, BATCH, shuffle="none", batch_transform=lambda b: {"z": b["x"].sum(1)})
    batches = list(loader)
    assert all(set(b) == {"z"} for b in batches)
    np.testing.assert_array_equal(np.concatenate([b["z"] for b in batches]), np.zeros(N))


# -- errors --------------------------------------------------------------------------------------


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("mode", MODES)
def test_transform_error_reaches_the_consumer(loaders, path: str, mode: str) -> None:
    raised: list[Boom] = []

    def transform(row: dict[str, Any]) -> dict[str, Any]:
        if int(row["y"]) == 37:
            exc = Boom("bad row")
            raised.append(exc)
            raise exc
        return row

    loader = loaders(path, BATCH, shuffle=mode, seed=1, transform=transform, num_threads=4)
    result = run_with_timeout(lambda: list(loader))
    error = result.get("error")
    assert isinstance(error, BaleError), result
    assert error.__cause__ is raised[0]
    assert isinstance(error.__cause__, Boom)
    message = str(error)
    assert repr(path) in message
    assert re.search(r"\brow 37\b", message), message
    assert "Boom: bad row" in message
    assert error.path == path and error.rows == (37, 38)


def test_transform_error_names_the_file_and_row_within_it(loaders, three_files: list[str]) -> None:
    def transform(row: dict[str, Any]) -> dict[str, Any]:
        if int(row["y"]) == 60:  # third file (rows 57..79), its row 3
            raise ValueError("no")
        return row

    loader = loaders(three_files, BATCH, shuffle="full", seed=3, transform=transform)
    result = run_with_timeout(lambda: list(loader))
    error = result.get("error")
    assert isinstance(error, BaleError), result
    assert isinstance(error.__cause__, ValueError)
    assert error.path == three_files[2] and error.rows == (3, 4)
    assert repr(three_files[2]) in str(error) and re.search(r"\brow 3\b", str(error))


def test_batch_transform_error_reaches_the_consumer(loaders, path: str) -> None:
    def batch_transform(batch: dict[str, Any]) -> dict[str, Any]:
        if 50 in batch["y"]:
            raise Boom("bad batch")
        return batch

    loader = loaders(path, BATCH, shuffle="chunks", seed=2, batch_transform=batch_transform)
    result = run_with_timeout(lambda: list(loader))
    assert isinstance(result.get("error"), Boom), result


def test_transform_error_in_skip_mode_drops_the_row(loaders, path: str) -> None:
    def transform(row: dict[str, Any]) -> dict[str, Any]:
        if int(row["y"]) in (5, 77):
            raise Boom("bad row")
        return row

    loader = loaders(path, BATCH, shuffle="chunks", seed=1, transform=transform, on_error="skip")
    rows = labels(list(loader))
    assert sorted(rows) == [r for r in range(N) if r not in (5, 77)]
    assert loader.skipped_rows == 2


def test_close_after_break_stops_the_threads(path: str) -> None:
    baseline = threading.active_count()
    loader = Loader(path, 2, shuffle="chunks", seed=1, num_threads=4, window_groups=2)
    for i, _ in enumerate(loader):
        if i == 3:
            break
    assert threading.active_count() > baseline  # the workers were running
    loader.close()
    deadline = time.monotonic() + 5
    while threading.active_count() > baseline and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() <= baseline
    assert not [t for t in threading.enumerate() if t.name.startswith("bale-loader")]


def test_breaking_out_continues_the_same_epoch(loaders, path: str) -> None:
    (ref,) = reference(loaders, path, shuffle="chunks", seed=7)
    loader = loaders(path, BATCH, shuffle="chunks", seed=7)
    seen = []
    for i, batch in enumerate(loader):
        seen.append(batch["y"].tolist())
        if i == 4:
            break
    assert loader.epoch == 0
    assert seen + batch_labels(list(loader)) == ref
    assert loader.epoch == 1


@pytest.mark.parametrize("mode", MODES)
def test_corrupt_block_skip(loaders, path: str, mode: str) -> None:
    flip_block(path, 2, "y")  # rows 20..29
    loader = loaders(path, BATCH, shuffle=mode, seed=3, on_error="skip")
    batches = list(loader)
    for batch in batches:
        check_aligned(batch)
    assert sorted(labels(batches)) == [r for r in range(N) if not 20 <= r < 30]
    assert loader.skipped_rows == GROUP


@pytest.mark.parametrize("mode", MODES)
def test_corrupt_block_raise(loaders, path: str, mode: str) -> None:
    flip_block(path, 2, "y")
    loader = loaders(path, BATCH, shuffle=mode, seed=3)
    result = run_with_timeout(lambda: list(loader))
    error = result.get("error")
    assert isinstance(error, CorruptFileError), result
    assert (error.path, error.column, error.rows) == (path, "y", (20, 30))
    message = str(error)
    assert repr(path) in message and "'y'" in message and "rows 20..29" in message


def test_corrupt_block_of_an_unselected_column_is_not_read(loaders, path: str) -> None:
    flip_block(path, 2, "x")
    loader = loaders(path, BATCH, shuffle="chunks", seed=3, columns=["y"])
    assert sorted(labels(list(loader))) == list(range(N))


def test_corrupt_block_skip_with_several_files(loaders, three_files: list[str]) -> None:
    flip_block(three_files[1], 1, "y")  # global rows 27..36
    loader = loaders(three_files, BATCH, shuffle="none", on_error="skip")
    rows = labels(list(loader))
    assert rows == [r for r in range(80) if not 27 <= r < 37]
    assert loader.skipped_rows == 10


def test_skip_mode_corrupt_group_and_batch_transform_error(loaders, path: str) -> None:
    flip_block(path, 2, "y")  # rows 20..29

    def batch_transform(batch: dict[str, Any]) -> dict[str, Any]:
        # Tags its error with batch_index, as DecodeImages does.
        hits = np.flatnonzero(batch["y"] == 35)
        if len(hits):
            error = BaleError("cannot decode")
            error.batch_index = int(hits[0])  # type: ignore[attr-defined]
            raise error
        return batch

    loader = loaders(path, 64, shuffle="none", on_error="skip", batch_transform=batch_transform)
    rows = labels(list(loader))
    assert rows == [r for r in range(N) if not 20 <= r < 30 and r != 35]
    assert loader.skipped_rows == GROUP + 1


def test_a_loader_that_cannot_be_made_leaves_no_file_open(path: str) -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        with pytest.raises(ValueError, match="cannot hold one shuffle window"):
            Loader(path, BATCH, shuffle="chunks", window_groups=8, memory_budget=1 << 20)
    assert len(os.listdir("/proc/self/fd")) == before
    with pytest.raises(ValueError, match="window_groups must be >= 1"):
        Loader(path, BATCH, window_groups=0)  # not "the default"


def test_next_epochs_first_window_is_read_early(loaders, path: str) -> None:
    """While an epoch's last window is served, the next epoch's first window is read, so the
    next epoch's first batch does not wait for it; the batches are the same as without."""
    ref = reference(loaders, path, epochs=3, shuffle="chunks", seed=5)
    loader = loaders(path, BATCH, shuffle="chunks", seed=5)
    first = batch_labels(list(loader))
    assert loader._early is None  # not after a first epoch: it may be the only one
    second = batch_labels(list(loader))
    assert loader._early is not None  # epoch 2's first window, read ahead
    third = batch_labels(list(loader))  # uses it
    assert [first, second, third] == ref
    assert loader._early is not None
    loader.set_epoch(0)  # not the epoch read early: the early window is dropped, not served
    assert batch_labels(list(loader)) == ref[0]
    fresh = loaders(path, BATCH, shuffle="chunks", seed=5)
    fresh.set_epoch(2)
    assert batch_labels(list(fresh)) == ref[2]
