"""Upload: `bale.pack` and `bale.Writer` straight to an S3 endpoint against writing a local file
and then uploading it (obstore, boto3), over a loopback server with a per-request delay and cap.

    .venv/bin/python -m bench.remote_upload_bench            # full run, several minutes
    .venv/bin/python -m bench.remote_upload_bench --quick    # small data, about a minute

bench.remote_server.DirectoryServer answers path-style S3 from a child process on 127.0.0.1
(PutObject and multipart uploads, bodies streamed to its disk; no signature checks): a delay
before every answer, and in one case each request's body paced to 100 MB/s (an object store's
rate per connection; parts in flight add up). Two workloads, each written to ``out.bale``:

- pack: a folder of ImageNet-like JPEGs (bench/pack_bench.py's maker) packed with decode +
  resize to 224x224 uint8, `bale.pack(ImageFolderSource(root, size=(224, 224)), out)` with its
  defaults (shuffled through local buckets; worker processes for decoding): the realistic
  `bale pack` case, bound by the CPU;
- write: the suite's decoded 64x64x3 uint8 images (bench/suite/data.py), in memory, written by
  `bale.Writer` in batches of 1,024 rows with bale's default codecs: the I/O-bound case.

For each: (a) bale straight to ``s3://bench/out.bale`` (`storage_options` with the server as
``endpoint_url``: obstore, 16 MiB parts, 4 in flight, completed at close); (b) the same to a
local file, then that file uploaded by `obstore.put` (16 MiB parts, 4 at once: bale's client and
settings) or by boto3's `upload_file` (its defaults: 8 MiB parts, 10 threads). The local write
is timed once per repeat and added to each upload of the same repeat; the file is then in the
page cache, as right after a pack. MB/s are of the output file. The ratios compare (a) with (b)
repeat by repeat (each (a) with the (b) measured just after it). Every object is checked against
the local file (size; bytes too where the writer is deterministic) and removed after. Peak RSS
growth, once per case after the timed repeats: one more write, in a fresh spawned process, its
peak RSS (VmHWM, reset first) over its RSS with the data loaded and bale imported (pack's
decoding workers are other processes, not counted). The server completes a multipart upload by concatenating its parts on its own disk (a copy of the file,
inside every multipart timing alike). The machine has 2 cores, shared with other jobs: the
"other load" line says how much CPU other processes used during each workload.
"""

from __future__ import annotations

import argparse
import filecmp
import gc
import multiprocessing
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

import bale
from bale.importers.image_folder import ImageFolderSource
from bench.machine import ForeignLoad, report_head, reset_peak_rss, stamp, vm_status
from bench.remote_server import DirectoryServer
from bench.results import OUT, write_report
from bench.stats import fmt_range, summary
from bench.suite import data

WORK = OUT / "remote_upload"
BUCKET = "bench"
KEY = "out.bale"
MiB = 1 << 20
PART = 16 * MiB  # bale's part size (bale.io.remote_sink.DEFAULT_UPLOAD_OPTIONS)
IN_FLIGHT = 4
BATCH = 1024

# (name, delay s, bytes/s per request)
NETWORKS = (
    ("0 ms", 0.0, 0.0),
    ("20 ms", 0.02, 0.0),
    ("20 ms, 100 MB/s per request", 0.02, 100e6),
)
HOWS = {
    "local": "bale to a local file (no upload)",
    "direct": "(a) bale straight to s3://",
    "obstore": "(b) local file + obstore.put",
    "boto3": "(b) local file + boto3 upload_file",
}


def storage_options(endpoint: str) -> dict[str, Any]:
    return {
        "endpoint_url": endpoint,
        "key": "x",
        "secret": "y",
        "client_kwargs": {"region_name": "us-east-1"},
    }


class Workload:
    """What is written, and how to write it to a path or URL."""

    def __init__(self, name: str, description: str, write: Callable[[str, Any], None]) -> None:
        self.name = name
        self.description = description
        self._write = write

    def write(self, out: str, options: dict[str, Any] | None = None) -> None:
        self._write(out, options)


def pack_workload(images: int, make: bool = True) -> Workload:
    """The JPEG folder made (``make``), or the one made before."""
    from bench.pack_bench import make_folder

    root = WORK / "jpegs"
    if make:
        files, _, source_bytes = make_folder(root, images)
    else:
        files = sorted(root.rglob("*.jpg"))
        source_bytes = sum(p.stat().st_size for p in files)
    for p in files:  # page cache warm for every run alike
        p.read_bytes()

    def write(out: str, options: dict[str, Any] | None) -> None:
        source = ImageFolderSource(root, size=(224, 224))
        bale.pack(source, out, progress=False, overwrite=True, storage_options=options)

    return Workload(
        "pack",
        f"`bale pack` of {images:,} JPEGs ({source_bytes / 1e6:.0f} MB) decoded and resized "
        "to 224x224 uint8",
        write,
    )


def write_workload(rows: int) -> Workload:
    data.prepare(WORK / "data", "uint8", rows)
    source = data.load(WORK / "data", "uint8")
    x, label = np.ascontiguousarray(source.x), np.ascontiguousarray(source.label)

    def write(out: str, options: dict[str, Any] | None) -> None:
        with bale.Writer(out, overwrite=True, storage_options=options) as writer:
            for start in range(0, len(x), BATCH):
                writer.write({"x": x[start : start + BATCH], "label": label[start : start + BATCH]})

    return Workload(
        "write",
        f"`bale.Writer` of {rows:,} in-memory {data.DESCRIPTIONS['uint8']} "
        f"({x.nbytes / 1e6:.0f} MB), batches of {BATCH:,}",
        write,
    )


def timed(call: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def _peak_in_child(name: str, size: int, out: str, options: dict[str, Any] | None) -> float:
    workload = pack_workload(size, make=False) if name == "pack" else write_workload(size)
    gc.collect()
    if not reset_peak_rss():
        raise RuntimeError("cannot reset the peak RSS (/proc/self/clear_refs)")
    before = vm_status()["VmRSS"]
    workload.write(out, options)
    return (vm_status()["VmHWM"] - before) / MiB


def peak_rss_growth(name: str, size: int, out: str, options: dict[str, Any] | None) -> float:
    """Peak RSS growth (MiB) of one write in a fresh process, over its RSS with the data loaded:
    in this process, memory freed by earlier runs would be reused unseen."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(_peak_in_child, name, size, out, options).result(timeout=900)


def run_workload(workload: Workload, size_arg: int, cfg: argparse.Namespace) -> dict[str, Any]:
    import boto3
    import obstore
    from obstore.store import S3Store

    local = WORK / "local.bale"
    serve = WORK / "serve"
    shutil.rmtree(serve, ignore_errors=True)
    (serve / BUCKET).mkdir(parents=True)
    stored = serve / BUCKET / KEY
    samples: dict[str, dict[str, list[float]]] = {}
    checks: list[str] = []

    def add(network: str, how: str, label: str, value: float) -> None:
        samples.setdefault(f"{network}|{how}", {}).setdefault(label, []).append(value)

    load = ForeignLoad()
    with DirectoryServer(serve) as server:
        options = storage_options(server.endpoint)
        store = S3Store(
            BUCKET,
            endpoint=server.endpoint,
            access_key_id="x",
            secret_access_key="y",
            region="us-east-1",
            client_options={"allow_http": True},
        )
        s3 = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            aws_access_key_id="x",
            aws_secret_access_key="y",
            region_name="us-east-1",
        )
        uploads: dict[str, Callable[[], Any]] = {
            "obstore": lambda: obstore.put(
                store, KEY, local, chunk_size=PART, max_concurrency=IN_FLIGHT
            ),
            "boto3": lambda: s3.upload_file(str(local), BUCKET, KEY),
        }
        try:
            for repeat in range(cfg.repeats):
                local_s = timed(lambda: workload.write(str(local)))
                size = local.stat().st_size
                for network, delay, per_request in NETWORKS:
                    add(network, "local", "seconds", local_s)
                    server.set_delay(delay)
                    server.set_request_bandwidth(per_request)
                    seconds = timed(lambda: workload.write(f"s3://{BUCKET}/{KEY}", options))
                    same = filecmp.cmp(stored, local, shallow=False)
                    if stored.stat().st_size != size:
                        raise RuntimeError(
                            f"{workload.name}: the object differs in size from {local}"
                        )
                    checks.append("identical" if same else "same size")
                    stored.unlink()
                    add(network, "direct", "seconds", seconds)
                    direct = seconds
                    for how, upload in uploads.items():
                        t0 = time.perf_counter()
                        upload()
                        upload_s = time.perf_counter() - t0
                        if not filecmp.cmp(stored, local, shallow=False):
                            raise RuntimeError(f"{how} uploaded something else than {local}")
                        stored.unlink()
                        add(network, how, "seconds", local_s + upload_s)
                        add(network, how, "upload_s", upload_s)
                        add(network, how, "a_vs_b", (local_s + upload_s) / direct)
                server.set_delay(0)
                server.set_request_bandwidth(0)
                print(
                    f"[{repeat}] {workload.name}: {size / 1e6:.0f} MB, local {local_s:.2f} s; "
                    + "; ".join(
                        f"{key.replace('|', ' ')} {v['seconds'][-1]:.2f} s"
                        for key, v in samples.items()
                        if not key.endswith("|local")
                    ),
                    flush=True,
                )
            memory = {"local": peak_rss_growth(workload.name, size_arg, str(WORK / "m.bale"), None)}
            (WORK / "m.bale").unlink()
            for network, delay, per_request in NETWORKS:
                server.set_delay(delay)
                server.set_request_bandwidth(per_request)
                url = f"s3://{BUCKET}/{KEY}"
                memory[network] = peak_rss_growth(workload.name, size_arg, url, options)
                stored.unlink()
        except Exception as exc:
            if server.exitcode is None:
                raise
            raise RuntimeError(
                f"the loopback server ended (exit code {server.exitcode}) during "
                f"{workload.name}: killed from outside?"
            ) from exc
        s3.close()
    size = local.stat().st_size
    if not cfg.keep:
        local.unlink()
    shutil.rmtree(serve, ignore_errors=True)
    cases = {}
    for key, values in samples.items():
        case = {label: summary(v) for label, v in values.items()}
        case["mb_s"] = summary([size / 1e6 / s for s in values["seconds"]])
        cases[key] = case
    return {
        "description": workload.description,
        "bytes": size,
        "object_check": sorted(set(checks)),
        "other_load": load.result(),
        "cases": cases,
        "peak_rss_growth_mib": memory,
    }


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    WORK.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"workloads": {}}
    for workload, size in (
        (pack_workload(cfg.images), cfg.images),
        (write_workload(cfg.rows), cfg.rows),
    ):
        results["workloads"][workload.name] = run_workload(workload, size, cfg)
    if not cfg.keep:
        shutil.rmtree(WORK / "jpegs", ignore_errors=True)
    return results


def report(results: dict[str, Any], cfg: argparse.Namespace) -> str:
    lines = [
        *report_head(
            "Upload: bale straight to an S3 endpoint against a local file + upload",
            results,
            __doc__,
        ),
        f"{cfg.repeats} repeats; median (min-max). (a)/(b): how many times faster (a) is than "
        "(b), repeat by repeat.",
        "",
    ]
    for w in results["workloads"].values():
        load = w["other_load"]
        lines += [
            f"## {w['description']}",
            "",
            f"Output {w['bytes'] / 1e6:.0f} MB; objects checked: {', '.join(w['object_check'])} "
            f"(against the local file). Other load: {load['foreign_cores']:.2f} cores used by "
            f"other processes over {load['wall_s']:.0f} s.",
            "",
            "| network | how | seconds | MB/s | upload alone s | (a)/(b) | peak RSS growth, MiB |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for key, case in w["cases"].items():
            network, how = key.split("|")
            upload = fmt_range(case["upload_s"], 2) if "upload_s" in case else "-"
            ratio = fmt_range(case["a_vs_b"], 2) if "a_vs_b" in case else "-"
            memory = w["peak_rss_growth_mib"]
            rss = {"local": f"{memory['local']:.0f}", "direct": f"{memory[network]:.0f}"}.get(
                how, "-"
            )
            lines.append(
                f"| {network} | {HOWS[how]} | {fmt_range(case['seconds'], 2)} | "
                f"{fmt_range(case['mb_s'], 0)} | {upload} | {ratio} | {rss} |"
            )
        lines.append("")
    lines += ["## Summary", ""]
    for name, w in results["workloads"].items():
        for network, _, _ in NETWORKS:
            direct = w["cases"][f"{network}|direct"]
            ratios = ", ".join(
                f"{w['cases'][f'{network}|{how}']['a_vs_b']['median']:.2f}x {how}"
                for how in ("obstore", "boto3")
            )
            local = w["cases"][f"{network}|local"]["mb_s"]["median"]
            lines.append(
                f"- {name}, {network}: (a) {direct['mb_s']['median']:.0f} MB/s "
                f"({direct['mb_s']['median'] / local:.2f}x the local write's "
                f"{local:.0f} MB/s), against (b): {ratios}; peak RSS growth "
                f"{w['peak_rss_growth_mib'][network]:.0f} MiB (local write: "
                f"{w['peak_rss_growth_mib']['local']:.0f} MiB)."
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, about a minute")
    parser.add_argument("--keep", action="store_true", help="keep the data and local files")
    cfg = parser.parse_args()
    cfg.repeats = 2 if cfg.quick else 3
    cfg.images = 300 if cfg.quick else 4000
    cfg.rows = 3000 if cfg.quick else 40000
    t0 = time.perf_counter()
    results = run(cfg)
    stamp(
        results,
        WORK,
        ("numpy", "obstore", "boto3", "botocore"),
        "flock /tmp/bench.lock .venv/bin/python -m bench.remote_upload_bench"
        + (" --quick" if cfg.quick else ""),
    )
    results["config"] = {
        "repeats": cfg.repeats,
        "images": cfg.images,
        "rows": cfg.rows,
        "networks": NETWORKS,
        "part_bytes": PART,
        "parts_in_flight": IN_FLIGHT,
    }
    results["total_seconds"] = time.perf_counter() - t0
    written = write_report("remote_upload_bench", results, report(results, cfg), quick=cfg.quick)
    print(f"wrote {written}")


if __name__ == "__main__":
    main()
