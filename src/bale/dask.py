"""``bale.dask``: the Dask entry points: ``from_bale`` (a column as a lazy dask array),
``read_bale_dataframe`` (scalar and string columns as a dask DataFrame) and ``to_bale`` (a dask
array, dict of arrays, bag or DataFrame written by the workers as parts, merged into one file).

>>> import bale.dask                                                     # doctest: +SKIP
>>> x = bale.dask.from_bale("train.bale", "embedding")   # chunks of whole row groups
>>> x.sum(axis=0).compute()
>>> x[[5, 1, 99]].compute()                                # reads only those rows
>>> bale.dask.to_bale(x * 2, "doubled.bale", column="embedding")
>>> bale.dask.read_bale_dataframe("train.bale", ["label"]).label.value_counts().compute()

Importing this module does not import dask; calling one of them does.
"""

from __future__ import annotations

from bale.adapters.dask import from_bale, read_bale_dataframe, to_bale

__all__ = ["from_bale", "read_bale_dataframe", "to_bale"]
