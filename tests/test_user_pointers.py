"""What an installed bale points its users to must be there for them (issue 15, item 13): the
wheel ships no docs/ folder and bale is not on PyPI, so help texts, messages and docstrings say
"the bale repository's docs/X.md", and install hints name the real packages (``pip install
simplejpeg Pillow``), never a ``bale[extra]`` that pip cannot resolve; the wheel carries the
LICENSE."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "bale"

DOCS_PATH = re.compile(r"docs/[A-Za-z_]+\.md|\bREADME\b")
#: a hint to ``pip install 'bale[x]'``, or an extra named apart from its ``pip install``
BALE_EXTRA = re.compile(r"pip install[^\n]*bale\[|\bbale\[[a-z0-9_,-]+\]")


def _strings(path: Path) -> list[tuple[int, str]]:
    """Every string constant of a module (docstrings, messages, help texts, f-string parts)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def _problems(text: str) -> list[str]:
    found = []
    if DOCS_PATH.search(text) and "bale repository" not in text:
        found.append("a docs/ path or the README without saying it is in the bale repository")
    if BALE_EXTRA.search(text):
        found.append("a bale[extra] install hint (bale is not on PyPI)")
    return found


def _offenders() -> dict[str, list[str]]:
    offenders: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        for line, text in _strings(path):
            for problem in _problems(text):
                name = path.relative_to(SRC).as_posix()
                offenders.setdefault(name, []).append(f"line {line}: {problem}: {text[:80]!r}")
    return offenders


def test_the_checks_catch_what_the_report_found() -> None:
    assert _problems("See docs/SPLIT.md.")
    assert _problems("for slower sequential reads (README, 'Random access')")
    assert _problems("decoding images needs simplejpeg: pip install 'bale[images]'")
    assert _problems("'bale[images]'")  # an importer's install field, joined to the hint later
    assert not _problems("More in the bale repository's docs/SPLIT.md.")
    assert not _problems(
        "decoding images needs simplejpeg and Pillow: pip install simplejpeg Pillow"
    )


def test_no_string_points_where_an_installed_user_cannot_follow() -> None:
    assert _offenders() == {}


@pytest.mark.parametrize("command", ["split", "concat"])
def test_help_names_the_repository(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    from bale.cli.main import main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "the bale repository's docs/SPLIT.md" in text


@pytest.mark.slow
def test_the_wheel_ships_the_license(tmp_path: Path) -> None:
    # Built from a copy, so the checkout gets no build/ or egg-info; offline: no isolation
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(
        ROOT / "src",
        tree / "src",
        ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"),
    )
    pip_wheel = [sys.executable, "-m", "pip", "wheel", str(tree), "--no-deps"]
    done = subprocess.run(
        [*pip_wheel, "--no-build-isolation", "--no-index", "-q", "-w", str(tmp_path / "dist")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "dist").glob("bale-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (license_name,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        shipped = archive.read(license_name).decode("utf-8")
        metadata = archive.read(license_name.replace("licenses/LICENSE", "METADATA")).decode()
    assert shipped == (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License\n                           Version 2.0, January 2004" in shipped
    assert "END OF TERMS AND CONDITIONS" in shipped
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
