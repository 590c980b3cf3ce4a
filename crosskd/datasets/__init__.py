"""Loaders for reference data and built-in generators for demos and tests."""
