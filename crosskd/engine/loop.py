"""The one training loop of crosskd.

:class:`Engine` trains a student for any :class:`~crosskd.tasks.base.Task`: it owns the optimiser
(AdamW, fused where possible) and its warm-up + cosine schedule, gradient clipping, mixed
precision and the gradient scaler, DistributedDataParallel under ``torchrun``, the per-epoch history
(one schema for every task), restarts from new initial weights, checkpoint/resume and callbacks
(early stopping, plateau restarts, checkpoints, progress). This module holds the only ``backward``
call of the library.

History records: ``epoch`` (1-based, within an attempt), ``train_<term>`` for each of the task's
loss terms (row-weighted means over the epoch), ``lr`` (at the end of the epoch), ``epoch_seconds``,
and with validation data ``val_<term>`` and ``val_<metric>``; ``attempt`` when restarts are on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .._device import autocast
from ..exceptions import ConfigError, TrainingError
from .callbacks import Callback, EarlyStopping

if TYPE_CHECKING:
    from ..distributed import DistContext
    from ..tasks.base import Task

__all__ = ["Engine", "EngineState", "reinitialise", "make_optimizer"]


def reinitialise(model: nn.Module, seed: int) -> None:
    """Fresh initial weights for every submodule that can reset itself (seeded); children first, so
    a parent's own ``reset_parameters`` (e.g. a custom bias initialisation) has the last word."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in reversed(list(model.modules())):
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, fused when every one allows it (measured ~1.6x faster
    steps on CPU)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params):
        try:
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, TypeError):
            pass
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@dataclass
class EngineState:
    """The live state of a run, seen by callbacks."""

    model: nn.Module
    generator: torch.Generator
    max_epochs: int
    main: bool
    engine: Engine
    optimizer: Any = None
    scheduler: Any = None
    scaler: Any = None
    epoch: int = 0
    attempt: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    stop: bool = False
    restart: bool = False
    restarted: bool = False
    lr_scale: float = 1.0

    def save_checkpoint(self, path: Path, run: dict[str, Any]) -> None:
        """Write this state (and every callback's) to ``path`` atomically."""
        from ..checkpoint import TrainingState, capture_rng, save_checkpoint

        stopper = self.engine.early_stopping
        save_checkpoint(
            path,
            TrainingState(
                epoch=self.epoch,
                stopped=self.stop,
                model=self.model.state_dict(),
                optimizer=self.optimizer.state_dict(),
                scheduler=self.scheduler.state_dict(),
                scaler=self.scaler.state_dict(),
                rng=capture_rng(self.generator),
                best_value=None if stopper is None else stopper.best_value,
                best_epoch=0 if stopper is None else stopper.best_epoch,
                bad_epochs=0 if stopper is None else stopper.bad_epochs,
                best_state=None if stopper is None else stopper.best_state,
                history=self.history,
                run=run,
                extra={
                    "attempt": self.attempt,
                    "lr_scale": self.lr_scale,
                    "callbacks": [cb.state_dict() for cb in self.engine.callbacks],
                    "augment": _augment_state(self.engine.augment),
                },
            ),
        )


def _augment_state(augment: Any) -> Any:
    state = getattr(augment, "rng_state", None)
    return state() if callable(state) else None


class Engine:
    """Train a model with a task's loss on a batch source (see the module docstring).

    Args:
        epochs: epochs per attempt.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        warmup: ``steps_per_epoch -> warm-up steps`` (linear warm-up from ``warmup_start * lr``,
            then cosine decay to 0 over the rest of the attempt).
        warmup_start: the learning-rate factor at the first step (None: ``1 / warm-up steps``).
        schedule: after the warm-up, ``"cosine"`` decays to 0 at the end of ``epochs``;
            ``"plateau"`` keeps the rate times ``state.lr_scale``, which a
            :class:`~crosskd.engine.callbacks.ReduceOnPlateau` callback lowers when the validation
            metric stalls (the budget then follows the data).
        grad_clip: maximum gradient norm, or None.
        precision: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"`` (a gradient scaler on CUDA).
        device: the training device.
        ctx: the distributed context under ``torchrun``, or None.
        seed: seed of the new initial weights of restart ``k`` (``seed + 7919 * k``).
        augment: ``inputs -> inputs`` applied to each training batch, or None.
        callbacks: in the order they run at each hook.
    """

    def __init__(
        self,
        *,
        epochs: int,
        lr: float,
        weight_decay: float,
        warmup: Callable[[int], int],
        warmup_start: float | None = None,
        grad_clip: float | None = None,
        precision: str = "32",
        schedule: str = "cosine",
        device: torch.device,
        ctx: DistContext | None = None,
        seed: int = 0,
        augment: Callable[[Any], Any] | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.epochs, self.lr, self.weight_decay = int(epochs), float(lr), float(weight_decay)
        self.warmup, self.warmup_start, self.grad_clip = warmup, warmup_start, grad_clip
        self.precision, self.device, self.ctx, self.seed = precision, device, ctx, seed
        if schedule not in ("cosine", "plateau"):
            raise ConfigError(f"schedule must be 'cosine' or 'plateau', got {schedule!r}.")
        self.schedule = schedule
        self.augment = augment
        self.callbacks = list(callbacks)
        self.early_stopping = next(
            (c for c in self.callbacks if isinstance(c, EarlyStopping)), None
        )

    # ------------------------------------------------------------------ optimiser

    def _new_optimizer(self, state: EngineState, steps_per_epoch: int) -> None:
        total = steps_per_epoch * self.epochs
        warmup = max(1, min(total, int(self.warmup(steps_per_epoch))))
        start = 1.0 / warmup if self.warmup_start is None else float(self.warmup_start)

        def factor(step: int) -> float:
            if step < warmup:
                return (start + (1.0 - start) * step / warmup) * state.lr_scale
            if self.schedule == "plateau":
                return state.lr_scale
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        state.optimizer = make_optimizer(state.model, self.lr, self.weight_decay)
        state.scheduler = torch.optim.lr_scheduler.LambdaLR(state.optimizer, factor)
        use_scaler = self.precision == "16-mixed" and self.device.type == "cuda"
        state.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    def _resume(self, state: EngineState, saved: Any) -> None:
        from ..checkpoint import restore_rng

        state.model.load_state_dict(saved.model)
        state.optimizer.load_state_dict(saved.optimizer)
        state.scheduler.load_state_dict(saved.scheduler)
        if saved.scaler:
            state.scaler.load_state_dict(saved.scaler)
        restore_rng(saved.rng, state.generator)
        state.history = [dict(record) for record in saved.history]
        state.epoch, state.stop = saved.epoch, saved.stopped
        extra = saved.extra or {}
        state.attempt = int(extra.get("attempt", 0))
        state.lr_scale = float(extra.get("lr_scale", 1.0))
        for cb in self.callbacks:
            cb.on_attempt_start(state)
        for cb, cb_state in zip(self.callbacks, extra.get("callbacks") or [], strict=False):
            cb.load_state_dict(cb_state or {})
        if self.early_stopping is not None:
            stopper = self.early_stopping
            stopper.best_value, stopper.best_epoch = saved.best_value, saved.best_epoch
            stopper.bad_epochs = saved.bad_epochs
            if saved.best_state is not None:
                stopper.best_state = {k: v.to(self.device) for k, v in saved.best_state.items()}
        set_state = getattr(self.augment, "set_rng_state", None)
        if callable(set_state) and extra.get("augment") is not None:
            set_state(extra["augment"])

    # ------------------------------------------------------------------ loop

    def fit(
        self,
        model: nn.Module,
        task: Task,
        source: Any,
        *,
        val: Any = None,
        online: bool = False,
        generator: torch.Generator,
        resume: Any = None,
    ) -> EngineState:
        """Train ``model`` (in place) and return the final state.

        Args:
            model: the student, already on the device.
            task: the task (loss terms, teacher targets, validation).
            source: a batch source (:mod:`crosskd.engine.batches`).
            val: the task's validation data, or None.
            online: run the teacher on every batch (``task.online_targets``) instead of reading
                cached targets from the source.
            generator: the shuffling generator (seeded by the caller).
            resume: a :class:`~crosskd.checkpoint.TrainingState` to continue from, or None.
        """
        ctx = self.ctx
        state = EngineState(
            model=model,
            generator=generator,
            max_epochs=self.epochs,
            main=ctx is None or ctx.is_main,
            engine=self,
        )
        steps = source.steps_per_epoch
        self._new_optimizer(state, steps)
        if resume is not None:
            self._resume(state, resume)
        else:
            for cb in self.callbacks:
                cb.on_attempt_start(state)
        wrapped: nn.Module = model
        if ctx is not None:
            from torch.nn.parallel import DistributedDataParallel

            # The teacher is never wrapped: it has no gradients to average.
            wrapped = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        while not state.stop and state.epoch < self.epochs:
            record = self._epoch(state, wrapped, task, source, online)
            if val is not None:
                record.update(self._validate(task, model, val))
            state.history.append(record)
            for cb in self.callbacks:
                cb.on_epoch_end(state, record)
            if state.restart:
                state.attempt += 1
                reinitialise(model, self.seed + 7919 * state.attempt)
                state.epoch, state.restart, state.restarted = 0, False, True
                self._new_optimizer(state, steps)
                for cb in self.callbacks:
                    cb.on_attempt_start(state)
            for cb in self.callbacks:
                cb.on_epoch_done(state)
            state.restarted = False
        for cb in self.callbacks:
            cb.on_fit_end(state)
        if ctx is not None:
            # Parameters agree across ranks (DDP averages gradients), but buffers such as
            # BatchNorm running statistics were updated by each rank's own last batches: take
            # rank 0's, which validation used, so that every rank ends with the same model.
            import torch.distributed as dist

            for buffer in model.buffers():
                dist.broadcast(buffer.data, src=0)
        model.eval()
        return state

    def _epoch(
        self, state: EngineState, model: nn.Module, task: Task, source: Any, online: bool
    ) -> dict[str, float]:
        device, precision = self.device, self.precision
        optimizer, scheduler, scaler = state.optimizer, state.scheduler, state.scaler
        params = [p for group in optimizer.param_groups for p in group["params"]]
        names = task.terms
        state.model.train()
        started = time.perf_counter()
        # Kept on the device and summed once per epoch: no host sync per step.
        step_terms: list[torch.Tensor] = []
        step_rows: list[int] = []
        for inputs, cached, targets in source.epoch(state.generator, device):
            if self.augment is not None:
                inputs = self.augment(inputs)
            teacher = task.online_targets(inputs) if online else cached
            with autocast(device, precision):
                out = model(*inputs)
            terms = task.loss(out, teacher, targets, not online)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(terms["loss"]).backward()
            if self.grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(params, float(self.grad_clip))
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step_terms.append(torch.stack([terms[k].detach().float() for k in names]))
            step_rows.append(inputs[0].shape[0])
        sums = torch.zeros(len(names) + 1, dtype=torch.float64, device=device)
        if step_rows:
            weights = torch.tensor(step_rows, dtype=torch.float64, device=device)
            sums[:-1] = (torch.stack(step_terms).double() * weights[:, None]).sum(dim=0)
            sums[-1] = weights.sum()
        if self.ctx is not None:
            import torch.distributed as dist

            dist.all_reduce(sums)  # every rank sees the same epoch figures
        values = sums.tolist()
        epoch = state.epoch + 1
        if not math.isfinite(values[0]):
            raise TrainingError(
                f"Training diverged: the loss became {values[0]} in epoch {epoch}. Lower lr (now "
                f"{self.lr:g}), use precision='32' (now {precision!r}), or check the inputs for "
                "extreme values."
            )
        state.epoch = epoch
        record: dict[str, float] = {"epoch": epoch}
        record.update(
            {f"train_{k}": v / max(values[-1], 1.0) for k, v in zip(names, values, strict=False)}
        )
        record["lr"] = float(scheduler.get_last_lr()[0])
        record["epoch_seconds"] = time.perf_counter() - started
        return record

    def _validate(self, task: Task, model: nn.Module, val: Any) -> dict[str, float]:
        """Validation figures, identical on every rank (so that early stopping agrees).

        Under DDP the weights are the same on every rank; rank 0 computes the metrics (average
        precision and the like do not decompose over shards) and broadcasts them, errors included,
        so that no rank waits for one that failed.
        """
        if self.ctx is None:
            out = task.validate(model, val, self.device, self.precision)
            return {f"val_{k}": float(v) for k, v in out.items()}
        from ..distributed import broadcast_object

        outcome: tuple[str, Any] = ("ok", None)
        if self.ctx.is_main:
            try:
                out = task.validate(model, val, self.device, self.precision)
                outcome = ("ok", {f"val_{k}": float(v) for k, v in out.items()})
            except ConfigError as err:
                outcome = ("error", str(err))
        outcome = broadcast_object(outcome)
        if outcome[0] == "error":
            raise ConfigError(outcome[1])
        return outcome[1]
