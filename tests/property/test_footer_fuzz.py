"""Fuzzed footers with recomputed checksums (issue 14, item 11): a hostile file or a buggy tool.

Hypothesis mutates the footer JSON (values, keys), the group and block tables, the bytes after
the block table and the trailer's version of a few small files, then recomputes the JSON's and
the footer's checksums, so every mutation reaches the parsing and validation code. Opening the
file and reading every column every way (slices, gathers, single rows, row groups) must either
return exactly the stored values or raise a BaleError: never another exception, never a hang
(an alarm per example), never a large allocation (the process's peak RSS is bounded). Derandomized
and bounded (a few hundred examples, about a minute), so `make test` is reproducible.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bale
from bale.errors import BaleError
from tests.format.crafting import Footer, read_footer, write_footer

#: Seconds one example may take before it counts as a hang.
EXAMPLE_SECONDS = 20
#: The most the process's peak RSS may grow while fuzzing: far below any allocation a claimed
#: size near 2^31, 2^32 or 2^64 would make, far above what reading these small files takes.
RSS_GROWTH_LIMIT = 256 << 20

INTERESTING_INTS = [
    0, 1, 2, 3, 7, 8, 63, 64, 255, 4096, 2**31 - 1, 2**31, 2**32, 2**53 + 1,
    2**63 - 1, 2**63, 2**64 - 1, 2**64, -1, -(2**63),
]  # fmt: skip
INTERESTING_JSON: list[Any] = [
    *INTERESTING_INTS, 0.5, 1.0, 1e300, -0.0, float("inf"), float("nan"), True, False, None,
    "", "zfp-9", "none", "lz4", "zstd", "blosc2", "array", "bytes", "string", "tensor", "bool",
    "uint8", "float4_e2m1", "x", [], {}, [1, 1], [2, 0], {"id": "zfp-9"}, [[]],
]  # fmt: skip


def _files(root: Path) -> dict[str, Path]:
    """Small files covering every codec, kind and layout a footer can describe."""
    rows = 40
    rng = np.random.default_rng(0)
    out = {}
    out["mixed"] = root / "mixed.bale"
    bale.write(
        out["mixed"],
        {
            "f": rng.standard_normal((rows, 3)).astype("float32"),
            "u": np.arange(rows, dtype="uint16"),
            "flag": np.arange(rows) % 3 == 0,
            "b": [bytes(rng.integers(0, 256, i % 7, dtype="uint8")) for i in range(rows)],
            "s": [f"row {i} é" for i in range(rows)],
        },
        codecs={"f": "lz4", "u": "none", "flag": "zstd", "b": "none", "s": "blosc2"},
        metadata={"split": "train", "n": [1, 2]},
        row_group_rows=16,
    )
    out["framed"] = root / "framed.bale"
    bale.write(
        out["framed"],
        {
            "x": np.arange(rows * 64, dtype="int64").reshape(rows, 64),
            "t": [b"ab" * i for i in range(rows)],
        },
        codecs={"x": "zstd", "t": "lz4"},
        segment_bytes=4096,
        row_group_rows=20,
    )
    out["mapped"] = root / "mapped.bale"
    bale.write(
        out["mapped"],
        {
            "img": rng.integers(0, 256, (rows, 4, 4), dtype="uint8"),
            "y": np.arange(rows, dtype="int32"),
        },
        codecs={"img": "none", "y": "none"},
        row_group_rows=8,
    )
    return out


@dataclass(frozen=True)
class Original:
    data: bytes
    offset: int
    footer: Footer
    values: list[bytes]  # each column's canonical bytes, by position


def _canonical(values: Any) -> bytes:
    """A column's values as bytes: an array's raw bytes, variable rows length-prefixed."""
    if isinstance(values, np.ndarray):
        return np.ascontiguousarray(values).tobytes()
    out = bytearray()
    for value in values:
        raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(value)
        out += len(raw).to_bytes(8, "little") + raw
    return bytes(out)


def _expected(original: bytes, values: Any) -> bytes:
    """What a column read as ``values`` must hold: the stored bytes, where a column read as bool
    has any non-zero byte as True (format rule 7)."""
    if isinstance(values, np.ndarray) and values.dtype == np.bool_:
        return (np.frombuffer(original, np.uint8) != 0).tobytes()
    return original


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Original]:
    root = tmp_path_factory.mktemp("fuzz")
    out = {}
    for name, path in _files(root).items():
        data = path.read_bytes()
        offset, footer = read_footer(data)
        with bale.open(path) as ds:
            batch = ds.read()
            values = [_canonical(batch[n]) for n in ds.schema.names]
        out[name] = Original(data, offset, footer, values)
    return out


# -- mutations ----------------------------------------------------------------------------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside a JSON document (not the root)."""
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


def _json_value(draw: st.DrawFn, old: Any) -> Any:
    choices: list[Any] = list(INTERESTING_JSON)
    if type(old) is int:
        choices += [old + 1, old - 1, old * 2, old + 64, old // 2]
    return draw(st.sampled_from(choices) | st.integers(-(2**65), 2**65) | st.text(max_size=4))


@st.composite
def mutations(draw: st.DrawFn, footer: Footer) -> list[tuple[str, Any]]:
    """One to three edits of a footer, each a (kind, detail) pair applied by ``_apply``."""
    edits: list[tuple[str, Any]] = []
    paths = list(_paths(footer.info))
    groups, blocks = len(footer.groups), footer.blocks.size
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(["value", "value", "value", "delete", "rename", "add", "table",
                             "table", "tail", "version"])
        )  # fmt: skip
        if kind in ("value", "delete", "rename"):
            path = draw(st.sampled_from(paths))
            old = _parent(footer.info, path)[path[-1]]
            edits.append((kind, (path, _json_value(draw, old))))
        elif kind == "add":
            path = draw(st.sampled_from([(), *[p for p in paths if p[0] == "schema"]]))
            edits.append((kind, (path, draw(st.sampled_from(["zz_new", "extra"])), 1)))
        elif kind == "table" and groups:
            table = draw(st.sampled_from(["groups", "blocks"]))
            fields = footer.groups.dtype.names if table == "groups" else footer.blocks.dtype.names
            assert fields is not None
            row = draw(st.integers(0, (groups if table == "groups" else blocks) - 1))
            field = draw(st.sampled_from(fields))
            value = draw(
                st.sampled_from([v for v in INTERESTING_INTS if 0 <= v < 2**64])
                | st.integers(0, 2**64 - 1)
                | st.integers(-70, 70).map(lambda d: ("delta", d))
                | st.integers(0, (groups if table == "groups" else blocks) - 1).map(
                    lambda r: ("copy", r)  # another group's or block's value
                )
            )
            edits.append((kind, (table, row, field, value)))
        elif kind == "tail":
            edits.append((kind, draw(st.binary(min_size=1, max_size=40))))
        elif kind == "version":
            edits.append(
                (
                    kind,
                    (draw(st.sampled_from([0, 1, 2, 65535])), draw(st.sampled_from([0, 1, 2, 9]))),
                )
            )
    return edits


def _apply(footer: Footer, edits: list[tuple[str, Any]]) -> Footer:
    info = copy.deepcopy(footer.info)
    groups, blocks = footer.groups.copy(), footer.blocks.copy()
    out = Footer(info, groups, blocks, footer.tail, footer.major, footer.minor, footer.reserved)
    for kind, detail in edits:
        try:
            if kind == "value":
                path, value = detail
                _parent(info, path)[path[-1]] = value
            elif kind == "delete":
                path, _ = detail
                parent = _parent(info, path)
                del parent[path[-1]]
            elif kind == "rename":
                path, _ = detail
                parent = _parent(info, path)
                if isinstance(parent, dict):
                    parent["renamed_" + str(path[-1])] = parent.pop(path[-1])
            elif kind == "add":
                path, key, value = detail
                target = info
                for step in path:
                    target = target[step]
                if isinstance(target, dict):
                    target[key] = value
            elif kind == "table":
                table, row, field, value = detail
                flat = (groups if table == "groups" else blocks).reshape(-1)
                if isinstance(value, tuple) and value[0] == "copy":
                    value = int(flat[value[1]][field])
                elif isinstance(value, tuple):
                    value = (int(flat[row][field]) + value[1]) % (1 << 64)
                limit = 1 << (8 * flat.dtype[field].itemsize)
                flat[row][field] = value % limit
            elif kind == "tail":
                out.tail = footer.tail + detail
            elif kind == "version":
                out.major, out.minor = detail
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed what this one names
    text = json.dumps(info, separators=(",", ":"), ensure_ascii=False)
    out.json_bytes = text.encode("utf-8", "surrogatepass")
    return out


# -- the property -------------------------------------------------------------------------------


def _read_every_way(path: Path, original: Original) -> None:
    """Open and read every column; each read must give exactly the stored values."""
    with bale.open(path) as ds:
        names = ds.schema.names
        n = len(ds)
        order = np.arange(n)[::-1]
        for position, name in enumerate(names):
            reads = [ds.read(columns=[name])[name], ds.take(order, [name])[name][::-1]]
            rows = [ds.row(i, [name])[name] for i in range(n)]
            is_array = bool(rows) and isinstance(rows[0], (np.ndarray, np.generic))
            reads.append(np.stack(rows) if is_array else rows)
            groups = [g[name] for g in ds.iter_row_groups([name])]
            if groups and isinstance(groups[0], np.ndarray):
                reads.append(np.concatenate(groups))
            else:
                reads.append([v for g in groups for v in g])
            stored = original.values[position] if position < len(original.values) else None
            for values in reads:
                got = _canonical(values)
                assert stored is not None and got == _expected(stored, values), (
                    f"column {name!r} read back other values than stored"
                )


class _Hang(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise _Hang(f"an example ran for more than {EXAMPLE_SECONDS} s")


def _peak_rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass


_counter = itertools.count()


@pytest.mark.slow
def test_fuzzed_footers_read_back_or_raise_bale_errors(
    originals: dict[str, Original], tmp_path_factory: pytest.TempPathFactory
) -> None:
    if not os.path.exists("/proc/self/status"):
        pytest.skip("peak RSS is read from /proc")
    work = tmp_path_factory.mktemp("fuzzed")
    names = sorted(originals)

    @settings(
        max_examples=2500,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        original = originals[data.draw(st.sampled_from(names), label="file")]
        edits = data.draw(mutations(original.footer), label="edits")
        path = work / f"f{next(_counter)}.bale"
        path.write_bytes(original.data[: original.offset])
        write_footer(path, original.offset, _apply(original.footer, edits))
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(EXAMPLE_SECONDS)
        try:
            _read_every_way(path, original)
        except BaleError as exc:  # refused, naming what is wrong: what a crafted footer must get
            assert exc.path == os.fspath(path), f"{exc!r} does not name the file"
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
            path.unlink()

    _reset_peak_rss()
    baseline = _peak_rss()
    run()
    growth = _peak_rss() - baseline
    assert growth < RSS_GROWTH_LIMIT, f"peak RSS grew by {growth >> 20} MiB while fuzzing"
