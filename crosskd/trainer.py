"""The one student trainer: :class:`Distiller`.

A :class:`Distiller` trains a student network on a teacher's temperature-softened class
probabilities and, optionally, on labels. Whatever the teacher (LightGBM, scikit-learn, torch,
precomputed), it sees logits only. In-memory data is encoded once, moved to the device once and
sliced per batch: no per-row DataLoader.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import metrics as _metrics
from ._device import check_precision, resolve_device
from ._threads import choose_threads, step_flops, torch_threads
from .engine import (
    Callback,
    Checkpointing,
    EarlyStopping,
    Engine,
    MemoryBatches,
    ProgressBar,
    ReduceOnPlateau,
    StreamBatches,
)
from .engine.runtime import (
    auto_epochs,
    auto_patience,
    check_engine_settings,
    checkpoint_plan,
    plateau_patience,
    read_resume,
    resolve_precision,
    run_identity,
    setup_device,
)
from .exceptions import ConfigError, DataError, NotFittedError, TeacherError
from .hints import FeatureHint, HintSession, as_feature_hint, find_module
from .losses import (
    IGNORE_LABEL,
    check_alpha,
    check_kd_method,
    check_temperature,
)
from .tasks.base import forward_batched
from .tasks.classification import ClassificationTask
from .teachers.base import Teacher, TeacherInfo, num_rows

if TYPE_CHECKING:
    from .datasets.parquet import ParquetStream
    from .distributed import DistContext

__all__ = ["Distiller", "auto_batch_size"]

Inputs = tuple[torch.Tensor, ...]
#: ``batch_size="auto"``: rows per step on CPU (the measured default, unchanged), and the bounds of
#: the CUDA choice (a power of two giving at least ``_AUTO_MIN_STEPS`` steps per epoch).
CPU_BATCH_SIZE = 512
CPU_MIN_BATCH_SIZE = 16
_AUTO_MIN_CPU_STEPS = 32
CUDA_MAX_BATCH_SIZE = 16384
_AUTO_MIN_STEPS = 64


class Distiller:
    """Distil a teacher into a student (scikit-learn style: settings here, fitted state in ``*_``).

    Args:
        teacher: any :class:`crosskd.teachers.Teacher`; None trains the student on labels only
            (``alpha`` must then be 0): the baseline "student alone", or a teacher of your own.
        student: a torch module returning ``(batch, num_classes)`` logits. A
            :class:`crosskd.tabular.TabularStudent` is built and its encoder fitted on the training
            data; any other module gets ``float32`` tensors of the rows as its one input.
        temperature: T > 0 of the soft term (applied to teacher and student logits alike), or
            ``"auto"``: chosen on the validation rows among 1, 2, 4, 8 (:mod:`crosskd.search`:
            short runs of every candidate cost about one full run; the choice and every score are
            in ``search_``, the value used in ``temperature_``).
        alpha: weight of the distillation term in [0, 1] (``1 - alpha`` weighs the label term), or
            ``"auto"``: chosen on validation among 0.5, 0.9, 1.0 (``alpha_``).
        epochs: maximum number of passes over the training rows, or ``"auto"``: enough for 3,000
            optimiser steps, between 20 and 300 epochs (:func:`auto_epochs`; the cosine schedule
            spans that budget, and early stopping usually ends the run before). The chosen value
            is ``epochs_``.
        batch_size: rows per optimisation step (per process under ``torchrun``), or ``"auto"``:
            on CPU the largest power of two in [16, 512] giving at least 32 steps per epoch; on
            CUDA a power of two between 512 and 16384 that leaves at least 64 steps per epoch
            (small batches leave a GPU idle), with ``lr`` then scaled by
            ``sqrt(batch_size / 512)``. The chosen values are ``batch_size_`` and ``lr_``.
        lr: AdamW learning rate (cosine-decayed to 0 over the run, after a short warm-up); with
            ``batch_size="auto"`` this is the rate at 512 rows per step.
        weight_decay: AdamW weight decay.
        class_weight: weights of the label term: None, ``"balanced"`` (inverse class frequency in
            the labelled training rows), or a mapping label -> weight, or a sequence in class order.
        focal_gamma: focal-loss gamma for the label term (0: cross-entropy).
        teacher_mode: ``"cached"`` computes teacher logits once before training (GBDT, scikit-learn,
            precomputed, or any teacher on data that is not augmented); ``"online"`` runs a torch
            teacher (:class:`~crosskd.teachers.ModuleTeacher`) on every batch, on the same device;
            ``"auto"`` is online only when ``augment`` is given.
        augment: optional callable ``inputs -> inputs`` applied to each training batch (a tuple of
            tensors on the device) before both student and online teacher see it.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        precision: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"`` (autocast; losses stay float32), or
            ``"auto"``: ``"bf16-mixed"`` on a CUDA device that supports bfloat16, else ``"32"``.
            The chosen value is ``precision_``.
        early_stopping: stop after this many epochs without improvement of ``val_metric`` on the
            validation rows, and restore the best weights; None trains all epochs; ``"auto"``:
            a tenth of the epoch budget, at least 5 (``early_stopping_``).
        val_metric: ``"auto"`` (average precision for two classes, log loss otherwise), ``"loss"``
            (validation distillation loss), or any key of :func:`crosskd.metrics.classification_metrics`.
        validation_fraction: when ``fit`` gets no ``eval_set``, hold out this share of the labelled
            rows (seeded, stratified) for validation; None uses no validation.
        chunk_size: rows per teacher call when caching logits, and per step when predicting.
        seed: seeds the global torch generator at the start of ``fit`` (so the weights of a
            student built there, e.g. a :class:`~crosskd.tabular.TabularStudent`), shuffling and
            the validation split. A module passed in keeps the weights it was built with: seed
            torch (``torch.manual_seed``) before building it for a run that repeats exactly
            (recent torch versions seed their generator randomly at start-up).
        progress: show a progress bar over epochs (True, or the bar's label, e.g. ``"student"``).
        checkpoint_dir: folder where a training checkpoint (``checkpoint.safetensors``: weights,
            optimizer, scheduler, random states, early-stopping state, history; no pickle) is
            written atomically every ``checkpoint_every`` epochs and after the last one; None
            writes none. ``fit(..., resume=True)`` continues from it.
        checkpoint_every: epochs between two checkpoints.
        distributed: ``"auto"`` trains with DistributedDataParallel when launched by ``torchrun``
            with more than one process (NCCL on GPUs, gloo on CPU): every rank takes a disjoint
            shard of each epoch's permutation, gradients are averaged, validation runs on rank 0
            and its result is broadcast, and only rank 0 writes files. ``True`` requires such a
            launch; ``False`` trains in this process only.
        warm_start: False (default): ``fit`` trains a copy of ``student`` and leaves the object
            passed in unchanged, so every ``fit`` starts from the same weights (scikit-learn's
            rule). True: ``fit`` trains ``student`` itself, continuing from its current weights.
        threads: torch threads on CPU while fitting and predicting, or ``"auto"``: no more than
            the idle cores, and one when a training step is small (see :mod:`crosskd._threads`;
            measured up to 5x faster than torch's default on a busy 2-core machine). The chosen
            value is ``threads_``.
        schedule: the learning rate after warm-up: ``"cosine"`` (decays to 0 over ``epochs``),
            ``"plateau"`` (constant, cut by 0.3 when the validation metric stalls for
            ``early_stopping`` epochs, stopping after 3 cuts; with ``early_stopping="auto"`` the
            patience is a thirtieth of the epoch budget, at least 3), or ``"auto"``: plateau when
            ``epochs="auto"`` and there is validation data, else cosine (``schedule_``).
        method: the distillation term: ``"hinton"`` (the default), ``"dkd"``, ``"dist"`` or
            ``"ranking"`` (pairwise order of the teacher's scores, for two classes), see
            :func:`crosskd.losses.logit_kd_loss` and ``docs/methods.md``; or ``"auto"``: Hinton
            or DIST, chosen on the validation rows with the temperature / alpha search
            (:mod:`crosskd.search`; the method used is ``method_``).
        method_params: the method's own settings, e.g. ``{"nontarget_weight": 8.0}`` for DKD.
        standardize: z-score teacher and student logits before softening (logit
            standardisation, Sun et al. 2024), for any method.
        hint: a feature hint (FitNets, Romero et al. 2015): a :class:`crosskd.hints.FeatureHint`
            ``(student_layer, teacher_layer, weight=1.0)`` or a mapping with those keys. The
            student layer's output, through a learned adapter (1x1 convolution for feature maps,
            linear for vectors), is matched to the teacher layer's by mean squared error: the loss
            becomes ``alpha * kd + (1 - alpha) * ce + weight * hint`` (history keys
            ``train_hint`` / ``val_hint``). Needs a torch teacher (ModuleTeacher, TimmTeacher),
            run online on every batch (``teacher_mode`` ``"auto"`` or ``"online"``). The adapter
            is trained with the student and dropped after ``fit``; ``hint_`` is the setting used,
            ``hint_shapes_`` the two layers' per-row feature shapes. See ``docs/methods.md``.
        class_names: names of the classes, in the order of ``classes_``, when the labels given to
            ``fit`` are codes (for example ``("legit", "fraud")`` for codes 0 and 1): saved bundles
            then hold the names, and a loaded student predicts them.

    Under ``torchrun``, ``batch_size`` is per process: N processes with batch B train like one
    process with batch N * B.
    """

    def __init__(
        self,
        teacher: Teacher | None,
        student: nn.Module,
        *,
        temperature: float = 2.0,
        alpha: float = 0.5,
        epochs: int | str = "auto",
        batch_size: int | str = "auto",
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        class_weight: str | Mapping[Any, float] | Sequence[float] | None = None,
        focal_gamma: float = 0.0,
        teacher_mode: str = "auto",
        augment: Callable[[Inputs], Inputs] | None = None,
        device: str | torch.device = "auto",
        precision: str = "auto",
        early_stopping: int | str | None = "auto",
        val_metric: str = "auto",
        validation_fraction: float | None = None,
        chunk_size: int = 65536,
        seed: int = 0,
        progress: bool = True,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int = 1,
        distributed: bool | str = "auto",
        warm_start: bool = False,
        threads: int | str = "auto",
        schedule: str = "auto",
        method: str = "hinton",
        method_params: Mapping[str, Any] | None = None,
        standardize: bool = False,
        hint: FeatureHint | Mapping[str, Any] | None = None,
        class_names: Sequence[Any] | None = None,
    ) -> None:
        self.teacher = teacher
        self.student = student
        self.temperature = temperature
        self.alpha = alpha
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.class_weight = class_weight
        self.focal_gamma = focal_gamma
        self.teacher_mode = teacher_mode
        self.augment = augment
        self.device = device
        self.precision = precision
        self.early_stopping = early_stopping
        self.val_metric = val_metric
        self.validation_fraction = validation_fraction
        self.chunk_size = chunk_size
        self.seed = seed
        self.progress = progress
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.distributed = distributed
        self.warm_start = warm_start
        self.threads = threads
        self.schedule = schedule
        self.method = method
        self.method_params = method_params
        self.standardize = standardize
        self.hint = hint
        self.class_names = class_names

    # ------------------------------------------------------------------ checks

    def _check_settings(self) -> None:
        if self.temperature != "auto":
            check_temperature(self.temperature)
        alpha = 0.5 if self.alpha == "auto" else check_alpha(self.alpha)
        if self.method == "auto" and self.method_params:
            raise ConfigError(
                f"method='auto' chooses between methods, so method_params "
                f"{dict(self.method_params)} cannot apply to it. Name the method the settings "
                "belong to (e.g. method='dkd'), or leave method_params out."
            )
        check_engine_settings(self)
        if self.teacher is None and alpha > 0:
            raise ConfigError(
                f"alpha={self.alpha} weighs a distillation term, but teacher is None. Pass a "
                "teacher, or alpha=0 to train the student on labels only."
            )
        if self.teacher is not None and not isinstance(self.teacher, Teacher):
            raise ConfigError(
                f"teacher must be a crosskd Teacher (LightGBMTeacher, SklearnTeacher, ModuleTeacher, "
                f"...), got {type(self.teacher).__name__}. Wrap your model in the adapter for its "
                "library, e.g. LightGBMTeacher(booster)."
            )
        if not isinstance(self.student, nn.Module):
            raise ConfigError(
                f"student must be a torch.nn.Module, got {type(self.student).__name__}. "
                "For tables use crosskd.TabularStudent(hidden=(32, 16))."
            )
        for name in ("epochs", "batch_size", "chunk_size"):
            value = getattr(self, name)
            if name != "chunk_size" and value == "auto":
                continue
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ConfigError(
                    f"{name} must be a positive integer"
                    + (" or 'auto'" if name != "chunk_size" else "")
                    + f", got {value!r}."
                )
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}.")
        if not (
            isinstance(self.weight_decay, (int, float))
            and self.weight_decay >= 0
            and math.isfinite(self.weight_decay)
        ):
            raise ConfigError(
                f"weight_decay must be a number >= 0, got {self.weight_decay!r}; 0 disables it."
            )
        if self.early_stopping not in (None, "auto") and (
            not isinstance(self.early_stopping, (int, np.integer))
            or isinstance(self.early_stopping, bool)
            or self.early_stopping < 1
        ):
            raise ConfigError(
                "early_stopping must be None, 'auto' or a positive number of epochs, got "
                f"{self.early_stopping!r}."
            )
        if self.validation_fraction is not None and not (0.0 < self.validation_fraction < 1.0):
            raise ConfigError(
                f"validation_fraction must be in (0, 1) or None, got {self.validation_fraction!r}."
            )
        self._check_hint()

    def _check_hint(self) -> FeatureHint | None:
        """The hint setting as a :class:`FeatureHint`, checked against the teacher and student.

        The student's layer is checked here when the student is built; a
        :class:`~crosskd.tabular.TabularStudent` gets its layers in ``fit`` and is checked then,
        before training.
        """
        hint = as_feature_hint(self.hint)
        if hint is None:
            return None
        if self.teacher is None:
            raise ConfigError(
                f"hint={hint!r} matches the student's features to a teacher's, but teacher is "
                "None. Pass a torch teacher (ModuleTeacher, TimmTeacher), or hint=None."
            )
        module = getattr(self.teacher, "module", None)
        if not isinstance(module, nn.Module) or not hasattr(self.teacher, "logits_on_device"):
            raise ConfigError(
                "Feature hints need an online torch teacher (ModuleTeacher, TimmTeacher) whose "
                f"layers are read on every batch; got {type(self.teacher).__name__}, which gives "
                "logits only (LightGBM, scikit-learn, precomputed or cached teacher outputs have no "
                "features to match). Use hint=None with this teacher, or distil from a torch model."
            )
        if self.teacher_mode == "cached":
            raise ConfigError(
                "A feature hint reads the teacher's features on every batch, so the teacher must "
                "run online, but teacher_mode='cached'. Use teacher_mode='online' or 'auto' (which "
                "is online with a hint)."
            )
        find_module(module, hint.teacher_layer, "teacher")
        if getattr(self.student, "is_built", True):
            find_module(self.student, hint.student_layer, "student")
        return hint

    def _online(self) -> bool:
        can_online = self.teacher is not None and hasattr(self.teacher, "logits_on_device")
        mode = self.teacher_mode
        if mode == "auto":
            # a hint reads the teacher's features on every batch (checked: a torch teacher)
            per_batch = self.augment is not None or self.hint is not None
            mode = "online" if (per_batch and can_online) else "cached"
        if mode == "online":
            if not can_online:
                raise ConfigError(
                    "teacher_mode='online' runs the teacher on every batch and needs a torch "
                    f"teacher (ModuleTeacher), got {type(self.teacher).__name__}. Use "
                    "teacher_mode='cached' (and no augment) for GBDT, scikit-learn or precomputed "
                    "teachers."
                )
            return True
        if self.augment is not None and self.teacher is not None and self.alpha > 0:
            raise ConfigError(
                "augment changes every batch, so cached teacher logits would describe other inputs. "
                f"Use a torch teacher (ModuleTeacher) online, or drop augment; got "
                f"{type(self.teacher).__name__} with teacher_mode={self.teacher_mode!r}."
            )
        return False

    # ------------------------------------------------------------------ data

    def _teacher_info(self, X: Any) -> TeacherInfo:
        assert self.teacher is not None
        try:
            return self.teacher.info
        except TeacherError:
            # A torch teacher learns its class count from one forward pass.
            self.teacher.logits(_take_rows(X, np.arange(min(2, num_rows(X)))))
            return self.teacher.info

    def _classes_from(self, X: Any, y: np.ndarray) -> tuple[Any, ...]:
        if self.teacher is not None:
            return tuple(self._teacher_info(X).classes)
        values = pd.unique(pd.Series(y).dropna())
        kinds = {type(v).__name__ for v in values if isinstance(v, str)} | {
            "number" for v in values if not isinstance(v, str)
        }
        if len(kinds) > 1:
            text = sorted(str(v) for v in values if isinstance(v, str))[:5]
            raise DataError(
                f"y mixes text labels {text} with numeric labels; they would become separate "
                "classes ('1' and 1 differ). Give every label the same type, e.g. y.astype(str)."
            )
        try:
            values = sorted(values)
        except TypeError:
            values = sorted(values, key=str)
        return tuple(v.item() if hasattr(v, "item") else v for v in values)

    def _encode_labels(self, y: Any, n: int, what: str) -> torch.Tensor:
        y_arr = _as_label_array(y)
        if len(y_arr) != n:
            raise DataError(
                f"{what}: X has {n} rows but y has {len(y_arr)} labels; they must match."
            )
        if pd.isna(pd.Series(y_arr)).any():
            raise DataError(
                f"{what}: y has {int(pd.isna(pd.Series(y_arr)).sum())} missing labels. Drop those "
                "rows, or pass them as transfer=... (rows that get the teacher's targets only)."
            )
        index = pd.Index(self.classes_)
        codes = index.get_indexer(pd.Index(y_arr))
        if (codes < 0).any():
            unknown = sorted({str(v) for v in np.asarray(y_arr)[codes < 0]})[:10]
            raise DataError(
                f"{what}: labels {unknown} are not among the classes {list(self.classes_)}"
                + (" that the teacher knows" if self.teacher is not None else "")
                + ". Check the target column, or map the labels to the teacher's classes."
            )
        return torch.from_numpy(codes.astype(np.int64))

    def _student_inputs(self, X: Any, what: str = "X") -> Inputs:
        student = self.student_ if hasattr(self, "student_") else self.student
        if hasattr(student, "encode"):
            inputs = tuple(student.encode(X))
        else:
            inputs = (_as_float_tensor(X, what, type(student).__name__),)
        expected = getattr(self, "input_shapes_", None)
        if expected is not None and [tuple(t.shape[1:]) for t in inputs] != expected:
            got = [tuple(t.shape[1:]) for t in inputs]
            if len(inputs) == 1 and tuple(inputs[0].shape) == tuple(expected[0]):
                raise DataError(
                    f"{what} is one row or image of shape {tuple(inputs[0].shape)} without the "
                    "batch axis: add the batch axis: x[None]."
                )
            raise DataError(
                f"{what} gives the student inputs of per-row shape {got}, but it was trained on "
                f"{expected}. Pass rows with the same columns as the training rows, in the same "
                "order."
            )
        return inputs

    def _class_weight_tensor(self, targets: torch.Tensor) -> torch.Tensor | None:
        cw = self.class_weight
        k = len(self.classes_)
        if cw is None:
            return None
        if isinstance(cw, str):
            if cw != "balanced":
                raise ConfigError(
                    f"class_weight must be None, 'balanced', a mapping or a sequence, got {cw!r}."
                )
            labelled = targets[targets != IGNORE_LABEL]
            counts = torch.bincount(labelled, minlength=k).double()
            weights = labelled.numel() / (k * counts.clamp_min(1.0))
            return weights.float()
        if isinstance(cw, Mapping):
            missing = [c for c in self.classes_ if c not in cw]
            if missing:
                raise ConfigError(
                    f"class_weight has no weight for classes {missing}; give one for each of {list(self.classes_)}."
                )
            weights = [float(cw[c]) for c in self.classes_]
        else:
            weights = [float(w) for w in cw]
            if len(weights) != k:
                raise ConfigError(
                    f"class_weight has {len(weights)} weights for {k} classes; give one per class."
                )
        if any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
            raise ConfigError(
                f"class_weight values must be finite, >= 0 and not all 0, got {weights}."
            )
        return torch.tensor(weights, dtype=torch.float32)

    # ------------------------------------------------------------------ fit

    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        eval_set: tuple[Any, Any] | None = None,
        transfer: Any = None,
        resume: bool | str | Path | None = None,
    ) -> Distiller:
        """Train the student.

        Args:
            X: training rows (DataFrame, array or tensor), as both teacher and student take them.
            y: labels, in the teacher's label space (``teacher.info.classes``); None when
                ``alpha == 1`` (the teacher's targets only).
            eval_set: ``(X_val, y_val)`` for validation metrics, early stopping and best-weights
                restore.
            transfer: extra rows without labels (for example transactions whose labels are not
                known yet, or synthetic rows) that get the teacher's soft targets only.
            resume: continue an interrupted run from a checkpoint: a checkpoint file or a folder
                holding one, or True for ``checkpoint_dir`` (True starts afresh when that folder has
                no checkpoint yet). The data, labels, teacher, student and settings must be those
                of the run that wrote it (checked); the result is then exactly that of an
                uninterrupted run. None or False: start afresh.

        ``X`` may also be a :class:`crosskd.datasets.ParquetStream` (tabular data larger than
        memory): the labels then come from its target column, the encoder is fitted on a sample,
        teacher logits are cached on disk, and rows are read a buffer at a time.

        Returns:
            self, with ``student_``, ``classes_``, ``history_``, ``best_epoch_``, ``fit_seconds_``,
            and the settings chosen for ``"auto"``: ``batch_size_``, ``lr_``, ``precision_``.
        """
        started = time.perf_counter()
        self._check_settings()
        no_kd = self.alpha != "auto" and float(self.alpha) == 0.0  # T and method do not matter
        if not no_kd and "auto" in (self.temperature, self.alpha, self.method):
            return self._fit_searched(X, y, eval_set, transfer, resume, started)
        self.temperature_ = 1.0 if self.temperature == "auto" else float(self.temperature)
        self.alpha_ = float(self.alpha)
        self.method_ = "hinton" if self.method == "auto" else self.method
        self.standardize_ = bool(self.standardize)
        self.hint_ = as_feature_hint(self.hint)
        self.__dict__.pop("hint_shapes_", None)  # a previous fit's hint does not apply
        online = self._online()
        device = self._setup_device()
        from .datasets.parquet import ParquetStream

        if isinstance(X, ParquetStream):
            if y is not None or transfer is not None or self.validation_fraction is not None:
                raise ConfigError(
                    "fit(ParquetStream) reads the labels from the stream's target column and has "
                    "no transfer or validation_fraction: pass y=None and transfer=None, "
                    "validation_fraction=None, and validation rows as eval_set=(X_val, y_val)."
                )
            return self._fit_stream(X, eval_set, online, device, resume, started)
        resume_state = self._read_resume(resume)
        n = num_rows(X)
        if n == 0:
            raise DataError("fit got 0 training rows. Pass at least one row.")
        if eval_set is not None and not (
            isinstance(eval_set, (tuple, list)) and len(eval_set) == 2
        ):
            raise DataError(
                "eval_set must be a pair (X_val, y_val), got "
                + (
                    f"a {type(eval_set).__name__} of length {len(eval_set)}"
                    if isinstance(eval_set, (tuple, list))
                    else f"a {type(eval_set).__name__}"
                )
                + ". Pass eval_set=(X_val, y_val)."
            )
        if y is None and self.alpha < 1:
            raise ConfigError(
                f"alpha={self.alpha} < 1 needs labels: pass y, or alpha=1 to learn from the teacher only."
            )
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)

        self.classes_ = self._classes_from(X, _as_label_array(y) if y is not None else np.array([]))
        if len(self.classes_) < 2:
            raise DataError(
                f"The target has {len(self.classes_)} class ({list(self.classes_)}); a classifier needs "
                "at least 2. Check the target column, or the rows you selected."
            )
        targets = (
            self._encode_labels(y, n, "fit")
            if y is not None
            else torch.full((n,), IGNORE_LABEL, dtype=torch.long)
        )
        full_logits = val_logits = None
        if eval_set is None and self.validation_fraction is not None and y is not None:
            if self.teacher is not None and not online:
                # Scored before the split, so that a teacher tied to these rows (precomputed
                # logits) gets exactly the rows it knows.
                full_logits = self._cached_logits(X, "training rows")
            X, targets, eval_set, (train_idx, val_idx) = self._hold_out(X, targets)
            n = num_rows(X)
            if full_logits is not None:
                full_logits, val_logits = full_logits[train_idx], full_logits[val_idx]

        student = self._fresh_student()
        if hasattr(student, "build") and not getattr(student, "is_built", True):
            student.build(X, len(self.classes_))
        self.student_ = student.to(device)
        self._method_params = check_kd_method(
            self.method_, dict(self.method_params or {}), len(self.classes_), bool(self.standardize)
        )
        self.__dict__.pop("input_shapes_", None)  # a previous fit's widths do not apply
        inputs = self._student_inputs(X, "X")
        self.input_shapes_ = [tuple(t.shape[1:]) for t in inputs]
        self._check_student_output(inputs, device)
        self._probe_inputs = tuple(t[:2] for t in inputs)

        teacher_logits = full_logits
        if self.teacher is not None and not online and teacher_logits is None:
            teacher_logits = self._cached_logits(X, "training rows")
        if transfer is not None:
            if self.teacher is None:
                raise ConfigError(
                    "transfer rows get the teacher's targets only, but teacher is None."
                )
            t_inputs = self._student_inputs(transfer, "transfer")
            inputs = tuple(torch.cat([a, b], dim=0) for a, b in zip(inputs, t_inputs, strict=True))
            t_n = num_rows(transfer)
            targets = torch.cat([targets, torch.full((t_n,), IGNORE_LABEL, dtype=torch.long)])
            if teacher_logits is not None:
                teacher_logits = torch.cat(
                    [teacher_logits, self._cached_logits(transfer, "transfer rows")]
                )
        self.n_train_rows_, self.n_transfer_rows_ = (
            n,
            (num_rows(transfer) if transfer is not None else 0),
        )

        class_weight = self._class_weight_tensor(targets)
        val = self._val_inputs(eval_set, device, val_logits)

        self._resolve_auto(device, targets.shape[0])
        inputs = tuple(t.to(device) for t in inputs)
        targets = targets.to(device)
        if teacher_logits is not None:
            teacher_logits = teacher_logits.to(device)
        if class_weight is not None:
            class_weight = class_weight.to(device)

        checkpoint = checkpoint_plan(
            self.checkpoint_dir,
            resume_state,
            self._resume_path,
            lambda: self._run_identity(inputs, targets, teacher_logits, val, online),
        )
        task = self._make_task(class_weight, online)
        source = MemoryBatches(
            inputs,
            (targets,),
            None if teacher_logits is None else task.cache_targets(teacher_logits),
            self.batch_size_,
            self.dist_,
            _has_batch_norm(self.student_),
        )
        args = (val, device, generator, online, checkpoint, resume_state, started)
        return self._fit_source(task, source, *args)

    def _fit_stream(
        self,
        stream: ParquetStream,
        eval_set: tuple[Any, Any] | None,
        online: bool,
        device: torch.device,
        resume: bool | str | Path | None,
        started: float,
    ) -> Distiller:
        """``fit`` on a parquet file read in row groups (see :mod:`crosskd.datasets.parquet`)."""
        if self.dist_ is not None:
            raise ConfigError(
                "fit(ParquetStream) under torchrun is not supported yet: the row groups would have "
                "to be split across ranks with equal step counts. Train the stream in one process "
                "(distributed=False), or load the rows in memory for DDP."
            )
        resume_state = self._read_resume(resume)
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        counts = stream.label_counts()
        if self.teacher is not None:
            sample = stream.sample(self.seed)
            self.classes_ = tuple(self._teacher_info(sample).classes)
        else:
            sample = None
            self.classes_ = self._classes_from(np.zeros((0, 1)), counts.index.to_numpy())
        if len(self.classes_) < 2:
            raise DataError(
                f"The target {stream.target!r} has {len(self.classes_)} class; a classifier needs 2."
            )
        unknown = [v for v in counts.index if v not in set(self.classes_)]
        if unknown:
            raise DataError(
                f"The target {stream.target!r} has labels {sorted(map(str, unknown))[:10]} that are "
                f"not among the classes {list(self.classes_)}. Map them to the teacher's classes."
            )
        if counts.sum() < stream.num_rows and self.alpha == 0:
            raise DataError(
                f"{stream.num_rows - int(counts.sum()):,} rows of {str(stream.path)!r} have no "
                "label, and alpha=0 learns from labels only. Give them labels, or alpha > 0."
            )
        student = self._fresh_student()
        if hasattr(student, "build") and not getattr(student, "is_built", True):
            student.build(
                sample if sample is not None else stream.sample(self.seed), len(self.classes_)
            )
        self.student_ = student.to(device)
        self._method_params = check_kd_method(
            self.method_, dict(self.method_params or {}), len(self.classes_), bool(self.standardize)
        )
        self.__dict__.pop("input_shapes_", None)
        probe = self._student_inputs(stream.read_row_groups([0], stream.columns).iloc[:2], "stream")
        self.input_shapes_ = [tuple(t.shape[1:]) for t in probe]
        self._check_student_output(probe, device)
        self._probe_inputs = probe
        logits, cache = None, None
        if self.teacher is not None and not online and self.alpha > 0:
            logits, cache = stream.teacher_logits(self.teacher, self.chunk_size)
        self.teacher_cache_ = cache
        self.n_train_rows_, self.n_transfer_rows_ = (
            int(counts.sum()),
            stream.num_rows - int(counts.sum()),
        )
        class_weight = None
        if self.class_weight is not None:
            codes = torch.from_numpy(
                np.repeat(
                    pd.Index(self.classes_).get_indexer(counts.index), counts.to_numpy()
                ).astype(np.int64)
            )
            class_weight = self._class_weight_tensor(codes).to(device)
        val = self._val_inputs(eval_set, device)
        self._resolve_auto(device, stream.num_rows)
        teacher_fp = None
        if logits is not None:
            from .datasets.parquet import teacher_fingerprint

            teacher_fp = f"{teacher_fingerprint(self.teacher)}:{stream.fingerprint()}"
        checkpoint = checkpoint_plan(
            self.checkpoint_dir,
            resume_state,
            self._resume_path,
            lambda: self._run_identity(stream.fingerprint(), None, teacher_fp, val, online),
        )
        task = self._make_task(class_weight, online)
        source = StreamBatches(
            stream,
            lambda frame: self._student_inputs(frame, "stream"),
            self._stream_labels,
            logits,
            task.cache_targets,
            self.batch_size_,
            _has_batch_norm(self.student_),
        )
        args = (val, device, generator, online, checkpoint, resume_state, started)
        return self._fit_source(task, source, *args)

    def _val_inputs(
        self,
        eval_set: tuple[Any, Any] | None,
        device: torch.device,
        val_logits: torch.Tensor | None = None,
    ) -> dict[str, Any] | None:
        """The validation data of the task. The teacher scores the validation rows once (an
        online teacher too: they are not augmented), so that ``val_loss`` holds the same terms as
        ``train_loss``."""
        if eval_set is None:
            return None
        if not (isinstance(eval_set, (tuple, list)) and len(eval_set) == 2):
            raise DataError("eval_set must be a pair (X_val, y_val). Pass eval_set=(X_val, y_val).")
        X_val, y_val = eval_set
        v_n = num_rows(X_val)
        if v_n == 0:
            raise DataError("eval_set has 0 rows. Pass validation rows, or eval_set=None.")
        use_teacher = self.teacher is not None and self.alpha > 0
        if use_teacher and val_logits is None:
            val_logits = self._cached_logits(X_val, "validation rows")
        return {
            "inputs": tuple(t.to(device) for t in self._student_inputs(X_val, "eval_set")),
            "targets": self._encode_labels(y_val, v_n, "eval_set").to(device),
            "teacher_logits": val_logits.to(device) if use_teacher else None,
        }

    def _stream_labels(self, values: pd.Series) -> torch.Tensor:
        codes = pd.Index(self.classes_).get_indexer(pd.Index(values.to_numpy()))
        codes[values.isna().to_numpy()] = IGNORE_LABEL
        return torch.from_numpy(codes.astype(np.int64))

    def _fresh_student(self) -> nn.Module:
        """The module to train: a copy of ``student`` (``fit`` leaves the object passed in
        untouched, and a second ``fit`` starts afresh), or ``student`` itself with
        ``warm_start=True``."""
        return self.student if self.warm_start else copy.deepcopy(self.student)

    # ------------------------------------------------------------------ device, defaults, DDP

    def _setup_device(self) -> torch.device:
        """The training device; under ``torchrun`` also the process group (``dist_``)."""
        device, self.dist_ = setup_device(self.device, self.distributed)
        return device

    def _resolve_auto(self, device: torch.device, n_rows: int) -> None:
        """Set ``batch_size_``, ``lr_`` and ``precision_`` from the settings and the device."""
        world = self.dist_.world_size if self.dist_ is not None else 1
        if self.batch_size == "auto":
            batch = auto_batch_size(device, max(1, n_rows // world))
            self.batch_size_ = batch
            self.lr_ = float(self.lr) * math.sqrt(max(1.0, batch / CPU_BATCH_SIZE))
        else:
            self.batch_size_ = int(self.batch_size)
            self.lr_ = float(self.lr)
        self.precision_ = resolve_precision(self.precision, device)

    def _is_main(self) -> bool:
        dist_ = getattr(self, "dist_", None)
        return dist_ is None or dist_.is_main

    # ------------------------------------------------------------------ checkpoints

    #: settings that change the training trajectory: a checkpoint resumes only with equal values.
    _RUN_SETTINGS = (
        "temperature",
        "alpha",
        "epochs",
        "batch_size",
        "lr",
        "weight_decay",
        "class_weight",
        "focal_gamma",
        "precision",
        "early_stopping",
        "val_metric",
        "validation_fraction",
        "seed",
        "schedule",
        "method",
        "method_params",
        "standardize",
    )

    def _read_resume(self, resume: bool | str | Path | None) -> Any:
        """The :class:`~crosskd.checkpoint.TrainingState` to continue from, or None."""
        state, self._resume_path = read_resume(resume, self.checkpoint_dir, "Distiller")
        return state

    def _run_identity(
        self,
        inputs: Inputs | str,
        targets: torch.Tensor | None,
        teacher_logits: torch.Tensor | str | None,
        val: dict[str, Any] | None,
        online: bool,
    ) -> dict[str, Any]:
        """Settings and fingerprints that must match for a checkpoint to be resumed."""
        from .checkpoint import tensor_fingerprint

        settings = {name: getattr(self, name) for name in self._RUN_SETTINGS}
        settings.update(batch_size=self.batch_size_, lr=self.lr_, precision=self.precision_)
        if self.hint is not None:  # the key only with a hint: earlier checkpoints stay resumable
            settings["hint"] = as_feature_hint(self.hint).to_dict()
        if isinstance(inputs, str):  # a stream: fingerprints of the file and of the cached logits
            data_fp = targets_fp = inputs
            teacher_fp = "online" if online else teacher_logits
        else:
            data_fp, targets_fp = tensor_fingerprint(*inputs), tensor_fingerprint(targets)
            teacher_fp = "online" if online else tensor_fingerprint(teacher_logits)
        validation = None
        if val is not None:
            validation = tensor_fingerprint(*val["inputs"], val["targets"], val["teacher_logits"])
        return run_identity(
            settings,
            self.student_,
            self.dist_,
            data=data_fp,
            targets=targets_fp,
            teacher=teacher_fp,
            validation=validation,
        )

    def _hold_out(
        self, X: Any, targets: torch.Tensor
    ) -> tuple[Any, torch.Tensor, tuple[Any, Any], tuple[np.ndarray, np.ndarray]]:
        from sklearn.model_selection import train_test_split

        idx = np.arange(len(targets))
        n_val = math.ceil(self.validation_fraction * len(idx))
        if len(idx) - n_val < 1 or n_val < 1:
            raise DataError(
                f"validation_fraction={self.validation_fraction} of {len(idx)} training row(s) "
                "leaves no row to train on or none to validate on. Pass more rows, a different "
                "validation_fraction, or validation_fraction=None."
            )
        y_np = targets.numpy()
        counts = np.bincount(y_np, minlength=len(self.classes_))
        stratify = y_np if counts.min() >= 2 and n_val >= len(self.classes_) else None
        if stratify is not None and len(idx) - n_val < len(self.classes_):
            stratify = None
        train_idx, val_idx = train_test_split(
            idx, test_size=self.validation_fraction, random_state=self.seed, stratify=stratify
        )
        train_idx.sort()
        val_idx.sort()
        X_train, X_val = _take_rows(X, train_idx), _take_rows(X, val_idx)
        y_val = np.asarray(self.classes_, dtype=object)[y_np[val_idx]]
        return X_train, targets[train_idx], (X_val, list(y_val)), (train_idx, val_idx)

    def _check_student_output(self, inputs: Inputs, device: torch.device) -> None:
        sample = tuple(t[:2].to(device) for t in inputs)
        was_training = self.student_.training
        self.student_.eval()
        with torch.no_grad():
            out = self.student_(*sample)
        self.student_.train(was_training)
        if not torch.is_tensor(out) or out.ndim != 2:
            shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise DataError(
                f"The student must return (batch, num_classes) logits; it returned {shape}."
            )
        k = len(self.classes_)
        if out.shape[1] != k:
            who = (
                f"{type(self.teacher).__name__} has"
                if self.teacher is not None
                else "The labels have"
            )
            raise DataError(
                f"{who} {k} classes but the student outputs {out.shape[1]} logits. "
                f"Give the student num_classes={k}."
            )

    def _cached_logits(self, X: Any, what: str) -> torch.Tensor:
        assert self.teacher is not None
        ctx = getattr(self, "dist_", None)
        n = num_rows(X)
        if ctx is not None and self.teacher.info.kind != "precomputed" and n >= ctx.world_size:
            logits = self._sharded_logits(X, what, ctx)
        else:
            try:
                logits = self.teacher.logits(X, batch_size=self.chunk_size)
            except DataError as err:
                raise DataError(f"The teacher could not score the {what}: {err}") from None
        if not torch.isfinite(logits).all():
            bad = int((~torch.isfinite(logits)).any(dim=-1).sum())
            raise DataError(
                f"The teacher returned non-finite logits for {bad} of the {what}. Check the input "
                "rows for values the teacher cannot score."
            )
        return logits

    def _sharded_logits(self, X: Any, what: str, ctx: DistContext) -> torch.Tensor:
        """Each rank scores a contiguous 1/world of the rows; the parts are all-gathered.

        Every rank then holds every row's logits (``n x num_classes`` floats, small next to the
        rows themselves), because each epoch's permutation gives a rank other rows.
        """
        import torch.distributed as dist

        n, k = num_rows(X), self.teacher.info.num_classes
        per = -(-n // ctx.world_size)
        lo, hi = min(ctx.rank * per, n), min((ctx.rank + 1) * per, n)
        part = torch.zeros(per, k)
        failed = torch.zeros(1)
        message = ""
        try:
            if hi > lo:
                part[: hi - lo] = self.teacher.logits(
                    _take_rows(X, np.arange(lo, hi)), batch_size=self.chunk_size
                )
        except DataError as err:
            failed[0], message = 1.0, str(err)
        comm = (
            torch.device("cuda", ctx.local_rank) if ctx.backend == "nccl" else torch.device("cpu")
        )
        failed = failed.to(comm)
        dist.all_reduce(failed, op=dist.ReduceOp.MAX)  # every rank raises, or none: no deadlock
        if float(failed) > 0:
            raise DataError(
                f"The teacher could not score the {what}"
                + (f": {message}" if message else f" on another rank (this is rank {ctx.rank}).")
            )
        parts = [torch.empty(per, k, device=comm) for _ in range(ctx.world_size)]
        dist.all_gather(parts, part.to(comm))
        return torch.cat(parts)[:n].cpu()

    def _fit_searched(
        self,
        X: Any,
        y: Any,
        eval_set: tuple[Any, Any] | None,
        transfer: Any,
        resume: Any,
        started: float,
    ) -> Distiller:
        """``fit`` with ``temperature``, ``alpha`` and/or ``method`` ``"auto"`` (see
        :mod:`crosskd.search`)."""
        from .datasets.parquet import ParquetStream
        from .search import search_settings

        which = " and ".join(
            n for n in ("temperature", "alpha", "method") if getattr(self, n) == "auto"
        )
        if isinstance(X, ParquetStream) or y is None:
            raise ConfigError(
                f"{which}='auto' is chosen on labelled validation rows, which "
                + (
                    "fit(ParquetStream) does not hold"
                    if y is None and not isinstance(X, ParquetStream)
                    else "a ParquetStream fit does not split off"
                )
                + ". Give the value (e.g. temperature=2.0, alpha=0.7)."
            )
        if eval_set is None:
            if self.validation_fraction is None:
                raise ConfigError(
                    f"{which}='auto' is chosen on validation rows: pass eval_set=(X_val, y_val) "
                    "or validation_fraction=0.2, or give the value (e.g. temperature=2.0)."
                )
            from sklearn.model_selection import train_test_split

            labels = _as_label_array(y)
            idx = np.arange(num_rows(X))
            counts = pd.Series(labels).value_counts()
            train_idx, val_idx = train_test_split(
                idx,
                test_size=self.validation_fraction,
                random_state=self.seed,
                stratify=labels if counts.min() >= 2 else None,
            )
            train_idx.sort()
            val_idx.sort()
            eval_set = (_take_rows(X, val_idx), labels[val_idx])
            X, y = _take_rows(X, train_idx), labels[train_idx]
        if self.epochs == "auto":
            n = num_rows(X) + (num_rows(transfer) if transfer is not None else 0)
            batch = (
                auto_batch_size(resolve_device(self.device), n)
                if self.batch_size == "auto"
                else int(self.batch_size)
            )
            full_epochs = auto_epochs(math.ceil(n / batch))
        else:
            full_epochs = int(self.epochs)
        search = search_settings(self, X, y, eval_set, transfer, full_epochs)
        final = copy.copy(self)
        final.temperature = search["chosen"]["temperature"]
        final.alpha = search["chosen"]["alpha"]
        final.method = search["chosen"]["method"]
        final.standardize = search["chosen"].get("standardize", final.standardize)
        final.fit(X, y, eval_set=eval_set, transfer=transfer, resume=resume)
        self.__dict__.update({k: v for k, v in final.__dict__.items() if k.endswith("_")})
        self.search_ = search
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _make_task(self, class_weight: torch.Tensor | None, online: bool) -> ClassificationTask:
        hint = None
        if self.hint_ is not None:
            # resolves the layer names again: a TabularStudent has its layers only now
            hint = HintSession(self.hint_, self.student_, self.teacher.module)
        return ClassificationTask(
            temperature=self.temperature_,
            alpha=self.alpha_,
            num_classes=len(self.classes_),
            class_weight=class_weight,
            focal_gamma=self.focal_gamma,
            teacher=self.teacher if online else None,
            val_metric=self.val_metric,
            chunk_size=self.chunk_size,
            method=self.method_,
            method_params=self._method_params,
            standardize=self.standardize,
            hint=hint,
        )

    def _fit_source(
        self,
        task: ClassificationTask,
        source: MemoryBatches | StreamBatches,
        val: dict[str, Any] | None,
        device: torch.device,
        generator: torch.Generator,
        online: bool,
        checkpoint: tuple[Path, dict[str, Any]] | None,
        resume_state: Any,
        started: float,
    ) -> Distiller:
        """The end of ``fit`` for either batch source: the engine trains; returns self."""
        monitor = f"val_{task.monitor}"
        self.epochs_ = (
            auto_epochs(source.steps_per_epoch) if self.epochs == "auto" else int(self.epochs)
        )
        self.early_stopping_ = (
            auto_patience(self.epochs_) if self.early_stopping == "auto" else self.early_stopping
        )
        self.schedule_ = self.schedule
        if self.schedule == "auto":
            plateau = self.epochs == "auto" and val is not None
            self.schedule_ = "plateau" if plateau else "cosine"
        stopper = EarlyStopping(
            monitor,
            task.higher_is_better,
            None if val is None or self.schedule_ == "plateau" else self.early_stopping_,
        )
        callbacks: list[Callback] = [stopper]
        if self.schedule_ == "plateau" and val is not None:
            patience = (
                plateau_patience(self.epochs_)
                if self.early_stopping == "auto"
                else (self.early_stopping or auto_patience(self.epochs_))
            )
            self.early_stopping_ = patience
            callbacks.append(ReduceOnPlateau(monitor, task.higher_is_better, patience))
        if checkpoint is not None:
            callbacks.append(Checkpointing(*checkpoint, every=int(self.checkpoint_every)))
            self.checkpoint_path_ = checkpoint[0]
        if self.progress and self._is_main():
            desc = self.progress if isinstance(self.progress, str) else "distil"
            callbacks.append(ProgressBar(desc, monitor if val is not None else None))
        epochs = self.epochs_
        engine = Engine(
            epochs=epochs,
            lr=self.lr_,
            weight_decay=self.weight_decay,
            # 5 % of the run, at most 100 steps, then cosine decay
            warmup=lambda steps: min(100, max(1, steps * epochs // 20)),
            precision=self.precision_,
            schedule=self.schedule_,
            device=device,
            ctx=self.dist_,
            seed=self.seed,
            augment=self.augment,
            callbacks=callbacks,
        )
        self.threads_ = self._choose_threads(source, device)
        session = task.hint
        model: nn.Module = self.student_
        with (
            torch_threads(self.threads_) if device.type == "cpu" else nullcontext(),
            session if session is not None else nullcontext(),  # hooks removed on exit
        ):
            if session is not None:
                # student + adapter trained as one module; the adapter sized by a dry forward
                probe = tuple(t.to(device) for t in self._probe_inputs)
                model = session.build(
                    self.student_, probe, self.teacher.logits_on_device, self.seed
                )
                self.hint_shapes_ = session.shapes
            state = engine.fit(
                model,
                task,
                source,
                val=val,
                online=online,
                generator=generator,
                resume=resume_state,
            )
        self.history_ = state.history
        self.best_epoch_ = (
            stopper.best_epoch if stopper.best_state is not None else len(self.history_)
        )
        self.best_score_ = stopper.best_value
        self.monitor_ = monitor if val is not None else None
        self.student_.eval()
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _choose_threads(self, source: Any, device: torch.device) -> int:
        """``threads_``: the setting, or for ``"auto"`` a count from idle cores and step size."""
        if device.type != "cpu":
            return torch.get_num_threads()
        flops = None
        if self.threads == "auto":
            probe = self._probe_inputs
            flops = step_flops(self.student_, tuple(t.to(device) for t in probe), self.batch_size_)
            self._row_flops = flops / 3 / self.batch_size_
        world = self.dist_.world_size if self.dist_ is not None else 1
        return choose_threads(self.threads, step_flops=flops, processes=world)

    def _forward_batched(self, inputs: Inputs, device: torch.device) -> torch.Tensor:
        # The training precision after fit; a loaded model with precision="auto" predicts in
        # float32 (full-precision probabilities unless bf16 / fp16 was asked for).
        precision = getattr(self, "precision_", None) or (
            "32" if self.precision == "auto" else check_precision(self.precision)
        )
        if inputs[0].shape[0] == 0:
            return torch.empty(0, len(self.classes_), device=device)
        return forward_batched(self.student_, inputs, device, precision, self.chunk_size)

    # ------------------------------------------------------------------ use

    def _check_fitted(self) -> None:
        if not hasattr(self, "student_"):
            raise NotFittedError(
                "This Distiller is not fitted yet: call fit(X, y) first, or Distiller.load(path)."
            )

    def predict_logits(self, X: Any) -> torch.Tensor:
        """Student logits for the rows of ``X``: ``(n_samples, num_classes)`` float32 CPU tensor."""
        self._check_fitted()
        device = next(self.student_.parameters()).device
        if device.type != "cpu":
            return self._forward_batched(self._student_inputs(X), device).cpu()
        # On CPU, threads="auto" takes one thread for small work: a 10,000-row call of a small MLP
        # ran 0.9 ms on one thread and 54 ms on two on the busy 2-core machine (encoding alike);
        # setting the count costs about 0.2 ms. The work per row is known from fit (or from the
        # first call of a loaded model, which runs on one thread).
        row_flops = getattr(self, "_row_flops", None)
        rows = min(num_rows(X), self.chunk_size)
        threads = (
            choose_threads(self.threads)
            if self.threads != "auto"
            else 1
            if row_flops is None
            else choose_threads("auto", step_flops=row_flops * rows, window=0.0)
        )
        with torch_threads(threads):
            inputs = self._student_inputs(X)
            if row_flops is None and inputs[0].shape[0]:
                self._row_flops = step_flops(self.student_, tuple(t[:2] for t in inputs), 1) / 3
            return self._forward_batched(inputs, device).cpu()

    def predict_proba(self, X: Any) -> np.ndarray:
        """Student class probabilities, ``(n_samples, num_classes)`` float64, columns in ``classes_`` order.

        The softmax runs in numpy: torch's on two threads took 15 ms for 5,000 rows on the busy
        2-core machine, as long as the rest of the call ten times over.
        """
        z = self.predict_logits(X).double().numpy()
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class label of each row."""
        proba = self.predict_proba(X)
        return np.asarray(self.classes_, dtype=object)[proba.argmax(axis=1)]

    def evaluate(self, X: Any, y: Any = None) -> dict[str, float]:
        """Student metrics on labelled rows: ``roc_auc``, ``average_precision``, ``accuracy``,
        ``log_loss`` for two classes; ``accuracy``, ``log_loss`` otherwise.

        Without labels (``y=None``), the student's fidelity to its teacher on ``X``
        (:func:`crosskd.metrics.fidelity`: prediction agreement, and for two classes rank
        agreement and the overlap of the top 1 % and 5 %), which needs the teacher.
        """
        self._check_fitted()
        if y is None:
            if self.teacher is None:
                raise ConfigError(
                    "evaluate(X) without labels measures fidelity to the teacher, but this "
                    "Distiller has none (a loaded student keeps no teacher). Pass labels, "
                    "evaluate(X, y), or set distiller.teacher = your teacher first."
                )
            return _metrics.fidelity(self.teacher.predict_proba(X), self.predict_proba(X))
        targets = self._encode_labels(y, num_rows(X), "evaluate").numpy()
        return _metrics.classification_metrics(targets, self.predict_proba(X))

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """The constructor's settings by name (scikit-learn style, so ``sklearn.base.clone`` works).

        Args:
            deep: accepted for scikit-learn compatibility; teacher and student are returned as
                they are, not expanded into their own parameters.
        """
        import inspect

        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self"]
        return {name: getattr(self, name) for name in names}

    def set_params(self, **params: Any) -> Distiller:
        """Change settings by name (scikit-learn style); returns self.

        Raises:
            ConfigError: a name is not a constructor setting.
        """
        valid = self.get_params()
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ConfigError(
                f"Distiller has no settings {unknown}; the settings are {sorted(valid)}."
            )
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        """``Distiller(teacher=..., student=..., <settings that differ from the defaults>)``, and
        what ``fit`` chose when fitted."""
        import inspect

        defaults = {
            name: p.default
            for name, p in inspect.signature(type(self).__init__).parameters.items()
            if p.default is not inspect.Parameter.empty
        }
        parts = [
            f"teacher={self.teacher!r}",
            f"student={type(self.student).__name__}",
            *(
                f"{name}={getattr(self, name)!r}"
                for name, default in defaults.items()
                if not _same(getattr(self, name, default), default)
            ),
        ]
        if hasattr(self, "student_"):
            chosen = {
                "epochs": f"{getattr(self, 'best_epoch_', '?')}/{len(getattr(self, 'history_', []))}"
            }
            for name in ("temperature_", "alpha_", "method_", "batch_size_", "threads_"):
                if hasattr(self, name):
                    chosen[name[:-1]] = getattr(self, name)
            parts.append("fitted: " + ", ".join(f"{k} {v}" for k, v in chosen.items()))
        return f"{type(self).__name__}({', '.join(parts)})"

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        """Save the trained student (weights, encoder, classes, settings) as one safetensors file.

        No pickle is written or read; the file loads with :meth:`Distiller.load` or
        :func:`crosskd.load`.
        """
        from .io import save_bundle

        self._check_fitted()
        if not self._is_main():
            return Path(path)  # under torchrun only rank 0 writes files
        names = list(self.classes_) if self.class_names is None else list(self.class_names)
        if len(names) != len(self.classes_):
            raise ConfigError(
                f"class_names has {len(names)} names for {len(self.classes_)} classes "
                f"{list(self.classes_)}; give one name per class, in that order."
            )
        meta = {
            "classes": [v.item() if hasattr(v, "item") else v for v in names],
            "temperature": float(self.temperature_),
            "alpha": float(self.alpha_),
            "method": self.method_,
            **({"standardize": True} if getattr(self, "standardize_", False) else {}),
            **({"hint": self.hint_.to_dict()} if getattr(self, "hint_", None) else {}),
            "teacher": None if self.teacher is None else self.teacher.info.kind,
            "best_epoch": int(self.best_epoch_),
            "history": self.history_,
        }
        return save_bundle(path, self.student_, metadata=meta)

    def export(self, path: str | Path, format: str = "onnx", **kwargs: Any) -> Any:
        """Write the trained student for serving; ``format="onnx"`` (see
        :func:`crosskd.export.export_onnx`: tabular students include their encoder's numeric part,
        and onnxruntime is checked against torch on export). Returns the export's description."""
        from .export import export

        self._check_fitted()
        return export(self, path, format=format, **kwargs)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Distiller:
        """A fitted Distiller (without its teacher) from a file written by :meth:`save`.

        It predicts, evaluates and saves; fitting again needs a teacher.
        """
        from .io import load_bundle

        student, settings = load_bundle(path)
        out = cls(
            None,
            student,
            temperature=settings.get("temperature", 1.0),
            alpha=0.0,
            device=device,
            progress=False,
        )
        out.student_ = student.to(resolve_device(device)).eval()
        out.temperature_, out.alpha_ = out.temperature, 0.0
        out.classes_ = tuple(settings["classes"])
        out.history_ = settings.get("history", [])
        out.best_epoch_ = settings.get("best_epoch", len(out.history_))
        return out


def _same(value: Any, default: Any) -> bool:
    try:
        return bool(value == default) and type(value) is type(default)
    except Exception:  # noqa: BLE001 - arrays and the like: show them
        return False


def _as_label_array(y: Any) -> np.ndarray:
    if isinstance(y, (pd.Series, pd.Index)):
        return y.to_numpy()
    if isinstance(y, pd.DataFrame):
        if y.shape[1] != 1:
            raise DataError(
                f"y must be one column of labels, got a DataFrame with {y.shape[1]} columns."
            )
        return y.iloc[:, 0].to_numpy()
    if torch.is_tensor(y):
        y = y.detach().cpu().numpy()
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"y must be 1-D (one label per row), got shape {arr.shape}.")
    return arr


def _as_float_tensor(X: Any, what: str = "X", owner: str = "This student") -> torch.Tensor:
    """``X`` as one CPU tensor for a plain (non-tabular) student: numeric, >= 2-D, finite."""
    if isinstance(X, pd.DataFrame):
        raise DataError(
            f"{owner} takes tensors, but {what} is a DataFrame. Use crosskd.TabularStudent (it "
            "encodes DataFrames), or pass X.to_numpy(dtype='float32')."
        )
    if torch.is_tensor(X):
        t = X.detach().cpu()
        t = t.float() if t.is_floating_point() else t
    else:
        try:
            arr = np.asarray(X)
        except ValueError:
            raise DataError(
                f"{what} is ragged (rows of different lengths); pass a 2-D array "
                "(n_samples, n_features)."
            ) from None
        if arr.dtype.kind not in "biuf":
            raise DataError(
                f"{what} must be numeric for {owner}, got dtype {arr.dtype}. Convert it, or use "
                "crosskd.TabularStudent for tables with text columns."
            )
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if t.ndim < 2:
        raise DataError(
            f"{what} has shape {tuple(t.shape)}; {owner} needs rows: (n_samples, n_features) or "
            "(n_samples, channels, height, width). Reshape one row with x.reshape(1, -1), one "
            "feature with x.reshape(-1, 1)."
        )
    if t.is_floating_point():
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            n_nan = int(torch.isnan(t).sum())
            n_inf = int((~finite).sum()) - n_nan
            first = tuple(int(i) for i in (~finite).nonzero()[0])
            raise DataError(
                f"{what} has {n_nan} NaN and {n_inf} infinite value(s) (first at index {first}); "
                f"{owner} takes finite numbers only. Impute or drop them, or use "
                "crosskd.TabularStudent, which encodes NaN with a missing-value indicator."
            )
    return t


def _has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def _take_rows(X: Any, idx: np.ndarray) -> Any:
    if hasattr(X, "iloc"):
        return X.iloc[idx]
    if torch.is_tensor(X):
        return X[torch.from_numpy(idx)]
    return np.asarray(X)[idx]


def auto_batch_size(device: torch.device | str, n_rows: int) -> int:
    """The ``batch_size="auto"`` choice: rows per step for ``n_rows`` training rows per process.

    CPU: the largest power of two in [16, 512] that gives at least 32 steps per epoch (512 on
    tables of 16k rows or more: larger batches barely run faster there; a table of a few hundred
    rows gets batches of 16, not one step per epoch). CUDA: the largest power of two in
    [512, 16384] that still gives at least 64 steps per epoch: a GPU runs a 512-row step of a small
    MLP in about the time of a 16k-row one, so throughput grows with the batch until the kernels
    fill the device.
    """
    device = torch.device(device) if isinstance(device, str) else device
    if device.type != "cuda":
        fit = max(1, n_rows // _AUTO_MIN_CPU_STEPS)
        return int(min(CPU_BATCH_SIZE, max(CPU_MIN_BATCH_SIZE, 1 << (fit.bit_length() - 1))))
    fit = max(1, n_rows // _AUTO_MIN_STEPS)
    return int(min(CUDA_MAX_BATCH_SIZE, max(CPU_BATCH_SIZE, 1 << (fit.bit_length() - 1))))
