"""Packing a JPEG folder on a cluster: `bale pack --scheduler` (Dask) and `--ray` against the
local pack (issue 13's figures). Images/s and the ratio to the local pack.

    .venv/bin/python -m bench.pack_cluster_bench            # 500 images, 3 repeats
    .venv/bin/python -m bench.pack_cluster_bench --quick    # 120 images, 1 repeat

The source is a class-folder tree of ImageNet-like JPEGs (several sizes) made from the photos
bundled with scikit-image (``bench.pack_bench.make_folder``, ``bench/photo_data.py``), read from a
warm page cache. Every case packs it with ``size=(224, 224)`` (decode-check, resize, crop to
224x224x3 uint8), shuffled with seed 0, into a fresh file on the same disk: the local pack with
1 and 2 worker processes (``workers=``), a ``dask.distributed.LocalCluster`` of 1 and of 2 worker
processes (one thread each) given as ``scheduler=client``, and a local Ray with 2 CPUs
(``scheduler="ray"``, after ``ray.init(num_cpus=2)``). The clusters are started before the timed
runs (their start-up is not counted; connecting, checking the workers see the source and sending
it to them is). Runs go round-robin, ``--repeat`` times; the table shows the median (min-max)
seconds, images/s of the median, the ratio of medians to the local pack with 1 and with 2
workers, and the busy CPU seconds of the whole machine meanwhile (the machine may be shared: with
2 cores, one busy neighbour changes everything). Every output is checked to be byte-identical to
the local pack's.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import bale
from bench.machine import describe, machine_busy_seconds, report_head, src_digest
from bench.pack_bench import make_folder
from bench.results import OUT, write_report
from bench.stats import fmt_range, summary

WORK = OUT / "pack_cluster"
SIZE = (224, 224)
REFERENCES = ("local, 1 worker", "local, 2 workers")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="120 images, 1 repeat")
    parser.add_argument("--repeat", type=int, default=None, help="runs of each case (3)")
    args = parser.parse_args()
    n = 120 if args.quick else 500
    repeat = args.repeat or (1 if args.quick else 3)
    t0 = time.perf_counter()

    import distributed
    import ray

    root = WORK / "jpegs"
    files, _, source_bytes = make_folder(root, n)
    for path in files:  # a warm page cache for every case alike
        path.read_bytes()
    clusters = [
        distributed.LocalCluster(
            n_workers=k,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            # a port of its own: "None" means dask's default 8787, which another run may hold
            dashboard_address="127.0.0.1:0",
        )
        for k in (1, 2)
    ]
    clients = [distributed.Client(c, set_as_default=False) for c in clusters]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    cases: dict[str, dict[str, Any]] = {
        "local, 1 worker": {"workers": 1},
        "local, 2 workers": {"workers": 2},
        "Dask, 1 worker": {"scheduler": clients[0]},
        "Dask, 2 workers": {"scheduler": clients[1]},
        "Ray, 2 CPUs": {"scheduler": "ray"},
    }
    try:
        walls, cpu = run(root, cases, repeat)
    finally:
        ray.shutdown()
        for client, cluster in zip(clients, clusters, strict=True):
            client.close()
            cluster.close()
    rows = []
    for name in cases:
        median = statistics.median(walls[name])
        rows.append(
            {
                "case": name,
                "wall_s": summary(walls[name]),
                "images_per_s": n / median,
                **{f"vs {ref}": statistics.median(walls[ref]) / median for ref in REFERENCES},
                "machine_cpu_s": statistics.median(cpu[name]),
            }
        )
    results: dict[str, Any] = {
        "images": n,
        "source_bytes": source_bytes,
        "size": list(SIZE),
        "repeat": repeat,
        "cases": rows,
        "env": describe(WORK, packages=("numpy", "dask", "distributed", "ray", "simplejpeg")),
        "src_digest": src_digest(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": ".venv/bin/python -m bench.pack_cluster_bench"
        + (" --quick" if args.quick else ""),
        "total_seconds": time.perf_counter() - t0,
    }
    written = write_report("pack_cluster_bench", results, render(results), quick=args.quick)
    print(render(results))
    print(f"wrote {written}")
    shutil.rmtree(WORK, ignore_errors=True)


def run(
    root: Path, cases: dict[str, dict[str, Any]], repeat: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Each case ``repeat`` times, round-robin: wall seconds and the machine's busy CPU seconds."""
    walls: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    reference: bytes | None = None
    for r in range(repeat):
        for name, options in cases.items():
            out = WORK / f"{name.replace(' ', '_').replace(',', '')}-{r}.bale"
            out.unlink(missing_ok=True)
            busy = machine_busy_seconds()
            started = time.perf_counter()
            bale.pack(root, out, size=SIZE, seed=0, progress=False, **options)
            walls[name].append(time.perf_counter() - started)
            cpu[name].append(machine_busy_seconds() - busy)
            data = out.read_bytes()
            reference = reference if reference is not None else data
            if data != reference:
                raise SystemExit(f"{name}: the file differs from the local pack's")
            out.unlink()
            print(f"{name}: {walls[name][-1]:.2f} s", flush=True)
    return walls, cpu


def render(results: dict[str, Any]) -> str:
    lines = report_head(
        "bale pack on a cluster: Dask and Ray against the local pack", results, __doc__
    )
    lines += [
        "## Results",
        "",
        f"{results['images']} JPEGs ({results['source_bytes'] / 1e6:.1f} MB) packed to "
        f"{results['size'][0]}x{results['size'][1]}x3 uint8; {results['repeat']} run(s) of each "
        "case, round-robin. Every output was byte-identical to the local pack's.",
        "",
        "| case | wall s, median (min-max) | images/s | vs local, 1 worker | vs local, 2 workers "
        "| machine CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["cases"]:
        ratios = " | ".join(f"{row[f'vs {ref}']:.2f}x" for ref in REFERENCES)
        lines.append(
            f"| {row['case']} | {fmt_range(row['wall_s'], 2)} | {row['images_per_s']:.0f} | "
            f"{ratios} | {row['machine_cpu_s']:.1f} |"
        )
    lines += [
        "",
        "Ratios are speeds (higher is faster): the local pack's median seconds over the case's. "
        "Machine CPU s: busy CPU seconds of the whole machine during the run (median), this "
        "process, its workers and the cluster's, and any neighbour's: well above the local "
        "1-worker pack's means time spent elsewhere.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
