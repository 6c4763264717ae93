"""What the child processes of the remote-source tests run (a module of its own, so a spawned
child imports only bale and this)."""

from __future__ import annotations

import hashlib
import traceback
from typing import Any


def read_and_report(source: Any, ranges: list[tuple[int, int]], results: Any) -> None:
    """Read ``ranges`` from ``source`` and put (backend, digests, requests) or an error on
    ``results``."""
    try:
        digests = [hashlib.sha256(source.read(start, size)).hexdigest() for start, size in ranges]
        results.put(("ok", source.backend, digests, source.requests))
    except BaseException as exc:
        results.put(("error", type(exc).__name__, str(exc), traceback.format_exc()))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
