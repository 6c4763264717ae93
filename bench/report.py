"""Builds docs/BENCHMARKS.md from the reports the benchmark scripts wrote to bench/results/.

No figure in docs/BENCHMARKS.md is typed by hand: each section is a generated report, included
as it is (headings moved one level down), behind a short guide to what each one measures. Only
full runs are included: quick runs write ``*_quick`` reports, which this page ignores (except the
comparative suite's, until a full run of it exists).

    .venv/bin/python -m bench.report
"""

from __future__ import annotations

import re
import sys

from bench.results import RESULTS, ROOT

TARGET = ROOT / "docs" / "BENCHMARKS.md"

SECTIONS = (
    (
        "suite.md",
        "Comparative suite: bale against the dataset tools people use",
        "`make bench` (`.venv-bench/bin/python -m bench.suite.run`; set-up: "
        "`bash bench/suite/setup_env.sh`): for JPEGs, uint8 images and sparse activations, "
        "write time, size, files and peak memory; sequential and shuffled epochs warm and cold; "
        "random-row latency; JPEG fetch+decode; shuffle quality; the machine's own limits. See "
        "bench/suite/README.md.",
    ),
    (
        "suite_random.md",
        "Random access against the peers: single rows and gathers of 64",
        "`.venv-bench/bin/python -m bench.suite.run --measures row,gather64 --name suite_random` "
        "(the comparative suite's random-access measures alone; its header gives the exact "
        "command): random-row and gather-of-64 latency p50/p99, warm and cold, of bale written "
        "by default and with `random_access=True` against npy memmap, h5py, zarr, blosc2, "
        "Lance, ArrayRecord, Streaming and the other peers, each p50 also as a multiple of npy "
        "memmap's, and the aims of random access checked against the medians.",
    ),
    (
        "format_bench.md",
        "The file format against .npy and h5py",
        "`.venv/bin/python -m bench.format_bench`: file size, write speed, sequential read speed "
        "(warm and cold page cache), open time at 10^6 rows, and peak memory while streaming a "
        "multi-GB file, for JPEG bytes, decoded uint8 images and sparse float32 activations.",
    ),
    (
        "loader_bench.md",
        "The training loader against DataLoader pipelines, memmap and h5py",
        "`.venv/bin/python -m bench.loader_bench`: images/s against a decode-only ceiling and "
        "against a JPEG folder, h5py and npy memmap behind a PyTorch DataLoader; decoded arrays; "
        "cold shuffled against cold sequential epochs; peak memory against the memory budget.",
    ),
    (
        "distributed_bench.md",
        "Ranks and DataLoader workers: bytes read per epoch, worker speed, first batch",
        "`.venv/bin/python -m bench.distributed_bench`: bytes read and row groups decoded per "
        "chunk-shuffled epoch of `TorchIterableDataset` with 0-4 DataLoader workers and 2 or 4 "
        "ranks (as multiples of the file, counted over every process), and JPEG decode + crop "
        "epochs with 2 workers against none, with the time to each epoch's first batch.",
    ),
    (
        "sampler_bench.md",
        "Map-style PyTorch: ChunkSampler against shuffle=True",
        "`.venv/bin/python -m bench.sampler_bench`: samples/s of a map-style `TorchDataset` "
        "behind a DataLoader with `shuffle=True` or `sampler=ChunkSampler(...)`, and "
        "`TorchIterableDataset` for reference, cold, 2 workers.",
    ),
    (
        "random_access_bench.md",
        "Random rows and gathers: whole blocks against frames of whole rows",
        "`.venv/bin/python -m bench.random_access_bench`: latency of `ds[i]`, `ds.take` of 64 "
        "random rows and a shuffled DataLoader batch of 64, warm and cold, on files written by "
        "default, with `random_access=True` (format 1.1's frame index) and with 64 KiB frames, "
        "npy memmap for reference; size and sequential decode of each layout.",
    ),
    (
        "remote_loader_bench.md",
        "Over HTTP: opening and Loader epochs against the local file",
        "`.venv/bin/python -m bench.remote_loader_bench`: a loopback range server with a "
        "per-request delay of 0-50 ms serves each file; open time and requests, Loader "
        "samples/s against the local file, bytes fetched per epoch; at 20 ms also responses "
        "paced to 100 MB/s and epoch 2 from the disk cache.",
    ),
    (
        "remote_peers_bench.md",
        "Over the network against the peers: WebDataset, Streaming and LitData through their "
        "own remote paths",
        "`.venv-bench/bin/python -m bench.remote_peers_bench`: every tool's store served by one "
        "loopback HTTP/S3 server with 0/20/50 ms a request; one shuffled epoch per tool and "
        "delay from an empty cache, samples/s side by side and as a ratio to bale, against each "
        "tool's local epoch; rows checked before timing.",
    ),
    (
        "remote_upload_bench.md",
        "Upload: bale.pack and bale.Writer straight to S3 against a local file + upload",
        "`.venv/bin/python -m bench.remote_upload_bench`: a loopback S3 server (PutObject, "
        "multipart uploads) at 0 and 20 ms a request and 100 MB/s per request; JPEGs packed with "
        "decode + resize and in-memory uint8 images written by `bale.Writer`, straight to `s3://` "
        "against a local write then `obstore.put` or boto3 `upload_file`: MB/s, the ratio in the "
        "same run, and peak RSS growth.",
    ),
    (
        "merge_bench.md",
        "Merging part files into one: against a plain file copy",
        "`.venv/bin/python -m bench.merge_bench`: `bale.merge` of 8 parts (row groups copied as "
        "stored) against `shutil.copyfile` of the same bytes, with and without fsync; "
        "`verify=True` and `bale.concat` for comparison.",
    ),
    (
        "pack_cluster_bench.md",
        "bale pack on Dask and Ray",
        "`.venv/bin/python -m bench.pack_cluster_bench`: 500 JPEGs decoded, checked and resized "
        "to 224x224 by the local pack (1 and 2 workers), a Dask LocalCluster (1 and 2 workers) "
        "and Ray on 2 CPUs: images/s and the ratio to the local pack.",
    ),
    (
        "dask_bench.md",
        "Dask: to_bale, from_bale and a shuffled gather against .npy and zarr",
        "`.venv/bin/python -m bench.dask_bench`: to_bale write rates on threads and a "
        "LocalCluster, merge against a copy, `mean` and a shuffled batch of 64 through dask "
        "over bale, .npy and zarr.",
    ),
    (
        "dask_keras_bench.md",
        "Dask + Keras fit(shuffle=True): dask fancy indexing against bale",
        "`flock /tmp/bench.lock .venv/bin/python -m bench.dask_keras_bench`: samples/s of one "
        "shuffled epoch of batches of 64 by dask fancy indexing (over zarr, a .npy memmap and "
        "from_bale) against bale.Loader and KerasSequence over a bale file of the same rows, "
        "NumPy in memory for reference, warm.",
    ),
    (
        "frame_choice.md",
        "Frame size: file size, sequential decode and one row's decode",
        "`.venv/bin/python -m bench.frame_choice`: each kind written at segment sizes from "
        "16 KiB to 1 GiB; size, sequential decode MB/s and the codec time of one random row.",
    ),
    (
        "pack_bench.md",
        "Packing a JPEG folder: bale pack against h5py and WebDataset",
        "`.venv/bin/python -m bench.pack_bench`: images/s, source MB/s and output size when "
        "packing a class-folder tree of JPEGs made from real photos, keeping the bytes or "
        "decoding to 224x224, against h5py and WebDataset's ShardWriter.",
    ),
    (
        "advisor_bench.md",
        "The codec advisor on three kinds of data",
        "`.venv/bin/python -m bench.advisor_bench`: `bale codecs` as printed for JPEG bytes, "
        "uint8 images and sparse activations made from real photos, then bale's default codec "
        "against h5py gzip-4 and lzf and by row-group size: the measurements behind the "
        "default codecs (a report older than that part shows `bale codecs` only).",
    ),
    (
        "import_time.md",
        "Import time",
        "`.venv/bin/python -m bench.import_time`: wall time of `import bale` in a fresh "
        "interpreter (median over fresh processes, interpreter start subtracted) and the "
        "slowest imports by `python -X importtime`.",
    ),
    (
        "shuffle_quality.md",
        "Shuffle quality",
        "`.venv/bin/python -m bench.shuffle_quality`: the dispersion ratio (1.0 = i.i.d.) of "
        "each shuffle mode and window size on class-sorted data.",
    ),
    (
        "codec_choice.md",
        "Codec measurements behind the defaults (historical)",
        "The last report of the retired `bench/codec_choice.py`, kept because docs/DECISIONS.md "
        "cites it: ratio and single-thread speed of every codec candidate on the three data "
        "kinds, and the row-group size sweep. `.venv/bin/python -m bench.advisor_bench` now "
        "measures the same with bale's own advisor (section above).",
    ),
)

INTRO = """# Benchmarks

Every figure on this page was measured by a script under `bench/` and copied here by
`bench/report.py` from the reports the scripts wrote to `bench/results/`. Each report names
its machine, library versions, date and the command that reproduces it, and shows medians of
repeated runs with min-max. Comparisons are made within one run on one machine, because the
machines here are shared and noisy. Where bale misses an aim, the report says so.

`bench/` is one package: run its scripts from the repository root as `python -m bench.<name>`
(each takes `--help`; most take `--quick`, which writes `*_quick` reports that this page
ignores). Reproduction of everything (about 35 minutes on 2 cores):

```
bash bench/suite/setup_env.sh               # once: .venv-bench with the compared tools
make bench                                  # format, loader, distributed, pack, advisor, import time, suite
.venv/bin/python -m bench.shuffle_quality
.venv/bin/python -m bench.report            # rebuilds this page (make bench does too)
make bench-quick                            # every script on small data: proves the pipeline
```
"""


def demote(markdown: str) -> str:
    """Move every heading one level down, so a report's title becomes a section."""
    return re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", markdown, flags=re.MULTILINE)


#: Reports that may stand in for a missing one: the suite's quick run until a full run exists.
FALLBACKS = {"suite.md": "suite_quick.md"}
#: Image links in reports point from bench/results/ to docs/img/; this page lives in docs/.
IMAGE_LINK = "../../docs/img/"


def build() -> str:
    parts = [INTRO]
    for name, title, what in SECTIONS:
        path = RESULTS / name
        if not path.exists() and name in FALLBACKS and (RESULTS / FALLBACKS[name]).exists():
            path = RESULTS / FALLBACKS[name]
        parts.append(f"\n## {title}\n\n{what}\n")
        if not path.exists():
            parts.append(f"\n*Not run yet: `{path.relative_to(ROOT)}` is missing.*\n")
            continue
        body = path.read_text(encoding="utf-8").strip()
        body = re.sub(r"^# .*\n", "", body, count=1)  # the report's own title: the section's
        body = body.replace(f"]({IMAGE_LINK}", "](img/")
        body = body.replace("](../out/", "](../bench/out/")  # a quick suite run's plots
        parts.append("\n" + demote(body) + "\n")
    return "".join(parts)


def main() -> int:
    TARGET.write_text(build(), encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
