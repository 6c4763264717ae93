"""bale.pack: order (seeded shuffle, bucket shuffle), workers, codecs, bad input, cleanup, report."""

from __future__ import annotations

import importlib
import io
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import simplejpeg
import skimage.data as skdata
from PIL import Image

import bale
import bale.importers.bcolz
from bale import BaleError, CodecError, SchemaError, TargetExistsError
from bale.importers.base import RowSource, SourceBatch
from bale.importers.image_folder import ImageFolderSource
from bale.ops.pack import PackReport, pack, pack_splits, shuffle_keys

QUIET: dict[str, Any] = {"progress": False, "workers": 1}
pack_module = importlib.import_module("bale.ops.pack")
buckets_module = importlib.import_module("bale.ops.pack._buckets")
workers_module = importlib.import_module("bale.ops.pack._workers")


def jpeg(array: np.ndarray) -> bytes:
    return bytes(simplejpeg.encode_jpeg(np.ascontiguousarray(array), quality=85))


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def make_folder(
    root: Path, classes: Sequence[str] = ("cat", "coffee", "rocket"), n: int = 5
) -> dict[str, bytes]:
    """Class folders of real photo crops plus one PNG; returns relative path -> bytes."""
    photos = [skdata.chelsea(), skdata.coffee(), skdata.rocket(), skdata.astronaut()]
    files: dict[str, bytes] = {}
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        photo = photos[c % len(photos)]
        for i in range(n):
            files[f"{name}/{i:02d}.jpg"] = jpeg(
                photo[i * 7 : i * 7 + 50 + 3 * i, i * 5 : i * 5 + 64]
            )
    files[f"{classes[0]}/zz.png"] = png(photos[1][:30, :40])
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    return files


@pytest.fixture
def photos(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "photos"
    return root, make_folder(root)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


class Counting(RowSource):
    """Rows i = (x: [i, i*2, i*3] int64, s: "row i"), read in order only (like HDF5 chunks)."""

    def __init__(self, n: int, *, random_access: bool = False, fail_at: int | None = None) -> None:
        self.path = f"counting-{n}"
        self.n = n
        self._random = random_access
        self.fail_at = fail_at
        self.reads: list[tuple[int, int]] = []

    @property
    def num_rows(self) -> int:
        return self.n

    @property
    def random_access(self) -> bool:
        return self._random

    @property
    def row_nbytes_hint(self) -> int:
        return 40

    def _rows(self, rows: np.ndarray) -> SourceBatch:
        if self.fail_at is not None and len(rows) and rows.max() >= self.fail_at:
            raise KeyboardInterrupt
        x = rows[:, None] * np.array([1, 2, 3], np.int64)
        return SourceBatch({"x": x, "s": [f"row {i}" for i in rows.tolist()]}, rows)

    def read(self, start: int, stop: int) -> SourceBatch:
        self.reads.append((start, stop))
        return self._rows(np.arange(start, stop, dtype=np.int64))

    def take(self, rows: Sequence[int] | np.ndarray) -> SourceBatch:
        return self._rows(np.asarray(rows, np.int64))


def expected_order(n: int, seed: int) -> np.ndarray:
    return np.argsort(shuffle_keys(np.arange(n), seed))


# -- image folders: bytes, labels, order ----------------------------------------------------------


def test_pack_stores_each_file_byte_for_byte(
    tmp_path: Path, photos: tuple[Path, dict[str, bytes]]
) -> None:
    root, files = photos
    report = pack(root, tmp_path / "out.bale", **QUIET)
    assert isinstance(report, PackReport)
    with bale.open(tmp_path / "out.bale") as ds:
        assert len(ds) == len(files) == report.rows
        data = ds.read()
        classes = ds.metadata["classes"]
        assert classes == ["cat", "coffee", "rocket"]
        for path, image, label in zip(data["path"], data["image"], data["label"], strict=True):
            assert image == files[path] == (root / path).read_bytes()
            assert classes[label] == path.split("/")[0]
        info = ds.metadata["bale.pack"]
    assert info == {
        "shuffled": True,
        "seed": 0,
        "shuffle_method": "permuted reads",
        "source": str(root),
        "source_kind": "image_folder",
        "rows": len(files),
        "skipped": 0,
    }
    assert report.file_bytes == os.path.getsize(tmp_path / "out.bale")
    assert report.data_bytes == sum(len(d) + len(p) for p, d in files.items()) + 8 * len(files)
    assert report.rows_per_second > 0 and report.mb_per_second > 0
    assert leftovers(tmp_path) == ["out.bale", "photos"]


def test_shuffled_order_is_the_seeded_permutation(
    tmp_path: Path, photos: tuple[Path, dict[str, bytes]]
) -> None:
    root, files = photos
    source_order = sorted(files)  # rows are numbered in sorted path order
    orders = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        pack(root, tmp_path / f"{name}.bale", seed=seed, **QUIET)
        with bale.open(tmp_path / f"{name}.bale") as ds:
            orders[name] = ds["path"][:]
            assert ds.metadata["bale.pack"]["seed"] == seed
    assert orders["a"] == [source_order[i] for i in expected_order(len(files), 3)]
    assert orders["a"] == orders["b"]  # same seed, same order
    assert orders["a"] != orders["c"] and sorted(orders["c"]) == source_order
    assert orders["a"] != source_order

    pack(root, tmp_path / "plain.bale", shuffle=False, **QUIET)
    with bale.open(tmp_path / "plain.bale") as ds:
        assert ds["path"][:] == source_order
        assert ds.metadata["bale.pack"]["shuffled"] is False
        assert ds.metadata["bale.pack"]["seed"] is None


def test_size_stores_decoded_arrays(tmp_path: Path, photos: tuple[Path, dict[str, bytes]]) -> None:
    root, files = photos
    report = pack(root, tmp_path / "out.bale", size=(20, 30), resize_mode="stretch", **QUIET)
    with bale.open(tmp_path / "out.bale") as ds:
        assert ds.schema.describe()["image"] == "uint8[20,30,3]"
        assert ds.metadata["image_size"] == [20, 30]
        row = ds["path"][:].index("cat/zz.png")
        image = ds[row]["image"]
    original = skdata.coffee()[:30, :40]
    resized = np.asarray(Image.fromarray(original).resize((30, 20), Image.Resampling.BILINEAR))
    assert np.abs(image.astype(int) - resized.astype(int)).mean() < 2
    assert report.data_bytes == len(files) * (20 * 30 * 3 + 8) + sum(len(p) for p in files)


def test_workers_give_the_same_file_as_one_process(
    tmp_path: Path, photos: tuple[Path, dict[str, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = photos
    pools: list[int] = []

    class Pool(workers_module.ProcessPoolExecutor):  # type: ignore[misc, name-defined]
        def __init__(self, workers: int, **kwargs: Any) -> None:
            pools.append(workers)
            super().__init__(workers, **kwargs)

    monkeypatch.setattr(workers_module, "ProcessPoolExecutor", Pool)
    earlier = set(multiprocessing.active_children())  # an earlier test's, still exiting
    options: dict[str, Any] = {"size": (16, 16), "progress": False, "memory_budget": 8 << 10}
    pack(root, tmp_path / "one.bale", workers=1, **options)
    assert pools == []
    pack(root, tmp_path / "two.bale", workers=2, **options)
    assert pools == [2]
    with bale.open(tmp_path / "one.bale") as one, bale.open(tmp_path / "two.bale") as two:
        a, b = one.read(), two.read()
    assert a["path"] == b["path"]
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
    assert set(multiprocessing.active_children()) <= earlier  # pack's workers stopped


class _Clock:
    """``time`` for the workers module: reads take the seconds the source says, not the
    machine's (a loaded test machine made a fast source look slow)."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class Picklable(Counting):
    def __init__(self, n: int, delay: float = 0.0, clock: _Clock | None = None) -> None:
        super().__init__(n, random_access=True)
        self.delay = delay
        self.clock = clock

    @property
    def picklable(self) -> bool:
        return True

    def take(self, rows: Sequence[int] | np.ndarray) -> SourceBatch:
        if self.clock is not None:
            self.clock.now += self.delay  # a slow decoder, on the clock the pack reads
        else:
            time.sleep(self.delay)
        return super().take(rows)


@pytest.mark.parametrize(
    ("delay", "workers", "started"),
    [(0.0, None, False), (0.02, None, True), (0.0, 2, True), (0.02, 1, False)],
)
def test_workers_start_for_slow_sources_or_when_asked(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    delay: float,
    workers: int | None,
    started: bool,
) -> None:
    pools: list[int] = []
    clock = _Clock()
    monkeypatch.setattr(workers_module, "time", clock)
    monkeypatch.setattr(pack_module, "os", _Cpus(4))
    monkeypatch.setattr(workers_module.BatchReader, "_start_pool", lambda self: pools.append(1))
    pack(
        Picklable(400, delay, clock),
        tmp_path / "a.bale",
        workers=workers,
        progress=False,
        memory_budget=8 << 10,
    )
    assert bool(pools) is started
    with bale.open(tmp_path / "a.bale") as ds:
        np.testing.assert_array_equal(ds["x"][:, 0], expected_order(400, 0))


class _Cpus:
    """``os`` with a fixed CPU count (the test machine may have one CPU)."""

    def __init__(self, count: int) -> None:
        self._count = count

    def cpu_count(self) -> int:
        return self._count

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


# -- the bucket shuffle ---------------------------------------------------------------------------


def test_bucket_shuffle_equals_the_random_access_order(tmp_path: Path) -> None:
    n = 3000
    sequential = Counting(n)
    report = pack(sequential, tmp_path / "buckets.bale", seed=7, memory_budget=32 << 10, **QUIET)
    assert report.rows == n
    pack(Counting(n, random_access=True), tmp_path / "direct.bale", seed=7, **QUIET)
    with bale.open(tmp_path / "buckets.bale") as a, bale.open(tmp_path / "direct.bale") as b:
        assert a.metadata["bale.pack"]["shuffle_method"] == "buckets"
        assert b.metadata["bale.pack"]["shuffle_method"] == "permuted reads"
        x, s = a["x"][:], a["s"][:]
        np.testing.assert_array_equal(x, b["x"][:])
        assert s == b["s"][:]
    rows = x[:, 0]
    np.testing.assert_array_equal(rows, expected_order(n, 7))  # the exact permutation
    np.testing.assert_array_equal(np.sort(rows), np.arange(n))  # every row once
    np.testing.assert_array_equal(x, rows[:, None] * np.array([1, 2, 3]))
    assert s == [f"row {i}" for i in rows]
    # read strictly in order, once
    assert [a for a, _ in sequential.reads] == sorted(a for a, _ in sequential.reads)
    assert sum(b - a for a, b in sequential.reads) == n
    # uniform-looking: no relation between source row and output position
    positions = np.empty(n, np.int64)
    positions[rows] = np.arange(n)
    assert abs(np.corrcoef(np.arange(n), positions)[0, 1]) < 0.1
    tenths = np.bincount(rows[: n // 10] * 10 // n, minlength=10)
    assert tenths.min() > 10  # the first 10% of the output draws from every tenth of the input
    assert leftovers(tmp_path) == ["buckets.bale", "direct.bale"]


def test_bucket_shuffle_keeps_memory_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Wide(Counting):
        @property
        def row_nbytes_hint(self) -> int:
            return 1024 + 16

        def _rows(self, rows: np.ndarray) -> SourceBatch:
            payload = np.repeat(rows[:, None].astype(np.uint8), 1024, axis=1)
            return SourceBatch({"row": rows, "payload": payload}, rows)

    loaded: list[int] = []
    real = buckets_module.Dataset

    class Recording(real):  # type: ignore[misc, valid-type]
        def read(self, *args: Any, **kwargs: Any) -> Any:
            batch = super().read(*args, **kwargs)
            loaded.append(len(batch["row"]))
            return batch

    monkeypatch.setattr(buckets_module, "Dataset", Recording)
    n, budget = 6000, 512 << 10  # ~6 MiB of rows through a 0.5 MiB budget
    tracemalloc.start()
    try:
        pack(
            Wide(n),
            tmp_path / "wide.bale",
            memory_budget=budget,
            row_group_bytes=256 << 10,
            **QUIET,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(loaded) >= 32 and sum(loaded) == n  # many buckets, every row in one
    assert max(loaded) * 1040 < budget / 2  # one bucket at a time, each within the budget
    assert peak < 0.6 * n * 1040, peak  # well below the data's size
    with bale.open(tmp_path / "wide.bale") as ds:
        rows = ds["row"][:]
        np.testing.assert_array_equal(rows, expected_order(n, 0))
        np.testing.assert_array_equal(
            ds["payload"][:100], np.repeat(rows[:100, None].astype(np.uint8), 1024, 1)
        )


def test_no_shuffle_keeps_source_order(tmp_path: Path) -> None:
    pack(Counting(500), tmp_path / "o.bale", shuffle=False, **QUIET)
    with bale.open(tmp_path / "o.bale") as ds:
        np.testing.assert_array_equal(ds["x"][:, 0], np.arange(500))
        assert ds.metadata["bale.pack"]["shuffle_method"] is None


# -- interrupts and errors leave nothing behind -------------------------------------------------


@pytest.mark.parametrize(
    ("shuffle", "random_access"), [(True, False), (True, True), (False, False)]
)
def test_keyboard_interrupt_leaves_nothing(
    tmp_path: Path, shuffle: bool, random_access: bool
) -> None:
    source = Counting(4000, random_access=random_access, fail_at=3000)
    with pytest.raises(KeyboardInterrupt):
        pack(source, tmp_path / "k.bale", shuffle=shuffle, memory_budget=64 << 10, **QUIET)
    assert leftovers(tmp_path) == []


def test_strict_stops_at_the_first_unreadable_image(
    tmp_path: Path, photos: tuple[Path, dict[str, bytes]]
) -> None:
    root, files = photos
    (root / "coffee" / "broken.jpg").write_bytes(files["cat/00.jpg"][:300])
    out = tmp_path / "out"
    out.mkdir()
    earlier = set(multiprocessing.active_children())  # an earlier test's, still exiting
    with pytest.raises(BaleError, match=r"cannot read coffee/broken\.jpg: .*strict"):
        pack(root, out / "s.bale", strict=True, progress=False, workers=2, memory_budget=32 << 10)
    assert leftovers(out) == []
    assert set(multiprocessing.active_children()) <= earlier  # pack's workers stopped


def test_unreadable_images_are_skipped_and_reported(
    tmp_path: Path, photos: tuple[Path, dict[str, bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    root, files = photos
    (root / "coffee" / "broken.jpg").write_bytes(files["cat/00.jpg"][:300])
    (root / "rocket" / "noise.jpg").write_bytes(np.random.default_rng(1).bytes(2000))
    with caplog.at_level(logging.WARNING, logger="bale.pack"):
        report = pack(root, tmp_path / "out.bale", **QUIET)
    assert report.rows == len(files)
    assert sorted(s.where for s in report.skipped) == ["coffee/broken.jpg", "rocket/noise.jpg"]
    assert "skipping coffee/broken.jpg" in caplog.text
    assert "skipped 2 unreadable row(s)" in report.summary()
    with bale.open(tmp_path / "out.bale") as ds:
        assert ds.metadata["bale.pack"]["skipped"] == 2
        assert sorted(ds["path"][:]) == sorted(files)


def test_nothing_readable_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "src" / "a").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "src" / "a" / f"{i}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(BaleError, match=r"no rows could be read: 3 skipped \(e\.g\. a/"):
        pack(tmp_path / "src", tmp_path / "x.bale", **QUIET)
    assert leftovers(tmp_path) == ["src"]


def test_mixed_shapes_name_the_source_rows(tmp_path: Path) -> None:
    class Growing(Counting):
        def _rows(self, rows: np.ndarray) -> SourceBatch:
            width = 3 if rows[0] < 200 else 4
            return SourceBatch({"x": np.zeros((len(rows), width), np.float32)}, rows)

    with pytest.raises(SchemaError, match=r"source rows \[2\d\d, .*do not fit"):
        pack(Growing(400), tmp_path / "m.bale", shuffle=False, memory_budget=8 << 10, **QUIET)
    assert leftovers(tmp_path) == []


def test_target_exists(tmp_path: Path, photos: tuple[Path, dict[str, bytes]]) -> None:
    root, _ = photos
    out = tmp_path / "t.bale"
    out.write_bytes(b"keep me")
    with pytest.raises(TargetExistsError, match="overwrite"):
        pack(root, out, **QUIET)
    assert out.read_bytes() == b"keep me"
    pack(root, out, overwrite=True, **QUIET)
    assert len(bale.open(out)) == 16
    (tmp_path / "u.bale.partial").write_bytes(b"left by a killed run")
    with pytest.raises(TargetExistsError, match="interrupted write"):
        pack(root, tmp_path / "u.bale", **QUIET)


def test_bad_arguments(tmp_path: Path, photos: tuple[Path, dict[str, bytes]]) -> None:
    root, _ = photos
    with pytest.raises(CodecError):
        pack(root, tmp_path / "a.bale", codecs={"label": "zstd:99x"}, **QUIET)
    with pytest.raises(SchemaError, match=r"unknown columns \['nope'\]"):
        pack(root, tmp_path / "a.bale", codecs={"nope": "lz4"}, **QUIET)
    with pytest.raises(BaleError, match=r"output folder .* does not exist"):
        pack(root, tmp_path / "no" / "a.bale", **QUIET)
    with pytest.raises(BaleError, match="the output is a folder"):
        pack(root, tmp_path, **QUIET)
    with pytest.raises(BaleError, match="no rows"):
        pack(Counting(0), tmp_path / "a.bale", **QUIET)
    with pytest.raises(TypeError, match="already open"):
        pack(Counting(5), tmp_path / "a.bale", size=(2, 2), **QUIET)
    with pytest.raises(ValueError, match="workers"):
        pack(root, tmp_path / "a.bale", workers=0)
    assert leftovers(tmp_path) == ["photos"]


# -- codecs, metadata, progress ------------------------------------------------------------------


def test_codecs(tmp_path: Path, photos: tuple[Path, dict[str, bytes]]) -> None:
    root, _ = photos

    def codecs_of(path: Path) -> dict[str, str]:
        with bale.open(path) as ds:
            return {c.name: c.codec["id"] + str(c.codec.get("level", "")) for c in ds.schema}

    pack(root, tmp_path / "a.bale", codecs="zstd:5", **QUIET)
    assert codecs_of(tmp_path / "a.bale") == {"image": "zstd5", "label": "zstd5", "path": "zstd5"}
    pack(root, tmp_path / "b.bale", codecs={"*": "lz4", "label": "zstd:2"}, **QUIET)
    assert codecs_of(tmp_path / "b.bale") == {"image": "lz4", "label": "zstd2", "path": "lz4"}
    pack(root, tmp_path / "c.bale", codecs={"label": "none"}, **QUIET)
    assert codecs_of(tmp_path / "c.bale") == {"image": "none", "label": "none", "path": "zstd3"}


def test_codecs_auto_asks_the_advisor(
    tmp_path: Path, photos: tuple[Path, dict[str, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    advisor = pytest.importorskip("bale.measure.advisor")
    root, files = photos
    seen: list[tuple[dict[str, Any], str]] = []

    def fake(samples: dict[str, Any], goal: str = "balanced") -> dict[str, str]:
        seen.append((samples, goal))
        return {"image": "none", "label": "zstd:7", "path": "lz4"}

    monkeypatch.setattr(advisor, "recommend_codecs", fake)
    pack(
        root,
        tmp_path / "a.bale",
        codecs={"*": "auto", "path": "zstd:1"},
        codec_goal="smallest",
        **QUIET,
    )
    [(samples, goal)] = seen
    assert goal == "smallest" and set(samples) == {"image", "label", "path"}
    assert all(
        image == files[path] for image, path in zip(samples["image"], samples["path"], strict=True)
    )
    with bale.open(tmp_path / "a.bale") as ds:
        assert ds.schema["label"].codec == {"id": "zstd", "level": 7}
        assert ds.schema["path"].codec == {"id": "zstd", "level": 1}  # a given codec wins


def test_codecs_auto_with_the_real_advisor(tmp_path: Path) -> None:
    pytest.importorskip("bale.measure.advisor")
    pack(Counting(300), tmp_path / "a.bale", codecs="auto", **QUIET)
    with bale.open(tmp_path / "a.bale") as ds:
        assert sorted(ds["x"][:, 0]) == list(range(300))


def test_metadata_merges_source_user_and_pack(
    tmp_path: Path, photos: tuple[Path, dict[str, bytes]]
) -> None:
    root, _ = photos
    pack(root, tmp_path / "a.bale", metadata={"license": "CC0", "classes": ["x"]}, **QUIET)
    with bale.open(tmp_path / "a.bale") as ds:
        assert ds.metadata["license"] == "CC0"
        assert ds.metadata["classes"] == ["x"]  # what the caller says wins
        assert ds.metadata["bale.pack"]["rows"] == 16


def test_progress_bar(
    tmp_path: Path,
    photos: tuple[Path, dict[str, bytes]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("tqdm")
    root, _ = photos
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # bars are drawn on terminals only
    pack(root, tmp_path / "a.bale", workers=1)
    err = capsys.readouterr().err
    assert "packing" in err and "/16 [" in err and "rows/s" in err
    pack(root, tmp_path / "b.bale", **QUIET)
    assert capsys.readouterr().err == ""
    monkeypatch.setitem(sys.modules, "tqdm", None)  # not installed: no bar, no error
    pack(root, tmp_path / "c.bale", workers=1)
    assert capsys.readouterr().err == ""


# -- manifests and split folders ------------------------------------------------------------------


def test_pack_a_manifest_with_boxes(tmp_path: Path, photos: tuple[Path, dict[str, bytes]]) -> None:
    root, files = photos
    lines = ["path,label,box"]
    for i, rel in enumerate(sorted(files)):
        lines.append(f'{rel},{rel.split("/")[0]},"[{i}, 1.5, 3, 4]"')
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    pack(root / "labels.csv", tmp_path / "m.bale", shuffle=False, **QUIET)
    with bale.open(tmp_path / "m.bale") as ds:
        assert ds.schema.describe() == {
            "image": "bytes",
            "label": "int64",
            "path": "string",
            "box": "float32[4]",
        }
        data = ds.read()
    assert data["path"] == sorted(files)
    assert [files[p] for p in data["path"]] == data["image"]
    np.testing.assert_array_equal(data["box"][:, 0], np.arange(len(files), dtype=np.float32))
    assert ds.metadata["bale.pack"]["source_kind"] == "manifest"


def test_pack_splits_share_one_class_list(tmp_path: Path) -> None:
    root = tmp_path / "kaggle"
    train = make_folder(root / "train", ("ant", "bee"), n=3)
    valid = make_folder(root / "valid", ("ant", "cat"), n=2)
    test = make_folder(root / "test" / "_", ("flat",), n=2)
    for rel in test:  # a flat test folder: images without class folders
        os.replace(root / "test" / "_" / rel, root / "test" / rel.split("/")[1])
    (root / "test" / "_" / "flat").rmdir()
    (root / "test" / "_").rmdir()
    with pytest.raises(BaleError, match="pack_splits"):
        pack(root, tmp_path / "one.bale", **QUIET)
    reports = pack_splits(root, tmp_path / "out", size=(8, 8), **QUIET)
    assert sorted(reports) == ["test", "train", "valid"]
    assert leftovers(tmp_path / "out") == ["test.bale", "train.bale", "valid.bale"]
    expected = {"train": train, "valid": valid}
    for split in ("train", "valid"):
        with bale.open(tmp_path / "out" / f"{split}.bale") as ds:
            assert ds.metadata["classes"] == ["ant", "bee", "cat"]
            labels = {
                p: ["ant", "bee", "cat"][lab]
                for p, lab in zip(ds["path"][:], ds["label"][:], strict=True)
            }
        assert labels == {p: p.split("/")[0] for p in expected[split]}
    with bale.open(tmp_path / "out" / "test.bale") as ds:
        assert "label" not in ds.schema and ds.metadata["classes"] == ["ant", "bee", "cat"]
        assert sorted(ds["path"][:]) == ["00.jpg", "01.jpg", "zz.png"]
    with pytest.raises(TargetExistsError):
        pack_splits(root, tmp_path / "out", **QUIET)
    with pytest.raises(BaleError, match="no split folders"):
        pack_splits(root / "train", tmp_path / "x", **QUIET)


def test_source_is_closed_after_packing_a_path(
    tmp_path: Path, photos: tuple[Path, dict[str, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []
    monkeypatch.setattr(
        ImageFolderSource, "close", lambda self: closed.append(self.path), raising=False
    )
    pack(photos[0], tmp_path / "a.bale", **QUIET)
    assert closed == [str(photos[0])]


# -- issue 15 -------------------------------------------------------------------------------------

#: A core-only install: Pillow and simplejpeg cannot be imported (set before bale is imported).
WITHOUT_IMAGE_LIBRARIES = (
    "import sys\nsys.modules['PIL'] = None\nsys.modules['simplejpeg'] = None\n"
)


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_missing_image_libraries_stop_the_pack_once_with_the_install_hint(
    tmp_path: Path, photos: tuple[Path, dict[str, bytes]]
) -> None:
    root, _ = photos
    out = tmp_path / "out.bale"
    code = WITHOUT_IMAGE_LIBRARIES + (
        "from bale.cli.main import main\n"
        f"sys.exit(main(['pack', {str(root)!r}, {str(out)!r}, '--workers', '1', '--no-progress']))"
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "skipping" not in result.stderr and "no rows could be read" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bale pack: error: ")
    assert "decoding images needs" in lines[0] and "Pillow" in lines[0] and "install" in lines[0]
    assert leftovers(tmp_path) == ["photos"]


def test_decode_images_without_the_image_libraries_is_one_import_error(tmp_path: Path) -> None:
    data = jpeg(skdata.chelsea()[:32, :32])
    code = WITHOUT_IMAGE_LIBRARIES + (
        "from bale.images import DecodeImages\n"
        "try:\n"
        f"    DecodeImages('image', size=(8, 8))({{'image': [{data!r}] * 3}})\n"
        "except ImportError as exc:\n"
        "    print('ImportError:', exc)\n"
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ImportError: decoding images needs simplejpeg and Pillow")
    assert "cannot decode image" not in result.stdout


def test_a_script_without_the_main_guard_is_told_to_add_it(tmp_path: Path) -> None:
    make_folder(tmp_path / "photos", n=20)
    script = tmp_path / "script.py"
    script.write_text(  # docs/PACK.md's example, pasted without `if __name__ == "__main__":`
        "import bale\n\n"
        "report = bale.pack('photos/', 'photos.bale', workers=2, memory_budget=64 << 10)\n"
        "print(report.summary())\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "TargetExistsError" not in result.stderr and "BrokenPipeError" not in result.stderr
    assert "bale.pack was called while a worker process imported the main module" in result.stderr
    assert 'if __name__ == "__main__":' in result.stderr
    assert leftovers(tmp_path) == ["photos", "script.py"]


BCOLZ = Path(__file__).parent / "importers" / "fixtures" / "bcolz" / "bcolz-1.2.1"


@pytest.mark.parametrize("shuffle", [True, False])
def test_joined_sources_are_columns_of_one_file_shuffled_together(
    tmp_path: Path, shuffle: bool
) -> None:
    images = BCOLZ / "images_lz4_bitshuffle.bcolz"  # 19 rows, read in order: bucket shuffle
    np.save(tmp_path / "y.npy", np.arange(19, dtype=np.int64))
    with bale.importers.bcolz.BcolzSource(images) as src:
        originals = src.read(0, 19).columns["images_lz4_bitshuffle"]
    report = pack(
        {"x": images, "y": tmp_path / "y.npy"}, tmp_path / "xy.bale", shuffle=shuffle, **QUIET
    )
    assert report.rows == 19
    with bale.open(tmp_path / "xy.bale") as ds:
        assert list(ds.schema.names) == ["x", "y"]
        data = ds.read()
    want = expected_order(19, 0) if shuffle else np.arange(19)
    np.testing.assert_array_equal(data["y"], want)
    np.testing.assert_array_equal(data["x"], originals[data["y"]])  # never shuffled apart


def test_joined_npy_files_keep_their_names(tmp_path: Path) -> None:
    x = np.arange(50 * 3, dtype=np.float32).reshape(50, 3)
    np.save(tmp_path / "X.npy", x)
    np.save(tmp_path / "y.npy", np.arange(50) % 7)
    pack([tmp_path / "X.npy", tmp_path / "y.npy"], tmp_path / "xy.bale", **QUIET)
    with bale.open(tmp_path / "xy.bale") as ds:
        data = ds.read()
        assert ds.metadata["bale.pack"]["shuffle_method"] == "permuted reads"
    np.testing.assert_array_equal(data["X"], x[data["X"][:, 0].astype(int) // 3])
    np.testing.assert_array_equal(data["y"], (data["X"][:, 0].astype(int) // 3) % 7)


def test_joined_sources_of_different_lengths_name_both(tmp_path: Path) -> None:
    np.save(tmp_path / "X.npy", np.zeros((19, 2)))
    np.save(tmp_path / "y.npy", np.zeros(18))
    with pytest.raises(SchemaError) as info:
        pack([tmp_path / "X.npy", tmp_path / "y.npy"], tmp_path / "xy.bale", **QUIET)
    message = str(info.value)
    assert "must have the same number of rows" in message
    assert f"'{tmp_path / 'X.npy'}' has 19 rows, '{tmp_path / 'y.npy'}' has 18 rows" in message
    assert leftovers(tmp_path) == ["X.npy", "y.npy"]


@pytest.mark.parametrize("shuffle", [True, False])
def test_an_empty_source_makes_an_empty_file(tmp_path: Path, shuffle: bool) -> None:
    np.save(tmp_path / "empty.npy", np.zeros((0, 4), np.float32))
    pack(tmp_path / "empty.npy", tmp_path / "a.bale", shuffle=shuffle, **QUIET)
    pack(BCOLZ / "ints_lz4_empty.bcolz", tmp_path / "b.bale", shuffle=shuffle, **QUIET)
    with bale.open(tmp_path / "a.bale") as a, bale.open(tmp_path / "b.bale") as b:
        assert len(a) == 0 and a.schema.describe() == {"empty": "float32[4]"}
        assert len(b) == 0 and b.schema.describe() == {"ints_lz4_empty": "int64"}
        assert a.metadata["bale.pack"]["rows"] == 0


def test_the_legacy_md_loop_works_verbatim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (Path(__file__).parents[1] / "docs" / "LEGACY.md").read_text(encoding="utf-8")
    blocks = text.split("```python\n")[1:]
    loop = next(b.split("```")[0] for b in blocks if "for start in range" in b)
    monkeypatch.chdir(tmp_path)
    for fixture in ("ints_lz4_empty", "images_lz4_bitshuffle"):
        shutil.copytree(BCOLZ / f"{fixture}.bcolz", tmp_path / "old_images.bcolz")
        exec(compile(loop, "LEGACY.md", "exec"), {})
        with bale.open(tmp_path / "train.bale") as ds:
            assert len(ds) == {"ints_lz4_empty": 0, "images_lz4_bitshuffle": 19}[fixture]
            assert list(ds.schema.names) == ["old_images"]
        shutil.rmtree(tmp_path / "old_images.bcolz")
        os.unlink(tmp_path / "train.bale")


def test_packing_a_bale_file_points_to_recompress(tmp_path: Path) -> None:
    """Issue 15 item 14: `bale pack feats.bale new.bale --codec ...` said it could not tell what
    '.bale' holds; it now says to use `bale recompress`."""
    src = tmp_path / "feats.bale"
    bale.write(src, {"x": np.arange(10, dtype=np.float32)})
    with pytest.raises(bale.BaleError, match=r"already a \.bale file.*bale recompress") as info:
        bale.pack(src, tmp_path / "new.bale")
    assert str(src) in str(info.value)


def test_an_empty_partial_is_taken_over_and_a_full_one_points_to_repair(tmp_path: Path) -> None:
    """A writer killed before its first batch leaves an empty OUT.partial: pack writes over it,
    as bale.Writer does; a partial with bytes is refused with the repair to run."""
    src = tmp_path / "x.npy"
    np.save(src, np.arange(20, dtype=np.int64))
    out = tmp_path / "x.bale"
    partial = tmp_path / "x.bale.partial"
    partial.write_bytes(b"")
    pack(src, out, workers=1)
    assert len(bale.open(out)) == 20 and not partial.exists()
    out2 = tmp_path / "y.bale"
    (tmp_path / "y.bale.partial").write_bytes(b"\x89BALE rows")
    with pytest.raises(TargetExistsError, match=r"bale repair .*y\.bale"):
        pack(src, out2, workers=1)
