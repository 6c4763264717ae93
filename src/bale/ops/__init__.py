"""Whole-file operations: pack, split, concat, merge (and `parts`, a distributed write), repair, verify, export, info."""
