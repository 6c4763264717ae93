"""Which byte source reads a path: a local file (``LocalSource``) or a remote object
(``bale.io.remote.RemoteSource``, imported only when a URL is opened)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bale.io.remote_url import is_remote
from bale.io.source import ByteSource, LocalSource

if TYPE_CHECKING:
    from bale.io.remote_client import RemoteOptions


def open_source(
    path: str | os.PathLike[str],
    storage_options: Mapping[str, Any] | None = None,
    remote_options: RemoteOptions | None = None,
) -> ByteSource:
    """A byte source for ``path``: ``s3://``, ``gs://``, ``az://``, ``http(s)://`` and other
    fsspec URLs are read remotely with ``storage_options`` (credentials, endpoint, region...,
    as the store's client takes them; never shown); anything else is a local file, for which
    ``storage_options`` must be empty. ``remote_options`` (``bale.io.remote.RemoteOptions``:
    time limits, retries, read-ahead, the local disk cache) default to
    ``bale.io.remote.default_options()``."""
    if is_remote(path):
        from bale.io.remote import RemoteSource

        return RemoteSource(str(path), storage_options, options=remote_options)
    if storage_options or remote_options is not None:
        raise ValueError(
            "storage_options and remote_options apply to URLs (s3://, gs://, https://, ...); "
            f"{os.fspath(path)!r} is a local path"
        )
    return LocalSource(path)
