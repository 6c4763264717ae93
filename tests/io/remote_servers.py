"""Loopback servers for the remote-source tests: a Range-capable HTTP object server and a
fault-injecting reverse proxy that goes in front of it or of moto's S3 server.

Both listen on 127.0.0.1 only, count the requests they answer, and stop in ``close()``.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import http.client
import http.server
import re
import socket
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class _Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ObjectHandler(_Quiet):
    server: RangeServer

    def _answer(self, body: bool) -> None:
        server = self.server
        server.count(self.command, self.path, self.headers)
        name = self.path.split("?", 1)[0]
        if server.required_header is not None:
            key, value = server.required_header
            if self.headers.get(key) != value:
                self._error(403, b"denied")
                return
        data = server.objects.get(name)
        if data is None:
            self._error(404, b"no such object")
            return
        etag = '"' + hashlib.md5(data).hexdigest() + '"'
        if_match = self.headers.get("If-Match")
        if if_match is not None and if_match not in ("*", etag):
            self._error(412, b"precondition failed")
            return
        size = len(data)
        spec = self.headers.get("Range")
        start, stop, status = 0, size, 200
        if spec is not None and server.honour_ranges:
            match = _RANGE.match(spec.strip())
            if not match or match.groups() == ("", ""):
                self._error(416, b"bad range")
                return
            first, last = match.groups()
            if first == "":
                start = max(0, size - int(last))
            else:
                start = int(first)
                stop = min(size, int(last) + 1) if last else size
            if start >= size:
                self._error(416, b"range not satisfiable")
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(stop - start))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", server.last_modified)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
        self.end_headers()
        if body:
            self.wfile.write(memoryview(data)[start:stop])

    def _error(self, status: int, message: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(message)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(message)

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)


class _Server(http.server.ThreadingHTTPServer):
    # close() ends every connection and joins every handler thread, so a stopped server leaves
    # no socket behind (a later test may count this process's descriptors)
    daemon_threads = False
    block_on_close = True

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that give up mid-answer are what the fault tests are about

    def count(self, method: str, path: str, headers: Any) -> None:
        with self._lock:
            self.requests.append((method, path, dict(headers.items())))

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        with self._lock:
            self._connections.add(connection)
        return connection, address

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close(self) -> None:
        self.shutdown()
        self._thread.join(10)
        with self._lock:
            connections = list(self._connections)
        for connection in connections:  # wakes handlers waiting on a kept-alive connection
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self.server_close()  # joins the handler threads


class RangeServer(_Server):
    """Objects by path (``/bucket/name``), GET and HEAD, single ``Range`` requests (including
    suffix ranges), ETag and If-Match. ``honour_ranges=False`` makes it answer every GET with
    the whole object (200), as some servers do; ``required_header`` makes it refuse (403)
    requests without that header."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.honour_ranges = True
        self.required_header: tuple[str, str] | None = None
        self.last_modified = email.utils.formatdate(usegmt=True)
        super().__init__(_ObjectHandler)

    def url(self, name: str) -> str:
        return f"{self.endpoint}{name}"


@dataclass
class Fault:
    """What the proxy does to one request: ``delay`` seconds first, then one of ``kind``:
    "pass" (forward), "drop" (close the connection, no answer), "slow_down" (503 SlowDown),
    "too_many" (429), "error_500", "truncate" (the upstream's headers, then half the body, then close), "stall"
    (headers, then nothing until the client gives up)."""

    kind: str = "pass"
    delay: float = 0.0

    def __post_init__(self) -> None:
        kinds = ("pass", "drop", "slow_down", "too_many", "error_500", "truncate", "stall")
        if self.kind not in kinds:
            raise ValueError(f"unknown fault {self.kind!r}")


class _ProxyHandler(_Quiet):
    server: FaultProxy

    def _relay(self) -> None:
        proxy = self.server
        proxy.count(self.command, self.path, self.headers)
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length else None
        fault = proxy.next_fault(self.command, self.path)
        if fault.delay:
            proxy.stop_stalling.wait(fault.delay)  # a sleep that close() cuts short
        if fault.kind == "drop":
            self._drop()
            return
        errors = {"slow_down": (503, "SlowDown"), "too_many": (429, "TooManyRequests")}
        if fault.kind in ("slow_down", "too_many", "error_500"):
            status, code = errors.get(fault.kind, (500, "InternalError"))
            body = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>injected by the test proxy</Message></Error>"
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=30)
        try:
            upstream.request(self.command, self.path, body=payload, headers=headers)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        if self.command == "HEAD":  # no body: the object's length, as the upstream said
            self.send_header("Content-Length", response.getheader("Content-Length") or "0")
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if fault.kind == "stall":
            self.wfile.flush()
            proxy.stop_stalling.wait(60)
            self._drop()
            return
        if self.command == "HEAD":
            return
        if fault.kind == "truncate" and len(data) > 1:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._drop()
            return
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _relay


class FaultProxy(_Server):
    """A reverse proxy to ``upstream`` (an http://127.0.0.1:PORT endpoint) that applies planned
    faults to the next requests: ``plan(Fault("slow_down"), times=2)``. Requests beyond the
    plan pass through unchanged (after ``latency`` seconds, if set)."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream_host, self.upstream_port = host, int(port)
        self.latency = 0.0
        self.stop_stalling = threading.Event()
        self._faults: deque[Fault] = deque()
        self._fault_lock = threading.Lock()
        super().__init__(_ProxyHandler)

    def plan(self, fault: Fault, times: int = 1) -> None:
        with self._fault_lock:
            self._faults.extend([fault] * times)

    def clear(self) -> None:
        with self._fault_lock:
            self._faults.clear()

    def next_fault(self, method: str, path: str) -> Fault:
        with self._fault_lock:
            if self._faults:
                return self._faults.popleft()
        return Fault(delay=self.latency)

    def close(self) -> None:
        self.stop_stalling.set()
        super().close()
