"""The task protocol: what a kind of data plugs into the one training engine.

The engine (:mod:`crosskd.engine`) owns the loop; a task owns what is specific to a kind of data
and output. A task is a small object with:

- ``terms``: the names of the loss terms it returns, ``"loss"`` first (e.g. ``("loss", "kd",
  "ce")``); the engine logs each as ``train_<name>`` and ``val_<name>``.
- ``monitor`` / ``higher_is_better`` / ``keep_latest_tie``: the validation metric that early
  stopping and best-weights restore follow.
- ``cache_targets(teacher_outputs)``: turns the teacher's outputs on the training rows, computed
  once, into what a step consumes (a tensor or a tuple of per-row tensors).
- ``online_targets(inputs)``: the teacher's outputs for one (augmented) batch, on the device.
- ``loss(student_out, teacher, targets, cached)``: a dict of named scalar tensors; ``"loss"`` is
  the one that is backpropagated, the others are detached.
- ``validate(model, val, device, precision)``: ``{name: float}`` over the validation data: the same
  loss terms as training and the task's metrics (names without the ``val_`` prefix).

See ``docs/engine.md`` for how to add a task.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from .._device import autocast

__all__ = ["Task", "forward_batched"]

Tensors = tuple[torch.Tensor, ...]


@runtime_checkable
class Task(Protocol):
    """What the engine needs from a task (see the module docstring)."""

    terms: tuple[str, ...]
    monitor: str
    higher_is_better: bool
    keep_latest_tie: bool

    def cache_targets(self, teacher_outputs: Any) -> torch.Tensor | Tensors: ...

    def online_targets(self, inputs: Tensors) -> Any: ...

    def loss(
        self, student_out: torch.Tensor, teacher: Any, targets: Tensors, cached: bool
    ) -> dict[str, torch.Tensor]: ...

    def validate(
        self, model: nn.Module, val: Any, device: torch.device, precision: str
    ) -> dict[str, float]: ...


def forward_batched(
    model: nn.Module,
    inputs: Tensors,
    device: torch.device,
    precision: str,
    chunk_size: int,
) -> torch.Tensor:
    """``model(*inputs)`` in eval mode and inference mode, ``chunk_size`` rows at a time, float32.

    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    n = inputs[0].shape[0]
    parts = []
    with torch.inference_mode():
        for start in range(0, n, chunk_size):
            batch = tuple(t[start : start + chunk_size].to(device) for t in inputs)
            with autocast(device, precision):
                parts.append(model(*batch).float())
    model.train(was_training)
    if not parts:
        raise ValueError("forward_batched got 0 rows")
    return torch.cat(parts)
