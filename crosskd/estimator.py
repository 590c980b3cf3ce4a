"""A scikit-learn estimator around :class:`crosskd.Distiller`: :class:`KDClassifier`.

``KDClassifier`` is what a fraud team drops into a ``Pipeline``, ``cross_val_score`` or
``GridSearchCV``: settings in ``__init__`` (all plain values, so ``clone`` and ``get_params`` work),
``fit(X, y)`` trains a :class:`~crosskd.tabular.TabularStudent` on the teacher's softened
probabilities, ``predict`` / ``predict_proba`` use the student only.

The teacher can be

- any crosskd :class:`~crosskd.teachers.Teacher` (used as is);
- a fitted scikit-learn classifier, pipeline or anomaly detector (wrapped in
  :class:`~crosskd.teachers.SklearnTeacher`; an anomaly detector's slope of P(anomaly) is fitted
  on the training rows, see its ``anomaly_scale``) or a fitted LightGBM model (wrapped in
  :class:`~crosskd.teachers.LightGBMTeacher`);
- an *unfitted* scikit-learn / LightGBM estimator, which ``fit`` clones and fits on the training
  rows first (a LightGBM model on the rows as :func:`crosskd.fit_lightgbm` gives them: text and
  bool columns as categories, any column names). This is what happens inside ``cross_val_score``
  and ``GridSearchCV``: ``clone`` turns a fitted teacher into an unfitted copy, so every fold gets
  a teacher that never saw its test rows (no leakage);
- None: the student learns from the labels only (``alpha`` and ``temperature`` have no effect),
  the "student alone" baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from .exceptions import ConfigError, TeacherError
from .teachers.base import Teacher

__all__ = ["KDClassifier"]

_FIT_TEACHER = ("auto", True, False)


class KDClassifier(ClassifierMixin, BaseEstimator):
    """Distil a teacher into a small tabular network, as a scikit-learn classifier.

    Args:
        teacher: a crosskd Teacher; a fitted scikit-learn / LightGBM model (wrapped
            automatically); an unfitted one (fitted on the training rows, see ``fit_teacher``); or
            None to train on labels only.
        hidden: widths of the student's hidden layers; ``()`` is a linear model.
        temperature: T > 0 of the soft term.
        alpha: weight of the distillation term in [0, 1]; ``1 - alpha`` weighs the label term.
            Ignored (taken as 0) when ``teacher`` is None.
        epochs: passes over the training rows.
        batch_size: rows per optimisation step.
        lr: AdamW learning rate (cosine-decayed).
        weight_decay: AdamW weight decay.
        class_weight: weights of the label term: None, ``"balanced"`` or a mapping label -> weight.
        dropout: dropout after each hidden layer of the student.
        categorical: names of DataFrame columns to embed as categories (None: auto-detect text,
            ``category`` and bool columns).
        fit_teacher: ``"auto"`` fits a clone of an unfitted scikit-learn / LightGBM teacher on the
            training rows and uses a fitted one as is; ``True`` always fits a clone (the teacher
            you pass is never modified); ``False`` never fits (an unfitted teacher is an error).
        validation_fraction: share of the training rows held out for early stopping and
            best-weights restore; None trains all epochs on all rows.
        early_stopping: epochs without improvement before stopping (used only with
            ``validation_fraction``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        precision: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"``.
        seed: seeds weight initialisation, shuffling and the validation split (fits are
            reproducible).
        progress: show a progress bar over epochs.

    Attributes:
        classes_: class labels, ``(n_classes,)``; the columns of ``predict_proba``.
        n_features_in_: number of input columns.
        feature_names_in_: input column names (only when fitted on a DataFrame with string names).
        distiller_: the fitted :class:`crosskd.Distiller` (its ``history_`` holds the loss terms).
        teacher_: the crosskd Teacher used (None without a teacher).

    Example:
        >>> from sklearn.linear_model import LogisticRegression
        >>> clf = KDClassifier(teacher=LogisticRegression(), epochs=5).fit(X, y)
        >>> clf.predict_proba(X[:3])
    """

    def __init__(
        self,
        teacher: Any = None,
        hidden: Sequence[int] = (32, 16),
        temperature: float = 2.0,
        alpha: float = 0.7,
        epochs: int = 30,
        batch_size: int = 512,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        class_weight: str | Mapping[Any, float] | None = None,
        dropout: float = 0.0,
        categorical: Sequence[str] | None = None,
        fit_teacher: bool | str = "auto",
        validation_fraction: float | None = None,
        early_stopping: int = 5,
        device: str = "cpu",
        precision: str = "32",
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        self.teacher = teacher
        self.hidden = hidden
        self.temperature = temperature
        self.alpha = alpha
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.class_weight = class_weight
        self.dropout = dropout
        self.categorical = categorical
        self.fit_teacher = fit_teacher
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.device = device
        self.precision = precision
        self.seed = seed
        self.progress = progress

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # NaN gets a missing-value indicator in the student
        return tags

    # ------------------------------------------------------------------ input checks

    def _validate_X(self, X: Any, reset: bool) -> Any:
        """DataFrames pass through (text columns are the encoder's job); arrays become numeric."""
        if isinstance(X, pd.DataFrame):
            validate_data(self, X, skip_check_array=True, reset=reset)
            return X
        return validate_data(
            self,
            X,
            reset=reset,
            dtype="numeric",
            ensure_all_finite="allow-nan",
            ensure_min_samples=1,
        )

    def _resolve_teacher(self, X: Any, y: np.ndarray) -> Teacher | None:
        if self.fit_teacher not in _FIT_TEACHER or (
            isinstance(self.fit_teacher, (int, float)) and not isinstance(self.fit_teacher, bool)
        ):
            raise ConfigError(
                f"fit_teacher must be 'auto', True or False, got {self.fit_teacher!r}."
            )
        teacher = self.teacher
        if teacher is None:
            return None
        if isinstance(teacher, Teacher):
            if self.fit_teacher is True:
                raise ConfigError(
                    f"fit_teacher=True fits the teacher on the training rows, but a "
                    f"{type(teacher).__name__} is already a crosskd Teacher. Pass the unwrapped "
                    "scikit-learn / LightGBM model instead, or fit_teacher='auto'."
                )
            return teacher
        if not hasattr(teacher, "fit"):
            raise TeacherError(
                f"teacher must be a crosskd Teacher, a scikit-learn / LightGBM model or None; got "
                f"a {type(teacher).__name__}. Wrap torch modules in crosskd.ModuleTeacher."
            )
        fitted = _is_fitted(teacher)
        lightgbm = type(teacher).__module__.split(".")[0] == "lightgbm"
        if self.fit_teacher is True or (self.fit_teacher == "auto" and not fitted):
            teacher = clone(teacher)
            if lightgbm:
                from .tabular.gbdt import to_lightgbm_frame

                # As crosskd distill does: text and bool columns become categories, and column
                # names LightGBM refuses are escaped (LightGBMTeacher maps them back).
                teacher.fit(to_lightgbm_frame(X), y)
            else:
                teacher.fit(X, y)
        elif not fitted:
            raise TeacherError(
                f"The teacher {type(teacher).__name__} is not fitted and fit_teacher=False. Fit it "
                "first, or pass fit_teacher='auto' to fit a copy on the training rows."
            )
        if lightgbm:
            from .teachers.lightgbm import LightGBMTeacher

            return LightGBMTeacher(teacher)
        from .teachers.sklearn import SklearnTeacher

        wrapped = SklearnTeacher(teacher)
        if wrapped.info.extra.get("method") == "anomaly" and wrapped.anomaly_scale_ is None:
            wrapped.fit_anomaly_scale(X)  # the slope of P(anomaly) from these training rows
        return wrapped

    # ------------------------------------------------------------------ fit / predict

    def fit(self, X: Any, y: Any, *, transfer: Any = None) -> KDClassifier:
        """Fit the teacher if needed, then distil it into a new student.

        Args:
            X: training rows, a DataFrame (text / category columns are embedded) or a 2-D array
                ``(n_samples, n_features)``; NaN is allowed.
            y: labels ``(n_samples,)``; with a teacher they must be among its classes.
            transfer: optional unlabelled rows that get the teacher's soft targets only.

        Returns:
            self.

        Raises:
            ValueError: empty, 1-D, complex or infinite X, continuous y, a single class, labels
                the teacher does not know (crosskd's DataError / ConfigError are ValueErrors).
        """
        from .tabular import TabularEncoder, TabularStudent
        from .trainer import Distiller

        X = self._validate_X(X, reset=True)
        y = column_or_1d(np.asarray(y) if not isinstance(y, pd.Series) else y, warn=True)
        check_classification_targets(y)
        if len(y) != (X.shape[0]):
            raise ValueError(f"X has {X.shape[0]} rows but y has {len(y)} labels; they must match.")
        teacher = self._resolve_teacher(X, y)
        student = TabularStudent(
            hidden=tuple(self.hidden) if not isinstance(self.hidden, int) else (self.hidden,),
            dropout=self.dropout,
            encoder=TabularEncoder(categorical=self.categorical),
        )
        distiller = Distiller(
            teacher,
            student,
            temperature=self.temperature,
            alpha=self.alpha if teacher is not None else 0.0,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            class_weight=self.class_weight,
            device=self.device,
            precision=self.precision,
            early_stopping=self.early_stopping,
            validation_fraction=self.validation_fraction,
            seed=self.seed,
            progress=self.progress,
        )
        distiller.fit(X, y, transfer=transfer)
        self.distiller_ = distiller
        self.teacher_ = teacher
        classes = list(distiller.classes_)
        self.classes_ = np.asarray(classes, dtype=object if _mixed(classes) else None)
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "distiller_")

    def predict_proba(self, X: Any) -> np.ndarray:
        """Student class probabilities, ``(n_samples, n_classes)`` float64, columns in ``classes_`` order."""
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return self.distiller_.predict_proba(X)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log of :meth:`predict_proba`, computed from the logits (no log of 0)."""
        import torch

        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        logits = self.distiller_.predict_logits(X).double()
        return torch.log_softmax(logits, dim=-1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class label of each row, ``(n_samples,)``."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]

    def save(self, path: str | Path) -> Path:
        """Save the fitted student as a safe bundle (no pickle); ``crosskd.load(path)`` reads it.

        Returns:
            The path written (``.safetensors`` appended when missing).
        """
        check_is_fitted(self)
        return self.distiller_.save(path)


def _is_fitted(model: Any) -> bool:
    from sklearn.exceptions import NotFittedError as SkNotFittedError

    if type(model).__module__.split(".")[0] == "lightgbm" and not hasattr(model, "get_params"):
        return True  # a Booster is always trained
    try:
        check_is_fitted(model)
    except SkNotFittedError:
        return False
    except TypeError:  # not an estimator at all: let the teacher adapter explain
        return True
    return True


def _mixed(values: list[Any]) -> bool:
    return len({type(v) for v in values}) > 1
