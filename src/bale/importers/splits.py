"""What names a dataset split (``train``, ``valid``, ``test``, ``test_stg1``...): shared by image
folders (split folders) and HDF5 files (split groups)."""

from __future__ import annotations

import re

#: Folder or group names of dataset splits (any case); so are names starting with ``train_``,
#: ``valid_``, ``val_`` or ``test_`` (or ``-``), like Kaggle's ``test_stg1``.
SPLIT_NAMES: tuple[str, ...] = (
    "train",
    "training",
    "valid",
    "val",
    "validation",
    "dev",
    "test",
    "testing",
)
_SPLIT_PREFIX = re.compile(r"(train|valid|val|test)[_-]", re.IGNORECASE)


def is_split_name(name: str) -> bool:
    """Whether a folder (or HDF5 group) name names a dataset split: ``train``, ``valid``,
    ``val``, ``validation``, ``dev``, ``test``, ``training``, ``testing``, ``test_stg1``..."""
    return name.lower() in SPLIT_NAMES or _SPLIT_PREFIX.match(name) is not None
