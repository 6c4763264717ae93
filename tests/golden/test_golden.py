"""Golden files of format 1.0: every later bale must read them, value for value.

These tests never write the golden files. If one is missing or its digest changed, the test fails:
the files pin what bale 1.0 wrote and must not be silently regenerated (see make_golden.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale
from bale.codecs import parse_codec
from bale.format.constants import FILE_MAGIC, TRAILER_MAGIC, TRAILER_SIZE
from bale.ops.repair import repair

HERE = Path(__file__).resolve().parent


def _load_spec() -> Any:
    if "golden_spec" in sys.modules:
        return sys.modules["golden_spec"]
    spec = importlib.util.spec_from_file_location("golden_spec", HERE / "golden_spec.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["golden_spec"] = module
    spec.loader.exec_module(module)
    return module


SPEC = _load_spec()
GOLDEN_DIR = HERE / SPEC.FORMAT_DIR
NAMES = sorted(SPEC.FILES)


def golden_path(name: str) -> Path:
    path = GOLDEN_DIR / name
    if not path.is_file():
        pytest.fail(
            f"golden file {path} is missing. Golden files are committed and never regenerated "
            "by tests; restore it from version control (tests/golden/make_golden.py wrote it once)."
        )
    return path


@pytest.fixture(scope="module")
def expected_footers() -> dict[str, Any]:
    return json.loads(golden_path("expected.json").read_text())


def test_golden_files_are_unchanged() -> None:
    sums_file = golden_path("SHA256SUMS")
    listed: dict[str, str] = {}
    for line in sums_file.read_text().splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    assert sorted(listed) == sorted([*NAMES, "expected.json"])
    present = sorted(p.name for p in GOLDEN_DIR.iterdir() if p.name != "SHA256SUMS")
    assert present == sorted(listed), "unexpected or missing files in the golden directory"
    for name, digest in listed.items():
        actual = hashlib.sha256(golden_path(name).read_bytes()).hexdigest()
        assert actual == digest, (
            f"{name} changed (sha256 {actual}, SHA256SUMS says {digest}). Golden files must not "
            "be regenerated: a new format version gets a new directory."
        )
    assert sum(golden_path(n).stat().st_size for n in listed) < 200_000


@pytest.mark.parametrize("name", NAMES)
def test_golden_header_and_trailer_say_1_0(name: str) -> None:
    data = golden_path(name).read_bytes()
    assert data[:8] == FILE_MAGIC
    assert struct.unpack_from("<HH", data, 8) == (1, 0)
    trailer = data[-TRAILER_SIZE:]
    assert trailer[-8:] == TRAILER_MAGIC
    assert struct.unpack_from("<HH", trailer, 24) == (1, 0)


def assert_values(got: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    assert list(got) == list(expected), where
    for name, value in expected.items():
        if isinstance(value, np.ndarray):
            assert isinstance(got[name], np.ndarray), (where, name)
            assert got[name].dtype == value.dtype, (where, name)
            assert got[name].shape == value.shape, (where, name)
            # Bytes, not values: NaN payloads, -0.0 and float8 bit patterns must survive.
            assert got[name].tobytes() == value.tobytes(), (where, name)
        else:
            assert got[name] == value, (where, name)


@pytest.mark.parametrize("name", NAMES)
def test_golden_footer_matches(name: str, expected_footers: dict[str, Any]) -> None:
    golden = SPEC.FILES[name]
    expected = expected_footers[name]
    with bale.open(golden_path(name)) as ds:
        index = ds.index
        assert len(ds) == expected["num_rows"] == golden.num_rows
        assert list(ds.row_group_sizes) == expected["row_group_sizes"]
        assert ds.row_group_sizes == golden.row_group_sizes
        assert ds.metadata == expected["metadata"] == golden.metadata
        assert index.schema.to_json() == expected["schema"]
        assert index.codecs == expected["codecs"]
        assert index.segment_bytes == expected["segment_bytes"]
        assert index.extra == expected["extra_footer_fields"]
        if golden.segment_bytes is not None:
            assert index.segment_bytes == golden.segment_bytes
        # The schema is the one the spec gave, with the codecs it asked for.
        assert ds.schema.names == list(golden.schema)
        for column in ds.schema:
            assert column.type == golden.schema[column.name], column.name
            assert column.codec["id"] == parse_codec(golden.codecs[column.name]).id
        # Each block records the codec it was written with: the column's.
        for g in range(ds.num_row_groups):
            for c, column in enumerate(ds.schema):
                assert index.codec_at(g, c)["id"] == column.codec["id"]


@pytest.mark.parametrize("name", NAMES)
def test_golden_values(name: str) -> None:
    golden = SPEC.FILES[name]
    expected = golden.values()
    n = golden.num_rows
    with bale.open(golden_path(name)) as ds:
        assert_values(ds.read(), expected, "read()")
        # Row by row.
        for k in range(n):
            row = ds[k]
            for column, value in expected.items():
                if isinstance(value, np.ndarray):
                    assert np.asarray(row[column]).tobytes() == value[k].tobytes(), (k, column)
                else:
                    assert row[column] == value[k], (k, column)
        # A gather in reverse order, group by group, and column views.
        order = np.arange(n)[::-1]
        gathered = ds.take(order)
        assert_values(
            gathered,
            {
                c: (v[order] if isinstance(v, np.ndarray) else [v[i] for i in order])
                for c, v in expected.items()
            },
            "take",
        )
        start = 0
        for g, batch in enumerate(ds.iter_row_groups()):
            stop = start + ds.row_group_sizes[g]
            assert_values(batch, {c: v[start:stop] for c, v in expected.items()}, f"group {g}")
            start = stop
        assert start == n
        for column, value in expected.items():
            view = ds[column]
            assert len(view) == n
            if isinstance(value, np.ndarray):
                assert view.shape == value.shape and view.dtype == value.dtype
                assert np.asarray(view).tobytes() == value.tobytes()
            else:
                assert view[:] == value


@pytest.mark.parametrize("name", NAMES)
def test_golden_file_repairs_from_its_row_groups(name: str, tmp_path: Path) -> None:
    """Group headers and the header of a 1.0 file are enough to rebuild it (repair); the rebuilt
    file carries the metadata given at creation (the header's)."""
    golden = SPEC.FILES[name]
    copy = tmp_path / name
    shutil.copyfile(golden_path(name), copy)
    data = copy.read_bytes()
    footer_offset = struct.unpack_from("<Q", data, len(data) - TRAILER_SIZE)[0]
    copy.write_bytes(data[:footer_offset])  # as if the writer died before writing its footer
    report = repair(copy)
    assert report.rows == golden.num_rows
    assert report.row_groups == len(golden.row_group_sizes)
    assert report.damaged_row_groups == []
    with bale.open(copy) as ds:
        assert ds.metadata == golden.phases[0].metadata
        assert ds.row_group_sizes == golden.row_group_sizes
        assert_values(ds.read(), golden.values(), "repaired")


@pytest.mark.parametrize("name", ["appended.bale", "all_kinds.bale", "segmented.bale"])
def test_golden_file_accepts_appends(name: str, tmp_path: Path) -> None:
    golden = SPEC.FILES[name]
    copy = tmp_path / name
    shutil.copyfile(golden_path(name), copy)
    n = golden.num_rows
    more = golden.columns(range(n, n + 5))
    with bale.Writer(copy, mode="a", metadata={"later": True}) as w:
        w.write(more)
    with bale.open(copy) as ds:
        assert len(ds) == n + 5
        assert ds.metadata == {**golden.metadata, "later": True}
        assert_values(ds.read(), golden.columns(range(n + 5)), "appended")
    # The golden rows' bytes were not moved.
    original = golden_path(name).read_bytes()
    with bale.open(golden_path(name)) as ds:
        last = ds.index.groups[-1]
        data_end = int(last["offset"] + last["length"])
    assert copy.read_bytes()[:data_end] == original[:data_end]
