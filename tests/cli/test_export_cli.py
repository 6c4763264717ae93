"""`bale export` and ops.export: the .npy files hold exactly the rows Dataset reads, as np.save writes them."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale
from bale.cli.main import EXIT_ERROR, EXIT_OK, main
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


# -- --images: viewable files, one folder per class, labels.csv ---------------------------------


def _photo_bytes(fmt: str) -> list[bytes]:
    from PIL import Image
    from skimage import data

    rows = []
    for picture in (data.astronaut(), data.coffee(), data.chelsea(), data.camera()):
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format=fmt)
        rows.append(buffer.getvalue())
    return rows


def test_images_as_files_in_class_folders_with_labels_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jpegs, pngs = _photo_bytes("JPEG"), _photo_bytes("PNG")
    source = tmp_path / "photos.bale"
    images = [jpegs[0], pngs[1], jpegs[2], pngs[3], jpegs[1], jpegs[3], pngs[0], pngs[2]] * 2
    labels = np.array([0, 1, 2, 3, 1, 3, 0, 2] * 2)
    bale.write(
        source,
        {"image": images, "label": labels, "score": np.arange(16, dtype=np.float32)},
        metadata={"classes": ["astronaut", "coffee", "cat", "camera"]},
        row_group_rows=5,
    )
    out = tmp_path / "pics"
    assert main(["export", str(source), str(out), "--images"]) == EXIT_OK
    printed = capsys.readouterr().out
    assert "image: 16 files (astronaut/00.jpg, ..., cat/15.png)" in printed
    classes = ["astronaut", "coffee", "cat", "camera"]
    rows = list(csv.reader((out / "labels.csv").read_text().splitlines()))
    assert rows[0] == ["row", "file", "label", "class"]
    for row, (index, file, label, name) in enumerate(rows[1:]):
        ext = "jpg" if images[row].startswith(b"\xff\xd8") else "png"
        assert (int(index), file) == (row, f"{classes[labels[row]]}/{row:02d}.{ext}")
        assert (label, name) == (str(labels[row]), classes[labels[row]])
        assert (out / file).read_bytes() == images[row]  # as stored: no re-encoding
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*classes, "labels.csv", "label.npy", "score.npy", "metadata.json"]
    )
    assert not list(out.glob("image.*"))  # no .data.npy / .offsets.npy for the images

    # existing image files are refused before anything is written
    (out / "labels.csv").unlink()
    (out / "metadata.json").unlink()
    assert main(["export", str(source), str(out), "--images", "--columns", "image"]) == 2
    err = capsys.readouterr().err
    assert f"{out}/" in err and "it exists" in err and "--overwrite" in err
    assert not (out / "labels.csv").exists()
    assert main(["export", str(source), str(out), "--images", "--overwrite", "-q"]) == EXIT_OK


@pytest.mark.parametrize("shape", [(12, 10), (12, 10, 1), (12, 10, 3), (12, 10, 4), (3, 12, 10)])
def test_uint8_arrays_become_png_files_without_a_label_folder(
    tmp_path: Path, shape: tuple[int, ...]
) -> None:
    from PIL import Image

    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (3, *shape), dtype=np.uint8)
    source = tmp_path / "arrays.bale"
    bale.write(source, {"pixels": pixels})
    out = tmp_path / "out"
    written = export(source, out, images=True)
    assert written == [
        str(out / n) for n in ("0.png", "1.png", "2.png", "labels.csv", "metadata.json")
    ]
    for row in range(3):
        with Image.open(out / f"{row}.png") as image:
            got = np.asarray(image)
        want = pixels[row]
        if shape[0] == 3 and len(shape) == 3 and shape[-1] not in (1, 3, 4):
            want = np.moveaxis(want, 0, -1)
        if want.ndim == 3 and want.shape[-1] == 1:
            want = want[..., 0]
        np.testing.assert_array_equal(got, want)
    assert (
        out / "labels.csv"
    ).read_text() == "row,file,label,class\n0,0.png,,\n1,1.png,,\n2,2.png,,\n"


def test_images_class_folder_names_stay_inside_and_string_labels(tmp_path: Path) -> None:
    jpegs = _photo_bytes("JPEG")
    source = tmp_path / "odd.bale"
    bale.write(source, {"image": jpegs[:3], "target": ["..", "a/b", ""]})
    out = tmp_path / "deep" / "out"
    export(source, out, images=True)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.jpg")) == [
        "%2E%2E/0.jpg",
        "_/2.jpg",
        "a%2Fb/1.jpg",
    ]
    assert not list((tmp_path / "deep").glob("*.jpg"))


def test_images_errors(sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    features = tmp_path / "feats.bale"
    bale.write(features, {"x": np.zeros((4, 3), np.float32)})
    with pytest.raises(bale.BaleError, match=r"none of the columns \['x'\] holds images"):
        export(features, tmp_path / "o", images=True)
    assert main(["export", str(sample), str(tmp_path / "o"), "--label", "x"]) == 2
    assert "--label goes with --images" in capsys.readouterr().err
    # the sample's 4x4x3 uint8 'image' column is exported as pictures, its 'caption' as .npy
    assert main(["export", str(sample), str(tmp_path / "o"), "--images"]) == EXIT_OK
    assert (tmp_path / "o" / "caption.data.npy").exists()
    assert len(list((tmp_path / "o").glob("*.png"))) == 130


def test_export_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "--images" in text and "labels.csv" in text


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_bar_on_a_terminal_and_none_with_quiet(
    sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["export", str(sample), str(tmp_path / "a")]) == EXIT_OK
    assert "exporting" in terminal.getvalue()
    quiet = _Terminal()
    monkeypatch.setattr("sys.stderr", quiet)
    assert main(["export", str(sample), str(tmp_path / "b"), "--quiet"]) == EXIT_OK
    assert quiet.getvalue() == ""


def test_images_of_an_unlabeled_split_keep_their_source_names(tmp_path: Path) -> None:
    # A Kaggle test folder (test_stg1/img_00005.jpg, no classes): labels.csv listed only
    # 0.jpg ... with empty labels, and the original names, which predictions are keyed by,
    # were left in path.data.npy + path.offsets.npy
    from PIL import Image
    from skimage import data

    folder = tmp_path / "test_stg1"
    folder.mkdir()
    photo = data.coffee()
    for i in range(3):
        Image.fromarray(photo[i * 50 : i * 50 + 64, :64]).save(folder / f"img_{i:05d}.jpg")
    packed = tmp_path / "test.bale"
    bale.pack(folder, packed, shuffle=False)
    assert main(["export", str(packed), str(tmp_path / "out"), "--images", "-q"]) == EXIT_OK
    with open(tmp_path / "out" / "labels.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["row", "file", "label", "class", "path"]
    assert [r[4].rsplit("/", 1)[-1] for r in rows[1:]] == [f"img_{i:05d}.jpg" for i in range(3)]
    for row in rows[1:]:
        original = (tmp_path / "test_stg1" / row[4].rsplit("/", 1)[-1]).read_bytes()
        assert (tmp_path / "out" / row[1]).read_bytes() == original


def test_without_pillow_show_and_export_images_say_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # They ended in a traceback, and export --images had written the other columns first
    source = tmp_path / "arrays.bale"
    bale.write(source, {"image": np.zeros((3, 8, 8, 3), np.uint8), "y": np.arange(3)})
    monkeypatch.setitem(__import__("sys").modules, "PIL", None)  # as on a core-only install
    out = tmp_path / "out"
    assert main(["export", str(source), str(out), "--images", "-q"]) == 2
    err = capsys.readouterr().err
    assert (
        err == "bale export: error: drawing and writing images needs Pillow: pip install Pillow\n"
    )
    assert not out.exists() or not any(out.iterdir())
    assert main(["show", str(source), "-o", str(tmp_path / "s.png")]) == 2
    assert capsys.readouterr().err.startswith("bale show: error: drawing and writing images needs")


def test_a_dash_is_not_taken_for_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bale export FILE -` made a folder named '-' in the working directory."""
    source = tmp_path / "a.bale"
    bale.write(source, {"x": np.arange(3)})
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(source), "-"]) == EXIT_ERROR
    assert "standard output" in capsys.readouterr().err
    assert not (tmp_path / "-").exists()
