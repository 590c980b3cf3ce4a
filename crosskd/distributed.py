"""Distributed training under ``torchrun``: detect the launch, start the process group, help ranks agree.

``torchrun --nproc_per_node=N script.py`` (or ``torchrun --nproc_per_node=N -m crosskd distill ...``)
starts N processes with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR``/``MASTER_PORT``
in their environment. :func:`distributed_context` reads them and starts the process group once
(NCCL when the training device is a GPU, gloo on CPU); :class:`crosskd.Distiller` then wraps its
student in ``DistributedDataParallel``. Only rank 0 writes files (:func:`is_main_process`).
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any

import torch

from .exceptions import ConfigError

__all__ = [
    "DistContext",
    "distributed_context",
    "launched_distributed",
    "is_main_process",
    "barrier",
    "broadcast_object",
]

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a distributed run.

    Attributes:
        rank: global rank (0 writes files).
        world_size: number of processes.
        local_rank: rank on this machine (the GPU index it trains on).
        backend: ``"nccl"`` or ``"gloo"``.
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        """True on rank 0."""
        return self.rank == 0


def launched_distributed() -> bool:
    """True when this process runs under ``torchrun`` with more than one process, or inside a
    process group that is already initialised."""
    if _dist_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size() > 1
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def distributed_context(device_type: str = "cpu") -> DistContext:
    """The :class:`DistContext` of this process; starts the process group when it is not started.

    Args:
        device_type: ``"cuda"`` uses the NCCL backend (when torch has it), anything else gloo.

    Raises:
        ConfigError: torch was built without ``torch.distributed``, the torchrun variables are
            missing or malformed, or the process group cannot be started.
    """
    if not _dist_available():
        raise ConfigError(
            "Distributed training was requested, but this torch build has no torch.distributed "
            f"(torch {torch.__version__}). Install a torch build with distributed support, or pass "
            "distributed=False to train in one process."
        )
    dist = torch.distributed
    if not dist.is_initialized():
        missing = [k for k in (*_ENV, "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise ConfigError(
                f"Distributed training was requested, but the environment lacks {missing}, which "
                "torchrun sets. Launch with `torchrun --nproc_per_node=N your_script.py` (or "
                "`torchrun --nproc_per_node=N -m crosskd distill ...`), or pass distributed=False."
            )
        backend = "gloo"
        if device_type == "cuda":
            if not dist.is_nccl_available():
                raise ConfigError(
                    "Distributed GPU training needs the NCCL backend, which this torch build lacks. "
                    "Install a CUDA build of torch with NCCL, or train on CPU (device='cpu', gloo)."
                )
            backend = "nccl"
            torch.cuda.set_device(_env_int("LOCAL_RANK"))
        elif not dist.is_gloo_available():
            raise ConfigError(
                "Distributed CPU training needs the gloo backend, which this torch build lacks. "
                "Install the standard torch build, or pass distributed=False."
            )
        try:
            dist.init_process_group(backend=backend)
        except (RuntimeError, ValueError) as err:
            raise ConfigError(
                f"Could not start the {backend} process group ({err}). Check that every rank was "
                "launched by the same torchrun command and that MASTER_ADDR/MASTER_PORT are "
                "reachable."
            ) from None
        atexit.register(_destroy)
    return DistContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
        backend=str(dist.get_backend()),
    )


def is_main_process() -> bool:
    """True unless this is a rank other than 0 of a started process group (only rank 0 writes)."""
    if _dist_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    try:
        return int(os.environ.get("RANK", "0")) == 0
    except ValueError:
        return True


def barrier() -> None:
    """Wait for every rank (no-op outside a process group)."""
    if _dist_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def broadcast_object(value: Any, src: int = 0) -> Any:
    """``value`` of rank ``src`` on every rank (no-op outside a process group).

    Used for small records (validation metrics, stop decisions) so that every rank takes the same
    decision; objects travel between the run's own processes only, never through files.
    """
    if not (_dist_available() and torch.distributed.is_initialized()):
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=src)
    return box[0]


def _env_int(name: str) -> int:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        raise ConfigError(
            f"The torchrun variable {name} is missing or not an integer "
            f"({os.environ.get(name)!r}). Launch with torchrun."
        ) from None


def _dist_available() -> bool:
    return torch.distributed.is_available()


def _destroy() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
