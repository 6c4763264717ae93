"""Where benchmarks write: reports to bench/results/ (committed), scratch files to bench/out/
(git-ignored). A quick run's reports carry a ``_quick`` suffix, which git ignores, so a smoke
test never replaces the figures of a full run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
OUT = ROOT / "bench" / "out"


def write_report(name: str, data: dict[str, Any] | None, markdown: str, *, quick: bool) -> Path:
    """Write ``name.json`` (when ``data`` is given) and ``name.md`` to bench/results/, with the
    ``_quick`` suffix in quick mode; returns the markdown's path."""
    stem = f"{name}_quick" if quick else name
    RESULTS.mkdir(parents=True, exist_ok=True)
    if data is not None:
        (RESULTS / f"{stem}.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    path = RESULTS / f"{stem}.md"
    path.write_text(markdown, encoding="utf-8")
    return path
