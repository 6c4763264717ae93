"""Frame size for random access: what cutting each block into frames of ``segment_bytes`` costs
(file size, sequential decode) and what it saves (the decode a random row needs), for the
suite's three kinds of data written with bale's default codecs and row-group size. The numbers
behind the default segment size (docs/DECISIONS.md, "Frame size for random access").

A block (one column of one row group, ~1 MiB raw) is stored as one codec frame when its raw size
is at most the file's ``segment_bytes``; above that, as independently decodable frames of
``segment_bytes`` raw bytes each (docs/FORMAT.md, "Blocks"). Today's default is 1 GiB: every
block is one frame, and a random row costs a whole block's decode. For each kind
(bench/suite/data.py's generators, class-sorted, cached in bench/out/frame_choice_data/), each
written with ``segment_bytes`` in 16 KiB .. 256 KiB and 1 GiB (the baseline), this measures:

1. the stored file size, against the 1 GiB file;
2. sequential decode, warm (file in the page cache), one thread, block cache off: every row
   group's ``x`` block through ``Dataset.read_row_group`` (checksums verified, as by default);
   MB/s of raw data (1 MB = 10^6 bytes) per second of the thread's CPU time, and per wall second;
3. the decode a random row needs, on a sample of ``x`` blocks with one random row each (the same
   rows at every size): the stored payload is split by the framing rule (u64 LE frame length,
   then the frame) and timed with the block's own codec: one frame (the one holding the row's
   first byte), the frames the row needs (for bytes columns also the frame holding the row
   lengths at the block's start), the whole block (``framing.decode_block``; at 1 GiB this is
   today's random-row cost), and all of the block's frames decoded without being assembled into
   one buffer (what decoding costs apart from that copy). p50 over the sample, in microseconds.

Every measurement is repeated, round-robin over the sizes (rotated each round) so that noise
from the shared machine falls on all sizes alike; figures are the median (min-max) of the
repeats, and each sequential pass is compared with the 1 GiB file's pass of the same round.

    .venv/bin/python -m bench.frame_choice           # about 2 minutes on 2 cores
    .venv/bin/python -m bench.frame_choice --quick   # smaller data, 3 repeats, about 10 seconds

Writes bench/results/frame_choice.{json,md}.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import bale
from bale.codecs import Codec, codec_from_config
from bale.codecs.framing import decode_block
from bale.format.constants import DEFAULT_SEGMENT_BYTES
from bale.format.frames import frame_spans
from bale.format.schema import Array
from bench.machine import ForeignLoad, describe, machine_section, read_through, src_digest
from bench.results import OUT, write_report
from bench.stats import Verdict, fmt_range, summary
from bench.suite import data

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
MB = 1e6
SEGMENTS = (16 * KiB, 32 * KiB, 64 * KiB, 128 * KiB, 256 * KiB, GiB)
BASELINE = GiB  # today's default: every block is one frame
AIM_SIZE = 1.03  # stored size at most 3 % above the baseline's
AIM_SEQUENTIAL = 0.95  # sequential decode at least 95 % of the baseline's
# Rows per kind (full, quick): about 55, 74 and 65 MB of x in a full run.
ROWS = {"jpeg": (1200, 200), "uint8": (6000, 1000), "act": (2000, 400)}
SAMPLED_BLOCKS = (64, 24)
SEQ_BYTES = (200e6, 50e6)  # raw bytes decoded per timed sequential sample (full, quick)
DATA_DIR = OUT / "frame_choice_data"
_LENGTH_BYTES = 8  # a frame's stored length: u64 LE


def size_label(segment: int) -> str:
    return f"{segment // GiB} GiB" if segment >= GiB else f"{segment // KiB} KiB"


# -- frames -----------------------------------------------------------------------------------


def split_frames(payload: bytes, raw_size: int, segment: int) -> list[tuple[int, int, memoryview]]:
    """(raw start, raw size, stored frame) of each frame of a block, by the framing rule."""
    view = memoryview(payload)
    if raw_size <= segment:
        return [(0, raw_size, view)]
    spans = frame_spans(view, -(-raw_size // segment))
    return [
        (k * segment, min(segment, raw_size - k * segment), view[start : start + length])
        for k, (start, length) in enumerate(spans)
    ]


def frames_touching(
    frames: list[tuple[int, int, memoryview]], ranges: list[tuple[int, int]]
) -> list[int]:
    """Indexes of the frames that overlap any of the raw byte ranges [start, stop)."""
    return [
        i
        for i, (start, size, _) in enumerate(frames)
        if any(lo < start + size and start < hi for lo, hi in ranges)
    ]


class SampledBlock:
    """One x block and one random row in it: the raw byte ranges that row needs."""

    def __init__(self, group: int, ranges: list[tuple[int, int]]) -> None:
        self.group = group
        self.ranges = ranges  # the row's bytes, and for bytes columns the row lengths too


def sample_blocks(path: Path, count: int, seed: int) -> list[SampledBlock]:
    """``count`` random x blocks of the baseline file, each with a random row's byte ranges."""
    rng = np.random.default_rng(seed)
    with bale.open(path, cache_bytes=0) as ds:
        column = ds.schema["x"]
        groups = rng.choice(ds.num_row_groups, min(count, ds.num_row_groups), replace=False)
        out = []
        for group in sorted(int(g) for g in groups):
            rows = ds.row_group_sizes[group]
            row = int(rng.integers(rows))
            if not isinstance(column.type, Array):  # bytes: row lengths, then the rows
                lengths = np.array([len(v) for v in ds.read_row_group(group, ["x"])["x"]])
                offset = _LENGTH_BYTES * rows + int(lengths[:row].sum())
                ranges = [(0, _LENGTH_BYTES * rows), (offset, offset + int(lengths[row]))]
            else:
                size = column.type.row_nbytes
                ranges = [(row * size, (row + 1) * size)]
            out.append(SampledBlock(group, ranges))
    return out


class StoredBlocks:
    """The sampled x blocks of one file as stored: payload, raw size and codec of each."""

    def __init__(self, path: Path, sample: list[SampledBlock]) -> None:
        with bale.open(path) as ds:
            index = ds.index
            self.segment = int(index.segment_bytes)
            position = ds.schema.index("x")
            records = [index.blocks[s.group, position] for s in sample]
            self.codecs: list[Codec] = [
                codec_from_config(index.codecs[int(r["codec"])]) for r in records
            ]
        with open(path, "rb") as f:
            fd = f.fileno()
            self.payloads = [os.pread(fd, int(r["stored_size"]), int(r["offset"])) for r in records]
        self.raw_sizes = [int(r["raw_size"]) for r in records]
        self.frames = [
            split_frames(p, n, self.segment)
            for p, n in zip(self.payloads, self.raw_sizes, strict=True)
        ]
        self.needed = [
            frames_touching(f, s.ranges) for f, s in zip(self.frames, sample, strict=True)
        ]
        # The frame holding the row's first byte (for bytes columns, the last range is the row).
        self.first = [
            frames_touching(f, [(s.ranges[-1][0], s.ranges[-1][0] + 1)])[0]
            for f, s in zip(self.frames, sample, strict=True)
        ]

    def check(self) -> None:
        """Each frame decodes to its slice of the whole block (outside any timing)."""
        for codec, payload, raw_size, frames in zip(
            self.codecs, self.payloads, self.raw_sizes, self.frames, strict=True
        ):
            whole = memoryview(decode_block(codec, memoryview(payload), raw_size, self.segment))
            for start, size, frame in frames:
                if bytes(codec.decode(frame, size)) != bytes(whole[start : start + size]):
                    raise RuntimeError("a frame did not decode to its slice of the block")

    def time_decodes(self) -> dict[str, float]:
        """p50 over the sampled blocks, in microseconds: the frame holding the row's first
        byte, every frame the row needs, the whole block (``decode_block``: frames decoded and
        copied into one buffer), and every frame decoded on its own without that assembly.

        Each kind of decode runs over all sampled blocks in turn, as a stream of random reads
        would, on fresh copies of the stored bytes made untimed just before (as a reader decodes
        what it has just read), so no timing inherits caches or heap warmed by another kind."""
        blocks = list(zip(self.codecs, self.payloads, self.raw_sizes, self.frames, strict=True))
        timings: dict[str, list[float]] = {}
        for key, pick in (
            ("frame_us", lambda b: [self.first[b]]),
            ("row_us", lambda b: self.needed[b]),
            ("frames_only_us", lambda b: range(len(self.frames[b]))),
        ):
            timings[key] = []
            for b, (codec, _, _, frames) in enumerate(blocks):
                copies = [(memoryview(bytes(frames[i][2])), frames[i][1]) for i in pick(b)]
                t0 = time.perf_counter_ns()
                for frame, size in copies:
                    codec.decode(frame, size)
                timings[key].append((time.perf_counter_ns() - t0) / 1e3)
        timings["block_us"] = []
        for codec, payload, raw_size, _ in blocks:
            copy = memoryview(bytes(payload))
            t0 = time.perf_counter_ns()
            decode_block(codec, copy, raw_size, self.segment)
            timings["block_us"].append((time.perf_counter_ns() - t0) / 1e3)
        return {key: statistics.median(values) for key, values in timings.items()}

    def frames_per_row(self) -> float:
        return statistics.mean(len(n) for n in self.needed)

    def frames_per_block(self) -> float:
        return statistics.mean(len(f) for f in self.frames)


# -- files and sequential decode ----------------------------------------------------------------


def write_files(tmp: Path, kind: str, source: data.Source) -> dict[int, dict[str, Any]]:
    """The kind written once per segment size, default codecs and row-group size."""
    files = {}
    for segment in SEGMENTS:
        path = tmp / f"{kind}_{segment}.bale"
        t0 = time.perf_counter()
        bale.write(path, {"x": source.x, "label": source.label}, segment_bytes=segment)
        write_s = time.perf_counter() - t0
        with bale.open(path) as ds:
            blocks = ds.index.blocks[:, ds.schema.index("x")]
            codecs = sorted({str(ds.index.codecs[int(c)]) for c in blocks["codec"]})
            files[segment] = {
                "path": path,
                "file_bytes": path.stat().st_size,
                "x_stored_bytes": int(blocks["stored_size"].sum()),
                "x_raw_bytes": int(blocks["raw_size"].sum()),
                "row_groups": ds.num_row_groups,
                "x_block_raw_mean": float(blocks["raw_size"].mean()),
                "x_codec": ", ".join(codecs),
                # Format 1.1's frame index (16 bytes per frame), when this bale writes one.
                "frame_index_bytes": int(ds.index.extra.get("frame_index", {}).get("length", 0)),
                "write_s_once": write_s,
            }
    return files


def sequential_pass(path: Path, passes: int) -> tuple[float, float]:
    """(thread CPU seconds, wall seconds) per pass, to read and decode every x block in order,
    averaged over ``passes`` passes back to back (one pass of a small file is too short to time
    on a shared machine)."""
    with bale.open(path, cache_bytes=0) as ds:
        c0, w0 = time.thread_time(), time.perf_counter()
        for _ in range(passes):
            for group in range(ds.num_row_groups):
                ds.read_row_group(group, ["x"])
        return (time.thread_time() - c0) / passes, (time.perf_counter() - w0) / passes


# -- the run ------------------------------------------------------------------------------------


def measure(tmp: Path, quick: bool, repeats: int) -> dict[str, Any]:
    kinds: dict[str, Any] = {}
    prepared: dict[str, tuple[dict[int, dict[str, Any]], dict[int, StoredBlocks]]] = {}
    for kind in data.KINDS:
        t0 = time.perf_counter()
        spec = data.prepare(DATA_DIR, kind, ROWS[kind][quick])
        source = data.load(DATA_DIR, kind)
        files = write_files(tmp, kind, source)
        del source
        sample = sample_blocks(files[BASELINE]["path"], SAMPLED_BLOCKS[quick], seed=1)
        stored = {s: StoredBlocks(files[s]["path"], sample) for s in SEGMENTS}
        for blocks in stored.values():
            blocks.check()
        prepared[kind] = (files, stored)
        kinds[kind] = {"description": data.DESCRIPTIONS[kind], "rows": spec.rows}
        print(
            f"{kind}: {spec.rows:,} rows written at {len(SEGMENTS)} sizes "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    read_through([f["path"] for files, _ in prepared.values() for f in files.values()])
    seq: dict[str, dict[int, list[tuple[float, float]]]] = {
        k: {s: [] for s in SEGMENTS} for k in data.KINDS
    }
    decodes: dict[str, dict[int, list[dict[str, float]]]] = {
        k: {s: [] for s in SEGMENTS} for k in data.KINDS
    }
    for files, _ in prepared.values():  # one untimed pass: warm caches, imports
        for segment in SEGMENTS:
            sequential_pass(files[segment]["path"], 1)
    load = ForeignLoad()
    for repeat in range(repeats):
        order = SEGMENTS[repeat % len(SEGMENTS) :] + SEGMENTS[: repeat % len(SEGMENTS)]
        for kind, (files, stored) in prepared.items():
            # A kind's sequential passes back to back (well under a second): a burst of load
            # from other processes hits its sizes alike, and per-round ratios cancel drifts.
            passes = math.ceil(SEQ_BYTES[quick] / files[BASELINE]["x_raw_bytes"])
            for segment in order:
                seq[kind][segment].append(sequential_pass(files[segment]["path"], passes))
            for segment in order:
                decodes[kind][segment].append(stored[segment].time_decodes())
        print(f"round {repeat + 1}/{repeats} done", flush=True)
    foreign = load.result()
    for kind, (files, stored) in prepared.items():
        sizes: dict[str, Any] = {}
        base_cpu = [c for c, _ in seq[kind][BASELINE]]
        for segment in SEGMENTS:
            f = files[segment]
            cpu = [c for c, _ in seq[kind][segment]]
            wall = [w for _, w in seq[kind][segment]]
            rounds = decodes[kind][segment]
            # What decode_block spends beyond decoding the frames (zero-filling the output,
            # copying each frame in): per block, median over the rounds, times the blocks.
            assembly = 0.0
            if segment != BASELINE:
                per_block = statistics.median(d["block_us"] - d["frames_only_us"] for d in rounds)
                assembly = f["row_groups"] * max(0.0, per_block) / 1e6
            sizes[size_label(segment)] = {
                "segment_bytes": segment,
                **{k: v for k, v in f.items() if k != "path"},
                "frames_per_block": stored[segment].frames_per_block(),
                "frames_per_row": stored[segment].frames_per_row(),
                "seq_cpu_mbps": summary([f["x_raw_bytes"] / MB / c for c in cpu]),
                "seq_wall_mbps": summary([f["x_raw_bytes"] / MB / w for w in wall]),
                # Throughput against the baseline's pass of the same round (same raw bytes).
                "seq_vs_base": summary([b / c for b, c in zip(base_cpu, cpu, strict=True)]),
                "seq_no_assembly_vs_base": summary(
                    [b / (c - assembly) for b, c in zip(base_cpu, cpu, strict=True)]
                ),
                **{
                    key: summary([d[key] for d in rounds])
                    for key in ("frame_us", "row_us", "block_us", "frames_only_us")
                },
            }
        base = sizes[size_label(BASELINE)]
        for entry in sizes.values():
            entry["size_vs_base"] = entry["file_bytes"] / base["file_bytes"]
            entry["row_vs_base_block"] = entry["row_us"]["median"] / base["block_us"]["median"]
        kinds[kind]["sizes"] = sizes
    return {"kinds": kinds, "foreign_load": foreign}


def qualifies(entry: dict[str, Any], estimated: bool = False) -> bool:
    sequential = entry["seq_no_assembly_vs_base" if estimated else "seq_vs_base"]["median"]
    return bool(entry["size_vs_base"] <= AIM_SIZE and sequential >= AIM_SEQUENTIAL)


def choose(kinds: dict[str, Any], *, estimated: bool = False) -> tuple[str | None, list[Verdict]]:
    """The smallest segment size within both aims for every kind, and the verdict per size;
    with ``estimated``, judged on the sequential estimate without the assembly copy."""
    verdicts = []
    for segment in SEGMENTS[:-1]:
        label = size_label(segment)
        misses = [kind for kind, k in kinds.items() if not qualifies(k["sizes"][label], estimated)]
        detail = "all kinds within both aims" if not misses else "misses: " + ", ".join(misses)
        verdicts.append(Verdict(label, not misses, detail))
    chosen = next((v.aim for v in verdicts if v.passed), None)
    return chosen, verdicts


# -- report -------------------------------------------------------------------------------------


def _pct(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+.1f} %"


def _pct_range(s: dict[str, float]) -> str:
    return f"{_pct(s['median'])} ({_pct(s['min'])} to {_pct(s['max'])})"


def _share(ratio: float, no_decode: bool) -> str:
    # Codec none returns a single-frame block as a view of the bytes read: nothing to compare.
    return "- (no decode)" if no_decode else f"{ratio * 100:.1f} %"


def kind_tables(k: dict[str, Any]) -> list[str]:
    """Size and sequential decode; then the decode a random row needs."""
    lines = [
        "| segment | frames/block | file MB | of which frame index KB | size vs 1 GiB "
        "| seq decode MB/s (CPU) | vs 1 GiB | seq decode MB/s (wall) | aims "
        "| est. vs 1 GiB without assembly copy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for label, e in k["sizes"].items():
        aims = (
            "baseline" if e["segment_bytes"] == BASELINE else ("PASS" if qualifies(e) else "MISS")
        )
        lines.append(
            f"| {label} | {e['frames_per_block']:.1f} | {e['file_bytes'] / MB:.2f} | "
            f"{e['frame_index_bytes'] / 1e3:.1f} | {_pct(e['size_vs_base'])} | {fmt_range(e['seq_cpu_mbps'])} | "
            f"{_pct_range(e['seq_vs_base'])} | {fmt_range(e['seq_wall_mbps'])} | {aims} | "
            f"{_pct_range(e['seq_no_assembly_vs_base'])} |"
        )
    lines += [
        "",
        "| segment | one frame µs | frames a row needs | one row µs | one row vs 1 GiB block "
        "| whole block µs | all frames, no assembly µs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    no_decode = k["sizes"][size_label(BASELINE)]["block_us"]["median"] < 1.0
    for label, e in k["sizes"].items():
        lines.append(
            f"| {label} | {fmt_range(e['frame_us'], 1)} | {e['frames_per_row']:.1f} | "
            f"{fmt_range(e['row_us'], 1)} | {_share(e['row_vs_base_block'], no_decode)} | "
            f"{fmt_range(e['block_us'])} | {fmt_range(e['frames_only_us'])} |"
        )
    return lines


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    command = ".venv/bin/python -m bench.frame_choice" + (" --quick" if results["quick"] else "")
    foreign = results["foreign_load"]
    chosen = results["chosen"]
    lines = [
        "## Frame size for random access (`bench/frame_choice.py`)",
        "",
        f"Date: {env['date']}. Each kind written with bale's default codecs and row-group size at "
        "every `segment_bytes`; 1 GiB is today's default (one frame per block). Sequential "
        "decode: every `x` block in order through `Dataset.read_row_group`, warm page cache, one "
        "thread, block cache off, checksums verified; MB/s of raw data per second of the "
        f"thread's CPU time (wall-clock MB/s beside it), each sample at least "
        f"{SEQ_BYTES[results['quick']] / MB:.0f} MB (whole passes over the file, back to back); "
        "'vs 1 GiB' compares each pass with "
        "the 1 GiB file's pass of the same round (the passes of a kind run back to back). File "
        "sizes include the frame index of format 1.1 (16 bytes per frame) when the bale measured "
        "writes one. Random-row decode: "
        f"{results['sampled_blocks']} sampled `x` blocks, one random row each, the same at every "
        "size; p50 over the sample of one frame's decode (the frame holding the row's first "
        "byte), of the frames the row needs (bytes columns also need the row lengths at the "
        "block's start), of the whole block (`framing.decode_block`: frames decoded, then "
        "copied into one buffer) and of all its frames decoded without that assembly, each "
        "on fresh copies of the stored bytes; codec time only, no read or checksum. The 'est. "
        "without assembly copy' column takes that difference (median over the rounds), times "
        "the number of blocks, from each round's pass: an estimate for a reader that decodes "
        "frames straight into one buffer. Median (min-max) "
        f"of {results['repeats']} rounds, round-robin over the sizes. Aims: size at most "
        f"{_pct(AIM_SIZE)} and sequential decode at least {_pct(AIM_SEQUENTIAL)} against 1 GiB. "
        f"Other processes used {foreign['foreign_cores']:.2f} cores on average during the "
        f"timed rounds. Reproduce: `{command}` ({results['total_seconds']:.0f} s).",
        "",
    ]
    for kind, k in results["kinds"].items():
        codec = k["sizes"][size_label(BASELINE)]["x_codec"]
        raw = k["sizes"][size_label(BASELINE)]
        lines += [
            f"### {kind}: {k['description']}",
            "",
            f"{k['rows']:,} rows, {raw['x_raw_bytes'] / MB:.1f} MB raw in x, "
            f"{raw['row_groups']} row groups (x blocks {raw['x_block_raw_mean'] / KiB:.0f} KiB "
            f"raw on average); default codec of x: `{codec}`.",
            "",
            *kind_tables(k),
            "",
        ]
    verdicts = ", ".join(
        f"{v['aim']}: **{v['word']}** ({v['detail']})" for v in results["verdicts"]
    )
    lines += [
        "### Choice",
        "",
        f"Per size, against both aims for all three kinds: {verdicts}.",
        "",
        (
            f"Smallest size within both aims for every kind: **{chosen}**."
            if chosen
            else "No size below 1 GiB is within both aims for every kind."
        ),
        "",
        "What-if, on the estimate without the assembly copy (not measured end to end): "
        + ", ".join(
            f"{v['aim']}: {v['word']} ({v['detail']})"
            for v in results["verdicts_without_assembly_estimate"]
        )
        + "; smallest size within both aims: "
        + f"{results['chosen_without_assembly_estimate'] or 'none'}.",
        "",
    ]
    changed = results["src_digest_end"] != env["src_digest"]
    lines += machine_section(
        env,
        env["src_digest"],
        note=(
            f"bale's source changed on disk during the run (digest {results['src_digest_end']} "
            "at the end): the figures are those of the source imported at the start"
            if changed
            else "bale's source did not change during the run"
        ),
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller data, 3 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default 11, quick 3)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 11)
    t0 = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "quick": args.quick,
        "repeats": repeats,
        "sampled_blocks": SAMPLED_BLOCKS[args.quick],
        "default_segment_bytes_now": DEFAULT_SEGMENT_BYTES,
        "environment": describe(OUT, packages=("numpy", "blosc2", "zstandard")),
    }
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        results.update(measure(Path(tmp), args.quick, repeats))
    chosen, verdicts = choose(results["kinds"])
    results["chosen"] = chosen
    results["verdicts"] = [{**v.__dict__, "word": v.word} for v in verdicts]
    chosen, verdicts = choose(results["kinds"], estimated=True)
    results["chosen_without_assembly_estimate"] = chosen
    results["verdicts_without_assembly_estimate"] = [
        {**v.__dict__, "word": v.word} for v in verdicts
    ]
    results["src_digest_end"] = src_digest()
    results["total_seconds"] = time.perf_counter() - t0
    report = markdown(results)
    write_report("frame_choice", results, report, quick=args.quick)
    print(report)


if __name__ == "__main__":
    main()
