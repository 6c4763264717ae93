"""bale: one self-describing, compressed, checksummed file per split, fast to read for training.

>>> import numpy as np, bale
>>> bale.write("/tmp/example.bale", {"x": np.zeros((100, 8), "float32"), "y": np.arange(100)},
...            overwrite=True)
>>> ds = bale.open("/tmp/example.bale")
>>> len(ds), ds[3]["y"]
(100, np.int64(3))
"""

from __future__ import annotations

from bale._core.dataset import ColumnView, Dataset, open
from bale._core.writer import Writer, write
from bale._version import __version__
from bale.errors import (
    BaleError,
    BaleWriteError,
    CodecError,
    CorruptFileError,
    FileLockedError,
    NotABaleFileError,
    SchemaError,
    TargetExistsError,
    TruncatedFileError,
    UnsupportedVersionError,
)
from bale.format.schema import Array, Bytes, Schema, String
from bale.loader.pipeline import Loader
from bale.ops.concat import ConcatReport, concat
from bale.ops.pack import PackReport, pack, pack_splits
from bale.ops.split import SplitReport, split

__all__ = [
    "Array",
    "BaleError",
    "BaleWriteError",
    "Bytes",
    "CodecError",
    "ColumnView",
    "ConcatReport",
    "CorruptFileError",
    "Dataset",
    "FileLockedError",
    "Loader",
    "NotABaleFileError",
    "PackReport",
    "Schema",
    "SchemaError",
    "SplitReport",
    "String",
    "TargetExistsError",
    "TruncatedFileError",
    "UnsupportedVersionError",
    "Writer",
    "__version__",
    "concat",
    "open",
    "pack",
    "pack_splits",
    "split",
    "write",
]
