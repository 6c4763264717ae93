"""The input-bound verdict of `bale bench`: would a training loop at a given step rate wait for
the loader, for the samples it delivers and for the CPU it needs beside the training step's own.
A pure function of measured figures, so its rules and wording are tested without timing.

>>> print(input_bound_verdict(10, 256, 3_072, loader_cpu_s_per_batch=0.3, cores=8,
...                           step_cores=8).text)  # doctest: +ELLIPSIS
your model takes 10 steps/s of batch 256 = 2,560 samples/s; ... -> input-bound on CPU: ...
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["CPU_BOUND_FRACTION", "Verdict", "available_cores", "input_bound_verdict"]

#: Training slowed below this fraction of its step rate by sharing the cores with the loader
#: counts as input-bound on CPU.
CPU_BOUND_FRACTION = 0.95


@dataclass(frozen=True)
class Verdict:
    """Whether a training loop at ``step_rate`` steps/s of ``batch_size`` would wait for data."""

    step_rate: float
    batch_size: int
    needed_samples_per_s: float
    warm_samples_per_s: float
    cold_samples_per_s: float | None
    input_bound_warm: bool
    input_bound_cold: bool | None
    text: str
    loader_cpu_s_per_batch: float | None = None  # measured core-seconds per batch
    loader_cores_needed: float | None = None  # cores the loader keeps busy at the step rate
    cores: int | None = None  # cores available to the process
    step_cores: float | None = None  # cores the training step itself keeps busy (given)
    input_bound_cpu: bool | None = None  # None: the step's own CPU use was not given
    expected_step_fraction: float | None = None  # of the step rate, when loader and step share


def input_bound_verdict(
    step_rate: float,
    batch_size: int,
    warm_samples_per_s: float,
    cold_samples_per_s: float | None = None,
    *,
    loader_cpu_s_per_batch: float | None = None,
    cores: int | None = None,
    step_cores: float | None = None,
) -> Verdict:
    """Compare what training consumes (``step_rate`` x ``batch_size`` samples/s) with what the
    loader delivers, and the loader's CPU demand with the cores the step leaves it. A pure
    function, so the wording can be checked without timing anything.

    The loader's rates were measured with every core to itself. At the step rate it needs
    ``loader_cpu_s_per_batch x step_rate`` cores; a step keeping ``step_cores`` busy leaves
    ``cores - step_cores``. When the two do not fit, loader and step share the cores: each step
    then costs ``step_cores / step_rate + loader_cpu_s_per_batch`` core-seconds, and ``cores``
    of them run at most ``cores / that`` steps per second.
    """
    if not step_rate > 0 or batch_size < 1:
        raise ValueError(
            f"step rate and batch size must be positive, got {step_rate}, {batch_size}"
        )
    if step_cores is not None and not step_cores >= 0:
        raise ValueError(f"step_cores must be >= 0, got {step_cores}")
    needed = step_rate * batch_size
    warm_bound = warm_samples_per_s < needed
    cold_bound = None if cold_samples_per_s is None else cold_samples_per_s < needed
    delivers = f"bale delivers {warm_samples_per_s:,.0f} samples/s warm"
    if cold_samples_per_s is not None:
        delivers += f", {cold_samples_per_s:,.0f} cold"
    cpu = _cpu_share(step_rate, loader_cpu_s_per_batch, cores, step_cores)
    if warm_bound and cold_bound is not False:
        wait = 1 - warm_samples_per_s / needed
        conclusion = (
            f"input-bound{' warm and cold' if cold_bound else ''}: the accelerator would wait "
            f"about {wait:.0%} of the time (more threads, a cheaper transform or a faster codec help)"
        )
    elif cold_bound:
        conclusion = (
            "input-bound when cold (the first epoch, or data larger than the page cache), "
            "not when warm"
        )
    elif warm_bound:
        conclusion = (
            "input-bound when warm but not cold: the two runs differ by noise; measure longer"
        )
    elif cpu.bound:
        conclusion = (
            "input-bound on CPU: the loader alone keeps up, but it and the step do not fit "
            f"in {cpu.cores} cores together; training would run at about "
            f"{cpu.fraction or 0:.0%} of {step_rate:,.4g} steps/s (fewer loader threads will not "
            "help: a cheaper transform, a faster codec, stored decoded data or more cores do)"
        )
    else:
        slowest = min(warm_samples_per_s, cold_samples_per_s or warm_samples_per_s)
        alone = (
            " while it has the cores to itself"
            if cpu.needed is not None and cpu.bound is None
            else ""
        )
        conclusion = f"not input-bound{alone}: {slowest / needed:.1f}x the rate training needs"
        if cpu.bound is False:
            conclusion += ", with the cores the training step uses taken into account"
    text = (
        f"your model takes {step_rate:,.4g} steps/s of batch {batch_size} = {needed:,.0f} "
        f"samples/s; {delivers} -> {conclusion}"
    )
    if cpu.words:
        text += f". {cpu.words}"
    return Verdict(
        step_rate,
        batch_size,
        needed,
        warm_samples_per_s,
        cold_samples_per_s,
        warm_bound,
        cold_bound,
        text,
        loader_cpu_s_per_batch=loader_cpu_s_per_batch,
        loader_cores_needed=cpu.needed,
        cores=cores,
        step_cores=step_cores,
        input_bound_cpu=cpu.bound,
        expected_step_fraction=cpu.fraction,
    )


@dataclass(frozen=True)
class _CpuShare:
    needed: float | None  # cores the loader keeps busy at the step rate
    cores: int | None
    bound: bool | None  # None: not judged (no CPU figure, or the step's cores not given)
    fraction: float | None  # of the step rate, when loader and step share the cores
    words: str  # the sentence for the verdict, "" when there is nothing to say


def _cpu_share(
    step_rate: float,
    cpu_s_per_batch: float | None,
    cores: int | None,
    step_cores: float | None,
) -> _CpuShare:
    if cpu_s_per_batch is None or cores is None:
        return _CpuShare(None, cores, None, None, "")
    needed = cpu_s_per_batch * step_rate
    demand = (
        f"The loader needs {_core_time(cpu_s_per_batch)} per batch: {needed:,.2f} cores "
        f"at {step_rate:,.4g} steps/s"
    )
    if step_cores is None:
        shared = cores / (cores + needed)  # a step keeping every core busy, beside the loader
        return _CpuShare(
            needed,
            cores,
            None,
            None,
            f"{demand}, of the {cores} this machine has. Not measured: the CPU the training "
            "step itself uses; the loader was timed with every core to itself. A model trained "
            f"on the CPU with all {cores} cores would share them with decoding and run at about "
            f"{shared:.0%} of its step rate; pass --step-cores (step_cores=) to judge your "
            f"step: {cores} for CPU training, 1 for a GPU step's Python thread",
        )
    free = cores - step_cores
    # Sharing: every step costs step_cores / step_rate (the step) + cpu_s_per_batch (its batch).
    per_step = step_cores / step_rate + cpu_s_per_batch
    fraction = min(1.0, cores / per_step / step_rate) if per_step > 0 else 1.0
    words = (
        f"{demand}; with {cores} cores and a step using {step_cores:,.3g}, "
        f"{max(free, 0):,.3g} are left for it"
    )
    if needed > free:
        words += f": loader and step need {needed + step_cores:,.2f} cores together"
        if fraction >= CPU_BOUND_FRACTION:
            words += f", which costs the step rate about {1 - fraction:.0%}"
    return _CpuShare(needed, cores, fraction < CPU_BOUND_FRACTION, fraction, words)


def _core_time(seconds: float) -> str:
    """CPU time of one core, in the unit that reads best: ``0.84 core-seconds``, ``2.1 core-ms``."""
    if seconds >= 0.1:
        return f"{seconds:,.2f} core-seconds"
    return f"{seconds * 1000:,.3g} core-ms"


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
