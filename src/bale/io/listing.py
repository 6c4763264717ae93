"""Expanding the paths a multi-file dataset is given as: local globs, and object-store globs or
prefixes (``s3://bucket/train-*.bale``, ``gs://bucket/train/``), listed once, sorted."""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence
from typing import Any

from bale.errors import BaleError
from bale.io.remote_client import packages_for
from bale.io.remote_url import HTTP_SCHEMES, is_remote, redact_url

_GLOB_CHARS = frozenset("*?[")


def is_pattern(path: str) -> bool:
    """Whether ``path`` names several files: a glob, or a URL ending in ``/`` (a prefix)."""
    return bool(_GLOB_CHARS & set(path)) or (is_remote(path) and path.endswith("/"))


def expand_paths(
    paths: Sequence[str | os.PathLike[str]], storage_options: Mapping[str, Any] | None = None
) -> list[str]:
    """Each path as given, or the files a pattern matches in name order (a prefix: its
    ``.bale`` objects). A pattern that matches nothing is an error naming it: a typo must not
    train on fewer files."""
    out: list[str] = []
    for path in paths:
        text = os.fspath(path)
        if not is_pattern(text) or (not is_remote(text) and os.path.exists(text)):
            out.append(text)  # a local name with [ or * in it is still that file
            continue
        found = _list_remote(text, storage_options) if is_remote(text) else sorted(glob.glob(text))
        if not found:
            raise BaleError(f"no .bale file matches {redact_url(text)!r}")
        out.extend(found)
    return out


def _list_remote(pattern: str, storage_options: Mapping[str, Any] | None) -> list[str]:
    scheme = pattern.split("://", 1)[0].lower()
    if scheme in HTTP_SCHEMES:
        raise BaleError(
            f"{redact_url(pattern)!r}: an HTTP server cannot be listed; give the files' URLs"
        )
    try:
        from fsspec.core import url_to_fs
    except ImportError as exc:
        raise ImportError(
            "listing object storage needs fsspec and the store's filesystem package: pip "
            f"install {packages_for(scheme, 'fsspec')}"
        ) from exc
    # A filesystem of its own, closed after: the readers keep their own clients (fork-safe).
    fs, root = url_to_fs(pattern, skip_instance_cache=True, **dict(storage_options or {}))
    try:
        if pattern.endswith("/"):
            names = [n for n in fs.find(root) if n.endswith(".bale")]
        else:
            names = list(fs.glob(root))
    except FileNotFoundError:
        names = []
    except OSError as exc:
        raise BaleError(f"cannot list {redact_url(pattern)!r}: {type(exc).__name__}") from exc
    return sorted(fs.unstrip_protocol(name) for name in names)
