"""Remote read clients compared on a loopback range server: which one `bale.io.remote` uses.

Starts a range-serving HTTP server on 127.0.0.1 in a child process (so the client's interpreter
is not sharing a GIL with the server), holding one 64 MiB object of random bytes, with a fixed
delay added before every response (0, 5 and 20 ms by default: a same-zone object store is about
5-20 ms to first byte). The server also answers path-style S3 GET/HEAD (it ignores the
signature), so the S3 clients run against the same bytes. For each client and delay it times:

- ``64K``: one ranged GET of 64 KiB in the middle of the object (a random frame);
- ``16 x 1M``: 16 concurrent ranged GETs of 1 MiB each, 4 MiB apart (a row group each), from 16
  threads, as the loader's read-ahead issues them; reported as MB/s, and as the CPU time the
  client's process spent on them (all its threads: the figure that does not depend on how
  fast this Python server is, and what the client takes from decoding on a busy node);
- ``open``: the object's size plus its last 64 KiB, the way that client can get both (one
  suffix-range GET where the client returns the object's size with it, else HEAD + GET);
  the requests it took are counted by the server.

Clients: fsspec's HTTPFileSystem (aiohttp), s3fs (aiobotocore), obstore's HTTPStore and S3Store
(Rust object_store + reqwest), and bale's own RemoteSource on each backend it supports (the
client plus its retry, checking and counting layer). Medians of ``--repeat`` runs, all in one
process, after one warm-up (connections open, credentials resolved).

    .venv/bin/python -m bench.remote_client_bench                # ~2 minutes
    .venv/bin/python -m bench.remote_client_bench --quick        # a smoke run
"""

from __future__ import annotations

import argparse
import email.utils
import http.server
import json
import multiprocessing
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

MiB = 1 << 20
OBJECT_BYTES = 64 * MiB
TAIL = 64 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class _DelayedRangeHandler(http.server.BaseHTTPRequestHandler):
    """GET/HEAD of one object under any path, honouring single Range requests, after a delay."""

    protocol_version = "HTTP/1.1"
    server: _DelayedRangeServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _headers(self, status: int, length: int, content_range: str | None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", '"bench-object"')
        self.send_header("Last-Modified", self.server.last_modified)
        if content_range:
            self.send_header("Content-Range", content_range)
        self.end_headers()

    def _answer(self, body: bool) -> None:
        with self.server.counter.get_lock():
            self.server.counter.value += 1
        if self.server.delay_s.value:
            time.sleep(self.server.delay_s.value)
        data = self.server.data
        size = len(data)
        spec = self.headers.get("Range")
        if spec is None:
            self._headers(200, size, None)
            if body:
                self.wfile.write(data)
            return
        match = _RANGE.match(spec.strip())
        if not match or match.groups() == ("", ""):
            self.send_error(416)
            return
        first, last = match.groups()
        if first == "":
            start, stop = max(0, size - int(last)), size
        else:
            start = int(first)
            stop = min(size, int(last) + 1) if last else size
        if start >= size:
            self.send_error(416)
            return
        self._headers(206, stop - start, f"bytes {start}-{stop - 1}/{size}")
        if body:
            self._send(memoryview(data)[start:stop])

    def _send(self, body: memoryview) -> None:
        """The body, paced to ``bandwidth`` bytes/s per response when one is set (an object
        store serves one connection at about 100 MB/s; more come from more connections)."""
        rate = self.server.bandwidth.value
        if not rate:
            self.wfile.write(body)
            return
        started = time.perf_counter()
        step = 256 << 10
        for offset in range(0, len(body), step):
            self.wfile.write(body[offset : offset + step])
            ahead = (offset + step) / rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)


class _DelayedRangeServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, data: bytes, delay_s: Any, counter: Any, bandwidth: Any) -> None:
        super().__init__(("127.0.0.1", 0), _DelayedRangeHandler)
        self.data = data
        self.delay_s = delay_s
        self.counter = counter
        self.bandwidth = bandwidth
        self.last_modified = email.utils.formatdate(usegmt=True)


def _serve(
    port: Any, delay_s: Any, counter: Any, bandwidth: Any, ready: Any, path: str | None = None
) -> None:
    if path is None:
        data = os.urandom(OBJECT_BYTES)
    else:
        with open(path, "rb") as f:
            data = f.read()
    server = _DelayedRangeServer(data, delay_s, counter, bandwidth)
    port.value = server.server_address[1]
    ready.set()
    server.serve_forever()


class LoopbackServer:
    """The delayed range server in a child process; ``delay_s`` and ``requests`` are shared."""

    def __init__(self, path: str | None = None) -> None:
        """Serve ``path``'s bytes under every URL path (random bytes without one)."""
        ctx = multiprocessing.get_context("spawn")
        self._port = ctx.Value("i", 0)
        self._delay = ctx.Value("d", 0.0)
        self._counter = ctx.Value("q", 0)
        self._bandwidth = ctx.Value("d", 0.0)
        ready = ctx.Event()
        self._process = ctx.Process(
            target=_serve,
            args=(self._port, self._delay, self._counter, self._bandwidth, ready, path),
            daemon=True,
        )
        self._process.start()
        if not ready.wait(60):
            raise RuntimeError("the loopback server did not start")
        self.endpoint = f"http://127.0.0.1:{self._port.value}"

    @property
    def requests(self) -> int:
        return int(self._counter.value)

    def set_delay(self, seconds: float) -> None:
        self._delay.value = seconds

    def set_bandwidth(self, bytes_per_s: float) -> None:
        """Pace each response to this many bytes/s (0: as fast as loopback goes)."""
        self._bandwidth.value = bytes_per_s

    def close(self) -> None:
        self._process.terminate()
        self._process.join(10)


# -- the clients, each as (get(start, stop) -> bytes, open() -> (size, tail)) -------------------


class Client:
    name = ""

    def get(self, start: int, stop: int) -> Any:
        raise NotImplementedError

    def open(self) -> tuple[int, Any]:
        raise NotImplementedError


class FsspecHTTP(Client):
    name = "fsspec HTTP (aiohttp)"

    def __init__(self, endpoint: str) -> None:
        from fsspec.implementations.http import HTTPFileSystem

        self.fs = HTTPFileSystem(skip_instance_cache=True)
        self.url = f"{endpoint}/bucket/object.bin"

    def get(self, start: int, stop: int) -> Any:
        return self.fs.cat_file(self.url, start, stop)

    def open(self) -> tuple[int, Any]:
        size = int(self.fs.info(self.url)["size"])
        return size, self.fs.cat_file(self.url, size - TAIL, size)


class S3fs(Client):
    name = "s3fs (aiobotocore)"

    def __init__(self, endpoint: str) -> None:
        import s3fs

        self.fs = s3fs.S3FileSystem(
            key="bench",
            secret="bench-secret",
            endpoint_url=endpoint,
            skip_instance_cache=True,
            client_kwargs={"region_name": "us-east-1"},
        )
        self.path = "bucket/object.bin"

    def get(self, start: int, stop: int) -> Any:
        return self.fs.cat_file(self.path, start=start, end=stop)

    def open(self) -> tuple[int, Any]:
        size = int(self.fs.info(self.path)["size"])
        return size, self.fs.cat_file(self.path, start=size - TAIL, end=size)


class Obstore(Client):
    def __init__(self, store: Any, path: str, name: str) -> None:
        import obstore

        self.obstore = obstore
        self.store = store
        self.path = path
        self.name = name

    def get(self, start: int, stop: int) -> Any:
        return self.obstore.get_range(self.store, self.path, start=start, end=stop)

    def open(self) -> tuple[int, Any]:
        result = self.obstore.get(self.store, self.path, options={"range": {"suffix": TAIL}})
        return int(result.meta["size"]), result.bytes()


def obstore_http(endpoint: str) -> Obstore:
    from obstore.store import HTTPStore

    store = HTTPStore.from_url(f"{endpoint}/bucket", client_options={"allow_http": True})
    return Obstore(store, "object.bin", "obstore HTTPStore")


def obstore_s3(endpoint: str) -> Obstore:
    from obstore.store import S3Store

    store = S3Store(
        "bucket",
        endpoint=endpoint,
        access_key_id="bench",
        secret_access_key="bench-secret",
        region="us-east-1",
        client_options={"allow_http": True},
    )
    return Obstore(store, "object.bin", "obstore S3Store")


class BaleSource(Client):
    """bale.io.remote.RemoteSource on one backend: what the reader will actually pay."""

    def __init__(self, url: str, options: dict[str, Any], backend: str) -> None:
        from bale.io.remote import RemoteOptions, RemoteSource

        settings = RemoteOptions(backend=backend)  # type: ignore[arg-type]
        self.make = lambda: RemoteSource(url, options, options=settings)
        self.source = self.make()
        self.name = f"bale RemoteSource {backend} {url.split(':')[0]}"

    def get(self, start: int, stop: int) -> Any:
        return self.source.read(start, stop - start)

    def open(self) -> tuple[int, Any]:
        source = self.make()
        return source.size(), source.read(source.size() - TAIL, TAIL)


def clients(endpoint: str) -> list[Client]:
    s3_options = {
        "key": "bench",
        "secret": "bench-secret",
        "endpoint_url": endpoint,
        "client_kwargs": {"region_name": "us-east-1"},
    }
    found: list[Client] = []
    makers: list[Callable[[], Client]] = [
        lambda: FsspecHTTP(endpoint),
        lambda: S3fs(endpoint),
        lambda: obstore_http(endpoint),
        lambda: obstore_s3(endpoint),
        lambda: BaleSource(f"{endpoint}/bucket/object.bin", {}, "fsspec"),
        lambda: BaleSource("s3://bucket/object.bin", s3_options, "fsspec"),
        lambda: BaleSource(f"{endpoint}/bucket/object.bin", {}, "obstore"),
        lambda: BaleSource("s3://bucket/object.bin", s3_options, "obstore"),
    ]
    for make in makers:
        try:
            found.append(make())
        except ImportError as exc:
            print(f"skipped a client: {exc}")
    return found


# -- measuring -----------------------------------------------------------------------------------


def median_ms(run: Callable[[], Any], repeat: int) -> float:
    return median_wall_and_cpu_ms(run, repeat)[0]


def median_wall_and_cpu_ms(run: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Medians of the wall time and of this process's CPU time (all threads), ms."""
    walls, cpus = [], []
    for _ in range(repeat):
        cpu, started = time.process_time(), time.perf_counter()
        run()
        walls.append((time.perf_counter() - started) * 1e3)
        cpus.append((time.process_time() - cpu) * 1e3)
    return statistics.median(walls), statistics.median(cpus)


def measure(client: Client, server: LoopbackServer, repeat: int) -> dict[str, float]:
    size = OBJECT_BYTES
    starts = [i * 4 * MiB for i in range(16)]
    pool = ThreadPoolExecutor(16)

    middle = size // 2

    def one_tail() -> None:
        if len(client.get(middle, middle + TAIL)) != TAIL:
            raise RuntimeError(f"{client.name}: short 64 KiB read")

    def sixteen() -> None:
        results = list(pool.map(lambda s: client.get(s, s + MiB), starts))
        if any(len(r) != MiB for r in results):
            raise RuntimeError(f"{client.name}: short 1 MiB read")

    def opened() -> None:
        got_size, tail = client.open()
        if got_size != size or len(tail) != TAIL:
            raise RuntimeError(f"{client.name}: open returned {got_size}, {len(tail)} bytes")

    sixteen()  # warm-up: connections opened, credentials resolved, the pool started
    one_tail()
    before = server.requests
    opened()
    open_requests = server.requests - before
    try:
        wall, cpu = median_wall_and_cpu_ms(sixteen, max(3, repeat // 2))
        return {
            "tail_64k_ms": median_ms(one_tail, repeat),
            "concurrent_16x1m_ms": wall,
            "concurrent_16x1m_cpu_ms": cpu,
            "open_ms": median_ms(opened, repeat),
            "open_requests": open_requests,
        }
    finally:
        pool.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--delays", default="0,5,20", help="per-request delays, ms")
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--quick", action="store_true", help="3 repeats, delays 0 and 5 ms")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    delays = [0.0, 5.0] if args.quick else [float(d) for d in args.delays.split(",")]
    repeat = 3 if args.quick else args.repeat
    server = LoopbackServer()
    try:
        found = clients(server.endpoint)
        results: list[dict[str, Any]] = []
        for delay in delays:
            server.set_delay(delay / 1e3)
            for client in found:
                row = {"client": client.name, "delay_ms": delay, **measure(client, server, repeat)}
                results.append(row)
                print(json.dumps(row), flush=True)
    finally:
        server.close()
    print()
    print(
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}; medians of {repeat} (16 x 1M: of {max(3, repeat // 2)})"
    )
    print()
    print(
        "| delay | client | 64 KiB GET ms | 16 x 1 MiB ms (MB/s) | client CPU ms for them "
        "| open ms (requests) |"
    )
    print("|---|---|---|---|---|---|")
    for row in results:
        mbps = 16 * MiB / 1e6 / (row["concurrent_16x1m_ms"] / 1e3)
        print(
            f"| {row['delay_ms']:.0f} ms | {row['client']} | {row['tail_64k_ms']:.2f} | "
            f"{row['concurrent_16x1m_ms']:.1f} ({mbps:.0f}) | "
            f"{row['concurrent_16x1m_cpu_ms']:.1f} | {row['open_ms']:.2f} "
            f"({row['open_requests']}) |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
