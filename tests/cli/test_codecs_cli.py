"""`bale codecs`: JSON and text reports that cover every column, from .bale and .npy input."""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale
import bale.measure.advisor as advisor
from bale.cli.main import EXIT_ERROR, EXIT_OK, main
from bale.codecs import parse_codec


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "sample.bale"
    rng = np.random.default_rng(0)
    n = 2000
    activations = np.maximum(rng.normal(size=(n, 64)), 0).astype(np.float32)
    bale.write(
        path,
        {
            "activations": activations,
            "label": np.arange(n, dtype=np.int64) % 10,
            "noise": [rng.bytes(1000) for _ in range(n)],
            "caption": [f"a photo of a {'cat' if i % 2 else 'dog'} number {i}" for i in range(n)],
        },
        row_group_rows=250,
    )
    return path


def test_json_report_covers_every_column(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["codecs", str(sample), "--json", "--sample-mb", "0.25", "--repeats", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["columns"]) == {"activations", "label", "noise", "caption"}
    assert report["goal"] == "balanced" and report["cores"] >= 1
    assert "per core" in report["speeds"]
    for name, column in report["columns"].items():
        specs = [r["spec"] for r in column["results"]]
        assert column["recommended"] in specs, name
        assert column["reason"]
        for result in column["results"]:
            if result["spec"] != "none":
                assert result["decompress_mbps"] > 0 and result["decompress_wall_mbps"] > 0
            assert result["ratio"] == pytest.approx(
                result["raw_bytes"] / result["stored_bytes"], abs=1e-4
            )
    for spec in report["recommendation"].values():
        parse_codec(spec)
    assert report["columns"]["noise"]["recommended"] == "none"
    # Random rows: no decoding for `none`; for a codec, the estimate from its decode speed.
    noise = report["columns"]["noise"]["random_row_us"]
    assert noise["default"] == noise["random_access"] == 0
    activations = report["columns"]["activations"]
    chosen = next(r for r in activations["results"] if r["spec"] == activations["recommended"])
    share = activations["row_share"]
    default_us = activations["random_row_us"]["default"]
    assert default_us == pytest.approx((1 << 20) * share / chosen["decompress_mbps"], rel=0.01)
    assert 0 < activations["random_row_us"]["random_access"] < default_us


def test_text_report_marks_the_recommendation(
    sample: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["codecs", str(sample), "--goal", "smallest", "--read-rate", "200"]
    assert main([*args, "--columns", "caption", "label", "--sample-mb", "0.25"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "per core" in out and "core" in out and "goal: smallest" in out
    assert "caption: text" in out and "label: int64 arrays" in out
    assert "activations" not in out
    assert out.count("<- recommended") == 2
    assert out.count("why: ") == 2
    assert "Writer codecs: {" in out
    assert out.count("  random row") == 2 and "--random-access" in out


def test_candidates_option(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["codecs", str(sample), "--json", "--columns", "label", "--candidates", "lz4", "zstd:9"]
    assert main([*args, "--sample-mb", "0.1"]) == EXIT_OK
    column = json.loads(capsys.readouterr().out)["columns"]["label"]
    assert {r["spec"] for r in column["results"]} == {"none", "lz4", "zstd:9", "zstd:1"}


def test_npy_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "features.npy"
    np.save(path, np.repeat(np.arange(4000, dtype=np.float32), 8).reshape(4000, 8))
    assert main(["codecs", str(path), "--json", "--sample-mb", "0.05"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert len(report["columns"]) == 1
    (column,) = report["columns"].values()
    assert column["type"] == "float32[8]" and column["rows"] > 100


def test_errors(sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["codecs", str(tmp_path / "missing.bale")]) == EXIT_ERROR
    with pytest.raises(SystemExit):
        main(["codecs", str(sample), "--goal", "tiny"])
    with pytest.raises(SystemExit):
        main(["codecs", str(sample), "--read-rate", "-3"])
    capsys.readouterr()


@pytest.fixture
def features_and_labels(tmp_path: Path) -> Path:
    """4 KiB float32 feature rows beside int64 labels and short paths (0.2% and 0.4%)."""
    path = tmp_path / "features.bale"
    rng = np.random.default_rng(5)
    n = 600
    bale.write(
        path,
        {
            "features": rng.normal(size=(n, 1024)).astype(np.float32),
            "label": rng.integers(0, 10, n),
            "path": [f"c{i % 10}/{i:06d}.jpg" for i in range(n)],
        },
    )
    return path


def test_tiny_columns_get_one_line(
    features_and_labels: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # issue 15 item 8: labels and paths (0.02% of the file) got 15-row tables and advice
    # such as "zstd:19 ... compresses at 4 MB/s" under the balanced goal.
    args = ["codecs", str(features_and_labels), "--sample-mb", "1", "--repeats", "1"]
    assert main(args) == EXIT_OK
    out = capsys.readouterr().out
    label = [line for line in out.splitlines() if line.startswith("label:")]
    assert len(label) == 1
    assert "tiny (0.19% of each row's bytes): keep zstd:1 (bale's default" in label[0]
    assert "not worth measuring" in label[0]
    assert next(line for line in out.splitlines() if line.startswith("path:")).count("tiny") == 1
    assert out.count("<- recommended") == 1  # the features' table only
    assert out.count("why: ") == 1
    assert 'Writer codecs: {"features": ' in out
    assert "(bale's default is the pick for ['label', 'path']: leave their codecs unset)" in out
    for speed in re.findall(r"compresses at ([\d,]+) MB/s", out):
        assert float(speed.replace(",", "")) >= 100  # the balanced floor, as the rule says


def test_fastest_on_float32_features(
    features_and_labels: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # issue 15 item 8: --goal fastest picked zstd:9 (82 MB/s compress): the fastest decoder.
    args = ["codecs", str(features_and_labels), "--goal", "fastest", "--json", "--repeats", "1"]
    assert main([*args, "--columns", "features", "--sample-mb", "1"]) == EXIT_OK
    column = json.loads(capsys.readouterr().out)["columns"]["features"]
    results = [_result(r) for r in column["results"]]
    chosen = next(r for r in results if r.spec == column["recommended"])
    best = max(r.ratio for r in results)
    near = [r for r in results if advisor.near_best_ratio(r.ratio, best)]
    assert advisor.write_read_mbps(chosen) == max(advisor.write_read_mbps(r) for r in near)
    assert "compresses and decodes fastest" in column["reason"]


def _result(r: dict[str, Any]) -> advisor.CodecResult:
    return advisor.CodecResult(
        r["spec"],
        r["config"],
        r["raw_bytes"],
        r["stored_bytes"],
        _speed(r["compress_mbps"]),
        _speed(r["decompress_mbps"]),
    )


def _speed(value: float | None) -> float:
    return math.inf if value is None else value  # JSON's null: none does no codec work


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("quiet", [[], ["-q"], ["--no-progress"]])
def test_progress_bar(
    sample: Path,
    quiet: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # issue 15 item 17: a bar on a terminal (one step per codec), none with -q.
    pytest.importorskip("tqdm")
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    args = ["codecs", str(sample), "--columns", "label", "--sample-mb", "0.05", "--repeats", "1"]
    assert main([*args, *quiet]) == EXIT_OK
    assert "label" in capsys.readouterr().out
    if quiet:
        assert terminal.getvalue() == ""
    else:
        assert "measuring codecs" in terminal.getvalue() and "codecs" in terminal.getvalue()


def test_no_progress_bar_when_piped(sample: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = io.StringIO()
    monkeypatch.setattr("sys.stderr", pipe)
    args = ["codecs", str(sample), "--columns", "label", "--sample-mb", "0.05", "--repeats", "1"]
    assert main([*args, "--json"]) == EXIT_OK
    assert pipe.getvalue() == ""
