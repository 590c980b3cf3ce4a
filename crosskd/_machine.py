"""The CPU a measurement ran on, without importing torch (benchmarks that measure memory read it)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["cpu_description"]


def cpu_description() -> str:
    """``"cpu: 2 cores (Intel(R) Xeon(R) Processor)"``: the model name from /proc/cpuinfo where it
    exists, else :func:`platform.processor`."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {os.cpu_count()} cores ({model})"
