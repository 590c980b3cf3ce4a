"""Tasks: what a kind of data plugs into the one engine (:mod:`crosskd.engine`).

- :class:`ClassificationTask`: tables and images (class logits, Hinton's loss, AP / accuracy).
- :class:`CTCTask`: text lines read with CTC (frame / sequence distillation, CER).

See :mod:`crosskd.tasks.base` for the protocol and ``docs/engine.md`` for how to add one.
"""

from .base import Task, forward_batched
from .classification import ClassificationTask
from .ctc import CTCTask

__all__ = ["Task", "ClassificationTask", "CTCTask", "forward_batched"]
