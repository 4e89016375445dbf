"""One module per viewer page; each defines `VIEW` (see simworld.viewer.registry)."""
