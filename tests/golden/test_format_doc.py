"""docs/FORMAT.md's worked example, test vectors and tables are checked against bale and the
libraries they describe, so the normative text cannot go stale."""

from __future__ import annotations

import json
import re
from pathlib import Path

import golden_spec  # beside this file (pytest puts its folder on sys.path)
import numpy as np
import pytest
import reference_reader
import xxhash

import bale
from bale.ops.verify import verify

HERE = Path(__file__).resolve().parent
FORMAT_MD = HERE.parents[1] / "docs" / "FORMAT.md"


REFERENCE = reference_reader


def doc_section(marker: str) -> str:
    """The text between ``<!-- MARKER:begin -->`` and ``<!-- MARKER:end -->`` in FORMAT.md."""
    text = FORMAT_MD.read_text(encoding="utf-8")
    found = re.search(rf"<!-- {marker}:begin -->\n(.*?)<!-- {marker}:end -->", text, re.S)
    assert found, f"docs/FORMAT.md lost its {marker} section"
    return found.group(1)


# -- the worked example --------------------------------------------------------------------------


def write_example(path: Path) -> None:
    """The file FORMAT.md shows byte by byte."""
    with bale.Writer(path, {"x": bale.Array("int32")}, codecs={"x": "none"}) as w:
        w.write({"x": np.array([1, -2], np.int32)})


def example_dump() -> str:
    block = doc_section("worked-example")
    found = re.fullmatch(r"```\n(.*)```\n", block, re.S)
    assert found, "the worked example is one fenced code block"
    return found.group(1)


def test_worked_example_is_what_bale_writes(tmp_path: Path) -> None:
    """bale writes the bytes FORMAT.md shows, and the reference reader's annotations of them
    are the text there. If bale's output changes on purpose (a new created_by version, a new
    minor), regenerate the block: ``python tests/golden/reference_reader.py --dump FILE``."""
    path = tmp_path / "example.bale"
    write_example(path)
    shown = example_dump()
    assert REFERENCE.undump(shown) == path.read_bytes(), (
        "docs/FORMAT.md's worked example no longer shows the bytes bale writes; regenerate it "
        "with tests/golden/reference_reader.py --dump"
    )
    assert REFERENCE.dump(path) == shown


def test_worked_example_bytes_read_back(tmp_path: Path) -> None:
    """The bytes shown are a valid file: bale and the reference reader read 1 and -2 from it."""
    path = tmp_path / "from_doc.bale"
    path.write_bytes(REFERENCE.undump(example_dump()))
    with bale.open(path) as ds:
        assert ds.read()["x"].tolist() == [1, -2]
    assert verify(path).ok
    ref = REFERENCE.read(path)
    assert np.frombuffer(ref.canonical_bytes("x"), "<i4").tolist() == [1, -2]
    # The value hash the walk-through after the dump gives.
    assert f"XXH3-64 of those 8 bytes, `{ref.value_hash('x')}`" in FORMAT_MD.read_text("utf-8")


def test_example_checksums_exceed_a_double() -> None:
    """FORMAT.md's warning holds: the example's block checksum is not representable as an IEEE
    double, so a reader parsing JSON numbers as doubles fails to match it."""
    group_json = next(line for line in example_dump().splitlines() if '"rows":2' in line)
    value = json.loads(group_json)["blocks"][0]["checksum"]
    assert value == 2655157189893860081
    assert int(float(value)) == 2655157189893859840 != value
    assert "`2655157189893860081`" in FORMAT_MD.read_text(encoding="utf-8")
    assert "`2655157189893859840`" in FORMAT_MD.read_text(encoding="utf-8")


def test_undump_sees_a_changed_byte(tmp_path: Path) -> None:
    """The comparison above can fail: one hex digit changed in the text is another file."""
    shown = example_dump().replace(
        "01 00 00 00               block 0", "02 00 00 00               block 0"
    )
    path = tmp_path / "example.bale"
    write_example(path)
    assert REFERENCE.undump(shown) != path.read_bytes()


# -- XXH3-64 vectors -----------------------------------------------------------------------------


def test_xxh3_vectors_match_xxhash() -> None:
    rows = re.findall(r"^\| (\d+) \| `([0-9a-f]{16})` \|$", doc_section("xxh3-vectors"), re.M)
    assert len(rows) >= 10
    sequence = bytes(i % 256 for i in range(4096))
    for n, digest in rows:
        assert f"{xxhash.xxh3_64_intdigest(sequence[: int(n)]):016x}" == digest, n
    assert dict(rows)["0"] == "2d06800538d394c2"
    assert xxhash.xxh3_64_intdigest(b"") == 0x2D06800538D394C2 == 3244421341483603138
    text = FORMAT_MD.read_text(encoding="utf-8")
    assert f"`bale` hash to `{xxhash.xxh3_64_intdigest(b'bale'):016x}`" in text


# -- Blosc2 filter codes -------------------------------------------------------------------------


def test_blosc2_filter_codes_match_the_library() -> None:
    blosc2 = pytest.importorskip("blosc2")
    text = FORMAT_MD.read_text(encoding="utf-8")
    for name, code in REFERENCE.BLOSC2_FILTER_CODES.items():
        assert blosc2.Filter[name.upper()].value == code
        assert f"`{name}` = {code}" in text.replace("\n", " "), name


# -- bfloat16 and float8 by bit layout -----------------------------------------------------------


def float_table() -> dict[str, dict[str, str]]:
    lines = [line for line in doc_section("float-layouts").splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = dict(zip(header, cells, strict=True))
    return rows


def codes(cell: str) -> set[int]:
    return {int(x, 16) for x in re.findall(r"`0x([0-9A-F]+)`", cell)}


def decode_by_layout(row: dict[str, str], bits: int) -> float:
    """One encoding's value by FORMAT.md's rules alone."""
    e_bits, m_bits, bias = int(row["E"]), int(row["M"]), int(row["bias"])
    total = 1 + e_bits + m_bits
    if bits in codes(row["NaNs"]):
        return float("nan")
    sign = -1.0 if bits >> (total - 1) else 1.0
    e = (bits >> m_bits) & ((1 << e_bits) - 1)
    m = bits & ((1 << m_bits) - 1)
    nan_rule = re.search(r"`e` = (\d+), m ≠ 0", row["NaNs"])
    if nan_rule and e == int(nan_rule.group(1)) and m:
        return float("nan")
    if bits in codes(row["infinities"]):
        return sign * float("inf")
    if e == 0:
        return sign * 2.0 ** (1 - bias) * (m / 2**m_bits)
    return sign * 2.0 ** (e - bias) * (1 + m / 2**m_bits)


@pytest.mark.parametrize(
    "name",
    [
        "bfloat16",
        "float8_e4m3fn",
        "float8_e4m3fnuz",
        "float8_e4m3b11fnuz",
        "float8_e5m2",
        "float8_e5m2fnuz",
    ],
)
def test_float_layouts_match_ml_dtypes(name: str) -> None:
    """Every encoding of each type decodes, by FORMAT.md's table and rules, to ml_dtypes' value
    (NaN where ml_dtypes has NaN), and the table's zeros and largest finite value are right."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    row = float_table()[name]
    dtype = np.dtype(getattr(ml_dtypes, name))
    unsigned = np.dtype(f"<u{dtype.itemsize}")
    encodings = np.arange(1 << (8 * dtype.itemsize)).astype(unsigned)
    with np.errstate(invalid="ignore"):  # bfloat16 NaNs cast to float64 NaNs
        want = encodings.view(dtype).astype(np.float64)
    got = np.array([decode_by_layout(row, int(b)) for b in encodings.tolist()])
    assert 1 + int(row["E"]) + int(row["M"]) == 8 * dtype.itemsize
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = ~np.isnan(want)
    np.testing.assert_array_equal(got[finite], want[finite])
    zeros = encodings[want == 0].tolist()
    assert set(zeros) == codes(row["zeros"]), name
    largest = float(ml_dtypes.finfo(dtype).max)
    bits = int(encodings[want == largest][0])
    assert (
        row["largest finite"] == f"`0x{bits:0{2 * dtype.itemsize}X}` = {largest:g}"
        or row["largest finite"] == f"`0x{bits:0{2 * dtype.itemsize}X}` = {largest!r}"
    ), row["largest finite"]


# -- the table of contents -----------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_link_within_format_md_has_its_heading() -> None:
    text = FORMAT_MD.read_text(encoding="utf-8")
    anchors = {github_anchor(h) for h in re.findall(r"^#{2,4} (.+)$", text, re.M)}
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert len(links) >= 20
    assert sorted(links - anchors) == []


# -- rules stated in FORMAT.md, checked against what bale writes ---------------------------------


def test_zero_size_blocks_are_written_as_the_spec_says(tmp_path: Path) -> None:
    """Raw size 0 => stored size 0, the checksum of empty input, and the offset where the block
    would start (the next block's, or the group's end); both readers return the rows."""
    path = tmp_path / "zero.bale"
    schema = {
        "a": bale.Array("float32", (0,)),
        "b": bale.Array("int32"),
        "c": bale.Array("uint8", (2, 0)),
    }
    with bale.Writer(path, schema, codecs={"a": "zstd", "b": "none", "c": "blosc2"}) as w:
        w.write(
            {
                "a": np.zeros((3, 0), np.float32),
                "b": np.arange(3, dtype=np.int32),
                "c": np.zeros((3, 2, 0), np.uint8),
            }
        )
    with bale.open(path) as ds:
        blocks = ds.index.blocks[0]
        group = ds.index.groups[0]
        got = ds.read()
    empty = 0x2D06800538D394C2
    for p in (0, 2):
        assert int(blocks[p]["stored_size"]) == int(blocks[p]["raw_size"]) == 0
        assert int(blocks[p]["checksum"]) == empty == 3244421341483603138
    assert int(blocks[0]["offset"]) == int(blocks[1]["offset"])
    assert int(blocks[2]["offset"]) == int(group["offset"] + group["length"])
    assert got["a"].shape == (3, 0) and got["c"].shape == (3, 2, 0)
    ref = REFERENCE.read(path)
    assert ref.value_hash("a") == ref.value_hash("c") == f"{empty:016x}"
    assert ref.canonical_bytes("b") == got["b"].tobytes()


def test_constants_and_names_in_format_md_are_bale_s() -> None:
    from bale.format.constants import ALIGNMENT, MAX_SEGMENT_BYTES, TRAILER_SIZE
    from bale.format.dtypes import DTYPES_BY_NAME

    text = FORMAT_MD.read_text(encoding="utf-8")
    assert MAX_SEGMENT_BYTES == 2146435072 == 2**31 - 2**20
    assert f"≤ {MAX_SEGMENT_BYTES} (= 2^31 \u2212 2^20" in text
    assert ALIGNMENT == REFERENCE.ALIGNMENT == 64 and TRAILER_SIZE == REFERENCE.TRAILER_SIZE
    assert set(DTYPES_BY_NAME) == set(REFERENCE.ITEMSIZE)
    for name, dtype in DTYPES_BY_NAME.items():
        assert dtype.itemsize == REFERENCE.ITEMSIZE[name], name
        assert f"`{name}`" in text, name


# -- the stability rules' golden files, read by both readers -------------------------------------

RULES = HERE / "v1_rules"


@pytest.mark.parametrize(
    "name", sorted(p.name for p in RULES.glob("*.bale")) if RULES.is_dir() else []
)
def test_reference_reader_follows_the_rules_as_bale_does(name: str) -> None:
    """The golden files of FORMAT.md's stability rules (version fields, unknown keys, codecs,
    dtypes and kinds, bytes after the block table, zero-size blocks): the reader written from
    FORMAT.md refuses what bale refuses, as the same kind of error, reads what bale reads and
    decodes the same values, column by column."""
    from bale.errors import CorruptFileError, UnsupportedFeatureError, UnsupportedVersionError

    spec = golden_spec
    path = RULES / name
    try:
        ds = bale.open(path)
    except UnsupportedVersionError:
        with pytest.raises(REFERENCE.UnsupportedVersion):
            REFERENCE.read(path)
        return
    except CorruptFileError:
        with pytest.raises(REFERENCE.SpecError) as info:
            REFERENCE.read(path)
        assert not isinstance(info.value, REFERENCE.UnsupportedVersion)
        return
    ref = REFERENCE.read(path)
    with ds:
        assert [c.name for c in ref.columns] == ds.schema.names
        assert ref.num_rows == len(ds)
        for column in ds.schema:
            unsupported = next(c for c in ref.columns if c.name == column.name).unsupported
            if unsupported:
                with pytest.raises(UnsupportedFeatureError):
                    ds.read(columns=[column.name])
                continue
            got = ds.read(columns=[column.name])[column.name]
            assert ref.value_hash(column.name) == spec.value_hash(column.type, got), column.name


@pytest.mark.parametrize(("old", "new"), [(b'"num_rows":2', b'"num_rows":3,"num_rows":2')])
def test_both_readers_refuse_a_repeated_json_key(tmp_path: Path, old: bytes, new: bytes) -> None:
    """FORMAT.md, Conventions: a JSON object whose key repeats is refused by the reader written
    from FORMAT.md and by bale (the worked example's footer, its checksums recomputed)."""
    from bale.errors import CorruptFileError
    from tests.format.crafting import Footer, craft_footer

    path = tmp_path / "repeated.bale"
    write_example(path)

    def repeat(footer: Footer) -> None:
        text = json.dumps(footer.info, separators=(",", ":")).encode()
        assert old in text
        footer.json_bytes = text.replace(old, new, 1)

    craft_footer(path, repeat)
    with pytest.raises(REFERENCE.SpecError, match="repeats a key"):
        REFERENCE.read(path)
    with pytest.raises(CorruptFileError, match="appears twice"):
        bale.open(path)
