"""The package version: one constant, read by the package root, the writer and the CLI."""

__version__ = "0.1.0"
