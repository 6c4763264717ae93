"""Measuring the machine a benchmark runs on: peak RSS, page-cache eviction and residency,
CPU time of this process and of everything else (to flag disturbed measurements).

Shared by bench/format_bench.py and bench/loader_bench.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def vm_status() -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of this process, in bytes."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(line.split()[1]) * 1024
    return out


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak excludes the imports."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def evict(paths: Sequence[Path]) -> None:
    """Drop files from the page cache. sync first: DONTNEED leaves dirty pages in place."""
    os.sync()
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident_bytes(paths: Sequence[Path]) -> int | None:
    """Page-cache-resident bytes of the files (util-linux fincore, i.e. mincore), if available.
    Pages still mapped by some process cannot be dropped, and this is where it would show."""
    if shutil.which("fincore") is None:
        return None
    total = 0
    for start in range(0, len(paths), 500):  # stay far below the argument-length limit
        out = subprocess.run(
            ["fincore", "--bytes", "--noheadings", "--raw", "-o", "RES"]
            + [str(p) for p in paths[start : start + 500]],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        total += sum(int(x) for x in out.split())
    return total


def machine_busy_seconds() -> float:
    """Non-idle CPU seconds of the whole machine since boot (/proc/stat; guest time excluded
    because the kernel already counts it in user time)."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process tree (os.times counts waited-for children, e.g. workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def fmt_range(s: dict[str, float], digits: int = 0) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


class ForeignLoad:
    """CPU time other processes used while a section ran: on a shared 2-core machine it tells
    whether the timings were disturbed."""

    def __init__(self) -> None:
        self.wall0 = time.perf_counter()
        self.busy0 = machine_busy_seconds()
        self.own0 = own_cpu_seconds()

    def result(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall0
        foreign = (machine_busy_seconds() - self.busy0) - (own_cpu_seconds() - self.own0)
        return {"wall_s": wall, "foreign_cpu_s": max(0.0, foreign), "foreign_cores": foreign / wall}
