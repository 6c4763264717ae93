"""A directory served on loopback as a web server and as enough of an S3 endpoint for benchmarks:
ranged GET, HEAD, ListObjectsV2, a delay before every answer and an optional bandwidth cap.

The server runs in a child process (spawned, so the measured client's interpreter does not share
a GIL with it) and holds no file in memory: each answer is read from disk (the page cache, once
warm) and sent with ``sendfile``, or in paced chunks under a bandwidth cap. ``/a/b/c`` is the
file ``root/a/b/c``; read as S3 (path-style), ``a`` is the bucket and ``b/c`` the key, so the same
files answer ``http://127.0.0.1:PORT/a/b/c`` and ``s3://a/b/c`` with ``endpoint_url`` set to the
server. Signatures are not checked. What S3 clients need and this server answers: GetObject
(single ``Range``), HeadObject, HeadBucket, ListObjectsV2 (prefix, delimiter, max-keys,
continuation), and ``NoSuchKey`` / ``NoSuchBucket`` errors as XML. Writes are refused (405).

    with DirectoryServer(root, delay_s=0.02) as server:
        url = f"{server.endpoint}/bucket/train.bale"
        ...
        server.requests, server.bytes_sent
"""

from __future__ import annotations

import email.utils
import http.server
import multiprocessing
import os
import re
import threading
import time
import urllib.parse
from pathlib import Path
from types import TracebackType
from typing import Any
from xml.sax.saxutils import escape

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
_CHUNK = 256 * 1024
_S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"


class _Pacer:
    """A bandwidth cap shared by every connection: each chunk waits for its slot on one line."""

    def __init__(self, bytes_per_s: Any) -> None:
        self.bytes_per_s = bytes_per_s
        self._lock = threading.Lock()
        self._free_at = 0.0

    def wait(self, nbytes: int) -> None:
        rate = self.bytes_per_s.value
        if rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._free_at)
            self._free_at = start + nbytes / rate
            until = self._free_at
        pause = until - time.monotonic()
        if pause > 0:
            time.sleep(pause)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- the request, resolved --------------------------------------------------------------------

    def _begin(self) -> tuple[Path | None, str, dict[str, list[str]]]:
        """Count the request, wait the delay, and resolve the path under the root (None when it
        escapes the root)."""
        with self.server.requests.get_lock():
            self.server.requests.value += 1
        delay = self.server.delay_s.value
        if delay > 0:
            time.sleep(delay)
        parts = urllib.parse.urlsplit(self.path)
        relative = urllib.parse.unquote(parts.path).lstrip("/")
        target = (self.server.root / relative).resolve()
        inside = target == self.server.root or self.server.root in target.parents
        return (target if inside else None), relative, urllib.parse.parse_qs(parts.query)

    def _send(self, status: int, body: bytes, content_type: str, with_body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)
            self._count(len(body))

    def _count(self, nbytes: int) -> None:
        with self.server.bytes_sent.get_lock():
            self.server.bytes_sent.value += nbytes

    def _error(self, status: int, code: str, resource: str, with_body: bool) -> None:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{code}</Message><Resource>/{escape(resource)}</Resource></Error>"
        ).encode()
        self._send(status, body, "application/xml", with_body)

    # -- verbs ------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _refuse(self) -> None:
        self._begin()
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._error(405, "MethodNotAllowed", self.path, True)

    do_PUT = do_POST = do_DELETE = _refuse

    def _answer(self, with_body: bool) -> None:
        target, relative, query = self._begin()
        if target is None:
            self._error(403, "AccessDenied", relative, with_body)
        elif "list-type" in query:
            self._list(target, relative, query, with_body)
        elif target.is_file():
            self._object(target, with_body)
        elif "/" not in relative.strip("/"):  # HeadBucket, or a GET of a bucket
            if target.is_dir():
                self._send(200, b"", "application/xml", with_body)
            else:
                self._error(404, "NoSuchBucket", relative, with_body)
        else:
            self._error(404, "NoSuchKey", relative, with_body)

    def _object(self, path: Path, with_body: bool) -> None:
        stat = path.stat()
        size = stat.st_size
        spec = self.headers.get("Range")
        start, stop, status = 0, size, 200
        if spec is not None:
            match = _RANGE.match(spec.strip())
            if not match or match.groups() == ("", ""):
                self._error(416, "InvalidRange", str(path), with_body)
                return
            first, last = match.groups()
            if first == "":
                start = max(0, size - int(last))
            else:
                start = int(first)
                stop = min(size, int(last) + 1) if last else size
            if start >= size and size > 0:
                self._error(416, "InvalidRange", str(path), with_body)
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(stop - start))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{stat.st_mtime_ns:x}-{size:x}"')
        self.send_header("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
        self.end_headers()
        if with_body and stop > start:
            self._body(path, start, stop)

    def _body(self, path: Path, start: int, stop: int) -> None:
        with open(path, "rb") as f:
            if self.server.pacer.bytes_per_s.value <= 0:
                sent = self.connection.sendfile(f, start, stop - start)
                self._count(sent)
                return
            offset = start
            while offset < stop:
                n = min(_CHUNK, stop - offset)
                self.server.pacer.wait(n)
                self.wfile.write(os.pread(f.fileno(), n, offset))
                self._count(n)
                offset += n

    def _list(
        self, bucket_dir: Path, bucket: str, query: dict[str, list[str]], with_body: bool
    ) -> None:
        """ListObjectsV2 of the bucket ``bucket`` (the first path segment)."""
        bucket = bucket.strip("/")
        if "/" in bucket or not bucket_dir.is_dir():
            self._error(404, "NoSuchBucket", bucket, with_body)
            return

        def one(name: str, default: str = "") -> str:
            return query.get(name, [default])[0]

        prefix, delimiter = one("prefix"), one("delimiter")
        max_keys = int(one("max-keys", "1000"))
        after = one("continuation-token") or one("start-after")
        keys = sorted(
            p.relative_to(bucket_dir).as_posix() for p in bucket_dir.rglob("*") if p.is_file()
        )
        contents: list[str] = []
        prefixes: list[str] = []
        last = ""
        truncated = False
        for key in keys:
            if not key.startswith(prefix) or key <= after:
                continue
            if delimiter and delimiter in key[len(prefix) :]:
                common = key[: key.index(delimiter, len(prefix)) + len(delimiter)]
                if common in prefixes or common <= after:
                    continue
                entry = f"<CommonPrefixes><Prefix>{escape(common)}</Prefix></CommonPrefixes>"
                prefixes.append(common)
                name = common
            else:
                stat = (bucket_dir / key).stat()
                modified = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(stat.st_mtime))
                entry = (
                    f"<Contents><Key>{escape(key)}</Key><LastModified>{modified}</LastModified>"
                    f"<ETag>&quot;{stat.st_mtime_ns:x}-{stat.st_size:x}&quot;</ETag>"
                    f"<Size>{stat.st_size}</Size><StorageClass>STANDARD</StorageClass></Contents>"
                )
                name = key
            if len(contents) >= max_keys:
                truncated = True
                break
            contents.append(entry)
            last = name
        token = (
            f"<NextContinuationToken>{escape(last)}</NextContinuationToken>" if truncated else ""
        )
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{_S3_NS}">'
            f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>"
            f"<Delimiter>{escape(delimiter)}</Delimiter><MaxKeys>{max_keys}</MaxKeys>"
            f"<KeyCount>{len(contents)}</KeyCount><IsTruncated>{str(truncated).lower()}"
            f"</IsTruncated>{token}{''.join(contents)}</ListBucketResult>"
        ).encode()
        self._send(200, body, "application/xml", with_body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, root: Path, shared: dict[str, Any]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root.resolve()
        self.delay_s = shared["delay_s"]
        self.requests = shared["requests"]
        self.bytes_sent = shared["bytes_sent"]
        self.pacer = _Pacer(shared["bytes_per_s"])


def _serve(root: str, shared: dict[str, Any], ready: Any) -> None:
    server = _Server(Path(root), shared)
    shared["port"].value = server.server_address[1]
    ready.set()
    server.serve_forever()


class DirectoryServer:
    """``root`` served on 127.0.0.1 by a child process until :meth:`close`; the delay and the
    bandwidth cap can be changed while it runs, the request and byte counters read at any time."""

    def __init__(
        self, root: str | os.PathLike[str], *, delay_s: float = 0.0, bytes_per_s: float = 0.0
    ) -> None:
        """``delay_s`` before every answer; ``bytes_per_s`` caps all bodies together (0: no cap)."""
        ctx = multiprocessing.get_context("spawn")
        self._shared = {
            "port": ctx.Value("i", 0),
            "delay_s": ctx.Value("d", delay_s),
            "bytes_per_s": ctx.Value("d", bytes_per_s),
            "requests": ctx.Value("q", 0),
            "bytes_sent": ctx.Value("q", 0),
        }
        ready = ctx.Event()
        self._process = ctx.Process(
            target=_serve, args=(os.fspath(root), self._shared, ready), daemon=True
        )
        self._process.start()
        deadline = time.monotonic() + 60
        while not ready.wait(0.05):
            if not self._process.is_alive() or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(
                    f"the loopback server for {root} did not start (exit code "
                    f"{self._process.exitcode}; a spawned child needs the main module guarded "
                    "by `if __name__ == '__main__'`)"
                )
        self.endpoint = f"http://127.0.0.1:{self._shared['port'].value}"

    @property
    def requests(self) -> int:
        """Requests answered so far (every verb, errors included)."""
        return int(self._shared["requests"].value)

    @property
    def bytes_sent(self) -> int:
        """Body bytes sent so far (object bytes, listings and error bodies)."""
        return int(self._shared["bytes_sent"].value)

    def set_delay(self, seconds: float) -> None:
        self._shared["delay_s"].value = seconds

    def set_bandwidth(self, bytes_per_s: float) -> None:
        """Cap every body together at ``bytes_per_s`` (0 lifts the cap)."""
        self._shared["bytes_per_s"].value = bytes_per_s

    def close(self) -> None:
        self._process.terminate()
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(10)

    def __enter__(self) -> DirectoryServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
