"""Framework adapters: PyTorch, Keras, Grain, Dask and Ray views of bale files and loaders, and
the Dask and Ray writers of one file from many tasks.

Each submodule imports its framework only when one of its functions or classes is used, so
``import bale`` never pulls in torch, keras, grain, dask or ray:

>>> from bale.adapters.torch import TorchDataset         # doctest: +SKIP
>>> from bale.adapters.keras import KerasSequence         # doctest: +SKIP
>>> from bale.adapters.grain import GrainSource           # doctest: +SKIP
>>> from bale.adapters.dask import from_bale              # doctest: +SKIP
>>> from bale.adapters.ray import BaleDatasink            # doctest: +SKIP
"""
