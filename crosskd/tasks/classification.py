"""Classification (tables and images): the task that turns teacher logits into soft targets.

Loss: ``alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)`` (the label
term with optional class weights or focal loss; unlabelled rows, label ``IGNORE_LABEL``, get the
soft term only). Cached teacher logits are softened once (:func:`crosskd.losses.packed_soft_targets`);
an online teacher (a torch module on augmented batches) is run on each batch.

With a feature hint (:mod:`crosskd.hints`) the task adds the term ``"hint"``:
``loss = alpha * kd + (1 - alpha) * ce + weight * hint``, the teacher's features read on each batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .. import metrics as _metrics
from ..exceptions import ConfigError
from ..losses import (
    hard_loss,
    kd_loss,
    kd_loss_from_packed,
    logit_kd_loss,
    packed_soft_targets,
)
from .base import forward_batched

if TYPE_CHECKING:
    from ..hints import HintSession

__all__ = ["ClassificationTask", "classification_monitor"]


def classification_monitor(val_metric: str, num_classes: int) -> tuple[str, bool]:
    """The validation key early stopping follows and whether higher is better.

    ``"auto"``: average precision for two classes (a ranking metric, right for imbalanced data);
    the log loss otherwise (accuracy ties on small validation sets: on iris, wine and digits it
    reached its maximum within a few epochs and stopped the run there, 0.07-0.2 below the log-loss
    choice on test); ``"loss"``: the validation distillation loss.
    """
    if val_metric == "auto":
        if num_classes == 2:
            return "average_precision", True
        return "log_loss", False
    if val_metric == "loss":
        return "loss", False
    return val_metric, val_metric != "log_loss"


class ClassificationTask:
    """The classification task (see the module docstring).

    Args:
        temperature: T of the soft term.
        alpha: weight of the soft term in [0, 1].
        num_classes: number of classes.
        class_weight: ``(num_classes,)`` weights of the label term on the device, or None.
        focal_gamma: focal-loss gamma of the label term (0: cross-entropy).
        teacher: a teacher with ``logits_on_device`` for online targets, or None.
        val_metric: see :func:`classification_monitor`.
        chunk_size: rows per forward pass in validation.
        method: the KD term, one of :data:`crosskd.losses.KD_METHODS` (``"hinton"``, ``"dkd"``,
            ``"dist"``, ``"ranking"``); see :func:`crosskd.losses.logit_kd_loss`.
        method_params: the method's settings (e.g. ``{"nontarget_weight": 8.0}``), checked by
            :func:`crosskd.losses.check_kd_method`.
        standardize: z-score teacher and student logits before softening (logit
            standardisation).
        hint: a :class:`crosskd.hints.HintSession` (needs ``teacher``, online): the model the
            engine trains is then the session's :class:`~crosskd.hints.HintedStudent`, the terms
            gain ``"hint"``, ``online_targets`` returns ``(teacher logits, teacher feature)``.
    """

    terms = ("loss", "kd", "ce")
    keep_latest_tie = False

    def __init__(
        self,
        *,
        temperature: float,
        alpha: float,
        num_classes: int,
        class_weight: torch.Tensor | None = None,
        focal_gamma: float = 0.0,
        teacher: Any = None,
        val_metric: str = "auto",
        chunk_size: int = 65536,
        method: str = "hinton",
        method_params: dict[str, Any] | None = None,
        standardize: bool = False,
        hint: HintSession | None = None,
    ) -> None:
        self.temperature, self.alpha = float(temperature), float(alpha)
        self.num_classes, self.class_weight, self.focal_gamma = (
            num_classes,
            class_weight,
            focal_gamma,
        )
        self.teacher, self.val_metric, self.chunk_size = teacher, val_metric, chunk_size
        self.monitor, self.higher_is_better = classification_monitor(val_metric, num_classes)
        self.method, self.standardize = method, bool(standardize)
        self.method_params = dict(method_params or {})
        # Hinton's term reads soft targets packed once; the other methods need the raw logits.
        self.packed = method == "hinton" and not self.standardize
        self.hint = hint
        if hint is not None:
            if teacher is None:
                raise ConfigError(
                    "A feature hint reads the teacher's features on every batch, but the task has "
                    "no online teacher. Pass teacher= a torch teacher (ModuleTeacher) run online."
                )
            self.terms = (*type(self).terms, "hint")

    def cache_targets(self, teacher_logits: torch.Tensor) -> torch.Tensor:
        """Soft targets prepared once (the teacher's softmax is not recomputed per step) for
        Hinton's term; the raw logits for the other methods."""
        if not self.packed:
            return teacher_logits
        return packed_soft_targets(teacher_logits, self.temperature)

    def online_targets(
        self, inputs: tuple[torch.Tensor, ...]
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The teacher's logits for the batch; with a hint, ``(logits, teacher feature)``."""
        logits = self.teacher.logits_on_device(*inputs)
        if self.hint is None:
            return logits
        return logits, self.hint.teacher_feature()

    def loss(
        self,
        student_out: torch.Tensor,
        teacher: torch.Tensor | None,
        targets: tuple[torch.Tensor, ...],
        cached: bool,
    ) -> dict[str, torch.Tensor]:
        """:func:`crosskd.losses.distillation_loss` without per-step host synchronisations.

        The label checks that make ``hard_loss`` read values back from the device run once on the
        encoded targets before training instead. With ``cached``, ``teacher`` holds the packed soft
        targets, and the soft term ``T^2 * mean(sum(q log q) - sum(q log p))`` skips the teacher's
        softmax per step: the same value as ``kd_loss`` up to float rounding. With a hint,
        ``teacher`` is ``(logits, teacher feature)`` and the adapted student feature comes from the
        hint session (the student's forward of this step).
        """
        if self.hint is None:
            return self._logit_terms(student_out, teacher, targets, cached)
        teacher, teacher_feat = teacher
        terms = self._logit_terms(student_out, teacher, targets, cached)
        return self._with_hint(terms, self.hint.loss(teacher_feat))

    def _with_hint(
        self, terms: dict[str, torch.Tensor], hint: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        terms["loss"] = terms["loss"] + self.hint.weight * hint
        terms["hint"] = hint.detach()
        return terms

    def _logit_terms(
        self,
        student_out: torch.Tensor,
        teacher: torch.Tensor | None,
        targets: tuple[torch.Tensor, ...],
        cached: bool,
    ) -> dict[str, torch.Tensor]:
        a = self.alpha
        zero = student_out.new_zeros((), dtype=torch.float32)
        if a > 0 and teacher is not None:
            if cached and self.packed:
                kd = kd_loss_from_packed(student_out, teacher, self.temperature)
            elif self.method == "hinton" and not self.standardize:
                kd = kd_loss(student_out, teacher, self.temperature)
            else:
                kd = logit_kd_loss(
                    student_out,
                    teacher,
                    self.temperature,
                    method=self.method,
                    labels=targets[0],
                    standardize=self.standardize,
                    check_labels=False,
                    **self.method_params,
                )
        else:
            kd = zero
        if a < 1:
            ce = hard_loss(
                student_out, targets[0], self.class_weight, self.focal_gamma, check_labels=False
            )
        else:
            ce = zero
        return {"loss": a * kd + (1.0 - a) * ce, "kd": kd.detach(), "ce": ce.detach()}

    def validate(
        self, model: nn.Module, val: dict[str, Any], device: torch.device, precision: str
    ) -> dict[str, float]:
        """The loss terms (with the teacher's targets on the validation rows) and the metrics of
        :func:`crosskd.metrics.classification_metrics`.

        Args:
            val: ``{"inputs": tensors, "targets": codes, "teacher_logits": tensor or None}``.
        """
        if self.hint is None:
            logits = forward_batched(model, val["inputs"], device, precision, self.chunk_size)
            terms = self.loss(logits, val.get("teacher_logits"), (val["targets"],), cached=False)
        else:
            # The teacher runs on the validation rows for its features (its logits are cached).
            logits, hint = self.hint.forward_batched(
                val["inputs"], self.teacher.logits_on_device, device, precision, self.chunk_size
            )
            terms = self._logit_terms(
                logits, val.get("teacher_logits"), (val["targets"],), cached=False
            )
            terms = self._with_hint(terms, logits.new_tensor(hint))
        out = {k: float(v) for k, v in terms.items()}
        proba = torch.softmax(logits.float(), dim=-1).cpu().double().numpy()
        metrics = _metrics.classification_metrics(val["targets"].cpu().numpy(), proba)
        out.update({k: float(v) for k, v in metrics.items()})
        if self.val_metric not in ("auto", "loss") and self.val_metric not in metrics:
            raise ConfigError(
                f"val_metric={self.val_metric!r} is not computed here; choose 'loss' or one of "
                f"{sorted(metrics)}."
            )
        return out
