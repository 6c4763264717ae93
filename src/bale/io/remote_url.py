"""URLs of remote objects: telling them from local paths, splitting them, and a display form
with every credential removed (the only form bale ever prints, logs or puts in an error)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+)://")

S3_SCHEMES = frozenset({"s3", "s3a"})
GCS_SCHEMES = frozenset({"gs", "gcs"})
AZURE_SCHEMES = frozenset({"az", "abfs", "abfss", "azure", "adl"})
HTTP_SCHEMES = frozenset({"http", "https"})


def is_remote(path: str | os.PathLike[str]) -> bool:
    """True for a URL bale reads through a remote source (``s3://``, ``gs://``, ``az://``,
    ``https://``, any fsspec URL, chained ``simplecache::s3://`` ones); False for local paths
    and ``file://`` URLs. A one-letter scheme is a Windows drive, not a URL.

    >>> is_remote("s3://bucket/train.bale"), is_remote("/data/train.bale")
    (True, False)
    """
    if not isinstance(path, str):
        return False
    if is_chain(path):
        return True
    match = _SCHEME.match(path)
    return match is not None and match.group(1).lower() != "file"


def is_chain(url: str) -> bool:
    """An fsspec chain (``simplecache::s3://...``): "::" before any "://" (not an IPv6 host)."""
    chain, scheme = url.find("::"), url.find("://")
    return chain >= 0 and (scheme < 0 or chain < scheme)


@dataclass(frozen=True)
class RemoteURL:
    """One remote object's URL, split: ``scheme`` (lower case), ``netloc`` (bucket, container or
    host[:port], without any user:password), ``key`` (the path inside it, unquoted, no leading
    slash), and whether the URL carries credentials of its own (``userinfo``, a query)."""

    url: str = field(repr=False)  # may hold credentials: never shown
    scheme: str
    netloc: str
    key: str
    has_userinfo: bool
    has_query: bool

    @property
    def display(self) -> str:
        """The URL as bale shows it: no password, no query values."""
        return redact_url(self.url)


def parse_url(url: str) -> RemoteURL:
    """Split a remote URL; ValueError for a string that is not one."""
    if not is_remote(url):
        raise ValueError(f"not a remote URL: {redact_url(url)!r}")
    if is_chain(url):  # only fsspec understands a chain
        scheme = url.split("::", 1)[0].split("://", 1)[0].lower()
        return RemoteURL(url, scheme, "", "", False, False)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    # abfs://container@account.dfs.core.windows.net/key: the part before "@" is a container
    userinfo = "@" in parts.netloc and scheme not in AZURE_SCHEMES
    return RemoteURL(
        url=url,
        scheme=scheme,
        netloc=parts.netloc.rsplit("@", 1)[-1] if userinfo else parts.netloc,
        key=unquote(parts.path.lstrip("/")),
        has_userinfo=userinfo,
        has_query=bool(parts.query),
    )


def redact_url(url: str) -> str:
    """``url`` without credentials: ``user:password@`` becomes ``***@``, and every query value
    (presigned URLs and SAS tokens carry signatures there) becomes ``***``.

    >>> redact_url("https://me:pw@host/a.bale?X-Amz-Signature=abc&v=1")
    'https://***@host/a.bale?X-Amz-Signature=***&v=***'
    """
    if is_chain(url):
        return "::".join(redact_url(part) for part in url.split("::"))
    match = _SCHEME.match(url)
    if match is None:
        return url
    rest = url[match.end() :]
    authority, sep, tail = rest.partition("/")
    if "@" in authority and match.group(1).lower() not in AZURE_SCHEMES:
        authority = "***@" + authority.rsplit("@", 1)[1]
    path, qmark, query = (sep + tail).partition("?")
    if qmark:
        fragment = ""
        if "#" in query:
            query, fragment = query.split("#", 1)
            fragment = "#***"
        names = [name for name, _ in parse_qsl(query, keep_blank_values=True)]
        query = "&".join(f"{name}=***" for name in names) if names else "***"
        path = f"{path}?{query}{fragment}"
    return f"{match.group(0)}{authority}{path}"
