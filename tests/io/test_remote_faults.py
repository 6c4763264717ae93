"""Faults between the source and the store (a proxy injecting them in front of the HTTP server
and of moto's S3): every read gives the right bytes or a clear bale error, never wrong or short
bytes, and never hangs (each call runs under a time bound of its own)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from remote_helpers import QUICK, Store, bounded
from remote_servers import Fault, FaultProxy, RangeServer

from bale.errors import CorruptFileError, RemoteReadError

KiB = 1 << 10
DATA = np.random.default_rng(7).integers(0, 256, 512 * KiB, dtype=np.uint8).tobytes()
#: A range outside the kept head and tail: a real request.
START, SIZE = 100 * KiB, 200 * KiB

#: Tighter limits for faults that never clear, so giving up takes about a second.
GIVE_UP = dataclasses.replace(
    QUICK, read_timeout_s=0.3, request_timeout_s=1.0, max_retries=3, retry_timeout_s=0.6
)

TRANSIENT = ["drop", "slow_down", "too_many", "error_500", "truncate", "stall"]


@pytest.mark.parametrize("kind", TRANSIENT)
def test_transient_faults_are_retried_to_the_right_bytes(
    faulty: tuple[Store, FaultProxy], kind: str
) -> None:
    store, proxy = faulty
    store.put("faults.bin", DATA)
    times = 1 if kind == "stall" else 2  # a stall costs a read timeout
    proxy.plan(Fault(kind), times=times)  # the opening request fails
    source = bounded(lambda: store.open("faults.bin"))
    assert source.size() == len(DATA)
    proxy.plan(Fault(kind), times=times)  # and so does the read
    before = proxy.request_count
    assert bounded(lambda: source.read(START, SIZE)) == DATA[START : START + SIZE]
    assert proxy.request_count - before >= times + 1


def test_added_latency_is_waited_for(faulty: tuple[Store, FaultProxy]) -> None:
    store, proxy = faulty
    store.put("slow.bin", DATA)
    proxy.latency = 0.15  # under every time limit of QUICK
    started = time.monotonic()
    source = bounded(lambda: store.open("slow.bin"))
    assert bounded(lambda: source.read(START, SIZE)) == DATA[START : START + SIZE]
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize("kind", ["slow_down", "stall", "truncate"])
def test_faults_that_never_clear_end_in_a_clear_error_in_bounded_time(
    faulty: tuple[Store, FaultProxy], kind: str
) -> None:
    store, proxy = faulty
    store.put("broken.bin", DATA)
    source = store.open("broken.bin", GIVE_UP)
    proxy.plan(Fault(kind), times=1000)
    started = time.monotonic()
    with pytest.raises(RemoteReadError) as info:
        bounded(lambda: source.read(START, SIZE), seconds=15)
    took = time.monotonic() - started
    assert took < GIVE_UP.attempt_bound_s + 2, took
    assert info.value.path == store.url("broken.bin")
    assert f"bytes {START}..{START + SIZE - 1}" in str(info.value)
    proxy.clear()
    assert bounded(lambda: source.read(START, SIZE)) == DATA[START : START + SIZE]


def test_latency_beyond_the_time_limits_ends_in_a_clear_error(
    faulty: tuple[Store, FaultProxy],
) -> None:
    store, proxy = faulty
    store.put("too_slow.bin", DATA)
    source = store.open("too_slow.bin", GIVE_UP)
    proxy.latency = 1.5  # past request_timeout_s on every attempt
    with pytest.raises(RemoteReadError, match="failed"):
        bounded(lambda: source.read(START, SIZE), seconds=15)


def test_a_server_that_ignores_ranges_is_refused_not_misread(
    range_server: RangeServer, http: Store
) -> None:
    http.put("norange.bin", DATA)
    range_server.honour_ranges = False
    try:
        with pytest.raises(RemoteReadError, match="byte-range"):
            bounded(lambda: http.open("norange.bin"))
    finally:
        range_server.honour_ranges = True


def test_an_object_replaced_after_open_is_reported_not_mixed(store: Store) -> None:
    """The ETag seen at open goes with every read as If-Match: the bytes of another version
    are never returned."""
    store.put("replaced.bin", DATA)
    source = store.open("replaced.bin")
    assert source.read(START, 10) == DATA[START : START + 10]
    store.put("replaced.bin", DATA[::-1])
    with pytest.raises(CorruptFileError, match="changed after it was opened"):
        bounded(lambda: source.read(START + SIZE, 10))
    # the kept tail and head are the opened version's: still consistent
    assert source.read(len(DATA) - 40, 40) == DATA[-40:]
