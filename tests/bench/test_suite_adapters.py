"""Every benchmark-suite adapter gives back exactly the rows it wrote: in order for a sequential
epoch, as a permutation for a shuffled one, row by row, and as a random batch (``get_rows``, the
suite's gather64). Tools not installed are skipped.

``bench`` is imported as the package it is, from the repository root (``python -m pytest``
puts the working directory on the path)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("simplejpeg")
pytest.importorskip("skimage")

from bench import photo_data
from bench.suite import adapters, measure
from bench.suite.adapters.base import Adapter, Unsupported
from bench.suite.data import Source, make_source

BATCH = 16


def _jpeg_source() -> Source:
    jpegs, labels = photo_data.jpeg_images(30, seed=3, size=(48, 64))
    order = np.argsort(labels, kind="stable")
    return make_source("jpeg", [jpegs[i] for i in order], labels[order])


def _act_source() -> Source:
    x = photo_data.sparse_activations(70, seed=3, channels=4, hw=8)
    return make_source("act", x, (np.arange(70) * 5) // 70)


def _uint8_source() -> Source:
    x = photo_data.uint8_images(50, seed=3, hw=8)
    return make_source("uint8", x, (np.arange(50) * 3) // 50)


SOURCES = {"jpeg": _jpeg_source, "act": _act_source, "uint8": _uint8_source}


def _digest(x: Any) -> str:
    data = bytes(x) if not isinstance(x, np.ndarray) else np.ascontiguousarray(x).tobytes()
    return hashlib.sha1(data).hexdigest()


def _rows(batches: Any, source: Source) -> list[tuple[str, int]]:
    out = []
    for x, labels in batches:
        assert len(x) == len(labels)
        for xi, label in zip(x, labels, strict=True):
            if not source.spec.is_bytes:
                assert xi.dtype == np.dtype(source.spec.dtype)
                assert tuple(xi.shape) == source.spec.shape
            out.append((_digest(xi), int(label)))
    return out


def _adapter(tool: str) -> Adapter:
    try:
        adapter = adapters.load(tool)
        adapter.check()
    except ImportError as exc:
        pytest.skip(f"{tool} not installed: {exc}")
    return adapter


@pytest.mark.filterwarnings("ignore")  # the tools' own deprecation chatter is not under test
@pytest.mark.parametrize("kind", ["jpeg", "uint8", "act"])
@pytest.mark.parametrize("tool", list(adapters.TOOLS))
def test_adapter_round_trip(tool: str, kind: str, tmp_path: Path) -> None:
    adapter = _adapter(tool)
    source = SOURCES[kind]()
    expected = [(_digest(source.x[i]), int(source.label[i])) for i in range(len(source))]

    adapter.write(source, tmp_path)
    adapter.open(tmp_path, source.spec)
    try:
        seq = _rows(adapter.iter_sequential(BATCH), source)
        assert (seq if adapter.ordered else sorted(seq)) == (
            expected if adapter.ordered else sorted(expected)
        )
        shuffled = _rows(adapter.iter_shuffled(BATCH, seed=1, epoch=0), source)
        assert sorted(shuffled) == sorted(expected)
        assert shuffled != expected  # class-sorted input: a shuffle must move rows
        for i in (0, len(source) // 2, len(source) - 1):
            try:
                x, label = adapter.get_row(i)
            except Unsupported:
                break
            assert (_digest(x), label) == expected[i]
        _check_get_rows(adapter, source, expected)
    finally:
        adapter.close()
    assert adapter.files(tmp_path), "the adapter wrote no files"
    assert isinstance(adapter.describe_store(tmp_path).get("compression"), str)


def _check_get_rows(adapter: Adapter, source: Source, expected: list[tuple[str, int]]) -> None:
    """A shuffled batch of distinct rows, as gather64 asks for it, comes back in that order."""
    n = len(source)
    idx = np.array([n - 1, 0, n // 2, 3, n // 2 + 1, 1], dtype=np.int64)
    idx = np.concatenate([idx, np.random.default_rng(5).permutation(n)[: n // 3]])
    idx = idx[np.sort(np.unique(idx, return_index=True)[1])]  # distinct, first-seen order
    try:
        x, labels = adapter.get_rows(idx)
    except Unsupported:
        return
    assert len(x) == len(labels) == len(idx)
    got = _rows([(x, labels)], source)
    assert got == [expected[i] for i in idx.tolist()]
    # the suite's own check of a gathered batch agrees
    measure.check_gather(adapter, source, idx)


def test_bale_uint8_rows_and_shuffle_cover_every_row(tmp_path: Path) -> None:
    adapter = _adapter("bale")
    source = _uint8_source()
    adapter.write(source, tmp_path)
    adapter.open(tmp_path, source.spec)
    try:
        x, labels = next(iter(adapter.iter_sequential(len(source))))
        np.testing.assert_array_equal(x, source.x)
        np.testing.assert_array_equal(labels, source.label)
        seen = np.concatenate([b[1] for b in adapter.iter_shuffled(7, seed=2, epoch=1)])
        np.testing.assert_array_equal(np.sort(seen), np.sort(source.label))
    finally:
        adapter.close()


def test_bale_random_access_layout_differs_only_in_frames(tmp_path: Path) -> None:
    default, ra = _adapter("bale"), _adapter("bale-ra")
    source = _uint8_source()
    notes = []
    for adapter in (default, ra):
        out = tmp_path / adapter.name.replace(" ", "_")
        out.mkdir()
        adapter.write(source, out)
        notes.append(adapter.describe_store(out))
    assert notes[0]["codec"] == notes[1]["codec"]
    assert notes[1]["segment_bytes"] < notes[0]["segment_bytes"]
    assert ra.name != default.name


def test_gather_indices_are_distinct_shuffled_and_fixed() -> None:
    first = measure.gather_indices(1000, 3, seed=0)
    again = measure.gather_indices(1000, 3, seed=0)
    assert [b.tolist() for b in first] == [b.tolist() for b in again]
    for batch in first:
        assert len(batch) == measure.GATHER == len(set(batch.tolist()))
        assert batch.tolist() != sorted(batch.tolist())
    assert [len(b) for b in measure.gather_indices(10, 2, seed=0)] == [10, 10]


def test_unknown_tool_is_named() -> None:
    with pytest.raises(ValueError, match="unknown tool 'parquet'"):
        adapters.load("parquet")
