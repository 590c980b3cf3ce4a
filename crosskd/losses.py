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
    "packed_soft_targets",
    "kd_loss_from_packed",
    "distillation_loss",
    "ctc_loss",
    "frame_kd_loss",
    "blank_aware_kd_loss",
    "greedy_decode",
    "decoded_targets",
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

    Returns:
        A float32 scalar.

    Raises:
        DataError: wrong shapes, a target holding the blank index or an index >= num_classes, or a
            target longer than the frames.
    """
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


def _frame_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    resample: str | None,
) -> tuple[torch.Tensor, torch.Tensor]:
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
