"""The machine a benchmark runs on and what a process costs on it: a description (CPU, memory,
disk, versions, the bale source measured), how busy the rest of the machine is, peak RSS, bytes
read (/proc/self/io, getrusage), and page-cache eviction with a residency check.

Shared by the scripts under bench/ and by bench/suite (which runs in .venv-bench). Linux only.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import resource
import shutil
import subprocess
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.results import ROOT

MiB = 1 << 20

# -- what the machine is, and which code it measures ----------------------------------------------


def describe(work: Path | None = None, packages: Sequence[str] = ()) -> dict[str, Any]:
    """Date, CPU, cores, RAM, kernel, Python, the versions of bale and ``packages``, the git
    state and source digest of the bale measured, and (with ``work``) ``df -T`` of the
    benchmark's directory."""
    import numpy as np

    versions = {"bale": version_of("bale"), "python": platform.python_version()}
    versions.update({name: version_of(name) for name in packages})
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "versions": versions,
        "git": git_state(),
        "git_commit": git_commit(),
        "src_digest": src_digest(),
        "df": df(work) if work is not None else None,
        "loadavg_start": os.getloadavg(),
    }


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def df(path: Path) -> str:
    """``df -T`` of the filesystem holding ``path`` (the disk the benchmark reads)."""
    return subprocess.run(["df", "-T", str(path)], capture_output=True, text=True).stdout.strip()


def version_of(distribution: str) -> str:
    """The installed version of a distribution, or "not installed"."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    return done.stdout.strip()


def git_commit() -> str:
    """The full hash of the commit checked out, or "unknown" outside a git checkout."""
    return _git("rev-parse", "HEAD") or "unknown"


def git_state() -> str:
    """The short commit, and whether src/ had uncommitted changes (their diff's hash): bale
    changes quickly, and a figure must say exactly which source it measured."""
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    diff = _git("diff", "HEAD", "--", "src")
    if not diff:
        return commit
    return f"{commit} + uncommitted src changes (diff sha1 {hashlib.sha1(diff.encode()).hexdigest()[:10]})"


def src_digest() -> str:
    """A hash of the source files of the bale imported now. bale may be edited while a run goes
    on and subprocesses import it afresh: equal digests show every part measured the same code."""
    import bale

    h = hashlib.sha1()
    for path in sorted(Path(bale.__file__).parent.rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:10]


# -- how busy the rest of the machine is ------------------------------------------------------------


def machine_busy_seconds() -> float:
    """Non-idle CPU seconds of the whole machine since boot (/proc/stat; guest time excluded
    because the kernel already counts it in user time)."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process tree (os.times counts waited-for children, e.g. workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class ForeignLoad:
    """CPU time other processes used while a section ran: on a shared machine it tells whether
    the timings were disturbed."""

    def __init__(self) -> None:
        self.wall0 = time.perf_counter()
        self.busy0 = machine_busy_seconds()
        self.own0 = own_cpu_seconds()

    def result(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall0
        foreign = (machine_busy_seconds() - self.busy0) - (own_cpu_seconds() - self.own0)
        return {"wall_s": wall, "foreign_cpu_s": max(0.0, foreign), "foreign_cores": foreign / wall}


# -- what this process costs ------------------------------------------------------------------------


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


def proc_io() -> dict[str, int]:
    """This process's I/O counters from /proc/self/io, summed over its threads: ``rchar`` (bytes
    returned by read/pread calls, page-cache hits included), ``read_bytes`` (bytes fetched from
    the block device), ``syscr`` (read calls), and the write counterparts."""
    return {
        key: int(value)
        for key, value in (
            line.split(": ") for line in Path("/proc/self/io").read_text().splitlines()
        )
    }


def device_read_bytes(children: bool = True) -> int:
    """Bytes this process (and with ``children``, its reaped children, such as DataLoader workers
    joined at the end of an epoch) fetched from the block device rather than the page cache.
    getrusage's ru_inblock is the kernel's per-task read_bytes in 512-byte units; unlike the
    device's own counter it ignores the other processes sharing the machine."""
    who = (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) if children else (resource.RUSAGE_SELF,)
    return sum(resource.getrusage(w).ru_inblock for w in who) * 512


def exit_on_sigterm(signum: int, _frame: object) -> None:
    """A SIGTERM handler that exits through ``finally`` blocks, so scratch files are removed."""
    raise SystemExit(128 + signum)


# -- the page cache ---------------------------------------------------------------------------------


def evict(paths: Sequence[Path]) -> None:
    """Drop files from the page cache (each flushed first: DONTNEED leaves dirty pages)."""
    from bale.io.pagecache import evict_files  # here: importing this module must not load bale

    evict_files(paths)


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


def read_through(paths: Sequence[Path]) -> None:
    """Read files once so that they are in the page cache: a warm run is then warm even for
    readers that touch only part of a file."""
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.read(8 * MiB):
                pass


def stamp(results: dict[str, Any], work: Path, packages: Sequence[str], command: str) -> None:
    """Adds to ``results`` what ``report_head`` shows of the run besides its total time: the
    machine (``describe(work, packages)``), the digest of the bale source, the date, and the
    command that ran."""
    results["env"] = describe(work, packages=packages)
    results["src_digest"] = src_digest()
    results["date"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results["command"] = command


def report_head(title: str, results: dict[str, Any], doc: str | None) -> list[str]:
    """A report's first lines: the title, when and by which command it ran, the machine, and
    "## Method" from the module docstring ``doc`` (its third paragraph on: the first is the
    summary, the second the commands)."""
    return [
        f"# {title}",
        "",
        f"Date: {results['date']}. Command: `{results['command']}` "
        f"(total {results['total_seconds']:.0f} s).",
        "",
        *machine_section(results["env"], results["src_digest"]),
        "",
        "## Method",
        "",
        (doc or "").split("\n\n", 2)[2].strip(),
        "",
    ]


def machine_section(
    env: dict[str, Any], digest: str, *, note: str | None = None, disk: str = "Filesystem"
) -> list[str]:
    """The "## Machine" section of a report from :func:`describe`'s ``env``: CPU, RAM, kernel,
    ``df -T`` of the benchmark directory, versions, and the bale source measured (``digest``,
    with whatever the benchmark says about it); ``note`` ends the list."""
    lines = [
        "## Machine",
        "",
        f"- CPU: {env['cpu']}, {env['cores']} cores; RAM {env['ram_gib']:.1f} GiB; "
        f"kernel {env['kernel']}",
        f"- {disk} of the benchmark directory (`df -T`):",
        "",
        "```",
        env["df"],
        "```",
        "",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        f"- bale source: git {env['git']}; source digest {digest}",
    ]
    return [*lines, f"- {note}"] if note else lines
