"""Atomic file writes: a crash or an error never leaves a half-written file, and an existing file
is untouched until the new one is complete (temporary file in the same folder, fsync, rename)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "write_text", "write_json"]


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target``.

    Write the new content to the yielded path (with any library: safetensors, matplotlib,
    LightGBM, ...). When the block ends normally, the file is flushed to disk and renamed over
    ``target`` (and the rename itself made durable where the platform allows it); when it raises,
    the temporary file is removed and ``target`` is left as it was.

    The file gets the permissions a plain ``open(target, "w")`` would give a new file: ``0o666``
    less the process umask (``0o644`` under the usual umask 022), so a service running under
    another account can read what was written. (``tempfile.mkstemp`` would leave it ``0o600``.)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary(target)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def _new_temporary(target: Path) -> Path:
    """Create an empty, new file next to ``target`` with mode ``0o666`` less the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)  # the kernel applies the umask, as for open()
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"Could not create a temporary file next to {str(target)!r}.")


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically; returns the path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_json(target: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` as indented JSON (numpy scalars as plain numbers) atomically."""
    return write_text(target, json.dumps(payload, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    item = getattr(value, "item", None)
    if callable(item):  # numpy scalars and 0-d arrays / tensors
        return item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not possible on every platform (Windows), hence best effort.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
