"""The disk cache of remote ranges (bale.io.diskcache): real files, real processes, the loopback
servers counting requests. Hits cost no request; the cap holds; processes share one directory;
damaged entries, replaced objects, unwritable or full directories never give wrong bytes or a
failed read; epoch 2 of a Loader over a URL reads from the cache."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from remote_children import digest, read_and_report
from remote_helpers import QUICK, Store, bounded, http_store
from remote_servers import RangeServer

import bale
from bale._core.dataset import reader_of
from bale.io import remote
from bale.io.diskcache import DiskCache, environment_settings, parse_bytes, range_key
from bale.io.readahead import ReadAhead
from bale.io.remote import RemoteOptions, RemoteSource, default_options, set_default_options

KiB = 1 << 10
DATA = np.random.default_rng(12).integers(0, 256, 600 * KiB, dtype=np.uint8).tobytes()
# past the 64 KiB kept head and before the 64 KiB kept tail: ranges a source fetches
RANGES = [(100 * KiB, 50 * KiB), (300 * KiB, 100 * KiB), (420 * KiB, 1000)]
HEADER = 40  # bytes of an entry's header


def payload(i: int) -> bytes:
    """The bytes stored under key ``i`` in the process tests: 1 to 20 KiB, derived from i."""
    return hashlib.shake_128(str(i).encode()).digest(KiB + (i * 7919) % (19 * KiB))


def entries(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.range"))


def temporaries(directory: Path) -> list[Path]:
    return sorted(directory.glob(".*.part"))


def cached(store: Store, name: str, directory: Path, **changes: Any) -> RemoteSource:
    return store.open(name, QUICK, cache_dir=str(directory), **changes)


@pytest.fixture
def http(range_server: RangeServer) -> Store:
    return http_store(range_server, "obstore")


# -- the cache itself -----------------------------------------------------------------------------


def test_an_entry_round_trips_and_a_missing_one_is_a_miss(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "c", 1 << 20)
    assert cache.get("nothing") is None  # no directory yet: a miss, not an error
    assert cache.put("a", b"hello" * 100)
    assert cache.get("a") == b"hello" * 100
    assert not cache.put("a", b"hello" * 100)  # there already
    assert cache.usage() == HEADER + 500
    assert [p.name for p in entries(tmp_path / "c")] == [Path(cache.entry_path("a")).name]
    assert (cache.hits, cache.misses, cache.stored) == (1, 1, 1)
    cache.clear()
    assert cache.get("a") is None and cache.usage() == 0


def test_eviction_keeps_the_total_under_the_cap_and_the_recently_read(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    size = 10 * KiB
    cache = DiskCache(folder, 5 * (HEADER + size))  # room for five entries
    base = time.time() - 10_000
    for i in range(30):
        assert cache.put(f"k{i}", bytes([i]) * size)
        # deterministic ages: each entry a second younger than the one before
        os.utime(cache.entry_path(f"k{i}"), (base + i, base + i))
        assert cache.get("k0") == bytes([0]) * size  # read: the newest, never evicted
        assert cache.usage() <= cache.max_bytes
    present = {p.name for p in entries(folder)}
    assert Path(cache.entry_path("k0")).name in present
    assert Path(cache.entry_path("k29")).name in present
    assert Path(cache.entry_path("k1")).name not in present  # the oldest unread went first
    assert 2 <= len(present) <= 5 and cache.evicted >= 25


def test_a_cap_of_zero_or_too_small_stores_nothing(tmp_path: Path) -> None:
    assert not DiskCache(tmp_path / "a", 0).put("k", b"x")
    assert not DiskCache(tmp_path / "b", 100).put("k", b"x" * 100)  # with its header: 140
    assert DiskCache(tmp_path / "b", 140).put("k", b"x" * 100)
    assert entries(tmp_path / "b") and not (tmp_path / "a").exists()


@pytest.mark.parametrize("damage", ["payload", "header", "truncated", "empty", "other key"])
def test_a_damaged_entry_is_a_miss_and_deleted(tmp_path: Path, damage: str) -> None:
    cache = DiskCache(tmp_path, 1 << 20)
    data = bytes(range(256)) * 40
    cache.put("k", data)
    path = Path(cache.entry_path("k"))
    raw = bytearray(path.read_bytes())
    if damage == "payload":
        raw[HEADER + 5000] ^= 0x01
    elif damage == "header":
        raw[35] ^= 0x80  # a byte of the stored checksum
    elif damage == "truncated":
        raw = raw[:-1]
    elif damage == "empty":
        raw = bytearray()
    if damage == "other key":  # an entry renamed under another key's name
        cache.put("j", data[:100])
        os.replace(cache.entry_path("j"), path)
    else:
        path.write_bytes(raw)
    assert cache.get("k") is None
    assert not path.exists() and cache.errors == 1
    assert cache.put("k", data) and cache.get("k") == data


def test_a_busy_lock_skips_storing_without_waiting(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, 1 << 20)
    cache.put("old", b"kept")
    holder = os.open(tmp_path / ".bale-cache.lock", os.O_RDWR)  # another process, as it were
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        started = time.monotonic()
        assert not cache.put("new", b"x" * 1000)
        assert time.monotonic() - started < 0.5
        assert cache.get("old") == b"kept"  # reads take no lock
    finally:
        os.close(holder)
    assert cache.put("new", b"x" * 1000)  # not paused: a busy lock is no error


def test_an_unusable_directory_never_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    for folder in (blocker, blocker / "below"):  # not a directory; cannot be made
        cache = DiskCache(folder, 1 << 20)
        assert not cache.put("k", b"x" * 100)
        assert cache.get("k") is None and cache.usage() == 0
        cache.clear()


def read_only_check(folder: str, results: Any) -> None:
    """In a child: store and read in ``folder``, which this process may read but not write
    (root, who writes anywhere, becomes nobody first)."""
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)
    cache = DiskCache(folder, 1 << 20)
    results.put((cache.put("k", b"x" * 100), cache.get("there"), cache.get("k")))


def test_a_read_only_directory_never_fails() -> None:
    folder = Path(tempfile.mkdtemp(prefix="bale-read-only-"))  # outside tmp_path (mode 0700)
    try:
        DiskCache(folder, 1 << 20).put("there", b"before")
        folder.chmod(0o555)
        assert run_children(read_only_check, [(str(folder),)]) == [(False, b"before", None)]
    finally:
        folder.chmod(0o700)
        shutil.rmtree(folder)


def test_a_full_disk_fails_the_write_not_the_read(tmp_path: Path, http: Store) -> None:
    """A real failed write (EFBIG under RLIMIT_FSIZE, as a full disk fails with ENOSPC) in a
    child process: the cache stores nothing, leaves no temporary file, and the read is right."""
    http.put("full.bin", DATA)
    script = textwrap.dedent(
        f"""
        import hashlib, os, resource, signal, sys
        from bale.io.remote import RemoteOptions, RemoteSource
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        options = RemoteOptions(cache_dir={str(tmp_path)!r}, backend="obstore")
        source = RemoteSource({http.url("full.bin")!r}, options=options)
        data = source.read({RANGES[0][0]}, {RANGES[0][1]})
        cache = source.disk_cache
        print(hashlib.sha256(data).hexdigest(), cache.stored, cache.errors)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    sha, stored, errors = result.stdout.split()
    start, size = RANGES[0]
    assert sha == digest(DATA[start : start + size])
    assert (stored, errors) == ("0", "1")
    assert not entries(tmp_path) and not temporaries(tmp_path)


# -- processes and threads on one directory ------------------------------------------------------


def hammer(folder: str, cap: int, seed: int, rounds: int, results: Any) -> None:
    """Store and read keys 0..39 in a random order; report the wrong reads (never any)."""
    cache = DiskCache(folder, cap)
    rng = np.random.default_rng(seed)
    wrong = 0
    for i in rng.integers(0, 40, rounds):
        got = cache.get(f"k{i}")
        if got is not None and got != payload(int(i)):
            wrong += 1
        if got is None:
            cache.put(f"k{i}", payload(int(i)))
    results.put((wrong, cache.stored, cache.hits))


def same_entry(folder: str, rounds: int, results: Any) -> None:
    """Delete and store one entry over and over, from two threads; count the wrong reads."""
    cache = DiskCache(folder, 1 << 20)
    data = payload(7) * 20
    wrong = [0]

    def work() -> None:
        for n in range(rounds):
            got = cache.get("same")
            if got is not None and got != data:
                wrong[0] += 1
            if n % 3 == 0:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(cache.entry_path("same"))
            cache.put("same", data)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put((wrong[0], cache.stored, 0))


def run_children(target: Any, argument_lists: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    children = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        for arguments in argument_lists:
            child = ctx.Process(target=target, args=(*arguments, results))
            child.start()
            children.append(child)
    try:
        reports = [results.get(timeout=60) for _ in children]
    except Exception:
        for child in children:
            child.kill()
        pytest.fail("a child did not answer: a hang")
    for child in children:
        child.join(10)
        assert child.exitcode == 0
    results.close()
    results.join_thread()
    return reports


def test_processes_sharing_a_small_cache_read_right_and_keep_the_cap(tmp_path: Path) -> None:
    cap = 100 * KiB  # about ten of the forty entries
    reports = run_children(hammer, [(str(tmp_path), cap, seed, 300) for seed in range(4)])
    assert [wrong for wrong, _, _ in reports] == [0, 0, 0, 0]
    assert sum(stored for _, stored, _ in reports) > 40  # evicted and stored again
    assert sum(hits for _, _, hits in reports) > 0
    cache = DiskCache(tmp_path, cap)
    assert cache.usage() <= cap and not temporaries(tmp_path)
    for path in entries(tmp_path):  # whatever is left is whole
        assert len(path.read_bytes()) > HEADER
    for i in range(40):
        assert cache.get(f"k{i}") in (None, payload(i))


def test_concurrent_writers_of_one_entry_never_corrupt_it(tmp_path: Path) -> None:
    reports = run_children(same_entry, [(str(tmp_path), 150) for _ in range(4)])
    assert [wrong for wrong, _, _ in reports] == [0, 0, 0, 0]
    assert sum(stored for _, stored, _ in reports) >= 50  # rewritten over and over
    cache = DiskCache(tmp_path, 1 << 20)
    assert cache.get("same") == payload(7) * 20
    assert len(entries(tmp_path)) == 1 and not temporaries(tmp_path)


def test_threads_of_one_process_queue_for_the_lock_rather_than_skip(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, 1 << 30)

    def store(first: int) -> None:
        for i in range(first, first + 25):
            cache.put(f"k{i}", payload(i))

    threads = [threading.Thread(target=store, args=(25 * t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 200 writes from 8 threads: none skipped for another thread of this process (a thread
    # held up past 0.5 s by a loaded machine may skip one: nothing wrong with that)
    assert len(entries(tmp_path)) >= 190
    assert all(cache.get(f"k{i}") in (None, payload(i)) for i in range(200))


def test_the_read_ahead_holds_cached_ranges_under_its_cap() -> None:
    ahead = ReadAhead(lambda start, stop: b"f" * (stop - start), max_bytes=100, max_requests=1)
    assert ahead.hold(0, 60, b"a" * 60)
    assert not ahead.hold(0, 10, b"short")  # the length must match the range
    assert ahead.hold(100, 160, b"b" * 60)  # pushes out the first
    assert ahead.take(0, 60, 1.0) is None
    assert ahead.take(110, 120, 1.0) == b"b" * 10
    assert not ahead.hold(0, 101, b"c" * 101)  # more than the cap
    ahead.close()


# -- a remote source with the cache --------------------------------------------------------------


def test_a_hit_costs_no_request(store: Store, tmp_path: Path) -> None:
    store.put("hit.bin", DATA)
    source = cached(store, "hit.bin", tmp_path)
    before = store.count()
    for start, size in RANGES:
        assert source.read(start, size) == DATA[start : start + size]
    assert store.count() - before == len(RANGES)
    assert len(entries(tmp_path)) == len(RANGES)

    again = cached(store, "hit.bin", tmp_path)  # a new source: one request to open
    before = store.count()
    for start, size in RANGES:
        assert again.read(start, size) == DATA[start : start + size]
    again.will_need(*RANGES[1])  # a hint served from the cache too
    assert again.read(*RANGES[1]) == DATA[RANGES[1][0] : sum(RANGES[1])]
    assert store.count() == before and again.requests == 1  # the opening tail only
    assert again.disk_cache is not None and again.disk_cache.hits == len(RANGES) + 1


def test_the_head_is_cached_so_reopening_costs_one_request(http: Store, tmp_path: Path) -> None:
    http.put("head.bin", DATA)
    first = cached(http, "head.bin", tmp_path)
    assert first.read(0, 100) == DATA[:100] and first.requests == 2  # tail, head
    second = cached(http, "head.bin", tmp_path)
    assert second.read(0, 100) == DATA[:100] and second.requests == 1


def test_a_replaced_object_never_gets_the_old_bytes(http: Store, tmp_path: Path) -> None:
    start, size = RANGES[0]
    http.put("replaced.bin", DATA)
    assert cached(http, "replaced.bin", tmp_path).read(start, size) == DATA[start : start + size]
    new = bytes(b ^ 0xFF for b in DATA[: 200 * KiB]) + DATA[200 * KiB :]  # same size
    http.put("replaced.bin", new)
    source = cached(http, "replaced.bin", tmp_path)  # sees the new ETag
    assert source.read(start, size) == new[start : start + size]
    assert source.requests == 2  # the tail, then the range: the old entry is not this version's
    assert len(entries(tmp_path)) == 2


def test_a_damaged_entry_is_fetched_again(http: Store, tmp_path: Path) -> None:
    start, size = RANGES[1]
    http.put("damaged.bin", DATA)
    source = cached(http, "damaged.bin", tmp_path)
    source.read(start, size)
    (path,) = entries(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[HEADER + 12345] ^= 0x10
    path.write_bytes(raw)
    before = source.requests
    assert source.read(start, size) == DATA[start : start + size]
    assert source.requests == before + 1  # detected, fetched, stored again
    assert source.read(start, size) == DATA[start : start + size]
    assert source.requests == before + 1


def test_an_unusable_cache_never_fails_a_read(http: Store, tmp_path: Path) -> None:
    http.put("unusable.bin", DATA)
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    for folder in (blocker, blocker / "below"):
        source = cached(http, "unusable.bin", folder)
        for start, size in RANGES:
            assert source.read(start, size) == DATA[start : start + size]
    assert cached(http, "unusable.bin", tmp_path, cache_bytes=0).disk_cache is None


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_processes_share_one_cache(http: Store, tmp_path: Path, context: str) -> None:
    http.put("shared.bin", DATA)
    source = cached(http, "shared.bin", tmp_path, backend="auto")  # forked: through fsspec
    first, second = RANGES[:2], RANGES[1:]
    ctx = multiprocessing.get_context(context)
    reports = []
    for ranges in (first, second):  # the second child finds RANGES[1] stored by the first
        results = ctx.Queue()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            child = ctx.Process(target=read_and_report, args=(source, ranges, results))
            child.start()
        reports.append(bounded(lambda q=results: q.get(timeout=60), 70))
        child.join(10)
        results.close()
        results.join_thread()
    for report, ranges in zip(reports, (first, second), strict=True):
        status, _, digests, _ = report
        assert status == "ok", digests
        assert digests == [digest(DATA[s : s + n]) for s, n in ranges]
    assert reports[0][3] == 2 and reports[1][3] == 1  # requests: the ranges not yet stored
    before = source.requests
    for start, size in RANGES:  # the parent reads what its children stored
        assert source.read(start, size) == DATA[start : start + size]
    assert source.requests == before


def test_loader_epoch_two_reads_from_the_cache(
    http: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = 2000
    rng = np.random.default_rng(4)
    path = tmp_path / "train.bale"
    columns = {
        "image": rng.integers(0, 255, (rows, 16, 16, 3), dtype=np.uint8),
        "label": np.arange(rows, dtype=np.int64),
    }
    bale.write(path, columns, row_group_rows=100)
    http.put("train.bale", path.read_bytes())
    monkeypatch.setenv("BALE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BALE_CACHE_BYTES", "64MiB")
    counts = []
    with bale.Loader(http.url("train.bale"), 100, shuffle="chunks", seed=2) as loader:
        source = reader_of(loader._files.datasets[0]).source
        assert source.disk_cache is not None and source.disk_cache.max_bytes == 64 << 20
        for epoch in (1, 2):
            loader.set_epoch(epoch)
            before = http.count()
            seen = np.concatenate([batch["label"] for batch in loader])
            counts.append(http.count() - before)
            assert sorted(seen.tolist()) == list(range(rows))
        with bale.Loader(path, 100, shuffle="chunks", seed=2) as local:
            local.set_epoch(2)
            want = np.concatenate([batch["label"] for batch in local])
        np.testing.assert_array_equal(seen, want)  # epoch 2 from the cache, row for row
    assert counts[0] >= 20  # one request per row group, at least
    assert counts[1] <= 1, counts


# -- settings -------------------------------------------------------------------------------------


def test_settings_from_the_environment_and_set_default_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("BALE_CACHE_DIR", raising=False)
    monkeypatch.delenv("BALE_CACHE_BYTES", raising=False)
    assert default_options().cache_dir is None
    monkeypatch.setenv("BALE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("BALE_CACHE_BYTES", "2GB")
    assert (default_options().cache_dir, default_options().cache_bytes) == (str(tmp_path), 2e9)
    try:
        set_default_options(cache_bytes=5 << 30, read_ahead_requests=4)
        options = default_options()
        assert (options.cache_dir, options.cache_bytes) == (str(tmp_path), 5 << 30)
        assert options.read_ahead_requests == 4
        with pytest.raises(TypeError):
            set_default_options(cache_size=1)
        with pytest.raises(ValueError):
            set_default_options(cache_bytes=-1)
        assert default_options().cache_bytes == 5 << 30  # a refused call changes nothing
    finally:
        set_default_options()
    assert remote._DEFAULT_CHANGES == {}
    monkeypatch.setenv("BALE_CACHE_BYTES", "lots")
    with pytest.raises(ValueError, match="BALE_CACHE_BYTES"):
        default_options()
    assert environment_settings({}) == {}
    assert RemoteOptions(cache_dir=tmp_path).cache_dir == str(tmp_path)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "size"),
    [("1000", 1000), ("64MiB", 64 << 20), ("64M", 64 << 20), ("64 mb", 64_000_000),
     ("1.5GiB", 3 << 29), ("2T", 2 << 40), ("2TB", 2 * 10**12), ("7k", 7168)],
)  # fmt: skip
def test_sizes_parse(text: str, size: int) -> None:
    assert parse_bytes(text) == size


@pytest.mark.parametrize("text", ["", "ten", "5 iB", "-1", "1e9", "3X"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_bytes(text)


def test_keys_differ_by_version_and_range() -> None:
    keys = {
        range_key("s3://b/k", "e1", 100, 0, 10),
        range_key("s3://b/k", "e2", 100, 0, 10),
        range_key("s3://b/k", "e1", 100, 0, 11),
        range_key("s3://b/k", "e1", 100, 1, 10),
        range_key("s3://b/j", "e1", 100, 0, 10),
    }
    assert len(keys) == 5
