"""Tabular data: DataFrame encoding and small PyTorch students."""

from .encoder import EncodedTable, TabularEncoder
from .students import MLP, TabularStudent
from .transfer import jitter, munge

__all__ = ["TabularEncoder", "EncodedTable", "MLP", "TabularStudent", "munge", "jitter"]
