"""`bale codecs`: JSON and text reports that cover every column, from .bale and .npy input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import bale
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
