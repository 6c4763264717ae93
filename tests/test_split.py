"""Splitting a file: every row once, bytes equal, copy vs re-encode, stratification, ratios, failures."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale
from bale._core.dataset import reader_of
from bale.codecs import codec_spec
from bale.ops.split import class_counts, largest_remainder, shuffled_when_packed

N = 1000
GROUP_ROWS = 64
SHUFFLED = {"bale.pack": {"shuffled": True}}


def make_columns(n: int = N, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "id": np.arange(n, dtype=np.int64),
        "image": rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8),
        "label": rng.integers(0, 5, n).astype(np.int32),
        "jpeg": [
            b"\xff\xd8\xff" + bytes(rng.integers(0, 255, i % 37, dtype=np.uint8)) for i in range(n)
        ],
        "caption": [f"row {i} ü {'x' * (i % 7)}" for i in range(n)],
    }


def make_file(path: Path, metadata: dict[str, Any] | None = None, **options: Any) -> Path:
    columns = options.pop("columns", None) or make_columns()
    bale.write(
        path,
        columns,
        row_group_rows=GROUP_ROWS,
        metadata={"classes": ["a", "b"], **(metadata or {})},
        **options,
    )
    return path


def read_all(path: Path) -> dict[str, Any]:
    with bale.open(path) as ds:
        return ds.read()


def assert_rows_equal(got: dict[str, Any], source: dict[str, Any], rows: np.ndarray) -> None:
    """``got`` holds exactly the source rows ``rows``, in that order, byte for byte."""
    for name, values in source.items():
        if isinstance(values, np.ndarray):
            np.testing.assert_array_equal(got[name], values[rows])
            assert got[name].dtype == values.dtype
        else:
            assert got[name] == [values[i] for i in rows.tolist()], name


def check_partition(report: bale.SplitReport, source: dict[str, Any]) -> list[np.ndarray]:
    """Every source row is in exactly one output, with its bytes; returns each output's ids."""
    ids = []
    for output in report.outputs:
        got = read_all(Path(output.path))
        assert len(got["id"]) == output.rows
        assert_rows_equal(got, source, got["id"])
        ids.append(got["id"])
    everything = np.concatenate(ids)
    np.testing.assert_array_equal(np.sort(everything), np.arange(len(source["id"])))
    return ids


@pytest.fixture
def source() -> dict[str, Any]:
    return make_columns()


def test_unshuffled_file_is_split_by_seeded_permutation(
    tmp_path: Path, source: dict[str, Any]
) -> None:
    path = make_file(tmp_path / "all.bale")
    report = bale.split(path)
    assert report.method == "random"
    assert [o.name for o in report.outputs] == ["train", "valid", "test"]
    assert [o.path for o in report.outputs] == [
        str(tmp_path / f"{n}.bale") for n in ("train", "valid", "test")
    ]
    assert [o.rows for o in report.outputs] == [800, 100, 100]
    ids = check_partition(report, source)
    for output, got in zip(report.outputs, ids, strict=True):
        assert output.rows_reencoded == output.rows and output.groups_copied == 0
        assert (np.diff(got) > 0).all()  # rows keep the input's order
    # Not a contiguous cut: rows of every part of the input in the test split.
    assert ids[2].min() < 200 and ids[2].max() > 800
    # The same seed gives the same split; another seed another one.
    again = bale.split(path, out_dir=tmp_path / "again")
    np.testing.assert_array_equal(read_all(Path(again.outputs[2].path))["id"], ids[2])
    other = bale.split(path, seed=1, out_dir=tmp_path / "other")
    assert not np.array_equal(read_all(Path(other.outputs[2].path))["id"], ids[2])


def test_metadata_records_how_each_output_was_made(tmp_path: Path) -> None:
    path = make_file(tmp_path / "all.bale")
    bale.split(path, (0.7, 0.3), names=("fit", "check"), seed=5)
    with bale.open(tmp_path / "check.bale") as ds:
        assert ds.metadata["classes"] == ["a", "b"]
        assert ds.metadata["bale.split"] == {
            "source": str(path),
            "source_rows": N,
            "ratios": [0.7, 0.3],
            "names": ["fit", "check"],
            "this": "check",
            "seed": 5,
            "stratify": None,
            "rows": 300,
            "method": "random",
        }


def test_shuffled_file_is_cut_by_copying_row_groups(tmp_path: Path, source: dict[str, Any]) -> None:
    path = make_file(tmp_path / "all.bale", SHUFFLED)
    report = bale.split(path)
    assert report.method == "contiguous"
    ids = check_partition(report, source)
    np.testing.assert_array_equal(ids[0], np.arange(800))
    np.testing.assert_array_equal(ids[1], np.arange(800, 900))
    # Groups of 64 rows: the cut at 800 falls in group 12 (768..831), the cut at 900 in group
    # 14 (896..959); only those are re-encoded.
    tallies = [(o.groups_copied, o.rows_copied, o.rows_reencoded) for o in report.outputs]
    assert tallies == [(12, 768, 32), (1, 64, 36), (1, 40, 60)]
    with bale.open(path) as original, bale.open(report.outputs[0].path) as train:
        assert train.metadata["bale.split"]["source_range"] == [0, 800]
        assert train.metadata["bale.split"]["seed"] is None
        assert train.metadata["bale.pack"] == {"shuffled": True}
        # Copied, not recompressed: the stored blocks are the input's bytes.
        for group in (0, 11):
            copied, stored = (
                reader_of(train).stored_group(group),
                reader_of(original).stored_group(group),
            )
            for name, block in stored.blocks.items():
                assert bytes(copied.blocks[name].parts[0]) == bytes(block.parts[0])
                assert copied.blocks[name].codec == block.codec
        assert train.row_group_sizes == (64,) * 12 + (32,)
        assert train.schema == original.schema


@pytest.mark.parametrize("option", [{"shuffle": False}, {"assume_shuffled": True}])
def test_contiguous_split_on_request(
    tmp_path: Path, source: dict[str, Any], option: dict[str, Any]
) -> None:
    path = make_file(tmp_path / "all.bale")
    report = bale.split(path, (0.5, 0.5), names=("a", "b"), **option)
    assert report.method == "contiguous"
    assert [o.groups_copied for o in report.outputs] == [7, 8]
    ids = check_partition(report, source)
    np.testing.assert_array_equal(ids[1], np.arange(500, 1000))


def test_shuffle_true_permutes_even_a_shuffled_file(tmp_path: Path) -> None:
    path = make_file(tmp_path / "all.bale", SHUFFLED)
    assert bale.split(path, shuffle=True).method == "random"


def test_a_concatenation_of_shuffled_files_does_not_count_as_shuffled() -> None:
    assert shuffled_when_packed(SHUFFLED)
    assert not shuffled_when_packed({**SHUFFLED, "bale.concat": {"sources": ["a", "b"]}})
    assert not shuffled_when_packed({"bale.pack": {"shuffled": False}})
    assert not shuffled_when_packed({"bale.pack": "shuffled"})


def test_each_row_group_is_decoded_at_most_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_file(tmp_path / "all.bale", SHUFFLED)
    decoded: list[int] = []
    original = bale.Dataset.read_row_group

    def counting(self: bale.Dataset, group: int, columns: Any = None) -> Any:
        decoded.append(group)
        return original(self, group, columns)

    monkeypatch.setattr(bale.Dataset, "read_row_group", counting)
    bale.split(path, shuffle=True)
    assert sorted(decoded) == list(range(16))
    decoded.clear()
    bale.split(path, out_dir=tmp_path / "copy")
    assert decoded == [12, 14]  # only the groups a cut falls in


def test_stratified_split_keeps_class_proportions(tmp_path: Path) -> None:
    sizes = {0: 500, 1: 301, 2: 150, 3: 40, 4: 3, 5: 2, 6: 4}
    labels = np.concatenate([np.full(size, c, np.int32) for c, size in sizes.items()])
    n = len(labels)
    columns = {**make_columns(n), "label": labels}  # sorted by class, like many raw datasets
    path = make_file(tmp_path / "all.bale", columns=columns)
    ratios = (0.8, 0.1, 0.1)
    report = bale.split(path, ratios, stratify="label", seed=3)
    assert report.method == "stratified"
    ids = check_partition(report, columns)
    assert sum(o.rows for o in report.outputs) == n
    for c, size in sizes.items():
        per_split = [int((labels[got] == c).sum()) for got in ids]
        assert sum(per_split) == size
        if size >= 3:
            assert min(per_split) >= 1, (c, per_split)  # every class in every split
        if size < 3 or all(size * r >= 1 for r in ratios):  # not moved to fill every split
            for count, r in zip(per_split, ratios, strict=True):
                assert abs(count - size * r) <= 1, (c, per_split)
    assert sorted(int((labels[got] == 5).sum()) for got in ids) == [0, 1, 1]  # 2 rows, 3 splits
    with bale.open(report.outputs[1].path) as ds:
        assert ds.metadata["bale.split"]["stratify"] == "label"
        assert ds.metadata["bale.split"]["method"] == "stratified"


def test_stratified_by_a_string_column_matches_integer_labels(tmp_path: Path) -> None:
    columns = make_columns()
    names = np.array(["cat", "dog", "emu", "fox", "gnu"])
    columns["species"] = [str(s) for s in names[columns["label"]]]
    path = make_file(tmp_path / "all.bale", columns=columns)
    by_int = bale.split(path, stratify="label", out_dir=tmp_path / "int")
    by_str = bale.split(path, stratify="species", out_dir=tmp_path / "str")
    for a, b in zip(by_int.outputs, by_str.outputs, strict=True):
        np.testing.assert_array_equal(read_all(Path(a.path))["id"], read_all(Path(b.path))["id"])


def test_stratify_rejects_missing_or_unsuitable_columns(tmp_path: Path) -> None:
    path = make_file(tmp_path / "all.bale")
    with pytest.raises(bale.SchemaError, match="no such column"):
        bale.split(path, stratify="nope")
    with pytest.raises(bale.SchemaError, match="uint8") as raised:
        bale.split(path, stratify="image")
    assert raised.value.column == "image" and raised.value.path == str(path)
    with pytest.raises(ValueError, match="shuffle=False"):
        bale.split(path, stratify="label", shuffle=False)
    assert sorted(os.listdir(tmp_path)) == ["all.bale"]


@pytest.mark.parametrize(
    ("ratios", "names", "message"),
    [
        ((0.8, 0.1), ("a", "b"), "add up to 1"),
        ((0.8, 0.3, -0.1), ("a", "b", "c"), "positive"),
        ((1.0, 0.0), ("a", "b"), "positive"),
        ((0.5, 0.5), ("a", "b", "c"), "2 ratios"),
        ((0.5, 0.5), ("a", "a"), "unique"),
        ((0.5, 0.5), ("a", "sub/b"), "file-name"),
        ((float("nan"), 0.5), ("a", "b"), "positive"),
    ],
)
def test_bad_ratios_and_names_are_refused(
    tmp_path: Path, ratios: tuple[float, ...], names: tuple[str, ...], message: str
) -> None:
    path = make_file(tmp_path / "all.bale")
    with pytest.raises(ValueError, match=message):
        bale.split(path, ratios, names=names)
    assert sorted(os.listdir(tmp_path)) == ["all.bale"]


def test_ratios_within_tolerance_are_accepted(tmp_path: Path) -> None:
    path = make_file(tmp_path / "all.bale")
    report = bale.split(path, (1 / 3, 1 / 3, 1 / 3))
    assert [o.rows for o in report.outputs] == [334, 333, 333]


def test_a_split_without_rows_is_an_error_unless_allowed(tmp_path: Path) -> None:
    path = make_file(tmp_path / "all.bale", columns=make_columns(5))
    with pytest.raises(ValueError, match=r"\['test'\] .* no rows"):
        bale.split(path, (0.8, 0.15, 0.05))
    assert sorted(os.listdir(tmp_path)) == ["all.bale"]
    report = bale.split(path, (0.8, 0.15, 0.05), allow_empty=True)
    assert [o.rows for o in report.outputs] == [4, 1, 0]
    with bale.open(tmp_path / "test.bale") as ds:
        assert len(ds) == 0
        assert ds.schema.names == ["id", "image", "label", "jpeg", "caption"]


def test_existing_outputs_are_kept_unless_overwrite(tmp_path: Path) -> None:
    path = make_file(tmp_path / "all.bale")
    (tmp_path / "valid.bale").write_bytes(b"precious")
    with pytest.raises(bale.TargetExistsError) as raised:
        bale.split(path)
    assert raised.value.path == str(tmp_path / "valid.bale")
    assert sorted(os.listdir(tmp_path)) == ["all.bale", "valid.bale"]
    assert (tmp_path / "valid.bale").read_bytes() == b"precious"
    report = bale.split(path, overwrite=True)
    assert len(bale.open(report.outputs[1].path)) == 100


def test_an_output_may_not_replace_the_input(tmp_path: Path) -> None:
    path = make_file(tmp_path / "train.bale")
    with pytest.raises(ValueError, match="replace the input"):
        bale.split(path, overwrite=True)
    with pytest.raises(ValueError, match="not all different"):
        bale.split(path, pattern="same.bale")


def test_out_dir_and_pattern_name_the_outputs(tmp_path: Path) -> None:
    path = make_file(tmp_path / "cifar.bale")
    report = bale.split(
        path,
        (0.9, 0.1),
        names=("train", "test"),
        out_dir=tmp_path / "out" / "deep",
        pattern="{stem}-{name}.bale",
    )
    assert [o.path for o in report.outputs] == [
        str(tmp_path / "out" / "deep" / "cifar-train.bale"),
        str(tmp_path / "out" / "deep" / "cifar-test.bale"),
    ]
    with pytest.raises(ValueError, match="pattern"):
        bale.split(path, pattern="{nam}.bale")


def test_codecs_and_segment_size_are_kept(tmp_path: Path, source: dict[str, Any]) -> None:
    path = make_file(
        tmp_path / "all.bale", codecs={"caption": "zstd:9", "image": "lz4"}, segment_bytes=4096
    )
    for shuffle in (False, True):
        report = bale.split(path, shuffle=shuffle, overwrite=True)
        check_partition(report, source)
        with bale.open(path) as original, bale.open(report.outputs[0].path) as train:
            assert train.schema == original.schema
            assert train.index.segment_bytes == 4096
            assert {codec_spec(c) for c in train.index.codecs} >= {"zstd:9", "lz4"}


def test_damaged_input_leaves_no_output(tmp_path: Path) -> None:
    path = make_file(tmp_path / "all.bale", SHUFFLED)
    with bale.open(path) as ds:
        record = ds.index.blocks[13, ds.schema.index("caption")]  # copied whole into "valid"
    with path.open("r+b") as f:
        f.seek(int(record["offset"]) + 5)
        byte = f.read(1)
        f.seek(int(record["offset"]) + 5)
        f.write(bytes([byte[0] ^ 0xFF]))
    for shuffle in (None, True):
        with pytest.raises(bale.CorruptFileError) as raised:
            bale.split(path, shuffle=shuffle)
        assert raised.value.path == str(path)
        assert raised.value.column == "caption"
        assert raised.value.rows == (832, 896)
        assert sorted(os.listdir(tmp_path)) == ["all.bale"]  # no outputs, no .partial files


def test_a_failure_after_some_outputs_were_published_removes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_file(tmp_path / "all.bale")
    closes = 0
    original = bale.Writer.close

    def failing_close(self: bale.Writer) -> None:
        nonlocal closes
        closes += 1
        if closes == 3:
            self.abort()
            raise bale.BaleWriteError("disk full (simulated)", path=self.path)
        original(self)

    monkeypatch.setattr(bale.Writer, "close", failing_close)
    with pytest.raises(bale.BaleWriteError) as raised:
        bale.split(path)
    assert raised.value.detail == "disk full (simulated)"
    assert sorted(os.listdir(tmp_path)) == ["all.bale"]


def test_largest_remainder_adds_up_exactly() -> None:
    assert largest_remainder(10, [0.8, 0.1, 0.1]) == [8, 1, 1]
    assert largest_remainder(1000, [1 / 3] * 3) == [334, 333, 333]
    assert largest_remainder(7, [0.5, 0.25, 0.25]) == [3, 2, 2]  # 3.5, 1.75, 1.75
    assert largest_remainder(5, [0.5, 0.5]) == [3, 2]  # a tie goes to the first
    assert largest_remainder(0, [0.5, 0.5]) == [0, 0]
    rng = np.random.default_rng(0)
    for _ in range(200):
        ratios = rng.random(int(rng.integers(1, 6))) + 0.01
        ratios = ratios / ratios.sum()
        total = int(rng.integers(0, 10_000))
        counts = largest_remainder(total, ratios.tolist())
        assert sum(counts) == total
        assert all(abs(c - total * r) < 1 for c, r in zip(counts, ratios.tolist(), strict=True))


def test_class_counts_rows_add_up_and_stay_within_one_row() -> None:
    rng = np.random.default_rng(1)
    for _ in range(300):
        k = int(rng.integers(1, 5))
        ratios = [Fraction(float(r)) for r in rng.random(k) + 0.05]
        sizes = rng.integers(0, 300, int(rng.integers(1, 20))).tolist()
        table = class_counts(sizes, ratios)
        whole = sum(ratios)
        small = any(size >= k and size * r / whole < 1 for size in sizes for r in ratios)
        for size, row in zip(sizes, table, strict=True):
            assert sum(row) == size and min(row) >= 0
            if size >= k:
                assert min(row) >= 1
            if not small:
                assert all(abs(c - size * r / whole) <= 1 for c, r in zip(row, ratios, strict=True))
        if not small:  # split sizes equal those of an unstratified split
            totals = [sum(row[i] for row in table) for i in range(k)]
            assert totals == largest_remainder(sum(sizes), ratios)


def test_a_file_shuffled_by_bale_pack_is_cut_by_copying(tmp_path: Path) -> None:
    if not hasattr(bale, "pack"):
        pytest.skip("bale.pack is not available")
    npz = tmp_path / "data.npz"
    np.savez(npz, id=np.arange(500), x=np.arange(2000, dtype=np.float32).reshape(500, 4))
    bale.pack(npz, tmp_path / "packed.bale", progress=False, row_group_bytes=2000)
    report = bale.split(tmp_path / "packed.bale", out_dir=tmp_path / "out")
    assert report.method == "contiguous" and "shuffled when packed" in report.reason
    assert report.outputs[0].groups_copied >= 3
    ids = [read_all(Path(o.path))["id"] for o in report.outputs]
    np.testing.assert_array_equal(np.sort(np.concatenate(ids)), np.arange(500))
    assert not np.array_equal(ids[0], np.arange(400))  # the packed order was shuffled


def test_output_names_for_urls() -> None:
    """Where outputs go when the input or out_dir is a URL (no request is made here)."""
    from bale.io import locations as _remote

    assert _remote.parent_of("s3://b/a/all.bale") == "s3://b/a"
    assert _remote.parent_of("s3://b/all.bale") == "s3://b"
    assert _remote.parent_of("https://h/d/all.bale?sig=x/y") == "https://h/d"
    assert _remote.parent_of("/data/all.bale") == "/data"
    assert _remote.join("s3://b/splits", "train.bale") == "s3://b/splits/train.bale"
    assert _remote.join("s3://b/splits/", "train.bale") == "s3://b/splits/train.bale"
    assert _remote.join("s3://", "b/train.bale") == "s3://b/train.bale"
    with pytest.raises(ValueError, match="query"):
        _remote.join("s3://b/splits?x=1", "train.bale")
    assert _remote.identity("s3a://b/x/../t.bale") == _remote.identity("s3://b/t.bale")
    assert _remote.identity("s3://b/t.bale") != _remote.identity("gs://b/t.bale")
    for url in ("s3://b/t.bale", "gs://b/t.bale", "az://c/t.bale", "abfss://c@a.dfs/t.bale"):
        _remote.check_writable(url)
    for url in ("https://h/t.bale", "s3://b", "simplecache::s3://b/t.bale", "memory://t.bale"):
        with pytest.raises(ValueError, match="s3://, gs:// and az://"):
            _remote.check_writable(url)
    with pytest.raises(ValueError, match="s3://, gs:// and az://"):
        bale.split("/nonexistent/all.bale", out_dir="https://h/splits")  # before opening it
