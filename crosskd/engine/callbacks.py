"""Callbacks of the engine: early stopping with best-weights restore, plateau restarts,
checkpoints and progress. Each hooks into the loop at a few fixed points:

- ``on_attempt_start(state)``: before the first epoch of a run, and after each restart;
- ``on_epoch_end(state, record)``: after an epoch's training and validation, in order; may set
  ``state.stop`` or ``state.restart`` and add entries to ``record``;
- ``on_epoch_done(state)``: after the engine acted on those decisions (a restart has happened);
- ``on_fit_end(state)``: after the last epoch.

``state_dict()`` / ``load_state_dict()`` keep what a checkpoint must carry to resume exactly.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .loop import EngineState

__all__ = [
    "Callback",
    "EarlyStopping",
    "ReduceOnPlateau",
    "PlateauRestart",
    "Checkpointing",
    "ProgressBar",
]


class Callback:
    """Base class: every hook does nothing."""

    def on_attempt_start(self, state: EngineState) -> None:
        pass

    def on_epoch_end(self, state: EngineState, record: dict[str, float]) -> None:
        pass

    def on_epoch_done(self, state: EngineState) -> None:
        pass

    def on_fit_end(self, state: EngineState) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class EarlyStopping(Callback):
    """Track the best validation value, stop after ``patience`` epochs without a strict improvement
    (None: never stop), and restore the best weights at the end.

    Args:
        monitor: the history key followed (e.g. ``"val_average_precision"``, ``"val_cer"``).
        higher_is_better: direction of ``monitor``.
        patience: epochs without a strict improvement before stopping, or None.
        keep_latest_tie: on a tie with the best value, keep the later epoch's weights (a small
            validation set often reaches CER 0 early, and later epochs of a decayed schedule read
            unseen lines better); patience still counts strict improvements only.
    """

    def __init__(
        self,
        monitor: str,
        higher_is_better: bool,
        patience: int | None,
        keep_latest_tie: bool = False,
    ) -> None:
        self.monitor, self.higher_is_better = monitor, higher_is_better
        self.patience, self.keep_latest_tie = patience, keep_latest_tie
        self.best_value: float | None = None
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def on_attempt_start(self, state: EngineState) -> None:
        self.best_value, self.best_epoch, self.bad_epochs, self.best_state = None, 0, 0, None

    def _better(self, value: float, strict: bool) -> bool:
        if self.best_value is None:
            return True
        if self.higher_is_better:
            return value > self.best_value if strict else value >= self.best_value
        return value < self.best_value if strict else value <= self.best_value

    def on_epoch_end(self, state: EngineState, record: dict[str, float]) -> None:
        value = record.get(self.monitor)
        if value is None or not math.isfinite(value):
            return
        improved = self._better(value, strict=True)
        keep = improved or (self.keep_latest_tie and self._better(value, strict=False))
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        if keep:
            self.best_value, self.best_epoch = value, state.epoch
            self.best_state = copy.deepcopy(state.model.state_dict())
        if self.patience is not None and self.bad_epochs >= self.patience:
            state.stop = True

    def on_fit_end(self, state: EngineState) -> None:
        if self.best_state is not None:
            state.model.load_state_dict(self.best_state)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_value = state.get("best_value")
        self.best_epoch = int(state.get("best_epoch", 0))
        self.bad_epochs = int(state.get("bad_epochs", 0))


class ReduceOnPlateau(Callback):
    """Lower the learning rate when the validation metric stalls, and stop after the last cut.

    For an engine with ``schedule="plateau"``: after ``patience`` epochs without a strict
    improvement of ``monitor``, the rate is multiplied by ``factor``; after ``reductions`` cuts
    and ``patience`` more epochs without improvement, training stops. The budget then follows the
    data: a small table trains for many short epochs, a large one stops when it has converged.

    Args:
        monitor: the history key followed.
        higher_is_better: its direction.
        patience: epochs without improvement before each cut.
        factor: the multiplier of each cut.
        reductions: cuts before stopping.
    """

    def __init__(
        self,
        monitor: str,
        higher_is_better: bool,
        patience: int,
        factor: float = 0.3,
        reductions: int = 3,
    ) -> None:
        self.monitor, self.higher_is_better = monitor, higher_is_better
        self.patience, self.factor, self.reductions = patience, factor, reductions
        self.best: float | None = None
        self.bad = 0
        self.cuts = 0
        self.scale = 1.0

    def on_attempt_start(self, state: EngineState) -> None:
        self.best, self.bad, self.cuts, self.scale = None, 0, 0, 1.0
        state.lr_scale = 1.0

    def on_epoch_end(self, state: EngineState, record: dict[str, float]) -> None:
        value = record.get(self.monitor)
        if value is None or not math.isfinite(value):
            return
        better = self.best is None or (
            value > self.best if self.higher_is_better else value < self.best
        )
        if better:
            self.best, self.bad = value, 0
            return
        self.bad += 1
        if self.bad < self.patience:
            return
        if self.cuts >= self.reductions:
            state.stop = True
            return
        self.cuts += 1
        self.bad = 0
        self.scale *= self.factor
        state.lr_scale = self.scale

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad": self.bad, "cuts": self.cuts, "scale": self.scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.bad, self.cuts = int(state.get("bad", 0)), int(state.get("cuts", 0))
        self.scale = float(state.get("scale", 1.0))


class PlateauRestart(Callback):
    """Start again from new initial weights when the model is still stuck after ``epochs`` epochs.

    Args:
        stalled: ``model -> (stuck, value)``, e.g. whether a CTC model still reads (almost) only
            blanks and its character error rate.
        restarts: how many restarts are allowed (0 turns the check off).
        epochs: the epoch of an attempt after which the check runs (not when it is the last one).
        max_epochs: epochs per attempt.
        say: where the notice goes (None: silent).
    """

    def __init__(
        self,
        stalled: Callable[[torch.nn.Module], tuple[bool, float]],
        restarts: int,
        epochs: int,
        max_epochs: int,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.stalled, self.restarts, self.epochs = stalled, restarts, epochs
        self.max_epochs, self.say = max_epochs, say
        self.done = 0

    def on_epoch_end(self, state: EngineState, record: dict[str, float]) -> None:
        if self.restarts:
            record["attempt"] = state.attempt
        if (
            self.done >= self.restarts
            or state.epoch != self.epochs
            or state.epoch >= self.max_epochs
            or state.stop
        ):
            return
        stuck, value = self.stalled(state.model)
        if stuck:
            self.done += 1
            state.restart = True
            if self.say is not None:
                self.say(
                    f"still on the all-blank plateau after {state.epoch} epochs (character error "
                    f"rate {value:.3f}); restarting from new initial weights "
                    f"({self.done}/{self.restarts})"
                )

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.done = int(state.get("done", 0))


class Checkpointing(Callback):
    """Write a training checkpoint every ``every`` epochs, after the last one and when stopping.

    Args:
        path: the checkpoint file.
        run: what identifies the run (settings and fingerprints), checked on resume.
        every: epochs between two checkpoints.
    """

    def __init__(self, path: Path, run: dict[str, Any], every: int) -> None:
        self.path, self.run, self.every = path, run, every

    def on_epoch_done(self, state: EngineState) -> None:
        last = state.epoch >= state.max_epochs
        if state.stop or last or state.epoch % self.every == 0 or state.restarted:
            if state.main:  # only rank 0 writes files
                state.save_checkpoint(self.path, self.run)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


class ProgressBar(Callback):
    """A tqdm bar over the epochs of an attempt, showing the monitored validation value.

    Args:
        desc: what trains (``"teacher"``, ``"baseline"``, ``"student"``, ...).
        monitor: the history key shown, or None.
    """

    def __init__(self, desc: str, monitor: str | None) -> None:
        self.desc, self.monitor = desc, monitor
        self.bar: Any = None

    def on_attempt_start(self, state: EngineState) -> None:
        from tqdm.auto import tqdm

        if self.bar is not None:
            self.bar.close()
        desc = self.desc if not state.attempt else f"{self.desc} (restart {state.attempt})"
        self.bar = tqdm(
            total=state.max_epochs, initial=state.epoch, desc=desc, unit="epoch", leave=False
        )

    def on_epoch_end(self, state: EngineState, record: dict[str, float]) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        shown = {"loss": f"{record.get('train_loss', float('nan')):.4f}"}
        if self.monitor and self.monitor in record:
            shown[self.monitor] = f"{record[self.monitor]:.4f}"
        self.bar.set_postfix(shown)

    def on_fit_end(self, state: EngineState) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
