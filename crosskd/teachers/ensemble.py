"""Several teachers combined into one: a weighted geometric mean of their class distributions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..exceptions import ConfigError, TeacherError
from .base import Teacher, TeacherInfo

__all__ = ["EnsembleTeacher"]


class EnsembleTeacher(Teacher):
    """Teachers combined by a weighted mean of their log-probabilities.

    ``logits = sum_i w_i * log_softmax(logits_i)`` with the weights normalised to sum to 1, so
    ``softmax(logits)`` is the normalised weighted geometric mean of the members' distributions,
    ``prod_i q_i ** w_i / Z``. An ensemble of identical members gives that member's distribution.
    Temperature, applied later to these logits, softens the combined distribution.

    Args:
        members: the teachers; all must have the same ``num_classes`` and ``classes``.
        weights: one weight >= 0 per member (not all 0); default equal weights.

    Raises:
        TeacherError: no members, a member that is not a Teacher, or members that disagree on
            the classes.
        ConfigError: weights of the wrong length, negative, non-finite, or summing to 0.
    """

    def __init__(self, members: Sequence[Teacher], weights: Sequence[float] | None = None) -> None:
        members = list(members)
        if not members:
            raise TeacherError("EnsembleTeacher needs at least one member teacher; got none.")
        for i, member in enumerate(members):
            if not isinstance(member, Teacher):
                raise TeacherError(
                    f"EnsembleTeacher member {i} is a {type(member).__name__}, not a Teacher. Wrap "
                    "models first (LightGBMTeacher, SklearnTeacher, ModuleTeacher, ...)."
                )
        first = members[0].info
        for i, member in enumerate(members[1:], start=1):
            info = member.info
            if info.num_classes != first.num_classes or list(info.classes) != list(first.classes):
                raise TeacherError(
                    f"EnsembleTeacher members disagree on the classes: member 0 ({first.kind}) has "
                    f"{first.num_classes} classes {list(first.classes)!r}, member {i} ({info.kind}) "
                    f"has {info.num_classes} classes {list(info.classes)!r}. Every member must "
                    "output the same classes in the same order."
                )
        if weights is None:
            norm = [1.0 / len(members)] * len(members)
        else:
            try:
                raw = [float(w) for w in weights]
            except (TypeError, ValueError):
                raise ConfigError(f"weights must be numbers, got {weights!r}.") from None
            if len(raw) != len(members):
                raise ConfigError(
                    f"EnsembleTeacher got {len(raw)} weights for {len(members)} members; give one "
                    "weight per member."
                )
            if any(not math.isfinite(w) or w < 0 for w in raw) or sum(raw) <= 0:
                raise ConfigError(
                    f"EnsembleTeacher weights must be finite, >= 0 and not all 0; got {raw!r}."
                )
            total = sum(raw)
            norm = [w / total for w in raw]
        self.members = members
        self.weights = norm
        names = {m.info.feature_names for m in members}
        self.info = TeacherInfo(
            num_classes=first.num_classes,
            classes=first.classes,
            kind="ensemble",
            feature_names=first.feature_names if len(names) == 1 else None,
            n_features=first.n_features if len({m.info.n_features for m in members}) == 1 else None,
            preprocessing=first.preprocessing,
            extra={"members": [m.info.kind for m in members], "weights": norm},
        )

    def logits(self, X: Any, batch_size: int | None = None) -> torch.Tensor:
        """Weighted mean of the members' log-probabilities for every row of ``X``.

        Each member scores all of ``X`` itself (with ``batch_size``), so members that are tied to
        their rows (:class:`PrecomputedTeacher`) work too.

        Returns:
            ``(n_samples, num_classes)`` float32 CPU tensor.
        """
        parts = [
            weight * torch.log_softmax(member.logits(X, batch_size=batch_size).double(), dim=-1)
            for member, weight in zip(self.members, self.weights, strict=True)
            if weight > 0
        ]
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total.float()

    def _logits(self, X: Any) -> torch.Tensor:
        return self.logits(X)
