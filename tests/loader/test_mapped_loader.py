"""The Loader over uncompressed (mapped) columns yields exactly what it yields over compressed
ones: same order, same bytes, in every shuffle mode, across files, after a resume."""

from __future__ import annotations

import numpy as np
import pytest

import bale


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    raw, packed = [], []
    for part in range(2):
        n = 700 + 113 * part
        data = {
            "image": rng.integers(0, 255, (n, 6, 6, 3), dtype=np.uint8),
            "act": rng.standard_normal((n, 5)).astype(np.float32),
            "label": np.arange(n) + 10_000 * part,
            "name": [f"{part}-{i}" for i in range(n)],
        }
        raw.append(tmp_path / f"raw{part}.bale")
        packed.append(tmp_path / f"packed{part}.bale")
        bale.write(raw[-1], data, codecs={"image": "none", "act": "none"}, row_group_rows=64)
        bale.write(packed[-1], data, codecs={"image": "zstd", "act": "lz4"}, row_group_rows=64)
    return raw, packed


def _epoch(loader):
    return [
        {k: (v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in b.items()} for b in loader
    ]


@pytest.mark.parametrize("shuffle", ["chunks", "full", "none"])
def test_mapped_columns_give_the_same_batches(files, shuffle):
    raw, packed = files
    options = dict(shuffle=shuffle, seed=3, num_threads=2, window_groups=4)
    with bale.Loader(raw, 50, **options) as a, bale.Loader(packed, 50, **options) as b:
        assert a._files.mapped("image") and not b._files.mapped("image")
        for epoch in range(2):
            a.set_epoch(epoch)
            b.set_epoch(epoch)
            assert _epoch(a) == _epoch(b)


def test_mapped_columns_resume_exactly(files):
    raw, _ = files
    options = dict(shuffle="chunks", seed=1, num_threads=2, window_groups=3)
    with bale.Loader(raw, 32, **options) as full:
        expected = _epoch(full)
    with bale.Loader(raw, 32, **options) as first:
        seen = []
        for i, batch in enumerate(first):
            seen.append(
                {k: (v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in batch.items()}
            )
            if i == 9:
                state = first.state_dict()
                break
    with bale.Loader(raw, 32, **{**options, "num_threads": 1}) as second:
        second.load_state_dict(state)
        seen += _epoch(second)
    assert seen == expected


def test_mapped_pages_are_kept_when_the_file_fits_the_budget(files):
    raw, _ = files
    with bale.Loader(raw[0], 40, shuffle="chunks", window_groups=2) as loader:
        assert not loader._unmap_served_windows


def test_served_windows_are_unmapped(files):
    """A chunk-shuffled epoch over a mapped file larger than the memory budget releases each
    served window's pages."""
    raw, _ = files
    released = []
    with bale.Loader(
        raw[0],
        40,
        shuffle="chunks",
        window_groups=2,
        num_threads=2,
        memory_budget=(16 << 20) + (1 << 16),  # the fixed allowance and 64 KiB
    ) as loader:
        assert loader._unmap_served_windows  # the file is larger than the windows' budget
        mapped = loader._files.mapped_column(0, "image")
        original = mapped.release
        mapped.release = lambda groups: (
            released.append(np.asarray(groups).tolist()),
            original(groups),
        )  # type: ignore[method-assign]
        for _ in loader:
            pass
    # Every group is released once its window is served (a group split between two windows,
    # as the short last group can be, is released by both: harmless, pages just re-fault).
    groups = {g for call in released for g in call}
    assert groups == set(range(bale.open(raw[0]).num_row_groups))


@pytest.mark.parametrize("several_files", [False, True])
def test_skip_mode_with_a_whole_batch_in_a_damaged_group(tmp_path, several_files):
    """Uncompressed columns, skip mode, batches smaller than a row group: the batches whose rows
    all lie in the damaged group are left out (no empty batch, no crash merging nothing)."""
    paths = []
    for part in range(2 if several_files else 1):
        path = tmp_path / f"raw{part}.bale"
        data = {"image": np.full((40, 2, 2), part, np.uint8), "label": np.arange(40) + 100 * part}
        bale.write(path, data, codecs={"image": "none"}, row_group_rows=10)
        paths.append(path)
    with bale.open(paths[0]) as ds:
        record = ds.index.blocks[1, ds.schema.index("image")]
        offset = int(record["offset"]) + int(record["stored_size"]) // 2
    with open(paths[0], "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
    with bale.Loader(
        paths, 2, shuffle="chunks", window_groups=1, on_error="skip", seed=0
    ) as loader:
        batches = list(loader)
    assert all(len(b["label"]) > 0 for b in batches)
    labels = sorted(int(x) for b in batches for x in b["label"])
    expected = [r for p in range(len(paths)) for r in range(100 * p, 100 * p + 40)]
    assert labels == [r for r in expected if not 10 <= r < 20]
    assert loader.skipped_rows == 10
