"""Output locations that may be local paths or URLs: joining a directory and a name, telling
writable URLs, comparing locations, checking for an existing file or object, and removing one
(the outputs of ``bale.split`` and ``bale export``)."""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Mapping
from typing import Any

from bale.io.remote_url import AZURE_SCHEMES, GCS_SCHEMES, S3_SCHEMES, is_remote, parse_url

# bale.io.remote_sink (and its clients) is imported where an object is touched, as
# bale._core.groupsink does: every `bale` command imports this module, few write to a store.

#: One name per store, so that ``s3a://b/k`` and ``s3://b/k`` are the same object.
_SCHEME_FAMILY = {
    **{s: "s3" for s in S3_SCHEMES},
    **{s: "gs" for s in GCS_SCHEMES},
    **{s: "az" for s in AZURE_SCHEMES},
}


def check_writable(url: str) -> None:
    """A ValueError unless bale can write an object at ``url`` (``RemoteSink``'s rule, checked
    before any request): ``s3://``, ``gs://`` or ``az://`` (``abfs[s]://``) naming a key."""
    parsed = parse_url(url)
    if parsed.scheme not in _SCHEME_FAMILY or not parsed.key or parsed.has_query:
        raise ValueError(
            "bale writes objects to s3://, gs:// and az:// (abfs://) URLs naming a key, not "
            f"{parsed.display!r}"
        )


def parent_of(location: str) -> str:
    """The "directory" of a path or URL: where outputs go by default (beside the input). A URL's
    query (a signature) is dropped: it belongs to the input object, not to its neighbours."""
    if not is_remote(location):
        return os.path.dirname(location)
    base = location.split("?", 1)[0].split("#", 1)[0]
    scheme, sep, rest = base.partition("://")
    return f"{scheme}{sep}{rest.rsplit('/', 1)[0]}" if "/" in rest else base


def join(directory: str, name: str) -> str:
    """``directory/name`` for a local directory or a URL prefix (``s3://bucket/splits``)."""
    if not is_remote(directory):
        return os.path.join(directory, name)
    if parse_url(directory).has_query or "#" in directory:
        raise ValueError(
            f"an output directory URL cannot carry a query or fragment: {parse_url(directory).display!r}"
        )
    # "s3://" + "bucket/x.bale" is a whole URL: a pattern may name the bucket too
    return directory + name if directory.endswith("/") else f"{directory}/{name}"


def identity(location: str) -> tuple[str, ...]:
    """What makes two names the same file or object: the real path, or store, bucket and key.
    Keys are compared folded (``a//b``, ``a/./b`` and ``b/../a/b`` as ``a/b``), although a
    store tells them apart: a refused output name is better than an input overwritten."""
    if not is_remote(location):
        return ("file", os.path.realpath(location))
    parsed = parse_url(location)
    key = posixpath.normpath("/" + parsed.key) if parsed.key else ""
    return (_SCHEME_FAMILY.get(parsed.scheme, parsed.scheme), parsed.netloc, key)


def exists(location: str, storage_options: Mapping[str, Any] | None) -> bool:
    """Whether a file or object is at ``location`` (one HEAD request for a URL)."""
    if not is_remote(location):
        return os.path.exists(location)
    from bale.io import remote_sink

    return remote_sink.object_exists(location, storage_options)


def remove(location: str, storage_options: Mapping[str, Any] | None) -> None:
    """Remove a file or object, best effort: called while another error is on its way up, and
    that error is the one to report."""
    with contextlib.suppress(Exception):
        if is_remote(location):
            from bale.io import remote_sink

            remote_sink.delete_object(location, storage_options)
        else:
            os.remove(location)
