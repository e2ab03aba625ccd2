"""Model modules: each defines `Model` and `load` (towers are imported by name)."""
