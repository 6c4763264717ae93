"""bale.adapters.torch: map-style and iterable datasets in DataLoader worker processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import bale  # noqa: E402
from bale.adapters.torch import TorchDataset, TorchIterableDataset, to_torch  # noqa: E402

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


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("shuffle", ["chunks", "full"])
def test_iterable_workers_split_batches(path: Path, shuffle: str) -> None:
    from torch.utils.data import DataLoader

    data = TorchIterableDataset(path, BATCH, shuffle=shuffle, seed=5, columns=["id", "blob"])
    want = loader_batches(path, shuffle=shuffle, seed=5, columns=["id", "blob"])
    got = list(DataLoader(data, batch_size=None, num_workers=2))
    ids = np.concatenate([b["id"].numpy() for b in got])
    assert sorted(ids.tolist()) == list(range(ROWS))  # the epoch exactly once
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):  # in order: the DataLoader interleaves workers
        assert_same_batch(g, w)


def test_iterable_in_spawned_workers(path: Path) -> None:
    from torch.utils.data import DataLoader

    data = TorchIterableDataset(path, 100, shuffle="full", seed=7, columns=["id"])
    loader = DataLoader(data, batch_size=None, num_workers=2, multiprocessing_context="spawn")
    want = [b["id"].tolist() for b in loader_batches_of(path, 100, shuffle="full", seed=7)]
    assert [b["id"].tolist() for b in loader] == want


def loader_batches_of(path: Path, batch_size: int, **kwargs: Any) -> list[dict[str, Any]]:
    with bale.Loader(path, batch_size, rank=0, world_size=1, columns=["id"], **kwargs) as loader:
        return list(loader)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_iterable_set_epoch_and_drop_last(path: Path) -> None:
    from torch.utils.data import DataLoader

    data = TorchIterableDataset(path, BATCH, shuffle="chunks", seed=1, drop_last=True)
    loader = DataLoader(data, batch_size=None, num_workers=2)
    with bale.Loader(path, BATCH, seed=1, drop_last=True, rank=0, world_size=1) as reference:
        for epoch in range(2):
            data.set_epoch(epoch)
            reference.set_epoch(epoch)
            got, want = list(loader), list(reference)
            assert len(got) == len(want) == ROWS // BATCH == len(data)
            for g, w in zip(got, want, strict=True):
                assert_same_batch(g, w)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_iterable_persistent_workers_advance_epochs(path: Path) -> None:
    from torch.utils.data import DataLoader

    data = TorchIterableDataset(path, BATCH, seed=2, columns=["id"])
    loader = DataLoader(data, batch_size=None, num_workers=2, persistent_workers=True)
    with bale.Loader(path, BATCH, seed=2, columns=["id"], rank=0, world_size=1) as reference:
        for _ in range(2):
            got = [b["id"].tolist() for b in loader]
            assert got == [b["id"].tolist() for b in reference]


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("consumed", [0, 5, 18, 19])
def test_iterable_resume_gives_exactly_the_rest(path: Path, consumed: int) -> None:
    from torch.utils.data import DataLoader

    kwargs: dict[str, Any] = {"shuffle": "chunks", "seed": 9, "columns": ["id"]}
    want = [b["id"].tolist() for b in loader_batches(path, **kwargs)]  # 19 batches
    data = TorchIterableDataset(path, BATCH, **kwargs)
    data.set_epoch(0)
    state: dict[str, Any] = data.state_dict(batches_seen=0)
    for seen, _batch in enumerate(DataLoader(data, batch_size=None, num_workers=2), start=1):
        if seen == consumed:
            state = data.state_dict(batches_seen=seen)
            break

    resumed = TorchIterableDataset(path, BATCH, **kwargs)
    resumed.load_state_dict(state)
    resumed.set_epoch(state["epoch"])
    rest = [b["id"].tolist() for b in DataLoader(resumed, batch_size=None, num_workers=2)]
    if consumed == len(want):  # a finished epoch resumes at the start of the next one
        assert state["epoch"] == 1 and state["position"] == 0
        with bale.Loader(path, BATCH, rank=0, world_size=1, **kwargs) as next_epoch:
            next_epoch.set_epoch(1)
            assert rest == [b["id"].tolist() for b in next_epoch]
    else:
        assert rest == want[consumed:]
        assert len(resumed) == len(want) - consumed

    # A second resume in the middle of the resumed iteration counts from the resumed position.
    if 0 < consumed < len(want) - 2:
        again = resumed.state_dict(batches_seen=2)
        third = TorchIterableDataset(path, BATCH, **kwargs)
        third.load_state_dict(again)
        third.set_epoch(0)
        assert [b["id"].tolist() for b in third] == want[consumed + 2 :]
        third.set_epoch(0)  # without a pending resume, set_epoch starts from the beginning
        assert [b["id"].tolist() for b in third] == want


def test_iterable_state_checks(path: Path) -> None:
    data = TorchIterableDataset(path, BATCH, seed=1)
    with pytest.raises(ValueError, match="batches_seen"):
        data.state_dict(batches_seen=len(data) + 1)
    other = TorchIterableDataset(path, BATCH, seed=2)
    with pytest.raises(ValueError, match="different settings"):
        other.load_state_dict(data.state_dict(batches_seen=1))


def test_iterable_pin_memory_is_harmless_without_accelerator(path: Path) -> None:
    data = TorchIterableDataset(path, BATCH, pin_memory=True, columns=["x"])
    first = next(iter(data))
    assert first["x"].shape == (BATCH, 3, 4)
    assert first["x"].is_pinned() == torch.accelerator.is_available()
