"""The training loader: epoch order (pure), the threaded read pipeline, image transforms."""
