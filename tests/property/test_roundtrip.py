"""Property tests: whatever the schema, rows, row-group size and batch split, reading gives back
exactly what was written, and every read path agrees with the others."""

from __future__ import annotations

import itertools
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bale
from bale.format.dtypes import DTYPES_BY_NAME

SETTINGS = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

DTYPE_NAMES = sorted(DTYPES_BY_NAME)
CODECS = [
    None,
    "none",
    "lz4",
    "zstd:1",
    "blosc2:lz4:1:bitshuffle",
    "blosc2:zstd:1:shuffle+bytedelta",
]


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: str  # "array", "bytes" or "string"
    dtype: str = ""
    shape: tuple[int, ...] = ()
    codec: str | None = None

    @property
    def column_type(self) -> Any:
        if self.kind == "array":
            return bale.Array(self.dtype, self.shape)
        return bale.Bytes() if self.kind == "bytes" else bale.String()


@st.composite
def column_specs(draw: st.DrawFn, name: str) -> ColumnSpec:
    kind = draw(st.sampled_from(["array", "array", "bytes", "string"]))
    if kind != "array":
        return ColumnSpec(name, kind, codec=draw(st.sampled_from(CODECS)))
    dtype = draw(st.sampled_from(DTYPE_NAMES))
    shape = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
    codec = draw(st.sampled_from(CODECS))
    return ColumnSpec(name, kind, dtype, shape, codec)


@st.composite
def datasets(draw: st.DrawFn) -> tuple[list[ColumnSpec], dict[str, Any], int, list[int]]:
    """(columns, data, row_group_rows, batch sizes)."""
    count = draw(st.integers(1, 4))
    specs = [draw(column_specs(f"c{i}")) for i in range(count)]
    rows = draw(st.integers(0, 300))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for spec in specs:
        if spec.kind == "array":
            data[spec.name] = random_values(rng, spec.dtype, (rows, *spec.shape))
        elif spec.kind == "bytes":
            lengths = rng.integers(0, 20, rows)
            data[spec.name] = [rng.bytes(int(k)) for k in lengths]
        else:
            # A few drawn strings (any code point hypothesis likes) recycled over the rows.
            pool = draw(st.lists(st.text(max_size=12), min_size=1, max_size=8))
            data[spec.name] = [pool[int(k)] for k in rng.integers(0, len(pool), rows)]
    row_group_rows = draw(st.integers(1, 64))
    cuts = sorted(draw(st.lists(st.integers(0, rows), max_size=6)))
    bounds = [0, *cuts, rows]
    sizes = [b - a for a, b in itertools.pairwise(bounds)]
    return specs, data, row_group_rows, sizes


def random_values(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Arbitrary bit patterns of the dtype (NaNs of every payload included), bool kept 0/1."""
    dt = DTYPES_BY_NAME[name]
    if name == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    count = int(np.prod(shape)) * dt.itemsize
    return np.frombuffer(rng.bytes(count), dtype=dt).reshape(shape).copy()


def assert_same(spec: ColumnSpec, got: Any, expected: Any) -> None:
    if spec.kind == "array":
        assert isinstance(got, np.ndarray)
        assert got.dtype == expected.dtype
        assert got.shape == expected.shape
        # raw bytes: exact for NaN payloads, -0.0 and every float8 pattern
        assert np.ascontiguousarray(got).view(np.uint8).tobytes() == (
            np.ascontiguousarray(expected).view(np.uint8).tobytes()
        )
    else:
        assert got == expected
        kind = bytes if spec.kind == "bytes" else str
        assert all(type(v) is kind for v in got)


def subset(spec: ColumnSpec, values: Any, index: Any) -> Any:
    if spec.kind == "array":
        return values[index]
    picked = np.arange(len(values))[index]
    return [values[i] for i in picked]


def write(
    path: str, specs: list[ColumnSpec], data: dict[str, Any], group_rows: int, sizes: list[int]
) -> None:
    schema = {s.name: s.column_type for s in specs}
    codecs = {s.name: s.codec for s in specs if s.codec is not None}
    with bale.Writer(path, schema, codecs=codecs, row_group_rows=group_rows) as writer:
        start = 0
        for size in sizes:
            writer.write({s.name: data[s.name][start : start + size] for s in specs})
            start += size
        assert writer.rows_written == start


@SETTINGS
@given(dataset=datasets(), picks=st.data())
def test_written_rows_read_back_exactly(dataset: Any, picks: st.DataObject) -> None:
    specs, data, group_rows, sizes = dataset
    rows = sum(sizes)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "p.bale")
        write(path, specs, data, group_rows, sizes)
        with bale.open(path) as ds:
            assert len(ds) == rows
            assert ds.schema.names == [s.name for s in specs]
            for spec in specs:
                assert ds.schema[spec.name].type == spec.column_type
            expected_groups = [group_rows] * (rows // group_rows)
            if rows % group_rows:
                expected_groups.append(rows % group_rows)
            assert list(ds.row_group_sizes) == expected_groups

            everything = ds.read()
            for spec in specs:
                assert_same(spec, everything[spec.name], data[spec.name])

            start = picks.draw(st.integers(-rows - 5, rows + 5), label="start")
            stop = picks.draw(st.integers(-rows - 5, rows + 5), label="stop")
            step = picks.draw(st.sampled_from([None, 1, 2, 5, -1, -3]), label="step")
            key = slice(start, stop, step)
            sliced = ds[key]
            for spec in specs:
                assert_same(spec, sliced[spec.name], subset(spec, data[spec.name], key))

            if rows:
                indices = picks.draw(
                    st.lists(st.integers(-rows, rows - 1), max_size=50), label="indices"
                )
                gathered = ds[np.array(indices, dtype=np.int64)]
                for spec in specs:
                    expected = subset(spec, data[spec.name], np.array(indices, dtype=np.int64))
                    assert_same(spec, gathered[spec.name], expected)
                i = picks.draw(st.integers(-rows, rows - 1), label="row")
                row = ds[i]
                for spec in specs:
                    value = row[spec.name]
                    if spec.kind == "array":
                        assert_same(spec, np.asarray(value), data[spec.name][i])
                    else:
                        assert value == data[spec.name][i]


@SETTINGS
@given(dataset=datasets())
def test_fast_and_slow_read_paths_agree(dataset: Any) -> None:
    specs, data, group_rows, sizes = dataset
    rows = sum(sizes)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "p.bale")
        write(path, specs, data, group_rows, sizes)
        with bale.open(path) as ds:
            bulk = ds.read()
            gathered = ds.take(np.arange(rows))
            by_group = list(ds.iter_row_groups())
            one_by_one = [ds[i] for i in range(rows)]
        for spec in specs:
            name = spec.name
            assert_same(spec, gathered[name], bulk[name])
            if spec.kind == "array":
                pieces = [np.asarray(r[name]) for r in one_by_one]
                stacked = (
                    np.stack(pieces)
                    if pieces
                    else np.empty((0, *spec.shape), DTYPES_BY_NAME[spec.dtype])
                )
                assert_same(spec, stacked, bulk[name])
                joined = (
                    np.concatenate([g[name] for g in by_group])
                    if by_group
                    else np.empty((0, *spec.shape), DTYPES_BY_NAME[spec.dtype])
                )
                assert_same(spec, joined, bulk[name])
            else:
                assert [r[name] for r in one_by_one] == bulk[name]
                assert [v for g in by_group for v in g[name]] == bulk[name]


@SETTINGS
@given(
    values=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=200),
    group_rows=st.integers(1, 64),
    split=st.integers(0, 200),
)
def test_python_int_lists_into_int64_round_trip(
    values: list[int], group_rows: int, split: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "i.bale")
        with bale.Writer(path, {"v": bale.Array("int64")}, row_group_rows=group_rows) as writer:
            writer.write({"v": values[:split]})
            writer.write({"v": values[split:]})
        with bale.open(path) as ds:
            assert ds.read()["v"].tolist() == values
