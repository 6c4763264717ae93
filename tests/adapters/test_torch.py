"""bale.adapters.torch: map-style and iterable datasets in DataLoader worker processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import bale  # noqa: E402
from bale.adapters.torch import ChunkSampler, TorchDataset, TorchIterableDataset, to_torch  # noqa: E402

ROWS = 600
BATCH = 32


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    target = tmp_path_factory.mktemp("torch") / "rows.bale"
    bale.write(
        target,
        {
            "id": np.arange(ROWS, dtype=np.int64),
            "x": rng.standard_normal((ROWS, 3, 4)).astype(np.float32),
            "blob": [rng.bytes(int(n)) for n in rng.integers(0, 40, ROWS)],
        },
        row_group_rows=50,
    )
    return target


def loader_batches(path: Path, **kwargs: Any) -> list[dict[str, Any]]:
    with bale.Loader(path, BATCH, rank=0, world_size=1, **kwargs) as loader:
        return list(loader)


def assert_same_batch(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, np.ndarray):
            assert isinstance(got[key], torch.Tensor)
            np.testing.assert_array_equal(got[key].numpy(), value)
        else:
            assert got[key] == value


# -- to_torch ----------------------------------------------------------------------------------


def test_to_torch_converts_arrays_and_keeps_lists() -> None:
    readonly = np.arange(6, dtype=np.int16).reshape(2, 3)
    readonly.flags.writeable = False
    out = to_torch({"a": readonly, "s": np.float32(2.5), "b": [b"x", b"yz"], "t": torch.ones(2)})
    assert out["a"].dtype == torch.int16 and out["a"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert out["s"].shape == () and out["s"].item() == 2.5
    assert out["b"] == [b"x", b"yz"]
    assert torch.equal(out["t"], torch.ones(2))


def test_to_torch_keeps_bfloat16_bits() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    values = np.array([1.5, -2.0, 3.25], dtype=ml_dtypes.bfloat16)
    out = to_torch({"v": values})["v"]
    assert out.dtype == torch.bfloat16
    assert out.tolist() == [1.5, -2.0, 3.25]


# -- TorchDataset ------------------------------------------------------------------------------


def test_map_dataset_rows(path: Path) -> None:
    ds = TorchDataset(path)
    reference = bale.open(path).read()
    assert len(ds) == ROWS
    row = ds[7]
    assert row["id"].item() == 7 and row["id"].shape == ()
    np.testing.assert_array_equal(row["x"].numpy(), reference["x"][7])
    assert row["blob"] == reference["blob"][7]
    assert [r["id"].item() for r in ds.__getitems__([5, 2, 599])] == [5, 2, 599]
    with pytest.raises(KeyError):
        TorchDataset(path, columns=["nope"])


def test_map_dataset_transform_and_columns(path: Path) -> None:
    ds = TorchDataset(path, columns=["id", "x"], transform=_sum_x)
    image, label = ds[3]
    assert label.item() == 3
    assert image.item() == pytest.approx(float(bale.open(path).row(3)["x"].sum()), rel=1e-5)


def _sum_x(row: dict[str, Any]) -> tuple[Any, Any]:
    return row["x"].sum(), row["id"]


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("context", ["fork", "spawn", "forkserver"])
def test_map_dataset_in_workers(path: Path, context: str) -> None:
    from torch.utils.data import DataLoader

    reference = bale.open(path).read()
    loader = DataLoader(
        TorchDataset(path),
        batch_size=50,
        shuffle=True,
        num_workers=2,
        multiprocessing_context=context,
        generator=torch.Generator().manual_seed(0),
    )
    seen: list[int] = []
    for batch in loader:
        ids = batch["id"].tolist()
        seen.extend(ids)
        np.testing.assert_array_equal(batch["x"].numpy(), reference["x"][ids])
        assert batch["blob"] == [reference["blob"][i] for i in ids]
    assert sorted(seen) == list(range(ROWS))


# -- TorchIterableDataset ----------------------------------------------------------------------


def test_iterable_single_process_equals_loader(path: Path) -> None:
    data = TorchIterableDataset(path, BATCH, shuffle="chunks", seed=3)
    want = loader_batches(path, shuffle="chunks", seed=3)
    got = list(data)
    assert len(got) == len(want) == len(data)
    for g, w in zip(got, want, strict=True):
        assert_same_batch(g, w)
    data.close()
    assert [b["id"].tolist() for b in data] == [b["id"].tolist() for b in want]  # reopens


def worker_batches(
    path: Path, batch_size: int, workers: int, epoch: int = 0, **kwargs: Any
) -> list[dict[str, Any]]:
    """What a DataLoader with ``workers`` workers yields: one batch from each worker in turn,
    each worker serving its own share of the rank's rows (bale.Loader.iter_batches)."""
    with bale.Loader(path, batch_size, rank=0, world_size=1, **kwargs) as loader:
        per_worker = [
            list(loader.iter_batches(epoch, worker=w, num_workers=workers)) for w in range(workers)
        ]
    out = []
    for i in range(max(len(b) for b in per_worker)):
        out.extend(b[i] for b in per_worker if i < len(b))
    return out


def ids_of(batches: list[dict[str, Any]]) -> list[int]:
    return [int(i) for b in batches for i in np.asarray(b["id"]).tolist()]


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("shuffle", ["chunks", "full"])
def test_iterable_workers_split_rows(path: Path, shuffle: str) -> None:
    from torch.utils.data import DataLoader

    options: dict[str, Any] = {"shuffle": shuffle, "seed": 5, "columns": ["id", "blob"]}
    data = TorchIterableDataset(path, BATCH, **options)
    got = list(DataLoader(data, batch_size=None, num_workers=2))
    assert sorted(ids_of(got)) == list(range(ROWS))  # the epoch exactly once
    want = worker_batches(path, BATCH, 2, **options)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):  # in order: the DataLoader interleaves workers
        assert_same_batch(g, w)
    if shuffle == "chunks":  # each worker read its own row groups (one may be shared)
        groups = [{i // 50 for i in ids_of(got[w::2])} for w in range(2)]
        assert len(groups[0] & groups[1]) <= 1


def test_iterable_in_spawned_workers(path: Path) -> None:
    from torch.utils.data import DataLoader

    data = TorchIterableDataset(path, 100, shuffle="full", seed=7, columns=["id"])
    loader = DataLoader(data, batch_size=None, num_workers=2, multiprocessing_context="spawn")
    want = worker_batches(path, 100, 2, shuffle="full", seed=7, columns=["id"])
    assert [b["id"].tolist() for b in loader] == [b["id"].tolist() for b in want]


def test_a_batching_dataloader_is_refused(path: Path) -> None:
    from torch.utils.data import DataLoader

    data = TorchIterableDataset(path, BATCH, columns=["id"])
    with pytest.raises(ValueError, match="batch_size=None"):
        next(iter(DataLoader(data, batch_size=4)))
    assert next(iter(DataLoader(data, batch_size=None)))["id"].shape == (BATCH,)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_iterable_set_epoch_and_drop_last(path: Path) -> None:
    from torch.utils.data import DataLoader

    data = TorchIterableDataset(path, BATCH, shuffle="chunks", seed=1, drop_last=True)
    loader = DataLoader(data, batch_size=None, num_workers=2)
    for epoch in range(2):
        data.set_epoch(epoch)
        got = list(loader)
        want = worker_batches(path, BATCH, 2, epoch, seed=1, drop_last=True)
        assert len(got) == len(want) == 2 * ((ROWS // 2) // BATCH)
        for g, w in zip(got, want, strict=True):
            assert_same_batch(g, w)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_iterable_persistent_workers_advance_epochs(path: Path) -> None:
    from torch.utils.data import DataLoader

    data = TorchIterableDataset(path, BATCH, seed=2, columns=["id"])
    loader = DataLoader(data, batch_size=None, num_workers=2, persistent_workers=True)
    for epoch in range(2):
        got = [b["id"].tolist() for b in loader]
        want = worker_batches(path, BATCH, 2, epoch, seed=2, columns=["id"])
        assert got == [b["id"].tolist() for b in want]


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes:UserWarning")
@pytest.mark.parametrize("consumed", [0, 5, 17, 20])
@pytest.mark.parametrize(("batch_after", "workers_after"), [(BATCH, 2), (13, 3), (64, 0)])
def test_iterable_resume_serves_every_row_once(
    path: Path, consumed: int, batch_after: int, workers_after: int
) -> None:
    """Stop after ``consumed`` batches from 2 workers, resume with another batch size and
    number of workers: the two runs together serve the epoch's rows exactly once."""
    from torch.utils.data import DataLoader

    kwargs: dict[str, Any] = {"shuffle": "chunks", "seed": 9, "columns": ["id"]}
    data = TorchIterableDataset(path, BATCH, **kwargs)
    total = len(worker_batches(path, BATCH, 2, **kwargs))  # 20: 10 per worker, 300 rows each
    seen: list[int] = []
    state: dict[str, Any] = data.state_dict(0, num_workers=2)
    for n, batch in enumerate(DataLoader(data, batch_size=None, num_workers=2), start=1):
        if n > consumed:
            break
        seen.extend(batch["id"].tolist())
        state = data.state_dict(n, num_workers=2)
    json.dumps(state)  # a few numbers

    resumed = TorchIterableDataset(path, batch_after, **kwargs)
    resumed.load_state_dict(state)
    resumed.set_epoch(state["epoch"])
    loader = DataLoader(resumed, batch_size=None, num_workers=workers_after)
    rest = [i for b in loader for i in b["id"].tolist()]
    if consumed == total:  # a finished epoch resumes at the start of the next one
        assert (state["epoch"], state["phases"]) == (1, [])
        assert sorted(rest) == list(range(ROWS))
    else:
        both = seen + rest
        assert len(set(both)) == len(both)  # never twice
        # partition="drop": fewer rows than the resumed run has consumers may be left out.
        assert ROWS - len(both) < max(1, workers_after)
        if consumed:
            assert state["phases"] == [[1, 2, BATCH, consumed]]


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes:UserWarning")
def test_iterable_resume_twice_with_changing_workers(path: Path) -> None:
    from torch.utils.data import DataLoader

    kwargs: dict[str, Any] = {"shuffle": "chunks", "seed": 4, "columns": ["id"]}
    seen: list[int] = []
    state: dict[str, Any] | None = None
    for workers, batch, stop in [(2, BATCH, 5), (3, 10, 7), (0, 50, None)]:
        data = TorchIterableDataset(path, batch, **kwargs)
        if state is not None:
            data.load_state_dict(state)
            data.set_epoch(state["epoch"])
        for n, b in enumerate(DataLoader(data, batch_size=None, num_workers=workers), start=1):
            seen.extend(b["id"].tolist())
            if n == stop:
                state = data.state_dict(n, num_workers=workers)
                break
    assert len(set(seen)) == len(seen) and ROWS - len(seen) < 3  # "drop": fewer than 3 left out
    assert state is not None and len(state["phases"]) == 2


def test_iterable_state_checks(path: Path) -> None:
    data = TorchIterableDataset(path, BATCH, seed=1)
    with pytest.raises(ValueError, match="batches_seen"):
        data.state_dict(len(data) + 1)
    other = TorchIterableDataset(path, BATCH, seed=2)
    with pytest.raises(ValueError, match="different settings"):
        other.load_state_dict(data.state_dict(1))


def test_iterable_pin_memory_is_harmless_without_accelerator(path: Path) -> None:
    data = TorchIterableDataset(path, BATCH, pin_memory=True, columns=["x"])
    first = next(iter(data))
    assert first["x"].shape == (BATCH, 3, 4)
    assert first["x"].is_pinned() == torch.accelerator.is_available()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")  # torchdata 0.11
@pytest.mark.parametrize("workers", [0, 2])
def test_stateful_dataloader_checkpoints_without_bookkeeping(path: Path, workers: int) -> None:
    """torchdata's StatefulDataLoader asks each worker's copy for its state itself."""
    stateful = pytest.importorskip("torchdata.stateful_dataloader")
    kwargs: dict[str, Any] = {"shuffle": "chunks", "seed": 6, "columns": ["id"]}
    want = [b["id"].tolist() for b in worker_batches(path, BATCH, max(workers, 1), **kwargs)]
    first = stateful.StatefulDataLoader(
        TorchIterableDataset(path, BATCH, **kwargs), batch_size=None, num_workers=workers
    )
    seen = []
    for n, batch in enumerate(first, start=1):
        seen.append(batch["id"].tolist())
        if n == 7:
            checkpoint = first.state_dict()
            break
    json.dumps(checkpoint)
    second = stateful.StatefulDataLoader(
        TorchIterableDataset(path, BATCH, **kwargs), batch_size=None, num_workers=workers
    )
    second.load_state_dict(checkpoint)
    rest = [b["id"].tolist() for b in second]
    assert seen + rest == want


# -- ChunkSampler: the chunk-aware order for map-style datasets ---------------------------------


def test_chunk_sampler_serves_the_loader_order(path: Path) -> None:
    from torch.utils.data import DataLoader

    ds = TorchDataset(path, columns=["id"])
    sampler = ChunkSampler(ds, seed=3, window_groups=2, rank=0, world_size=1)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        got = [b["id"].tolist() for b in DataLoader(ds, batch_size=BATCH, sampler=sampler)]
        with bale.Loader(path, BATCH, seed=3, window_groups=2, rank=0, world_size=1) as loader:
            loader.set_epoch(epoch)
            assert got == [b["id"].tolist() for b in loader]  # one order function for both
    assert len(sampler) == ROWS


def test_chunk_sampler_batches_read_few_row_groups(path: Path) -> None:
    """The point of the sampler: a batch of 32 touches the groups of one window (2 here), where
    a uniformly shuffled batch touches most of the file's 12 groups."""
    from torch.utils.data import DataLoader

    ds = TorchDataset(path, columns=["id"])
    chunked = DataLoader(ds, batch_size=BATCH, sampler=ChunkSampler(ds, seed=1, window_groups=2))
    shuffled = DataLoader(
        ds, batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(1)
    )

    def groups_per_batch(loader: Any) -> float:
        return float(np.mean([len({i // 50 for i in b["id"].tolist()}) for b in loader]))

    assert groups_per_batch(chunked) <= 3  # a batch may straddle two windows
    assert groups_per_batch(shuffled) > 8


@pytest.mark.parametrize("world_size", [2, 3])
def test_chunk_sampler_ranks_share_the_epoch(path: Path, world_size: int) -> None:
    shares = [
        list(ChunkSampler(path, seed=2, rank=r, world_size=world_size, window_groups=2))
        for r in range(world_size)
    ]
    assert len({len(s) for s in shares}) == 1  # equal: no rank waits
    everything = [i for s in shares for i in s]
    assert len(set(everything)) == len(everything) and ROWS - len(everything) < world_size
    assert list(ChunkSampler(path, shuffle=False, rank=0, world_size=1)) == list(range(ROWS))


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("workers", [0, 2])
def test_num_batches_counts_what_the_dataloader_yields(path: Path, workers: int) -> None:
    from torch.utils.data import DataLoader

    data = TorchIterableDataset(path, 64, seed=1, columns=["id"])  # 600 rows
    got = list(DataLoader(data, batch_size=None, num_workers=workers))
    assert data.num_batches(workers) == len(got)
    assert len(data) == 10 and data.num_batches(2) == 10  # 300 rows each: 5 batches per worker


# -- hand-over from DataLoader workers through reused shared memory ----------------------------


@pytest.fixture
def pool_small_batches(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Pool this module's small batches too (forked workers inherit the setting)."""
    from bale.adapters import _handover

    monkeypatch.setattr(_handover, "MIN_POOLED_BYTES", 1)
    return _handover


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:Length of IterableDataset:UserWarning")
def test_worker_batches_come_through_reused_slots(path: Path, pool_small_batches: Any) -> None:
    from torch.utils.data import DataLoader

    data = TorchIterableDataset(path, BATCH, shuffle="chunks", seed=3)
    loader = DataLoader(data, batch_size=None, num_workers=2, persistent_workers=True)
    before = pool_small_batches.rebuilt_batches
    for epoch in range(2):
        want = worker_batches(path, BATCH, 2, epoch, seed=3)
        count = 0
        for got, expected in zip(loader, want, strict=True):
            assert_same_batch(got, expected)  # then dropped, as a training loop does
            count += 1
        assert count == len(want)
    # Every batch came through a slot: the training loop let go of each before the slots ran out.
    assert pool_small_batches.rebuilt_batches - before == 2 * len(want)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_batches_kept_by_the_training_loop_are_never_overwritten(
    path: Path, pool_small_batches: Any
) -> None:
    from torch.utils.data import DataLoader

    data = TorchIterableDataset(path, 8, shuffle="chunks", seed=4, columns=["id", "x"])
    kept = list(DataLoader(data, batch_size=None, num_workers=2))  # 76 batches, 6 slots each
    views = [b["x"][1:] for b in kept]  # views keep a slot too
    want = worker_batches(path, 8, 2, seed=4, columns=["id", "x"])
    for g, w, v in zip(kept, want, views, strict=True):
        assert_same_batch(g, w)
        np.testing.assert_array_equal(v.numpy(), w["x"][1:])


def test_a_slot_is_reused_only_when_every_view_is_gone(pool_small_batches: Any) -> None:
    import gc
    import pickle
    from multiprocessing.reduction import ForkingPickler

    import torch.multiprocessing

    handover = pool_small_batches.WorkerHandover(num_workers=1, slots=2)

    def batch(value: int) -> dict[str, Any]:
        return {"x": torch.full((4, 8), value, dtype=torch.float32), "name": ["a"] * 4}

    def hand_over(value: int) -> dict[str, Any]:
        return pickle.loads(ForkingPickler.dumps(handover.place(batch(value))))

    first, second = hand_over(1), hand_over(2)
    assert first["name"] == ["a"] * 4 and torch.equal(first["x"], batch(1)["x"])
    assert isinstance(handover.place(batch(3)), dict)  # both slots busy: PyTorch's way
    assert handover.unpooled == 1 and handover.pooled == 2
    kept = first["x"][2:].numpy()  # a NumPy view of a tensor keeps the slot
    del first
    gc.collect()
    assert isinstance(handover.place(batch(4)), dict) and handover.unpooled == 2
    del kept, second
    gc.collect()
    third = hand_over(5)
    assert handover.pooled == 3 and torch.equal(third["x"], batch(5)["x"])


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_users_collate_fn_gets_plain_tensors(path: Path, pool_small_batches: Any) -> None:
    from torch.utils.data import DataLoader

    def collate(batch: Any) -> Any:
        assert isinstance(batch, dict) and isinstance(batch["x"], torch.Tensor)
        return batch

    data = TorchIterableDataset(path, BATCH, columns=["id", "x"])
    before = pool_small_batches.rebuilt_batches
    got = list(DataLoader(data, batch_size=None, num_workers=2, collate_fn=collate))
    assert sorted(ids_of(got)) == list(range(ROWS))
    assert pool_small_batches.rebuilt_batches == before


class _Relabelled(TorchIterableDataset):
    """A user's subclass that edits each batch on its way out: it must see plain dicts."""

    def __iter__(self) -> Any:
        for batch in super().__iter__():
            assert type(batch) is dict
            yield {**batch, "id": batch["id"] + 1000}


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_wrapping_subclass_gets_plain_batches(path: Path, pool_small_batches: Any) -> None:
    from torch.utils.data import DataLoader

    data = _Relabelled(path, BATCH, columns=["id", "x"])
    before = pool_small_batches.rebuilt_batches
    kept = list(DataLoader(data, batch_size=None, num_workers=2))
    assert sorted(ids_of(kept)) == list(range(1000, 1000 + ROWS))
    assert pool_small_batches.rebuilt_batches == before
