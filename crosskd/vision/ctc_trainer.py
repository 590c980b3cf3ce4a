"""CTCDistiller: trains a text-line student (a CRNN) with CTC on labels and distillation from a
teacher CRNN: a facade over the one engine (:mod:`crosskd.engine`) with the CTC task
(:class:`crosskd.tasks.ctc.CTCTask`, which documents the loss and its ``mode``), following
:class:`crosskd.Distiller`'s conventions (settings in ``__init__``, ``fit`` returns self, fitted
attributes end with ``_``, the same history schema, checkpoints and DDP).

The teacher's outputs are cached once when the images are not augmented, and computed on every
(augmented) batch otherwise. Unlabelled ``transfer`` images get the ``kd`` term only. With
``teacher=None`` (and ``alpha=0``) it trains a model on labels alone.

With ``mutual=True`` it trains two readers together by deep mutual learning (Zhang et al. 2018),
with or without a teacher: the engine trains a :class:`~crosskd.tasks.ctc.MutualPair` and the task
splits its output; after ``fit`` the better of the two on the validation lines is ``student_``.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._device import resolve_device
from .._threads import choose_threads, step_flops, torch_threads
from ..engine import (
    Callback,
    Checkpointing,
    EarlyStopping,
    Engine,
    MemoryBatches,
    PlateauRestart,
    ProgressBar,
    ReduceOnPlateau,
)
from ..engine.loop import reinitialise
from ..engine.runtime import (
    auto_epochs,
    check_engine_settings,
    checkpoint_plan,
    plateau_patience,
    read_resume,
    resolve_precision,
    run_identity,
    setup_device,
)
from ..exceptions import ConfigError, DataError, NotFittedError
from ..losses import check_alpha, check_temperature, decoded_targets, greedy_decode
from ..metrics import character_error_rate, sequence_accuracy
from ..tasks.base import forward_batched
from ..tasks.ctc import MODES, CTCTask, MutualPair, _frames_message, frames_needed
from .data import as_images
from .textlines import Alphabet

__all__ = ["CTCDistiller"]

#: A model whose character error rate is still at least this after ``plateau_epochs`` epochs is
#: taken to be on the all-blank CTC plateau (it reads almost nothing: blanks, or one character).
STALL_CER = 0.85
#: ``batch_size="auto"``: lines per step on CPU, and the largest on CUDA.
CPU_BATCH_SIZE = 32
CUDA_MAX_BATCH_SIZE = 256
#: ``augment="auto"``: epochs each candidate augmentation trains before the choice
#: (``augment_epochs="auto"``); the winner continues from its weights.
AUGMENT_SEARCH_EPOCHS = 8
#: the plateau schedule of text lines: at most this many epochs without a lower validation CER
#: before each cut of the learning rate (fewer for large data: ``plateau_patience``), and this
#: many cuts before training stops. The table default (a thirtieth of a 300-epoch cap: 10, with 3
#: cuts) kept a 450-line teacher training for 40 epochs or more after its best one.
PLATEAU_PATIENCE = 5
PLATEAU_CUTS = 2
PLATEAU_FACTOR = 0.3
#: ``plateau_epochs="auto"``: the all-blank check runs after this many optimiser steps (at least
#: :data:`PLATEAU_MIN_EPOCHS` epochs).
PLATEAU_STEPS = 200
PLATEAU_MIN_EPOCHS = 5
#: why a run ended (``stop_reason_``).
STOP_REASONS = ("plateau", "early_stopping", "budget")
#: ``mutual=True`` without ``peer``: the peer is a copy of the student re-initialised with
#: ``seed + PEER_SEED_OFFSET`` (a prime, far from the plateau restarts' ``seed + 7919 * k``).
PEER_SEED_OFFSET = 104729


def _positive(value: Any, name: str, kind: type = int) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise ConfigError(f"{name} must be a positive {kind.__name__}, got {value!r}.")
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}.")
    return value


def auto_line_batch_size(device: torch.device, n_lines: int) -> int:
    """``batch_size="auto"`` for text lines: 32 on CPU; on CUDA the largest power of two in
    [32, 256] that still gives at least 32 steps per epoch."""
    if device.type != "cuda":
        return CPU_BATCH_SIZE
    fit = max(1, n_lines // 32)
    return int(min(CUDA_MAX_BATCH_SIZE, max(CPU_BATCH_SIZE, 1 << (fit.bit_length() - 1))))


class _PlateauAfterBlank(ReduceOnPlateau):
    """:class:`~crosskd.engine.ReduceOnPlateau` that leaves out the epochs a CTC model still
    spends on the all-blank plateau (validation CER >= :data:`STALL_CER`) in the first ``grace``
    epochs of an attempt: a flat CER there means "not started", not "converged", and cutting the
    rate then only keeps the model there longer."""

    def __init__(self, *args: Any, grace: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.grace = grace

    def on_epoch_end(self, state: Any, record: dict[str, float]) -> None:
        value = record.get(self.monitor)
        if state.epoch <= self.grace and value is not None and value >= STALL_CER:
            return
        super().on_epoch_end(state, record)


class _FirstInput:
    """Applies an image augmentation to the first input of a batch (the images)."""

    def __init__(self, augment: Callable[[Any], Any]) -> None:
        self.augment = augment

    def __call__(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (self.augment(inputs[0]), *inputs[1:])

    def rng_state(self) -> Any:
        state = getattr(self.augment, "rng_state", None)
        return state() if callable(state) else None

    def set_rng_state(self, state: Any) -> None:
        setter = getattr(self.augment, "set_rng_state", None)
        if callable(setter):
            setter(state)


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
        mode: ``"frame"``, ``"sequence"`` or ``"both"`` (see :mod:`crosskd.tasks.ctc`).
        blank_threshold: None: plain frame KD; a probability: blank-aware frame KD that weights
            frames where the teacher's blank probability is at least this by ``blank_weight``.
        blank_weight: weight of confidently blank frames in the blank-aware KD.
        resample: None, ``"linear"`` or ``"nearest"``: how teacher frames are matched to the
            student's when their counts differ (None: an error).
        method: the frame term: ``"frame"`` (frame-wise KL, blank-aware with ``blank_threshold``)
            or ``"bag"`` (blank-masked, time-averaged KL: the line as a bag of characters; teacher
            and student may have different frame counts).
        mutual: True trains the student and a peer together by deep mutual learning (Zhang et
            al. 2018): each network's loss is ``alpha * (kd + mutual) + (1 - alpha) * ctc``
            with ``mutual`` its direction of :func:`crosskd.losses.mutual_kd_loss` (``T^2 KL``
            from the other network's detached frame posteriors at ``temperature``) and ``kd``
            the teacher term as above (0 with ``teacher=None``); one engine run trains both
            (:class:`~crosskd.tasks.ctc.MutualPair`). Needs ``alpha > 0``. Validation follows
            the better network's CER (best-weights restore, early stopping, plateau checks);
            after ``fit`` the network with the lower validation CER (ties: the student; without
            an ``eval_set``, on up to 256 training lines) is ``student_`` and the other
            ``peer_``. Gradient clipping applies to the two networks' gradients together.
        peer: the second network of mutual learning (same input, same classes; its frame count
            may differ if ``resample`` is set), or None: a copy of ``student`` re-initialised
            with ``seed + PEER_SEED_OFFSET``. Only with ``mutual=True``.
        epochs: passes over the training lines (per attempt), or ``"auto"``: enough for 10,000
            optimiser steps, 20 to 300 epochs, with the plateau schedule (``epochs_``).
        batch_size: lines per step (per process under ``torchrun``), or ``"auto"``: 32 on CPU; on
            CUDA the largest power of two in [32, 256] giving at least 32 steps per epoch.
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
            it is the last epoch), or ``"auto"``: after :data:`PLATEAU_STEPS` optimiser steps, at
            least 5 epochs (``plateau_epochs_``). Leaving the plateau takes optimiser steps, not
            epochs: a ``tiny`` CRNN on 270 MNIST digit lines (9 steps an epoch) read nothing for
            11 epochs (about 100 steps) and then started to read; a check after 5 epochs (45
            steps) restarted such runs while they were on their way out. While the validation CER
            is still >= 0.85 in the first ``2 * plateau_epochs_`` epochs of an attempt, the plateau
            schedule neither cuts the rate nor stops.
        teacher_mode: ``"cached"`` runs the teacher once over the training lines (frame logits and
            decodings kept); ``"online"`` runs it on every (augmented) batch; ``"auto"`` is online
            only when ``augment`` is given.
        augment: a callable on image batches (e.g. :class:`crosskd.vision.RandomAffine`) applied on
            the device before the student and the teacher see a batch; None; ``"auto"``: chosen on
            the validation lines between no augmentation and
            :func:`~crosskd.vision.textline_augment` (the candidates of
            :func:`~crosskd.vision.augment.textline_augment_candidates`); or a mapping
            ``{name: callable or None}`` of candidates to choose between. Choosing needs
            ``eval_set``. With ``epochs="auto"`` every candidate trains its whole run from the
            same initial weights and the one with the lowest validation CER is kept (ties: the
            lower validation CTC loss of the kept epoch, then the order given); cost: one run per
            candidate. Shorter races chose badly: after 8 epochs, and at the first plateau of the
            rate, the unaugmented teacher led on the MNIST and 8x8 digit lines, while the
            augmented runs ended lower once the rate was cut (benchmarks/textline_defaults.py).
            With a fixed ``epochs`` (or ``augment_epochs`` given) every candidate trains
            ``augment_epochs`` epochs at the peak rate and the best continues from its weights
            for the rest of the budget (successive halving, one round). ``augment_`` names the
            choice and ``augment_search_`` holds every candidate's validation CER.
        augment_epochs: epochs of each candidate before the choice, or ``"auto"`` (the whole run
            with ``epochs="auto"``; else :data:`AUGMENT_SEARCH_EPOCHS`, at most half of the
            fixed ``epochs``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        precision: ``"32"``, ``"bf16-mixed"``, ``"16-mixed"`` or ``"auto"`` (bf16-mixed on a GPU
            that supports it, else 32); the chosen value is ``precision_``.
        seed: seed of the shuffling and of torch's global generator at the start of ``fit``.
        progress: show a progress bar over epochs (True, or the bar's label).
        checkpoint_dir, checkpoint_every: as :class:`crosskd.Distiller`'s: a checkpoint (weights,
            optimizer, schedule, random states including the augmentation's, early-stopping and
            restart state, history) written atomically every ``checkpoint_every`` epochs;
            ``fit(..., resume=True)`` continues exactly.
        distributed: as :class:`crosskd.Distiller`'s: DistributedDataParallel under ``torchrun``.
        warm_start: False: ``fit`` trains a copy of ``student`` (the object passed in is left
            unchanged); True: it trains ``student`` itself.
        threads: torch threads on CPU, or ``"auto"`` (as :class:`crosskd.Distiller`'s); the
            chosen value is ``threads_``.
        schedule: ``"cosine"`` (warm-up, then cosine decay over ``epochs``), ``"plateau"`` (the
            rate is cut by 0.3 after ``early_stopping`` epochs without a lower validation CER, or
            :data:`PLATEAU_PATIENCE` (at most a thirtieth of the budget, at least 3), training
            stops after :data:`PLATEAU_CUTS` cuts and as many epochs again without improvement;
            needs ``eval_set``), or ``"auto"``: plateau when ``epochs="auto"`` and there is an
            ``eval_set``, else cosine (``schedule_``).

    Attributes (after fit):
        student_: the trained student (on ``device_``; with ``mutual=True`` the better of the two
        networks, a plain reader), peer_ (the other network of mutual learning, else None),
        mutual_ (None, or ``{"chosen": "student" or "peer", "cer": {"student", "peer"}, "on":
        "validation" or "training lines", "frames": {"student", "peer"}}``: which network
        ``student_`` is and both CERs the choice was made on), alphabet_, history_ (one dict per
        epoch; with ``mutual=True`` also ``train_mutual``, ``train_peer_ctc``, ... and
        ``val_cer_student`` and ``val_cer_peer``, ``val_cer`` being the better one's),
        best_epoch_ (of the last attempt), restarts_ (all-blank plateau restarts), device_, frames_
        (student frames per line), n_train_, epochs_ (the epoch budget), stop_reason_ (why
        training ended: ``"plateau"``: the validation CER stopped improving after the plateau
        schedule's last cut; ``"early_stopping"``; ``"budget"``: every epoch of ``epochs_`` ran),
        augment_ (``"none"``, ``"given"`` or the chosen candidate's name), augment_search_ (the
        candidates' validation CERs when the augmentation was chosen, else None).
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
        method: str = "frame",
        mutual: bool = False,
        peer: nn.Module | None = None,
        epochs: int = 20,
        batch_size: int | str = 32,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        warmup_epochs: float = 1.0,
        grad_clip: float | None = 5.0,
        early_stopping: int | None = None,
        plateau_restarts: int = 3,
        plateau_epochs: int | str = "auto",
        augment: Callable[[Any], Any] | str | Mapping[str, Any] | None = None,
        augment_epochs: int | str = "auto",
        teacher_mode: str = "auto",
        device: str | torch.device = "auto",
        precision: str = "auto",
        seed: int = 0,
        progress: bool | str = True,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int = 1,
        distributed: bool | str = "auto",
        warm_start: bool = False,
        threads: int | str = "auto",
        schedule: str = "auto",
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
        self.method = method
        self.mutual = mutual
        self.peer = peer
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
        self.augment_epochs = augment_epochs
        self.device = device
        self.precision = precision
        self.seed = seed
        self.progress = progress
        self.teacher_mode = teacher_mode
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.distributed = distributed
        self.warm_start = warm_start
        self.threads = threads
        self.schedule = schedule

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
        self._check_mutual(a)
        if self.teacher is None and a > 0 and not self.mutual:
            raise ConfigError(
                f"alpha={a} needs a teacher; pass alpha=0 to train on labels only, or a teacher."
            )
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {self.mode!r}.")
        if self.method not in ("frame", "bag"):
            raise ConfigError(
                f"method must be 'frame' or 'bag', got {self.method!r}. ('frame' with "
                "blank_threshold set is the blank-aware frame KD.)"
            )
        if self.alphabet is not None and not isinstance(self.alphabet, Alphabet):
            raise ConfigError(
                f"alphabet must be a crosskd.vision.Alphabet or None, got {type(self.alphabet).__name__}."
            )
        if self.epochs != "auto":
            _positive(self.epochs, "epochs")
        self._check_augment()
        if self.schedule not in ("auto", "cosine", "plateau"):
            raise ConfigError(
                f"schedule must be 'auto', 'cosine' or 'plateau', got {self.schedule!r}."
            )
        if self.batch_size != "auto":
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
        if self.plateau_epochs != "auto":
            _positive(self.plateau_epochs, "plateau_epochs")
        if not (isinstance(self.warmup_epochs, (int, float)) and self.warmup_epochs >= 0):
            raise ConfigError(f"warmup_epochs must be >= 0, got {self.warmup_epochs!r}.")
        if self.grad_clip is not None:
            _positive(self.grad_clip, "grad_clip", float)
        check_engine_settings(self)

    def _check_mutual(self, alpha: float) -> None:
        if not isinstance(self.mutual, bool):
            raise ConfigError(
                f"mutual must be True (train the student and a peer by deep mutual learning) or "
                f"False, got {self.mutual!r}."
            )
        if not self.mutual:
            if self.peer is not None:
                raise ConfigError(
                    f"peer is the second network of mutual learning, but mutual=False (got peer="
                    f"{type(self.peer).__name__}). Pass mutual=True with it, or drop peer."
                )
            return
        if alpha == 0:
            raise ConfigError(
                "mutual=True with alpha=0 gives the mutual term no weight: the two networks would "
                "train independently on the labels. Pass alpha > 0 (e.g. 0.5), or mutual=False."
            )
        if self.peer is not None and not isinstance(self.peer, nn.Module):
            raise ConfigError(
                f"peer must be an nn.Module returning (N, frames, classes) logits (e.g. a "
                f"crosskd.vision.CRNN), or None for a re-initialised copy of the student; got "
                f"{type(self.peer).__name__}."
            )
        if self.peer is self.student:
            raise ConfigError(
                "peer is the student object itself; mutual learning needs two networks. Pass "
                "another network (e.g. a second CRNN), or peer=None for a re-initialised copy."
            )

    def _make_peer(self, student: nn.Module) -> nn.Module:
        """The peer of mutual learning: ``peer`` (a copy unless warm_start), or a copy of
        ``student`` with new initial weights (``seed + PEER_SEED_OFFSET``)."""
        if self.peer is not None:
            return self.peer if self.warm_start else copy.deepcopy(self.peer)
        peer = copy.deepcopy(student)
        reinitialise(peer, int(self.seed) + PEER_SEED_OFFSET)
        mine, theirs = student.state_dict(), peer.state_dict()
        if all(torch.equal(mine[k], theirs[k]) for k in mine if mine[k].is_floating_point()):
            raise ConfigError(
                f"mutual=True without peer re-initialises a copy of the student, but no submodule "
                f"of {type(student).__name__} has reset_parameters(), so the copy kept the same "
                "weights and the two networks would be one. Pass peer=<a second network>."
            )
        return peer

    def _searching(self) -> bool:
        """Whether ``augment`` is chosen on validation (``"auto"`` or a mapping of candidates)."""
        return isinstance(self.augment, str | Mapping)

    def _check_augment(self) -> None:
        aug = self.augment
        if isinstance(aug, str) and aug != "auto":
            raise ConfigError(
                f"augment must be a callable on image batches, None, 'auto' (chosen on the "
                f"validation lines) or a mapping {{name: callable or None}} of candidates; got "
                f"{aug!r}."
            )
        if isinstance(aug, Mapping):
            bad = [
                k
                for k, v in aug.items()
                if not isinstance(k, str) or not (v is None or callable(v))
            ]
            if not aug or bad:
                raise ConfigError(
                    f"augment as a mapping holds the candidates to choose between, {{name: callable "
                    f"or None}} with at least one entry; got {dict(aug)!r}."
                )
        elif aug is not None and not isinstance(aug, str) and not callable(aug):
            raise ConfigError(
                f"augment must be a callable on image batches, None, 'auto' or a mapping of "
                f"candidates; got {type(aug).__name__}."
            )
        if self.augment_epochs != "auto":
            _positive(self.augment_epochs, "augment_epochs")

    def _candidates(self) -> dict[str, Any]:
        from .augment import textline_augment_candidates

        if self.augment == "auto":
            return textline_augment_candidates(int(self.seed))
        return dict(self.augment)  # type: ignore[arg-type]

    def _search_epochs(self) -> int:
        if self.augment_epochs != "auto":
            r = int(self.augment_epochs)
        else:
            r = AUGMENT_SEARCH_EPOCHS
            if self.epochs != "auto":
                r = min(r, max(1, int(self.epochs) // 2))
        return r if self.epochs == "auto" else min(r, int(self.epochs))

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
        resume: bool | str | Path | None = None,
    ) -> CTCDistiller:
        """Train the student.

        Args:
            images: ``(N, C, H, W)`` text-line images (uint8 or float in [0, 1]; see
                :func:`crosskd.vision.load_textlines`).
            labels: the N label strings.
            eval_set: ``(images, labels)`` for validation: the loss terms, CER and sequence
                accuracy per epoch, early stopping and best-weights restore.
            transfer: optional ``(M, C, H, W)`` unlabelled images; they get the KD term only (so
                they need a teacher and ``alpha > 0``).
            resume: continue an interrupted run from a checkpoint (as :meth:`Distiller.fit`).

        Returns:
            self, with ``student_``, ``alphabet_``, ``history_``, ``best_epoch_``, ``restarts_``,
            ``frames_``, ``n_train_``, ``fit_seconds_`` and the resolved ``batch_size_``,
            ``precision_``, ``device_``.
        """
        started = time.perf_counter()
        self._check_settings()
        if self._searching():
            return self._fit_search(images, labels, eval_set, transfer, resume, started)
        x = self._images(images, "images")
        y = self._labels(labels, len(x), "labels")
        self.alphabet_ = self.alphabet if self.alphabet is not None else Alphabet.from_labels(y)
        targets, lengths = self._encode(y)
        a = float(self.alpha)
        if transfer is not None:
            if (self.teacher is None and not self.mutual) or a == 0:
                raise ConfigError(
                    "transfer images need a teacher (or mutual=True) and alpha > 0 (they have no "
                    "labels)."
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
        validation = None
        if eval_set is not None:
            if not (isinstance(eval_set, tuple | list) and len(eval_set) == 2):
                raise ConfigError("eval_set must be a pair (images, labels).")
            xv = self._images(eval_set[0], "eval_set images")
            validation = (xv, self._labels(eval_set[1], len(xv), "eval_set labels"))
        resume_state, resume_path = read_resume(resume, self.checkpoint_dir, "CTCDistiller")

        device, self.dist_ = setup_device(self.device, self.distributed)
        self.device_ = device
        self.precision_ = resolve_precision(self.precision, device)
        world = self.dist_.world_size if self.dist_ is not None else 1
        self.batch_size_ = (
            auto_line_batch_size(device, max(1, len(x) // world))
            if self.batch_size == "auto"
            else int(self.batch_size)
        )
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        student = (self.student if self.warm_start else copy.deepcopy(self.student)).to(device)
        teacher = None if self.teacher is None or a == 0 else self.teacher.to(device).eval()
        self.frames_ = self._check_student(student, x, y, device)
        peer = peer_frames = None
        if self.mutual:
            peer = self._make_peer(student).to(device)
            peer_frames = self._check_student(peer, x, y, device, name="peer")
            if peer_frames != self.frames_ and self.resample is None:
                raise ConfigError(_frames_message(self.frames_, peer_frames))
        self.n_train_ = len(y)
        self.threads_ = torch.get_num_threads()
        if device.type == "cpu":
            flops = None
            if self.threads == "auto":
                flops = step_flops(student, (x[:2].float().to(device),), self.batch_size_)
                if peer is not None:
                    flops += step_flops(peer, (x[:2].float().to(device),), self.batch_size_)
                if teacher is not None:
                    flops += step_flops(teacher, (x[:2].float().to(device),), self.batch_size_) / 3
            self.threads_ = choose_threads(self.threads, step_flops=flops, processes=world)
        model = student if peer is None else MutualPair(student, peer)
        with torch_threads(self.threads_) if device.type == "cpu" else nullcontext():
            return self._fit_engine(
                model, teacher, x, y, targets, lengths, labelled, validation, device, generator,
                resume_state, resume_path, started, peer_frames=peer_frames,
            )  # fmt: skip

    def _derived(self, **changes: Any) -> CTCDistiller:
        """A trainer with this one's settings, some changed (for the augmentation search)."""
        params = {name: getattr(self, name) for name in self._PARAMS}
        params.update(changes)
        teacher, student = params.pop("teacher"), params.pop("student")
        return type(self)(teacher, student, **params)

    def _fit_search(
        self,
        images: Any,
        labels: Sequence[str],
        eval_set: tuple[Any, Sequence[str]] | None,
        transfer: Any,
        resume: Any,
        started: float,
    ) -> CTCDistiller:
        """``fit`` with the augmentation chosen on the validation lines (see ``augment``)."""
        if eval_set is None:
            raise ConfigError(
                "augment='auto' (or a mapping of candidates) chooses the augmentation on the "
                "validation lines, but no eval_set was given. Pass eval_set=(images, labels), or "
                "augment=None or a callable."
            )
        if resume:
            raise ConfigError(
                "resume is not available while the augmentation is being chosen (augment='auto' "
                "or a mapping). Pass the chosen augmentation (augment_ of the first run) to resume."
            )
        candidates = self._candidates()
        # epochs="auto": every candidate trains its whole run (a race to the end); else each
        # trains augment_epochs epochs at the peak rate and the winner continues
        full = self.epochs == "auto" and self.augment_epochs == "auto"
        r = self._search_epochs()
        progress = self.progress
        label = progress if isinstance(progress, str) else "ctc"
        probes: dict[str, CTCDistiller] = {}
        scores: dict[str, dict[str, Any]] = {}
        for name, augment in candidates.items():
            probe = self._derived(
                augment=augment,
                epochs="auto" if full else r,
                schedule="plateau",  # fixed r: the peak rate, the winner continues from here
                early_stopping=self.early_stopping if full else r,  # fixed r: no cut within
                checkpoint_dir=None,
                progress=f"{label} (augment {name})" if progress else False,
            ).fit(images, labels, eval_set=eval_set, transfer=transfer)
            last = _last_attempt(probe.history_)
            curve = [float(h["val_cer"]) for h in last]
            kept = next((h for h in last if h["epoch"] == probe.best_epoch_), last[-1])
            scores[name] = {
                "val_cer": min(curve),
                "val_loss": float(kept.get("val_loss", float("nan"))),
                "val_cer_last": curve[-1],
                "epochs": len(probe.history_),
                "restarts": probe.restarts_,
            }
            probes[name] = probe
        # the lowest best CER; ties: the lower validation CTC loss of the kept epoch (a race to
        # the end) or the lower last-epoch CER (fixed r), then the order given
        order = list(candidates)

        def rank(k: str) -> tuple[float, float, int]:
            second = scores[k]["val_loss"] if full else scores[k]["val_cer_last"]
            return (
                scores[k]["val_cer"],
                second if math.isfinite(second) else math.inf,
                order.index(k),
            )

        chosen = min(order, key=rank)
        probe = probes[chosen]
        restarts = sum(p.restarts_ for p in probes.values())
        spent = len(_last_attempt(probe.history_))
        fitted: CTCDistiller = probe
        last_run = probe  # the run whose end ended training (its stop reason)
        if not full and int(self.epochs) > r:
            rest = self._derived(
                student=probe.student_,
                peer=probe.peer_ if self.mutual else None,
                warm_start=False,
                augment=candidates[chosen],
                epochs=int(self.epochs) - r,
                warmup_epochs=0.0,
                progress=f"{label} (augment {chosen})" if progress else False,
            )
            rest._spent_epochs = spent
            rest.fit(images, labels, eval_set=eval_set, transfer=transfer)
            last_run = rest
            best_rest = min(float(h["val_cer"]) for h in _last_attempt(rest.history_))
            restarts += rest.restarts_
            history = [
                *probe.history_,
                *({**h, "epoch": h["epoch"] + spent} for h in rest.history_),
            ]
            if best_rest <= scores[chosen]["val_cer"] or rest.restarts_:
                fitted = rest
                best_epoch = rest.best_epoch_ + (0 if rest.restarts_ else spent)
            else:  # the continuation never beat the candidate's best epoch: keep that one
                best_epoch = probe.best_epoch_
            epochs_budget = spent + rest.epochs_
        else:
            history, best_epoch, epochs_budget = probe.history_, probe.best_epoch_, probe.epochs_
        for name, value in vars(fitted).items():
            if name.endswith("_") and not name.startswith("_"):
                setattr(self, name, value)
        self._task = fitted._task
        self.history_ = history
        self.best_epoch_ = best_epoch
        self.epochs_ = epochs_budget
        self.restarts_ = restarts
        self.stop_reason_ = last_run.stop_reason_
        self.augment_ = chosen
        self.augment_search_ = {
            "epochs": "whole runs" if full else r,
            "chosen": chosen,
            "candidates": scores,
        }
        self.augment_choice_ = candidates[chosen]
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _fit_engine(
        self,
        student: nn.Module,
        teacher: nn.Module | None,
        x: torch.Tensor,
        y: list[str],
        targets: torch.Tensor,
        lengths: torch.Tensor,
        labelled: torch.Tensor,
        validation: tuple[torch.Tensor, list[str]] | None,
        device: torch.device,
        generator: torch.Generator,
        resume_state: Any,
        resume_path: Path | None,
        started: float,
        peer_frames: int | None = None,
    ) -> CTCDistiller:
        """The rest of ``fit``: the task, cached teacher targets, callbacks and the engine.
        ``student`` is a :class:`MutualPair` when ``peer_frames`` is given (mutual learning)."""
        a = float(self.alpha)
        eval_set = validation
        if validation is not None:
            xv, yv = validation
        online = teacher is not None and (
            self.teacher_mode == "online"
            or (self.teacher_mode == "auto" and self.augment is not None)
        )
        if teacher is not None and self.augment is not None and not online:
            raise ConfigError(
                "augment changes every batch, so cached teacher outputs would describe other "
                "images. Use teacher_mode='online' (or 'auto'), or drop augment."
            )
        task = CTCTask(
            alphabet=self.alphabet_,
            temperature=self.temperature,
            alpha=a,
            mode=self.mode,
            blank_threshold=self.blank_threshold,
            blank_weight=self.blank_weight,
            resample=self.resample,
            teacher=teacher,
            frames=self.frames_,
            precision=self.precision_,
            chunk_size=max(64, self.batch_size_),
            method=self.method,
            peer_frames=peer_frames,
        )
        x, targets, lengths, labelled = (t.to(device) for t in (x, targets, lengths, labelled))
        cached = None
        if teacher is not None and not online:
            cached = task.cache_targets(task.teacher_logits(x, device))
        val = None
        if eval_set is not None:
            xv = xv.to(device)
            v_targets, v_lengths = self._encode(yv)
            val = {
                "images": xv,
                "labels": yv,
                "targets": (
                    v_targets.to(device),
                    v_lengths.to(device),
                    torch.ones(len(yv), dtype=torch.bool, device=device),
                ),
                "teacher": (
                    None if teacher is None else task.cache_targets(task.teacher_logits(xv, device))
                ),
            }
        # lines the all-blank check reads: the validation lines, else up to 256 training lines
        if eval_set is not None:
            probe_x, probe_y = xv, yv
        else:
            pick = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.seed))[:256]
            probe_x, probe_y = x[pick.to(device)], [y[i] for i in pick.tolist()]

        def stalled(model: nn.Module) -> tuple[bool, float]:
            # a mutual pair is stalled when the better of its two networks is
            cer = min(
                character_error_rate(r, probe_y) for r in task.readings(model, probe_x, device)
            )
            return cer >= STALL_CER, cer

        main = self.dist_ is None or self.dist_.is_main
        stopper = EarlyStopping(
            "val_cer",
            higher_is_better=False,
            patience=self.early_stopping if val is not None else None,
            keep_latest_tie=True,
        )
        world = self.dist_.world_size if self.dist_ is not None else 1
        steps = math.ceil(max(1, len(x) // world) / self.batch_size_)
        self.epochs_ = (
            max(1, auto_epochs(steps) - self._spent_epochs)
            if self.epochs == "auto"
            else int(self.epochs)
        )
        self.schedule_ = self.schedule
        if self.schedule == "auto":
            self.schedule_ = "plateau" if self.epochs == "auto" and val is not None else "cosine"
        if self.schedule_ == "plateau":
            stopper.patience = None  # the plateau callback stops the run
        self.plateau_epochs_ = (
            max(PLATEAU_MIN_EPOCHS, math.ceil(PLATEAU_STEPS / steps))
            if self.plateau_epochs == "auto"
            else int(self.plateau_epochs)
        )
        restarter = PlateauRestart(
            stalled,
            int(self.plateau_restarts),
            self.plateau_epochs_,
            self.epochs_,
            say=(lambda m: print(f"ctc: {m}", file=sys.stderr)) if self.progress and main else None,
        )
        callbacks: list[Callback] = [stopper, restarter]
        if self.schedule_ == "plateau" and val is not None:
            patience = self.early_stopping or min(PLATEAU_PATIENCE, plateau_patience(self.epochs_))
            callbacks.append(
                _PlateauAfterBlank(
                    "val_cer", False, patience, factor=PLATEAU_FACTOR,
                    reductions=self._plateau_cuts,
                    grace=2 * self.plateau_epochs_,
                )
            )  # fmt: skip

        def identity() -> dict[str, Any]:
            from ..checkpoint import tensor_fingerprint

            settings = {name: getattr(self, name) for name in self._RUN_SETTINGS}
            settings.update(batch_size=self.batch_size_, precision=self.precision_)
            if self.mutual:  # (absent when off: checkpoints of single runs resume as before)
                settings.update(mutual=True, peer="given" if self.peer is not None else "copy")
            return run_identity(
                settings,
                student,
                self.dist_,
                data=tensor_fingerprint(x),
                targets=tensor_fingerprint(targets, lengths, labelled),
                teacher="online" if online else tensor_fingerprint(*(cached or (None,))),
                validation=None if val is None else tensor_fingerprint(xv, *val["targets"]),
                alphabet=self.alphabet_.to_dict(),
            )

        checkpoint = checkpoint_plan(self.checkpoint_dir, resume_state, resume_path, identity)
        if checkpoint is not None:
            callbacks.append(Checkpointing(*checkpoint, every=int(self.checkpoint_every)))
            self.checkpoint_path_ = checkpoint[0]
        if self.progress and main:
            desc = self.progress if isinstance(self.progress, str) else "ctc"
            callbacks.append(ProgressBar(desc, "val_cer" if val is not None else None))
        augment = None
        if self.augment is not None:
            if hasattr(self.augment, "reset"):
                self.augment.reset()
            augment = _FirstInput(self.augment)
        warmup_epochs = float(self.warmup_epochs)
        engine = Engine(
            epochs=self.epochs_,
            lr=float(self.lr),
            weight_decay=float(self.weight_decay),
            warmup=lambda steps: round(warmup_epochs * steps),
            warmup_start=0.1,
            grad_clip=None if self.grad_clip is None else float(self.grad_clip),
            precision=self.precision_,
            schedule=self.schedule_,
            device=device,
            ctx=self.dist_,
            seed=self.seed,
            augment=augment,
            callbacks=callbacks,
        )
        source = MemoryBatches(
            (x,),
            (targets, lengths, labelled),
            cached,
            self.batch_size_,
            self.dist_,
            any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in student.modules()),
        )
        state = engine.fit(
            student, task, source, val=val, online=online, generator=generator, resume=resume_state
        )
        self.history_ = state.history
        self.best_epoch_ = stopper.best_epoch if stopper.best_state is not None else state.epoch
        self.restarts_ = restarter.done
        ran = len(_last_attempt(state.history))
        if ran >= self.epochs_:
            self.stop_reason_ = "budget"
        else:
            self.stop_reason_ = "plateau" if self.schedule_ == "plateau" else "early_stopping"
        self.augment_ = "none" if self.augment is None else "given"
        self.augment_search_ = None
        self.augment_choice_ = self.augment
        self.peer_ = self.mutual_ = None
        if isinstance(student, MutualPair):
            lines = (xv, yv) if val is not None else (probe_x, probe_y)
            self._choose(student, task, lines, "training lines" if val is None else "validation")
        else:
            self.student_ = student.eval()
        self._task = task
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _choose(
        self, pair: MutualPair, task: CTCTask, lines: tuple[torch.Tensor, list[str]], on: str
    ) -> None:
        """``student_``: the network of ``pair`` with the lower CER on ``lines`` (ties: the
        student); ``peer_``: the other; ``mutual_``: the choice and both CERs."""
        nets = (pair.student.eval(), pair.peer.eval())
        images, labels = lines
        cers = [character_error_rate(task.read(net, images, self.device_), labels) for net in nets]
        frames = (task.frames, int(task.peer_frames))  # type: ignore[arg-type]
        chosen = 0 if cers[0] <= cers[1] else 1
        self.student_, self.peer_ = nets[chosen], nets[1 - chosen]
        self.frames_ = frames[chosen]
        self.mutual_ = {
            "chosen": ("student", "peer")[chosen],
            "cer": {"student": cers[0], "peer": cers[1]},
            "on": on,
            "frames": {"student": frames[0], "peer": frames[1]},
        }

    #: ``__init__``'s arguments, in order.
    _PARAMS = (
        "teacher", "student", "alphabet", "temperature", "alpha", "mode", "blank_threshold",
        "blank_weight", "resample", "method", "mutual", "peer", "epochs", "batch_size", "lr", "weight_decay",
        "warmup_epochs", "grad_clip", "early_stopping", "plateau_restarts", "plateau_epochs",
        "augment", "augment_epochs", "teacher_mode", "device", "precision", "seed", "progress",
        "checkpoint_dir", "checkpoint_every", "distributed", "warm_start", "threads", "schedule",
    )  # fmt: skip
    #: epochs already trained by a continued run (the augmentation search); the cap counts them.
    _spent_epochs = 0
    #: cuts of the plateau schedule before it stops (0 for a candidate of the augmentation search).
    _plateau_cuts = PLATEAU_CUTS

    #: settings that change the training trajectory: a checkpoint resumes only with equal values.
    _RUN_SETTINGS = (
        "temperature",
        "alpha",
        "mode",
        "blank_threshold",
        "blank_weight",
        "resample",
        "method",
        "epochs",
        "lr",
        "weight_decay",
        "warmup_epochs",
        "grad_clip",
        "early_stopping",
        "plateau_restarts",
        "plateau_epochs",
        "teacher_mode",
        "augment",
        "seed",
        "schedule",
    )

    def _check_student(
        self,
        student: nn.Module,
        x: torch.Tensor,
        y: list[str],
        device: torch.device,
        name: str = "student",
    ) -> int:
        """The frames per line of ``student`` (named ``name`` in errors: the student or the
        mutual-learning peer), after checking its output shape and the labels' length."""
        out = student.num_classes if hasattr(student, "num_classes") else None
        if out is not None and out != self.alphabet_.num_classes:
            raise ConfigError(
                f"The {name} outputs {out} classes but the alphabet needs "
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
                f"The {name} returns {tuple(probe.shape)} for one line; expected (1, frames, "
                f"{self.alphabet_.num_classes}). Use a CRNN with num_classes=alphabet.num_classes."
            )
        frames = int(probe.shape[1])
        need = max((frames_needed(s) for s in y), default=0)
        if need > frames:
            raise DataError(
                f"The longest label needs {need} CTC frames (one per character and one between "
                f"repeats) but the {name} gives {frames} frames per line. Use wider images, "
                "or a backbone with less horizontal reduction (CRNN max_reduction)."
            )
        return frames

    # --------------------------------------------------------------------------- prediction

    def _check_fitted(self) -> None:
        if not hasattr(self, "student_"):
            raise NotFittedError(
                "This CTCDistiller is not fitted yet. Call fit(images, labels) first, or "
                "CTCDistiller.load(path)."
            )

    def _read(self, x: torch.Tensor) -> list[str]:
        """The student's greedy readings of ``x`` (float32 unless bf16 / fp16 was trained with)."""
        if len(x) == 0:
            return []
        precision = getattr(self, "precision_", None) or (
            "32" if self.precision == "auto" else self.precision
        )
        logits = forward_batched(self.student_, (x,), self.device_, precision, 64)
        return [self.alphabet_.decode(s) for s in greedy_decode(logits)]

    def predict(self, images: Any) -> list[str]:
        """The student's greedy CTC readings of ``(N, C, H, W)`` images, one string per line."""
        self._check_fitted()
        return self._read(self._images(images, "images"))

    def evaluate(self, images: Any, labels: Sequence[str]) -> dict[str, float]:
        """``{"sequence_accuracy", "cer"}`` of the student on labelled lines."""
        self._check_fitted()
        x = self._images(images, "images")
        predicted = self._read(x)
        y = self._labels(labels, len(x), "labels")
        return {
            "sequence_accuracy": sequence_accuracy(predicted, y),
            "cer": character_error_rate(predicted, y),
        }

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
            "method": self.method,
            "frames": self.frames_,
            "best_epoch": self.best_epoch_,
            "history": self.history_,
        }
        if getattr(self, "mutual_", None) is not None:  # (absent when off, as before)
            metadata["mutual"] = self.mutual_
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
        self.precision_ = "32"
        self.dist_ = None
        self.device_ = resolve_device(device)
        self.student_ = student.to(self.device_).eval()
        self.history_ = list(meta.get("history", []))
        self.best_epoch_ = meta.get("best_epoch")
        self.frames_ = meta.get("frames")
        return self


def _last_attempt(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The epochs of the last attempt (after the last all-blank plateau restart)."""
    if not history or "attempt" not in history[-1]:
        return list(history)
    last = history[-1]["attempt"]
    return [h for h in history if h.get("attempt") == last]
