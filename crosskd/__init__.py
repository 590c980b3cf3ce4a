"""crosskd (public API assembled once all modules land)."""

__version__ = "0.1.0"
