"""Epoch order (bale.loader.order): one global order per epoch, shared among consumers.

These are the guarantees the Loader builds on: every row once per epoch, equal disjoint shares
per consumer (rank x worker), each consumer reading its own stretch of row groups, windows that
tile the sequence, exact resume with any number of consumers, and an order that is identical on
every machine and independent of how many consumers read it.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bale.loader.order import Phase, epoch_order, permutation

MODES = ("chunks", "full", "none")
PARTITIONS = ("drop", "pad")

# Uneven row groups (the last one short), as a writer with row_group_rows=10 produces.
SIZES = [10] * 10 + [3]
N = sum(SIZES)


def full_sequence(order) -> np.ndarray:
    return order.rows(0, len(order))


def group_of(sizes, rows: np.ndarray) -> np.ndarray:
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return np.searchsorted(starts, rows, side="right") - 1


# -- permutation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 7, 100, 1000])
def test_permutation_is_a_permutation(n: int) -> None:
    p = permutation(n, 3, 4)
    assert p.dtype == np.int64
    assert sorted(p.tolist()) == list(range(n))


def test_permutation_is_deterministic_and_depends_on_the_key() -> None:
    a = permutation(200, 5, 1)
    np.testing.assert_array_equal(a, permutation(200, 5, 1))
    for other in [(5, 2), (6, 1), (5,), (5, 1, 0), (1, 5)]:
        assert not np.array_equal(a, permutation(200, *other)), other


def test_permutation_golden() -> None:
    # Golden values. If this changes, every user's shuffle order changed (and resumed runs would
    # see different rows): that needs a format/behaviour note, not just a new golden value.
    assert permutation(10, 1, 2).tolist() == [7, 8, 1, 4, 6, 2, 5, 3, 0, 9]


def test_epoch_order_golden() -> None:
    # Golden values, as above: a change here changes the order of every epoch for every user.
    sizes = [3, 3, 3, 1]
    chunks = epoch_order(sizes, mode="chunks", seed=7, epoch=1, window_groups=2)
    # Windows of two whole row groups of the shuffled stream: [group 3, group 0], [1, 2].
    assert [chunks.window_bounds(w) for w in range(chunks.num_windows)] == [(0, 4), (4, 10)]
    assert full_sequence(chunks).tolist() == [9, 1, 2, 0, 4, 6, 3, 8, 7, 5]
    full = epoch_order(sizes, mode="full", seed=7, epoch=1)
    assert full_sequence(full).tolist() == [5, 4, 3, 6, 1, 0, 9, 2, 7, 8]
    padded = epoch_order(
        sizes,
        mode="chunks",
        seed=7,
        epoch=1,
        rank=1,
        world_size=3,
        partition="pad",
        window_groups=1,
    )
    # Rank 1 serves stream positions 4..7 in the global order (windows of one row group here).
    assert full_sequence(padded).tolist() == [4, 5, 3, 6]


# -- one rank ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("epoch", [0, 1, 5])
def test_every_row_once_per_epoch(mode: str, epoch: int) -> None:
    order = epoch_order(SIZES, mode=mode, seed=11, epoch=epoch, window_groups=3)
    assert len(order) == N
    seq = full_sequence(order)
    assert seq.dtype == np.int64
    assert sorted(seq.tolist()) == list(range(N))


def test_none_mode_is_file_order() -> None:
    for epoch in range(3):
        order = epoch_order(SIZES, mode="none", seed=epoch, epoch=epoch, window_groups=2)
        np.testing.assert_array_equal(full_sequence(order), np.arange(N))


@pytest.mark.parametrize("mode", ["chunks", "full"])
def test_epochs_and_seeds_give_different_orders(mode: str) -> None:
    def seq(seed: int, epoch: int) -> list[int]:
        order = epoch_order(SIZES, mode=mode, seed=seed, epoch=epoch, window_groups=3)
        return full_sequence(order).tolist()

    orders = [seq(0, e) for e in range(4)]
    assert len({tuple(o) for o in orders}) == 4
    assert seq(1, 0) != orders[0]
    assert seq(0, 2) == orders[2]  # and reproducible
    assert orders[0] != list(range(N))


def test_chunks_mode_keeps_row_groups_together() -> None:
    """A window holds whole row groups (a shuffled stretch of them), not rows from everywhere."""
    sizes = [10] * 20
    order = epoch_order(sizes, mode="chunks", seed=3, epoch=0, window_groups=2)
    assert order.order.window_rows == 20
    for w in range(order.num_windows):
        groups = np.unique(group_of(sizes, order.window(w)))
        assert len(groups) == 2, (w, groups)
    # The row groups themselves are shuffled, not read in file order.
    stream_groups = [g for w in range(order.num_windows) for g in order.groups_of_window(w)]
    assert stream_groups != sorted(stream_groups)
    # ... and rows are shuffled within each window, not served group after group in file order.
    window = order.window(0)
    assert not np.array_equal(window, np.sort(window))
    assert any(np.any(np.diff(window[group_of(sizes, window) == g]) < 0) for g in range(20))


@pytest.mark.parametrize("mode", MODES)
def test_rows_of_any_range_equals_slicing(mode: str) -> None:
    order = epoch_order(SIZES, mode=mode, seed=2, epoch=3, window_groups=2)
    seq = full_sequence(order)
    rng = np.random.default_rng(0)
    ranges = [(0, 0), (0, 1), (0, N), (N, N), (19, 21), (20, 40), (5, 95), (N - 1, N)]
    ranges += [tuple(sorted(rng.integers(0, N + 1, 2).tolist())) for _ in range(50)]
    for a, b in ranges:
        np.testing.assert_array_equal(order.rows(a, b), seq[a:b], err_msg=f"rows({a}, {b})")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("window_groups", [1, 2, 3, 50])
def test_windows_tile_the_sequence(mode: str, window_groups: int) -> None:
    order = epoch_order(SIZES, mode=mode, seed=9, epoch=0, window_groups=window_groups)
    windows = [order.window(w) for w in range(order.num_windows)]
    np.testing.assert_array_equal(np.concatenate(windows), full_sequence(order))
    assert all(0 < len(w) <= order.order.window_rows for w in windows)
    for w, rows in enumerate(windows):
        np.testing.assert_array_equal(
            order.groups_of_window(w), np.unique(group_of(SIZES, rows)), err_msg=f"window {w}"
        )


# -- ranks ---------------------------------------------------------------------------------------


def test_share_arithmetic() -> None:
    def lengths(partition: str) -> list[int]:
        return [
            len(
                epoch_order(
                    [10], mode="none", seed=0, epoch=0, rank=r, world_size=3, partition=partition
                )
            )
            for r in range(3)
        ]

    assert lengths("drop") == [3, 3, 3]
    assert lengths("pad") == [4, 4, 4]
    for rank, world in [(-1, 2), (2, 2), (0, 0)]:
        with pytest.raises(ValueError, match="rank"):
            epoch_order([10], mode="none", seed=0, epoch=0, rank=rank, world_size=world)
    with pytest.raises(ValueError, match="worker"):
        epoch_order([10], mode="none", seed=0, epoch=0, worker=2, workers=2)


def test_invalid_mode_raises() -> None:
    with pytest.raises(ValueError, match="shuffle"):
        epoch_order(SIZES, mode="random", seed=0, epoch=0)  # type: ignore[arg-type]


def check_shares(sizes, mode, seed, epoch, world_size, partition, window_groups) -> None:
    n = int(sum(sizes))
    seqs = []
    for rank in range(world_size):
        order = epoch_order(
            sizes,
            mode=mode,
            seed=seed,
            epoch=epoch,
            rank=rank,
            world_size=world_size,
            partition=partition,
            window_groups=window_groups,
        )
        seq = full_sequence(order)
        assert len(seq) == len(order)
        assert seq.min(initial=0) >= 0 and seq.max(initial=0) < max(n, 1)
        # Windows tile the rank's sequence.
        windows = [order.window(w) for w in range(order.num_windows)]
        joined = np.concatenate(windows) if windows else np.zeros(0, np.int64)
        np.testing.assert_array_equal(joined, seq)
        seqs.append(seq)
    lengths = {len(s) for s in seqs}
    assert len(lengths) == 1, lengths  # equal shares
    length = lengths.pop()
    everything = np.concatenate(seqs)
    if partition == "drop":
        assert length == n // world_size
        assert len(np.unique(everything)) == len(everything)  # disjoint
        assert n - len(everything) < world_size  # all but fewer than world_size rows
    else:
        assert length == -(-n // world_size)
        assert set(everything.tolist()) == set(range(n))  # every row covered
        assert len(everything) - n < world_size  # only the padding repeats rows
    if mode == "none" and partition == "drop":
        np.testing.assert_array_equal(everything, np.arange(length * world_size))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("partition", PARTITIONS)
@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 5])
def test_rank_shares(mode: str, partition: str, world_size: int) -> None:
    check_shares(SIZES, mode, 4, 1, world_size, partition, 2)


def test_pad_wraps_to_the_start_of_the_stream() -> None:
    order = epoch_order([4, 3], mode="none", seed=0, epoch=0, rank=2, world_size=3, partition="pad")
    assert full_sequence(order).tolist() == [6, 0, 1]


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=25),
    mode=st.sampled_from(MODES),
    seed=st.integers(0, 2**64 - 1),
    epoch=st.integers(0, 1000),
    world_size=st.integers(1, 5),
    rank_fraction=st.floats(0, 1, exclude_max=True),
    partition=st.sampled_from(PARTITIONS),
    window_groups=st.integers(1, 8),
    data=st.data(),
)
def test_order_properties(
    sizes, mode, seed, epoch, world_size, rank_fraction, partition, window_groups, data
) -> None:
    n = sum(sizes)
    check_shares(sizes, mode, seed, epoch, world_size, partition, window_groups)
    # One rank in detail: rows(a, b) of any range is a slice of its sequence.
    rank = int(rank_fraction * world_size)
    order = epoch_order(
        sizes,
        mode=mode,
        seed=seed,
        epoch=epoch,
        rank=rank,
        world_size=world_size,
        partition=partition,
        window_groups=window_groups,
    )
    seq = full_sequence(order)
    for _ in range(3):
        a = data.draw(st.integers(0, len(order)))
        b = data.draw(st.integers(a, len(order)))
        np.testing.assert_array_equal(order.rows(a, b), seq[a:b], err_msg=f"rows({a}, {b})")
    for w in range(order.num_windows):
        np.testing.assert_array_equal(
            order.groups_of_window(w), np.unique(group_of(sizes, order.window(w)))
        )
    if world_size == 1:
        assert sorted(seq.tolist()) == list(range(n))
        if mode == "none":
            np.testing.assert_array_equal(seq, np.arange(n))
    # Pure: the same arguments give the same order.
    again = epoch_order(
        sizes,
        mode=mode,
        seed=seed,
        epoch=epoch,
        rank=rank,
        world_size=world_size,
        partition=partition,
        window_groups=window_groups,
    )
    np.testing.assert_array_equal(full_sequence(again), seq)


# -- consumers: ranks x workers, and resuming with any number of them ---------------------------


def consumer_sequences(sizes, consumers: int, history=(), **options) -> list[np.ndarray]:
    return [
        full_sequence(epoch_order(sizes, rank=c, world_size=consumers, history=history, **options))
        for c in range(consumers)
    ]


def test_workers_are_consumers_of_the_rank() -> None:
    """Worker w of rank r is consumer r * workers + w of world_size * workers."""
    options = dict(mode="chunks", seed=5, epoch=2, window_groups=2)
    for rank, world, worker, workers in [(0, 1, 1, 2), (1, 2, 0, 3), (2, 4, 1, 2)]:
        as_worker = epoch_order(
            SIZES, rank=rank, world_size=world, worker=worker, workers=workers, **options
        )
        as_rank = epoch_order(
            SIZES, rank=rank * workers + worker, world_size=world * workers, **options
        )
        np.testing.assert_array_equal(full_sequence(as_worker), full_sequence(as_rank))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("consumers", [2, 3, 4, 7])
def test_each_consumer_serves_the_global_order_restricted_to_its_rows(
    mode: str, consumers: int
) -> None:
    """The order does not depend on the number of consumers: each one serves its rows in the
    order the single-consumer (global) sequence has them."""
    options = dict(mode=mode, seed=3, epoch=1, window_groups=2)
    (global_order,) = consumer_sequences(SIZES, 1, **options)
    rank_of = np.empty(N, np.int64)
    rank_of[global_order] = np.arange(N)
    for seq in consumer_sequences(SIZES, consumers, **options):
        assert np.all(np.diff(rank_of[seq]) > 0)


@pytest.mark.parametrize("consumers", [2, 4, 8])
def test_each_consumer_reads_its_own_row_groups(consumers: int) -> None:
    """Consumers read disjoint stretches of the stream: together they touch each row group once,
    plus at most one shared group per boundary (not every group, as batch striping would)."""
    sizes = [10] * 64
    seqs = consumer_sequences(sizes, consumers, mode="chunks", seed=1, epoch=0, window_groups=4)
    touched = sum(len(np.unique(group_of(sizes, seq))) for seq in seqs)
    assert touched <= len(sizes) + consumers - 1


def simulate(sizes, phases, final_consumers, **options):
    """Serve an epoch through ``phases`` (each stopping part-way) and a last phase that runs to
    the end: every row each consumer served, per phase."""
    served = []
    history: list[Phase] = []
    for phase in [*phases, None]:
        consumers = phase.consumers if phase else final_consumers
        seqs = consumer_sequences(sizes, consumers, tuple(history), **options)
        for c, seq in enumerate(seqs):
            n = phase.rows_consumed(c, len(seq)) if phase else len(seq)
            served.append(seq[:n])
        if phase:
            history.append(phase)
    return np.concatenate(served) if served else np.zeros(0, np.int64)


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=30),
    mode=st.sampled_from(MODES),
    partition=st.sampled_from(PARTITIONS),
    seed=st.integers(0, 2**32),
    window_groups=st.integers(1, 6),
    phases=st.lists(
        st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 9), st.integers(0, 12)),
        max_size=3,
    ),
    final=st.integers(1, 6),
)
def test_resume_with_any_consumers_serves_every_row_once(
    sizes, mode, partition, seed, window_groups, phases, final
) -> None:
    n = sum(sizes)
    history = [Phase(*p) for p in phases]
    options = dict(mode=mode, seed=seed, epoch=0, partition=partition, window_groups=window_groups)
    got = simulate(sizes, history, final, **options)
    counts = np.bincount(got, minlength=n)
    if partition == "drop":
        assert counts.max(initial=0) <= 1  # never twice
        assert n - len(got) < final  # only the last phase drops, fewer rows than its consumers
    else:
        assert counts.min(initial=1) >= 1  # every row
        assert len(got) - n < sum(p.consumers for p in history) + final  # padding only


def test_resume_with_the_same_consumer_continues_the_same_sequence() -> None:
    options = dict(mode="chunks", seed=9, epoch=4, window_groups=3)
    (whole,) = consumer_sequences(SIZES, 1, **options)
    for batch, batches in [(8, 1), (5, 7), (1, 60), (10, 11)]:
        (rest,) = consumer_sequences(SIZES, 1, (Phase(1, 1, batch, batches),), **options)
        np.testing.assert_array_equal(rest, whole[batch * batches :])


def test_dataloader_workers_consume_in_turn() -> None:
    """A rank that received 5 batches from 2 workers got 3 from worker 0 and 2 from worker 1."""
    phase = Phase(world_size=2, workers=2, batch_size=4, batches=5)
    assert [phase.rows_consumed(c, 100) for c in range(4)] == [12, 8, 12, 8]
    assert phase.rows_consumed(0, 10) == 10  # never more than the share


def test_no_row_group_is_cut_between_windows() -> None:
    """Windows are whole row groups of the stream, even with a short group in the middle: no
    group is read and decoded by two windows."""
    sizes = [10] * 7 + [3] + [10] * 12
    for epoch in range(5):
        order = epoch_order(sizes, mode="chunks", seed=1, epoch=epoch, window_groups=3)
        seen: set[int] = set()
        for w in range(order.num_windows):
            groups = set(order.groups_of_window(w).tolist())
            assert not groups & seen
            assert len(groups) <= 3
            seen |= groups
        assert seen == set(range(len(sizes)))
