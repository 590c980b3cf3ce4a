"""Errors raised by crosskd.

Every error a user can cause is a :class:`CrossKDError`, so ``except CrossKDError`` catches all of
them, and the command line turns them into a one-line message. Each subclass also derives from the
builtin exception a Python user would expect (``ValueError``, ``TypeError``, ...), so existing
``except ValueError`` code keeps working.

Messages follow one pattern: what was wrong, what was expected, what was received, how to fix it.
"""

from __future__ import annotations

__all__ = [
    "CrossKDError",
    "DataError",
    "ConfigError",
    "TeacherError",
    "NotFittedError",
    "BundleError",
    "DeviceError",
    "TrainingError",
    "ExportError",
]


class CrossKDError(Exception):
    """Base class of every error crosskd raises on purpose."""


class DataError(CrossKDError, ValueError):
    """The data is unusable: wrong shape, missing columns, NaN where none is allowed, unknown labels."""


class ConfigError(CrossKDError, ValueError):
    """An argument is out of range or inconsistent with another (temperature <= 0, alpha > 1, ...)."""


class TeacherError(CrossKDError, ValueError):
    """A teacher model is not supported as given (custom objective, no probabilities, ...)."""


class NotFittedError(CrossKDError, AttributeError):
    """A fitted attribute was used before ``fit``."""


class BundleError(CrossKDError, OSError):
    """A saved file is missing, truncated, corrupt, or not a crosskd file."""


class DeviceError(CrossKDError, RuntimeError):
    """The requested device or precision is not available on this machine."""


class TrainingError(CrossKDError, RuntimeError):
    """Training went wrong in a way the settings can fix (the loss became NaN or infinite, ...)."""


class ExportError(CrossKDError, RuntimeError):
    """The exported model does not reproduce the torch model, or cannot be exported at all."""
