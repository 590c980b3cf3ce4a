"""CTC sequences (text lines): frame, sequence and combined distillation of a CRNN-style reader.

The loss of a batch is ``alpha * kd + (1 - alpha) * ctc(student, labels)`` where ``kd`` depends on
``mode``:

- ``"frame"``: frame-wise ``T^2 * KL`` between the teacher's and the student's posteriors
  (:func:`crosskd.losses.frame_kd_loss`, or :func:`~crosskd.losses.blank_aware_kd_loss` when
  ``blank_threshold`` is set);
- ``"sequence"``: CTC of the student against the teacher's greedy decodings of the same images
  (:func:`crosskd.losses.greedy_decode`), i.e. sequence-level KD;
- ``"both"``: the sum of the two.

Cached teacher targets (no augmentation) hold the teacher's frame logits and, for the sequence
modes, its decodings, computed once; an online teacher runs on each augmented batch. Unlabelled
lines (``labelled`` False) get the ``kd`` term only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._device import autocast
from ..losses import (
    blank_aware_kd_loss,
    ctc_bag_kd_loss,
    ctc_loss,
    decoded_targets,
    frame_kd_loss,
    greedy_decode,
)
from ..metrics import character_error_rate, sequence_accuracy
from .base import forward_batched

__all__ = ["CTCTask", "MODES", "frames_needed"]

MODES = ("frame", "sequence", "both")


def frames_needed(sequence: Sequence[Any]) -> int:
    """CTC frames needed to read ``sequence``: one per symbol plus one blank between repeats."""
    return len(sequence) + sum(p == q for p, q in zip(sequence, sequence[1:], strict=False))


class CTCTask:
    """The CTC sequence task (see the module docstring).

    Args:
        alphabet: the :class:`~crosskd.vision.Alphabet` (decodes predictions for the metrics).
        temperature: T of the frame KD term.
        alpha: weight of the KD term in [0, 1].
        mode: ``"frame"``, ``"sequence"`` or ``"both"``.
        blank_threshold: None (plain frame KD) or the teacher blank probability above which a
            frame is weighted by ``blank_weight`` (blank-aware KD).
        blank_weight: weight of confidently blank frames.
        resample: how teacher frames are matched to the student's when their counts differ.
        teacher: the teacher module (for online targets and caching), or None.
        frames: student frames per line (sequence KD leaves out decodings longer than that).
        method: the frame term of the ``"frame"`` and ``"both"`` modes: ``"frame"`` (frame-wise
            KL; blank-aware when ``blank_threshold`` is set) or ``"bag"`` (the blank-masked,
            time-averaged KL of :func:`crosskd.losses.ctc_bag_kd_loss`: the line read as a bag of
            characters, no frame alignment needed).
        chunk_size: lines per forward pass in validation and caching.
    """

    terms = ("loss", "kd", "ctc")
    monitor = "cer"
    higher_is_better = False
    keep_latest_tie = True

    def __init__(
        self,
        *,
        alphabet: Any,
        temperature: float,
        alpha: float,
        mode: str,
        blank_threshold: float | None,
        blank_weight: float,
        resample: str | None,
        teacher: nn.Module | None,
        frames: int,
        precision: str = "32",
        chunk_size: int = 64,
        method: str = "frame",
    ) -> None:
        self.alphabet, self.temperature, self.alpha = alphabet, float(temperature), float(alpha)
        self.mode, self.blank_threshold, self.blank_weight = mode, blank_threshold, blank_weight
        self.resample, self.teacher, self.frames = resample, teacher, int(frames)
        self.precision, self.chunk_size = precision, chunk_size
        self.sequence = mode in ("sequence", "both")
        self.method = method

    # ------------------------------------------------------------------ teacher targets

    def _decoded(self, teacher_logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The teacher's greedy decodings as CTC targets, and which of them the student can read."""
        decoded = greedy_decode(teacher_logits)
        fits = [frames_needed(s) <= self.frames for s in decoded]
        decoded = [s if ok else [] for s, ok in zip(decoded, fits, strict=True)]
        targets, lengths = decoded_targets(decoded, teacher_logits.device)
        return targets, lengths, torch.as_tensor(fits, device=teacher_logits.device).float()

    def teacher_logits(self, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The teacher's ``(N, frames, classes)`` float32 logits of ``images``, in chunks."""
        return forward_batched(self.teacher, (images,), device, self.precision, self.chunk_size)

    def cache_targets(self, teacher_logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per-line cached targets: the frame logits, and for the sequence modes the decodings."""
        if not self.sequence:
            return (teacher_logits,)
        return (teacher_logits, *self._decoded(teacher_logits))

    def online_targets(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        with torch.no_grad(), autocast(inputs[0].device, self.precision):
            logits = self.teacher(inputs[0])
        return self.cache_targets(logits.float())

    # ------------------------------------------------------------------ loss

    def loss(
        self,
        student_out: torch.Tensor,
        teacher: tuple[torch.Tensor, ...] | None,
        targets: tuple[torch.Tensor, ...],
        cached: bool,
    ) -> dict[str, torch.Tensor]:
        """``{"loss", "kd", "ctc"}``; ``targets`` is ``(padded labels, lengths, labelled mask)``."""
        a = self.alpha
        logits = student_out.float()
        zero = logits.new_zeros(())
        labels, lengths, labelled = targets
        ctc = zero
        if a < 1:
            ctc = ctc_loss(logits, labels, lengths, sample_weight=labelled.float(), check=False)
        kd = zero
        if teacher is not None and a > 0:
            t_logits = teacher[0]
            if self.mode in ("frame", "both"):
                if self.method == "bag":
                    kd = kd + ctc_bag_kd_loss(logits, t_logits, self.temperature)
                elif self.blank_threshold is None:
                    kd = kd + frame_kd_loss(
                        logits, t_logits, self.temperature, resample=self.resample
                    )
                else:
                    kd = kd + blank_aware_kd_loss(
                        logits,
                        t_logits,
                        self.temperature,
                        blank_threshold=float(self.blank_threshold),
                        blank_weight=float(self.blank_weight),
                        resample=self.resample,
                    )
            if self.sequence:
                t_targets, t_lengths, fits = teacher[1:]
                kd = kd + ctc_loss(logits, t_targets, t_lengths, sample_weight=fits, check=False)
        return {"loss": a * kd + (1.0 - a) * ctc, "kd": kd.detach(), "ctc": ctc.detach()}

    # ------------------------------------------------------------------ validation

    def decode(self, logits: torch.Tensor) -> list[str]:
        """Greedy readings of ``(N, frames, classes)`` logits as strings."""
        return [self.alphabet.decode(s) for s in greedy_decode(logits)]

    def read(self, model: nn.Module, images: torch.Tensor, device: torch.device) -> list[str]:
        """The model's greedy readings of ``images``."""
        return self.decode(
            forward_batched(model, (images,), device, self.precision, self.chunk_size)
        )

    def validate(
        self, model: nn.Module, val: dict[str, Any], device: torch.device, precision: str
    ) -> dict[str, float]:
        """The loss terms (with the teacher's targets on the validation lines, when there is a
        teacher) and ``cer`` and ``sequence_accuracy`` of the greedy readings.

        Args:
            val: ``{"images", "labels" (strings), "targets" (labels, lengths, labelled),
                "teacher" (cached targets or None)}``.
        """
        logits = forward_batched(model, (val["images"],), device, precision, self.chunk_size)
        terms = self.loss(logits, val["teacher"], val["targets"], cached=True)
        predicted = self.decode(logits)
        out = {k: float(v) for k, v in terms.items()}
        out["cer"] = character_error_rate(predicted, val["labels"])
        out["sequence_accuracy"] = sequence_accuracy(predicted, val["labels"])
        return out
