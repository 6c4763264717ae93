"""The package's shape: imports point down the layers only, no cycles, and a public surface that
matches the docs. The layers are drawn in docs/ARCHITECTURE.md; this test is their enforcement."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import bale

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "bale"

#: Bottom to top. A module may import its own top-level part (cycle-free), or any part of a
#: lower layer; never a higher layer, and never another part of the same layer.
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(parts.split())
    for parts in (
        "errors _types _version _progress",
        "format",
        "codecs",
        "io",
        "images",
        "_core",
        "importers loader",
        "measure",
        "ops",
        "adapters",
        "dask ray",
        "cli",
        "__init__",
    )
)
LAYER_OF = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every bale import in a file: top level, in functions, under
    TYPE_CHECKING, relative or absolute. ``from bale.x import y`` yields bale.x.y when that is a
    module, else bale.x."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "bale" or alias.name.startswith("bale."):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target != "bale" and not target.startswith("bale."):
                continue
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                relative = Path(*candidate.split(".")[1:])
                if (root / relative).is_dir() or (root / relative).with_suffix(".py").exists():
                    yield node.lineno, candidate
                else:
                    yield node.lineno, target


def part_of(module: str) -> str:
    """The top-level part of bale a module belongs to: bale.ops.pack -> ops, bale -> __init__."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def layer_violations(root: Path) -> list[str]:
    """Every import that points up or sideways, every unknown part, and every import cycle."""
    problems = []
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        source = module_name(path, root)
        graph.setdefault(source, set())
        here = part_of(source)
        if here not in LAYER_OF:
            problems.append(f"{source}: part {here!r} is in no layer of LAYERS")
            continue
        for line, target in imported_modules(path, root):
            graph[source].add(target)
            there = part_of(target)
            where = f"{path.relative_to(root.parent)}:{line}"
            if there not in LAYER_OF:
                problems.append(f"{where}: imports {target}, in no layer")
            elif there != here and LAYER_OF[there] >= LAYER_OF[here]:
                direction = "up" if LAYER_OF[there] > LAYER_OF[here] else "sideways"
                problems.append(
                    f"{where}: {source} imports {target} ({direction}: {here} -> {there})"
                )
    problems.extend(f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph))
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules (iterative DFS, Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1 or node in graph.get(node, ()):
                    found.append([*sorted(group), min(group)])
    return found


def test_imports_point_down_and_do_not_cycle() -> None:
    assert layer_violations(PACKAGE) == []


@pytest.mark.parametrize(
    ("file", "planted", "expected"),
    [
        ("format/constants.py", "from bale.ops.pack import pack", "up: format -> ops"),
        ("_core/writer.py", "import bale", "up: _core -> __init__"),
        ("loader/order.py", "from bale.importers import base", "sideways: loader -> importers"),
        ("_core/shuffle.py", "from ..images import decode_image", "_core -> images"),
        ("codecs/base.py", "from bale.codecs import parse_codec", "import cycle"),
    ],
)
def test_a_planted_bad_import_is_caught(
    tmp_path: Path, file: str, planted: str, expected: str
) -> None:
    copy = tmp_path / "bale"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / file
    target.write_text(target.read_text() + f"\n\ndef _planted() -> None:\n    {planted}\n")
    problems = layer_violations(copy)
    if expected.endswith("images"):  # a downward import is allowed: nothing to report
        assert problems == []
    else:
        assert any(expected in p for p in problems), problems


def test_public_surface_is_sorted_and_complete() -> None:
    assert list(bale.__all__) == sorted(bale.__all__)
    exported = {
        name
        for name in dir(bale)
        if not name.startswith("_")
        and getattr(getattr(bale, name), "__module__", "").startswith("bale")
    }
    assert exported == set(bale.__all__) - {"__version__"}


def _is_submodule(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").exists()


def _docs() -> str:
    files = [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        *(ROOT / "examples").glob("*.py"),
    ]
    texts = [f.read_text() for f in files if f.name != "BENCHMARKS.md"]
    # The table of paths that moved names the old ones on purpose.
    return "\n".join(t.split("## Paths that moved")[0] for t in texts)


def test_every_name_the_docs_use_is_public_and_every_public_name_is_documented() -> None:
    docs = _docs()
    used = set(re.findall(r"\bbale\.([A-Za-z_]\w*)\b", docs))
    for block in re.findall(r"from bale import \(?([\w\s,]+)\)?", docs):
        used.update(n.strip() for n in block.split(",") if n.strip())
    unknown = {n for n in used if n not in bale.__all__ and not _is_submodule(n)}
    assert unknown == set(), f"the docs use bale.{sorted(unknown)}, which is not public"
    undocumented = {
        n for n in set(bale.__all__) - {"__version__"} if not re.search(rf"`[^`]*\b{n}\b", docs)
    }
    assert undocumented == set(), f"public but never shown in the docs: {sorted(undocumented)}"


def test_every_public_sub_module_is_in_the_architecture_doc() -> None:
    architecture = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    public = sorted(
        p.stem if p.suffix else p.name
        for p in PACKAGE.iterdir()
        if not p.name.startswith("_")
        and (p.is_dir() or p.suffix == ".py")
        and p.name != "py.typed"
        and p.name != "__pycache__"
    )
    missing = [name for name in public if f"`bale.{name}`" not in architecture]
    assert missing == [], f"public sub-modules not described in docs/ARCHITECTURE.md: {missing}"


def test_import_bale_loads_only_what_reading_and_writing_need() -> None:
    """`import bale` is paid by every CLI call and every spawned DataLoader worker: the loader,
    the operations and their thread/process pools load on first use (the import time itself is
    measured by `python -m bench.import_time`, never asserted here)."""
    heavy = (
        "bale.loader.pipeline",
        "bale.ops.pack",
        "bale.ops.split",
        "bale.importers",
        "bale.measure",
        "concurrent.futures",
        "multiprocessing",
    )
    probe = (
        "import sys, json, bale\n"
        f"before = [m for m in {heavy!r} if m in sys.modules]\n"
        "bale.pack, bale.Loader, bale.importers.open_source, bale.loader.order.epoch_order\n"
        f"after = [m for m in {heavy!r} if m in sys.modules]\n"
        "print(json.dumps([before, after]))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    before, after = json.loads(result.stdout)
    assert before == []
    assert {"bale.loader.pipeline", "bale.ops.pack"} <= set(after)
