"""Whole-file operations: pack, split, concat, repair, verify, export, info."""
