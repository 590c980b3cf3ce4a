"""What every facade of the engine resolves the same way: device and process group, precision,
the checkpoint to resume from, and the identity of a run that a checkpoint must match."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .._device import check_precision, resolve_device
from ..exceptions import ConfigError

if TYPE_CHECKING:
    from ..checkpoint import TrainingState
    from ..distributed import DistContext

__all__ = [
    "setup_device",
    "resolve_precision",
    "read_resume",
    "run_identity",
    "checkpoint_plan",
    "check_engine_settings",
    "auto_epochs",
    "auto_patience",
    "plateau_patience",
    "TEACHER_MODES",
]

#: ``epochs="auto"``: the budget in optimiser steps, and its bounds in epochs.
AUTO_MIN_STEPS = 10000
AUTO_MIN_EPOCHS = 20
AUTO_MAX_EPOCHS = 300


def auto_epochs(steps_per_epoch: int) -> int:
    """The ``epochs="auto"`` budget: enough epochs for :data:`AUTO_MIN_STEPS` optimiser steps, at
    least :data:`AUTO_MIN_EPOCHS` and at most :data:`AUTO_MAX_EPOCHS` (early stopping on the
    validation rows usually ends the run before)."""
    wanted = math.ceil(AUTO_MIN_STEPS / max(1, steps_per_epoch))
    return int(min(AUTO_MAX_EPOCHS, max(AUTO_MIN_EPOCHS, wanted)))


def auto_patience(epochs: int) -> int:
    """``early_stopping="auto"``: a tenth of the epoch budget, at least 5 epochs."""
    return max(5, epochs // 10)


def plateau_patience(epochs: int) -> int:
    """``early_stopping="auto"`` with the plateau schedule: a thirtieth of the budget, at least 3
    epochs without improvement before each cut of the learning rate."""
    return max(3, epochs // 30)


#: ``teacher_mode``: teacher outputs computed once, on every batch, or online only with augment.
TEACHER_MODES = ("auto", "cached", "online")


def check_engine_settings(trainer: Any) -> None:
    """The settings every facade of the engine has, checked the same way: ``precision``,
    ``threads``, ``distributed``, ``teacher_mode``, ``checkpoint_dir``, ``checkpoint_every``."""
    from .._threads import choose_threads

    resolve_precision(trainer.precision, torch.device("cpu"))
    if trainer.threads != "auto":
        choose_threads(trainer.threads)
    if trainer.distributed not in ("auto", True, False):
        raise ConfigError(
            f"distributed must be 'auto', True or False, got {trainer.distributed!r}."
        )
    if trainer.teacher_mode not in TEACHER_MODES:
        raise ConfigError(
            f"teacher_mode must be one of {TEACHER_MODES}, got {trainer.teacher_mode!r}."
        )
    every = trainer.checkpoint_every
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise ConfigError(f"checkpoint_every must be a positive number of epochs, got {every!r}.")
    if trainer.checkpoint_dir is not None and Path(trainer.checkpoint_dir).is_file():
        raise ConfigError(
            f"checkpoint_dir {str(trainer.checkpoint_dir)!r} is a file; pass a folder (it is "
            "created when missing)."
        )


def setup_device(
    device: str | torch.device, distributed: bool | str
) -> tuple[torch.device, DistContext | None]:
    """The training device and, under ``torchrun`` with several processes, the process group.

    ``distributed``: ``"auto"`` joins a ``torchrun`` launch when there is one, True requires one,
    False trains in this process only.
    """
    from ..distributed import distributed_context, launched_distributed

    if distributed not in ("auto", True, False):
        raise ConfigError(f"distributed must be 'auto', True or False, got {distributed!r}.")
    dev = resolve_device(device)
    if distributed is True or (distributed == "auto" and launched_distributed()):
        ctx = distributed_context(dev.type)
        if ctx.world_size > 1:
            if dev.type == "cuda" and dev.index is None:
                dev = torch.device("cuda", ctx.local_rank)
            return dev, ctx
    return dev, None


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"``: bf16-mixed on a CUDA device that supports bfloat16, else ``"32"``."""
    if precision != "auto":
        try:
            return check_precision(precision)
        except ConfigError:
            raise ConfigError(
                "precision must be one of 'auto', '32', 'bf16-mixed', '16-mixed' ('auto': "
                f"bf16-mixed on a GPU that supports it, else 32), got {precision!r}."
            ) from None
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32"


def read_resume(
    resume: bool | str | Path | None, checkpoint_dir: str | Path | None, owner: str
) -> tuple[TrainingState | None, Path | None]:
    """The checkpoint to continue from and its path, or ``(None, None)``.

    Args:
        resume: None/False (start afresh), True (``checkpoint_dir``'s checkpoint when there is
            one), or the path of a checkpoint file or folder.
        checkpoint_dir: the trainer's ``checkpoint_dir``.
        owner: the trainer's class name, for messages.
    """
    from .. import checkpoint as _ckpt

    if resume is None or resume is False:
        return None, None
    if resume is True:
        if checkpoint_dir is None:
            raise ConfigError(
                "resume=True continues from checkpoint_dir, but checkpoint_dir is None. Pass "
                f"{owner}(..., checkpoint_dir=folder), or resume=path of a checkpoint."
            )
        path = _ckpt.resolve_checkpoint(checkpoint_dir, must_exist=False)
        if not path.is_file():
            return None, None  # nothing to resume yet: a fresh run that writes checkpoints
    elif isinstance(resume, (str, Path)) or hasattr(resume, "__fspath__"):
        path = _ckpt.resolve_checkpoint(resume)
    else:
        raise ConfigError(
            f"resume must be None, True or the path of a checkpoint (file or folder), got "
            f"{type(resume).__name__}."
        )
    return _ckpt.load_checkpoint(path), path


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if callable(value) and not isinstance(value, (str, bytes)):
        return repr(value)
    return value.item() if isinstance(value, np.generic) else value


def run_identity(
    settings: Mapping[str, Any],
    student: nn.Module,
    ctx: DistContext | None,
    **fingerprints: str | None,
) -> dict[str, Any]:
    """Settings and fingerprints that must match for a checkpoint to be resumed.

    Args:
        settings: the values the run trains with (``"auto"`` resolved: it may resolve differently
            on another device).
        student: the model being trained (its class and parameter shapes).
        ctx: the distributed context (its world size is part of the run).
        fingerprints: ``data``, ``targets``, ``teacher``, ``validation``, ... as strings.
    """
    plain = {k: _plain(v) for k, v in settings.items()}
    if ctx is not None:
        plain["world_size"] = ctx.world_size
    shapes = {k: list(v.shape) for k, v in student.state_dict().items()}
    return {
        "settings": plain,
        **fingerprints,
        "student": f"{type(student).__name__}:{sorted(shapes.items())}",
    }


def checkpoint_plan(
    checkpoint_dir: str | Path | None,
    resume_state: TrainingState | None,
    resume_path: Path | None,
    identity: Callable[[], dict[str, Any]],
) -> tuple[Path, dict[str, Any]] | None:
    """Where checkpoints go and the run identity they carry, or None when none are written.

    A resumed run's identity (``identity()``, computed only when needed) must equal the saved
    one (:func:`crosskd.checkpoint.check_same_run` raises otherwise).
    """
    if checkpoint_dir is None and resume_state is None:
        return None
    from ..checkpoint import CHECKPOINT_NAME, check_same_run

    run = identity()
    if resume_state is not None:
        check_same_run(resume_state.run, run, resume_path)
    return None if checkpoint_dir is None else (Path(checkpoint_dir) / CHECKPOINT_NAME, run)
