"""The `bale bench` command: time a Loader over a file, warm and cold, and say whether training would wait for it."""

from __future__ import annotations

import argparse
import json
import math

from bale.cli._command import (
    EXIT_OK,
    Subcommands,
    add_columns_option,
    add_json_flag,
    add_storage_option,
    reading,
    storage_options,
)
from bale.errors import BaleError
from bale.io.remote_url import is_remote
from bale.measure.machine import describe_machine
from bale.measure.throughput import LoaderRun, ThroughputReport, measure_loader, parse_transform


def add_bench_command(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "bench",
        help="time bale.Loader over a file (samples/s, MB/s, warm and cold)",
        description="Iterate bale.Loader over FILE as a training loop would and report "
        "samples/s, batches/s, MB/s and the time to the first batch. Each run stops after "
        "--epochs epochs or --seconds seconds, whichever comes first. With --cold, a first run "
        "starts after the files are dropped from the page cache. With --step-rate or --step-ms, "
        "says whether a model training at that rate would wait for its input: for the samples "
        "it delivers, and for the CPU it needs per batch beside the cores the training step "
        "itself keeps busy (--step-cores; without it the verdict says it assumes a step that "
        "leaves the cores free). FILEs may be "
        "URLs (s3://, gs://, az://, https://, ...): see --storage-option. More in the bale repository's docs/CODECS.md.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="one or more .bale files")
    add_storage_option(parser)
    parser.add_argument("--batch-size", type=int, default=256, help="default 256")
    parser.add_argument("--threads", type=int, default=4, help="loader threads (default 4)")
    parser.add_argument("--shuffle", choices=("chunks", "full", "none"), default="chunks")
    parser.add_argument(
        "--transform",
        default="none",
        help="none (default); decode-jpeg: decode images at full size; decode-jpeg-SIZE: "
        "random crop resized to SIZE x SIZE with flips (e.g. decode-jpeg-224)",
    )
    parser.add_argument(
        "--image-column", help="the column --transform decodes (default: the first bytes column)"
    )
    add_columns_option(parser, "load only these columns")
    parser.add_argument(
        "--epochs", type=int, default=1, help="at most this many epochs (default 1)"
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="at most this long per run (default 5)"
    )
    parser.add_argument(
        "--cold", action="store_true", help="also time a run after evicting the page cache"
    )
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument(
        "--step-rate", type=float, metavar="STEPS/S", help="training steps per second"
    )
    rate.add_argument("--step-ms", type=float, metavar="MS", help="milliseconds per training step")
    parser.add_argument(
        "--step-cores",
        type=float,
        metavar="N",
        help="cores the training step itself keeps busy: all of them for a model trained on "
        "the CPU, about 1 for a GPU step's Python thread (the loader gets the rest)",
    )
    add_json_flag(parser)
    parser.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    problems = []
    if args.batch_size < 1:
        problems.append(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads < 1:
        problems.append(f"--threads must be >= 1, got {args.threads}")
    if args.epochs < 1:
        problems.append(f"--epochs must be >= 1, got {args.epochs}")
    if not args.seconds > 0:
        problems.append(f"--seconds must be > 0, got {args.seconds}")
    step_rate = args.step_rate
    if args.step_ms is not None:
        step_rate = 1000.0 / args.step_ms if args.step_ms > 0 else -1.0
    if step_rate is not None and not (step_rate > 0 and math.isfinite(step_rate)):
        problems.append("--step-rate and --step-ms must be positive")
    if args.step_cores is not None:
        if step_rate is None:
            problems.append("--step-cores needs --step-rate or --step-ms")
        elif not (args.step_cores >= 0 and math.isfinite(args.step_cores)):
            problems.append(f"--step-cores must be >= 0, got {args.step_cores}")
    try:
        parse_transform(args.transform, "image")
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise BaleError("; ".join(problems))
    options = storage_options(args, *args.files)
    with reading(*args.files):
        report = measure_loader(
            args.files,
            batch_size=args.batch_size,
            threads=args.threads,
            shuffle=args.shuffle,
            transform=args.transform,
            image_column=args.image_column,
            columns=args.columns,
            max_seconds=args.seconds,
            epochs=args.epochs,
            cold=args.cold,
            storage_options=options,
        )
    verdict = report.verdict(step_rate, args.step_cores) if step_rate is not None else None
    machine = describe_machine()
    if args.json:
        out = report.to_dict()
        out["machine"] = machine
        out["verdict"] = verdict.text if verdict else None
        out["input_bound_warm"] = verdict.input_bound_warm if verdict else None
        out["input_bound_cold"] = verdict.input_bound_cold if verdict else None
        out["input_bound_cpu"] = verdict.input_bound_cpu if verdict else None
        out["loader_cores_needed"] = verdict.loader_cores_needed if verdict else None
        out["cores"] = verdict.cores if verdict else None
        out["step_cores"] = verdict.step_cores if verdict else None
        print(json.dumps(out, indent=2))
        return EXIT_OK
    print(_text(report, machine))
    if verdict is not None:
        print(f"Verdict: {verdict.text}")
    return EXIT_OK


def _text(report: ThroughputReport, machine: str) -> str:
    names = ", ".join(report.paths)
    lines = [
        f"bale bench {names}: {report.rows:,} rows, {_mib(report.file_bytes)} on disk, "
        f"{_mib(report.raw_bytes)} decoded",
        f"Loader: batch {report.batch_size}, {report.threads} threads, shuffle "
        f"{report.shuffle}, transform {report.transform}; each run stops after "
        f"{report.epochs} epoch{'s' if report.epochs > 1 else ''} or {report.max_seconds:g} s",
        f"Machine: {machine}",
        "",
        f"{'run':<5} {'samples/s':>11} {'batches/s':>10} {'MB/s raw':>9} {'MB/s stored':>12} "
        f"{'first batch':>12} {'rows read':>11} {'time':>7}",
    ]
    runs = [r for r in (report.cold, report.warm) if r is not None]
    for run in runs:
        epochs = f" ({run.full_epochs} epoch{'s' if run.full_epochs != 1 else ''})"
        lines.append(
            f"{run.phase:<5} {run.samples_per_s:>11,.0f} {run.batches_per_s:>10,.1f} "
            f"{run.raw_mbps:>9,.1f} {run.stored_mbps:>12,.1f} "
            f"{run.time_to_first_batch_s * 1000:>9,.0f} ms {run.samples:>11,}{epochs} "
            f"{run.seconds:>5.2f} s"
        )
    lines.append(
        "MB/s raw: decoded bytes of the rows read, before any transform; MB/s stored: the same "
        "rows as stored in the file. Rates include the time to the first batch."
    )
    for run in runs:
        if run.cpu_s_per_batch is not None and run.cores_busy is not None:
            lines.append(
                f"Loader CPU ({run.phase}): {run.cpu_s_per_batch * 1000:,.2f} ms of CPU per "
                f"batch, {run.cores_busy:,.2f} cores busy on average (reading, decoding and "
                "the transform, with every core to itself)"
            )
    remote = any(is_remote(p) for p in report.paths)
    if report.cold is not None:
        lines.append(_cold_note(report.cold, report.file_bytes, remote))
    resident = report.warm.resident_before
    if resident is not None and resident < 0.9 * report.file_bytes:
        lines.append(
            f"Warm run: only {_mib(resident)} of {_mib(report.file_bytes)} was in the page cache "
            "at its start (the files are larger than half the free memory), so it was partly cold."
        )
    return "\n".join(lines)


def _cold_note(run: LoaderRun, file_bytes: int, remote: bool) -> str:
    if remote:
        return "Cold run: URLs have no page cache (nor a local disk cache yet): both runs fetched them."
    if run.resident_before is None:
        state = "the page cache could not be inspected on this system (no mincore)"
    elif run.resident_before <= 0.05 * file_bytes:
        state = f"after eviction the page cache held {_mib(run.resident_before)} of the files"
    else:
        state = (
            f"eviction did NOT take effect: {_mib(run.resident_before)} of "
            f"{_mib(file_bytes)} stayed in the page cache (tmpfs, or mapped by another "
            "process), so the cold run was partly warm"
        )
    read = (
        f"; the cold run read {run.device_read_bytes / 1e6:,.1f} MB from storage"
        if run.device_read_bytes is not None
        else ""
    )
    return f"Cold run: {state}{read}."


def _mib(n: float) -> str:
    if n < 2**20:
        return f"{n / 1024:,.1f} KiB"
    return f"{n / 2**20:,.1f} MiB" if n < 2**30 else f"{n / 2**30:,.2f} GiB"
