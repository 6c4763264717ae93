"""Importers: turn what users already have into RowSources for `bale.pack`."""
