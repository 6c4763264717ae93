"""RemoteSource reads the right bytes from real loopback servers (HTTP with Range, moto's S3)
through each client, opens with at most two requests, and serves kept and read-ahead ranges
without asking the store again."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from remote_helpers import QUICK, Store, bounded, missing, skip_without
from remote_servers import RangeServer

import bale
from bale._core.layout import read_header, read_index
from bale.errors import ObjectNotFoundError, TruncatedFileError
from bale.io.remote import RemoteSource

KiB, MiB = 1 << 10, 1 << 20


def payload(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def test_reads_equal_the_object_everywhere(store: Store) -> None:
    data = payload(600 * KiB)
    store.put("reads.bin", data)
    source = store.open("reads.bin")
    assert source.size() == len(data)
    rng = np.random.default_rng(1)
    ranges = [(0, 1), (0, 100), (len(data) - 40, 40), (len(data) - 1, 1), (60 * KiB, 10 * KiB)]
    ranges += [(len(data) - 100 * KiB, 100 * KiB), (0, len(data)), (123, 0)]
    for _ in range(20):
        start = int(rng.integers(0, len(data)))
        ranges.append((start, int(rng.integers(0, len(data) - start + 1))))
    for start, size in ranges:
        got = bounded(lambda s=start, n=size: source.read(s, n))
        assert got == data[start : start + size], (start, size)
    assert source.backend == store.backend
    source.close()
    assert source.read(300 * KiB, 10) == data[300 * KiB : 300 * KiB + 10]  # reopens its client


def test_open_costs_one_round_trip(store: Store) -> None:
    """A suffix-range GET whose answer carries the size (Content-Range: bytes a-b/SIZE); through
    obstore, the head's GET is sent at the same time (two requests, one round trip)."""
    data = payload(300 * KiB)
    store.put("open.bin", data)
    before = store.count()
    source = store.open("open.bin")
    opening = 2 if source.backend == "obstore" else 1
    assert source.requests == opening
    assert store.count() - before == opening
    # the trailer and a footer inside the kept 64 KiB tail cost nothing more, nor (obstore)
    # the header and schema inside the head
    source.read(source.size() - 40, 40)
    source.read(source.size() - 50 * KiB, 50 * KiB - 40)
    if source.backend == "obstore":
        assert source.read(100, 60 * KiB) == data[100 : 100 + 60 * KiB]
    assert store.count() - before == opening


def test_a_small_object_is_read_whole_by_the_open(store: Store) -> None:
    data = payload(5000)
    store.put("small.bin", data)
    source = store.open("small.bin")
    before = store.count()
    assert source.read(0, 5000) == data and source.read(17, 3) == data[17:20]
    assert store.count() == before


def test_an_empty_object_has_size_zero(store: Store) -> None:
    store.put("empty.bin", b"")
    source = store.open("empty.bin")
    assert source.size() == 0 and source.read(0, 0) == b""
    with pytest.raises(TruncatedFileError):
        source.read(0, 1)


def test_opening_a_bale_file_costs_two_requests(store: Store, tmp_path: Path) -> None:
    """The reader's opening reads (header prefix, trailer, footer, header JSON) over a URL: the
    tail, then the head."""
    path = tmp_path / "four_groups.bale"
    rng = np.random.default_rng(0)
    with bale.Writer(path) as writer:
        for _ in range(4):
            writer.write(
                {"x": rng.integers(0, 255, (1024, 256), np.uint8), "label": np.arange(1024)}
            )
    data = path.read_bytes()
    assert len(data) > 256 * KiB
    store.put("four_groups.bale", data)
    before = store.count()
    source = store.open("four_groups.bale")
    index, footer_offset = read_index(source)
    header = read_header(source)
    assert header.schema.names == ["x", "label"]
    assert footer_offset < len(data) and len(index.groups) >= 2
    assert source.requests == 2
    assert store.count() - before == 2


def test_reads_inside_the_head_are_served_from_one_request(http: Store) -> None:
    data = payload(1 * MiB)
    http.put("head.bin", data)
    source = http.open("head.bin")
    opened = source.requests  # obstore: the head came with the tail
    beside = source.backend == "obstore"
    for start in range(0, 60 * KiB, 4 * KiB):
        assert source.read(start, 4 * KiB) == data[start : start + 4 * KiB]
    assert source.requests == opened + (0 if beside else 1)
    source.evict_from_page_cache()  # drops the head: the next read asks again
    assert source.read(0, 10) == data[:10]
    assert source.requests == opened + (1 if beside else 2)


def test_will_need_fetches_ahead_and_reads_take_from_it(http: Store) -> None:
    data = payload(4 * MiB)
    http.put("ahead.bin", data)
    source = http.open("ahead.bin")
    opened = source.requests
    groups = [(i * MiB // 2, MiB // 2) for i in range(1, 6)]
    for start, size in groups:
        source.will_need(start, size)
    deadline = time.monotonic() + 10
    while source.requests < opened + len(groups):
        assert time.monotonic() < deadline, "the read-ahead did not fetch"
        time.sleep(0.01)
    asked = source.requests
    for start, size in groups:
        # a group read in column-sized pieces, all from the range fetched ahead
        for part in range(4):
            piece = start + part * size // 4
            assert source.read(piece, size // 4) == data[piece : piece + size // 4]
    assert source.requests == asked
    assert source.read(3 * MiB, 1000) == data[3 * MiB : 3 * MiB + 1000]  # not asked ahead
    assert source.requests == asked + 1


def test_the_read_ahead_is_bounded(http: Store) -> None:
    data = payload(3 * MiB)
    http.put("bounded.bin", data)
    source = http.open("bounded.bin", read_ahead_bytes=MiB)
    for i in range(6):
        source.will_need(i * MiB // 2, MiB // 2)  # 3 MiB of hints, 1 MiB held at most
    state = source._state_here()
    assert state.read_ahead is not None and state.read_ahead._held <= MiB
    for i in range(6):
        start = i * MiB // 2
        assert source.read(start, MiB // 2) == data[start : start + MiB // 2]
    too_big = http.open("bounded.bin", read_ahead_bytes=MiB)
    too_big.will_need(0, 2 * MiB)  # larger than the cap: dropped, the read fetches it
    assert too_big.read(0, 2 * MiB) == data[: 2 * MiB]


def test_threads_share_one_source(store: Store) -> None:
    data = payload(2 * MiB, seed=3)
    store.put("threads.bin", data)
    source = store.open("threads.bin")
    failures: list[str] = []

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(15):
            start = int(rng.integers(0, len(data) - 1))
            size = int(rng.integers(1, min(256 * KiB, len(data) - start) + 1))
            if rng.random() < 0.3:
                source.will_need(start, size)
            if source.read(start, size) != data[start : start + size]:
                failures.append(f"{start}+{size}")

    threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive(), "a reader thread hung"
    assert failures == []


def test_sources_on_one_store_share_a_connection(http: Store) -> None:
    """A second file on the same server opens without building a client again: one round trip
    (the tail, and through obstore the head beside it) and no more than a few milliseconds
    (building one costs 10-200 ms)."""
    http.put("a.bin", payload(100 * KiB))
    http.put("b.bin", payload(100 * KiB, seed=1))
    http.open("a.bin")
    started = time.perf_counter()
    second = http.open("b.bin")
    assert second.requests == (2 if second.backend == "obstore" else 1)
    assert time.perf_counter() - started < 1.0


def test_reading_past_the_end_is_a_truncated_file_error(store: Store) -> None:
    store.put("short.bin", payload(200 * KiB))
    source = store.open("short.bin")
    with pytest.raises(TruncatedFileError, match="ends after 100") as info:
        source.read(200 * KiB - 100, 101)
    assert info.value.path == source.path == store.url("short.bin")
    with pytest.raises(ValueError):
        source.read(-1, 10)


def test_repr_and_path_show_the_url_only(store: Store) -> None:
    store.put("repr.bin", b"x" * 100)
    source = store.open("repr.bin")
    assert repr(source) == f"RemoteSource({store.url('repr.bin')!r})"
    assert source.path == store.url("repr.bin")


def test_backend_auto_prefers_obstore_where_installed(range_server: RangeServer) -> None:
    range_server.objects["/auto/y.bin"] = b"y" * 10
    source = RemoteSource(range_server.url("/auto/y.bin"), options=QUICK)
    assert source.backend == ("fsspec" if missing("obstore") else "obstore")
    assert source.read(0, 10) == b"y" * 10


def test_any_fsspec_url_is_read_through_fsspec() -> None:
    """A protocol obstore does not serve (here fsspec's in-memory filesystem): the size, then
    the tail; reads and errors as for the others."""
    skip_without("fsspec")
    import fsspec

    data = payload(300 * KiB, seed=5)
    fsspec.filesystem("memory").pipe("/bale-test/memory.bin", data)
    source = RemoteSource("memory://bale-test/memory.bin", options=QUICK)
    assert source.backend == "fsspec" and source.requests == 2
    assert source.read(100 * KiB, 100 * KiB) == data[100 * KiB : 200 * KiB]
    assert source.read(len(data) - 40, 40) == data[-40:]
    with pytest.raises(ObjectNotFoundError, match=re.escape("memory://bale-test/absent.bin")):
        RemoteSource("memory://bale-test/absent.bin", options=QUICK)
