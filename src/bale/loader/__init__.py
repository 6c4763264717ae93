"""The training loader: the epoch order and its sharing among ranks and workers (pure), the
threaded read pipeline, shuffle-quality statistics."""
