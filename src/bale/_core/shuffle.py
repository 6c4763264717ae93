"""The shuffle hash: splitmix64 and the seeded keys and permutations built on it, shared by the
loader's epoch order and `bale pack`'s row order.

Pure integer arithmetic, identical on every machine and NumPy version: permutations sort
splitmix64 hashes instead of drawing from a random generator whose stream may change between
releases. Changing anything here changes every shuffled order bale produces (the loader's epochs
and the row order of packed files), so tests pin the values.
"""

from __future__ import annotations

import numpy as np

MASK64 = 0xFFFFFFFFFFFFFFFF


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def mix_key(*parts: int) -> np.uint64:
    """Mix integers (seed, epoch, window...) into one 64-bit key."""
    h = np.array([0x243F6A8885A308D3], dtype=np.uint64)
    for part in parts:
        h = splitmix64(h ^ np.array([part & MASK64], dtype=np.uint64))
    return np.uint64(h[0])


def permutation(n: int, *key: int) -> np.ndarray:
    """A permutation of range(n) that depends only on ``key``: ``permutation(5, seed, epoch)``."""
    with np.errstate(over="ignore"):
        hashes = splitmix64(np.arange(n, dtype=np.uint64) ^ mix_key(*key))
    return np.argsort(hashes, kind="stable").astype(np.int64)


def shuffle_keys(rows: np.ndarray, seed: int) -> np.ndarray:
    """uint64 sort keys of source rows: `bale pack`'s shuffled order is the rows sorted by key.

    splitmix64 of the row number mixed with the seed: a bijection, so keys never tie.
    """
    salt = splitmix64(np.array([seed & MASK64], dtype=np.uint64))[0]
    return splitmix64(np.asarray(rows).astype(np.uint64) ^ salt)
