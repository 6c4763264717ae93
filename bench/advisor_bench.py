"""`bale codecs` on the three realistic data kinds (issue 4's figure): the advisor's tables as
printed, from files made by bench/datasets.py from real photos.

    .venv/bin/python bench/advisor_bench.py

Writes bench/results/advisor_bench.md (included in docs/BENCHMARKS.md by bench/report.py).
"""

from __future__ import annotations

import contextlib
import datetime
import io
import os
import platform
import tempfile
from pathlib import Path

import datasets

import bale
from bale.cli.main import main as bale_main

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:
        work = Path(tmp)
        jpegs, labels = datasets.jpeg_images(1000, 0)
        files = {
            "JPEG bytes (1,000 ImageNet-like files) and labels": (
                work / "jpeg.bale",
                {"jpeg": jpegs, "label": labels},
            ),
            "uint8 images 64x64x3 (4,000)": (
                work / "images.bale",
                {"image": datasets.uint8_images(4000, 0)},
            ),
            "sparse float32 activations (1,600)": (
                work / "activations.bale",
                {"act": datasets.sparse_activations(1600, 0)},
            ),
        }
        sections = []
        for title, (path, columns) in files.items():
            bale.write(path, columns)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                code = bale_main(["codecs", str(path)])
            if code != 0:
                raise SystemExit(f"bale codecs {path.name} exited {code}")
            text = out.getvalue().replace(str(work) + os.sep, "")
            sections.append(
                f"### {title}\n\n`bale codecs {path.name}`\n\n```\n{text.rstrip()}\n```\n"
            )
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    report = (
        "## `bale codecs` on three kinds of data (`bench/advisor_bench.py`)\n\n"
        f"Date: {when}. Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python "
        f"{platform.python_version()}, bale {bale.__version__}. Data from `bench/datasets.py` "
        "(real scikit-image photos); files written with bale's default codecs; the advisor "
        "measures each candidate on a sample of every column (speeds per core, CPU time). "
        "Reproduce: `.venv/bin/python bench/advisor_bench.py`.\n\n" + "\n".join(sections)
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "advisor_bench.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
