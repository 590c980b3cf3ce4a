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

Deep mutual learning (``peer_frames`` set): the engine trains a :class:`MutualPair`, two readers
(the student and its peer) whose frame logits are concatenated along the frame axis, and the task
splits them again (:meth:`CTCTask.split`). Each network ``k`` of the pair gets::

    loss_k = alpha * (kd_k + mutual_k) + (1 - alpha) * ctc_k

where ``kd_k`` is the teacher term above (0 without a teacher), ``ctc_k`` its own CTC loss on the
labels and ``mutual_k`` its direction of :func:`crosskd.losses.mutual_kd_loss` (``T^2 KL`` from the
other network's detached posteriors, frame by frame; when the two give different frame counts the
other network's posteriors are resampled to this one's frames with ``resample``). The loss
backpropagated is ``loss_student + loss_peer``: the networks share no parameters, so each gets the
gradient it would get alone. Unlabelled lines get the ``kd`` and ``mutual`` terms only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._device import autocast
from ..exceptions import ConfigError, DataError
from ..losses import (
    blank_aware_kd_loss,
    ctc_bag_kd_loss,
    ctc_loss,
    decoded_targets,
    frame_kd_loss,
    greedy_decode,
    mutual_kd_loss,
)
from ..metrics import character_error_rate, sequence_accuracy
from .base import forward_batched

__all__ = ["CTCTask", "MODES", "MUTUAL_TERMS", "MutualPair", "frames_needed"]

MODES = ("frame", "sequence", "both")
#: the loss terms of mutual learning, ``"loss"`` (both networks' losses summed) first; each
#: network's own ``kd`` (teacher), ``ctc`` and ``mutual`` terms, the peer's prefixed ``peer_``.
MUTUAL_TERMS = ("loss", "kd", "ctc", "mutual", "peer_kd", "peer_ctc", "peer_mutual")


def frames_needed(sequence: Sequence[Any]) -> int:
    """CTC frames needed to read ``sequence``: one per symbol plus one blank between repeats."""
    return len(sequence) + sum(p == q for p, q in zip(sequence, sequence[1:], strict=False))


class MutualPair(nn.Module):
    """Two text-line readers trained together by deep mutual learning, as one module.

    The engine trains one model; this holds both and returns both networks' logits of the same
    images, concatenated along the frame axis, so that batching, chunked inference, checkpoints
    and DDP treat the pair like any reader. :meth:`CTCTask.split` takes them apart.

    Args:
        student: the first reader, ``(N, C, H, W) -> (N, frames, num_classes)``.
        peer: the second reader, ``(N, C, H, W) -> (N, peer_frames, num_classes)`` (the same
            classes; the frame count may differ).
    """

    def __init__(self, student: nn.Module, peer: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.peer = peer

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` images -> ``(N, frames + peer_frames, num_classes)`` logits."""
        return torch.cat([self.student(images), self.peer(images)], dim=1)


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
        peer_frames: None (one network), or the peer's frames per line: the model is a
            :class:`MutualPair` and the loss adds the mutual terms (see the module docstring);
            the terms are then :data:`MUTUAL_TERMS`, and validation reports ``cer`` and
            ``sequence_accuracy`` of the better network (the lower CER; ties: the student) and
            ``cer_student`` and ``cer_peer``.
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
        peer_frames: int | None = None,
    ) -> None:
        self.alphabet, self.temperature, self.alpha = alphabet, float(temperature), float(alpha)
        self.mode, self.blank_threshold, self.blank_weight = mode, blank_threshold, blank_weight
        self.resample, self.teacher, self.frames = resample, teacher, int(frames)
        self.precision, self.chunk_size = precision, chunk_size
        self.sequence = mode in ("sequence", "both")
        self.method = method
        self.peer_frames = None if peer_frames is None else int(peer_frames)
        if self.peer_frames is not None:
            self.terms = MUTUAL_TERMS

    @property
    def mutual(self) -> bool:
        """Whether the model is a :class:`MutualPair` (deep mutual learning)."""
        return self.peer_frames is not None

    def split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A :class:`MutualPair`'s ``(N, frames + peer_frames, classes)`` output as the student's
        ``(N, frames, classes)`` and the peer's ``(N, peer_frames, classes)`` logits.

        Raises:
            ConfigError: the task trains a single network (``peer_frames`` is None).
            DataError: the output does not have ``frames + peer_frames`` frames.
        """
        if not self.mutual:
            raise ConfigError(
                "CTCTask.split needs a task built for mutual learning (peer_frames=<the peer's "
                "frames per line>); this one trains a single network."
            )
        expected = self.frames + int(self.peer_frames)  # type: ignore[arg-type]
        if out.ndim != 3 or out.shape[1] != expected:
            raise DataError(
                f"A mutual pair's output must be (batch, {self.frames} + {self.peer_frames} "
                f"frames, classes) (the student's frames, then the peer's), got "
                f"{tuple(out.shape)}. Pass the pair's models to the task with their frame counts."
            )
        return out[:, : self.frames], out[:, self.frames :]

    # ------------------------------------------------------------------ teacher targets

    def _decoded(self, teacher_logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The teacher's greedy decodings as CTC targets, and which of them the student can read."""
        decoded = greedy_decode(teacher_logits)
        frames = self.frames if self.peer_frames is None else min(self.frames, self.peer_frames)
        fits = [frames_needed(s) <= frames for s in decoded]
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
        """``{"loss", "kd", "ctc"}`` (:data:`MUTUAL_TERMS` for a mutual pair); ``targets`` is
        ``(padded labels, lengths, labelled mask)``."""
        if self.mutual:
            return self._mutual_loss(student_out, teacher, targets)
        terms = self._network_terms(student_out.float(), teacher, targets)
        kd, ctc = terms
        a = self.alpha
        return {"loss": a * kd + (1.0 - a) * ctc, "kd": kd.detach(), "ctc": ctc.detach()}

    def _network_terms(
        self,
        logits: torch.Tensor,
        teacher: tuple[torch.Tensor, ...] | None,
        targets: tuple[torch.Tensor, ...],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One network's ``(kd, ctc)``: the teacher term and the CTC loss on the labels."""
        a = self.alpha
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
        return kd, ctc

    def mutual_terms(
        self, student_logits: torch.Tensor, peer_logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The two directions of the mutual term, ``(student's, peer's)``: exactly
        :func:`crosskd.losses.mutual_kd_loss` when both give the same frames; otherwise each
        network's ``T^2 KL`` from the other's detached posteriors resampled to its own frames
        (:func:`crosskd.losses.frame_kd_loss` with ``resample``).

        Args:
            student_logits: ``(batch, frames, classes)``.
            peer_logits: ``(batch, peer_frames, classes)``.

        Raises:
            ConfigError: different frame counts and ``resample`` is None.
        """
        s_frames, p_frames = student_logits.shape[1], peer_logits.shape[1]
        if s_frames == p_frames:
            return mutual_kd_loss(student_logits, peer_logits, self.temperature)
        if self.resample is None:
            raise ConfigError(_frames_message(s_frames, p_frames))
        t = self.temperature
        return (
            frame_kd_loss(student_logits, peer_logits.detach(), t, resample=self.resample),
            frame_kd_loss(peer_logits, student_logits.detach(), t, resample=self.resample),
        )

    def _mutual_loss(
        self,
        out: torch.Tensor,
        teacher: tuple[torch.Tensor, ...] | None,
        targets: tuple[torch.Tensor, ...],
    ) -> dict[str, torch.Tensor]:
        a = self.alpha
        student, peer = (z.float() for z in self.split(out))
        kd, ctc = self._network_terms(student, teacher, targets)
        peer_kd, peer_ctc = self._network_terms(peer, teacher, targets)
        zero = student.new_zeros(())
        mutual, peer_mutual = self.mutual_terms(student, peer) if a > 0 else (zero, zero)
        loss = a * (kd + mutual) + (1.0 - a) * ctc + a * (peer_kd + peer_mutual)
        loss = loss + (1.0 - a) * peer_ctc
        named = {
            "kd": kd,
            "ctc": ctc,
            "mutual": mutual,
            "peer_kd": peer_kd,
            "peer_ctc": peer_ctc,
            "peer_mutual": peer_mutual,
        }
        return {"loss": loss, **{k: v.detach() for k, v in named.items()}}

    # ------------------------------------------------------------------ validation

    def decode(self, logits: torch.Tensor) -> list[str]:
        """Greedy readings of ``(N, frames, classes)`` logits as strings."""
        return [self.alphabet.decode(s) for s in greedy_decode(logits)]

    def read(self, model: nn.Module, images: torch.Tensor, device: torch.device) -> list[str]:
        """The model's greedy readings of ``images`` (a single reader, not a mutual pair)."""
        return self.decode(
            forward_batched(model, (images,), device, self.precision, self.chunk_size)
        )

    def readings(
        self, model: nn.Module, images: torch.Tensor, device: torch.device
    ) -> list[list[str]]:
        """Each network's greedy readings of ``images``: one list for a single reader, two
        (student, peer) for a :class:`MutualPair`."""
        logits = forward_batched(model, (images,), device, self.precision, self.chunk_size)
        parts = self.split(logits) if self.mutual else (logits,)
        return [self.decode(z) for z in parts]

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
        out = {k: float(v) for k, v in terms.items()}
        if not self.mutual:
            predicted = self.decode(logits)
            out["cer"] = character_error_rate(predicted, val["labels"])
            out["sequence_accuracy"] = sequence_accuracy(predicted, val["labels"])
            return out
        readings = [self.decode(z) for z in self.split(logits)]
        cers = [character_error_rate(r, val["labels"]) for r in readings]
        better = 0 if cers[0] <= cers[1] else 1
        out["cer"] = cers[better]
        out["sequence_accuracy"] = sequence_accuracy(readings[better], val["labels"])
        out["cer_student"], out["cer_peer"] = cers
        return out


def _frames_message(student_frames: int, peer_frames: int) -> str:
    return (
        f"The student gives {student_frames} frames per line but its mutual-learning peer "
        f"{peer_frames}; the mutual term compares the two frame by frame. Build both with the "
        "same horizontal downsampling (e.g. the same CRNN max_reduction), or pass "
        "resample='linear' (or 'nearest') to interpolate each network's posteriors to the "
        "other's frames."
    )
