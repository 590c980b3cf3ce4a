"""Batch sources of the engine: where a training step's tensors come from.

A source has ``steps_per_epoch`` and ``epoch(generator, device)``, which yields
``(inputs, teacher, targets)`` per step: ``inputs`` the student's input tensors, ``teacher`` the
cached teacher targets of those rows (a tensor, a tuple of tensors, or None when the teacher runs
online or there is none), ``targets`` a tuple of label tensors whose meaning belongs to the task
(class codes; or padded label sequences, lengths and a labelled mask). Every tensor is on the
training device already: no per-row DataLoader, no host copy per step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..exceptions import DataError

if TYPE_CHECKING:
    from ..datasets.parquet import ParquetStream
    from ..distributed import DistContext

__all__ = ["MemoryBatches", "StreamBatches", "batch_bounds", "PERMUTE_ONCE_BYTES", "Step"]

Tensors = tuple[torch.Tensor, ...]
#: One step: student inputs, cached teacher targets (or None), task targets.
Step = tuple[Tensors, "torch.Tensor | Tensors | None", Tensors]

#: In-memory inputs up to this size are permuted once per epoch and sliced per step (measured 5x
#: cheaper than a gather per step on CPU); larger inputs (images) are gathered per step instead,
#: so that the permuted copy does not double their memory.
PERMUTE_ONCE_BYTES = 2 << 30


def batch_bounds(n: int, batch_size: int, batch_norm: bool) -> list[tuple[int, int]]:
    """``[start, stop)`` of each step over ``n`` rows; a BatchNorm student never gets a 1-row batch."""
    starts = list(range(0, n, batch_size))
    if batch_norm and n - starts[-1] == 1:
        # BatchNorm cannot normalise a batch of one row in training mode: the last row joins
        # the previous batch instead.
        if len(starts) == 1:
            raise DataError(
                "The student has BatchNorm layers, which need at least 2 rows per batch in "
                "training, but there is 1 training row. Pass more rows, or a student without "
                "BatchNorm."
            )
        starts.pop()
    return list(zip(starts, starts[1:] + [n], strict=True))


def _as_tuple(value: torch.Tensor | Tensors | None) -> Tensors:
    if value is None:
        return ()
    return (value,) if torch.is_tensor(value) else tuple(value)


class MemoryBatches:
    """Batches of in-memory tensors already on the device.

    Each epoch draws one permutation of all rows (the same on every rank: same seed); under DDP
    rank r takes every world-th entry starting at r (so step i of all ranks together covers the rows
    of step i of one process with a batch world times larger), after dropping the last
    ``n % world`` entries so that every rank runs the same number of steps. Inputs up to
    :data:`PERMUTE_ONCE_BYTES` are permuted once per epoch and sliced per step.

    Args:
        inputs: the student's input tensors, ``(n, ...)`` each.
        targets: the task's per-row target tensors, ``(n, ...)`` each.
        teacher: cached teacher targets per row (a tensor or a tuple of tensors), or None.
        batch_size: rows per step and process.
        ctx: the distributed context, or None.
        batch_norm: whether the student has BatchNorm layers (no 1-row step).
    """

    def __init__(
        self,
        inputs: Tensors,
        targets: Tensors,
        teacher: torch.Tensor | Tensors | None,
        batch_size: int,
        ctx: DistContext | None,
        batch_norm: bool,
    ) -> None:
        self.inputs, self.targets = tuple(inputs), tuple(targets)
        self.teacher_is_tensor = torch.is_tensor(teacher)
        self.teacher = _as_tuple(teacher)
        self.n = int(self.inputs[0].shape[0])
        self.world, self.rank = (ctx.world_size, ctx.rank) if ctx is not None else (1, 0)
        self.n_local = self.n // self.world
        if self.n_local == 0:
            raise DataError(
                f"{self.n} training row(s) cannot be shared among {self.world} processes. Pass at "
                "least one row per process, or launch fewer processes."
            )
        self.bounds = batch_bounds(self.n_local, batch_size, batch_norm)
        nbytes = sum(t.numel() * t.element_size() for t in self.inputs)
        self.permute_once = nbytes <= PERMUTE_ONCE_BYTES

    @property
    def steps_per_epoch(self) -> int:
        return len(self.bounds)

    def _split(self, parts: list[torch.Tensor]) -> Step:
        k, m = len(self.inputs), len(self.targets)
        teacher = tuple(parts[k + m :])
        cached = (teacher[0] if self.teacher_is_tensor else teacher) if teacher else None
        return tuple(parts[:k]), cached, tuple(parts[k : k + m])

    def epoch(self, generator: torch.Generator, device: torch.device) -> Iterator[Step]:
        order = torch.randperm(self.n, generator=generator).to(device)
        if self.world > 1:
            order = order[: self.n_local * self.world][self.rank :: self.world]
        tensors = [*self.inputs, *self.targets, *self.teacher]
        if self.permute_once:
            permuted = [t.index_select(0, order) for t in tensors]
            for start, stop in self.bounds:
                yield self._split([t[start:stop] for t in permuted])
        else:
            for start, stop in self.bounds:
                idx = order[start:stop]
                yield self._split([t[idx] for t in tensors])


class StreamBatches:
    """Batches read from a :class:`~crosskd.datasets.ParquetStream`, one buffer at a time.

    Each epoch visits the row groups in a seeded random order, ``stream.batch_rows`` rows at a time;
    a buffer is encoded, moved to the device, shuffled and cut into batches, and the rows left over
    (fewer than a batch) join the next buffer, so every row is used once per epoch and every batch
    but the last has ``batch_size`` rows.

    Args:
        stream: the parquet stream.
        encode: ``frame -> inputs``: the student's input tensors for a DataFrame of feature columns.
        labels: ``values -> codes``: class codes (``IGNORE_LABEL`` for missing) of a target column.
        logits: cached teacher logits of every row (``(num_rows, classes)``, e.g. a memory map), or
            None.
        prepare: turns a chunk of teacher logits into the task's cached targets (e.g. packed soft
            targets).
        batch_size: rows per step.
        batch_norm: whether the student has BatchNorm layers (no 1-row step).
    """

    def __init__(
        self,
        stream: ParquetStream,
        encode: Callable[[Any], Tensors],
        labels: Callable[[Any], torch.Tensor],
        logits: np.ndarray | None,
        prepare: Callable[[torch.Tensor], torch.Tensor],
        batch_size: int,
        batch_norm: bool,
    ) -> None:
        self.stream, self.encode, self.labels, self.logits = stream, encode, labels, logits
        self.prepare, self.batch_size, self.batch_norm = prepare, batch_size, batch_norm
        n, b = stream.num_rows, batch_size
        # A last batch of one row is dropped for BatchNorm students (it cannot be normalised).
        self.steps_per_epoch = n // b + (1 if n % b > (1 if batch_norm else 0) else 0)

    def epoch(self, generator: torch.Generator, device: torch.device) -> Iterator[Step]:
        stream, b = self.stream, self.batch_size
        order = torch.randperm(len(stream.row_group_sizes), generator=generator).tolist()
        carry: list[torch.Tensor] | None = None
        for ids, frame in stream.chunks([*stream.columns, stream.target], order):
            tensors = [*self.encode(frame[stream.columns]), self.labels(frame[stream.target])]
            if self.logits is not None:
                logits = torch.from_numpy(np.ascontiguousarray(self.logits[ids]))
                tensors.append(self.prepare(logits))
            del frame
            tensors = [t.to(device) for t in tensors]
            if carry is not None:
                tensors = [torch.cat([c, t]) for c, t in zip(carry, tensors, strict=True)]
            perm = torch.randperm(tensors[0].shape[0], generator=generator).to(device)
            tensors = [t.index_select(0, perm) for t in tensors]
            full = tensors[0].shape[0] // b * b
            for start in range(0, full, b):
                yield self._split([t[start : start + b] for t in tensors])
            carry = [t[full:] for t in tensors]
        if carry is not None and carry[0].shape[0] > (1 if self.batch_norm else 0):
            yield self._split(carry)

    def _split(self, parts: list[torch.Tensor]) -> Step:
        k = len(parts) - (2 if self.logits is not None else 1)
        return tuple(parts[:k]), (parts[k + 1] if self.logits is not None else None), (parts[k],)
