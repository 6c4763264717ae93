"""cli/ imports point down: command modules share only cli/_command, nothing imports cli/main or `bale`."""

from __future__ import annotations

import ast
from pathlib import Path

import bale.cli

CLI = Path(bale.cli.__file__).parent
# What cli/ may import: the layers below it (STYLE.md), never the package root.
BELOW = {
    "ops",
    "measure",
    "loader",
    "importers",
    "_core",
    "images",
    "codecs",
    "io",
    "format",
    "errors",
    "_types",
    "_version",
}


def _bale_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "bale" or name.startswith("bale.")}


def test_cli_modules_import_only_lower_layers_and_cli_command() -> None:
    modules = sorted(CLI.glob("*.py"))
    assert {p.stem for p in modules} >= {"main", "_command", "info", "verify", "export"}
    for path in modules:
        for name in _bale_imports(path):
            parts = name.split(".")
            assert len(parts) > 1, f"{path.name} imports the package root {name!r}"
            if parts[1] == "cli":
                allowed = path.stem == "main" or name == "bale.cli._command"
                assert allowed, f"{path.name} imports {name}"
            else:
                assert parts[1] in BELOW, f"{path.name} imports {name}, not a lower layer"
