"""Distillation losses: pure functions of tensors.

Notation (Hinton, Vinyals, Dean 2015)::

    q = softmax(z_teacher / T)          p = softmax(z_student / T)
    L = alpha * T^2 * KL(q || p) + (1 - alpha) * CE(softmax(z_student), y)

The T^2 factor keeps the soft term's gradient, ``T * (p_i - q_i)`` per logit, on the same scale
whatever T is; for large T and zero-mean logits it tends to ``(z_i - v_i) / N`` (logit matching).

Temperature is applied in exactly one place, :func:`soften`. Every loss is computed in float32 from
``log_softmax``, whatever the input dtype, so half-precision logits and logits of magnitude 1e4 give
finite, accurate losses.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .exceptions import ConfigError, DataError

__all__ = [
    "soften",
    "kd_loss",
    "soft_cross_entropy",
    "hard_loss",
    "distillation_loss",
    "IGNORE_LABEL",
]

#: Target value of a row without a label (a transfer-set row): it gets the soft term only.
IGNORE_LABEL = -1


def check_temperature(temperature: float) -> float:
    """Return ``temperature`` as a float, or raise :class:`ConfigError` if it is not finite and > 0."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise ConfigError(
            f"temperature must be a number > 0, got {temperature!r}. Pass for example temperature=4."
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"temperature must be finite and > 0, got {temperature!r}. "
            "Typical values are 1 to 20; temperature=1 leaves the teacher's probabilities unchanged."
        )
    return value


def check_alpha(alpha: float) -> float:
    """Return ``alpha`` as a float, or raise :class:`ConfigError` if it is outside [0, 1]."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise ConfigError(f"alpha must be a number in [0, 1], got {alpha!r}.") from None
    if not (0.0 <= value <= 1.0):
        raise ConfigError(
            f"alpha must be in [0, 1] (the weight of the distillation term), got {alpha!r}. "
            "alpha=0 trains on labels only, alpha=1 on the teacher only."
        )
    return value


def _check_pair(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> None:
    if student_logits.shape != teacher_logits.shape:
        s, t = tuple(student_logits.shape), tuple(teacher_logits.shape)
        if s[:-1] == t[:-1]:
            raise DataError(
                f"The teacher gives {t[-1]} class logits but the student outputs {s[-1]}. "
                f"Give the student num_classes={t[-1]}."
            )
        raise DataError(
            f"Student logits of shape {s} and teacher logits of shape {t} do not match: "
            "both must be (batch, num_classes) for the same rows, in the same order."
        )


def soften(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide logits by the temperature, in float32: the one place temperature is applied.

    Args:
        logits: ``(..., num_classes)`` tensor of any floating dtype.
        temperature: T > 0. ``softmax(soften(z, T))`` is the softened distribution.

    Returns:
        ``(..., num_classes)`` float32 tensor ``z / T``.
    """
    t = check_temperature(temperature)
    return logits.float() / t


def _kl_per_row(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    log_p = F.log_softmax(soften(student_logits, temperature), dim=-1)
    log_q = F.log_softmax(soften(teacher_logits, temperature), dim=-1)
    # q * (log q - log p); q == 0 exactly gives 0 (log q is finite for finite logits).
    return (log_q.exp() * (log_q - log_p)).sum(dim=-1)


def _reduce(per_row: torch.Tensor, sample_weight: torch.Tensor | None) -> torch.Tensor:
    if sample_weight is None:
        return per_row.mean()
    w = sample_weight.to(device=per_row.device, dtype=torch.float32)
    return (per_row * w).sum() / w.sum().clamp_min(torch.finfo(torch.float32).tiny)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    sample_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Hinton's soft term: ``T^2 * KL(q || p)`` at temperature T, averaged over rows.

    Args:
        student_logits: ``(batch, num_classes)`` (or ``(batch, frames, num_classes)``; the mean is
            then over every frame).
        teacher_logits: same shape as ``student_logits``.
        temperature: T > 0.
        sample_weight: optional ``(batch,)`` (or ``(batch, frames)``) weights for a weighted mean.

    Returns:
        A float32 scalar, >= 0, zero when the two sets of logits give the same distribution.
    """
    _check_pair(student_logits, teacher_logits)
    t = check_temperature(temperature)
    return (t * t) * _reduce(_kl_per_row(student_logits, teacher_logits, t), sample_weight)


def soft_cross_entropy(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """The widely copied form ``-mean(sum(softmax(t/T) * log softmax(s/T)))``, computed stably.

    It equals ``kd_loss / T^2`` plus the teacher's entropy (a constant for the student), so its
    gradient is ``kd_loss``'s divided by T^2. Prefer :func:`kd_loss`; this exists for comparison with
    code that uses it.

    Returns:
        A float32 scalar.
    """
    _check_pair(student_logits, teacher_logits)
    t = check_temperature(temperature)
    log_p = F.log_softmax(soften(student_logits, t), dim=-1)
    q = F.softmax(soften(teacher_logits, t), dim=-1)
    return -(q * log_p).sum(dim=-1).mean()


def hard_loss(
    student_logits: torch.Tensor,
    target: torch.Tensor,
    class_weight: torch.Tensor | None = None,
    focal_gamma: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy on labels (optionally class-weighted, optionally focal), in float32.

    Rows whose target is :data:`IGNORE_LABEL` (-1) are left out; with no labelled row the loss is 0.

    Args:
        student_logits: ``(batch, num_classes)``.
        target: ``(batch,)`` integer class indices in ``[0, num_classes)`` or -1.
        class_weight: optional ``(num_classes,)`` weights; the mean is weighted by them, as in
            ``torch.nn.functional.cross_entropy``.
        focal_gamma: focusing parameter of the focal loss (Lin et al. 2017); 0 is cross-entropy.

    Returns:
        A float32 scalar.
    """
    if focal_gamma < 0:
        raise ConfigError(
            f"focal_gamma must be >= 0, got {focal_gamma!r}; 0 is plain cross-entropy."
        )
    logits = student_logits.float()
    target = target.long()
    labelled = target != IGNORE_LABEL
    num_classes = logits.shape[-1]
    if labelled.any():
        bad = labelled & ((target < 0) | (target >= num_classes))
        if bad.any():
            value = int(target[bad][0])
            raise DataError(
                f"Label index {value} is outside [0, {num_classes}) for a student with "
                f"{num_classes} classes. Encode labels as 0..{num_classes - 1} (or -1 for unlabelled)."
            )
    safe_target = target.clamp_min(0)
    log_p = F.log_softmax(logits, dim=-1)
    log_pt = log_p.gather(-1, safe_target.unsqueeze(-1)).squeeze(-1)
    per_row = -log_pt
    if focal_gamma > 0:
        per_row = per_row * (-torch.expm1(log_pt)).clamp_min(0).pow(focal_gamma)
    weight = labelled.float()
    if class_weight is not None:
        weight = weight * class_weight.to(device=logits.device, dtype=torch.float32)[safe_target]
    total = weight.sum()
    weighted = (per_row * weight).sum()
    if total <= 0:
        # No labelled row: 0, but still attached to the graph, so that backward() works (and gives
        # a zero gradient) when this is the whole loss (alpha=0 on an all-unlabelled batch).
        return weighted * 0.0
    return weighted / total


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    target: torch.Tensor | None,
    temperature: float,
    alpha: float,
    class_weight: torch.Tensor | None = None,
    focal_gamma: float = 0.0,
) -> dict[str, torch.Tensor]:
    """``alpha * kd_loss + (1 - alpha) * hard_loss``, with each term returned by name.

    Args:
        student_logits: ``(batch, num_classes)``.
        teacher_logits: ``(batch, num_classes)``; may be None only when ``alpha == 0``.
        target: ``(batch,)`` class indices, -1 for rows without a label; may be None only when
            ``alpha == 1``.
        temperature: T > 0 of the soft term.
        alpha: weight of the distillation term, in [0, 1].
        class_weight: optional ``(num_classes,)`` weights of the hard term.
        focal_gamma: focal-loss gamma of the hard term (0: cross-entropy).

    Returns:
        ``{"loss": total, "kd": soft term, "ce": hard term}``, float32 scalars. ``kd`` is reported
        at its T^2 scale; a term whose weight is 0 is reported as a detached 0 and not computed.
    """
    a = check_alpha(alpha)
    check_temperature(temperature)
    zero = student_logits.new_zeros((), dtype=torch.float32)
    if a > 0:
        if teacher_logits is None:
            raise ConfigError(
                f"alpha={a} needs teacher logits; pass alpha=0 to train on labels only."
            )
        kd = kd_loss(student_logits, teacher_logits, temperature)
    else:
        kd = zero
    if a < 1:
        if target is None:
            raise ConfigError(
                f"alpha={a} < 1 needs labels; pass alpha=1 to train on the teacher only."
            )
        ce = hard_loss(student_logits, target, class_weight=class_weight, focal_gamma=focal_gamma)
    else:
        ce = zero
    return {"loss": a * kd + (1.0 - a) * ce, "kd": kd.detach(), "ce": ce.detach()}
