"""The configuration schema: one module per settings area, and the method table (``registry``)."""
