"""The codec advisor (``bale codecs``, ``bale.measure.advisor``) on the three data kinds, against
the filters h5py users pick: the codec measurements behind bale's defaults (docs/DECISIONS.md,
"Default codecs" and "Row-group size"). It replaces bench/codec_choice.py, which measured the
same with its own copy of the candidate grid; its last report stays in bench/results/ as history.

For each kind, made by bench/photo_data.py from real photos:

1. ``bale codecs FILE`` as printed, on a file written with bale's defaults;
2. bale's default codec and the advisor's balanced pick against h5py gzip-4 and lzf on the same
   rows in 1 MiB chunks: ratio, compress and decompress MB/s per core, and the aims (no larger
   than gzip-4, decoding at least 3x faster than gzip-4 and faster than lzf);
3. row-group size: the default codec's ratio and decode speed at 1, 4 and 16 MiB row groups.

Speeds are MB/s of raw data (1 MB = 10^6 bytes) per second of the measuring thread's CPU time,
one thread, median of the repeats, as the advisor measures them.

    .venv/bin/python -m bench.advisor_bench           # about 2 minutes
    .venv/bin/python -m bench.advisor_bench --quick   # smaller data, well under a minute

Writes bench/results/advisor_bench.{json,md} (included in docs/BENCHMARKS.md by bench/report.py).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np

import bale
from bale.cli.main import main as bale_main
from bale.measure.advisor import CodecResult, measure_codecs
from bench import photo_data
from bench.machine import describe
from bench.results import OUT, write_report

MB = 1e6
MiB = 1 << 20
GROUP_SIZES_MIB = (1, 4, 16)
AIM_DECODE_VS_GZIP = 3.0
REPEATS = 3


def kinds(quick: bool) -> dict[str, tuple[str, dict[str, Any]]]:
    """title -> (file name, columns). Full: about 50 MB of each kind."""
    n_jpeg, n_images, n_act = (200, 1000, 400) if quick else (1000, 4000, 1600)
    jpegs, labels = photo_data.jpeg_images(n_jpeg, 0)
    return {
        f"JPEG bytes ({n_jpeg:,} ImageNet-like files) and labels": (
            "jpeg.bale",
            {"jpeg": jpegs, "label": labels},
        ),
        f"uint8 images 64x64x3 ({n_images:,})": (
            "images.bale",
            {"image": photo_data.uint8_images(n_images, 0)},
        ),
        f"sparse float32 activations ({n_act:,})": (
            "activations.bale",
            {"act": photo_data.sparse_activations(n_act, 0)},
        ),
    }


def bale_codecs_output(path: str) -> str:
    """What ``bale codecs PATH`` prints, through the command's own entry point."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = bale_main(["codecs", path])
    if code != 0:
        raise SystemExit(f"bale codecs {path} exited {code}")
    return out.getvalue()


# -- h5py's filters on the same rows ------------------------------------------------------------


def _cpu_seconds(fn: Callable[[], object]) -> float:
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


def h5py_filter(data: Any, compression: str, repeats: int) -> dict[str, float]:
    """Ratio and CPU-time speeds of an h5py filter on ``data`` in ~1 MiB chunks (whole rows for
    arrays; JPEG bytes concatenated, since HDF5 filters do not compress vlen heaps), in an
    in-memory file with the chunk cache off, so every read decompresses."""
    array = np.frombuffer(b"".join(data), np.uint8) if isinstance(data, list) else data
    row_bytes = array[0].nbytes if array.ndim > 1 else 1
    chunks = (max(1, MiB // row_bytes), *array.shape[1:])
    options: dict[str, Any] = {"compression": "gzip", "compression_opts": 4}
    if compression == "lzf":
        options = {"compression": "lzf"}
    out = np.empty_like(array)
    with h5py.File(
        f"{compression}.h5", "w", driver="core", backing_store=False, rdcc_nbytes=0
    ) as f:
        compress = [
            _cpu_seconds(lambda: f.create_dataset("x", data=array, chunks=chunks, **options))
        ]
        stored = int(f["x"].id.get_storage_size())
        decompress = [_cpu_seconds(lambda: f["x"].read_direct(out)) for _ in range(repeats)]
    if not np.array_equal(out, array):
        raise RuntimeError(f"h5py {compression} did not give the data back")
    return {
        "ratio": array.nbytes / stored,
        "compress_mbps": array.nbytes / MB / max(compress[0], 1e-9),
        "decompress_mbps": array.nbytes / MB / max(statistics.median(decompress), 1e-9),
    }


def _codec_row(result: CodecResult) -> dict[str, Any]:
    return {
        "spec": result.label,
        "ratio": result.ratio,
        "compress_mbps": result.compress_mbps,
        "decompress_mbps": result.decompress_mbps,
    }


def against_h5py(name: str, data: Any) -> dict[str, Any]:
    """bale's default and the advisor's balanced pick (1 MiB groups) beside h5py gzip-4 and lzf."""
    column = measure_codecs({name: data}, repeats=REPEATS, max_bytes=64 * MiB).columns[name]
    default = next(r for r in column.results if r.is_default)
    pick = column.choose("balanced")
    rows = {
        f"bale default ({default.label})": _codec_row(default),
        f"advisor, balanced ({pick.label})": _codec_row(pick),
        "h5py gzip-4": h5py_filter(data, "gzip", REPEATS),
        "h5py lzf": h5py_filter(data, "lzf", REPEATS),
    }
    gzip, lzf = rows["h5py gzip-4"], rows["h5py lzf"]
    aims = {
        "size <= h5py gzip-4": default.ratio >= gzip["ratio"],
        f"decode >= {AIM_DECODE_VS_GZIP:g}x h5py gzip-4": (
            default.decompress_mbps >= AIM_DECODE_VS_GZIP * gzip["decompress_mbps"]
        ),
        "decode > h5py lzf": default.decompress_mbps > lzf["decompress_mbps"],
    }
    return {"codecs": rows, "default_aims": aims, "pick_spec": pick.spec}


def group_sweep(name: str, data: Any, pick_spec: str) -> dict[str, Any]:
    """The default codec and the balanced pick at each row-group size, on the whole data."""
    out: dict[str, Any] = {}
    for mib in GROUP_SIZES_MIB:
        column = measure_codecs(
            {name: data},
            candidates=[pick_spec],
            repeats=REPEATS,
            row_group_bytes=mib * MiB,
            max_bytes=1 << 40,
        ).columns[name]
        out[f"{mib} MiB"] = {
            ("bale default" if r.is_default else r.spec): _codec_row(r)
            for r in column.results
            if r.is_default or r.spec == pick_spec
        }
    return out


# -- report -------------------------------------------------------------------------------------


def _speed(value: float) -> str:
    return "-" if math.isinf(value) else f"{value:,.0f}"


def comparison_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "| codec | ratio | compress MB/s | decompress MB/s |",
        "|---|---:|---:|---:|",
    ]
    for label, r in result["codecs"].items():
        lines.append(
            f"| {label} | {r['ratio']:.3f} | {_speed(r['compress_mbps'])} | "
            f"{_speed(r['decompress_mbps'])} |"
        )
    aims = ", ".join(
        f"{aim}: **{'PASS' if ok else 'MISS'}**" for aim, ok in result["default_aims"].items()
    )
    return [*lines, "", f"bale's default against the aims: {aims}.", ""]


def sweep_table(sweep: dict[str, Any]) -> list[str]:
    lines = ["| row group | codec | ratio | decompress MB/s |", "|---|---|---:|---:|"]
    for size, codecs in sweep.items():
        for label, r in codecs.items():
            lines.append(
                f"| {size} | {label} ({r['spec']}) | {r['ratio']:.3f} | "
                f"{_speed(r['decompress_mbps'])} |"
            )
    return [*lines, ""]


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    command = ".venv/bin/python -m bench.advisor_bench" + (" --quick" if results["quick"] else "")
    lines = [
        "## `bale codecs` on three kinds of data (`bench/advisor_bench.py`)",
        "",
        f"Date: {env['date']}. Machine: {env['cores']} CPUs ({env['cpu']}), kernel "
        f"{env['kernel']}, Python {env['python']}, bale {env['versions']['bale']} (git "
        f"{env['git']}), h5py {env['versions']['h5py']}. Data from `bench/photo_data.py` (real "
        "scikit-image photos); files written with bale's default codecs; the advisor measures "
        "each candidate on a sample of every column. Speeds are MB/s of raw data per core (one "
        f"thread's CPU time), median of {REPEATS}; '-': no codec work. h5py runs its filters "
        "on the same rows in ~1 MiB chunks in an in-memory file with the chunk cache off "
        "(JPEG bytes concatenated: HDF5 filters do not compress variable-length data). "
        f"Reproduce: `{command}` ({results['total_seconds']:.0f} s).",
        "",
    ]
    for title, k in results["kinds"].items():
        lines += [f"### {title}", "", f"`bale codecs {k['file']}`", "", "```"]
        lines += [k["bale_codecs"].rstrip(), "```", ""]
        for column, c in k["columns"].items():
            lines += [f"Column `{column}` against h5py's filters (1 MiB row groups / chunks):", ""]
            lines += comparison_table(c)
            lines += [f"Column `{column}` by row-group size (whole data):", ""]
            lines += sweep_table(c["group_sweep"])
    return "\n".join(lines) + "\n"


# Columns too small for the h5py comparison to say anything (labels: a few KiB).
MIN_COMPARED_BYTES = MiB


def _nbytes(data: Any) -> int:
    return sum(len(r) for r in data) if isinstance(data, list) else int(data.nbytes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller data, under a minute")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    results: dict[str, Any] = {
        "quick": args.quick,
        "environment": describe(packages=("h5py", "numpy", "blosc2", "zstandard")),
        "kinds": {},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        for title, (file, columns) in kinds(args.quick).items():
            path = f"{tmp}/{file}"
            bale.write(path, columns)
            kind: dict[str, Any] = {
                "file": file,
                "bale_codecs": bale_codecs_output(path).replace(tmp + "/", ""),
                "columns": {},
            }
            for name, data in columns.items():
                if _nbytes(data) < MIN_COMPARED_BYTES:
                    continue
                compared = against_h5py(name, data)
                compared["group_sweep"] = group_sweep(name, data, compared["pick_spec"])
                kind["columns"][name] = compared
            results["kinds"][title] = kind
            print(f"{title}: done after {time.perf_counter() - t0:.0f} s", flush=True)
    results["total_seconds"] = time.perf_counter() - t0
    report = markdown(results)
    write_report("advisor_bench", results, report, quick=args.quick)
    print(report)


if __name__ == "__main__":
    main()
