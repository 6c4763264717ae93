"""bale: one self-describing, compressed, checksummed file per split, fast to read for training.

>>> import numpy as np, bale
>>> bale.write("/tmp/example.bale", {"x": np.zeros((100, 8), "float32"), "y": np.arange(100)},
...            overwrite=True)
>>> ds = bale.open("/tmp/example.bale")
>>> len(ds), ds[3]["y"]
(100, np.int64(3))
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING, Any

from bale._core.dataset import ColumnView, Dataset, open
from bale._core.writer import Writer, write
from bale._version import __version__
from bale.errors import (
    BaleError,
    BaleWriteError,
    CodecError,
    CorruptFileError,
    FileLockedError,
    MissingFileError,
    NotABaleFileError,
    SchemaError,
    TargetExistsError,
    TruncatedFileError,
    UnsupportedFeatureError,
    UnsupportedVersionError,
)
from bale.format.schema import Array, Bytes, Schema, String

if TYPE_CHECKING:
    from bale.loader.pipeline import Loader
    from bale.ops.concat import ConcatReport, concat
    from bale.ops.merge import MergeReport, merge
    from bale.ops.pack import PackReport, pack, pack_splits
    from bale.ops.parts import PartInfo, PartSet
    from bale.ops.recompress import recompress
    from bale.ops.split import SplitReport, split

# The loader and the whole-file operations are imported on first use: `import bale` (paid by
# every spawned DataLoader worker) loads only what reading and writing need. The public
# sub-packages load on first use too: `import bale; bale.importers.open_source(...)` works.
_LAZY = {
    "ConcatReport": "bale.ops.concat",
    "Loader": "bale.loader.pipeline",
    "MergeReport": "bale.ops.merge",
    "PackReport": "bale.ops.pack",
    "PartInfo": "bale.ops.parts",
    "PartSet": "bale.ops.parts",
    "SplitReport": "bale.ops.split",
    "concat": "bale.ops.concat",
    "merge": "bale.ops.merge",
    "pack": "bale.ops.pack",
    "pack_splits": "bale.ops.pack",
    "recompress": "bale.ops.recompress",
    "split": "bale.ops.split",
}


_SUBMODULES = frozenset(
    {"adapters", "codecs", "dask", "errors", "format", "images", "importers", "io", "loader"}
    | {"measure", "ops", "ray"}
)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return _importlib.import_module(f"bale.{name}")  # also binds it in this namespace
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bale' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *_SUBMODULES, "__doc__", "__file__", "__name__", "__path__"})


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
    "MergeReport",
    "MissingFileError",
    "NotABaleFileError",
    "PackReport",
    "PartInfo",
    "PartSet",
    "Schema",
    "SchemaError",
    "SplitReport",
    "String",
    "TargetExistsError",
    "TruncatedFileError",
    "UnsupportedFeatureError",
    "UnsupportedVersionError",
    "Writer",
    "__version__",
    "concat",
    "merge",
    "open",
    "pack",
    "pack_splits",
    "recompress",
    "split",
    "write",
]
