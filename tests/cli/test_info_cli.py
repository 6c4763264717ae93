"""`bale info` that reads well (issue 15, item 18): aligned columns whatever their names, size
on disk, share and ratio per column, class counts named from the metadata, image sizes from
sampled headers, metadata summarised so 1,000 class names take one line, and --json."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

import bale
from bale.cli.main import EXIT_OK, main

Image = pytest.importorskip("PIL.Image")

LONG = "features/embedding/layer_12_output_mean_pooled_and_normalised_over_tokens"
CLASSES = [f"class_{i:04d}" for i in range(1000)]


def _encoded(height: int, width: int, kind: str) -> bytes:
    out = io.BytesIO()
    pixels = np.full((height, width, 3), 128, np.uint8)
    Image.fromarray(pixels).save(out, format=kind)
    return out.getvalue()


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """An image-folder style file: JPEG and PNG bytes, 1,000 named classes, a long column."""
    path = tmp_path / "photos.bale"
    n = 1200
    sizes = [(20, 30), (40, 60), (60, 90)]  # (height, width)
    images = [_encoded(*sizes[i % 3], "JPEG" if i % 4 else "PNG") for i in range(n)]
    label = np.where(np.arange(n) < 600, 7, np.arange(n) % 40).astype(np.int64)
    bale.write(
        path,
        {
            "image": images,
            "label": label,
            "id": np.arange(n, dtype=np.int64),
            LONG: np.zeros((n, 4), np.float32),
            "caption": [f"photo {i}" for i in range(n)],
        },
        metadata={
            "classes": CLASSES,
            "description": "a very long description " * 50,
            "bale.pack": {"shuffled": True, "skipped": [f"bad_{i}.jpg" for i in range(500)]},
        },
        row_group_rows=200,
    )
    return path


def _info(path: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    assert main(["info", *flags, str(path)]) == EXIT_OK
    return capsys.readouterr().out


def test_columns_line_up_whatever_their_names(
    photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = _info(photos, capsys).splitlines()
    start = lines.index("  columns:") + 1
    table = lines[start : start + 6]
    assert table[0].split() == ["name", "type", "codec", "stored", "share", "ratio", "per", "row"]
    # every row's type and codec start where the header's do (was: a long name pushed them out)
    for heading in ("type", "codec"):
        column = table[0].index(heading)
        assert all(row[column - 2 : column] == "  " and row[column] != " " for row in table[1:])
    # and sizes end where the header's end
    for heading in ("stored", "share", "ratio"):
        end = table[0].index(heading) + len(heading)
        assert all(row[end - 1] != " " and row[end : end + 2] == "  " for row in table[1:])
    long_row = next(row for row in table if row.lstrip().startswith("features/"))
    assert LONG not in long_row and "..." in long_row  # cut in the middle, both ends kept
    assert long_row.split()[0].endswith("over_tokens")


def test_size_on_disk_share_and_ratio_per_column(
    photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    info = json.loads(_info(photos, capsys, "--json"))
    columns = {c["name"]: c for c in info["columns"]}
    image = columns["image"]
    assert image["codec"] == "none" and image["ratio"] == 1.0
    assert 0.5 < image["share"] < 1
    assert sum(c["stored_bytes"] for c in columns.values()) <= info["file_bytes"]
    assert image["stored_bytes_per_row"] == pytest.approx(image["stored_bytes"] / 1200, abs=0.1)
    text = _info(photos, capsys)
    image_row = next(line for line in text.splitlines() if line.startswith("    image "))
    assert f"{image['share']:.1%}" in image_row and "1.00x" in image_row


def test_label_counts_named_from_the_metadata(
    photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _info(photos, capsys, "--top", "3")
    assert (
        '    label: 40 of 1,000 classes present (names from metadata "classes"); rows per '
        "class: min 15, median 15, max 615" in text
    )
    assert (
        "      615  class_0007 (7)\n       15  class_0000 (0)\n       15  class_0001 (1)\n" in text
    )
    assert "      ... 37 more classes (--json lists all)" in text
    assert "    id:" not in text  # every value distinct: an id, not a label

    labels = json.loads(_info(photos, capsys, "--json"))["labels"]
    assert list(labels) == ["label"]
    counts = labels["label"]["counts"]
    assert len(counts) == 40 and sum(c["rows"] for c in counts) == 1200
    assert counts[0] == {"value": 7, "name": "class_0007", "rows": 615}


def test_string_labels_and_labels_without_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.bale"
    bale.write(
        path,
        {"target": ["cat", "dog", "dog"] * 10, "y": np.array([1, 0, 1] * 10, np.int8)},
        metadata={"classes": ["only one"]},
    )
    text = _info(path, capsys)
    assert (
        '    target: 2 classes; rows per class: min 10, median 20, max 20\n      20  "dog"\n'
        in text
    )
    assert "    y: 2 classes; rows per class: min 10, median 20, max 20\n      20  1\n" in text


def test_image_sizes_from_sampled_headers(photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = _info(photos, capsys, "--sample", "24")
    assert (
        "    image  24 of 24 sampled rows are images (16 JPEG, 8 PNG); width x height by pixels: "
        "min 30x20, median 60x40, max 90x60" in text
    )
    images = json.loads(_info(photos, capsys, "--json"))["images"]
    assert list(images) == ["image"]  # captions are bytes of text, not images
    assert images["image"]["sampled_rows"] == 32
    assert images["image"]["height"] == {"min": 20, "median": 40, "max": 60}
    assert images["image"]["largest"] == {"width": 90, "height": 60}


def test_image_sizes_are_of_real_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Portrait and landscape: per-dimension extremes would make up a 500x500 image
    path = tmp_path / "p.bale"
    sizes = [(375, 500), (500, 375), (333, 500)]  # (height, width)
    bale.write(path, {"image": [_encoded(*sizes[i % 3], "JPEG") for i in range(9)]})
    text = _info(path, capsys)
    assert "width x height by pixels: min 500x333, median 375x500, max 500x375" in text
    assert "500x500" not in text


def test_metadata_is_summarised_not_flooded(
    photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _info(photos, capsys)
    assert "    classes: 1,000 names (class_0000, class_0001, class_0002, " in text
    assert "class_0999" not in text and "bad_499" not in text
    assert "(1,200 characters)" in text  # the long description, cut
    assert "      skipped: 500 names (bad_0.jpg, " in text
    assert len(text.splitlines()) < 40
    assert max(len(line) for line in text.splitlines()) < 140
    # --json keeps everything
    metadata = json.loads(_info(photos, capsys, "--json"))["metadata"]
    assert metadata["classes"] == CLASSES


def test_footer_only_reads_no_data(photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A damaged label block: counting it would raise; the footer alone still describes the file
    with bale.open(photos) as ds:
        record = ds.index.blocks[0, ds.schema.index("label")]
    with photos.open("r+b") as f:
        f.seek(int(record["offset"]))
        f.write(b"\x00" * 8)
    info = json.loads(_info(photos, capsys, "--json", "--footer-only"))
    assert "labels" not in info and "images" not in info and info["rows"] == 1200
    assert main(["info", str(photos)]) == 1  # without it, the damage is reported
    err = capsys.readouterr().err
    assert err.startswith(f"bale info: error: file {str(photos)!r}, column 'label', rows 0..199: ")
    assert err.rstrip().endswith(
        "(bale info reads label columns and sampled rows; --footer-only reads only the footer, "
        "bale verify checks every block)"
    )


def test_an_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.bale"
    with bale.Writer(path, {"label": bale.Array("int64", ()), "image": bale.Bytes()}):
        pass
    text = _info(path, capsys)
    assert "rows        0" in text and "labels" not in text


def test_a_wide_table_of_integers_is_not_a_flood_of_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "wide.bale"
    bale.write(path, {f"feature_{i:02d}": np.arange(30) % 3 for i in range(50)})
    text = _info(path, capsys)
    counted = [line for line in text.splitlines() if " classes; rows per class" in line]
    assert [line.split(":")[0].strip() for line in counted] == [
        "feature_00",
        "feature_01",
        "feature_02",
    ]
    assert len(text.splitlines()) < 90


def test_columns_under_a_byte_per_row_show_the_fraction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a bool column compresses to a fraction of a byte per row: it read "0 B", as if empty
    path = tmp_path / "flags.bale"
    n = 5000
    bale.write(
        path,
        {
            "is_valid": np.random.default_rng(0).random(n) < 0.5,
            "constant": np.zeros(n, np.int64),
            "x": np.zeros((n, 8), np.float32),
        },
        metadata={"nested": {"a": {"b": {"c": list(range(50))}}}},
    )
    lines = _info(path, capsys).splitlines()
    row = next(line for line in lines if line.startswith("    is_valid "))
    per_row = row.split("x  ")[-1].strip()
    assert per_row != "0 B" and per_row.endswith(" B") and 0 < float(per_row[:-2]) < 1
    constant = next(line for line in lines if line.startswith("    constant "))
    assert constant.endswith("<0.1 B")
    assert "b: 1 key (c)" in [line.strip() for line in lines]  # was "1 keys"


def test_a_file_without_its_footer_gets_no_footer_only_advice(
    photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `bale info NAME.partial` after a killed writer suggested --footer-only, which needs the
    # very footer that is missing
    cut = photos.with_name("cut.bale")
    cut.write_bytes(photos.read_bytes()[:-100])
    assert main(["info", str(cut)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"bale info: error: file {str(cut)!r}: ") and "bale repair" in err
    assert "--footer-only" not in err
