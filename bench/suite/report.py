"""The suite's report: tables (markdown) and plots (PNG) built from bench/results/suite*.json only.

Every number shown is computed here from the JSON that bench/suite/run.py wrote: medians over
the repeated runs with min-max, each bale figure also as a fraction of the machine limit it is
bounded by, and a list of every figure where another tool beat bale. A run of only the
random-access measures (``--measures row,gather64``) gets a report of its own: latency tables
against npy memmap and the aims of random access checked against the measured medians.

    .venv-bench/bin/python -m bench.suite.report bench/results/suite.json
    .venv-bench/bin/python -m bench.suite.report bench/results/suite_random.json
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench.results import OUT, ROOT

IMG = ROOT / "docs" / "img"
IMG_LINK = "../../docs/img"  # from bench/results/; bench/report.py rewrites it for docs/
# A quick run's plots stay out of docs/img, which holds the full run's.
QUICK_IMG = OUT / "suite" / "img"
QUICK_IMG_LINK = "../out/suite/img"
MB = 1e6
KIND_ORDER = ("jpeg", "uint8", "act")
Stat = dict[str, float]
#: the reference every random-access latency is divided by
REFERENCE = "npy"
RANDOM_MEASURES = ("row", "gather64")


# -- aggregation ------------------------------------------------------------------------------


def stat(values: Iterable[float]) -> Stat | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


class Results:
    """Index over the records: (tool, kind, measure, cache) -> successful records."""

    def __init__(self, results: dict[str, Any]) -> None:
        self.raw = results
        self.groups: dict[tuple[str, str, str, str | None], list[dict[str, Any]]] = defaultdict(
            list
        )
        self.failures: list[dict[str, Any]] = []
        for rec in results["records"]:
            if rec.get("ok"):
                key = (rec["tool"], rec["kind"], rec["measure"], rec.get("cache"))
                self.groups[key].append(rec)
            elif not rec.get("unsupported"):
                self.failures.append(rec)
        self.tools = [t for t, p in results["probes"].items() if p.get("ok")]
        self.kinds = [k for k in KIND_ORDER if k in results["specs"]]
        self.unsupported: dict[tuple[str, str, str], str] = {
            (r["tool"], r["kind"], r["measure"]): r["error"]
            for r in results["records"]
            if r.get("unsupported")
        }

    def get(
        self, tool: str, kind: str, measure: str, cache: str | None, field: str | Callable[..., Any]
    ) -> Stat | None:
        recs = self.groups.get((tool, kind, measure, cache), [])
        pick = field if callable(field) else (lambda r: r.get(field))
        return stat(pick(r) for r in recs)

    def name(self, tool: str) -> str:
        probe = self.raw["probes"][tool]
        return str(probe.get("name", tool)) + (" (in memory)" if probe.get("in_memory") else "")

    def flag(self, tool: str, key: str) -> bool:
        return bool(self.raw["probes"][tool].get(key))

    def store(self, tool: str, kind: str) -> dict[str, Any]:
        """What the adapter said about its written store (x's compression), from the last write."""
        recs = self.groups.get((tool, kind, "write", None), [])
        return dict(recs[-1].get("store") or {}) if recs else {}

    def compressed(self, tool: str, kind: str) -> bool:
        return bool(self.store(tool, kind).get("compression"))

    def bales(self) -> list[str]:
        """The bale layouts measured (``bale``, ``bale-ra``): the rest are peers."""
        return [t for t in self.tools if is_bale(t)]


def is_bale(tool: str) -> bool:
    return tool == "bale" or tool.startswith("bale-")


def fmt(s: Stat | None, scale: float = 1.0, digits: int = 0, unit: str = "") -> str:
    if s is None:
        return "-"
    med, lo, hi = s["median"] * scale, s["min"] * scale, s["max"] * scale
    if s.get("n") == 1 or f"{lo:.{digits}f}" == f"{hi:.{digits}f}":
        return f"{med:,.{digits}f}{unit}"
    return f"{med:,.{digits}f} ({lo:,.{digits}f}-{hi:,.{digits}f}){unit}"


def sig(x: float) -> int:
    """Digits after the point that keep about three significant figures."""
    if x == 0:
        return 0
    mag = abs(x)
    return 0 if mag >= 100 else 1 if mag >= 10 else 2 if mag >= 1 else 3


def fmt_auto(s: Stat | None, scale: float = 1.0, unit: str = "") -> str:
    return fmt(s, scale, sig(s["median"] * scale) if s else 0, unit)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


# -- sections ---------------------------------------------------------------------------------


def header(res: Results) -> list[str]:
    raw, env = res.raw, res.raw["environment"]
    title = (
        "Random access: single rows and gathers of 64, bale against the formats people use"
        if random_only(raw)
        else "Comparative suite: bale against the formats people use"
    )
    lines = [f"# {title}", ""]
    if raw["mode"] == "quick":
        lines += [
            "> **Quick mode** (`make bench-quick`): tiny data and one round, to prove the pipeline.",
            "> These numbers are not for quoting; `make bench` gives the full run.",
            "",
        ]
    lines += [
        f"Date: {env['date']}. Reproduce with `{raw['command']}`"
        + (
            f" (`python -m bench.suite.run{' --quick' if raw['mode'] == 'quick' else ''}`)"
            if raw["command"].startswith("make")
            else ""
        )
        + f"; this run took {raw['wall_s'] / 60:.1f} min.",
        "",
        f"- Machine: {env['cpu']}, {env['cores']} cores, {env['ram_gib']:.1f} GiB RAM, kernel "
        f"{env['kernel']}, Python {env['python']}, NumPy {env['numpy']}; load average at the "
        f"start {', '.join(f'{x:.2f}' for x in env['loadavg_start'])}.",
        *bale_source(res),
        *(
            [
                f"- Readahead of the benchmark disk: {env['read_ahead_kb']} KiB (a cold page fault "
                "or buffered read may bring in that much around the asked bytes)."
            ]
            if env.get("read_ahead_kb") is not None
            else []
        ),
        *([f"- Note: {raw['note']}"] if raw.get("note") else []),
        "- Disk of the benchmark directory (`df -T`):",
        "",
        "```",
        env["df"],
        "```",
        "",
    ]
    return lines


def bale_source(res: Results) -> list[str]:
    """Which bale was measured, and whether every measuring process imported the same source."""
    raw, env = res.raw, res.raw["environment"]
    digests = sorted({r["bale_digest"] for r in raw["records"] if r.get("bale_digest")})
    if raw.get("bale_commit"):
        where = f"commit {raw['bale_commit'][:10]} (`--bale-commit`: its src/bale, extracted)"
    elif env.get("git"):
        where = f"the checkout at {env['git']}"
    else:
        return []  # a run older than these records
    if not digests:
        return [f"- bale measured: {where}."]
    if len(digests) == 1:
        return [f"- bale measured: {where}; every measurement imported source digest {digests[0]}."]
    return [
        f"- bale measured: {where}; **the source changed during the run**: the measurements "
        f"imported {len(digests)} different sources ({', '.join(digests)})."
    ]


def method(res: Results) -> list[str]:
    cfg = res.raw["config"]
    sizes = ", ".join(
        f"{k}: {s['rows']:,} rows, {s['raw_bytes'] / MB:.0f} MB"
        for k, s in res.raw["specs"].items()
    )
    return [
        "## Method",
        "",
        f"Data (`bench/suite/data.py`, from real scikit-image photos, rows sorted by class): {sizes}. "
        "Each tool stores the rows with its usual API and defaults (bench/suite/adapters/) and "
        "must give back exactly those rows: a check reads every store once before timing.",
        "",
        (
            "Every measurement runs in a fresh Python process (`python -m bench.suite.measure`). "
            if res.raw["mode"] == "full"
            else "Quick mode: the read measures of one tool, kind and cache state share a Python "
            "process (`python -m bench.suite.measure`), each with a fresh adapter; writes and "
            "checks get their own. "
        )
        + "**warm**: every file of the store read once before; **cold**: `os.sync()` + "
        "`posix_fadvise(DONTNEED)` of every file, with the bytes still resident measured by "
        "`fincore` (see *Eviction check*). Samples/s count rows delivered to Python as NumPy "
        "arrays (JPEGs: bytes) over the epoch, excluding the open, which is shown on its own. "
        f"Batch size 64 (JPEG) / 256 (arrays). An epoch stops after {cfg['cap_s']:.0f} s "
        "(marked *capped*: the rate is over the part read). Tools built around a PyTorch "
        "DataLoader (folder, WebDataset, Streaming, LitData) and Grain use 2 worker processes; "
        "bale.Loader uses 2 threads; the others read in the calling thread, as their users do.",
        "",
        "*Random row*: latency of single-row reads at random indices (p50 / p99 of "
        f"{cfg['row_n']}), through each tool's own caches. *Decode* (JPEG only): the shuffled "
        "epoch with every image decoded by the same simplejpeg stage (2 threads, fed by a "
        "prefetch thread), so the container is what differs. *R* is the dispersion ratio of "
        "the shuffled epoch's batches (`bale.loader.quality`, as in docs/LOADER.md): 1.0 for "
        "an i.i.d. shuffle, about the batch size when each batch holds one class. *Gather of "
        "64*: batches of 64 distinct random rows read with each tool's batch read "
        "(`Adapter.get_rows`; bench/suite/README.md), p50 / p99 per batch, each cold batch in "
        "a freshly opened, evicted store.",
        "",
        f"Every figure is the median (min-max) of {cfg['repeats']} round(s), run round-robin "
        f"over the tools; writes were repeated {cfg['write_repeats']} time(s). 1 MB = 10^6 bytes.",
        "",
    ]


def tools_section(res: Results) -> list[str]:
    rows = []
    for tool, probe in res.raw["probes"].items():
        if probe.get("ok"):
            versions = ", ".join(f"{k} {v}" for k, v in probe["versions"].items())
            versions = versions or "standard library"
            rows.append([probe["name"], versions, probe["shuffle"], "measured"])
        else:
            reason = probe.get("install_error") or probe["error"]
            rows.append([tool, "-", "-", f"**skipped**: {reason}"])
    return ["## Tools", "", *table(["tool", "versions", "shuffled epoch", "status"], rows), ""]


def limits_section(res: Results) -> list[str]:
    lim = res.raw["limits"]
    rows = [
        ["cold sequential read (4 MiB reads)", fmt_auto(lim["cold_seq_mb_s"], unit=" MB/s")],
        [
            "cold sequential read, 4 parallel streams",
            fmt_auto(lim.get("cold_seq4_mb_s"), unit=" MB/s"),
        ],
        ["memcpy, 1 thread", fmt(lim["memcpy_gb_s"], digits=1, unit=" GB/s")],
    ]
    for key, v in lim["pread"].items():
        size, threads = key.split("/t")
        rows.append(
            [
                f"cold random pread {size}, {threads} thread(s)",
                f"{fmt(v['iops'], unit=' IOPS')}, {fmt_auto(v['mb_s'], unit=' MB/s')}",
            ]
        )
    if "jpeg_decode_images_s" in lim:
        rows.append(
            [
                "JPEG decode (simplejpeg), 1 core",
                f"{fmt(lim['jpeg_decode_images_s'], unit=' images/s')}, "
                f"{fmt(lim['jpeg_decode_mb_s'], unit=' MB/s decoded')}",
            ]
        )
    for kind, codecs in lim["decompress_mb_s"].items():
        for name, v in codecs.items():
            rows.append(
                [
                    f"decompress {name}, {kind}, 1 core",
                    fmt_auto(v["mb_s"], unit=" MB/s") + f" (ratio {v['ratio']:.2f})",
                ]
            )
    return [
        "## What the machine allows",
        "",
        "Measured in the same run by `bench/suite/limits.py` (cold figures after eviction, "
        "random reads with readahead off).",
        "",
        *table(["limit", "value"], rows),
        "",
    ]


def write_section(res: Results, kind: str) -> list[str]:
    spec = res.raw["specs"][kind]
    rows = []
    for tool in res.tools:

        def w(field: str | Callable[..., Any], tool: str = tool) -> Stat | None:
            return res.get(tool, kind, "write", None, field)

        if w("seconds") is None:
            continue
        rows.append(
            [
                res.name(tool),
                fmt_auto(w("seconds"), unit=" s"),
                fmt_auto(w(lambda r: spec["raw_bytes"] / r["seconds"] / MB)),
                fmt(w("bytes"), 1 / MB, 1),
                fmt(w(lambda r: r["bytes"] / spec["raw_bytes"]), digits=3),
                fmt(w("files")),
                fmt(w("peak_rss_over_source"), 1 / MB, 0),
            ]
        )
    head = ["tool", "write", "MB/s (raw)", "on disk MB", "size / raw", "files", "peak RSS MB*"]
    return [
        "#### Write",
        "",
        *table(head, rows),
        "",
        "*Peak RSS while writing, above the process's RSS with the source rows loaded.",
        "",
    ]


def read_section(res: Results, kind: str) -> list[str]:
    rows = []
    for tool in res.tools:
        if res.get(tool, kind, "seq", "warm", "rows_per_s") is None and not any(
            res.get(tool, kind, m, c, "ok") for m in ("shuf", "row") for c in ("warm", "cold")
        ):
            continue
        open_ms = fmt_auto(res.get(tool, kind, "seq", "cold", "open_s"), 1e3)
        cells = [res.name(tool), "lazy*" if res.flag(tool, "lazy_open") else open_ms]
        for measure in ("seq", "shuf"):
            for cache in ("warm", "cold"):
                s = res.get(tool, kind, measure, cache, "rows_per_s")
                capped = any(
                    r.get("capped") for r in res.groups.get((tool, kind, measure, cache), [])
                )
                cells.append(fmt_auto(s) + (" *capped*" if capped else ""))
        for cache in ("warm", "cold"):
            p50 = res.get(tool, kind, "row", cache, "p50_s")
            p99 = res.get(tool, kind, "row", cache, "p99_s")
            if p50 is None:
                cells.append("n/a" if (tool, kind, "row") in res.unsupported else "-")
            else:
                cells.append(f"{fmt_auto(p50, 1e3)} / {fmt_auto(p99, 1e3)}")
        cells.append(fmt(res.get(tool, kind, "shuf", "warm", "dispersion_ratio"), digits=2))
        rows.append(cells)
    head = [
        "tool",
        "open ms (cold)",
        "seq warm /s",
        "seq cold /s",
        "shuffled warm /s",
        "shuffled cold /s",
        "row p50/p99 ms warm",
        "row p50/p99 ms cold",
        "R",
    ]
    iid = res.raw.get("iid_dispersion_ratio", {}).get(kind)
    notes = [
        "*lazy: the tool's open only records the path; its real opening cost is inside the "
        "first epoch. (in memory): open loads every row (the open time is the load), epochs "
        "then read RAM."
    ]
    if iid:
        notes.append(
            f"R of an ideal (i.i.d.) shuffle of these labels: {iid['median']:.2f}, "
            f"{iid['p5']:.2f}-{iid['p95']:.2f} from seed to seed (5th-95th percentile)."
        )
    return ["#### Read (samples/s)", "", *table(head, rows), "", *notes, ""]


def decode_section(res: Results) -> list[str]:
    lim = res.raw["limits"].get("jpeg_decode_images_s")
    rows = []
    for tool in res.tools:
        warm = res.get(tool, "jpeg", "decode", "warm", "rows_per_s")
        cold = res.get(tool, "jpeg", "decode", "cold", "rows_per_s")
        if warm is None and cold is None:
            continue
        frac = f"{warm['median'] / (2 * lim['median']):.0%}" if warm and lim else "-"
        rows.append([res.name(tool), fmt_auto(warm), fmt_auto(cold), frac])
    ceiling = f"{2 * lim['median']:,.0f}" if lim else "?"
    return [
        "#### Fetch + decode (images/s)",
        "",
        f"Decode ceiling: 2 cores x the single-core simplejpeg rate = {ceiling} images/s.",
        "",
        *table(["tool", "warm", "cold", "warm / ceiling"], rows),
        "",
    ]


# -- random access: single rows and gathers of 64 -------------------------------------------------


def random_only(raw: dict[str, Any]) -> bool:
    """A run of the random-access measures alone (``run.py --measures row,gather64``)."""
    measures = raw.get("measures")
    return bool(measures) and set(measures) <= set(RANDOM_MEASURES)


def us(s: Stat | None) -> str:
    return fmt_auto(s, 1e6)


def to_reference(res: Results, tool: str, kind: str, measure: str, cache: str) -> float | None:
    """A tool's p50 (median over rounds) divided by npy memmap's, same kind, measure, cache."""
    mine = res.get(tool, kind, measure, cache, "p50_s")
    ref = res.get(REFERENCE, kind, measure, cache, "p50_s")
    if mine is None or ref is None or ref["median"] <= 0:
        return None
    return mine["median"] / ref["median"]


def times(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.2f}x" if x < 10 else f"{x:,.0f}x"


def stored_as(res: Results, tool: str, kind: str) -> str:
    store = res.store(tool, kind)
    if not store:
        return "-"
    text = store.get("compression") or "as is"
    if store.get("segment_bytes") and store["segment_bytes"] < 1 << 30:
        text += f", {store['segment_bytes'] / 1024:.0f} KiB frames"
    if store.get("note"):
        text += f" ({store['note']})"
    return text


def latency_table(res: Results, kind: str, measure: str) -> list[str]:
    """p50 / p99 warm and cold in microseconds, each p50 also as a multiple of npy memmap's."""
    raw = res.raw["specs"][kind]["raw_bytes"]
    rows = []
    notes: set[str] = set()
    for tool in res.tools:
        recs = [r for c in ("warm", "cold") for r in res.groups.get((tool, kind, measure, c), [])]
        unsupported = (tool, kind, measure) in res.unsupported
        if not recs and not unsupported:
            continue
        size = res.get(tool, kind, "write", None, lambda r: r["bytes"] / raw)
        name = res.name(tool) + (" (lazy*)" if res.flag(tool, "lazy_open") else "")
        cells = [name, stored_as(res, tool, kind), fmt(size, digits=2)]
        for cache in ("warm", "cold"):
            p50 = res.get(tool, kind, measure, cache, "p50_s")
            if p50 is None:
                cells += ["n/a" if unsupported else "-", "", ""]
                continue
            p99 = res.get(tool, kind, measure, cache, "p99_s")
            group = res.groups.get((tool, kind, measure, cache), [])
            mark = ""
            if any(r.get("capped") for r in group):
                mark = f" *capped at {min(r['n'] for r in group)}*"
                notes.add("capped")
            cells += [us(p50) + mark, us(p99), times(to_reference(res, tool, kind, measure, cache))]
        rows.append(cells)
    head = ["tool", "x stored as", "size / raw"]
    for cache in ("warm", "cold"):
        head += [f"{cache} p50 us", f"{cache} p99 us", f"{cache} p50 / npy"]
    lines = table(head, rows)
    if "capped" in notes:
        lines += [
            "",
            "*capped at N*: the run stopped after its time cap with N batches or rows (slow "
            "readers); p50/p99 are over those.",
        ]
    return lines


def random_section(res: Results, kind: str) -> list[str]:
    lines: list[str] = []
    if any(res.groups.get((t, kind, "row", c)) for t in res.tools for c in ("warm", "cold")):
        lines += ["#### Random row: one row at a random index (microseconds)", ""]
        lines += [*latency_table(res, kind, "row"), ""]
    if any(res.groups.get((t, kind, "gather64", c)) for t in res.tools for c in ("warm", "cold")):
        lines += ["#### Gather of 64 random rows, shuffled order (microseconds per batch)", ""]
        lines += [*latency_table(res, kind, "gather64"), ""]
    return lines


AIMS = (
    "Random row, p50 warm: at most 30 us for a compressed array column, at most 10 us for an "
    "uncompressed one, at most 50 us for JPEG bytes.",
    "Gather of 64 random rows: at most 2x npy memmap with compression on, and ahead of every "
    "compressed peer.",
)


def aims_section(res: Results) -> list[str]:
    """The aims of random access (issue 11), each checked against the measured medians."""
    rows = []
    for tool in res.bales():
        for kind in res.kinds:
            if not res.store(tool, kind):
                continue  # a run older than the store descriptions: the aim is unknown
            compressed = res.compressed(tool, kind)
            is_bytes = res.raw["specs"][kind]["shape"] is None
            row = res.get(tool, kind, "row", "warm", "p50_s")
            if row is not None:
                aim = 50e-6 if is_bytes else 30e-6 if compressed else 10e-6
                what = "JPEG bytes" if is_bytes else "compressed" if compressed else "uncompressed"
                rows.append(
                    [
                        res.name(tool),
                        kind,
                        "row p50 warm",
                        f"<= {aim * 1e6:.0f} us ({what})",
                        f"{row['median'] * 1e6:,.1f} us",
                        "met" if row["median"] <= aim else "missed",
                    ]
                )
            for cache in ("warm", "cold"):
                mine = res.get(tool, kind, "gather64", cache, "p50_s")
                if mine is None:
                    continue
                label = f"gather64 p50 {cache}"
                if not compressed:
                    ratio = times(to_reference(res, tool, kind, "gather64", cache))
                    rows.append(
                        [
                            res.name(tool),
                            kind,
                            label,
                            "stated for compression on",
                            f"{mine['median'] * 1e6:,.0f} us ({ratio} npy)",
                            "not applicable: bale stores x as is here",
                        ]
                    )
                    continue
                ref = res.get(REFERENCE, kind, "gather64", cache, "p50_s")
                if ref is not None:
                    bound = 2 * ref["median"]
                    rows.append(
                        [
                            res.name(tool),
                            kind,
                            label,
                            f"<= 2x npy memmap ({bound * 1e6:,.0f} us)",
                            f"{mine['median'] * 1e6:,.0f} us "
                            f"({times(mine['median'] / ref['median'])} npy)",
                            "met" if mine["median"] <= bound else "missed",
                        ]
                    )
                peers = [
                    (s["median"], res.name(t))
                    for t in res.tools
                    if not is_bale(t)
                    and res.compressed(t, kind)
                    and (s := res.get(t, kind, "gather64", cache, "p50_s")) is not None
                ]
                if peers:
                    best, best_name = min(peers)
                    rows.append(
                        [
                            res.name(tool),
                            kind,
                            label,
                            f"ahead of every compressed peer (best: {best_name}, "
                            f"{best * 1e6:,.0f} us)",
                            f"{mine['median'] * 1e6:,.0f} us",
                            "met" if mine["median"] < best else "missed",
                        ]
                    )
    if not rows:
        return []
    return [
        "## Aims of random access (issue 11)",
        "",
        *(f"- {aim}" for aim in AIMS),
        "",
        "Each aim checked against this run's medians (met / missed is computed from the "
        "numbers below, nothing else). *Compressed*: the tool's store compresses x "
        "(the *x stored as* column of the tables); the compressed peers of a kind are the "
        "other tools whose store of it does.",
        "",
        *table(["layout", "kind", "figure", "aim", "measured (median)", "result"], rows),
        "",
    ]


def random_method(res: Results) -> list[str]:
    cfg = res.raw["config"]
    sizes = ", ".join(
        f"{k}: {s['rows']:,} rows, {s['raw_bytes'] / MB:.0f} MB"
        for k, s in res.raw["specs"].items()
    )
    return [
        "## Method",
        "",
        f"Data (`bench/suite/data.py`, from real scikit-image photos, rows sorted by class): "
        f"{sizes}. Each tool stores the rows with its usual API and defaults "
        "(bench/suite/adapters/), *bale random_access* with `bale.write(..., "
        "random_access=True)`; every store is read back once and compared with the source "
        "before any timing. Every measurement runs in a fresh Python process "
        "(`python -m bench.suite.measure`).",
        "",
        f"- *Random row*: {cfg['row_n']} single rows at random indices, one `get_row` each "
        "(bale: `ds[i]`; h5py/zarr/blosc2/npy: indexing; Lance: `take([i])`; ArrayRecord: "
        "`source[i]`; Streaming/LitData: `dataset[i]`). **warm**: every file of the store read "
        "once before opening it; **cold**: `os.sync()` + `posix_fadvise(DONTNEED)` of every "
        "file before opening it, then the rows are read in one open store (its own caches "
        "fill as the run goes).",
        f"- *Gather of 64*: batches of 64 distinct random rows in shuffled order (fixed seed), "
        "each read the way the tool's documentation recommends for a batch of indices "
        "(`Adapter.get_rows`): bale `ds.take(idx)`; npy fancy indexing; h5py fancy indexing "
        "with sorted unique indices, then reordered; zarr `oindex` likewise; blosc2 NDArray "
        "fancy indexing (JPEGs: slices of one byte array); Lance `take`; ArrayRecord the "
        "data source's `__getitems__` (`reader.read(positions)`); HF datasets `ds[list]`; "
        "tools without a batch read (folder, Streaming, LitData): a loop of single-row reads. "
        "The first batch is checked against the source rows, untimed. **warm**: "
        f"{cfg.get('gather_warm', 200)} batches in one open store whose files were read once; "
        f"**cold**: {cfg.get('gather_cold', 30)} batches, each in a freshly opened store whose "
        "files were then evicted, so neither the OS nor the tool holds any of it; only the "
        "gather is timed. *lazy*: the tool opens its store at the first read, which a cold "
        "batch then includes.",
        f"- Each run stops after {cfg['cap_s']:.0f} s (*capped*). Times are microseconds; "
        "*/ npy* is a tool's p50 over npy memmap's for the same kind and cache (below 1: faster "
        "than the memmap). pickle holds every row in RAM, so its cold figures are warm.",
        "",
        f"Every figure is the median (min-max) of {cfg['repeats']} round(s), run round-robin "
        "over the tools.",
        "",
    ]


def random_limits(res: Results) -> list[str]:
    lim = res.raw.get("limits") or {}
    rows = []
    for key, v in lim.get("pread", {}).items():
        size, threads = key.split("/t")
        if threads == "1":
            rows.append([f"one cold random pread of {size}", us(v["latency_s"])])
    if "memcpy_gb_s" in lim:
        rows.append(["memcpy, 1 thread (GB/s)", fmt(lim["memcpy_gb_s"], digits=1)])
    if not rows:
        return []
    return [
        "## What the machine allows",
        "",
        "Measured in the same run by `bench/suite/limits.py` (readahead off): the floor under a "
        "cold row.",
        "",
        *table(["limit", "us"], rows),
        "",
    ]


def build_random(results: dict[str, Any]) -> str:
    """The report of a random-access run: aims, then per kind the row and gather tables."""
    from bench.suite.data import DESCRIPTIONS

    res = Results(results)
    lines = header(res) + disturbance(res) + random_method(res) + aims_section(res)
    lines += tools_section(res) + random_limits(res)
    for kind in res.kinds:
        lines += [f"## {kind}: {DESCRIPTIONS[kind]}", "", *random_section(res, kind)]
    lines += losses(res, RANDOM_MEASURES) + eviction_section(res) + failures_section(res)
    return "\n".join(lines).rstrip() + "\n"


def disk_limit(lim: dict[str, Any]) -> float:
    """The faster of one and four cold sequential streams (MB/s)."""
    best = lim["cold_seq_mb_s"]["median"]
    if "cold_seq4_mb_s" in lim:
        best = max(best, lim["cold_seq4_mb_s"]["median"])
    return float(best)


def bale_vs_limits(res: Results) -> list[str]:
    """Each bale figure as a fraction of the limit that bounds it."""
    lim = res.raw["limits"]
    disk = disk_limit(lim)
    rows = []
    cores = res.raw["environment"]["cores"] or 2
    for kind in res.kinds:
        spec = res.raw["specs"][kind]
        row_mb = spec["raw_bytes"] / spec["rows"] / MB
        store = res.get("bale", kind, "write", None, "bytes")
        disk_per_row = store["median"] / spec["rows"] / MB if store else None
        seq_cold = res.get("bale", kind, "seq", "cold", "rows_per_s")
        if seq_cold and disk_per_row:
            got = seq_cold["median"] * disk_per_row
            rows.append(
                [
                    kind,
                    "cold sequential epoch, MB/s read from disk",
                    f"{got:,.0f}",
                    "cold sequential read (best of 1 and 4 streams)",
                    f"{disk:,.0f}",
                    f"{got / disk:.0%}",
                ]
            )
        shuf_cold = res.get("bale", kind, "shuf", "cold", "rows_per_s")
        if shuf_cold and disk_per_row:
            got = shuf_cold["median"] * disk_per_row
            rows.append(
                [
                    kind,
                    "cold shuffled epoch, MB/s read from disk",
                    f"{got:,.0f}",
                    "cold sequential read (best of 1 and 4 streams)",
                    f"{disk:,.0f}",
                    f"{got / disk:.0%}",
                ]
            )
        seq_warm = res.get("bale", kind, "seq", "warm", "rows_per_s")
        codecs = lim["decompress_mb_s"].get(kind, {})
        default = next((v for k, v in codecs.items() if k.startswith("bale default")), None)
        if seq_warm and default:
            got = seq_warm["median"] * row_mb
            ceiling = min(cores * default["mb_s"]["median"], lim["memcpy_gb_s"]["median"] * 1e3)
            rows.append(
                [
                    kind,
                    "warm sequential epoch, MB/s decoded",
                    f"{got:,.0f}",
                    f"{cores} cores x decompression of bale's default codec",
                    f"{ceiling:,.0f}",
                    f"{got / ceiling:.0%}",
                ]
            )
        elif seq_warm and kind == "jpeg":
            got = seq_warm["median"] * row_mb
            ceiling = lim["memcpy_gb_s"]["median"] * 1e3
            rows.append(
                [
                    kind,
                    "warm sequential epoch, MB/s of JPEG bytes",
                    f"{got:,.0f}",
                    "memcpy, 1 thread",
                    f"{ceiling:,.0f}",
                    f"{got / ceiling:.0%}",
                ]
            )
        row_cold = res.get("bale", kind, "row", "cold", "first_s")
        pread = lim["pread"].get("1MiB/t1")
        if row_cold and pread:
            floor = pread["latency_s"]["median"]
            rows.append(
                [
                    kind,
                    "first random row after eviction (nothing cached), ms",
                    f"{row_cold['median'] * 1e3:.3f}",
                    "one cold 1 MiB pread (a row group)",
                    f"{floor * 1e3:.3f}",
                    f"{floor / row_cold['median']:.0%}",
                ]
            )
    dec = res.get("bale", "jpeg", "decode", "warm", "rows_per_s")
    if dec and "jpeg_decode_images_s" in lim:
        ceiling = cores * lim["jpeg_decode_images_s"]["median"]
        rows.append(
            [
                "jpeg",
                "warm fetch+decode, images/s",
                f"{dec['median']:,.0f}",
                f"{cores} cores x simplejpeg decode",
                f"{ceiling:,.0f}",
                f"{dec['median'] / ceiling:.0%}",
            ]
        )
    return [
        "## bale against the machine's limits",
        "",
        "Fraction = bale's figure / the limit (for latency: the limit / bale's figure), so 100% "
        "means bale runs at what the hardware allows. Cold rates count the bytes of the bale "
        "file (compressed); warm rates count decoded bytes. On a virtual machine the host may "
        "cache a small file that the guest evicted, so a cold figure can exceed the disk limit "
        "(measured on a 2 GiB file): read such a fraction as 'at least the disk's speed'.",
        "",
        *table(["kind", "bale figure", "bale", "limit", "limit value", "fraction"], rows),
        "",
    ]


def losses(res: Results, only: tuple[str, ...] | None = None) -> list[str]:
    """Every figure where another tool's median beats bale's (``only``: those measures)."""
    checks: list[tuple[str, str, str | None, str, bool]] = [
        ("write", "write seconds", None, "seconds", False),
        ("write", "bytes on disk", None, "bytes", False),
        ("write", "peak RSS while writing", None, "peak_rss_over_source", False),
    ]
    for measure, label in (("seq", "sequential"), ("shuf", "shuffled"), ("decode", "decode")):
        for cache in ("warm", "cold"):
            checks.append((measure, f"{label} {cache} samples/s", cache, "rows_per_s", True))
    for measure, label in (("row", "random row"), ("gather64", "gather of 64")):
        for cache in ("warm", "cold"):
            checks.append((measure, f"{label} p50 {cache}", cache, "p50_s", False))
            checks.append((measure, f"{label} p99 {cache}", cache, "p99_s", False))
    checks.append(("seq", "open time (cold)", "cold", "open_s", False))
    if only is not None:
        checks = [c for c in checks if c[0] in only]
    lines = []
    for kind in res.kinds:
        for mine_tool in res.bales():
            for measure, label, cache, field, higher in checks:
                mine = res.get(mine_tool, kind, measure, cache, field)
                if mine is None:
                    continue
                better = []
                for tool in res.tools:
                    if is_bale(tool):
                        continue
                    other = res.get(tool, kind, measure, cache, field)
                    if other is None or (field == "open_s" and res.flag(tool, "lazy_open")):
                        continue
                    wins = (
                        other["median"] > mine["median"]
                        if higher
                        else other["median"] < mine["median"]
                    )
                    if wins:
                        better.append((other["median"], res.name(tool)))
                if better:
                    better.sort(reverse=higher)
                    best_v, best_name = better[0]
                    names = ", ".join(n for _, n in better)
                    if measure in RANDOM_MEASURES:  # latencies: microseconds
                        mine_text, best_text = (
                            f"{v * 1e6:,.1f} us" for v in (mine["median"], best_v)
                        )
                    else:
                        mine_text, best_text = f"{mine['median']:.4g}", f"{best_v:.4g}"
                    lines.append(
                        f"- {kind}, {label}: {res.name(mine_tool)} {mine_text}, best "
                        f"{best_name} {best_text} (beaten by: {names})"
                    )
    for kind in res.kinds if only is None or "shuf" in only else ():
        mine = res.get("bale", kind, "shuf", "warm", "dispersion_ratio")
        iid = res.raw.get("iid_dispersion_ratio", {}).get(kind)
        if mine is None or iid is None or iid["p5"] <= mine["median"] <= iid["p95"]:
            continue  # within what an ideal shuffle scores from seed to seed
        closer = [
            res.name(tool)
            for tool in res.tools
            if tool != "bale"
            and (other := res.get(tool, kind, "shuf", "warm", "dispersion_ratio"))
            and abs(other["median"] - iid["median"]) < abs(mine["median"] - iid["median"])
        ]
        if closer:
            lines.append(
                f"- {kind}, shuffle quality: bale R = {mine['median']:.2f}, outside the i.i.d. "
                f"range {iid['p5']:.2f}-{iid['p95']:.2f}; closer to i.i.d.: " + ", ".join(closer)
            )
    return [
        "## Where bale loses",
        "",
        "Generated: every median where another tool did better than bale, for each bale layout "
        "measured (latencies in microseconds, other times in seconds; timings from a busy "
        "machine are noisy, see the min-max in the tables)."
        + (
            " Shuffle quality counts only when bale's R falls outside the seed-to-seed range "
            "of an ideal shuffle."
            if only is None or "shuf" in only
            else ""
        )
        + " Tools marked (in memory) hold the whole dataset in RAM.",
        "",
        *(lines or ["- nowhere in this run"]),
        "",
    ]


def eviction_section(res: Results) -> list[str]:
    bad = []
    total = 0
    for (tool, kind, measure, cache), recs in res.groups.items():
        if cache != "cold":
            continue
        for r in recs:
            total += 1
            resident = r.get("resident_before")
            if resident is None:
                bad.append(f"- {tool} {kind} {measure}: fincore unavailable, eviction unchecked")
            elif resident > 0.02 * r["store_bytes"]:
                bad.append(
                    f"- {tool} {kind} {measure}: {resident / MB:.1f} MB of "
                    f"{r['store_bytes'] / MB:.1f} MB still resident after eviction"
                )
    head = (
        f"All {total} cold measurements started with at most 2% of the store resident."
        if not bad
        else f"{len(bad)} of {total} cold measurements started with more than 2% resident:"
    )
    return ["## Eviction check", "", head, "", *bad, ""]


def failures_section(res: Results) -> list[str]:
    lines = []
    for r in res.failures:
        lines.append(
            f"- {r['tool']} {r['kind']} {r['measure']} {r.get('cache') or ''}: {r['error']}"
        )
    unsupported = sorted({f"- {t} {k} {m}: {e}" for (t, k, m), e in res.unsupported.items()})
    out = ["## Failures and unsupported operations", ""]
    out += lines or ["- no measurement failed"]
    if unsupported:
        out += ["", "Not supported by the tool (shown as n/a):", "", *unsupported]
    return [*out, ""]


def disturbance(res: Results) -> list[str]:
    loads = [
        r["load"]["foreign_cores"]
        for recs in res.groups.values()
        for r in recs
        if "load" in r and r["load"]["wall_s"] > 0.05
    ]
    if not loads:
        return []
    busy = sum(1 for x in loads if x > 0.1)
    return [
        f"Other processes used more than 0.1 cores during {busy} of {len(loads)} timed "
        f"measurements (median {statistics.median(loads):.2f} cores): "
        + (
            "the machine was busy, treat the timings as rough."
            if busy > len(loads) / 10
            else "the machine was quiet enough."
        ),
        "",
    ]


# -- plots ------------------------------------------------------------------------------------


def image_dir(res: Results) -> tuple[Path, str]:
    """Where the plots go, and the link to them from bench/results/."""
    return (IMG, IMG_LINK) if res.raw["mode"] == "full" else (QUICK_IMG, QUICK_IMG_LINK)


def plots(res: Results, prefix: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img_dir = image_dir(res)[0]
    img_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in res.kinds:
        tools = [t for t in res.tools if res.get(t, kind, "seq", "warm", "rows_per_s")]
        if not tools:
            continue
        series = [
            ("seq", "warm"),
            ("seq", "cold"),
            ("shuf", "warm"),
            ("shuf", "cold"),
        ]
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(tools) * 1.6 + 1.5))
        height = 0.8 / len(series)
        for j, (measure, cache) in enumerate(series):
            meds, lo, hi, ys = [], [], [], []
            for i, tool in enumerate(tools):
                s = res.get(tool, kind, measure, cache, "rows_per_s")
                if s is None:
                    continue
                ys.append(i + j * height)
                meds.append(s["median"])
                lo.append(s["median"] - s["min"])
                hi.append(s["max"] - s["median"])
            label = f"{'sequential' if measure == 'seq' else 'shuffled'}, {cache}"
            ax.barh(ys, meds, height, xerr=[lo, hi], label=label, capsize=2)
        ax.set_yticks([i + 0.4 - height / 2 for i in range(len(tools))])
        ax.set_yticklabels([res.name(t) for t in tools])
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("samples/s (log scale; bars: median, whiskers: min-max)")
        ax.set_title(f"{kind}: epoch throughput")
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        path = img_dir / f"{prefix}_{kind}_epochs.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path.name)

        wtools = [t for t in res.tools if res.get(t, kind, "write", None, "seconds")]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 0.35 * len(wtools) + 1.5), sharey=True)
        raw = res.raw["specs"][kind]["raw_bytes"]
        ys = list(range(len(wtools)))
        secs = [res.get(t, kind, "write", None, "seconds") for t in wtools]
        sizes = [res.get(t, kind, "write", None, "bytes") for t in wtools]
        a1.barh(
            ys,
            [s["median"] for s in secs if s],
            xerr=[
                [s["median"] - s["min"] for s in secs if s],
                [s["max"] - s["median"] for s in secs if s],
            ],
            capsize=2,
        )
        a1.set_xscale("log")
        a1.set_xlabel("write seconds (log)")
        a2.barh(ys, [s["median"] / raw for s in sizes if s], color="tab:orange")
        a2.axvline(1.0, color="grey", lw=0.8)
        a2.set_xlabel("bytes on disk / raw bytes")
        a1.set_yticks(ys)
        a1.set_yticklabels([res.name(t) for t in wtools])
        a1.invert_yaxis()
        fig.suptitle(f"{kind}: writing")
        fig.tight_layout()
        path = img_dir / f"{prefix}_{kind}_write.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path.name)

    # Random-row latency and shuffle quality, all kinds in one figure each.
    for what, measure, field, xlabel, fname in (
        ("random row p50, cold", "row", "p50_s", "ms (log)", "latency"),
        ("shuffle quality R (1 = i.i.d.)", "shuf", "dispersion_ratio", "R (log)", "shuffle"),
    ):
        fig, axes = plt.subplots(1, len(res.kinds), figsize=(4 * len(res.kinds), 5), sharey=True)
        axes = axes if len(res.kinds) > 1 else [axes]
        for ax, kind in zip(axes, res.kinds, strict=True):
            cache = "cold" if measure == "row" else "warm"
            vals = [(res.get(t, kind, measure, cache, field), t) for t in res.tools]
            ys = [i for i, (s, _) in enumerate(vals) if s]
            scale = 1e3 if measure == "row" else 1.0
            ax.barh(
                ys,
                [s["median"] * scale for s, _ in vals if s],
                color=["tab:red" if is_bale(t) else "tab:blue" for s, t in vals if s],
            )
            for i, (st, tool) in enumerate(vals):
                if st is None and (tool, kind, measure) in res.unsupported:
                    ax.text(
                        0.02,
                        i,
                        "n/a (no random access)",
                        va="center",
                        fontsize=7,
                        transform=ax.get_yaxis_transform(),
                    )
            iid = res.raw.get("iid_dispersion_ratio", {}).get(kind)
            if measure == "shuf" and iid:
                ax.axvspan(iid["p5"], iid["p95"], color="grey", alpha=0.25, label="i.i.d. range")
                ax.legend(fontsize=7, loc="lower right")
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_title(kind)
        axes[0].set_yticks(range(len(res.tools)))
        axes[0].set_yticklabels([res.name(t) for t in res.tools])
        axes[0].invert_yaxis()
        fig.suptitle(what)
        fig.tight_layout()
        path = img_dir / f"{prefix}_{fname}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path.name)

    tools = [t for t in res.tools if res.get(t, "jpeg", "decode", "warm", "rows_per_s")]
    lim = res.raw["limits"].get("jpeg_decode_images_s")
    if tools:
        fig, ax = plt.subplots(figsize=(8, 0.4 * len(tools) + 1.5))
        for j, cache in enumerate(("warm", "cold")):
            stats = [res.get(t, "jpeg", "decode", cache, "rows_per_s") for t in tools]
            ys = [i + j * 0.4 for i, s in enumerate(stats) if s]
            ax.barh(ys, [s["median"] for s in stats if s], 0.4, label=cache)
        if lim:
            cores = res.raw["environment"]["cores"] or 2
            ax.axvline(cores * lim["median"], color="black", ls="--", label="decode ceiling")
        ax.set_yticks([i + 0.2 for i in range(len(tools))])
        ax.set_yticklabels([res.name(t) for t in tools])
        ax.invert_yaxis()
        ax.set_xlabel("images/s, fetch + simplejpeg decode")
        ax.legend(fontsize=8)
        ax.set_title("JPEG: fetch + decode, shuffled")
        fig.tight_layout()
        path = img_dir / f"{prefix}_jpeg_decode.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path.name)
    return written


def build(results: dict[str, Any], prefix: str = "suite") -> str:
    res = Results(results)
    images = plots(res, prefix)
    link = image_dir(res)[1]
    lines = header(res) + disturbance(res) + method(res) + tools_section(res)
    lines += limits_section(res) + bale_vs_limits(res) + aims_section(res) + losses(res)
    from bench.suite.data import DESCRIPTIONS

    gathers = any(key[2] == "gather64" for key in res.groups)
    for kind in res.kinds:
        lines += [f"## {kind}: {DESCRIPTIONS[kind]}", ""]
        lines += write_section(res, kind) + read_section(res, kind)
        if gathers:
            lines += random_section(res, kind)
        if kind == "jpeg":
            lines += decode_section(res)
        for img in images:
            if img.startswith(f"{prefix}_{kind}_"):
                lines += [f"![{img}]({link}/{img})", ""]
    lines += ["## Random-row latency and shuffle quality", ""]
    for img in images:
        if img.endswith(("_latency.png", "_shuffle.png")):
            lines += [f"![{img}]({link}/{img})", ""]
    lines += eviction_section(res) + failures_section(res)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    import json

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path)
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    target = args.results.with_suffix(".md")
    if random_only(results):
        target.write_text(build_random(results), encoding="utf-8")
        print(f"wrote {target}")
        return 0
    markdown = build(results, prefix="suite")
    target.write_text(markdown, encoding="utf-8")
    print(f"wrote {target} and plots in {image_dir(Results(results))[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
