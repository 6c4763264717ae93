"""The OS page cache seen from outside: dropping files from it, how much of a file it holds
(mincore), what this process read from storage (/proc/self/io), and reading files into it."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "available_memory",
    "evict_files",
    "process_read_bytes",
    "read_through",
    "resident_bytes",
    "total_resident_bytes",
]


def evict_files(paths: Sequence[str | os.PathLike[str]]) -> None:
    """Drop files from the OS page cache (``posix_fadvise(DONTNEED)``), after flushing any dirty
    pages of theirs to disk: the kernel does not drop pages it has not written yet. Pages that
    a process maps stay (``Dataset.evict_from_page_cache`` also drops bale's own mappings)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident_bytes(path: str | os.PathLike[str]) -> int | None:
    """Bytes of ``path`` now in the page cache (mincore of a mapping that is never touched, so
    asking does not load anything), or None where that cannot be asked (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    size = os.path.getsize(path)
    if size == 0:
        return 0
    libc = _libc()
    if libc is None:
        return None
    page = os.sysconf("SC_PAGE_SIZE")
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
        if address is None or address == ctypes.c_void_p(-1).value:
            return None
        try:
            vector = (ctypes.c_ubyte * ((size + page - 1) // page))()
            if libc.mincore(ctypes.c_void_p(address), size, vector) != 0:
                return None
            pages = int(np.count_nonzero(np.frombuffer(memoryview(vector), dtype=np.uint8) & 1))
        finally:
            libc.munmap(ctypes.c_void_p(address), size)
    finally:
        os.close(fd)
    return min(pages * page, size)


def total_resident_bytes(paths: Sequence[str | os.PathLike[str]]) -> int | None:
    """``resident_bytes`` summed over files; None if it cannot be asked for any of them."""
    total = 0
    for path in paths:
        resident = resident_bytes(path)
        if resident is None:
            return None
        total += resident
    return total


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return libc


def process_read_bytes() -> int | None:
    """Bytes this process caused to be read from storage (Linux /proc/self/io read_bytes)."""
    try:
        with open("/proc/self/io", encoding="ascii") as f:
            for line in f:
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def read_through(paths: Sequence[str | os.PathLike[str]]) -> None:
    """Read the files once so later reads find them in the page cache. Skipped when they would
    not fit in half the free memory: reading them would take long and stay cold anyway."""
    available = available_memory()
    if available is not None and sum(os.path.getsize(p) for p in paths) > available // 2:
        return
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.read(8 << 20):
                pass


def available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (Linux), else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None
