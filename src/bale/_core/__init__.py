"""bale's private engine: file layout, blocks, the row -> group map, shuffle keys, the shared encode
path, and the internals behind Dataset and Writer. Nothing here is public API."""
