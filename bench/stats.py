"""How every benchmark summarises repeated measurements: the median with its min-max range."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements (at least one)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt_range(s: dict[str, float], digits: int = 0) -> str:
    """``median (min-max)`` of a :func:`summary`."""
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


@dataclass
class Verdict:
    """One aim of a benchmark, judged as measured: PASS or MISS, with what was measured."""

    aim: str
    passed: bool
    detail: str

    @property
    def word(self) -> str:
        return "PASS" if self.passed else "MISS"

    def to_json(self) -> dict[str, str]:
        return {"aim": self.aim, "verdict": self.word, "detail": self.detail}


def aims_section(verdicts: Sequence[Verdict]) -> list[str]:
    """The "## Aims" table of a report."""
    return [
        "## Aims",
        "",
        "| aim | verdict | measured |",
        "|---|---|---|",
        *[f"| {v.aim} | **{v.word}** | {v.detail} |" for v in verdicts],
        "",
    ]


def print_aims(verdicts: Sequence[Verdict]) -> None:
    print("\n== aims")
    for v in verdicts:
        print(f"{v.word}  {v.aim}: {v.detail}")
