"""scikit-learn teachers: any fitted classifier or pipeline, and anomaly detectors.

``scikit-learn`` is imported only when a :class:`SklearnTeacher` is created.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..exceptions import ConfigError, DataError, NotFittedError, TeacherError
from .base import (
    Teacher,
    TeacherInfo,
    align_features,
    binary_logits_from_margin,
    logits_from_proba,
    num_rows,
)

__all__ = ["SklearnTeacher"]

_METHODS = ("auto", "predict_proba", "decision_function")


class SklearnTeacher(Teacher):
    """A fitted scikit-learn classifier (or Pipeline ending in one) or anomaly detector as a teacher.

    **Classifiers.** Logits are in the order of ``model.classes_``.

    - ``method="auto"`` or ``"predict_proba"``: ``log(clip(predict_proba(X), 1e-12))``. Its softmax
      gives back the model's probabilities (exactly, up to the clip of probabilities below 1e-12).
      This is right for every classifier with ``predict_proba``.
    - ``method="decision_function"``: the decision function used as logits, ``[0, d]`` for a binary
      model (``d`` is the score of ``classes_[1]``) and ``d`` as is for a multiclass one. This is
      exact (no clipping) only where the decision function *is* the logit: ``LogisticRegression``
      and other log-loss linear models (``SGDClassifier(loss="log_loss")``). For an SVM or
      ``RidgeClassifier`` it is a margin with an arbitrary scale, and the softmax of it is not a
      calibrated probability; use it only knowingly.

    A classifier without ``predict_proba`` (``LinearSVC``, ``SVC(probability=False)``, ...) is refused
    under ``method="auto"``: wrap it in ``sklearn.calibration.CalibratedClassifierCV`` to get
    probabilities, or pass ``method="decision_function"``.

    **Anomaly detectors** (``IsolationForest``, ``OneClassSVM``, ``LocalOutlierFactor(novelty=True)``,
    ``EllipticEnvelope``, or a Pipeline ending in one) have a ``decision_function`` ``d`` that is
    positive for normal rows and negative for outliers, with the detector's own threshold at
    ``d = 0``. They become a two-class teacher with ``classes=(0, 1)`` meaning (normal, anomaly) and
    logits ``[0, -anomaly_scale * d]``, so that::

        P(anomaly) = sigmoid(-anomaly_scale * d)

    which is 0.5 exactly at the detector's threshold and tends to 1 for clear outliers.
    ``anomaly_scale`` is this adapter's mapping of a score to a logit (``d`` has different units
    for each detector); it sets how sharp the probabilities are and never moves the threshold. It is
    not the distillation temperature, which is applied later, in :func:`crosskd.losses.soften`.

    ``anomaly_scale="auto"`` (the default) fits the slope from the spread of the detector's scores
    on the training rows::

        anomaly_scale = pi / (sqrt(3) * sigma),   sigma = 1.4826 * median(|d - median(d)|)

    (sigma is a robust standard deviation of ``d``, which the outliers hardly move). A logistic
    variable of standard deviation sigma turns into a uniform one under this sigmoid, so the
    training rows' P(anomaly) spread over (0, 1) instead of bunching around 0.5: with a slope of 1,
    an ``IsolationForest``'s P(anomaly) lie within about [0.44, 0.52] on fraud data. The training
    rows are the rows given to :meth:`fit_anomaly_scale`, or else the first rows the teacher scores
    (:class:`crosskd.Distiller` scores its training rows first; :class:`crosskd.KDClassifier` calls
    :meth:`fit_anomaly_scale` with its training rows). The slope is then fixed: every later call
    uses it. The fitted value is in ``anomaly_scale_`` and ``info.extra["anomaly_scale"]``.

    Args:
        model: a fitted scikit-learn classifier, Pipeline, or outlier detector.
        method: "auto", "predict_proba" or "decision_function" (see above).
        anomaly_scale: slope of the sigmoid for anomaly detectors: a number > 0, or ``"auto"`` to
            fit it from the training rows' scores (see above).
        batch_size: rows per call of the model; None scores all rows at once.

    Attributes:
        anomaly_scale_: the slope in use for an anomaly detector (None until ``"auto"`` is fitted,
            and for classifiers).

    Input rows may be a DataFrame, a numpy array or a torch tensor ``(n_samples, n_features)``. When
    the model was fitted on a DataFrame, columns are matched by name (reordered, extra ones ignored).

    Raises:
        NotFittedError: the model has not been fitted.
        TeacherError: the model has neither ``predict_proba`` nor ``decision_function``, is not a
            classifier or outlier detector, or lacks what ``method`` asks for.
        ConfigError: ``method`` or ``anomaly_scale`` is invalid.
    """

    #: Fewest rows ``anomaly_scale="auto"`` fits its slope on.
    MIN_SCALE_ROWS = 20

    def __init__(
        self,
        model: Any,
        method: str = "auto",
        anomaly_scale: float | str = "auto",
        batch_size: int | None = None,
    ) -> None:
        from sklearn.base import is_outlier_detector
        from sklearn.exceptions import NotFittedError as SkNotFittedError
        from sklearn.utils.validation import check_is_fitted

        if method not in _METHODS:
            raise ConfigError(
                f"method must be one of {', '.join(repr(m) for m in _METHODS)}, got {method!r}."
            )
        scale: float | None = None
        if not (isinstance(anomaly_scale, str) and anomaly_scale == "auto"):
            try:
                scale = float(anomaly_scale)
            except (TypeError, ValueError):
                scale = math.nan
            if isinstance(anomaly_scale, (str, bool)) or not math.isfinite(scale) or scale <= 0:
                raise ConfigError(
                    f"anomaly_scale must be 'auto' or a finite number > 0, got {anomaly_scale!r}."
                )
        name = type(model).__name__
        if not hasattr(model, "fit"):
            raise TeacherError(
                f"SklearnTeacher takes a fitted scikit-learn estimator; got a {name}. For a torch "
                "module use ModuleTeacher; for LightGBM use LightGBMTeacher."
            )
        try:
            check_is_fitted(model)
        except SkNotFittedError:
            raise NotFittedError(
                f"This {name} is not fitted yet. Call its fit(X, y) before wrapping it in "
                "SklearnTeacher."
            ) from None
        has_proba = hasattr(model, "predict_proba")
        has_decision = hasattr(model, "decision_function")

        if is_outlier_detector(model) and not has_proba:
            if not has_decision:
                raise TeacherError(
                    f"The outlier detector {name} has no decision_function, so it cannot score new "
                    "rows. For LocalOutlierFactor pass novelty=True and fit it again."
                )
            if method == "predict_proba":
                raise TeacherError(
                    f"{name} is an outlier detector without predict_proba. Use method='auto': "
                    "P(anomaly) = sigmoid(-anomaly_scale * decision_function(X))."
                )
            self._mode = "anomaly"
            classes: tuple[Any, ...] = (0, 1)
        else:
            if not has_proba and not has_decision:
                raise TeacherError(
                    f"{name} has neither predict_proba nor decision_function, so it gives no class "
                    "scores to distil. Use a probabilistic classifier, or wrap this one in "
                    "sklearn.calibration.CalibratedClassifierCV."
                )
            raw_classes = getattr(model, "classes_", None)
            if raw_classes is None:
                raise TeacherError(
                    f"{name} has no classes_, so it is not a classifier. SklearnTeacher takes a "
                    "fitted classifier, a Pipeline ending in one, or an outlier detector."
                )
            classes = tuple(np.asarray(raw_classes).tolist())
            if len(classes) < 2:
                raise TeacherError(
                    f"{name} was fitted on a single class ({classes!r}); a teacher needs at least "
                    "two classes. Fit it on data with every class."
                )
            if method == "auto":
                if not has_proba:
                    raise TeacherError(
                        f"{name} has no predict_proba (its decision_function is a margin, not a "
                        "probability). Wrap it in sklearn.calibration.CalibratedClassifierCV to "
                        "get probabilities, or pass method='decision_function' to use the margin "
                        "as logits knowingly."
                    )
                method = "predict_proba"
            elif method == "predict_proba" and not has_proba:
                raise TeacherError(
                    f"method='predict_proba' but {name} has no predict_proba. Use "
                    "method='decision_function', or wrap the model in CalibratedClassifierCV."
                )
            elif method == "decision_function" and not has_decision:
                raise TeacherError(
                    f"method='decision_function' but {name} has no decision_function. Use "
                    "method='predict_proba'."
                )
            self._mode = method

        self.model = model
        self.batch_size = batch_size
        self.anomaly_scale: float | str = "auto" if scale is None else scale
        self.anomaly_scale_: float | None = scale if self._mode == "anomaly" else None
        names = getattr(model, "feature_names_in_", None)
        n_features = getattr(model, "n_features_in_", None)
        extra: dict[str, Any] = {"estimator": _final_step_name(model), "method": self._mode}
        if self._mode == "anomaly":
            extra["anomaly_scale"] = self.anomaly_scale
            extra["classes_meaning"] = ("normal", "anomaly")
        self.info = TeacherInfo(
            num_classes=len(classes),
            classes=classes,
            kind="sklearn",
            feature_names=None if names is None else tuple(str(n) for n in names),
            n_features=None if n_features is None else int(n_features),
            extra=extra,
        )

    def fit_anomaly_scale(self, X: Any) -> SklearnTeacher:
        """Fit the slope of P(anomaly) from the detector's scores on the training rows ``X``.

        ``anomaly_scale_ = pi / (sqrt(3) * sigma)`` with ``sigma`` the robust standard deviation
        (1.4826 times the median absolute deviation) of ``decision_function(X)``; see the class
        docstring. The detector's threshold stays at P(anomaly) = 0.5.

        Args:
            X: ``(n_samples, n_features)`` training rows, at least :attr:`MIN_SCALE_ROWS`.

        Returns:
            self.

        Raises:
            TeacherError: the model is a classifier, not an anomaly detector.
            DataError: too few rows, or scores with no spread.
        """
        if self._mode != "anomaly":
            raise TeacherError(
                f"fit_anomaly_scale is for anomaly detectors; this SklearnTeacher wraps the "
                f"classifier {self.info.extra['estimator']}, whose probabilities need no slope."
            )
        n = num_rows(X)
        if n < self.MIN_SCALE_ROWS:
            raise DataError(
                f"SklearnTeacher fits the slope of P(anomaly) (anomaly_scale='auto') from the "
                f"spread of the detector's scores on the training rows, and got {n} row(s); it "
                f"needs at least {self.MIN_SCALE_ROWS}. Call teacher.fit_anomaly_scale(X_train) "
                "first, or pass anomaly_scale=<a number > 0>."
            )
        scores = np.asarray(self.model.decision_function(self._aligned(X)), dtype=np.float64)
        scores = scores.reshape(-1)[np.isfinite(scores.reshape(-1))]
        sigma = 1.4826 * float(np.median(np.abs(scores - np.median(scores)))) if scores.size else 0
        if not sigma > 0:  # more than half the rows share one score: fall back to the plain std
            sigma = float(np.std(scores)) if scores.size else 0.0
        if not (sigma > 0 and math.isfinite(sigma)):
            raise DataError(
                f"{type(self.model).__name__} gives all {n} rows the same score, so their spread "
                "says nothing of a slope. Fit the scale on varied training rows, or pass "
                "anomaly_scale=<a number > 0>."
            )
        self.anomaly_scale_ = math.pi / (math.sqrt(3.0) * sigma)
        self.info.extra["anomaly_scale"] = self.anomaly_scale_
        self.info.extra["anomaly_scale_rows"] = n
        return self

    def logits(self, X: Any, batch_size: int | None = None) -> torch.Tensor:
        """Teacher logits (see :meth:`Teacher.logits`); under ``anomaly_scale="auto"`` the first
        call fits the slope on its rows (see the class docstring)."""
        if self._mode == "anomaly" and self.anomaly_scale_ is None:
            self.fit_anomaly_scale(X)
        return super().logits(X, batch_size)

    def _aligned(self, X: Any) -> Any:
        if torch.is_tensor(X):
            X = X.detach().cpu().numpy()
        elif not hasattr(X, "shape"):
            X = np.asarray(X)
        return align_features(X, self.info.feature_names, self.info.n_features, "SklearnTeacher")

    def _logits(self, X: Any) -> torch.Tensor:
        X = self._aligned(X)
        if self._mode == "predict_proba":
            return logits_from_proba(np.asarray(self.model.predict_proba(X), dtype=np.float64))
        scores = np.asarray(self.model.decision_function(X), dtype=np.float64)
        if self._mode == "anomaly":
            return binary_logits_from_margin(scores.reshape(-1), -float(self.anomaly_scale_))
        if scores.ndim == 1 or (scores.ndim == 2 and scores.shape[1] == 1):
            if self.info.num_classes != 2:
                raise DataError(
                    f"{type(self.model).__name__}.decision_function returned one score per row for "
                    f"{self.info.num_classes} classes. Use method='predict_proba'."
                )
            return binary_logits_from_margin(scores.reshape(-1))
        return torch.from_numpy(scores).float()


def _final_step_name(model: Any) -> str:
    steps = getattr(model, "steps", None)
    if steps:
        return f"{type(model).__name__}({type(steps[-1][1]).__name__})"
    return type(model).__name__
