"""How many CPU threads torch uses: ``threads="auto"`` picks from idle cores and step size.

Measured on the 2-core CI machine (see ``benchmarks/threads.py``): with two other CPU-bound
processes running, torch's default of one thread per core made the tiny demo 5x slower than one
thread (OpenMP threads wait on each other), and small steps (an MLP of a few thousand parameters
on 512 rows) gain nothing from a second thread even on an idle machine. ``"auto"`` therefore uses
no more threads than there are idle cores (measured over a short window from ``/proc/stat``), and
one thread when a training step is too small to be split usefully.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator

import torch

from .exceptions import ConfigError

__all__ = ["available_cores", "idle_cores", "choose_threads", "torch_threads", "SMALL_STEP_FLOPS"]

#: Below this many floating-point operations per training step (forward + backward, about
#: 6 x parameters x rows), one thread is used whatever the idle cores.
SMALL_STEP_FLOPS = 5e7


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _cpu_times() -> tuple[float, float] | None:
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return idle, sum(fields)


def idle_cores(window: float = 0.1) -> float:
    """Idle cores of the machine over ``window`` seconds (from ``/proc/stat``); with ``window=0``,
    or where ``/proc/stat`` is missing, the cores minus the 1-minute load average (instant, but it
    lags behind changes)."""
    cores = os.cpu_count() or 1
    first = _cpu_times() if window > 0 else None
    if first is None:
        try:
            return max(0.0, cores - os.getloadavg()[0])
        except OSError:
            return float(cores)
    time.sleep(window)
    second = _cpu_times()
    busy_total = second[1] - first[1] if second is not None else 0.0
    if second is None or busy_total <= 0:
        return float(cores)
    return cores * (second[0] - first[0]) / busy_total


def choose_threads(
    threads: int | str,
    *,
    step_flops: float | None = None,
    processes: int = 1,
    window: float = 0.1,
) -> int:
    """The torch thread count for ``threads`` (a positive int, or ``"auto"``).

    Args:
        threads: a number of threads, or ``"auto"``: the idle cores (rounded, at least 1, at most
            this process's cores divided among ``processes``), and 1 when ``step_flops`` is below
            :data:`SMALL_STEP_FLOPS`.
        step_flops: the training step's approximate work, or None (unknown: no small-step rule).
        processes: processes sharing the machine in this run (ranks under ``torchrun``).
        window: seconds over which idle cores are measured (0: the load average, no wait).
    """
    if threads != "auto":
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(
                f"threads must be a positive integer or 'auto', got {threads!r}. 'auto' uses the "
                "idle cores, and one thread for small models."
            )
        return threads
    if step_flops is not None and step_flops < SMALL_STEP_FLOPS:
        return 1
    share = max(1, available_cores() // max(1, processes))
    idle = idle_cores(window) / max(1, processes)
    return int(max(1, min(share, math.floor(idle + 0.5))))


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, restoring the previous count after."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def step_flops(model: torch.nn.Module, sample: tuple[torch.Tensor, ...], batch_size: int) -> float:
    """Approximate floating-point operations of one training step of ``batch_size`` rows: three
    times the forward pass (forward + backward), counted by torch's FLOP counter on ``sample``
    (a few rows)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*sample)
        rows = max(1, int(sample[0].shape[0]))
        return 3.0 * counter.get_total_flops() / rows * batch_size
    except Exception:  # noqa: BLE001 - a model the counter cannot trace: size unknown
        return math.inf
    finally:
        model.train(was_training)
