"""``bale.ray``: the Ray Data entry point, ``read_bale(paths) -> ray.data.Dataset`` and
``BaleDatasink(target)`` (a distributed write into one ``.bale`` file).

>>> import ray, bale.ray                                                 # doctest: +SKIP
>>> ds = bale.ray.read_bale("data/train-*.bale")           # one read task per run of row groups
>>> ds.map_batches(preprocess).write_datasink(bale.ray.BaleDatasink("features.bale"))

Importing this module does not import Ray; using one of its names does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bale.adapters.ray import BaleDatasink, BaleDatasource, read_bale

__all__ = ["BaleDatasink", "BaleDatasource", "read_bale"]


def __getattr__(name: str) -> Any:
    # The adapter imports Ray (about a second): only when one of its names is used.
    if name not in __all__:
        raise AttributeError(f"module 'bale.ray' has no attribute {name!r}")
    value = getattr(importlib.import_module("bale.adapters.ray"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, "__doc__", "__file__", "__name__"})
