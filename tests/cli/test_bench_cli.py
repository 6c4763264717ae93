"""`bale bench`: JSON and text reports of real Loader runs, and the input-bound verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import bale
from bale.cli.main import EXIT_ERROR, EXIT_OK, main

N = 600


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "sample.bale"
    x = np.arange(N * 8, dtype=np.float32).reshape(N, 8)
    bale.write(path, {"x": x, "y": np.arange(N)}, row_group_rows=50)
    return path


def test_json_report(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", str(sample), "--json", "--batch-size", "32", "--seconds", "60", "--cold"]
    assert main([*args, "--step-rate", "0.001"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == N and report["batch_size"] == 32
    for phase in ("warm", "cold"):
        run = report[phase]
        assert run["samples"] == N and run["batches"] == -(-N // 32) and run["full_epochs"] == 1
        assert run["samples_per_s"] > 0
    assert report["input_bound_warm"] is False and report["input_bound_cold"] is False
    assert report["verdict"].startswith("your model takes 0.001 steps/s of batch 32")
    assert "core" in report["machine"]


def test_text_report(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", str(sample), "--batch-size", "64", "--threads", "2", "--shuffle", "none"]
    assert main([*args, "--epochs", "2", "--step-ms", "1000"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "600 rows" in out and "shuffle none" in out and "2 threads" in out
    assert "warm" in out and "1,200 (2 epochs)" in out
    assert "cold" not in out.split("Machine:")[1].split("Verdict")[0].replace("Cold", "")
    assert "Verdict: your model takes 1 steps/s of batch 64 = 64 samples/s" in out
    assert "not input-bound" in out


def test_errors(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(sample), "--transform", "sharpen"]) == EXIT_ERROR
    assert "transform" in capsys.readouterr().err
    assert main(["bench", str(sample), "--batch-size", "0"]) == EXIT_ERROR
    assert main(["bench", str(sample), "--transform", "decode-jpeg"]) == EXIT_ERROR
    assert "bytes column" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", str(sample), "--step-rate", "3", "--step-ms", "4"])
    capsys.readouterr()


def test_verdict_with_the_steps_cores(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # issue 15 item 7: the verdict counts the cores the training step itself keeps busy.
    args = ["bench", str(sample), "--batch-size", "32", "--seconds", "60", "--step-rate", "0.001"]
    assert main([*args, "--step-cores", "1"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "Loader CPU (warm): " in out and "ms of CPU per batch" in out
    verdict = out.split("Verdict: ")[1]
    assert "The loader needs " in verdict and " per batch: " in verdict
    assert "cores and a step using 1, " in verdict
    assert main([*args]) == EXIT_OK
    out = capsys.readouterr().out
    assert "not input-bound while it has the cores to itself" in out
    assert "Not measured: the CPU the training step itself uses" in out
    assert main([*args, "--step-cores", "1", "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["step_cores"] == 1 and report["cores"] >= 1
    assert report["input_bound_cpu"] is False
    assert report["warm"]["cpu_s_per_batch"] > 0 and report["warm"]["cores_busy"] > 0
    assert main(["bench", str(sample), "--step-cores", "2"]) == EXIT_ERROR
    assert "--step-cores needs --step-rate or --step-ms" in capsys.readouterr().err
    assert main([*args, "--step-cores", "-1"]) == EXIT_ERROR
    assert "--step-cores must be >= 0, got -1.0" in capsys.readouterr().err
