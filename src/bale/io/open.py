"""Which byte source reads a path: a local file (``LocalSource``) or a remote object
(``bale.io.remote.RemoteSource``, imported only when a URL is opened)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from bale.io.remote_url import is_remote
from bale.io.source import ByteSource, LocalSource


def open_source(
    path: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> ByteSource:
    """A byte source for ``path``: ``s3://``, ``gs://``, ``az://``, ``http(s)://`` and other
    fsspec URLs are read remotely with ``storage_options`` (credentials, endpoint, region...,
    as the store's client takes them; never shown); anything else is a local file, for which
    ``storage_options`` must be empty."""
    if is_remote(path):
        from bale.io.remote import RemoteSource

        return RemoteSource(str(path), storage_options)
    if storage_options:
        raise ValueError(
            f"storage_options apply to URLs (s3://, gs://, https://, ...); {os.fspath(path)!r} "
            "is a local path"
        )
    return LocalSource(path)
