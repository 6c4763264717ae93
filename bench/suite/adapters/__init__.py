"""The registry of tools the suite compares: name -> adapter class, imported only when used."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.suite.adapters.base import Adapter

#: tool name -> (module under bench.suite.adapters, class, keyword options), in report order
TOOLS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "bale": ("bale_file", "BaleFile", {}),
    "bale-ra": ("bale_file", "BaleRandomAccess", {}),
    "folder": ("folder", "Folder", {}),
    "pickle": ("pickle_file", "PickleFile", {}),
    "npy": ("npy_memmap", "NpyMemmap", {}),
    "h5py-gzip4": ("hdf5", "Hdf5", {"compression": "gzip4"}),
    "h5py-lzf": ("hdf5", "Hdf5", {"compression": "lzf"}),
    "h5py-none": ("hdf5", "Hdf5", {"compression": "none"}),
    "zarr": ("zarr_v3", "ZarrV3", {}),
    "blosc2": ("blosc2_nd", "Blosc2Nd", {}),
    "webdataset": ("webdataset_tar", "WebDatasetTar", {}),
    "streaming": ("mosaic_streaming", "MosaicStreaming", {}),
    "litdata": ("litdata_chunks", "LitDataChunks", {}),
    "lance": ("lance_table", "LanceTable", {}),
    "hf-datasets": ("hf_datasets", "HfDatasets", {}),
    "grain": ("grain_arrayrecord", "GrainArrayRecord", {}),
    "ffcv": ("ffcv_beton", "FfcvBeton", {}),
}


def load(tool: str) -> Adapter:
    """A fresh adapter for ``tool`` (imports the tool's module now)."""
    try:
        module_name, class_name, options = TOOLS[tool]
    except KeyError:
        raise ValueError(f"unknown tool {tool!r}; expected one of {sorted(TOOLS)}") from None
    module = importlib.import_module(f"bench.suite.adapters.{module_name}")
    adapter: Adapter = getattr(module, class_name)(**options)
    return adapter
