"""The `bale split` and `bale concat` commands: outputs, summaries, exit codes, a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bale
from bale.cli.main import EXIT_DAMAGED, EXIT_ERROR, EXIT_OK, main

N = 400
REWRITTEN_NOTE = (
    "rewritten: rows decoded and compressed again into new row groups with the same codecs, "
    "losslessly (values and JPEG/PNG bytes unchanged); copied: blocks kept byte for byte"
)


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "all.bale"
    rng = np.random.default_rng(0)
    bale.write(
        path,
        {
            "id": np.arange(N),
            "image": rng.integers(0, 255, (N, 4, 4, 3), dtype=np.uint8),
            "label": np.repeat(np.arange(4), N // 4),
            "caption": [f"row {i}" for i in range(N)],
        },
        row_group_rows=50,
        metadata={"bale.pack": {"shuffled": True}},
    )
    return path


def ids(path: Path) -> np.ndarray:
    with bale.open(path) as ds:
        return np.asarray(ds["id"][:])


def test_split_writes_one_file_per_name_and_prints_a_summary(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "splits"
    code = main(["split", str(sample), "--ratios", "0.8,0.1,0.1", "--out-dir", str(out)])
    assert code == EXIT_OK
    text = capsys.readouterr().out
    assert "split contiguous" in text and "shuffled when packed" in text
    assert (
        f"train  {out / 'train.bale'}: 320 rows (300 copied as stored in 6 row groups, "
        "20 rewritten)" in text
    )
    assert "re-encoded" not in text  # read as lossy image re-compression (issue 15, item 9)
    assert text.rstrip().endswith(REWRITTEN_NOTE)
    assert f"test   {out / 'test.bale'}: 40 rows" in text
    np.testing.assert_array_equal(ids(out / "valid.bale"), np.arange(320, 360))


def test_split_of_images_says_rows_were_rewritten_losslessly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The report: an unshuffled image file split at random printed "2560 re-encoded"
    path = tmp_path / "photos.bale"
    jpegs = [b"\xff\xd8\xff\xe0" + bytes([i % 256]) * 50 + b"\xff\xd9" for i in range(200)]
    bale.write(path, {"jpeg": jpegs, "label": np.arange(200) % 2}, row_group_rows=20)
    assert main(["split", str(path), "--ratios", "0.5,0.5", "--names", "a,b"]) == EXIT_OK
    text = capsys.readouterr().out
    assert "re-encoded" not in text
    assert "split random: not known to be shuffled: rows assigned by a seeded permutation, " in text
    assert (
        f"a  {tmp_path / 'a.bale'}: 100 rows (0 copied as stored in 0 row groups, 100 rewritten)"
        in text
    )
    assert text.rstrip().endswith(REWRITTEN_NOTE)
    with bale.open(tmp_path / "a.bale") as a, bale.open(tmp_path / "b.bale") as b:
        assert sorted(a["jpeg"][:] + b["jpeg"][:]) == sorted(jpegs)  # byte for byte


def test_concat_of_differently_framed_inputs_says_rewritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bale.write(tmp_path / "a.bale", {"x": np.arange(50)}, row_group_rows=25)
    bale.write(tmp_path / "b.bale", {"x": np.arange(50)}, row_group_rows=25, segment_bytes=1024)
    out = tmp_path / "j.bale"
    assert main(["concat", str(tmp_path / "a.bale"), str(tmp_path / "b.bale"), str(out)]) == 0
    text = capsys.readouterr().out
    assert (
        f"from {tmp_path / 'b.bale'}: 50 rows (0 row groups copied as stored, 50 rows rewritten)"
        in text
    )
    assert "re-encoded" not in text and text.rstrip().endswith(REWRITTEN_NOTE)


def test_split_stratified_with_names_and_seed(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["split", str(sample), "--ratios", "0.5,0.5", "--names", "a,b", "--stratify", "label"]
    assert main([*args, "--seed", "7", "--pattern", "{stem}_{name}.bale"]) == EXIT_OK
    assert "split stratified" in capsys.readouterr().out
    a, b = ids(tmp_path / "all_a.bale"), ids(tmp_path / "all_b.bale")
    np.testing.assert_array_equal(np.sort(np.concatenate([a, b])), np.arange(N))
    assert np.bincount(a // 100).tolist() == [50, 50, 50, 50]  # label is id // 100
    with bale.open(tmp_path / "all_a.bale") as ds:
        assert ds.metadata["bale.split"]["seed"] == 7


def test_split_shuffle_flags(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["split", str(sample), "--shuffle", "--out-dir", str(tmp_path / "r")]) == EXIT_OK
    assert "split random" in capsys.readouterr().out
    assert main(["split", str(sample), "--no-shuffle", "--out-dir", str(tmp_path / "c")]) == EXIT_OK
    assert "split contiguous" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ratios", "0.5,0.6"], "ratios"),
        (["--ratios", "0.5,0.5", "--names", "a,a"], "unique"),
        (["--stratify", "missing"], "no such column"),
    ],
)
def test_split_errors_exit_2_with_a_message(
    sample: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["split", str(sample), *args]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("bale split: error:") and message in err
    assert sorted(os.listdir(sample.parent)) == ["all.bale"]


def test_split_refuses_existing_outputs(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (sample.parent / "test.bale").write_bytes(b"x")
    assert main(["split", str(sample)]) == EXIT_ERROR
    assert "test.bale" in capsys.readouterr().err
    assert sorted(os.listdir(sample.parent)) == ["all.bale", "test.bale"]
    assert (sample.parent / "test.bale").read_bytes() == b"x"
    assert main(["split", str(sample), "--overwrite"]) == EXIT_OK


def test_unparsable_ratios_are_a_usage_error(
    sample: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["split", str(sample), "--ratios", "0.8,a"])
    assert exited.value.code == 2
    assert "comma-separated numbers" in capsys.readouterr().err


def test_concat_joins_inputs_into_the_last_argument(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bale.split(sample, (0.5, 0.5), names=("a", "b"))
    out = tmp_path / "joined.bale"
    assert main(["concat", str(tmp_path / "a.bale"), str(tmp_path / "b.bale"), str(out)]) == EXIT_OK
    text = capsys.readouterr().out
    assert f"{out}: {N} rows" in text
    assert "0 rows rewritten" in text and "re-encoded" not in text
    np.testing.assert_array_equal(ids(out), np.arange(N))
    assert main(["concat", str(tmp_path / "a.bale"), str(out)]) == EXIT_ERROR  # exists
    assert "exists" in capsys.readouterr().err
    assert main(["concat", str(tmp_path / "a.bale"), str(out), "--overwrite"]) == EXIT_OK
    assert main(["concat", str(out)]) == EXIT_ERROR
    assert "INPUT" in capsys.readouterr().err


def test_concat_exit_codes_for_damage_and_schema(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.bale"
    bale.write(other, {"id": np.arange(3)})
    assert main(["concat", str(sample), str(other), str(tmp_path / "x.bale")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "columns differ" in err and "'image'" in err

    with bale.open(sample) as ds:
        record = ds.index.blocks[1, ds.schema.index("caption")]
    with sample.open("r+b") as f:
        f.seek(int(record["offset"]) + 3)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert main(["concat", str(sample), str(tmp_path / "x.bale")]) == EXIT_DAMAGED
    err = capsys.readouterr().err
    assert "bale concat: error:" in err and "'caption'" in err and "rows 50..99" in err
    assert not (tmp_path / "x.bale").exists()
    assert main(["split", str(sample), "--out-dir", str(tmp_path / "s")]) == EXIT_DAMAGED


@pytest.mark.parametrize("command", ["split", "concat"])
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert "the bale repository's docs/SPLIT.md" in " ".join(capsys.readouterr().out.split())


def test_split_and_concat_in_a_real_process(sample: Path, tmp_path: Path) -> None:
    bale_bin = Path(sys.executable).with_name("bale")
    command = [str(bale_bin)] if bale_bin.exists() else [sys.executable, "-m", "bale.cli.main"]
    done = subprocess.run(
        [*command, "split", str(sample), "--ratios", "0.75,0.25", "--names", "fit,hold"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr
    assert "fit" in done.stdout and "300 rows" in done.stdout
    done = subprocess.run(
        [
            *command,
            "concat",
            str(tmp_path / "fit.bale"),
            str(tmp_path / "hold.bale"),
            str(tmp_path / "j.bale"),
        ],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(ids(tmp_path / "j.bale"), np.arange(N))
