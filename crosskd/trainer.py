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
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import metrics as _metrics
from ._device import autocast, check_precision, resolve_device
from .exceptions import ConfigError, DataError, NotFittedError, TeacherError, TrainingError
from .losses import (
    IGNORE_LABEL,
    check_alpha,
    check_temperature,
    distillation_loss,
    hard_loss,
    kd_loss,
    kd_loss_from_packed,
    packed_soft_targets,
)
from .teachers.base import Teacher, TeacherInfo, num_rows

if TYPE_CHECKING:
    from .datasets.parquet import ParquetStream
    from .distributed import DistContext

__all__ = ["Distiller", "auto_batch_size"]

Inputs = tuple[torch.Tensor, ...]
TEACHER_MODES = ("auto", "cached", "online")
#: ``batch_size="auto"``: rows per step on CPU (the measured default, unchanged), and the bounds of
#: the CUDA choice (a power of two giving at least ``_AUTO_MIN_STEPS`` steps per epoch).
CPU_BATCH_SIZE = 512
CUDA_MAX_BATCH_SIZE = 16384
_AUTO_MIN_STEPS = 64
#: In-memory inputs up to this size are permuted once per epoch and sliced per step (measured 5x
#: cheaper than a gather per step on CPU); larger inputs (images) are gathered per step instead,
#: so that the permuted copy does not double their memory.
PERMUTE_ONCE_BYTES = 2 << 30


class Distiller:
    """Distil a teacher into a student (scikit-learn style: settings here, fitted state in ``*_``).

    Args:
        teacher: any :class:`crosskd.teachers.Teacher`; None trains the student on labels only
            (``alpha`` must then be 0): the baseline "student alone", or a teacher of your own.
        student: a torch module returning ``(batch, num_classes)`` logits. A
            :class:`crosskd.tabular.TabularStudent` is built and its encoder fitted on the training
            data; any other module gets ``float32`` tensors of the rows as its one input.
        temperature: T > 0 of the soft term (applied to teacher and student logits alike).
        alpha: weight of the distillation term in [0, 1]; ``1 - alpha`` weighs the label term.
        epochs: maximum number of passes over the training rows.
        batch_size: rows per optimisation step (per process under ``torchrun``), or ``"auto"``:
            512 on CPU; on CUDA a power of two between 512 and 16384 that leaves at least 64 steps
            per epoch (small batches leave a GPU idle), with ``lr`` then scaled by
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
            validation rows, and restore the best weights; None trains all epochs.
        val_metric: ``"auto"`` (average precision for two classes, accuracy otherwise), ``"loss"``
            (validation distillation loss), or any key of :func:`crosskd.metrics.classification_metrics`.
        validation_fraction: when ``fit`` gets no ``eval_set``, hold out this share of the labelled
            rows (seeded, stratified) for validation; None uses no validation.
        chunk_size: rows per teacher call when caching logits, and per step when predicting.
        seed: seeds weight initialisation, shuffling and the validation split.
        progress: show a progress bar over epochs.
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
        epochs: int = 30,
        batch_size: int | str = "auto",
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        class_weight: str | Mapping[Any, float] | Sequence[float] | None = None,
        focal_gamma: float = 0.0,
        teacher_mode: str = "auto",
        augment: Callable[[Inputs], Inputs] | None = None,
        device: str | torch.device = "auto",
        precision: str = "auto",
        early_stopping: int | None = 5,
        val_metric: str = "auto",
        validation_fraction: float | None = None,
        chunk_size: int = 65536,
        seed: int = 0,
        progress: bool = True,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int = 1,
        distributed: bool | str = "auto",
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

    # ------------------------------------------------------------------ checks

    def _check_settings(self) -> None:
        check_temperature(self.temperature)
        alpha = check_alpha(self.alpha)
        if self.precision != "auto":
            try:
                check_precision(self.precision)
            except ConfigError:
                raise ConfigError(
                    "precision must be one of 'auto', '32', 'bf16-mixed', '16-mixed' ('auto': "
                    f"bf16-mixed on a GPU that supports it, else 32), got {self.precision!r}."
                ) from None
        if self.distributed not in ("auto", True, False):
            raise ConfigError(
                f"distributed must be 'auto', True or False, got {self.distributed!r}."
            )
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
            if name == "batch_size" and value == "auto":
                continue
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ConfigError(
                    f"{name} must be a positive integer"
                    + (" or 'auto'" if name == "batch_size" else "")
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
        every = self.checkpoint_every
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ConfigError(
                f"checkpoint_every must be a positive number of epochs, got {every!r}."
            )
        if self.checkpoint_dir is not None and Path(self.checkpoint_dir).is_file():
            raise ConfigError(
                f"checkpoint_dir {str(self.checkpoint_dir)!r} is a file; pass a folder (it is "
                "created when missing)."
            )
        if self.early_stopping is not None and (
            not isinstance(self.early_stopping, (int, np.integer)) or self.early_stopping < 1
        ):
            raise ConfigError(
                f"early_stopping must be None or a positive number of epochs, got {self.early_stopping!r}."
            )
        if self.teacher_mode not in TEACHER_MODES:
            raise ConfigError(
                f"teacher_mode must be one of {TEACHER_MODES}, got {self.teacher_mode!r}."
            )
        if self.validation_fraction is not None and not (0.0 < self.validation_fraction < 1.0):
            raise ConfigError(
                f"validation_fraction must be in (0, 1) or None, got {self.validation_fraction!r}."
            )

    def _online(self) -> bool:
        can_online = self.teacher is not None and hasattr(self.teacher, "logits_on_device")
        mode = self.teacher_mode
        if mode == "auto":
            mode = "online" if (self.augment is not None and can_online) else "cached"
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

        student = self.student
        if hasattr(student, "build") and not getattr(student, "is_built", True):
            student.build(X, len(self.classes_))
        self.student_ = student.to(device)
        self.__dict__.pop("input_shapes_", None)  # a previous fit's widths do not apply
        inputs = self._student_inputs(X, "X")
        self.input_shapes_ = [tuple(t.shape[1:]) for t in inputs]
        self._check_student_output(inputs, device)

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
        val = None
        if eval_set is not None:
            X_val, y_val = eval_set
            v_n = num_rows(X_val)
            if v_n == 0:
                raise DataError("eval_set has 0 rows. Pass validation rows, or eval_set=None.")
            if val_logits is None and self.teacher is not None and not online and self.alpha > 0:
                val_logits = self._cached_logits(X_val, "validation rows")
            val = {
                "inputs": tuple(t.to(device) for t in self._student_inputs(X_val, "eval_set")),
                "targets": self._encode_labels(y_val, v_n, "eval_set").to(device),
                "teacher_logits": (
                    val_logits.to(device)
                    if val_logits is not None and self.teacher is not None and self.alpha > 0
                    else None
                ),
            }

        self._resolve_auto(device, targets.shape[0])
        inputs = tuple(t.to(device) for t in inputs)
        targets = targets.to(device)
        if teacher_logits is not None:
            teacher_logits = teacher_logits.to(device)
        if class_weight is not None:
            class_weight = class_weight.to(device)

        checkpoint = None
        if self.checkpoint_dir is not None or resume_state is not None:
            from . import checkpoint as _ckpt

            run = self._run_identity(inputs, targets, teacher_logits, val, online)
            if resume_state is not None:
                _ckpt.check_same_run(resume_state.run, run, self._resume_path)
            if self.checkpoint_dir is not None:
                checkpoint = (Path(self.checkpoint_dir) / _ckpt.CHECKPOINT_NAME, run)
        source = _MemoryBatches(
            inputs,
            targets,
            teacher_logits,
            self.batch_size_,
            self.dist_,
            _has_batch_norm(self.student_),
            self.temperature,
        )
        return self._fit_source(
            source,
            class_weight,
            val,
            device,
            generator,
            online,
            checkpoint=checkpoint,
            resume_state=resume_state,
            started=started,
        )

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
        student = self.student
        if hasattr(student, "build") and not getattr(student, "is_built", True):
            student.build(
                sample if sample is not None else stream.sample(self.seed), len(self.classes_)
            )
        self.student_ = student.to(device)
        self.__dict__.pop("input_shapes_", None)
        probe = self._student_inputs(stream.read_row_groups([0], stream.columns).iloc[:2], "stream")
        self.input_shapes_ = [tuple(t.shape[1:]) for t in probe]
        self._check_student_output(probe, device)
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
        val = self._val_inputs(eval_set, online, device)
        self._resolve_auto(device, stream.num_rows)
        checkpoint = None
        if self.checkpoint_dir is not None or resume_state is not None:
            from . import checkpoint as _ckpt

            teacher_fp = None
            if logits is not None:
                from .datasets.parquet import teacher_fingerprint

                teacher_fp = f"{teacher_fingerprint(self.teacher)}:{stream.fingerprint()}"
            run = self._run_identity(stream.fingerprint(), None, teacher_fp, val, online)
            if resume_state is not None:
                _ckpt.check_same_run(resume_state.run, run, self._resume_path)
            if self.checkpoint_dir is not None:
                checkpoint = (Path(self.checkpoint_dir) / _ckpt.CHECKPOINT_NAME, run)
        source = _StreamBatches(
            self, stream, logits, self.batch_size_, _has_batch_norm(self.student_)
        )
        return self._fit_source(
            source,
            class_weight,
            val,
            device,
            generator,
            online,
            checkpoint=checkpoint,
            resume_state=resume_state,
            started=started,
        )

    def _val_inputs(
        self, eval_set: tuple[Any, Any] | None, online: bool, device: torch.device
    ) -> dict[str, Any] | None:
        if eval_set is None:
            return None
        if not (isinstance(eval_set, (tuple, list)) and len(eval_set) == 2):
            raise DataError("eval_set must be a pair (X_val, y_val). Pass eval_set=(X_val, y_val).")
        X_val, y_val = eval_set
        v_n = num_rows(X_val)
        if v_n == 0:
            raise DataError("eval_set has 0 rows. Pass validation rows, or eval_set=None.")
        use_teacher = self.teacher is not None and not online and self.alpha > 0
        return {
            "inputs": tuple(t.to(device) for t in self._student_inputs(X_val, "eval_set")),
            "targets": self._encode_labels(y_val, v_n, "eval_set").to(device),
            "teacher_logits": (
                self._cached_logits(X_val, "validation rows").to(device) if use_teacher else None
            ),
        }

    # ------------------------------------------------------------------ device, defaults, DDP

    def _setup_device(self) -> torch.device:
        """The training device; under ``torchrun`` also the process group (``dist_``)."""
        from .distributed import distributed_context, launched_distributed

        device = resolve_device(self.device)
        self.dist_: DistContext | None = None
        if self.distributed is True or (self.distributed == "auto" and launched_distributed()):
            ctx = distributed_context(device.type)
            if ctx.world_size > 1:
                self.dist_ = ctx
                if device.type == "cuda" and device.index is None:
                    device = torch.device("cuda", ctx.local_rank)
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
        self.precision_ = self._precision_for(device)

    def _precision_for(self, device: torch.device) -> str:
        if self.precision != "auto":
            return check_precision(self.precision)
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16-mixed"
        return "32"

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
    )

    def _read_resume(self, resume: bool | str | Path | None) -> Any:
        """The :class:`~crosskd.checkpoint.TrainingState` to continue from, or None."""
        from . import checkpoint as _ckpt

        self._resume_path = None
        if resume is None or resume is False:
            return None
        if resume is True:
            if self.checkpoint_dir is None:
                raise ConfigError(
                    "resume=True continues from checkpoint_dir, but checkpoint_dir is None. Pass "
                    "Distiller(..., checkpoint_dir=folder), or resume=path of a checkpoint."
                )
            path = _ckpt.resolve_checkpoint(self.checkpoint_dir, must_exist=False)
            if not path.is_file():
                return None  # nothing to resume yet: a fresh run that writes checkpoints
        elif isinstance(resume, (str, Path)) or hasattr(resume, "__fspath__"):
            path = _ckpt.resolve_checkpoint(resume)
        else:
            raise ConfigError(
                f"resume must be None, True or the path of a checkpoint (file or folder), got "
                f"{type(resume).__name__}."
            )
        self._resume_path = path
        return _ckpt.load_checkpoint(path)

    def _run_identity(
        self,
        inputs: Inputs,
        targets: torch.Tensor,
        teacher_logits: torch.Tensor | None,
        val: dict[str, Any] | None,
        online: bool,
    ) -> dict[str, Any]:
        """Settings and fingerprints that must match for a checkpoint to be resumed."""
        from .checkpoint import tensor_fingerprint

        def plain(value: Any) -> Any:
            if isinstance(value, Mapping):
                return {str(k): plain(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            return value.item() if isinstance(value, np.generic) else value

        settings = {name: plain(getattr(self, name)) for name in self._RUN_SETTINGS}
        # The values this run trains with ("auto" may resolve differently on another device).
        settings.update(batch_size=self.batch_size_, lr=self.lr_, precision=self.precision_)
        if self.dist_ is not None:
            settings["world_size"] = self.dist_.world_size
        student_shapes = {k: list(v.shape) for k, v in self.student_.state_dict().items()}
        if isinstance(inputs, str):  # a stream: fingerprints of the file and of the cached logits
            data_fp = targets_fp = inputs
            teacher_fp = "online" if online else teacher_logits
        else:
            data_fp, targets_fp = tensor_fingerprint(*inputs), tensor_fingerprint(targets)
            teacher_fp = "online" if online else tensor_fingerprint(teacher_logits)
        return {
            "settings": settings,
            "data": data_fp,
            "targets": targets_fp,
            "teacher": teacher_fp,
            "validation": (
                None
                if val is None
                else tensor_fingerprint(*val["inputs"], val["targets"], val["teacher_logits"])
            ),
            "student": f"{type(self.student_).__name__}:{sorted(student_shapes.items())}",
        }

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

    def _step_loss(
        self,
        s_logits: torch.Tensor,
        t_logits: torch.Tensor | None,
        target: torch.Tensor,
        class_weight: torch.Tensor | None,
        soft: bool = False,
    ) -> dict[str, torch.Tensor]:
        """:func:`crosskd.losses.distillation_loss` without its per-step host synchronisations.

        The label checks that make ``hard_loss`` read values back from the device run once on the
        encoded targets before training instead. With ``soft``, ``t_logits`` holds the cached
        teacher targets prepared once by :func:`crosskd.losses.packed_soft_targets`, and
        the soft term ``T^2 * mean(sum(q log q) - sum(q log p))`` skips the teacher's softmax per
        step: the same value as ``kd_loss`` up to float rounding.
        """
        a = float(self.alpha)
        zero = s_logits.new_zeros((), dtype=torch.float32)
        if a > 0 and soft:
            kd = kd_loss_from_packed(s_logits, t_logits, self.temperature)
        elif a > 0:
            kd = kd_loss(s_logits, t_logits, self.temperature)
        else:
            kd = zero
        if a < 1:
            ce = hard_loss(s_logits, target, class_weight, self.focal_gamma, check_labels=False)
        else:
            ce = zero
        return {"loss": a * kd + (1.0 - a) * ce, "kd": kd.detach(), "ce": ce.detach()}

    def _make_optimizer(self, student: nn.Module) -> torch.optim.Optimizer:
        """AdamW, fused when every parameter allows it (measured ~1.6x faster steps on CPU)."""
        params = [p for p in student.parameters()]
        fusable = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        if fusable:
            try:
                return torch.optim.AdamW(
                    params, lr=self.lr_, weight_decay=self.weight_decay, fused=True
                )
            except (RuntimeError, TypeError):
                pass
        return torch.optim.AdamW(params, lr=self.lr_, weight_decay=self.weight_decay)

    def _fit_source(
        self,
        source: _MemoryBatches | _StreamBatches,
        class_weight: torch.Tensor | None,
        val: dict[str, Any] | None,
        device: torch.device,
        generator: torch.Generator,
        online: bool,
        checkpoint: tuple[Path, dict[str, Any]] | None,
        resume_state: Any,
        started: float,
    ) -> Distiller:
        """The end of ``fit`` for either batch source: train, eval mode, timing; returns self."""
        self._train(
            source,
            class_weight,
            val,
            device,
            generator,
            online,
            checkpoint=checkpoint,
            resume_state=resume_state,
        )
        self.student_.eval()
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _train(
        self,
        source: _MemoryBatches | _StreamBatches,
        class_weight: torch.Tensor | None,
        val: dict[str, Any] | None,
        device: torch.device,
        generator: torch.Generator,
        online: bool,
        checkpoint: tuple[Path, dict[str, Any]] | None = None,
        resume_state: Any = None,
    ) -> None:
        student = self.student_
        ctx = self.dist_
        main = self._is_main()
        steps_per_epoch = source.steps_per_epoch
        total_steps = steps_per_epoch * self.epochs
        warmup = min(100, max(1, total_steps // 20))
        optimizer = self._make_optimizer(student)

        def lr_at(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total_steps - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
        precision = self.precision_
        use_scaler = precision == "16-mixed" and device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        monitor = self._monitor_name()
        higher_is_better = monitor != "loss"
        best_value, best_state, best_epoch, bad_epochs = None, None, 0, 0
        self.history_: list[dict[str, float]] = []
        first_epoch = 0
        if resume_state is not None:
            from .checkpoint import restore_rng

            state = resume_state
            student.load_state_dict(state.model)
            optimizer.load_state_dict(state.optimizer)
            scheduler.load_state_dict(state.scheduler)
            if state.scaler:
                scaler.load_state_dict(state.scaler)
            restore_rng(state.rng, generator)
            best_value, best_epoch, bad_epochs = (
                state.best_value,
                state.best_epoch,
                state.bad_epochs,
            )
            if state.best_state is not None:
                best_state = {k: v.to(device) for k, v in state.best_state.items()}
            self.history_ = [dict(record) for record in state.history]
            first_epoch = self.epochs if state.stopped else state.epoch

        model: nn.Module = student
        if ctx is not None:
            from torch.nn.parallel import DistributedDataParallel

            # The teacher is never wrapped: it has no gradients to average.
            model = DistributedDataParallel(
                student, device_ids=[device.index] if device.type == "cuda" else None
            )
        bar = _progress(
            range(first_epoch, self.epochs), enabled=self.progress and main, desc="distil"
        )
        for epoch in bar:
            student.train()
            # Kept on the device and summed once per epoch: no host sync (and no extra kernels)
            # per step.
            step_terms: list[torch.Tensor] = []
            step_rows: list[int] = []
            epoch_started = time.perf_counter()
            for batch, cached, target in source.epoch(generator, device):
                if self.augment is not None:
                    batch = self.augment(batch)
                t_logits = (
                    self.teacher.logits_on_device(*batch)  # type: ignore[union-attr]
                    if online
                    else cached
                )
                soft = cached is not None and not online
                with autocast(device, precision):
                    s_logits = model(*batch)
                terms = self._step_loss(s_logits, t_logits, target, class_weight, soft=soft)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(terms["loss"]).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                step_terms += (terms["loss"].detach(), terms["kd"], terms["ce"])
                step_rows.append(target.shape[0])
            sums_t = torch.zeros(4, dtype=torch.float64, device=device)
            if step_rows:
                weights = torch.tensor(step_rows, dtype=torch.float64, device=device)
                per_step = torch.stack(step_terms).double().view(-1, 3)
                sums_t[:3] = (per_step * weights[:, None]).sum(dim=0)
                sums_t[3] = weights.sum()
            if ctx is not None:
                import torch.distributed as dist

                dist.all_reduce(sums_t)  # every rank sees the same epoch figures
            values = sums_t.tolist()
            sums = dict(zip(("loss", "kd", "ce"), values[:3], strict=True))
            n_rows = values[3]
            if not math.isfinite(sums["loss"]):
                raise TrainingError(
                    f"Training diverged: the loss became {sums['loss']} in epoch {epoch + 1}. Lower "
                    f"lr (now {self.lr_:g}), use precision='32' (now {precision!r}), or check the "
                    "inputs for extreme values."
                )
            record: dict[str, float] = {"epoch": epoch + 1}
            record.update({f"train_{k}": v / n_rows for k, v in sums.items()})
            record["epoch_seconds"] = time.perf_counter() - epoch_started
            if val is not None:
                record.update(self._validate_everywhere(val, class_weight, device))
            self.history_.append(record)
            stop_now = False
            value = record.get(f"val_{monitor}") if val is not None else None
            if value is not None and math.isfinite(value):
                improved = best_value is None or (
                    value > best_value if higher_is_better else value < best_value
                )
                if improved:
                    best_value, best_epoch, bad_epochs = value, epoch + 1, 0
                    best_state = copy.deepcopy(student.state_dict())
                else:
                    bad_epochs += 1
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix({f"val_{monitor}": f"{value:.4f}", "best": best_epoch})
                stop_now = self.early_stopping is not None and bad_epochs >= self.early_stopping
            if checkpoint is not None and (
                stop_now or (epoch + 1) % self.checkpoint_every == 0 or epoch + 1 == self.epochs
            ):
                from .checkpoint import TrainingState, capture_rng, save_checkpoint

                path, run = checkpoint
                if main:  # only rank 0 writes files
                    save_checkpoint(
                        path,
                        TrainingState(
                            epoch=epoch + 1,
                            stopped=stop_now,
                            model=student.state_dict(),
                            optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict(),
                            scaler=scaler.state_dict(),
                            rng=capture_rng(generator),
                            best_value=best_value,
                            best_epoch=best_epoch,
                            bad_epochs=bad_epochs,
                            best_state=best_state,
                            history=self.history_,
                            run=run,
                        ),
                    )
                self.checkpoint_path_ = path
            if stop_now:
                break
        if best_state is not None:
            student.load_state_dict(best_state)
        self.best_epoch_ = best_epoch if best_state is not None else len(self.history_)
        self.best_score_ = best_value
        self.monitor_ = f"val_{monitor}" if val is not None else None

    def _validate_everywhere(
        self, val: dict[str, Any], class_weight: torch.Tensor | None, device: torch.device
    ) -> dict[str, float]:
        """Validation metrics, identical on every rank (so that early stopping agrees).

        Under DDP the weights are the same on every rank; rank 0 computes the metrics (average
        precision and the like do not decompose over shards) and broadcasts them, errors included,
        so that no rank waits for one that failed.
        """
        if self.dist_ is None:
            return self._validate(val, class_weight, device)
        from .distributed import broadcast_object

        outcome: tuple[str, Any] = ("ok", None)
        if self.dist_.is_main:
            try:
                outcome = ("ok", self._validate(val, class_weight, device))
            except ConfigError as err:
                outcome = ("error", str(err))
        outcome = broadcast_object(outcome)
        if outcome[0] == "error":
            raise ConfigError(outcome[1])
        return outcome[1]

    def _monitor_name(self) -> str:
        if self.val_metric != "auto":
            return self.val_metric
        return "average_precision" if len(self.classes_) == 2 else "accuracy"

    def _validate(
        self, val: dict[str, Any], class_weight: torch.Tensor | None, device: torch.device
    ) -> dict[str, float]:
        logits = self._forward_batched(val["inputs"], device)
        terms = distillation_loss(
            logits,
            val["teacher_logits"],
            val["targets"],
            self.temperature,
            self.alpha if val["teacher_logits"] is not None else 0.0,
            class_weight=class_weight,
            focal_gamma=self.focal_gamma,
        )
        out = {f"val_{k}": float(v) for k, v in terms.items()}
        proba = torch.softmax(logits.float(), dim=-1).cpu().double().numpy()
        metrics = _metrics.classification_metrics(val["targets"].cpu().numpy(), proba)
        out.update({f"val_{k}": float(v) for k, v in metrics.items()})
        if self.val_metric not in ("auto", "loss") and self.val_metric not in metrics:
            raise ConfigError(
                f"val_metric={self.val_metric!r} is not computed here; choose 'loss' or one of "
                f"{sorted(metrics)}."
            )
        return out

    def _forward_batched(self, inputs: Inputs, device: torch.device) -> torch.Tensor:
        student = self.student_
        was_training = student.training
        student.eval()
        n = inputs[0].shape[0]
        parts = []
        # The training precision after fit; a loaded model with precision="auto" predicts in
        # float32 (full-precision probabilities unless bf16 / fp16 was asked for).
        precision = getattr(self, "precision_", None) or (
            "32" if self.precision == "auto" else check_precision(self.precision)
        )
        with torch.inference_mode():
            for start in range(0, n, self.chunk_size):
                batch = tuple(t[start : start + self.chunk_size].to(device) for t in inputs)
                with autocast(device, precision):
                    parts.append(student(*batch).float())
        student.train(was_training)
        return torch.cat(parts) if parts else torch.empty(0, len(self.classes_), device=device)

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
        return self._forward_batched(self._student_inputs(X), device).cpu()

    def predict_proba(self, X: Any) -> np.ndarray:
        """Student class probabilities, ``(n_samples, num_classes)`` float64, columns in ``classes_`` order."""
        return torch.softmax(self.predict_logits(X).double(), dim=-1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class label of each row."""
        proba = self.predict_proba(X)
        return np.asarray(self.classes_, dtype=object)[proba.argmax(axis=1)]

    def evaluate(self, X: Any, y: Any) -> dict[str, float]:
        """Student metrics on labelled rows: ``roc_auc``, ``average_precision``, ``accuracy``,
        ``log_loss`` for two classes; ``accuracy``, ``log_loss`` otherwise."""
        self._check_fitted()
        targets = self._encode_labels(y, num_rows(X), "evaluate").numpy()
        return _metrics.classification_metrics(targets, self.predict_proba(X))

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
        meta = {
            "classes": list(self.classes_),
            "temperature": float(self.temperature),
            "alpha": float(self.alpha),
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
        out.classes_ = tuple(settings["classes"])
        out.history_ = settings.get("history", [])
        out.best_epoch_ = settings.get("best_epoch", len(out.history_))
        return out


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


def _progress(iterable: Any, enabled: bool, desc: str) -> Any:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit="epoch", leave=False)


def auto_batch_size(device: torch.device | str, n_rows: int) -> int:
    """The ``batch_size="auto"`` choice: rows per step for ``n_rows`` training rows per process.

    CPU: 512 (small batches train best per epoch there, and larger ones barely run faster). CUDA:
    the largest power of two in [512, 16384] that still gives at least 64 steps per epoch: a GPU
    runs a 512-row step of a small MLP in about the time of a 16k-row one, so throughput grows with
    the batch until the kernels fill the device.
    """
    device = torch.device(device) if isinstance(device, str) else device
    if device.type != "cuda":
        return CPU_BATCH_SIZE
    fit = max(1, n_rows // _AUTO_MIN_STEPS)
    return int(min(CUDA_MAX_BATCH_SIZE, max(CPU_BATCH_SIZE, 1 << (fit.bit_length() - 1))))


def _batch_bounds(n: int, batch_size: int, batch_norm: bool) -> list[tuple[int, int]]:
    starts = list(range(0, n, batch_size))
    if batch_norm and n - starts[-1] == 1:
        # BatchNorm cannot normalise a batch of one row in training mode: the last row joins
        # the previous batch instead.
        if len(starts) == 1:
            raise DataError(
                "The student has BatchNorm layers, which need at least 2 rows per batch in "
                "training, but there is 1 training row. Pass more rows, or a student without "
                "BatchNorm."
            )
        starts.pop()
    return list(zip(starts, starts[1:] + [n], strict=True))


class _MemoryBatches:
    """Batches of in-memory tensors already on the device.

    Each epoch draws one permutation of all rows (the same on every rank: same seed); under DDP
    rank r takes every world-th entry starting at r (so step i of all ranks together covers the rows
    of step i of one process with a batch world times larger), after dropping the last
    ``n % world`` entries so that every rank runs the same number of steps. Inputs up to
    :data:`PERMUTE_ONCE_BYTES` are permuted once per epoch and sliced per step.
    """

    def __init__(
        self,
        inputs: Inputs,
        targets: torch.Tensor,
        teacher_logits: torch.Tensor | None,
        batch_size: int,
        ctx: DistContext | None,
        batch_norm: bool,
        temperature: float,
    ) -> None:
        self.inputs, self.targets = inputs, targets
        self.teacher_logits = (
            None if teacher_logits is None else packed_soft_targets(teacher_logits, temperature)
        )
        self.n = int(targets.shape[0])
        self.world, self.rank = (ctx.world_size, ctx.rank) if ctx is not None else (1, 0)
        self.n_local = self.n // self.world
        if self.n_local == 0:
            raise DataError(
                f"{self.n} training row(s) cannot be shared among {self.world} processes. Pass at "
                "least one row per process, or launch fewer processes."
            )
        self.bounds = _batch_bounds(self.n_local, batch_size, batch_norm)
        nbytes = sum(t.numel() * t.element_size() for t in inputs)
        self.permute_once = nbytes <= PERMUTE_ONCE_BYTES

    @property
    def steps_per_epoch(self) -> int:
        return len(self.bounds)

    def epoch(
        self, generator: torch.Generator, device: torch.device
    ) -> Iterator[tuple[Inputs, torch.Tensor | None, torch.Tensor]]:
        order = torch.randperm(self.n, generator=generator).to(device)
        if self.world > 1:
            order = order[: self.n_local * self.world][self.rank :: self.world]
        tensors = [*self.inputs, self.targets]
        if self.teacher_logits is not None:
            tensors.append(self.teacher_logits)
        k = len(self.inputs)
        if self.permute_once:
            permuted = [t.index_select(0, order) for t in tensors]
            for start, stop in self.bounds:
                parts = [t[start:stop] for t in permuted]
                yield tuple(parts[:k]), (parts[k + 1] if len(parts) > k + 1 else None), parts[k]
        else:
            for start, stop in self.bounds:
                idx = order[start:stop]
                parts = [t[idx] for t in tensors]
                yield tuple(parts[:k]), (parts[k + 1] if len(parts) > k + 1 else None), parts[k]


class _StreamBatches:
    """Batches read from a :class:`~crosskd.datasets.ParquetStream`, one buffer at a time.

    Each epoch visits the row groups in a seeded random order, ``stream.batch_rows`` rows at a time;
    a buffer is encoded, moved to the device, shuffled and cut into batches, and the rows left over
    (fewer than a batch) join the next buffer, so every row is used once per epoch and every batch
    but the last has ``batch_size`` rows.
    """

    def __init__(
        self,
        distiller: Distiller,
        stream: ParquetStream,
        logits: np.ndarray | None,
        batch_size: int,
        batch_norm: bool,
    ) -> None:
        self.distiller, self.stream, self.logits = distiller, stream, logits
        self.batch_size, self.batch_norm = batch_size, batch_norm
        self.classes = pd.Index(distiller.classes_)
        n, b = stream.num_rows, batch_size
        # A last batch of one row is dropped for BatchNorm students (it cannot be normalised).
        self.steps_per_epoch = n // b + (1 if n % b > (1 if batch_norm else 0) else 0)

    def _labels(self, values: pd.Series) -> torch.Tensor:
        codes = self.classes.get_indexer(pd.Index(values.to_numpy()))
        missing = values.isna().to_numpy()
        codes[missing] = IGNORE_LABEL
        return torch.from_numpy(codes.astype(np.int64))

    def epoch(
        self, generator: torch.Generator, device: torch.device
    ) -> Iterator[tuple[Inputs, torch.Tensor | None, torch.Tensor]]:
        stream, b = self.stream, self.batch_size
        order = torch.randperm(len(stream.row_group_sizes), generator=generator).tolist()
        carry: list[torch.Tensor] | None = None
        for ids, frame in stream.chunks([*stream.columns, stream.target], order):
            inputs = self.distiller._student_inputs(frame[stream.columns], "stream")
            tensors = [*inputs, self._labels(frame[stream.target])]
            if self.logits is not None:
                logits = torch.from_numpy(np.ascontiguousarray(self.logits[ids]))
                tensors.append(packed_soft_targets(logits, self.distiller.temperature))
            del frame
            tensors = [t.to(device) for t in tensors]
            if carry is not None:
                tensors = [torch.cat([c, t]) for c, t in zip(carry, tensors, strict=True)]
            perm = torch.randperm(tensors[0].shape[0], generator=generator).to(device)
            tensors = [t.index_select(0, perm) for t in tensors]
            full = tensors[0].shape[0] // b * b
            for start in range(0, full, b):
                yield self._split([t[start : start + b] for t in tensors])
            carry = [t[full:] for t in tensors]
        if carry is not None and carry[0].shape[0] > (1 if self.batch_norm else 0):
            yield self._split(carry)

    def _split(self, parts: list[torch.Tensor]) -> tuple[Inputs, torch.Tensor | None, torch.Tensor]:
        k = len(parts) - (2 if self.logits is not None else 1)
        return tuple(parts[:k]), (parts[k + 1] if self.logits is not None else None), parts[k]
