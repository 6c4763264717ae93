"""CSV / JSON manifests as RowSources (bale.importers.manifest, bale.importers.manifest_columns)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from image_samples import read_all, write_manifest

from bale import BaleError
from bale.format.schema import Array, Bytes, String
from bale.importers.manifest import ManifestSource
from bale.importers.manifest_columns import extra_column, label_ids


@pytest.mark.parametrize("kind", ["csv", "json", "jsonl"])
def test_manifest_columns(
    tmp_path: Path,
    folder: tuple[Path, dict[str, bytes]],
    manifest_rows: list[dict[str, Any]],
    kind: str,
) -> None:
    _, files = folder
    manifest = write_manifest(tmp_path / f"m.{kind}", manifest_rows, kind)
    source = ManifestSource(manifest)
    assert source.metadata["classes"] == ["cat", "coffee", "rocket"]
    assert dict(source.column_types) == {
        "image": Bytes(),
        "label": Array("int64"),
        "path": String(),
        "box": Array("float32", (4,)),
        "score": Array("int64"),
        "note": String(),
    }
    batch = read_all(source)
    assert not batch.skipped
    for i, row in enumerate(manifest_rows):
        assert batch.columns["path"][i] == row["file"]
        assert batch.columns["image"][i] == files[row["file"].removeprefix("photos/")]
        assert source.metadata["classes"][batch.columns["label"][i]] == row["class"]
        np.testing.assert_array_equal(batch.columns["box"][i], np.float32(row["box"]))
        assert batch.columns["score"][i] == row["score"]
        assert batch.columns["note"][i] == row["note"]


def test_manifest_integer_labels_are_kept(
    tmp_path: Path, manifest_rows: list[dict[str, Any]]
) -> None:
    rows = [{"path": r["file"], "label": 7 - i} for i, r in enumerate(manifest_rows[:5])]
    source = ManifestSource(write_manifest(tmp_path / "m.csv", rows, "csv"))
    assert "classes" not in source.metadata
    assert read_all(source).columns["label"].tolist() == [7, 6, 5, 4, 3]


def test_manifest_missing_files_are_listed_with_lines(
    tmp_path: Path, manifest_rows: list[dict[str, Any]]
) -> None:
    rows = [dict(r) for r in manifest_rows]
    rows[2]["file"] = "photos/cat/nope.jpg"
    rows[5]["file"] = "photos/gone.jpg"
    manifest = write_manifest(tmp_path / "m.csv", rows, "csv")
    with pytest.raises(
        BaleError,
        match=r"2 of 13 files listed do not exist .*line 4: photos/cat/nope.jpg; "
        r"line 7: photos/gone.jpg.*--skip-missing",
    ):
        ManifestSource(manifest)
    source = ManifestSource(manifest, missing="skip")
    batch = read_all(source)
    assert [(s.row, s.where, s.reason) for s in batch.skipped] == [
        (2, "photos/cat/nope.jpg (line 4)", "file not found"),
        (5, "photos/gone.jpg (line 7)", "file not found"),
    ]
    assert len(batch) == 11 and 2 not in batch.rows and 5 not in batch.rows


def test_manifest_root_option(
    tmp_path: Path, folder: tuple[Path, dict[str, bytes]], manifest_rows: list[dict[str, Any]]
) -> None:
    root, files = folder
    rows = [{"image": r["file"].removeprefix("photos/"), "y": r["class"]} for r in manifest_rows]
    manifest = write_manifest(tmp_path / "sub.json", rows, "json")
    with pytest.raises(BaleError, match="do not exist"):
        ManifestSource(manifest)
    batch = read_all(ManifestSource(manifest, root=root))
    assert [files[p] for p in batch.columns["path"]] == batch.columns["image"]


def test_manifest_errors_name_the_line(tmp_path: Path, manifest_rows: list[dict[str, Any]]) -> None:
    rows = [dict(r) for r in manifest_rows]
    rows[3]["box"] = [1, 2, 3]
    with pytest.raises(
        BaleError, match=r"line 4: a value of shape \(3,\) where line 1 has shape \(4,\)"
    ):
        ManifestSource(write_manifest(tmp_path / "a.jsonl", rows, "jsonl"))
    rows = [dict(r) for r in manifest_rows]
    rows[1]["class"] = ""
    with pytest.raises(BaleError, match="line 3: empty label"):
        ManifestSource(write_manifest(tmp_path / "b.csv", rows, "csv"))
    rows = [{"file": r["file"], "path": "x"} for r in manifest_rows]
    with pytest.raises(BaleError, match="'path' would collide"):
        ManifestSource(write_manifest(tmp_path / "c.csv", rows, "csv"), path_column="file")
    rows = [{"where": r["file"]} for r in manifest_rows]
    with pytest.raises(BaleError, match="no path column"):
        ManifestSource(write_manifest(tmp_path / "d.csv", rows, "csv"))
    (tmp_path / "e.csv").write_bytes(b"path,label\n\xff\xfe.jpg,1\n")
    with pytest.raises(BaleError, match="not UTF-8"):
        ManifestSource(tmp_path / "e.csv")
    (tmp_path / "f.json").write_text('[{"path": "a.jpg"}, 3]')
    with pytest.raises(BaleError, match="list of objects"):
        ManifestSource(tmp_path / "f.json")
    (tmp_path / "g.jsonl").write_text('{"path": "a.jpg"}\n{oops\n')
    with pytest.raises(BaleError, match="line 2: not JSON"):
        ManifestSource(tmp_path / "g.jsonl")
    (tmp_path / "h.csv").write_text("path,label\n")
    with pytest.raises(BaleError, match="lists no rows"):
        ManifestSource(tmp_path / "h.csv")


def test_manifest_mixed_text_and_numbers(
    tmp_path: Path, manifest_rows: list[dict[str, Any]]
) -> None:
    rows = [dict(r) for r in manifest_rows]
    rows[0]["score"] = "high"
    with pytest.raises(BaleError, match="entry 2: a number in a column that also holds text"):
        ManifestSource(write_manifest(tmp_path / "a.json", rows, "json"))
    # in CSV every cell is text: a column that is not all numbers stays text
    batch = read_all(ManifestSource(write_manifest(tmp_path / "a.csv", rows, "csv")))
    assert batch.columns["score"][:2] == ["high", "2"]


def test_manifest_values_become_typed_columns() -> None:
    where = ["line 2", "line 3"]
    ints, kind = extra_column("m.csv", [{"n": "3"}, {"n": 4}], where, "n")
    assert kind == Array("int64") and ints.tolist() == [3, 4]  # type: ignore[union-attr]
    boxes, kind = extra_column("m.csv", [{"b": "[1, 2.5]"}, {"b": [3, 4]}], where, "b")
    assert kind == Array("float32", (2,)) and boxes.tolist() == [[1, 2.5], [3, 4]]  # type: ignore[union-attr]
    texts, kind = extra_column("m.csv", [{"t": "a"}, {}], where, "t")
    assert kind == String() and texts == ["a", ""]
    ids, classes = label_ids("m.csv", [{"y": "dog"}, {"y": "cat"}], where, "y", None)
    assert ids.tolist() == [1, 0] and classes == ["cat", "dog"]
    ids, classes = label_ids("m.csv", [{"y": "7"}, {"y": 2}], where, "y", None)
    assert ids.tolist() == [7, 2] and classes is None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_manifest_fifo_is_read_and_a_device_skipped(
    tmp_path: Path, folder: tuple[Path, dict[str, bytes]], manifest_rows: list[dict[str, Any]]
) -> None:
    """A FIFO the manifest names is read like `cat` would (its writer decides when it ends);
    a device is never read (/dev/zero would never end)."""
    _, files = folder
    rows = [dict(r) for r in manifest_rows[:3]]
    (tmp_path / "pipe.jpg").unlink(missing_ok=True)
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    rows += [{**rows[0], "file": "pipe.jpg"}, {**rows[0], "file": "zero.jpg"}]
    source = ManifestSource(write_manifest(tmp_path / "m.csv", rows, "csv"))
    image = files["cat/00.jpg"]

    def feed() -> None:
        with open(tmp_path / "pipe.jpg", "wb") as pipe:  # blocks until the source opens it
            pipe.write(image)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    batch = read_all(source)
    writer.join(30)
    assert [(s.row, s.reason) for s in batch.skipped] == [
        (4, "SpecialFileError: not a regular file: a character device")
    ]
    assert batch.columns["path"][3] == "pipe.jpg" and batch.columns["image"][3] == image
