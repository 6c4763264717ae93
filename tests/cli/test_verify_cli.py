"""`bale verify`: exit codes, what each problem names, --deep, --json, the progress bar and -q."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import xxhash

import bale
from bale._core.blocks import StoredBlock
from bale._core.groupsink import GroupSink
from bale.cli.main import EXIT_DAMAGED, EXIT_ERROR, EXIT_OK, main
from bale.format.constants import DEFAULT_SEGMENT_BYTES
from bale.format.schema import Column, Schema, String


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "s.bale"
    bale.write(
        path,
        {"x": np.arange(30, dtype=np.int64), "s": [f"row {i}" for i in range(30)]},
        row_group_rows=10,
    )
    return path


def group_json_at(path: Path, group: int) -> int:
    """Where row group ``group``'s JSON starts."""
    with bale.open(path) as ds:
        return int(ds.index.groups[group]["offset"]) + 16


def test_a_group_record_that_disagrees_is_damage_named_in_full(
    sample: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A crafted group JSON (rows 10 -> 11, its checksum recomputed): reads and the old verify
    used the footer only and passed; `bale repair` would have rebuilt an 11-row group."""
    data = bytearray(sample.read_bytes())
    start = group_json_at(sample, 1)
    length = struct.unpack_from("<I", data, start - 12)[0]
    body = bytes(data[start : start + length])
    assert body.startswith(b'{"rows":10,')
    data[start + 9] = ord("1")  # "rows":11
    struct.pack_into(
        "<Q", data, start - 8, xxhash.xxh3_64_intdigest(bytes(data[start : start + length]))
    )
    sample.write_bytes(bytes(data))
    assert main(["verify", str(sample)]) == EXIT_DAMAGED
    out = capsys.readouterr().out
    assert "DAMAGED: 1 damaged row group record(s) of 3" in out
    assert (
        f"file '{sample}', rows 10..19: row group 1: the group JSON says 11 rows, the footer's "
        "group table 10" in out
    )


def test_json_output(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--json", str(sample)]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["problems"] == [] and report["deep"] is False
    assert (report["rows"], report["row_groups"], report["blocks_checked"]) == (30, 3, 6)
    data = bytearray(sample.read_bytes())
    data[group_json_at(sample, 2) + 3] ^= 0x01  # damage: the checksum no longer matches
    sample.write_bytes(bytes(data))
    assert main(["verify", "--json", "--deep", str(sample)]) == EXIT_DAMAGED
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["deep"] is True
    (problem,) = report["problems"]
    assert problem["part"] == "row group" and problem["row_group"] == 2
    assert problem["rows"] == [20, 30]
    assert "does not match its checksum" in problem["message"] and str(sample) in problem["message"]


def test_deep_decodes_every_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A string block that is not UTF-8, stored with matching checksums: only --deep finds it."""
    path = tmp_path / "crafted.bale"
    raw = np.array([2, 2], "<u8").tobytes() + b"ok\xff\xfe"
    sink = GroupSink.create(str(path), overwrite=True, segment_bytes=DEFAULT_SEGMENT_BYTES)
    sink.start(Schema((Column("s", String(), {"id": "none"}),)), {})
    sink.write_group(
        2, [StoredBlock([raw], len(raw), xxhash.xxh3_64_intdigest(raw), {"id": "none"})]
    )
    sink.finish({}, commit=True)
    assert main(["verify", str(path)]) == EXIT_OK
    assert "OK (2 rows, 1 blocks checked)" in capsys.readouterr().out
    assert main(["verify", "--deep", str(path)]) == EXIT_DAMAGED
    out = capsys.readouterr().out
    assert f"file '{path}', column 's', rows 0..1: row 1 is not UTF-8" in out


def test_an_unfinished_file_is_damage_and_not_bale_an_error(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample.write_bytes(sample.read_bytes()[:-10])
    assert main(["verify", str(sample)]) == EXIT_DAMAGED
    assert "bale repair" in capsys.readouterr().out
    other = tmp_path / "zip.bale"
    other.write_bytes(b"PK\x03\x04" * 20)
    assert main(["verify", str(other)]) == EXIT_ERROR
    assert "not a bale file" in capsys.readouterr().err


def test_help_says_what_each_mode_proves(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--deep" in text and "--json" in text and "--quiet" in text
    assert "Passing proves the file holds exactly the bytes its writer wrote" in text
    assert "Passing proves every row decodes" in text


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_bar_on_a_terminal_and_none_with_quiet(
    sample: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["verify", str(sample)]) == EXIT_OK
    assert "verifying" in terminal.getvalue()
    quiet = _Terminal()
    monkeypatch.setattr("sys.stderr", quiet)
    assert main(["verify", "-q", str(sample)]) == EXIT_OK
    assert quiet.getvalue() == ""
