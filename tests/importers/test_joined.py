"""JoinedSource / open_sources: aligned inputs as the columns of one source (issue 15, item 15)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from image_samples import make_folder

from bale.errors import BaleError, SchemaError
from bale.format.schema import Array
from bale.importers import JoinedSource, open_sources
from bale.importers.image_folder import ImageFolderSource
from bale.importers.npy import NpySource

BCOLZ = Path(__file__).parent / "fixtures" / "bcolz" / "bcolz-1.2.1"


def test_a_row_one_source_skips_is_dropped_from_all(tmp_path: Path) -> None:
    make_folder(tmp_path / "photos")  # holds a corrupt and a truncated JPEG, skipped on read
    images = ImageFolderSource(tmp_path / "photos")
    np.save(tmp_path / "ids.npy", np.arange(images.num_rows) * 10)
    with JoinedSource({"img": images, "ids": NpySource(tmp_path / "ids.npy")}) as src:
        batch = src.take(np.arange(src.num_rows)[::-1])
        assert len(batch.skipped) == 2 and len(batch) == src.num_rows - 2
        assert batch.columns["ids"].tolist() == (batch.rows * 10).tolist()
        assert [s.row for s in batch.skipped] == sorted(s.row for s in batch.skipped)
        assert list(batch.columns) == ["img.image", "img.label", "img.path", "ids"]
        assert src.metadata["classes"] == ["cat", "coffee", "rocket"]  # the one labelled input
        assert src.random_access and src.picklable
        again = pickle.loads(pickle.dumps(src))
        assert again.read(0, 3).columns["ids"].tolist() == [0, 10, 20]


def test_clashing_names_and_options(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros(4))
    (tmp_path / "b").mkdir()
    np.save(tmp_path / "b" / "a.npy", np.ones(4))
    with pytest.raises(SchemaError, match=r"column 'a' comes from both .* name the sources"):
        open_sources([tmp_path / "a.npy", tmp_path / "b" / "a.npy"])
    with open_sources({"x": tmp_path / "a.npy", "y": tmp_path / "b" / "a.npy"}) as src:
        assert src.column_types == {"x": Array("float64"), "y": Array("float64")}
        assert src.path == f"{tmp_path / 'a.npy'} + {tmp_path / 'b' / 'a.npy'}"
    objects = BCOLZ / "objects_lz4.bcolz"  # 4 rows of Python objects: needs trust
    with open_sources({"o": objects, "a": tmp_path / "a.npy"}, trust=True) as src:
        assert src.column_types is None  # the objects' type shows in the rows
        assert src.read(0, 2).columns["o"] == ["alpha", "beta"]
    with pytest.raises(BaleError, match=r"option\(s\) \['size'\] apply to none of the inputs"):
        open_sources([tmp_path / "a.npy"], size=(4, 4))
