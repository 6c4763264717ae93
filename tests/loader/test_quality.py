"""Shuffle quality (bale.loader.quality): the dispersion ratio, and what each shuffle mode gets."""

from __future__ import annotations

import numpy as np
import pytest

import bale
from bale.loader.quality import batch_dispersion, dispersion_ratio

CLASSES = 10
B = 32


def test_iid_batches_give_about_one() -> None:
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, CLASSES, B) for _ in range(3000)]
    assert dispersion_ratio(batches, np.full(CLASSES, 1 / CLASSES)) == pytest.approx(1, abs=0.15)


def test_iid_batches_with_unequal_shares_give_about_one() -> None:
    shares = np.array([0.5, 0.3, 0.15, 0.05, 0.0])  # an absent class does not count
    rng = np.random.default_rng(1)
    batches = [rng.choice(len(shares), B, p=shares) for _ in range(3000)]
    assert dispersion_ratio(batches, shares) == pytest.approx(1, abs=0.15)


def test_single_class_batches_give_the_batch_size() -> None:
    batches = [np.full(B, i % CLASSES) for i in range(50)]
    assert dispersion_ratio(batches, [1 / CLASSES] * CLASSES) == pytest.approx(B, rel=1e-12)


def test_perfectly_balanced_batches_give_zero() -> None:
    rng = np.random.default_rng(2)
    batches = [rng.permutation(np.repeat(np.arange(CLASSES), 3)) for _ in range(20)]
    assert dispersion_ratio(batches, [1 / CLASSES] * CLASSES) == 0.0
    assert dispersion_ratio([np.array([0, 1, 0, 1])], [0.5, 0.5]) == 0.0


def test_batch_dispersion_value() -> None:
    # counts (3, 1) against expected (2, 2): (1 + 1) / 2 = 1.0
    assert batch_dispersion(np.array([0, 0, 0, 1]), np.array([0.5, 0.5])) == pytest.approx(1.0)


def test_empty_batches_are_ignored_and_bad_input_refused() -> None:
    shares = [0.5, 0.5]
    assert dispersion_ratio([np.array([0, 0]), np.array([], np.int64)], shares) == pytest.approx(2)
    with pytest.raises(ValueError):
        dispersion_ratio([np.array([0, 0])], [1.0, 0.0])  # one class
    with pytest.raises(ValueError):
        dispersion_ratio([np.array([], np.int64)], shares)  # no non-empty batch


# -- end to end: a class-sorted file through the Loader ------------------------------------------


@pytest.fixture(scope="module")
def sorted_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    # 10 classes of 1280 rows each, sorted by class; 64-row groups (20 per class).
    path = tmp_path_factory.mktemp("quality") / "sorted.bale"
    bale.write(path, {"label": np.repeat(np.arange(CLASSES), 1280)}, row_group_rows=64)
    return str(path)


def loader_ratio(path: str, **kwargs: object) -> float:
    with bale.Loader(path, B, seed=0, drop_last=True, **kwargs) as loader:  # type: ignore[arg-type]
        batches = [batch["label"] for batch in loader]
        loader.set_epoch(1)
        batches += [batch["label"] for batch in loader]
    return dispersion_ratio(batches, [1 / CLASSES] * CLASSES)


def test_shuffle_modes_on_class_sorted_data(sorted_file: str) -> None:
    none = loader_ratio(sorted_file, shuffle="none")
    full = loader_ratio(sorted_file, shuffle="full")
    chunks = {w: loader_ratio(sorted_file, shuffle="chunks", window_groups=w) for w in (2, 16, 64)}
    assert none == pytest.approx(B, rel=0.05)  # every batch one class
    assert full == pytest.approx(1, abs=0.15)  # as good as i.i.d.
    # Chunks mode lies in between and gets better as the window grows.
    assert none > chunks[2] > chunks[16] > chunks[64] > full
    assert chunks[2] > 5
    assert chunks[64] < 3
