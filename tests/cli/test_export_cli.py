"""`bale export` and ops.export: the .npy files hold exactly the rows Dataset reads, as np.save writes them."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale
from bale.cli.main import EXIT_OK, main
from bale.format.schema import Array, Bytes, String
from bale.ops.export import export


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _expected_files(ds: Any, name: str) -> dict[str, bytes]:
    """The files export should write for column ``name``, built from rows read through Dataset."""
    values = ds.read(columns=[name])[name]
    if isinstance(values, np.ndarray):
        return {f"{name}.npy": _npy_bytes(values)}
    rows = [v.encode() if isinstance(v, str) else v for v in values]
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=offsets[1:])
    return {
        f"{name}.data.npy": _npy_bytes(np.frombuffer(b"".join(rows), dtype=np.uint8)),
        f"{name}.offsets.npy": _npy_bytes(offsets),
    }


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "sample.bale"
    rng = np.random.default_rng(1)
    bale.write(
        path,
        {
            "image": rng.integers(0, 255, (130, 4, 4, 3), dtype=np.uint8),
            "score": rng.random(130, dtype=np.float32),
            "blob": [bytes(rng.integers(0, 255, i % 7, dtype=np.uint8)) for i in range(130)],
            "empty": [b""] * 130,
            "caption": [f"zeile {i} ü" * (i % 3) for i in range(130)],
        },
        row_group_rows=32,
        metadata={"classes": ["ü", "b"]},
    )
    return path


def test_export_files_equal_np_save_of_the_rows_dataset_reads(sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["export", str(sample), str(out)]) == EXIT_OK
    with bale.open(sample) as ds:
        assert ds.num_row_groups == 5
        expected: dict[str, bytes] = {}
        for name in ds.schema.names:
            expected.update(_expected_files(ds, name))
    for file_name, content in expected.items():
        assert (out / file_name).read_bytes() == content, file_name
    assert sorted(p.name for p in out.iterdir()) == sorted([*expected, "metadata.json"])
    assert json.loads((out / "metadata.json").read_text(encoding="utf-8")) == {
        "classes": ["ü", "b"]
    }


def test_export_function_returns_paths_and_reports_each_column(
    sample: Path, tmp_path: Path
) -> None:
    done: list[tuple[str, list[str]]] = []
    written = export(
        sample, tmp_path / "out", ["caption", "score"], on_column=lambda n, f: done.append((n, f))
    )
    assert done == [
        ("caption", ["caption.data.npy", "caption.offsets.npy"]),
        ("score", ["score.npy"]),
    ]
    names = ["caption.data.npy", "caption.offsets.npy", "score.npy", "metadata.json"]
    assert written == [str(tmp_path / "out" / n) for n in names]
    with pytest.raises(FileExistsError, match="--overwrite"):
        export(sample, tmp_path / "out", ["score"])
    assert export(sample, tmp_path / "out", ["score"], overwrite=True)[0].endswith("score.npy")
    with pytest.raises(bale.BaleError, match="no column 'nope'"):
        export(sample, tmp_path / "out", ["nope"])


def test_export_of_a_file_without_rows(tmp_path: Path) -> None:
    path = tmp_path / "empty.bale"
    bale.Writer(path, {"x": Array("float32", (2,)), "b": Bytes(), "s": String()}).close()
    out = tmp_path / "out"
    assert main(["export", str(path), str(out)]) == EXIT_OK
    assert (out / "x.npy").read_bytes() == _npy_bytes(np.zeros((0, 2), np.float32))
    for name in ("b", "s"):
        assert (out / f"{name}.data.npy").read_bytes() == _npy_bytes(np.zeros(0, np.uint8))
        assert (out / f"{name}.offsets.npy").read_bytes() == _npy_bytes(np.zeros(1, np.int64))


def test_a_failed_export_leaves_whole_files_only(sample: Path, tmp_path: Path) -> None:
    """Each file is written as NAME.partial and renamed when whole: a damaged block in a later
    column leaves the earlier columns' files, no partial file and no metadata.json."""
    with bale.open(sample) as ds:
        record = ds.index.blocks[3, ds.schema.index("caption")]
    with sample.open("r+b") as f:
        f.seek(int(record["offset"]) + 3)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    out = tmp_path / "out"
    with pytest.raises(bale.CorruptFileError, match="'caption'"):
        export(sample, out, ["score", "caption", "image"])
    assert sorted(p.name for p in out.iterdir()) == ["score.npy"]
    with bale.open(sample) as ds:
        assert (out / "score.npy").read_bytes() == _npy_bytes(ds.read(columns=["score"])["score"])


def test_existing_files_are_refused_before_anything_is_written(
    sample: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "caption.offsets.npy").write_bytes(b"old")
    with pytest.raises(bale.TargetExistsError, match="--overwrite") as refused:
        export(sample, out, ["score", "caption"])
    assert refused.value.path == str(out / "caption.offsets.npy")
    assert sorted(p.name for p in out.iterdir()) == ["caption.offsets.npy"]


def test_a_column_name_with_a_slash_never_writes_outside_the_folder(tmp_path: Path) -> None:
    """Column names may hold any text (docs/FORMAT.md); as file names, `%`, `/`, `\\` and NUL
    are escaped, so `../x` stays inside the output folder and unquoting gives the name back."""
    import urllib.parse

    source = tmp_path / "names.bale"
    values = {"../x": np.arange(5, dtype=np.int32), "a/b": np.ones((5, 2), np.float32)}
    bale.write(source, values)
    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    export(source, out)
    written = sorted(p.name for p in out.iterdir())
    assert written == ["..%2Fx.npy", "a%2Fb.npy", "metadata.json"]
    assert not (tmp_path / "deep" / "x.npy").exists() and not (out / "a").exists()
    for name in ("../x", "a/b"):
        stem = name.replace("/", "%2F")
        assert urllib.parse.unquote(stem) == name
        np.testing.assert_array_equal(np.load(out / f"{stem}.npy"), values[name])
