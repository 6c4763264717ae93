"""Every module of the bench package imports without side effects: nothing printed, no file
written, no thread started. Scripts do their work in ``main()``; a module whose third-party
dependency is not installed here (the comparative suite's tools live in .venv-bench) is skipped,
but a missing ``bench`` or ``bale`` module fails.

``bench`` is imported as the package it is, from the repository root (``python -m pytest``
puts the working directory on the path)."""

from __future__ import annotations

import importlib
import pkgutil
import threading
from pathlib import Path

import pytest

import bench

BENCH_DIR = Path(bench.__file__).parent


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages([str(BENCH_DIR)], prefix="bench."):
        names.append(info.name)
    return sorted(names)


def _files() -> set[Path]:
    return {p for p in BENCH_DIR.rglob("*") if "__pycache__" not in p.parts}


def test_the_scripts_and_helpers_are_found() -> None:
    modules = _modules()
    for expected in (
        "bench.machine",
        "bench.photo_data",
        "bench.report",
        "bench.import_time",
        "bench.advisor_bench",
        "bench.loader_bench",
        "bench.suite.run",
        "bench.suite.adapters.bale_file",
    ):
        assert expected in modules
    assert "bench.datasets" not in modules  # would shadow Hugging Face's datasets
    assert "bench.codec_choice" not in modules  # retired into bench.advisor_bench


@pytest.mark.filterwarnings("ignore")  # third-party deprecation chatter is not under test
@pytest.mark.parametrize("name", _modules())
def test_module_imports_without_side_effects(name: str, capfd: pytest.CaptureFixture[str]) -> None:
    files, threads = _files(), threading.active_count()
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in ("bench", "bale", ""):
            raise
        pytest.skip(f"{name} needs {missing}, not installed here")
    out, err = capfd.readouterr()
    assert (out, err) == ("", ""), f"{name} printed on import"
    assert _files() == files, f"{name} wrote files on import"
    assert threading.active_count() == threads, f"{name} started a thread on import"
