"""Distillation losses: pure functions of tensors.

Notation (Hinton, Vinyals, Dean 2015)::

    q = softmax(z_teacher / T)          p = softmax(z_student / T)
    L = alpha * T^2 * KL(q || p) + (1 - alpha) * CE(softmax(z_student), y)

The T^2 factor keeps the soft term's gradient, ``T * (p_i - q_i)`` per logit, on the same scale
whatever T is; for large T and zero-mean logits it tends to ``(z_i - v_i) / N`` (logit matching).

Temperature is applied in exactly one place, :func:`soften`. Every loss is computed in float32 from
``log_softmax``, whatever the input dtype, so half-precision logits and logits of magnitude 1e4 give
finite, accurate losses.

Beyond Hinton (``docs/methods.md``): :func:`dkd_loss` (decoupled KD), :func:`dist_loss` (DIST),
:func:`standardize_logits` (logit standardisation), :func:`ranking_kd_loss` (pairwise order of rows,
for binary data), chosen by name with :func:`logit_kd_loss` (:data:`KD_METHODS`, validated by
:func:`check_kd_method`); for CTC readers :func:`ctc_bag_kd_loss` and the switch
:func:`ctc_kd_loss` (:data:`CTC_KD_METHODS`); :func:`mutual_kd_loss` for deep mutual learning.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

from .exceptions import ConfigError, DataError

__all__ = [
    "soften",
    "kd_loss",
    "soft_cross_entropy",
    "hard_loss",
    "packed_soft_targets",
    "kd_loss_from_packed",
    "distillation_loss",
    "ctc_loss",
    "frame_kd_loss",
    "blank_aware_kd_loss",
    "greedy_decode",
    "decoded_targets",
    "IGNORE_LABEL",
    "KD_METHODS",
    "CTC_KD_METHODS",
    "standardize_logits",
    "dkd_loss",
    "dist_loss",
    "ranking_kd_loss",
    "check_kd_method",
    "logit_kd_loss",
    "ctc_bag_kd_loss",
    "mutual_kd_loss",
    "check_ctc_kd_method",
    "ctc_kd_loss",
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


def packed_soft_targets(teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The teacher's side of :func:`kd_loss`, computed once: ``[q, sum(q log q)]`` per row.

    A training loop with cached teacher logits can store these instead of the logits, so that a
    step does not redo the teacher's softmax; :func:`kd_loss_from_packed` then gives the same value
    as :func:`kd_loss` up to float rounding.

    Args:
        teacher_logits: ``(n, num_classes)``.
        temperature: T > 0.

    Returns:
        ``(n, num_classes + 1)`` float32: ``q = softmax(z / T)`` and, last, ``sum(q log q)``.
    """
    log_q = F.log_softmax(soften(teacher_logits, temperature), dim=-1)
    q = log_q.exp()
    return torch.cat([q, (q * log_q).sum(dim=-1, keepdim=True)], dim=-1)


def kd_loss_from_packed(
    student_logits: torch.Tensor, packed: torch.Tensor, temperature: float
) -> torch.Tensor:
    """:func:`kd_loss` from :func:`packed_soft_targets`: ``T^2 * mean(sum(q log q) - sum(q log p))``.

    Args:
        student_logits: ``(batch, num_classes)``.
        packed: ``(batch, num_classes + 1)`` from :func:`packed_soft_targets` at the same T.
        temperature: T > 0.

    Returns:
        A float32 scalar.
    """
    t = check_temperature(temperature)
    q, q_log_q = packed[:, :-1], packed[:, -1]
    log_p = F.log_softmax(soften(student_logits, t), dim=-1)
    return (t * t) * (q_log_q - (q * log_p).sum(dim=-1)).mean()


def hard_loss(
    student_logits: torch.Tensor,
    target: torch.Tensor,
    class_weight: torch.Tensor | None = None,
    focal_gamma: float = 0.0,
    check_labels: bool = True,
) -> torch.Tensor:
    """Cross-entropy on labels (optionally class-weighted, optionally focal), in float32.

    Rows whose target is :data:`IGNORE_LABEL` (-1) are left out; with no labelled row the loss is 0.

    Args:
        student_logits: ``(batch, num_classes)``.
        target: ``(batch,)`` integer class indices in ``[0, num_classes)`` or -1.
        class_weight: optional ``(num_classes,)`` weights; the mean is weighted by them, as in
            ``torch.nn.functional.cross_entropy``.
        focal_gamma: focusing parameter of the focal loss (Lin et al. 2017); 0 is cross-entropy.
        check_labels: raise :class:`DataError` for labels outside ``[0, num_classes)``. Checking
            reads values back from the device; a training loop that checked its labels once can
            pass False so that a step needs no host synchronisation.

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
    if check_labels and labelled.any():
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
    # No labelled row: 0 / tiny == 0, still attached to the graph (backward gives a zero
    # gradient), and no host synchronisation to find out.
    return (per_row * weight).sum() / weight.sum().clamp_min(torch.finfo(torch.float32).tiny)


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


# ------------------------------------------------------------------------------ CTC (text lines)
#
# Sequence logits are (batch, frames, num_classes) with class 0 the CTC blank (see
# crosskd.vision.textlines.Alphabet).

_RESAMPLE = (None, "linear", "nearest")


def _check_sequence_logits(logits: torch.Tensor, name: str) -> None:
    if not torch.is_tensor(logits) or logits.ndim != 3:
        shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
        raise DataError(
            f"{name} must be a (batch, frames, num_classes) tensor, got {shape}. A CRNN "
            "(crosskd.vision.CRNN) returns this layout."
        )


def ctc_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int = 0,
    sample_weight: torch.Tensor | None = None,
    check: bool = True,
) -> torch.Tensor:
    """CTC loss of frame logits against label sequences, in float32.

    Each sequence's loss is divided by its target length (PyTorch's ``reduction="mean"``), then
    averaged over the batch (weighted by ``sample_weight`` when given). Infeasible alignments give 0
    instead of infinity (``zero_infinity``) so one bad line cannot poison a batch, but a target
    longer than the number of frames is refused up front.

    Args:
        logits: ``(batch, frames, num_classes)``; softmax over the last axis, class ``blank`` the
            CTC blank.
        targets: ``(batch, max_length)`` padded class indices (padding ignored) or the
            ``(sum(target_lengths),)`` concatenation.
        target_lengths: ``(batch,)`` label lengths (0 allowed: the all-blank target).
        blank: class index of the blank.
        sample_weight: optional ``(batch,)`` weights (0 leaves a sequence out, e.g. unlabelled).
        check: check the targets (the checks read values back from the device). A training loop
            whose targets were checked once before training passes False (padded 2-D targets
            then go to PyTorch as they are: no host synchronisation per step).

    Returns:
        A float32 scalar.

    Raises:
        DataError: wrong shapes, a target holding the blank index or an index >= num_classes, or a
            target longer than the frames.
    """
    if not check and torch.is_tensor(targets) and targets.ndim == 2:
        frames = logits.shape[1]
        log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)
        lengths = target_lengths.to(device=logits.device, dtype=torch.long)
        input_lengths = torch.full(
            (logits.shape[0],), frames, dtype=torch.long, device=logits.device
        )
        per_seq = F.ctc_loss(
            log_probs, targets, input_lengths, lengths, blank=blank, reduction="none",
            zero_infinity=True,
        ) / lengths.clamp_min(1).float()  # fmt: skip
        return _reduce(per_seq, sample_weight)
    _check_sequence_logits(logits, "logits")
    batch, frames, num_classes = logits.shape
    lengths = torch.as_tensor(target_lengths, dtype=torch.long, device=logits.device).reshape(-1)
    if lengths.numel() != batch:
        raise DataError(
            f"target_lengths has {lengths.numel()} entries for a batch of {batch} sequences."
        )
    targets = torch.as_tensor(targets, dtype=torch.long, device=logits.device)
    if targets.ndim == 2:
        keep = torch.arange(targets.shape[1], device=logits.device)[None, :] < lengths[:, None]
        if targets.shape[0] != batch or bool((lengths > targets.shape[1]).any()):
            raise DataError(
                f"targets of shape {tuple(targets.shape)} do not hold {batch} sequences of lengths "
                f"up to {int(lengths.max()) if batch else 0}."
            )
        flat = targets[keep]
    elif targets.ndim == 1:
        if targets.numel() != int(lengths.sum()):
            raise DataError(
                f"Concatenated targets have {targets.numel()} entries but target_lengths sum to "
                f"{int(lengths.sum())}."
            )
        flat = targets
    else:
        raise DataError(f"targets must be 1-D or 2-D, got shape {tuple(targets.shape)}.")
    if flat.numel():
        if bool((flat == blank).any()):
            raise DataError(
                f"A target holds the blank index {blank}; labels must be encoded as 1..num_classes-1 "
                "(crosskd.vision.Alphabet.encode does this)."
            )
        if bool(((flat < 0) | (flat >= num_classes)).any()):
            raise DataError(
                f"A target index is outside [0, {num_classes}); the model outputs {num_classes} "
                "classes including the blank. Give it num_classes=alphabet.num_classes."
            )
    if bool((lengths > frames).any()):
        raise DataError(
            f"A label of length {int(lengths.max())} cannot be read from {frames} frames; CTC needs "
            "at least one frame per character (plus one between repeated characters). Use wider "
            "images or a backbone with less horizontal downsampling."
        )
    log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (frames, batch, classes)
    input_lengths = torch.full((batch,), frames, dtype=torch.long, device=logits.device)
    per_seq = (
        F.ctc_loss(
            log_probs,
            flat,
            input_lengths,
            lengths,
            blank=blank,
            reduction="none",
            zero_infinity=True,
        )
        / lengths.clamp_min(1).float()
    )
    return _reduce(per_seq, sample_weight)


def _teacher_log_probs(
    teacher_logits: torch.Tensor,
    frames: int,
    temperature: float,
    resample: str | None,
) -> torch.Tensor:
    """Teacher log-probabilities at temperature T, resampled to ``frames`` frames when asked."""
    log_q = F.log_softmax(soften(teacher_logits, temperature), dim=-1)
    t_frames = teacher_logits.shape[1]
    if t_frames == frames:
        return log_q
    if resample not in _RESAMPLE:
        raise ConfigError(f"resample must be None, 'linear' or 'nearest', got {resample!r}.")
    if resample is None:
        raise DataError(
            f"The teacher gives {t_frames} frames per line but the student {frames}. Frame-wise "
            "distillation compares frame by frame: build both models with the same horizontal "
            "downsampling, or pass resample='linear' (or 'nearest') to interpolate the teacher's "
            "frames to the student's."
        )
    if resample == "nearest":
        # Frame j of the student covers the same image span as teacher frame floor((j+0.5)*Tt/Ts).
        index = ((torch.arange(frames, device=log_q.device) + 0.5) * t_frames / frames).long()
        return log_q[:, index.clamp_max(t_frames - 1)]
    # Linear interpolation of the probabilities (a convex combination of distributions is one).
    q = log_q.exp().transpose(1, 2)  # (batch, classes, teacher frames)
    q = F.interpolate(q, size=frames, mode="linear", align_corners=False).transpose(1, 2)
    return q.clamp_min(torch.finfo(torch.float32).tiny).log()


def _check_sequence_pair(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Both 3-D, the same lines and classes (frames may differ); returns both shapes."""
    _check_sequence_logits(student_logits, "student_logits")
    _check_sequence_logits(teacher_logits, "teacher_logits")
    s, t = tuple(student_logits.shape), tuple(teacher_logits.shape)
    if s[0] != t[0]:
        raise DataError(
            f"Student logits {s} and teacher logits {t} hold different numbers of lines; pass "
            "both models the same batch."
        )
    if s[2] != t[2]:
        raise DataError(
            f"The teacher gives {t[2]} classes per frame but the student outputs {s[2]}. Build the "
            f"student with num_classes={t[2]} (the same alphabet, plus the blank)."
        )
    return s, t


def _frame_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    resample: str | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    s, t = _check_sequence_pair(student_logits, teacher_logits)
    log_q = _teacher_log_probs(teacher_logits, s[1], temperature, resample)
    log_p = F.log_softmax(soften(student_logits, temperature), dim=-1)
    return (log_q.exp() * (log_q - log_p)).sum(dim=-1), log_q  # (batch, frames)


def _frame_mask(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    if mask is None:
        return None
    m = torch.as_tensor(mask, device=like.device).to(torch.float32)
    if m.shape != like.shape:
        raise DataError(
            f"mask must be (batch, frames) = {tuple(like.shape)} on the student's frames, got "
            f"{tuple(m.shape)}."
        )
    return m


def frame_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    resample: str | None = None,
) -> torch.Tensor:
    """Frame-wise ``T^2 * KL(q_t || p_t)`` between teacher and student posteriors, averaged over frames.

    Args:
        student_logits: ``(batch, frames, num_classes)``.
        teacher_logits: ``(batch, frames_t, num_classes)``; ``frames_t`` must equal ``frames``
            unless ``resample`` is given.
        temperature: T > 0 (applied to both, as in :func:`kd_loss`).
        mask: optional ``(batch, frames)`` weights (bool or float) on the student's frames, e.g. to
            leave out padding; the mean is weighted by it.
        resample: None (frame counts must match), ``"linear"`` (the teacher's softened
            probabilities are linearly interpolated along time to the student's frame count) or
            ``"nearest"`` (each student frame takes the teacher frame at the same relative
            position).

    Returns:
        A float32 scalar, >= 0, zero when both give the same distribution in every frame.

    Raises:
        DataError: different batch or class counts, or different frame counts without
            ``resample``.
    """
    t = check_temperature(temperature)
    kl, _ = _frame_kl(student_logits, teacher_logits, t, resample)
    return (t * t) * _reduce(kl.reshape(-1), _flat(_frame_mask(mask, kl)))


def _flat(mask: torch.Tensor | None) -> torch.Tensor | None:
    return None if mask is None else mask.reshape(-1)


def blank_aware_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    blank: int = 0,
    blank_threshold: float = 0.95,
    blank_weight: float = 0.1,
    mask: torch.Tensor | None = None,
    resample: str | None = None,
) -> torch.Tensor:
    """Frame KD that down-weights the frames where the teacher is confidently blank.

    CTC posteriors are mostly blank: on a 5-character line read in 25 frames, some 20 frames are
    near-certain blanks whose KL is tiny, so a plain frame average dilutes the few frames that carry
    characters. The rule, exactly: with ``b_t`` the teacher's blank probability at temperature 1
    (after resampling), frame t has weight ``w_t = blank_weight`` if ``b_t >= blank_threshold`` and
    ``w_t = 1`` otherwise (times ``mask`` when given); the loss is
    ``T^2 * sum_t w_t KL_t / sum_t w_t`` over all frames of the batch (a time average over the
    informative frames). ``blank_weight=0`` excludes confident blanks; with no frame of positive
    weight the loss is 0 (attached to the graph). ``blank_weight=1`` (or ``blank_threshold > 1``) is
    :func:`frame_kd_loss`.

    Args:
        student_logits: ``(batch, frames, num_classes)``.
        teacher_logits: ``(batch, frames_t, num_classes)`` (see ``resample``).
        temperature: T > 0.
        blank: class index of the blank.
        blank_threshold: teacher blank probability from which a frame counts as confidently blank.
        blank_weight: weight in [0, 1] of such frames.
        mask: optional ``(batch, frames)`` weights, multiplied into the frame weights.
        resample: as :func:`frame_kd_loss`.

    Returns:
        A float32 scalar, >= 0, zero when both give the same distribution in every frame.
    """
    t = check_temperature(temperature)
    if not 0.0 <= float(blank_weight) <= 1.0:
        raise ConfigError(f"blank_weight must be in [0, 1], got {blank_weight!r}.")
    num_classes = student_logits.shape[-1] if torch.is_tensor(student_logits) else 0
    if not 0 <= int(blank) < max(num_classes, 1):
        raise ConfigError(f"blank must be a class index in [0, {num_classes}), got {blank!r}.")
    kl, _ = _frame_kl(student_logits, teacher_logits, t, resample)
    with torch.no_grad():
        log_q1 = _teacher_log_probs(teacher_logits.detach(), kl.shape[1], 1.0, resample)
        confident = log_q1[..., int(blank)].exp() >= float(blank_threshold)
        weight = torch.where(confident, float(blank_weight), 1.0).to(torch.float32)
        m = _frame_mask(mask, kl)
        if m is not None:
            weight = weight * m
    total = weight.sum()
    weighted = (kl * weight).sum()
    if total <= 0:
        return weighted * 0.0
    return (t * t) * weighted / total


def greedy_decode(
    logits: torch.Tensor, blank: int = 0, lengths: torch.Tensor | None = None
) -> list[list[int]]:
    """Best-path CTC decoding: the arg-max class per frame, repeats collapsed, blanks dropped.

    ``[a, a, blank, a, b, b]`` decodes to ``[a, a, b]`` (a blank separates a repeated character).

    Args:
        logits: ``(batch, frames, num_classes)`` logits or (log-)probabilities.
        blank: class index of the blank.
        lengths: optional ``(batch,)`` numbers of valid frames (later frames are ignored).

    Returns:
        One list of class indices per line.
    """
    _check_sequence_logits(logits, "logits")
    best = logits.detach().argmax(dim=-1).cpu().numpy()
    limits = None if lengths is None else [int(v) for v in torch.as_tensor(lengths).reshape(-1)]
    out: list[list[int]] = []
    for row, path in enumerate(best):
        if limits is not None:
            path = path[: limits[row]]
        seq: list[int] = []
        previous = -1
        for k in path.tolist():
            if k != previous and k != blank:
                seq.append(k)
            previous = k
        out.append(seq)
    return out


def decoded_targets(
    sequences: list[list[int]], device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad decoded sequences into CTC targets: sequence-level KD uses a teacher's greedy decodings
    (:func:`greedy_decode`) of unlabelled or augmented images as the student's labels.

    Returns:
        ``(targets, target_lengths)``: ``(batch, max(1, max_length))`` int64 (padding 0) and
        ``(batch,)`` int64, ready for :func:`ctc_loss`.
    """
    longest = max((len(s) for s in sequences), default=0)
    targets = torch.zeros((len(sequences), max(1, longest)), dtype=torch.long)
    for i, s in enumerate(sequences):
        if s:
            targets[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    lengths = torch.as_tensor([len(s) for s in sequences], dtype=torch.long)
    return targets.to(device), lengths.to(device)


# --------------------------------------------------------------------------- beyond Hinton (logits)
#
# Each method is a pure function below; ``logit_kd_loss`` chooses one by name. Temperature is still
# applied only by ``soften`` and every value is float32 from ``log_softmax``.

#: Names accepted by :func:`logit_kd_loss` (``method=``) and :func:`check_kd_method`.
KD_METHODS = ("hinton", "dkd", "dist", "ranking")

#: Names accepted by :func:`ctc_kd_loss` (``method=``) and :func:`check_ctc_kd_method`.
CTC_KD_METHODS = ("frame", "blank_aware", "bag")

# The settings of each method that a config may hold (names only; the values are checked by
# ``_check_method_params``). Per-batch inputs (labels, masks, generators) are explicit arguments of
# the switches, never "params".
_KD_PARAMS: dict[str, tuple[str, ...]] = {
    "hinton": (),
    "dkd": ("target_weight", "nontarget_weight"),
    "dist": ("inter_weight", "intra_weight", "eps"),
    "ranking": ("max_pairs", "weighting", "top_k", "pointwise_weight"),
}
_CTC_KD_PARAMS: dict[str, tuple[str, ...]] = {
    "frame": ("resample",),
    "blank_aware": ("blank", "blank_threshold", "blank_weight", "resample"),
    "bag": ("blank",),
}
_RANKING_WEIGHTINGS = ("probability", "uniform")


def _nonnegative(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number >= 0, got {value!r}.") from None
    if not math.isfinite(v) or v < 0:
        raise ConfigError(f"{name} must be finite and >= 0, got {value!r}.")
    return v


def _positive(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number > 0, got {value!r}.") from None
    if not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{name} must be finite and > 0, got {value!r}.")
    return v


def _positive_int(name: str, value: int | None, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}.")
    if int(value) < 1:
        raise ConfigError(f"{name} must be >= 1, got {value!r}.")
    return int(value)


def _check_classification_pair(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, method: str
) -> None:
    """Both ``(batch, num_classes)`` with the same shape and at least two classes."""
    _check_pair(student_logits, teacher_logits)
    if student_logits.ndim != 2:
        raise DataError(
            f"{method} compares rows of class logits: it needs (batch, num_classes) tensors, got "
            f"{tuple(student_logits.shape)}. For (batch, frames, num_classes) sequence logits use "
            "method='hinton' or the CTC losses (ctc_kd_loss)."
        )
    if student_logits.shape[-1] < 2:
        raise DataError(
            f"{method} needs at least 2 classes, got logits of shape {tuple(student_logits.shape)}."
        )


def _kl_from_log_probs(log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """``sum(q * (log q - log p))`` over the last axis; finite log-probabilities only."""
    return (log_q.exp() * (log_q - log_p)).sum(dim=-1)


def standardize_logits(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Z-score each row of logits (Sun et al. 2024, "Logit Standardization in KD"), in float32.

    ``(z - mean(z)) / (std(z) + eps)`` over the last axis, with the population standard deviation
    ``sqrt(mean((z - mean(z))^2))``. Knowledge distillation on standardised logits (temperature
    applied afterwards, by :func:`soften`) asks the student to match the teacher's logits only up to
    a per-row shift and positive scale, so a small student is not forced to reproduce the teacher's
    logit range. A constant row maps to zeros (its gradient stays finite).

    With 2 classes the result is ``[-1, 1]`` or ``[1, -1]`` (the sign of the margin) whatever the
    margin's size, and its gradient is zero: distillation on standardised two-class logits gives the
    student no signal (see :func:`check_kd_method`, which warns).

    Args:
        logits: ``(..., num_classes)`` tensor of any floating dtype.
        eps: added to the standard deviation, > 0.

    Returns:
        ``(..., num_classes)`` float32 tensor with per-row mean 0 and standard deviation ~1.
    """
    e = _positive("eps", eps)
    z = logits.float()
    centred = z - z.mean(dim=-1, keepdim=True)
    var = centred.square().mean(dim=-1, keepdim=True)
    # clamp_min keeps the gradient of sqrt finite (zero) for a constant row.
    std = var.clamp_min(torch.finfo(torch.float32).tiny).sqrt()
    return centred / (std + e)


def _dkd_targets(
    teacher_logits: torch.Tensor, labels: torch.Tensor, check_labels: bool
) -> torch.Tensor:
    num_classes = teacher_logits.shape[-1]
    target = torch.as_tensor(labels, device=teacher_logits.device)
    if target.is_floating_point() or target.dtype == torch.bool:
        raise DataError(
            f"labels must be integer class indices, got dtype {target.dtype}. Encode them as "
            f"0..{num_classes - 1} (or {IGNORE_LABEL} for rows without a label)."
        )
    target = target.long().reshape(-1) if target.ndim <= 1 else target.long()
    if target.shape != teacher_logits.shape[:1]:
        raise DataError(
            f"labels of shape {tuple(torch.as_tensor(labels).shape)} do not match "
            f"{teacher_logits.shape[0]} rows of logits; pass one label per row."
        )
    if check_labels:
        bad = (target != IGNORE_LABEL) & ((target < 0) | (target >= num_classes))
        if bool(bad.any()):
            raise DataError(
                f"Label index {int(target[bad][0])} is outside [0, {num_classes}) for logits with "
                f"{num_classes} classes. Encode labels as 0..{num_classes - 1} (or {IGNORE_LABEL} "
                "for unlabelled rows, which then use the teacher's arg-max)."
            )
    return torch.where(target == IGNORE_LABEL, teacher_logits.detach().argmax(dim=-1), target)


def _dkd_terms(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row TCKD, NCKD (without T^2) and the teacher's target probability q_t, float32."""
    zs, zt = soften(student_logits, temperature), soften(teacher_logits, temperature)
    onehot = F.one_hot(target, zs.shape[-1]).bool()
    index = target.unsqueeze(-1)

    def binary(z: torch.Tensor) -> torch.Tensor:
        # Logits of the two-class distribution [target, rest]: its softmax is [p_t, 1 - p_t],
        # without computing 1 - p_t (which loses everything when p_t rounds to 1).
        rest = z.masked_fill(onehot, -math.inf).logsumexp(dim=-1, keepdim=True)
        return torch.cat([z.gather(-1, index), rest], dim=-1)

    log_bq = F.log_softmax(binary(zt), dim=-1)
    tckd = _kl_from_log_probs(log_bq, F.log_softmax(binary(zs), dim=-1))

    def non_target(z: torch.Tensor) -> torch.Tensor:
        # Softmax over the non-target classes; the target entry (-inf) is then set to 0 so that
        # q * (log q - log p) is 0 * 0 there, with finite gradients.
        log_hat = F.log_softmax(z.masked_fill(onehot, -math.inf), dim=-1)
        return log_hat.masked_fill(onehot, 0.0)

    log_hat_q = non_target(zt)
    hat_q = log_hat_q.exp().masked_fill(onehot, 0.0)
    nckd = (hat_q * (log_hat_q - non_target(zs))).sum(dim=-1)
    return tckd, nckd, log_bq[:, 0].exp()


def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    target_weight: float = 1.0,
    nontarget_weight: float = 8.0,
    check_labels: bool = True,
) -> torch.Tensor:
    """Decoupled knowledge distillation (Zhao et al. 2022): TCKD and NCKD weighted separately.

    With ``t`` the target class of a row, ``q = softmax(v / T)`` (teacher) and
    ``p = softmax(z / T)`` (student)::

        TCKD = KL([q_t, 1 - q_t] || [p_t, 1 - p_t])          (target vs the rest)
        NCKD = KL(q_hat || p_hat),  q_hat_i = q_i / (1 - q_t) for i != t  (non-target classes)
        loss = mean over rows of T^2 * (target_weight * TCKD + nontarget_weight * NCKD)

    Hinton's KL is exactly ``TCKD + (1 - q_t) * NCKD`` per row, so ``target_weight=1`` with
    ``nontarget_weight = 1 - q_t`` gives :func:`kd_loss`; DKD frees the non-target weight from the
    teacher's confidence (the authors use 8 on CIFAR-100 with T = 4, 0.5 or 2 on ImageNet with
    T = 1, and ramp the term up over the first epochs: a schedule for the training loop).

    Rows labelled :data:`IGNORE_LABEL` (unlabelled transfer rows) use the teacher's arg-max class as
    their target. With 2 classes the non-target distribution has a single class, NCKD is 0 and DKD
    is ``target_weight * kd_loss``.

    Args:
        student_logits: ``(batch, num_classes)``.
        teacher_logits: ``(batch, num_classes)``.
        labels: ``(batch,)`` integer class indices in ``[0, num_classes)`` or -1.
        temperature: T > 0.
        target_weight: weight of TCKD, >= 0 (the paper's alpha).
        nontarget_weight: weight of NCKD, >= 0 (the paper's beta).
        check_labels: raise :class:`DataError` for labels outside ``[0, num_classes)``; checking
            reads values back from the device, a loop that checked its labels once can pass False.

    Returns:
        A float32 scalar, >= 0, zero when both give the same distribution on every row.
    """
    t = check_temperature(temperature)
    w_target = _nonnegative("target_weight", target_weight)
    w_nontarget = _nonnegative("nontarget_weight", nontarget_weight)
    _check_classification_pair(student_logits, teacher_logits, "dkd")
    target = _dkd_targets(teacher_logits, labels, check_labels)
    tckd, nckd, _ = _dkd_terms(student_logits, teacher_logits, target, t)
    return (t * t) * (w_target * tckd + w_nontarget * nckd).mean()


def _pearson(a: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """Pearson correlation of the rows of ``a`` and ``b`` (last axis), ``(...,)`` float32."""
    a = a - a.mean(dim=-1, keepdim=True)
    b = b - b.mean(dim=-1, keepdim=True)
    tiny = torch.finfo(torch.float32).tiny
    norm_a = a.square().sum(dim=-1).clamp_min(tiny).sqrt()
    norm_b = b.square().sum(dim=-1).clamp_min(tiny).sqrt()
    return (a * b).sum(dim=-1) / (norm_a * norm_b + eps)


def dist_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    inter_weight: float = 1.0,
    intra_weight: float = 1.0,
    eps: float = 1e-8,
) -> torch.Tensor:
    """DIST (Huang et al. 2022): match the teacher's probabilities up to correlation, not exactly.

    With ``P`` and ``Q`` the ``(batch, num_classes)`` softened probabilities of student and teacher
    (``softmax(logits / T)``) and ``rho`` the Pearson correlation::

        inter = mean over rows i of  (1 - rho(P[i, :], Q[i, :]))   (ranking of classes per row)
        intra = mean over classes j of (1 - rho(P[:, j], Q[:, j])) (ranking of rows per class)
        loss  = T^2 * (inter_weight * inter + intra_weight * intra)

    Correlation is invariant to a positive scale and a shift, so the student need not reproduce the
    teacher's confidence, only its relations; this helps when the teacher is much stronger than the
    student. Each term is in ``[0, 2]``; ``rho`` is computed as ``cov / (sd * sd + eps)``.

    The intra-class term needs a batch of at least 2 rows (with one row it is the constant 1). With
    2 classes the inter-class correlation is +1 or -1 (whether both put the top class on the same
    side), so the inter-class term is piecewise constant and gives no gradient; the intra-class term
    is then a batch-level correlation of the positive-class probabilities.

    Args:
        student_logits: ``(batch, num_classes)``.
        teacher_logits: ``(batch, num_classes)``.
        temperature: T > 0 (the paper uses 1 on ImageNet, 4 on CIFAR-100).
        inter_weight: weight of the inter-class term, >= 0 (the paper's beta).
        intra_weight: weight of the intra-class term, >= 0 (the paper's gamma).
        eps: > 0, added to the product of standard deviations.

    Returns:
        A float32 scalar in ``[0, 2 * T^2 * (inter_weight + intra_weight)]``; 0 when the student's
        probabilities are a positive affine function of the teacher's per row and per class (in
        particular when they are equal).
    """
    t = check_temperature(temperature)
    w_inter = _nonnegative("inter_weight", inter_weight)
    w_intra = _nonnegative("intra_weight", intra_weight)
    e = _positive("eps", eps)
    _check_classification_pair(student_logits, teacher_logits, "dist")
    p = F.softmax(soften(student_logits, t), dim=-1)
    q = F.softmax(soften(teacher_logits, t), dim=-1)
    inter = (1.0 - _pearson(p, q, e)).mean()
    intra = (1.0 - _pearson(p.transpose(0, 1), q.transpose(0, 1), e)).mean()
    return (t * t) * (w_inter * inter + w_intra * intra)


def _ranking_pairs(
    teacher_margin: torch.Tensor,
    max_pairs: int,
    top_k: int | None,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices ``(i, j)`` of the pairs to compare (all of them, or ``max_pairs`` sampled)."""
    n = teacher_margin.shape[0]
    device = teacher_margin.device
    if top_k is None:
        pool, k = None, n
        total = n * (n - 1) // 2
    else:
        k = min(top_k, n)
        pool = teacher_margin.topk(k).indices
        total = k * (n - 1)
    if total <= max_pairs:
        if pool is None:
            i, j = torch.triu_indices(n, n, offset=1, device=device)
            return i, j
        # Each top row against every other row (pairs of two top rows appear in both orders,
        # exactly as often as sampling below draws them).
        i = pool.repeat_interleave(n - 1)
        offset = torch.arange(1, n, device=device).repeat(k)
        return i, (i + offset) % n
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(0)
    gdev = generator.device
    a = torch.randint(0, k, (max_pairs,), generator=generator, device=gdev).to(device)
    offset = torch.randint(1, n, (max_pairs,), generator=generator, device=gdev).to(device)
    i = a if pool is None else pool[a]
    return i, (i + offset) % n


def ranking_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    max_pairs: int = 65536,
    weighting: str = "probability",
    top_k: int | None = None,
    pointwise_weight: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pairwise ranking distillation for binary (e.g. fraud) data: order rows as the teacher does.

    Average precision, the usual metric on imbalanced binary data, depends only on how rows are
    ordered by score, and per-row KD says little about that order on two classes: DKD's non-target
    term vanishes (DKD is Hinton), standardised two-class logits are +-1 (no gradient), DIST's
    inter-class term is constant (only its intra-class term, a batch correlation, remains). This
    loss compares rows *within the batch*. With margins ``m = z[:, 1] - z[:, 0]``
    (student) and ``u = v[:, 1] - v[:, 0]`` (teacher), for a pair of rows ``(i, j)``::

        pair_kl(i, j) = KL(Bern(sigmoid((u_i - u_j) / T)) || Bern(sigmoid((m_i - m_j) / T)))
        pairwise = sum w_ij * pair_kl(i, j) / sum w_ij          (over the pairs used)
        loss = T^2 * pairwise + pointwise_weight * kd_loss(z, v, T)

    a pairwise logistic (RankNet) loss with the teacher's soft pair order as target: it is 0 when the
    margins agree up to a common shift, and smaller the more the student's order matches the
    teacher's. The T^2 factor plays the same role as in :func:`kd_loss`. Pair weights:

    - ``weighting="probability"``: ``w_ij = max(s_i, s_j)`` with ``s = sigmoid(u)`` the teacher's
      positive-class probability (at temperature 1), so pairs involving a row the teacher ranks
      high count most: those are the pairs average precision depends on.
    - ``weighting="uniform"``: every pair counts the same.
    - ``top_k``: additionally keep only the pairs ``(i, j)`` where ``i`` is one of the teacher's
      ``top_k`` highest-margin rows of the batch (a hard top-of-the-list emphasis).

    The margin differences only fix the student's scores up to a common shift, so the pointwise
    Hinton term (``pointwise_weight``, default 1) anchors its probabilities; set it to 0 for the
    pairwise term alone.

    Memory: when the batch has at most ``max_pairs`` pairs (``n (n - 1) / 2``, or ``top_k (n - 1)``)
    all of them are used; otherwise ``max_pairs`` pairs are drawn uniformly with replacement, with
    ``generator`` (or, when None, a generator seeded with 0 on the logits' device: deterministic,
    and the global random state is left untouched). A batch of 16,384 rows thus costs
    ``O(max_pairs)``, not ``16384^2``.

    Args:
        student_logits: ``(batch, 2)`` two-class logits.
        teacher_logits: ``(batch, 2)``.
        temperature: T > 0, applied to margin differences (and to the pointwise term).
        max_pairs: largest number of pairs compared, >= 1.
        weighting: ``"probability"`` or ``"uniform"``.
        top_k: None, or >= 1: only pairs led by one of the teacher's top_k rows.
        pointwise_weight: weight >= 0 of the Hinton term :func:`kd_loss`.
        generator: optional ``torch.Generator`` for the pair sampling.

    Returns:
        A float32 scalar, >= 0 up to float rounding (a batch of one row has no pair: the
        pairwise term is 0).
    """
    t = check_temperature(temperature)
    cap = _positive_int("max_pairs", max_pairs)
    if weighting not in _RANKING_WEIGHTINGS:
        raise ConfigError(
            f"weighting must be one of {_RANKING_WEIGHTINGS}, got {weighting!r}: 'probability' "
            "weights a pair by the teacher's larger positive-class probability, 'uniform' by 1."
        )
    k = _positive_int("top_k", top_k, allow_none=True)
    w_point = _nonnegative("pointwise_weight", pointwise_weight)
    _check_classification_pair(student_logits, teacher_logits, "ranking")
    if student_logits.shape[-1] != 2:
        raise DataError(
            f"ranking_kd_loss needs two-class logits (batch, 2), got "
            f"{tuple(student_logits.shape)}. For more classes use method='hinton', 'dkd' or 'dist'."
        )
    zs, zt = student_logits.float(), teacher_logits.float()
    m = zs[:, 1] - zs[:, 0]
    u = zt[:, 1] - zt[:, 0]
    loss = zs.new_zeros(())
    if zs.shape[0] >= 2:
        with torch.no_grad():
            i, j = _ranking_pairs(u.detach(), cap, k, generator)
        a, b = soften(u[i] - u[j], t), soften(m[i] - m[j], t)
        # KL(Bern(sigmoid(a)) || Bern(sigmoid(b))), using log sigmoid(-x) = log sigmoid(x) - x:
        # finite for any finite a, b, and 3x cheaper than a two-class log_softmax per pair.
        pair_kl = (F.logsigmoid(a) - F.logsigmoid(b)) + torch.sigmoid(-a) * (b - a)
        if weighting == "probability":
            with torch.no_grad():
                s = torch.sigmoid(u.detach())
                w = torch.maximum(s[i], s[j])
            loss = (
                (t * t) * (pair_kl * w).sum() / w.sum().clamp_min(torch.finfo(torch.float32).tiny)
            )
        else:
            loss = (t * t) * pair_kl.mean()
    if w_point > 0:
        loss = loss + w_point * kd_loss(student_logits, teacher_logits, t)
    return loss


def _check_method_params(
    method: str,
    params: dict | None,
    known: dict[str, tuple[str, ...]],
    kind: str,
) -> dict:
    if method not in known:
        raise ConfigError(f"Unknown {kind} method {method!r}. Choose one of {tuple(known)}.")
    params = dict(params or {})
    valid = known[method]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        allowed = ", ".join(valid) if valid else "none"
        raise ConfigError(
            f"{kind} method {method!r} has no parameter {', '.join(map(repr, unknown))}; its "
            f"parameters are: {allowed}."
        )
    out: dict = {}
    for name, value in params.items():
        if name in (
            "target_weight",
            "nontarget_weight",
            "inter_weight",
            "intra_weight",
            "pointwise_weight",
            "blank_weight",
        ):
            out[name] = _nonnegative(name, value)
        elif name == "eps":
            out[name] = _positive(name, value)
        elif name == "max_pairs":
            out[name] = _positive_int(name, value)
        elif name == "top_k":
            out[name] = _positive_int(name, value, allow_none=True)
        elif name == "weighting":
            if value not in _RANKING_WEIGHTINGS:
                raise ConfigError(f"weighting must be one of {_RANKING_WEIGHTINGS}, got {value!r}.")
            out[name] = value
        elif name == "resample":
            if value not in _RESAMPLE:
                raise ConfigError(f"resample must be None, 'linear' or 'nearest', got {value!r}.")
            out[name] = value
        elif name == "blank":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"blank must be a class index >= 0, got {value!r}.")
            out[name] = value
        elif name == "blank_threshold":
            out[name] = _nonnegative(name, value)
        else:  # pragma: no cover - every name in the tables is handled above
            out[name] = value
    return out


def _degenerate_two_class_warning(method: str, standardize: bool, params: dict) -> str | None:
    reasons = []
    if standardize:
        reasons.append(
            "standardised two-class logits are always [-1, 1] or [1, -1] (the sign of the "
            "margin), so the KD term gives the student no gradient"
        )
    if method == "dkd":
        reasons.append(
            "DKD's non-target term is 0 on two classes and DKD reduces to target_weight * hinton"
        )
    if method == "dist" and float(params.get("intra_weight", 1.0)) == 0.0:
        reasons.append(
            "DIST's inter-class correlation is +-1 on two classes (no gradient) and "
            "intra_weight=0 turns off the intra-class term, the only one that trains"
        )
    if not reasons:
        return None
    return (
        f"KD method {method!r}{' with standardize=True' if standardize else ''} is degenerate on "
        f"2 classes: {'; '.join(reasons)}. For binary data use method='ranking' (pairwise order "
        "of rows), 'dist' (its intra-class term correlates the positive-class probabilities over "
        "the batch) or 'hinton'."
    )


def check_kd_method(
    method: str,
    params: dict | None = None,
    num_classes: int | None = None,
    standardize: bool = False,
) -> dict:
    """Validate a logit KD method and its settings before training.

    Args:
        method: one of :data:`KD_METHODS`.
        params: the method's settings (e.g. ``{"nontarget_weight": 8}`` for ``"dkd"``).
        num_classes: when known, checked against the method (``"ranking"`` needs 2); on 2 classes
            ``"dkd"`` (which reduces to Hinton), ``standardize=True`` (no gradient) and
            ``"dist"`` with ``intra_weight=0`` (no gradient) are degenerate and give a
            ``UserWarning`` that says why.
        standardize: whether the logits will be standardised (:func:`standardize_logits`).

    Returns:
        The params as a new dict with numbers converted to ``float`` / ``int``.

    Raises:
        ConfigError: unknown method (the message lists :data:`KD_METHODS`), a parameter the
            method does not have (the message lists those it has), a value out of range, or
            ``"ranking"`` with ``num_classes != 2``.
    """
    out = _check_method_params(method, params, _KD_PARAMS, "KD")
    if num_classes is not None:
        if method == "ranking" and num_classes != 2:
            raise ConfigError(
                f"KD method 'ranking' orders rows by the margin of two-class logits and needs "
                f"num_classes=2, got {num_classes}. For {num_classes} classes use 'hinton', 'dkd' "
                "or 'dist'."
            )
        if num_classes == 2:
            message = _degenerate_two_class_warning(method, standardize, out)
            if message:
                warnings.warn(message, UserWarning, stacklevel=2)
    return out


def logit_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    method: str = "hinton",
    labels: torch.Tensor | None = None,
    standardize: bool = False,
    generator: torch.Generator | None = None,
    check_labels: bool = True,
    **params: float | int | str | None,
) -> torch.Tensor:
    """The KD term of a training step, by method name: the one switch a training loop calls.

    ``method="hinton"`` is :func:`kd_loss` (exactly its value), ``"dkd"`` :func:`dkd_loss`,
    ``"dist"`` :func:`dist_loss`, ``"ranking"`` :func:`ranking_kd_loss`. ``standardize=True``
    first replaces both sets of logits by :func:`standardize_logits` (Sun et al. 2024), for any
    method. See ``docs/methods.md`` for when to use which.

    Args:
        student_logits: ``(batch, num_classes)``; ``"hinton"`` also takes
            ``(batch, frames, num_classes)``.
        teacher_logits: the same shape.
        temperature: T > 0.
        method: one of :data:`KD_METHODS`.
        labels: ``(batch,)`` class indices (-1: unlabelled); required by ``"dkd"``, ignored by the
            other methods.
        standardize: z-score both logits per row before softening.
        generator: pair sampling of ``"ranking"`` (ignored by the other methods).
        check_labels: check the labels' range (``"dkd"``; see :func:`dkd_loss`).
        **params: the method's settings, as listed by :func:`check_kd_method`'s errors
            (``dkd``: target_weight, nontarget_weight; ``dist``: inter_weight, intra_weight, eps;
            ``ranking``: max_pairs, weighting, top_k, pointwise_weight; ``hinton``: none).

    Returns:
        A float32 scalar.

    Raises:
        ConfigError: unknown method or parameter, or ``"dkd"`` without labels.
    """
    params = _check_method_params(method, params, _KD_PARAMS, "KD")
    num_classes = student_logits.shape[-1]
    if num_classes == 2 and (standardize or method in ("dkd", "dist")):
        message = _degenerate_two_class_warning(method, standardize, params)
        if message:
            warnings.warn(message, UserWarning, stacklevel=2)
    if standardize:
        _check_pair(student_logits, teacher_logits)
        student_logits = standardize_logits(student_logits)
        teacher_logits = standardize_logits(teacher_logits)
    if method == "hinton":
        return kd_loss(student_logits, teacher_logits, temperature)
    if method == "dkd":
        if labels is None:
            raise ConfigError(
                "KD method 'dkd' needs labels to split the target class from the others. Pass "
                f"labels=, with {IGNORE_LABEL} for rows without a label (those use the teacher's "
                "arg-max class), or use method='hinton' or 'dist'."
            )
        return dkd_loss(
            student_logits, teacher_logits, labels, temperature, check_labels=check_labels, **params
        )
    if method == "dist":
        return dist_loss(student_logits, teacher_logits, temperature, **params)
    return ranking_kd_loss(
        student_logits, teacher_logits, temperature, generator=generator, **params
    )


# ------------------------------------------------------------------- beyond Hinton (CTC, mutual)


def _bag_log_probs(logits: torch.Tensor, temperature: float, blank: int) -> torch.Tensor:
    """``(batch, num_classes - 1)`` log of the renormalised time-averaged non-blank posteriors."""
    log_p = F.log_softmax(soften(logits, temperature), dim=-1)  # (batch, frames, classes)
    keep = [c for c in range(log_p.shape[-1]) if c != blank]
    # log of the frame average of each class's probability, in log space (no underflow).
    log_mean = log_p[..., keep].logsumexp(dim=1) - math.log(log_p.shape[1])
    return F.log_softmax(log_mean, dim=-1)


def ctc_bag_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    blank: int = 0,
) -> torch.Tensor:
    """Line-level KD for CTC readers: the line as a bag of characters (blank-masked, time-averaged).

    Frame-wise KD (:func:`frame_kd_loss`) asks the student to emit each character at the same frame
    as the teacher; CTC does not care where a character is emitted, and two readers with different
    downsampling do not even have the same frames. Here, for each line and model, the softened
    posteriors (``softmax(logits / T)``) are averaged over the frames, the blank is dropped and the
    rest renormalised, giving the distribution of characters in the line::

        bag_c = mean_t p_t(c) / sum_{c' != blank} mean_t p_t(c')      for c != blank
        loss  = mean over lines of T^2 * KL(bag_teacher || bag_student)

    (in the spirit of PaddleOCR's blank-masked CTC distillation). It ignores order and position, so
    it complements the frame or CTC terms rather than replacing them. The frame counts of teacher
    and student may differ: averaging removes the need to resample. With only one non-blank class
    the bag is always ``[1]`` and the loss is 0.

    Args:
        student_logits: ``(batch, frames, num_classes)``.
        teacher_logits: ``(batch, frames_t, num_classes)``; any ``frames_t >= 1``.
        temperature: T > 0.
        blank: class index of the blank.

    Returns:
        A float32 scalar >= 0, zero when both give the same average non-blank distribution.

    Raises:
        DataError: not 3-D, or different batch or class counts.
        ConfigError: ``blank`` outside ``[0, num_classes)``.
    """
    t = check_temperature(temperature)
    s, v = _check_sequence_pair(student_logits, teacher_logits)
    if s[1] < 1 or v[1] < 1:
        raise DataError(f"Both models need at least one frame per line, got {s} and {v}.")
    if isinstance(blank, bool) or not isinstance(blank, int) or not 0 <= blank < s[2]:
        raise ConfigError(f"blank must be a class index in [0, {s[2]}), got {blank!r}.")
    if s[2] < 2:
        raise DataError(f"CTC logits need the blank and at least one character, got {s[2]} class.")
    log_q = _bag_log_probs(teacher_logits, t, blank)
    log_p = _bag_log_probs(student_logits, t, blank)
    return (t * t) * _kl_from_log_probs(log_q, log_p).mean()


def mutual_kd_loss(
    logits_a: torch.Tensor,
    logits_b: torch.Tensor,
    temperature: float,
    sample_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deep mutual learning (Zhang et al. 2018) as a loss: each network distils from the other.

    Returns the two directions with the other side detached, so that one backward pass of
    ``loss_a + loss_b`` (plus each network's own hard loss) updates both networks online::

        loss_a = T^2 * KL(softmax(b / T).detach() || softmax(a / T))   (trains network a)
        loss_b = T^2 * KL(softmax(a / T).detach() || softmax(b / T))   (trains network b)

    Each is :func:`kd_loss` with the other network as a (detached) teacher.

    Args:
        logits_a: ``(batch, num_classes)`` or ``(batch, frames, num_classes)``.
        logits_b: the same shape.
        temperature: T > 0.
        sample_weight: optional ``(batch,)`` (or ``(batch, frames)``) weights, as in
            :func:`kd_loss`.

    Returns:
        ``(loss_a, loss_b)``, float32 scalars; ``loss_a`` has a gradient only through
        ``logits_a`` and ``loss_b`` only through ``logits_b``.
    """
    t = check_temperature(temperature)
    loss_a = kd_loss(logits_a, logits_b.detach(), t, sample_weight=sample_weight)
    loss_b = kd_loss(logits_b, logits_a.detach(), t, sample_weight=sample_weight)
    return loss_a, loss_b


def check_ctc_kd_method(method: str, params: dict | None = None) -> dict:
    """Validate a CTC KD method (one of :data:`CTC_KD_METHODS`) and its settings before training.

    Returns:
        The params as a new dict with numbers converted.

    Raises:
        ConfigError: unknown method (the message lists :data:`CTC_KD_METHODS`), a parameter the
            method does not have (the message lists those it has), or a value out of range.
    """
    return _check_method_params(method, params, _CTC_KD_PARAMS, "CTC KD")


def ctc_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    method: str = "frame",
    mask: torch.Tensor | None = None,
    **params: float | int | str | None,
) -> torch.Tensor:
    """The KD term between two CTC readers, by method name.

    ``"frame"`` is :func:`frame_kd_loss`, ``"blank_aware"`` :func:`blank_aware_kd_loss`, ``"bag"``
    :func:`ctc_bag_kd_loss` (each gives exactly that function's value).

    Args:
        student_logits: ``(batch, frames, num_classes)``.
        teacher_logits: ``(batch, frames_t, num_classes)``.
        temperature: T > 0.
        method: one of :data:`CTC_KD_METHODS`.
        mask: optional ``(batch, frames)`` weights on the student's frames (``"frame"`` and
            ``"blank_aware"`` only: a bag averages whole lines).
        **params: the method's settings (``frame``: resample; ``blank_aware``: blank,
            blank_threshold, blank_weight, resample; ``bag``: blank).

    Returns:
        A float32 scalar.
    """
    params = check_ctc_kd_method(method, params)
    if method == "frame":
        return frame_kd_loss(student_logits, teacher_logits, temperature, mask=mask, **params)
    if method == "blank_aware":
        return blank_aware_kd_loss(student_logits, teacher_logits, temperature, mask=mask, **params)
    if mask is not None:
        raise ConfigError(
            "CTC KD method 'bag' averages whole lines and takes no frame mask; drop mask= or use "
            "method='frame' or 'blank_aware'."
        )
    return ctc_bag_kd_loss(student_logits, teacher_logits, temperature, **params)
