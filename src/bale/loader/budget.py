"""The loader's memory plan: the default window size, and how the memory budget is spent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bale._core.dataset import Dataset, reader_of
from bale.loader.order import ShuffleMode

#: Two default windows, batches in flight and the fixed allowance (docs/DECISIONS.md).
DEFAULT_MEMORY_BUDGET = 3 << 29  # 1.5 GiB
#: Memory the loader uses whatever the window size (measured: about 16 MiB of growth beyond the
#: windows and buffers with 2 threads).
_FIXED_OVERHEAD_BYTES = 16 << 20
_INDEX_BYTES_PER_ROW = 2 * (8 + 8 + 1) + 4 * 8
#: Decoded bytes of a default shuffle window ("chunks"), counted over all of a file's columns.
#: A function of the data only, so that the order never depends on memory or speed settings.
#: 512 MiB keeps the shuffle quality of the earlier budget-sized windows (docs/DECISIONS.md).
DEFAULT_WINDOW_BYTES = 512 << 20


def default_window_groups(datasets: Sequence[Dataset]) -> int:
    """Row groups in a default "chunks" window: DEFAULT_WINDOW_BYTES of decoded data, counted
    over all columns. A function of the files only (not of the columns read or the memory
    budget), so the same files always give the same order."""
    group_bytes = max(1, max(reader_of(ds).decoded_group_bytes() for ds in datasets))
    return max(2, DEFAULT_WINDOW_BYTES // group_bytes)


@dataclass(frozen=True)
class DataSizes:
    """What the memory plan needs to know of the files, for the columns read."""

    group_bytes: int  # decoded bytes of the largest row group (at least 1)
    held_bytes: int  # the same, counting only the columns a window holds (not mapped)
    mapped_bytes: int  # decoded bytes of the mapped columns, all row groups
    rows_per_group: int  # median rows per row group (at least 1)
    num_row_groups: int
    num_files: int


@dataclass(frozen=True)
class MemoryPlan:
    """How a Loader spends its memory budget."""

    prefetch: int  # batches made ahead
    windows_ahead: int  # windows held at once: the one served and, when it fits, the next
    cache_bytes: int  # the block cache of each file
    unmap_served_windows: bool  # unmap mapped columns' pages once their window is served


def plan_memory(
    sizes: DataSizes,
    *,
    memory_budget: int,
    shuffle: ShuffleMode,
    batch_size: int,
    prefetch: int,
    num_threads: int,
    window_groups: int,
) -> MemoryPlan:
    """Split the memory budget.

    The budget holds the windows (the one served and, when it fits, the next one read ahead),
    the batches in flight, each thread's compressed and decoded row group while it fills a
    window, and a fixed allowance for the rest. It changes how much is read ahead (windows, then
    prefetched batches), never the order: a budget too small for one window is an error that
    says what to change. What is left once batches in flight and thread buffers are counted
    goes to the windows (or the block cache) and mapped pages."""
    group_bytes = sizes.group_bytes
    batch_bytes = batch_size * group_bytes // sizes.rows_per_group
    threads = num_threads * 2 * group_bytes
    free = memory_budget - _FIXED_OVERHEAD_BYTES - threads
    windows_ahead = 1
    if shuffle == "chunks":
        # Each row of a window also costs index entries: its row number and serving position
        # in the two windows (17 bytes) and in the order's cache of 4 windows (32 bytes).
        group_cost = sizes.held_bytes + _INDEX_BYTES_PER_ROW * sizes.rows_per_group
        window_groups = min(window_groups, sizes.num_row_groups)
        window_bytes = window_groups * group_cost
        for windows in (2, 1):
            fits = (free - windows * window_bytes) // max(1, batch_bytes)
            if fits >= 1:
                windows_ahead = windows
                prefetch = int(min(prefetch, fits))
                break
        else:
            need = window_bytes + batch_bytes + threads + _FIXED_OVERHEAD_BYTES
            raise ValueError(
                f"memory_budget={memory_budget} bytes cannot hold one shuffle window of "
                f"{window_groups} row groups ({window_bytes} bytes decoded) and a batch: give "
                f"memory_budget >= {need}, or a smaller window_groups= (which changes the order: "
                "resume with the same value)"
            )
    window_budget = max(0, free - prefetch * batch_bytes)
    # "full" mode reads batches straight from the files: its block cache gets the budget.
    # "chunks" decodes each row group once per window and needs no cache.
    if shuffle == "full":
        cache_bytes = window_budget // sizes.num_files
    elif shuffle == "none":  # a row group spans several batches: decode it once
        cache_bytes = (num_threads + 2) * group_bytes
    else:
        cache_bytes = 0
    # Uncompressed columns are read from the mapped files. Their pages are page cache, not
    # memory the loader allocates; still, when they would not fit in the windows' share of
    # the budget, served windows are unmapped so the process's RSS stays within it (at the
    # cost of mapping the pages again next epoch).
    return MemoryPlan(
        prefetch=prefetch,
        windows_ahead=windows_ahead,
        cache_bytes=cache_bytes,
        unmap_served_windows=sizes.mapped_bytes > window_budget,
    )
