"""bale files read over HTTP from a loopback range server with a per-request delay, against the
same epochs from the local file, in one process.

    .venv/bin/python -m bench.remote_loader_bench            # full run, a few minutes
    .venv/bin/python -m bench.remote_loader_bench --quick    # small data, about a minute

The suite's three kinds (bench/suite/data.py) are written with bale's defaults. A server in a
child process (bench.remote_client_bench.LoopbackServer: single ``Range`` GETs, a delay before
every answer, a request counter) serves each file; bale reads it through ``bale.open(url)`` /
``bale.Loader(url)`` (obstore). For each delay: the time and requests of opening the file, and
one chunk-shuffled epoch of ``bale.Loader`` (batch 256, the default threads), samples/s against
the same epoch from the local file (page cache warm) run just before, and the bytes fetched over
the epoch against the file's size. Two more cases at 20 ms: each response paced to 100 MB/s (an
object store's rate per connection), and epoch 2 of a Loader whose epoch 1 filled a disk cache
(``RemoteOptions(cache_dir=...)``, on the benchmark's disk). Medians (min-max) of repeated runs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import bale
from bale._core.dataset import reader_of
from bale.io.pagecache import read_through
from bale.io.remote import RemoteOptions
from bench.machine import report_head, stamp
from bench.remote_client_bench import LoopbackServer
from bench.results import OUT, write_report
from bench.stats import fmt_range, summary
from bench.suite import data

WORK = OUT / "remote_loader"
BATCH = 256


def epoch(path: str, seed: int, cache_dir: str | None = None) -> tuple[float, int, Any]:
    """Seconds of one shuffled epoch, rows, and the bytes fetched from the server. With
    ``cache_dir``: a first Loader's epoch fills a disk cache there, then a new Loader's epoch
    (the next epoch's order) is the one timed, as the local epoch is timed on a new Loader."""
    options = RemoteOptions(cache_dir=cache_dir) if cache_dir else None
    kwargs: dict[str, Any] = {"remote_options": options} if options else {}
    if cache_dir:
        with bale.Loader(path, BATCH, shuffle="chunks", seed=seed, **kwargs) as filling:
            for _ in filling:
                pass
    with bale.Loader(path, BATCH, shuffle="chunks", seed=seed, **kwargs) as loader:
        source = reader_of(loader._files.datasets[0]).source
        if cache_dir:
            loader.set_epoch(1)
        before = getattr(source, "bytes_fetched", 0)
        t0 = time.perf_counter()
        rows = sum(len(batch["label"]) for batch in loader)
        seconds = time.perf_counter() - t0
        fetched = getattr(source, "bytes_fetched", 0) - before
    return seconds, rows, fetched


def cases_of(cfg: argparse.Namespace) -> list[tuple[str, float, float, bool]]:
    """(name, delay ms, bytes/s per response or 0, epoch 2 from the disk cache) of each case."""
    cases = [(f"{delay:g} ms", delay, 0.0, False) for delay in cfg.delays]
    cases.append(("20 ms, 100 MB/s per request", 20.0, 100e6, False))
    cases.append(("20 ms, epoch 2 from the disk cache", 20.0, 0.0, True))
    return cases


def open_cost(url: str, server: LoopbackServer) -> tuple[float, int]:
    before = server.requests
    t0 = time.perf_counter()
    with bale.open(url) as ds:
        seconds = time.perf_counter() - t0
        ds.schema  # noqa: B018 - the schema is there without more requests
    return seconds, server.requests - before


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    WORK.mkdir(parents=True, exist_ok=True)
    rows = (
        {"jpeg": 300, "uint8": 3000, "act": 800}
        if cfg.quick
        else {
            "jpeg": 2000,
            "uint8": 16000,
            "act": 4000,
        }
    )
    results: dict[str, Any] = {"kinds": {}}
    for kind in data.KINDS:
        data.prepare(WORK / "data", kind, rows[kind])
        source = data.load(WORK / "data", kind)
        path = WORK / f"{kind}.bale"
        bale.write(path, {"x": source.x, "label": source.label}, overwrite=True)
        read_through([path])
        server = LoopbackServer(str(path))
        url = f"{server.endpoint}/bench/{kind}.bale"
        cases: dict[str, dict[str, list[float]]] = {}
        try:
            for repeat in range(cfg.repeats):
                local_s, n, _ = epoch(str(path), repeat)
                cases.setdefault("local", {}).setdefault("samples_s", []).append(n / local_s)
                for name, delay, bandwidth, cached in cases_of(cfg):
                    server.set_delay(delay / 1e3)
                    server.set_bandwidth(bandwidth)
                    case = cases.setdefault(name, {})
                    open_s, open_requests = open_cost(url, server)
                    with tempfile.TemporaryDirectory(dir=WORK) as cache_dir:
                        seconds, n_remote, fetched = epoch(
                            url, repeat, cache_dir if cached else None
                        )
                    assert n_remote == n
                    case.setdefault("open_ms", []).append(open_s * 1e3)
                    case.setdefault("open_requests", []).append(open_requests)
                    case.setdefault("samples_s", []).append(n / seconds)
                    case.setdefault("vs_local", []).append(local_s / seconds)
                    case.setdefault("fetched_ratio", []).append(fetched / path.stat().st_size)
                server.set_bandwidth(0)
                print(
                    f"[{repeat}] {kind}: local {n / local_s:,.0f} samples/s; "
                    + ", ".join(
                        f"{name} {c['vs_local'][-1]:.2f}x"
                        for name, c in cases.items()
                        if "vs_local" in c
                    )
                )
        finally:
            server.close()
        results["kinds"][kind] = {
            "rows": len(source),
            "bytes": path.stat().st_size,
            "cases": {
                name: {label: summary(v) for label, v in case.items()}
                for name, case in cases.items()
            },
        }
        if not cfg.keep:
            path.unlink()
    return results


def report(results: dict[str, Any], cfg: argparse.Namespace) -> str:
    lines = [
        *report_head(
            "bale over HTTP: open and Loader epochs against the local file", results, __doc__
        ),
        f"{cfg.repeats} repeats; median (min-max).",
        "",
        "Aims (issue 12): open at 20 ms in at most 2 requests and under 50 ms + 2 round trips; "
        "epochs at 20 ms at least 0.8x the local file's samples/s; epoch 2 from the disk cache "
        "at least 0.95x; bytes fetched over an epoch at most 1.05x the file (for the cached "
        "epoch: what it still fetched).",
        "",
    ]
    for kind, k in results["kinds"].items():
        lines += [
            f"## {kind}: {data.DESCRIPTIONS[kind]}",
            "",
            f"{k['rows']:,} rows, {k['bytes'] / 1e6:.1f} MB.",
            "",
            "| delay | open ms | open requests | samples/s | vs local | bytes fetched / file |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, case in k["cases"].items():
            if name == "local":
                lines.append(f"| local file | - | - | {fmt_range(case['samples_s'], 0)} | 1 | - |")
                continue
            lines.append(
                f"| {name} | {fmt_range(case['open_ms'], 1)} | "
                f"{case['open_requests']['median']:.0f} | {fmt_range(case['samples_s'], 0)} | "
                f"{fmt_range(case['vs_local'], 2)} | {fmt_range(case['fetched_ratio'], 3)} |"
            )
        at20 = k["cases"].get("20 ms")
        if at20 is not None:
            ok_open = at20["open_requests"]["median"] <= 2 and at20["open_ms"]["median"] <= 90
            ok_epoch = at20["vs_local"]["median"] >= 0.8
            ok_bytes = at20["fetched_ratio"]["median"] <= 1.05
            lines += [
                "",
                f"- At 20 ms: open {'PASS' if ok_open else 'MISS'} "
                f"({at20['open_requests']['median']:.0f} requests, "
                f"{at20['open_ms']['median']:.0f} ms against 90); epoch "
                f"{'PASS' if ok_epoch else 'MISS'} ({at20['vs_local']['median']:.2f}x local); "
                f"bytes {'PASS' if ok_bytes else 'MISS'} ({at20['fetched_ratio']['median']:.3f}x).",
            ]
        cached = k["cases"].get("20 ms, epoch 2 from the disk cache")
        if cached is not None:
            ok_cached = cached["vs_local"]["median"] >= 0.95
            lines.append(
                f"- Epoch 2 from the disk cache: {'PASS' if ok_cached else 'MISS'} "
                f"({cached['vs_local']['median']:.2f}x local, aim 0.95x)."
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, about a minute")
    parser.add_argument("--keep", action="store_true", help="keep the written files")
    cfg = parser.parse_args()
    cfg.repeats = 2 if cfg.quick else 3
    cfg.delays = [0.0, 20.0] if cfg.quick else [0.0, 5.0, 20.0, 50.0]
    t0 = time.perf_counter()
    results = run(cfg)
    stamp(
        results,
        WORK,
        ("numpy", "obstore", "fsspec", "blosc2"),
        ".venv/bin/python -m bench.remote_loader_bench" + (" --quick" if cfg.quick else ""),
    )
    results["total_seconds"] = time.perf_counter() - t0
    written = write_report("remote_loader_bench", results, report(results, cfg), quick=cfg.quick)
    print(f"wrote {written}")


if __name__ == "__main__":
    main()
