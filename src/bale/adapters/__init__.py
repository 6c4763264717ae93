"""Framework adapters: PyTorch, Keras, Grain and Dask views of bale files and loaders.

Each submodule imports its framework only when one of its functions or classes is used, so
``import bale`` never pulls in torch, keras, grain or dask:

>>> from bale.adapters.torch import TorchDataset         # doctest: +SKIP
>>> from bale.adapters.keras import KerasSequence         # doctest: +SKIP
>>> from bale.adapters.grain import GrainSource           # doctest: +SKIP
>>> from bale.adapters.dask import from_bale              # doctest: +SKIP
"""
