"""The one training engine: a loop (:class:`Engine`), batch sources and callbacks.

Tasks (:mod:`crosskd.tasks`) plug into it; :class:`crosskd.Distiller` and
:class:`crosskd.CTCDistiller` are facades that prepare data and build the task. See
``docs/engine.md``.
"""

from .batches import MemoryBatches, StreamBatches, batch_bounds
from .callbacks import (
    Callback,
    Checkpointing,
    EarlyStopping,
    PlateauRestart,
    ProgressBar,
    ReduceOnPlateau,
)
from .loop import Engine, EngineState, make_optimizer, reinitialise

__all__ = [
    "Engine",
    "EngineState",
    "MemoryBatches",
    "StreamBatches",
    "batch_bounds",
    "Callback",
    "EarlyStopping",
    "PlateauRestart",
    "ReduceOnPlateau",
    "Checkpointing",
    "ProgressBar",
    "make_optimizer",
    "reinitialise",
]
