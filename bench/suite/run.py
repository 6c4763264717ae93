"""The suite's driver: data, machine limits, then every tool x kind x measure in a fresh process.

Order: generate the sources (cached under bench/out/suite/data), measure the machine's limits,
probe which tools import, write each store (``--write-repeats`` times, each timed), check the
stored rows once, then ``--repeats`` rounds of read measurements. Each round runs warm then cold,
and inside that every kind and tool in turn (round-robin), so a burst of load from elsewhere
hits all tools alike. Full mode starts a fresh process per measurement; quick mode one per tool,
kind and cache state (each measure still gets a fresh adapter and its own cache preparation).
Results: bench/results/suite.json (``--quick``: suite_quick.json), then the report
(bench/suite/report.py) and plots in docs/img/. ``--measures`` runs a subset of the read
measures (stores are still written and checked); its results go to a file of their own
(``--name``, default ``suite_`` + the measures), never over the full run's.

    .venv-bench/bin/python -m bench.suite.run            # full run
    .venv-bench/bin/python -m bench.suite.run --quick    # small data, one round: minutes
    .venv-bench/bin/python -m bench.suite.run --measures row,gather64 --name suite_random
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.machine import describe
from bench.results import OUT, RESULTS, ROOT
from bench.suite import adapters, data

WORK = OUT / "suite"  # git-ignored
INSTALL_LOGS = OUT / "suite_install"
READ_MEASURES = ("seq", "shuf", "row", "gather64", "decode")


@dataclass(frozen=True)
class Config:
    quick: bool
    rows: dict[str, int]
    repeats: int
    write_repeats: int
    cap_s: float  # an epoch stops after this many seconds (slow random readers)
    row_n: int
    limits_file_mib: int
    limits_repeats: int
    gather_warm: int = 200  # gather64 batches per warm run
    gather_cold: int = 30  # gather64 batches per cold run (each in a fresh, evicted store)
    bale_src: str = ""  # a snapshot of bale's source to measure instead of the checkout's

    @classmethod
    def make(cls, quick: bool) -> Config:
        if quick:
            rows = {"jpeg": 300, "uint8": 3000, "act": 1000}
            return cls(True, rows, 1, 1, 5.0, 200, 256, 1, 50, 10)
        # ~92 MB of JPEGs, ~197 MB of images, ~131 MB of activations: above the tools' caches
        # (bale 64 MiB, h5py chunk cache set to 64 MiB), small enough that three rounds of 15
        # tools finish in under an hour on 2 cores.
        rows = {"jpeg": 2000, "uint8": 16_000, "act": 4000}
        return cls(False, rows, 3, 2, 10.0, 300, 2048, 3, 200, 30)


def run_measure(
    tool: str, kind: str, measure: str, cfg: Config, cache: str = "warm", timeout: float = 900
) -> list[dict[str, Any]]:
    """Run ``python -m bench.suite.measure`` once; ``measure`` may list several, comma-separated.
    Returns one record per measure, failures included."""
    cmd = [
        sys.executable,
        "-m",
        "bench.suite.measure",
        str(WORK),
        tool,
        kind,
        measure,
        "--cache",
        cache,
        "--cap-s",
        str(cfg.cap_s),
        "--row-n",
        str(cfg.row_n),
        "--gather-warm",
        str(cfg.gather_warm),
        "--gather-cold",
        str(cfg.gather_cold),
    ]
    names = measure.split(",")

    def failed(error: str) -> list[dict[str, Any]]:
        return [
            {"tool": tool, "kind": kind, "measure": m, "cache": cache, "ok": False, "error": error}
            for m in names
        ]

    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=_env(cfg)
        )
    except subprocess.TimeoutExpired:
        return failed(f"timed out after {timeout:.0f} s")
    wall = time.perf_counter() - t0
    records = [
        json.loads(line[len("RESULT ") :])
        for line in proc.stdout.splitlines()
        if line.startswith("RESULT ")
    ]
    for rec in records:
        rec["process_wall_s"] = wall
    if len(records) < len(names):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        done = {r["measure"] for r in records}
        missing = [m for m in names if m not in done]
        error = f"exit {proc.returncode}, no result: " + " | ".join(tail)
        records += [r for r in failed(error) if r["measure"] in missing]
    return records


def _env(cfg: Config) -> dict[str, str]:
    """The measuring processes' environment: no network for Hugging Face. They run as
    ``python -m`` in the repository root, which puts this package on their path; with
    ``cfg.bale_src``, that snapshot's ``bale`` comes first on the path."""
    env = dict(os.environ)
    env.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if cfg.bale_src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [cfg.bale_src, env.get("PYTHONPATH")]))
    return env


def bale_snapshot(rev: str) -> tuple[str, Path]:
    """``src/bale`` of commit ``rev``, extracted once under the work directory: a run measures
    that commit while the checkout's source is being edited. Returns (full hash, path)."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    commit = done.stdout.strip()
    dest = WORK / "bale_src" / commit[:12]
    if not (dest / "bale" / "__init__.py").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit, "src/bale"], capture_output=True, check=True
        )
        subprocess.run(
            ["tar", "-x", "-C", str(dest), "--strip-components=1"],
            input=archive.stdout,
            check=True,
        )
    return commit, dest


def install_failure(tool: str) -> str | None:
    """The error line of bench/suite/setup_env.sh's log for a tool that did not install."""
    name = {"streaming": "streaming", "hf-datasets": "hf_datasets", "grain": "grain"}.get(tool)
    log = INSTALL_LOGS / f"{name or tool}.log"
    if not log.exists():
        return None
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines()]
    causes = [ln for ln in lines if re.match(r"\w*Error: ", ln)]
    final = [ln for ln in lines if ln.startswith("ERROR: ")]
    picked = list(dict.fromkeys(causes[:1] + final[-1:]))
    if not picked:
        return None
    return " / ".join(picked) + f" (pip log: {log.relative_to(ROOT)})"


def iid_reference(kind: str, batch: int, seeds: int = 50) -> dict[str, float]:
    """Dispersion ratio R of uniform random permutations of the kind's labels, whole batches
    only: what an ideal shuffle scores on this data, and its spread from seed to seed (5th to
    95th percentile), against which a tool's single-epoch R is judged."""
    import numpy as np

    from bale.loader.quality import dispersion_ratio

    labels = data.load_labels(WORK / "data", kind)
    shares = np.bincount(labels) / len(labels)
    usable = len(labels) - len(labels) % batch
    values = [
        dispersion_ratio(
            np.random.default_rng(s).permutation(labels)[:usable].reshape(-1, batch), shares
        )
        for s in range(seeds)
    ]
    return {
        "median": float(np.median(values)),
        "p5": float(np.percentile(values, 5)),
        "p95": float(np.percentile(values, 95)),
        "seeds": seeds,
    }


def environment() -> dict[str, Any]:
    env = describe(WORK)
    env["read_ahead_kb"] = read_ahead_kb(env.get("df") or "")
    return env


def read_ahead_kb(df: str) -> int | None:
    """The readahead of the block device in ``df -T``'s output (a partition's: its disk's)."""
    lines = df.splitlines()
    if len(lines) < 2 or not lines[1].startswith("/dev/"):
        return None
    device = Path("/sys/class/block") / Path(lines[1].split()[0]).name
    for queue in (device / "queue", device.resolve().parent / "queue"):
        try:
            return int((queue / "read_ahead_kb").read_text())
        except (OSError, ValueError):
            continue
    return None


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tools", help="comma-separated subset (default: all)")
    parser.add_argument("--kinds", help="comma-separated subset of " + ",".join(data.KINDS))
    parser.add_argument("--repeats", type=int, help="rounds of read measurements")
    parser.add_argument(
        "--measures", help="comma-separated subset of the read measures " + ",".join(READ_MEASURES)
    )
    parser.add_argument("--write-repeats", type=int, help="times each store is written (timed)")
    parser.add_argument("--limits-repeats", type=int, help="rounds of the machine-limit measures")
    parser.add_argument("--gather-warm", type=int, help="gather64 batches per warm run")
    parser.add_argument("--gather-cold", type=int, help="gather64 batches per cold run")
    parser.add_argument(
        "--name",
        help="results file name under bench/results/ (default: suite, or suite_ + the "
        "measures when --measures is given; _quick is added in quick mode)",
    )
    parser.add_argument(
        "--bale-commit",
        help="measure bale as of this commit (its src/bale extracted under bench/out/suite), "
        "not the checkout's possibly changing source",
    )
    parser.add_argument("--note", help="a sentence for the report's header (why this run differs)")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    cfg = Config.make(args.quick)
    overrides = {
        key: getattr(args, key)
        for key in ("repeats", "write_repeats", "limits_repeats", "gather_warm", "gather_cold")
        if getattr(args, key)
    }
    bale_commit = ""
    if args.bale_commit:
        bale_commit, snapshot = bale_snapshot(args.bale_commit)
        overrides["bale_src"] = str(snapshot)
    cfg = Config(**{**asdict(cfg), **overrides})
    tools = args.tools.split(",") if args.tools else list(adapters.TOOLS)
    kinds = args.kinds.split(",") if args.kinds else list(data.KINDS)
    read_measures = args.measures.split(",") if args.measures else list(READ_MEASURES)
    for m in read_measures:
        if m not in READ_MEASURES:
            parser.error(f"unknown read measure {m!r}; expected some of {READ_MEASURES}")
    for t in tools:
        if t not in adapters.TOOLS:
            parser.error(f"unknown tool {t!r}; expected some of {list(adapters.TOOLS)}")
    subset = set(read_measures) != set(READ_MEASURES)
    name = args.name or ("suite_" + "_".join(read_measures) if subset else "suite")
    if subset and name in ("suite", "suite_quick"):
        parser.error("a subset of the measures must not replace the full run's results: --name")
    if cfg.quick and not name.endswith("_quick"):
        name += "_quick"
    started = time.perf_counter()

    log(f"data: {cfg.rows}")
    specs = {k: data.prepare(WORK / "data", k, cfg.rows[k]).to_json() for k in kinds}
    from bench.suite.measure import BATCH

    iid = {k: iid_reference(k, BATCH[k]) for k in kinds}

    log("machine limits")
    limits_path = WORK / "limits.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.suite.limits",
            str(WORK),
            "--out",
            str(limits_path),
            "--file-mib",
            str(cfg.limits_file_mib),
            "--repeats",
            str(cfg.limits_repeats),
            "--kinds",
            ",".join(kinds),
        ],
        cwd=ROOT,
        check=True,
        env=_env(cfg),
    )
    limits = json.loads(limits_path.read_text())

    probes: dict[str, Any] = {}
    available = []
    for tool in tools:
        rec = run_measure(tool, kinds[0], "probe", cfg, timeout=300)[0]
        if not rec["ok"]:
            rec["install_error"] = install_failure(tool)
        probes[tool] = rec
        log(f"probe {tool}: {'ok' if rec['ok'] else rec['error']}")
        if rec["ok"]:
            available.append(tool)

    records: list[dict[str, Any]] = []
    writable: list[tuple[str, str]] = []
    for kind in kinds:
        for tool in available:
            ok = True
            for r in range(cfg.write_repeats):
                rec = run_measure(tool, kind, "write", cfg, timeout=1800)[0]
                rec["repeat"] = r
                records.append(rec)
                ok = ok and rec["ok"]
                log(f"write {tool} {kind}: {_brief(rec)}")
            if ok:
                rec = run_measure(tool, kind, "verify", cfg, timeout=1800)[0]
                records.append(rec)
                log(f"verify {tool} {kind}: {'ok' if rec['ok'] else rec['error']}")
                if rec["ok"]:
                    writable.append((tool, kind))

    for r in range(cfg.repeats):
        for cache in ("warm", "cold"):
            for kind in kinds:
                measures = [m for m in read_measures if m != "decode" or kind == "jpeg"]
                # Full mode: one process per measurement; quick mode: one per tool, kind, cache.
                groups = [",".join(measures)] if cfg.quick else measures
                for group in groups:
                    for tool in available:
                        if (tool, kind) not in writable:
                            continue
                        timeout = (cfg.cap_s * 4 + 300) * len(group.split(","))
                        for rec in run_measure(tool, kind, group, cfg, cache, timeout):
                            rec["repeat"] = r
                            records.append(rec)
                            log(f"round {r} {cache} {kind} {rec['measure']} {tool}: {_brief(rec)}")

    given = argv if argv is not None else sys.argv[1:]
    if given in ([], ["--quick"]):
        command = "make bench-quick" if cfg.quick else "make bench"
    else:
        command = ".venv-bench/bin/python -m bench.suite.run " + shlex.join(given)
    results = {
        "mode": "quick" if cfg.quick else "full",
        "config": asdict(cfg),
        "measures": read_measures,
        "name": name,
        "command": command,
        "environment": environment(),
        "bale_commit": bale_commit,
        "note": args.note or "",
        "specs": specs,
        "iid_dispersion_ratio": iid,
        "limits": limits,
        "probes": probes,
        "records": records,
        "wall_s": time.perf_counter() - started,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(results, indent=1, default=str))
    log(f"wrote {out} after {results['wall_s'] / 60:.1f} min")
    if not args.no_report:
        from bench.suite import report

        report.main([str(out)])
    return 0


def _brief(rec: dict[str, Any]) -> str:
    if not rec["ok"]:
        return ("unsupported: " if rec.get("unsupported") else "FAILED: ") + rec["error"][:300]
    if "rows_per_s" in rec:
        return f"{rec['rows_per_s']:.0f} rows/s" + (" (capped)" if rec.get("capped") else "")
    if "p50_s" in rec:
        return f"p50 {rec['p50_s'] * 1e3:.3f} ms, p99 {rec['p99_s'] * 1e3:.3f} ms"
    if rec["measure"] == "write":
        return f"{rec['seconds']:.2f} s, {rec['bytes'] / 1e6:.1f} MB, {rec['files']} files"
    return "ok"


if __name__ == "__main__":
    raise SystemExit(main())
