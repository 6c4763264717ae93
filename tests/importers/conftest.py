"""Fixtures of the image importer tests: a class-folder tree of photos and manifest rows over it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from image_samples import make_folder


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "photos"
    return root, make_folder(root)


@pytest.fixture
def manifest_rows(folder: tuple[Path, dict[str, bytes]]) -> list[dict[str, Any]]:
    _, files = folder
    rows = []
    for i, path in enumerate(sorted(files)):
        rows.append(
            {
                "file": f"photos/{path}",
                "class": path.split("/")[0],
                "box": [i, i + 0.5, 10, 20],
                "score": i * 2,
                "note": f"row {i}",
            }
        )
    return rows
