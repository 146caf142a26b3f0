"""Backend lowerings of the IR graph: one module per target."""
