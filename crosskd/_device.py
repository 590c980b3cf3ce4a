"""Device and precision: short strings in, torch objects out, clear errors when unavailable."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from .exceptions import ConfigError, DeviceError

__all__ = ["resolve_device", "check_precision", "autocast", "PRECISIONS"]

#: Accepted precision strings: full float32, bfloat16 autocast, float16 autocast with loss scaling.
PRECISIONS = ("32", "bf16-mixed", "16-mixed")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device`` into a device.

    ``"auto"`` is the first CUDA device when one is present, else the CPU.

    Raises:
        DeviceError: a CUDA device was asked for and none (or not that index) exists.
        ConfigError: the string is not a device name.
    """
    if isinstance(device, torch.device):
        dev = device
    else:
        name = str(device).strip().lower()
        if name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dev = torch.device(name)
        except RuntimeError:
            raise ConfigError(
                f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}."
            ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device={str(device)!r} was requested but this machine has no usable CUDA device "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}). "
                "Use device='cpu', or device='auto' to take a GPU only when one is present."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device={str(device)!r} was requested but only {torch.cuda.device_count()} CUDA "
                f"device(s) exist (cuda:0 to cuda:{torch.cuda.device_count() - 1})."
            )
    elif dev.type not in ("cpu", "mps"):
        raise ConfigError(f"device type {dev.type!r} is not supported; use 'cpu' or 'cuda'.")
    return dev


def check_precision(precision: str | int) -> str:
    """Return the precision string, or raise :class:`ConfigError` listing the accepted ones."""
    value = str(precision)
    if value not in PRECISIONS:
        raise ConfigError(
            f"precision must be one of {', '.join(repr(p) for p in PRECISIONS)}, got {precision!r}."
        )
    return value


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Autocast for ``precision`` on ``device`` ("32" runs in plain float32)."""
    precision = check_precision(precision)
    if precision == "32":
        yield
        return
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
