"""The machine a measurement ran on, in words (shared by `bale codecs` and `bale bench`)."""

from __future__ import annotations

import os
import platform

__all__ = ["describe_machine"]


def describe_machine() -> str:
    """Where measurements were taken: cores, CPU model, load, e.g. "2 cores (Intel(R) Xeon(R)
    Processor), load average 1.3"."""
    cores = os.cpu_count() or 1
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    text = f"{cores} core{'s' if cores != 1 else ''} ({model})" if model else f"{cores} cores"
    if hasattr(os, "getloadavg"):
        text += f", load average {os.getloadavg()[0]:.1f}"
    return text
