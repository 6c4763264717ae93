"""A directory served on loopback as a web server and as enough of an S3 endpoint for benchmarks:
ranged GET, HEAD, ListObjectsV2, PutObject and multipart uploads, a delay before every answer and
optional bandwidth caps.

The server runs in a child process (spawned, so the measured client's interpreter does not share
a GIL with it) and holds no file in memory: each answer is read from disk (the page cache, once
warm) and sent with ``sendfile``, or in paced chunks under a bandwidth cap. ``/a/b/c`` is the
file ``root/a/b/c``; read as S3 (path-style), ``a`` is the bucket and ``b/c`` the key, so the same
files answer ``http://127.0.0.1:PORT/a/b/c`` and ``s3://a/b/c`` with ``endpoint_url`` set to the
server. Signatures are not checked. What S3 clients need and this server answers: GetObject
(single ``Range``), HeadObject, HeadBucket, ListObjectsV2 (prefix, delimiter, max-keys,
continuation), and ``NoSuchKey`` / ``NoSuchBucket`` errors as XML.

Writes (path-style S3; plain HTTP PUT/POST/DELETE of the same paths are read the same way):
PutObject, DeleteObject, CreateBucket (``PUT /bucket``), and multipart uploads as S3 does them:
CreateMultipartUpload (``POST ?uploads``), UploadPart (``PUT ?partNumber=&uploadId=``),
CompleteMultipartUpload (``POST ?uploadId=`` with the XML part list: parts in ascending order,
each ETag as UploadPart returned it, every part but the last at least 5 MiB), AbortMultipartUpload
(``DELETE ?uploadId=``) and ListMultipartUploads (``GET /bucket?uploads``). Bodies are streamed to
disk (``Content-Length`` or ``Transfer-Encoding: chunked``; ``aws-chunked`` is refused) under the
same delay and caps as reads. An object appears atomically (a rename) only when its PutObject
body has fully arrived or its upload is completed, assembled then by concatenating the parts in
order; until then parts live under ``root/.uploads/<upload id>/``, which no request can read.
ETags are opaque (not MD5s), as S3's are for multipart objects.

    with DirectoryServer(root, delay_s=0.02, request_bytes_per_s=100e6) as server:
        url = f"{server.endpoint}/bucket/train.bale"
        ...
        server.requests, server.bytes_sent, server.bytes_received
"""

from __future__ import annotations

import email.utils
import http.server
import multiprocessing
import os
import re
import shutil
import tempfile
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from xml.sax.saxutils import escape

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
_CHUNK = 256 * 1024
_S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_XML = "application/xml"
_UPLOADS = ".uploads"  # multipart parts and bodies in flight; a dot name no request can reach
_MIN_PART = 5 * 1024 * 1024  # S3's smallest part but the last
_MAX_XML = 1 << 20  # the largest CompleteMultipartUpload body read


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


class _RequestPacer:
    """One request's own cap (an object store's rate per connection): its body's first ``n``
    bytes take at least ``n / rate`` seconds from the body's start."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._start = time.monotonic()
        self._done = 0

    def wait(self, nbytes: int) -> None:
        if self.rate <= 0:
            return
        self._done += nbytes
        pause = self._start + self._done / self.rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)


def _etag(path: Path) -> str:
    stat = path.stat()
    return f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'


def _append(out: IO[bytes], part: Path) -> None:
    """Copy a part to the end of ``out``, in the kernel where it can."""
    with open(part, "rb") as f:
        left = os.fstat(f.fileno()).st_size
        try:
            while left:
                n = os.copy_file_range(f.fileno(), out.fileno(), left)
                if n == 0:
                    raise OSError("copy_file_range copied nothing")
                left -= n
        except OSError:
            out.seek(0, os.SEEK_END)
            f.seek(-left, os.SEEK_END)
            shutil.copyfileobj(f, out, 8 * _CHUNK)


def _local(element: ET.Element) -> str:
    return element.tag.rsplit("}", 1)[-1]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    _body_read = False

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- the request, resolved --------------------------------------------------------------------

    def _begin(self) -> tuple[Path | None, str, dict[str, list[str]]]:
        """Count the request, wait the delay, and resolve the path under the root (None when it
        escapes the root or names a dot folder at its top, where uploads are staged)."""
        with self.server.requests.get_lock():
            self.server.requests.value += 1
        framed = self.headers.get("Content-Length") not in (None, "0")
        self._body_read = not (framed or self.headers.get("Transfer-Encoding"))
        delay = self.server.delay_s.value
        if delay > 0:
            time.sleep(delay)
        parts = urllib.parse.urlsplit(self.path)
        relative = urllib.parse.unquote(parts.path).lstrip("/")
        target = (self.server.root / relative).resolve()
        inside = target == self.server.root or self.server.root in target.parents
        if inside and target != self.server.root:
            inside = not target.relative_to(self.server.root).parts[0].startswith(".")
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        return (target if inside else None), relative, query

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        with_body: bool,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if not self._body_read and self.command in ("PUT", "POST", "DELETE"):
            self.send_header("Connection", "close")  # an unread body: no next request on it
            self.close_connection = True
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
        self._send(status, body, _XML, with_body)

    def _pace(self) -> Callable[[int], None] | None:
        """The wait before each chunk of a body under the caps now set; None without a cap."""
        shared = self.server.pacer
        own = _RequestPacer(self.server.request_bytes_per_s.value)
        if shared.bytes_per_s.value <= 0 and own.rate <= 0:
            return None

        def wait(nbytes: int) -> None:
            shared.wait(nbytes)
            own.wait(nbytes)

        return wait

    # -- verbs ------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _answer(self, with_body: bool) -> None:
        target, relative, query = self._begin()
        if target is None:
            self._error(403, "AccessDenied", relative, with_body)
        elif "list-type" in query:
            self._list(target, relative, query, with_body)
        elif "uploads" in query:
            self._list_uploads(target, relative, query, with_body)
        elif target.is_file():
            self._object(target, with_body)
        elif "/" not in relative.strip("/"):  # HeadBucket, or a GET of a bucket
            if target.is_dir():
                self._send(200, b"", _XML, with_body)
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
            pace = self._pace()
            if pace is None:
                sent = self.connection.sendfile(f, start, stop - start)
                self._count(sent)
                return
            offset = start
            while offset < stop:
                n = min(_CHUNK, stop - offset)
                pace(n)
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
        self._send(200, body, _XML, with_body)

    # -- writes -----------------------------------------------------------------------------------

    def _where(self, target: Path | None) -> tuple[str, str] | None:
        """(bucket, key) of a resolved path (key "" for a bucket); None for the root or outside."""
        if target is None or target == self.server.root:
            return None
        parts = target.relative_to(self.server.root).parts
        return parts[0], "/".join(parts[1:])

    def _receive(self, out: IO[bytes] | None) -> bool:
        """Stream the request's body into ``out`` (None: discard it), paced as bodies sent are.
        False when the body cannot be read: cut short, or framed as this server does not read."""
        self._body_read = True
        if "aws-chunked" in (self.headers.get("Content-Encoding") or ""):
            self._body_read = False
            return False
        pace = self._pace()
        buffer = memoryview(bytearray(_CHUNK))
        try:
            if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
                while True:
                    size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline(1024).strip():
                            pass  # trailers
                        return True
                    if not self._copy(size, out, pace, buffer):
                        return False
                    self.rfile.readline(1024)
            return self._copy(int(self.headers.get("Content-Length") or 0), out, pace, buffer)
        except (ValueError, OSError):
            self.close_connection = True
            return False

    def _copy(
        self,
        size: int,
        out: IO[bytes] | None,
        pace: Callable[[int], None] | None,
        buffer: memoryview,
    ) -> bool:
        left = size
        while left:
            n = self.rfile.readinto(buffer[: min(len(buffer), left)])
            if not n:
                self.close_connection = True
                return False  # the client went away
            if pace is not None:
                pace(n)
            if out is not None:
                out.write(buffer[:n])
            with self.server.bytes_received.get_lock():
                self.server.bytes_received.value += n
            left -= n
        return True

    def _receive_file(self, directory: Path) -> Path | None:
        """The body, whole, in a new file in ``directory``; None (nothing left) if it was not."""
        directory.mkdir(exist_ok=True)
        fd, name = tempfile.mkstemp(dir=directory, prefix="body-")
        with os.fdopen(fd, "wb") as out:
            ok = self._receive(out)
        if not ok:
            os.unlink(name)
            return None
        return Path(name)

    def _unreadable(self) -> None:
        if self._body_read:  # cut short: the client is gone, no answer can reach it
            self.close_connection = True
            return
        self._error(501, "NotImplemented", "aws-chunked bodies are not read here", True)

    def do_PUT(self) -> None:
        target, relative, query = self._begin()
        where = self._where(target)
        if target is None or where is None:
            self._error(403, "AccessDenied", relative, True)
        elif "uploadId" in query:
            self._upload_part(target, where, query)
        elif not where[1]:  # CreateBucket
            self._receive(None)
            target.mkdir(exist_ok=True)
            self._send(200, b"", _XML, True)
        elif not (self.server.root / where[0]).is_dir():
            self._error(404, "NoSuchBucket", where[0], True)
        else:
            body = self._receive_file(self.server.staging)
            if body is None:
                self._unreadable()
                return
            self._publish(body, target)
            self._send(200, b"", _XML, True, {"ETag": _etag(target)})

    def _publish(self, body: Path, target: Path) -> None:
        """Put a whole body under its name at once (a rename: readers see old or new)."""
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(body, target)
        finally:
            body.unlink(missing_ok=True)

    def do_POST(self) -> None:
        target, relative, query = self._begin()
        where = self._where(target)
        if target is None or where is None or not where[1]:
            self._error(403 if target is None else 405, "MethodNotAllowed", relative, True)
        elif "uploads" in query:
            self._create_upload(where)
        elif "uploadId" in query:
            self._complete_upload(target, where, query["uploadId"][0])
        else:
            self._error(405, "MethodNotAllowed", relative, True)

    def do_DELETE(self) -> None:
        target, relative, query = self._begin()
        where = self._where(target)
        self._receive(None)
        if target is None or where is None or not where[1]:
            self._error(403 if target is None else 405, "MethodNotAllowed", relative, True)
        elif "uploadId" in query:
            upload = self._upload(where, query["uploadId"][0])
            if upload is None:
                self._error(404, "NoSuchUpload", relative, True)
                return
            doomed = upload.with_name(upload.name + ".aborting")
            try:
                upload.rename(doomed)  # one abort or complete wins
            except OSError:
                self._error(404, "NoSuchUpload", relative, True)
                return
            shutil.rmtree(doomed, ignore_errors=True)
            self._send(204, b"", _XML, False)
        else:  # DeleteObject: 204 whether or not it existed, as S3 answers
            if target.is_file():
                target.unlink(missing_ok=True)
            self._send(204, b"", _XML, False)

    # -- multipart uploads ------------------------------------------------------------------------

    def _upload(self, where: tuple[str, str], upload_id: str) -> Path | None:
        """The staging folder of an upload in progress of this bucket and key, or None."""
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id):
            return None
        folder = self.server.staging / upload_id
        try:
            named = (folder / "key").read_text()
        except OSError:
            return None
        return folder if named == "\n".join(where) else None

    def _create_upload(self, where: tuple[str, str]) -> None:
        self._receive(None)
        bucket, key = where
        if not (self.server.root / bucket).is_dir():
            self._error(404, "NoSuchBucket", bucket, True)
            return
        upload_id = uuid.uuid4().hex
        folder = self.server.staging / upload_id
        folder.mkdir(parents=True)
        (folder / "key").write_text(f"{bucket}\n{key}")
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<InitiateMultipartUploadResult '
            f'xmlns="{_S3_NS}"><Bucket>{escape(bucket)}</Bucket><Key>{escape(key)}</Key>'
            f"<UploadId>{upload_id}</UploadId></InitiateMultipartUploadResult>"
        ).encode()
        self._send(200, body, _XML, True)

    def _upload_part(
        self, target: Path, where: tuple[str, str], query: dict[str, list[str]]
    ) -> None:
        number = query.get("partNumber", [""])[0]
        upload = self._upload(where, query["uploadId"][0])
        if upload is None:
            self._error(404, "NoSuchUpload", str(target), True)
            return
        if not number.isdigit() or not 1 <= int(number) <= 10000:
            self._error(400, "InvalidArgument", f"partNumber={number}", True)
            return
        body = self._receive_file(self.server.staging)  # not in the upload: it may be aborted
        if body is None:
            self._unreadable()
            return
        part = upload / f"part-{int(number):05d}"
        try:
            os.replace(body, part)  # a part sent again replaces the earlier one
        except OSError:  # the upload was aborted or completed meanwhile
            body.unlink(missing_ok=True)
            self._error(404, "NoSuchUpload", str(target), True)
            return
        self._send(200, b"", _XML, True, {"ETag": _etag(part)})

    def _complete_upload(self, target: Path, where: tuple[str, str], upload_id: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_XML:
            self._error(400, "MalformedXML", str(target), True)
            return
        self._body_read = True
        text = self.rfile.read(length)
        upload = self._upload(where, upload_id)
        if upload is None:
            self._error(404, "NoSuchUpload", str(target), True)
            return
        try:
            listed = [
                (
                    int(next(c.text for c in p if _local(c) == "PartNumber") or ""),
                    next(c.text for c in p if _local(c) == "ETag") or "",
                )
                for p in ET.fromstring(text)
                if _local(p) == "Part"
            ]
        except (ET.ParseError, StopIteration, ValueError):
            self._error(400, "MalformedXML", str(target), True)
            return
        owned = upload.with_name(upload.name + ".completing")
        try:
            upload.rename(owned)  # one complete or abort wins; a part arriving now is refused
        except OSError:
            self._error(404, "NoSuchUpload", str(target), True)
            return
        parts = [owned / f"part-{number:05d}" for number, _ in listed]
        problem = self._check_parts(listed, parts)
        if problem is not None:
            owned.rename(upload)  # S3 keeps the upload open after a refused complete
            self._error(400, problem, str(target), True)
            return
        assembled = owned / "assembled"
        with open(assembled, "wb") as out:
            for part in parts:
                _append(out, part)
        self._publish(assembled, target)
        shutil.rmtree(owned, ignore_errors=True)
        bucket, key = where
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult '
            f'xmlns="{_S3_NS}"><Location>{self.server.endpoint}/{escape(bucket)}/'
            f"{escape(key)}</Location><Bucket>{escape(bucket)}</Bucket><Key>{escape(key)}</Key>"
            f"<ETag>{escape(_etag(target))}</ETag></CompleteMultipartUploadResult>"
        ).encode()
        self._send(200, body, _XML, True)

    @staticmethod
    def _check_parts(listed: list[tuple[int, str]], parts: list[Path]) -> str | None:
        """S3's error code for a part list it would refuse, or None."""
        numbers = [number for number, _ in listed]
        if not numbers or numbers != sorted(set(numbers)):
            return "InvalidPartOrder" if numbers else "MalformedXML"
        for i, ((_, etag), part) in enumerate(zip(listed, parts, strict=True)):
            if not part.is_file() or _etag(part).strip('"') != etag.strip('"'):
                return "InvalidPart"
            if i < len(parts) - 1 and part.stat().st_size < _MIN_PART:
                return "EntityTooSmall"
        return None

    def _list_uploads(
        self, bucket_dir: Path, bucket: str, query: dict[str, list[str]], with_body: bool
    ) -> None:
        """ListMultipartUploads of a bucket (prefix only; every upload in one page)."""
        bucket = bucket.strip("/")
        if "/" in bucket or not bucket_dir.is_dir():
            self._error(404, "NoSuchBucket", bucket, with_body)
            return
        prefix = query.get("prefix", [""])[0]
        entries = []
        staged = self.server.staging.iterdir() if self.server.staging.is_dir() else iter(())
        for folder in sorted(staged):
            if "." in folder.name:
                continue  # being completed or aborted
            try:
                owner, key = (folder / "key").read_text().split("\n", 1)
            except (OSError, ValueError):
                continue  # a body in flight, or an upload being completed or aborted
            if owner != bucket or not key.startswith(prefix):
                continue
            started = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(folder.stat().st_mtime))
            entries.append(
                f"<Upload><Key>{escape(key)}</Key><UploadId>{folder.name}</UploadId>"
                f"<Initiated>{started}</Initiated><StorageClass>STANDARD</StorageClass></Upload>"
            )
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult '
            f'xmlns="{_S3_NS}"><Bucket>{escape(bucket)}</Bucket><KeyMarker></KeyMarker>'
            f"<UploadIdMarker></UploadIdMarker><Prefix>{escape(prefix)}</Prefix>"
            f"<MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>"
            f"{''.join(entries)}</ListMultipartUploadsResult>"
        ).encode()
        self._send(200, body, _XML, with_body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, root: Path, shared: dict[str, Any]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root.resolve()
        self.staging = self.root / _UPLOADS  # made by the first write: a read-only root serves
        self.endpoint = f"http://127.0.0.1:{self.server_address[1]}"
        self.delay_s = shared["delay_s"]
        self.requests = shared["requests"]
        self.bytes_sent = shared["bytes_sent"]
        self.bytes_received = shared["bytes_received"]
        self.request_bytes_per_s = shared["request_bytes_per_s"]
        self.pacer = _Pacer(shared["bytes_per_s"])


def _serve(root: str, shared: dict[str, Any], ready: Any) -> None:
    server = _Server(Path(root), shared)
    shared["port"].value = server.server_address[1]
    ready.set()
    server.serve_forever()


class DirectoryServer:
    """``root`` served on 127.0.0.1 by a child process until :meth:`close`; the delay and the
    bandwidth caps can be changed while it runs, the request and byte counters read at any
    time."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        delay_s: float = 0.0,
        bytes_per_s: float = 0.0,
        request_bytes_per_s: float = 0.0,
    ) -> None:
        """``delay_s`` before every answer; ``bytes_per_s`` caps all bodies together, sent and
        received, and ``request_bytes_per_s`` each request's body on its own (0: no cap)."""
        ctx = multiprocessing.get_context("spawn")
        self._shared = {
            "port": ctx.Value("i", 0),
            "delay_s": ctx.Value("d", delay_s),
            "bytes_per_s": ctx.Value("d", bytes_per_s),
            "request_bytes_per_s": ctx.Value("d", request_bytes_per_s),
            "requests": ctx.Value("q", 0),
            "bytes_sent": ctx.Value("q", 0),
            "bytes_received": ctx.Value("q", 0),
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

    @property
    def bytes_received(self) -> int:
        """Request body bytes received so far (objects and parts uploaded)."""
        return int(self._shared["bytes_received"].value)

    @property
    def exitcode(self) -> int | None:
        """The server process's exit code once it has ended (a negative signal number if it was
        killed); None while it runs."""
        return self._process.exitcode

    def set_delay(self, seconds: float) -> None:
        self._shared["delay_s"].value = seconds

    def set_bandwidth(self, bytes_per_s: float) -> None:
        """Cap every body together at ``bytes_per_s`` (0 lifts the cap)."""
        self._shared["bytes_per_s"].value = bytes_per_s

    def set_request_bandwidth(self, bytes_per_s: float) -> None:
        """Cap each request's body at ``bytes_per_s`` on its own (0 lifts the cap)."""
        self._shared["request_bytes_per_s"].value = bytes_per_s

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
