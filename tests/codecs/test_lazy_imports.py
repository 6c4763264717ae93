"""``import bale`` loads no codec library and no ml_dtypes; reading a file loads what it needs.

Each check runs in a fresh interpreter, since this test process has long imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "v1_0"
HEAVY = ("blosc2", "zstandard", "lz4", "ml_dtypes")


def _loaded_after(code: str) -> set[str]:
    """Which of HEAVY a fresh interpreter has imported after running ``code``."""
    probe = (
        f"{code}\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_import_bale_loads_no_codec_library_and_no_ml_dtypes() -> None:
    assert _loaded_after("import bale") == set()


def test_building_codecs_loads_no_codec_library() -> None:
    code = """
import bale
from bale.codecs import codec_from_config, codec_spec, parse_codec
for spec in ["none", "lz4:9", "zstd:19", "blosc2:lz4hc:5:bitshuffle+bytedelta"]:
    codec = parse_codec(spec).for_itemsize(4)
    assert codec_from_config(codec.config()) == codec
    codec_spec(codec.config()), repr(codec), hash(codec)
for bad in ["zstd:99", "blosc2:snappy", "blosc2:zstd:1:delta", "lz4:0"]:
    try:
        parse_codec(bad)
    except bale.CodecError:
        pass
    else:
        raise AssertionError(bad)
"""
    assert _loaded_after(code) == set()


def test_numpy_dtypes_load_no_ml_dtypes() -> None:
    code = """
import numpy as np
from bale import Array
from bale.format.dtypes import dtype_from_name, dtype_name
for name in ["bool", "uint8", "int64", "float16", "float32", "complex128"]:
    assert dtype_name(dtype_from_name(name)) == name
    assert Array(name, (2, 3)).numpy_dtype == np.dtype(name)
assert dtype_name(">f4") == "float32"
try:
    dtype_from_name("float128")
except KeyError:
    pass
"""
    assert _loaded_after(code) == set()


@pytest.mark.parametrize("name", ["bfloat16", "float8_e4m3fn"])
def test_an_ml_dtypes_name_loads_ml_dtypes(name: str) -> None:
    code = f"from bale import Array\nassert Array({name!r}).numpy_dtype.itemsize in (1, 2)"
    assert _loaded_after(code) == {"ml_dtypes"}


@pytest.mark.parametrize(
    ("golden", "needed", "not_loaded"),
    [
        ("codec_none.bale", set(), set(HEAVY)),
        ("codec_lz4.bale", {"lz4"}, {"blosc2", "zstandard", "ml_dtypes"}),
        ("codec_zstd.bale", {"zstandard"}, {"blosc2", "lz4", "ml_dtypes"}),
        # zstandard is left out: blosc2 imports httpx, which imports it.
        ("codec_blosc2.bale", {"blosc2"}, {"lz4", "ml_dtypes"}),
        ("all_kinds.bale", set(HEAVY), set()),  # every codec, and bfloat16 and float8 columns
    ],
)
def test_reading_a_file_loads_only_what_it_needs(
    golden: str, needed: set[str], not_loaded: set[str]
) -> None:
    path = GOLDEN / golden
    loaded = _loaded_after(f"import bale\nwith bale.open({str(path)!r}) as ds:\n    ds.read()")
    assert needed <= loaded
    assert not loaded & not_loaded


def test_writing_with_a_codec_loads_that_library_only(tmp_path: Path) -> None:
    path = tmp_path / "zstd.bale"
    code = f"""
import numpy as np, bale
bale.write({str(path)!r}, {{"x": np.arange(1000, dtype=np.int32)}}, codecs={{"x": "zstd:3"}})
"""
    assert _loaded_after(code) == {"zstandard"}


@pytest.mark.parametrize(
    ("spec", "library"), [("blosc2:zstd:1", "blosc2"), ("zstd:1", "zstandard"), ("lz4", "lz4")]
)
def test_warm_up_imports_the_library(spec: str, library: str) -> None:
    """Measuring code (the advisor, bale bench) warms codecs up before its timers start."""
    code = f"from bale.codecs import parse_codec\nparse_codec({spec!r}).warm_up()"
    assert library in _loaded_after(code)
