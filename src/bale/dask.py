"""``bale.dask``: the Dask entry point, ``from_bale(path, column) -> dask.array.Array``.

>>> import bale.dask                                                     # doctest: +SKIP
>>> x = bale.dask.from_bale("train.bale", "embedding")   # chunks of whole row groups
>>> x.sum(axis=0).compute()
>>> x[[5, 1, 99]].compute()                                # reads only those rows

Importing this module does not import dask; calling ``from_bale`` does.
"""

from __future__ import annotations

from bale.adapters.dask import from_bale

__all__ = ["from_bale"]
