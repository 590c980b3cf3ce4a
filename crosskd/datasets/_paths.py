"""Where reference data lives: ``$CROSSKD_DATA``, else ``../shared/data`` next to the project."""

from __future__ import annotations

import os
from pathlib import Path

from ..exceptions import DataError

__all__ = ["data_root", "reference_path"]


def data_root() -> Path | None:
    """The reference-data folder, or None when none is found.

    Looked up in order: the ``CROSSKD_DATA`` environment variable; ``../shared/data`` relative to
    the current directory; ``../shared/data`` relative to the project checkout this package lives in.
    """
    env = os.environ.get("CROSSKD_DATA")
    if env:
        return Path(env) if Path(env).is_dir() else None
    candidates = [Path.cwd().parent / "shared" / "data"]
    candidates.append(Path(__file__).resolve().parents[3] / "shared" / "data")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


def reference_path(*parts: str) -> Path:
    """Path of a file or folder inside the reference data, with a clear error when it is absent."""
    root = data_root()
    where = os.path.join(*parts)
    if root is None or not (root / where).exists():
        looked = f"{root}/{where}" if root is not None else f"../shared/data/{where}"
        raise DataError(
            f"Reference data {where!r} was not found (looked at {looked}). Set CROSSKD_DATA to the "
            "folder that holds it, or pass the file path explicitly."
        )
    return root / where
