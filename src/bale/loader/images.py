"""The loader's image transform, `DecodeImages`: defined in `bale.images`, re-exported here, where
the loader's documentation has always named it."""

from bale.images import DecodeImages

__all__ = ["DecodeImages"]
