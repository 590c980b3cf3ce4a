"""CTCDistiller: trains a text-line student (a CRNN) with CTC on labels and distillation from a
teacher CRNN, following :class:`crosskd.Distiller`'s conventions (settings in ``__init__``,
``fit`` returns self, fitted attributes end with ``_``).

The loss of a batch is ``alpha * kd + (1 - alpha) * ctc(student, labels)`` where ``kd`` depends on
``mode``:

- ``"frame"``: frame-wise ``T^2 * KL`` between the teacher's and the student's posteriors
  (:func:`crosskd.losses.frame_kd_loss`, or :func:`~crosskd.losses.blank_aware_kd_loss` when
  ``blank_threshold`` is set);
- ``"sequence"``: CTC of the student against the teacher's greedy decodings of the same
  (augmented) images (:func:`crosskd.losses.greedy_decode`), i.e. sequence-level KD;
- ``"both"``: the sum of the two.

The teacher runs online, in eval mode, on each augmented batch. Unlabelled ``transfer`` images get
the ``kd`` term only. With ``teacher=None`` (and ``alpha=0``) it trains a model on labels alone.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._device import autocast, check_precision, resolve_device
from ..exceptions import ConfigError, DataError, NotFittedError, TrainingError
from ..losses import (
    blank_aware_kd_loss,
    check_alpha,
    check_temperature,
    ctc_loss,
    decoded_targets,
    frame_kd_loss,
    greedy_decode,
)
from ..metrics import character_error_rate, sequence_accuracy
from .data import as_images
from .textlines import Alphabet

__all__ = ["CTCDistiller"]

MODES = ("frame", "sequence", "both")
#: A model whose character error rate is still at least this after ``plateau_epochs`` epochs is
#: taken to be on the all-blank CTC plateau (it reads almost nothing: blanks, or one character).
STALL_CER = 0.85


def _reinitialise(model: nn.Module, seed: int) -> None:
    """Fresh initial weights for every submodule that can reset itself (seeded); children first, so
    a parent's own ``reset_parameters`` (e.g. a custom bias initialisation) has the last word."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in reversed(list(model.modules())):
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()


def _positive(value: Any, name: str, kind: type = int) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise ConfigError(f"{name} must be a positive {kind.__name__}, got {value!r}.")
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}.")
    return value


class CTCDistiller:
    """Distil a CTC text-line teacher into a student (or train either on labels alone).

    Args:
        teacher: an ``nn.Module`` mapping ``(N, C, H, W)`` images to ``(N, frames, num_classes)``
            logits (e.g. a trained :class:`crosskd.vision.CRNN`), or None to train on labels only
            (then ``alpha`` must be 0).
        student: the model to train, same input and output layout.
        alphabet: the :class:`~crosskd.vision.Alphabet`; None builds it from the training labels.
            The student must output ``alphabet.num_classes`` classes.
        temperature: T of the frame KD term.
        alpha: weight of the KD term in [0, 1].
        mode: ``"frame"``, ``"sequence"`` or ``"both"`` (see the module docstring).
        blank_threshold: None: plain frame KD; a probability: blank-aware frame KD that weights
            frames where the teacher's blank probability is at least this by ``blank_weight``.
        blank_weight: weight of confidently blank frames in the blank-aware KD.
        resample: None, ``"linear"`` or ``"nearest"``: how teacher frames are matched to the
            student's when their counts differ (None: an error).
        epochs: passes over the training lines.
        batch_size: lines per step.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        warmup_epochs: epochs of linear learning-rate warm-up (from lr/10), then cosine decay; with
            gradient clipping, this keeps a CTC model from settling on the all-blank output.
        grad_clip: maximum gradient norm (None: no clipping).
        early_stopping: stop when the validation CER has not improved for this many epochs (needs
            ``eval_set``; None: train all epochs). The best epoch's weights are restored whenever an
            ``eval_set`` is given: the lowest validation CER, the latest such epoch on ties.
        plateau_restarts: how many times training may start again from new initial weights when
            the model is still on the all-blank CTC plateau after ``plateau_epochs`` epochs (its
            character error rate on the validation lines, or on up to 256 training lines without an
            ``eval_set``, is still >= 0.85: it reads blanks, or a character here and there). 0
            turns the check off. Small ``"tiny"`` CRNNs trained on labels alone stayed on that
            plateau for whole 20-epoch runs on 1 or 2 of 5 folds of the captcha lines, and no
            learning rate, batch size or head tried removed that (see :mod:`crosskd.vision.crnn`);
            a fresh start leaves it. Each restart trains the full ``epochs`` again; ``restarts_``
            counts them and ``history_`` keeps every attempt's epochs (key ``attempt``).
        plateau_epochs: the epoch after which the plateau check runs (once per attempt; not when
            it is the last epoch).
        augment: a callable on image batches (e.g. :class:`crosskd.vision.RandomAffine`) applied on
            the device before the student and the teacher see a batch.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        precision: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"``.
        seed: seed of the shuffling and of torch's global generator at the start of ``fit``.
        progress: print one line per epoch to stderr.

    Attributes (after fit):
        student_: the trained student (on ``device_``), alphabet_, history_ (one dict per epoch),
        best_epoch_ (of the last attempt), restarts_ (all-blank plateau restarts), device_, frames_
        (student frames per line), n_train_.
    """

    def __init__(
        self,
        teacher: nn.Module | None,
        student: nn.Module,
        *,
        alphabet: Alphabet | None = None,
        temperature: float = 1.0,
        alpha: float = 0.5,
        mode: str = "frame",
        blank_threshold: float | None = None,
        blank_weight: float = 0.1,
        resample: str | None = None,
        epochs: int = 20,
        batch_size: int = 32,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        warmup_epochs: float = 1.0,
        grad_clip: float | None = 5.0,
        early_stopping: int | None = None,
        plateau_restarts: int = 3,
        plateau_epochs: int = 5,
        augment: Callable[[Any], Any] | None = None,
        device: str | torch.device = "auto",
        precision: str = "32",
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        self.teacher = teacher
        self.student = student
        self.alphabet = alphabet
        self.temperature = temperature
        self.alpha = alpha
        self.mode = mode
        self.blank_threshold = blank_threshold
        self.blank_weight = blank_weight
        self.resample = resample
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_epochs = warmup_epochs
        self.grad_clip = grad_clip
        self.early_stopping = early_stopping
        self.plateau_restarts = plateau_restarts
        self.plateau_epochs = plateau_epochs
        self.augment = augment
        self.device = device
        self.precision = precision
        self.seed = seed
        self.progress = progress

    # ------------------------------------------------------------------------------- checks

    def _check_settings(self) -> None:
        if not isinstance(self.student, nn.Module):
            raise ConfigError(
                f"student must be an nn.Module (e.g. crosskd.vision.CRNN), got "
                f"{type(self.student).__name__}."
            )
        if self.teacher is not None and not isinstance(self.teacher, nn.Module):
            raise ConfigError(
                f"teacher must be an nn.Module returning (N, frames, classes) logits, or None; got "
                f"{type(self.teacher).__name__}."
            )
        check_temperature(self.temperature)
        a = check_alpha(self.alpha)
        if self.teacher is None and a > 0:
            raise ConfigError(
                f"alpha={a} needs a teacher; pass alpha=0 to train on labels only, or a teacher."
            )
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {self.mode!r}.")
        if self.alphabet is not None and not isinstance(self.alphabet, Alphabet):
            raise ConfigError(
                f"alphabet must be a crosskd.vision.Alphabet or None, got {type(self.alphabet).__name__}."
            )
        _positive(self.epochs, "epochs")
        _positive(self.batch_size, "batch_size")
        _positive(self.lr, "lr", float)
        if self.early_stopping is not None:
            _positive(self.early_stopping, "early_stopping")
        if (
            isinstance(self.plateau_restarts, bool)
            or not isinstance(self.plateau_restarts, int)
            or self.plateau_restarts < 0
        ):
            raise ConfigError(
                f"plateau_restarts must be an integer >= 0 (0: never restart), got "
                f"{self.plateau_restarts!r}."
            )
        _positive(self.plateau_epochs, "plateau_epochs")
        if not (isinstance(self.warmup_epochs, (int, float)) and self.warmup_epochs >= 0):
            raise ConfigError(f"warmup_epochs must be >= 0, got {self.warmup_epochs!r}.")
        if self.grad_clip is not None:
            _positive(self.grad_clip, "grad_clip", float)
        check_precision(self.precision)

    @staticmethod
    def _images(images: Any, name: str) -> torch.Tensor:
        return torch.from_numpy(as_images(images, name=name))

    @staticmethod
    def _labels(labels: Any, n: int, name: str) -> list[str]:
        if isinstance(labels, str) or not isinstance(labels, Sequence | np.ndarray):
            raise DataError(f"{name} must be a list of strings (one label per image).")
        labels = [str(v) if isinstance(v, np.str_) else v for v in labels]
        bad = [v for v in labels if not isinstance(v, str)]
        if bad:
            raise DataError(f"{name} must be strings; got {type(bad[0]).__name__} {bad[0]!r}.")
        if len(labels) != n:
            raise DataError(f"{n} images but {len(labels)} {name}: give one label per image.")
        return labels

    def _encode(self, labels: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return decoded_targets([self.alphabet_.encode(s) for s in labels])

    # ---------------------------------------------------------------------------------- fit

    def fit(
        self,
        images: Any,
        labels: Sequence[str],
        *,
        eval_set: tuple[Any, Sequence[str]] | None = None,
        transfer: Any | None = None,
    ) -> CTCDistiller:
        """Train the student.

        Args:
            images: ``(N, C, H, W)`` text-line images (uint8 or float in [0, 1]; see
                :func:`crosskd.vision.load_textlines`).
            labels: the N label strings.
            eval_set: ``(images, labels)`` for validation: CER and sequence accuracy per epoch,
                early stopping (``early_stopping``) and best-weights restore.
            transfer: optional ``(M, C, H, W)`` unlabelled images; they get the KD term only (so
                they need a teacher and ``alpha > 0``).

        Returns:
            self.
        """
        self._check_settings()
        x = self._images(images, "images")
        y = self._labels(labels, len(x), "labels")
        self.alphabet_ = self.alphabet if self.alphabet is not None else Alphabet.from_labels(y)
        targets, lengths = self._encode(y)
        a = float(self.alpha)
        if transfer is not None:
            if self.teacher is None or a == 0:
                raise ConfigError(
                    "transfer images need a teacher and alpha > 0 (they have no labels)."
                )
            xt = self._images(transfer, "transfer")
            if xt.shape[1:] != x.shape[1:]:
                raise DataError(
                    f"transfer images are {tuple(xt.shape[1:])} but the training images are "
                    f"{tuple(x.shape[1:])}; read both with the same height and width."
                )
            x = torch.cat([x, xt])
            pad = torch.zeros((len(xt), targets.shape[1]), dtype=torch.long)
            targets = torch.cat([targets, pad])
            lengths = torch.cat([lengths, torch.zeros(len(xt), dtype=torch.long)])
        labelled = torch.zeros(len(x), dtype=torch.bool)
        labelled[: len(y)] = True
        if eval_set is not None:
            if not (isinstance(eval_set, tuple | list) and len(eval_set) == 2):
                raise ConfigError("eval_set must be a pair (images, labels).")
            xv = self._images(eval_set[0], "eval_set images")
            yv = self._labels(eval_set[1], len(xv), "eval_set labels")

        device = resolve_device(self.device)
        self.device_ = device
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        student = self.student.to(device)
        teacher = None if self.teacher is None or a == 0 else self.teacher.to(device).eval()
        out = student.num_classes if hasattr(student, "num_classes") else None
        if out is not None and out != self.alphabet_.num_classes:
            raise ConfigError(
                f"The student outputs {out} classes but the alphabet needs "
                f"{self.alphabet_.num_classes} ({len(self.alphabet_)} characters + the blank). "
                f"Build it with num_classes={self.alphabet_.num_classes}."
            )
        with torch.no_grad():
            was = student.training
            student.eval()
            probe = student(x[:1].to(device))
            student.train(was)
        if probe.ndim != 3 or probe.shape[-1] != self.alphabet_.num_classes:
            raise DataError(
                f"The student returns {tuple(probe.shape)} for one line; expected (1, frames, "
                f"{self.alphabet_.num_classes}). Use a CRNN with num_classes=alphabet.num_classes."
            )
        self.frames_ = int(probe.shape[1])
        need = max(
            (len(s) + sum(p == q for p, q in zip(s, s[1:], strict=False)) for s in y), default=0
        )
        if need > self.frames_:
            raise DataError(
                f"The longest label needs {need} CTC frames (one per character and one between "
                f"repeats) but the student gives {self.frames_} frames per line. Use wider images, "
                "or a backbone with less horizontal reduction (CRNN max_reduction)."
            )
        self.n_train_ = len(y)

        x, targets, lengths, labelled = (t.to(device) for t in (x, targets, lengths, labelled))
        steps_per_epoch = math.ceil(len(x) / self.batch_size)
        total = steps_per_epoch * self.epochs
        warmup = int(round(self.warmup_epochs * steps_per_epoch))

        def schedule(step: int) -> float:
            if step < warmup:
                return 0.1 + 0.9 * step / max(1, warmup)
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        if hasattr(self.augment, "reset"):
            self.augment.reset()
        # lines the all-blank check decodes: the validation lines, else up to 256 training lines
        if eval_set is not None:
            probe_x, probe_y = xv, yv
        else:
            pick = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.seed))[:256]
            probe_x, probe_y = x[pick.to(device)], [y[i] for i in pick.tolist()]

        self.history_: list[dict[str, float]] = []
        self.restarts_ = 0
        for attempt in range(self.plateau_restarts + 1):
            if attempt:
                _reinitialise(student, self.seed + 7919 * attempt)
            params = [p for p in student.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(
                params, lr=float(self.lr), weight_decay=float(self.weight_decay)
            )
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
            scaler = torch.amp.GradScaler(
                device.type, enabled=self.precision == "16-mixed" and device.type == "cuda"
            )
            history: list[dict[str, float]] = []
            best_cer, best_state, since_best = math.inf, None, 0
            self.best_epoch_ = self.epochs
            stalled = False
            for epoch in range(self.epochs):
                start = time.perf_counter()
                student.train()
                order = torch.randperm(len(x), generator=generator).to(device)
                sums = {"loss": 0.0, "kd": 0.0, "ctc": 0.0}
                for i in range(steps_per_epoch):
                    idx = order[i * self.batch_size : (i + 1) * self.batch_size]
                    xb = x[idx]
                    if self.augment is not None:
                        xb = self.augment(xb)
                    terms = self._step_loss(
                        student, teacher, xb, targets[idx], lengths[idx], labelled[idx]
                    )
                    if not torch.isfinite(terms["loss"]):
                        raise TrainingError(
                            f"The loss became {float(terms['loss'].detach())} at epoch {epoch}, "
                            f"step {i}. Lower lr, or use precision='32'."
                        )
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(terms["loss"]).backward()
                    if self.grad_clip is not None:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(params, float(self.grad_clip))
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    for k in sums:
                        sums[k] += float(terms[k].detach()) * len(idx)
                record: dict[str, float] = {
                    "epoch": epoch + 1,
                    **{f"train_{k}": v / len(x) for k, v in sums.items()},
                }
                if self.plateau_restarts:
                    record["attempt"] = attempt
                if eval_set is not None:
                    metrics = self._evaluate(student, xv, yv)
                    record.update({f"val_{k}": v for k, v in metrics.items()})
                    # early_stopping counts epochs without a strict improvement, but the weights kept
                    # are the latest of the best: a small validation set often reaches CER 0
                    # early, and the later epochs of the decayed schedule read unseen lines better
                    since_best = 0 if metrics["cer"] < best_cer else since_best + 1
                    if metrics["cer"] <= best_cer:
                        best_cer, self.best_epoch_ = metrics["cer"], epoch + 1
                        best_state = copy.deepcopy(student.state_dict())
                record["epoch_seconds"] = time.perf_counter() - start
                history.append(record)
                if self.progress:
                    shown = " ".join(
                        f"{k}={v:.4g}"
                        for k, v in record.items()
                        if k not in ("epoch", "epoch_seconds", "attempt")
                    )
                    print(f"ctc epoch {epoch + 1}/{self.epochs} {shown}", file=sys.stderr)
                if (
                    attempt < self.plateau_restarts
                    and epoch + 1 == self.plateau_epochs
                    and epoch + 1 < self.epochs
                ):
                    cer = character_error_rate(self._predict(student, probe_x), probe_y)
                    if cer >= STALL_CER:
                        stalled = True
                        if self.progress:
                            print(
                                f"ctc: still on the all-blank plateau after {epoch + 1} epochs "
                                f"(character error rate {cer:.3f}); restarting from new initial "
                                f"weights ({attempt + 1}/{self.plateau_restarts})",
                                file=sys.stderr,
                            )
                        break
                if (
                    self.early_stopping is not None
                    and eval_set is not None
                    and since_best >= self.early_stopping
                ):
                    break
            self.history_.extend(history)
            if not stalled:
                break
            self.restarts_ += 1
        if best_state is not None:
            student.load_state_dict(best_state)
        student.eval()
        self.student_ = student
        return self

    def _step_loss(
        self,
        student: nn.Module,
        teacher: nn.Module | None,
        xb: torch.Tensor,
        targets: torch.Tensor,
        lengths: torch.Tensor,
        labelled: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        a = float(self.alpha)
        with autocast(self.device_, self.precision):
            logits = student(xb)
            teacher_logits = None
            if teacher is not None:
                with torch.no_grad():
                    teacher_logits = teacher(xb).float()
        logits = logits.float()
        zero = logits.new_zeros(())
        ctc = zero
        if a < 1 and bool(labelled.any()):
            ctc = ctc_loss(logits, targets, lengths, sample_weight=labelled.float())
        kd = zero
        if teacher_logits is not None:
            if self.mode in ("frame", "both"):
                if self.blank_threshold is None:
                    kd = kd + frame_kd_loss(
                        logits, teacher_logits, self.temperature, resample=self.resample
                    )
                else:
                    kd = kd + blank_aware_kd_loss(
                        logits,
                        teacher_logits,
                        self.temperature,
                        blank_threshold=float(self.blank_threshold),
                        blank_weight=float(self.blank_weight),
                        resample=self.resample,
                    )
            if self.mode in ("sequence", "both"):
                decoded = greedy_decode(teacher_logits)
                frames = logits.shape[1]
                # A decoding too long for the student's frames cannot be a CTC target: leave it out.
                fits = torch.as_tensor(
                    [
                        len(s) + sum(p == q for p, q in zip(s, s[1:], strict=False)) <= frames
                        for s in decoded
                    ],
                    device=logits.device,
                )
                decoded = [s if ok else [] for s, ok in zip(decoded, fits.tolist(), strict=True)]
                t_targets, t_lengths = decoded_targets(decoded, logits.device)
                kd = kd + ctc_loss(logits, t_targets, t_lengths, sample_weight=fits.float())
        loss = a * kd + (1.0 - a) * ctc
        return {"loss": loss, "ctc": ctc.detach(), "kd": kd.detach()}

    # --------------------------------------------------------------------------- prediction

    def _check_fitted(self) -> None:
        if not hasattr(self, "student_"):
            raise NotFittedError(
                "This CTCDistiller is not fitted yet. Call fit(images, labels) first, or "
                "CTCDistiller.load(path)."
            )

    @torch.no_grad()
    def _predict(self, student: nn.Module, x: torch.Tensor) -> list[str]:
        student.eval()
        out: list[str] = []
        for i in range(0, len(x), max(self.batch_size, 64)):
            xb = x[i : i + max(self.batch_size, 64)].to(self.device_)
            with autocast(self.device_, self.precision):
                logits = student(xb)
            out.extend(self.alphabet_.decode(s) for s in greedy_decode(logits.float()))
        return out

    def _evaluate(self, student: nn.Module, x: torch.Tensor, y: list[str]) -> dict[str, float]:
        was = student.training
        pred = self._predict(student, x)
        student.train(was)
        return {
            "sequence_accuracy": sequence_accuracy(pred, y),
            "cer": character_error_rate(pred, y),
        }

    def predict(self, images: Any) -> list[str]:
        """The student's greedy CTC readings of ``(N, C, H, W)`` images, one string per line."""
        self._check_fitted()
        return self._predict(self.student_, self._images(images, "images"))

    def evaluate(self, images: Any, labels: Sequence[str]) -> dict[str, float]:
        """``{"sequence_accuracy", "cer"}`` of the student on labelled lines."""
        self._check_fitted()
        x = self._images(images, "images")
        return self._evaluate(self.student_, x, self._labels(labels, len(x), "labels"))

    # ---------------------------------------------------------------------------- save/load

    def save(self, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Save the student as a bundle (:func:`crosskd.io.save_bundle`) with the alphabet and the
        training settings in its metadata, plus the JSON-safe entries of ``metadata`` (e.g. the
        input geometry). Returns the path written."""
        from ..io import save_bundle

        self._check_fitted()
        metadata = {
            **(metadata or {}),
            "task": "textline",
            "alphabet": self.alphabet_.to_dict(),
            "temperature": float(self.temperature),
            "alpha": float(self.alpha),
            "mode": self.mode,
            "frames": self.frames_,
            "best_epoch": self.best_epoch_,
            "history": self.history_,
        }
        return save_bundle(path, self.student_, metadata)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> CTCDistiller:
        """A fitted CTCDistiller (for predict / evaluate) from a bundle written by :meth:`save`."""
        from ..io import load_bundle

        student, info = load_bundle(path)
        meta = info
        if "alphabet" not in meta:
            raise DataError(
                f"{str(path)!r} is a crosskd bundle without an alphabet; it was not saved by "
                "CTCDistiller.save."
            )
        self = cls(
            None,
            student,
            alphabet=Alphabet.from_dict(meta["alphabet"]),
            alpha=0.0,
            temperature=float(meta.get("temperature", 1.0)),
            mode=meta.get("mode", "frame"),
            device=device,
            progress=False,
        )
        self.alphabet_ = self.alphabet
        self.device_ = resolve_device(device)
        self.student_ = student.to(self.device_).eval()
        self.history_ = list(meta.get("history", []))
        self.best_epoch_ = meta.get("best_epoch")
        self.frames_ = meta.get("frames")
        return self
