"""Loaders for reference data and built-in generators for demos and tests."""

from .parquet import ParquetStream

__all__ = ["ParquetStream"]
