"""How long ``import bale`` takes in a fresh interpreter, and which imports cost the most.

The figure is the median wall time of ``python -c "import bale"`` over ``--runs`` fresh processes
minus the median of ``python -c pass`` (the interpreter's own start), the two run alternately
after one untimed run of each (bytecode caches written, files in the page cache). The slowest
imports come from ``python -X importtime -c "import bale"`` (median per module over a few runs),
leaving out what ``python -c pass`` imports too.

    .venv/bin/python -m bench.import_time              # 21 runs of each
    .venv/bin/python -m bench.import_time --quick      # 5 runs, one -X importtime run

Writes bench/results/import_time.{json,md} (quick: import_time_quick.*), which bench/report.py
includes in docs/BENCHMARKS.md. The bale imported is the one this interpreter finds (the
editable install of src/ in .venv): the report names its git commit and any uncommitted change.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any

from bench.machine import ForeignLoad, describe
from bench.results import ROOT, write_report
from bench.stats import summary

IMPORT = "import bale"
TOP = 15


def wall_seconds(code: str) -> float:
    """Wall time of one fresh ``python -c code``, start-up and shutdown included."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return time.perf_counter() - t0


def import_times(code: str) -> dict[str, tuple[int, int]]:
    """``-X importtime`` of a fresh ``python -c code``: module -> (self us, cumulative us)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    out = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, module = line[len("import time:") :].split("|")
        out[module[1:].rstrip()] = (int(own), int(cumulative))  # indented by import depth
    return out


def slowest_imports(runs: int) -> tuple[list[dict[str, Any]], int]:
    """The TOP modules by median cumulative time that ``import bale`` adds, and how many
    modules it adds in all."""
    baseline = {module.strip() for module in import_times("pass")}
    own: dict[str, list[int]] = defaultdict(list)
    cumulative: dict[str, list[int]] = defaultdict(list)
    for _ in range(runs):
        for module, (o, c) in import_times(IMPORT).items():
            if module.strip() not in baseline:
                own[module].append(o)
                cumulative[module].append(c)
    rows = [
        {
            "module": module.strip(),
            "depth": (len(module) - len(module.lstrip())) // 2,
            "cumulative_ms": statistics.median(cumulative[module]) / 1e3,
            "self_ms": statistics.median(own[module]) / 1e3,
        }
        for module in cumulative
    ]
    rows.sort(key=lambda r: -r["cumulative_ms"])
    return rows[:TOP], len(rows)


def measure(runs: int, importtime_runs: int) -> dict[str, Any]:
    load = ForeignLoad()
    wall_seconds("pass")  # untimed: bytecode caches and the page cache filled
    wall_seconds(IMPORT)
    empty, loaded = [], []
    for _ in range(runs):
        empty.append(wall_seconds("pass"))
        loaded.append(wall_seconds(IMPORT))
    top, modules = slowest_imports(importtime_runs)
    return {
        "runs": runs,
        "import_s": statistics.median(loaded) - statistics.median(empty),
        "python_c_import_bale_s": summary(loaded),
        "python_c_pass_s": summary(empty),
        "importtime_runs": importtime_runs,
        "modules_imported": modules,
        "slowest": top,
        "load": load.result(),
    }


def markdown(results: dict[str, Any]) -> str:
    env, m = results["environment"], results["measured"]
    loaded, empty = m["python_c_import_bale_s"], m["python_c_pass_s"]
    lines = [
        "# Import time",
        "",
        f"Date: {env['date']}. Command: `{results['command']}`. bale {env['versions']['bale']}, "
        f"git commit {env['git_commit']}"
        + ("" if env["git"] == env["git_commit"][: len(env["git"])] else f" ({env['git']})")
        + f"; Python {env['python']}; {env['cpu']}, {env['cores']} cores.",
        "",
        f"**`import bale`: {m['import_s'] * 1e3:.0f} ms**: the median of {m['runs']} fresh "
        f'`python -c "import bale"` ({loaded["median"] * 1e3:.0f} ms, '
        f"{loaded['min'] * 1e3:.0f}-{loaded['max'] * 1e3:.0f}) minus the median of "
        f"{m['runs']} `python -c pass` ({empty['median'] * 1e3:.0f} ms, "
        f"{empty['min'] * 1e3:.0f}-{empty['max'] * 1e3:.0f}), run alternately. It imports "
        f"{m['modules_imported']} modules that `python -c pass` does not. Other processes used "
        f"{m['load']['foreign_cores']:.2f} cores on average meanwhile (a busy machine makes "
        "imports slower and the runs spread).",
        "",
        f'Slowest imports (`python -X importtime -c "import bale"`, median of '
        f"{m['importtime_runs']} runs; cumulative includes what a module imports; indented by "
        "import depth):",
        "",
        "| module | cumulative ms | self ms |",
        "|---|---:|---:|",
    ]
    for r in m["slowest"]:
        indent = "&nbsp;&nbsp;" * r["depth"]
        lines.append(f"| {indent}`{r['module']}` | {r['cumulative_ms']:.1f} | {r['self_ms']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="fresh processes of each kind")
    parser.add_argument("--quick", action="store_true", help="5 runs, one -X importtime run")
    args = parser.parse_args(argv)
    runs, importtime_runs = (5, 1) if args.quick else (args.runs, 5)
    command = ".venv/bin/python -m bench.import_time" + (" --quick" if args.quick else "")
    if not args.quick and args.runs != 21:
        command += f" --runs {args.runs}"
    results = {
        "command": command,
        "environment": describe(),
        "measured": measure(runs, importtime_runs),
    }
    report = markdown(results)
    write_report("import_time", results, report, quick=args.quick)
    print(report)


if __name__ == "__main__":
    main()
