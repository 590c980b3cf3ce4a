"""LightGBM teachers: exact logits from a Booster, a fitted LGBMClassifier, or a saved model file.

LightGBM turns its raw score into a probability with a link function fixed by the objective. The
logits here reproduce that link exactly, with no clipping:

==================  ==========================================  ======================
objective           LightGBM's probability                      logits (n, C)
==================  ==========================================  ======================
binary              ``sigmoid(s * raw)``, s = ``sigmoid`` param  ``[0, s * raw]``
cross_entropy       ``sigmoid(raw)``                             ``[0, raw]``
multiclass          ``softmax(raw)``                             ``raw`` (n, K)
==================  ==========================================  ======================

Other objectives are refused with a :class:`~crosskd.exceptions.TeacherError` that says what to do:
``multiclassova`` (independent sigmoids that do not sum to 1), custom objectives (no known link),
and regression / ranking objectives (no classes).

``lightgbm`` is imported only when a :class:`LightGBMTeacher` is created.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..exceptions import BundleError, DataError, NotFittedError, TeacherError
from .base import Teacher, TeacherInfo, align_features, binary_logits_from_margin

__all__ = ["LightGBMTeacher"]

#: Objectives whose raw score is a logit, after scaling by the sigmoid parameter for "binary".
_SUPPORTED = ("binary", "cross_entropy", "multiclass")

_NOT_CLASSIFICATION = (
    "regression",
    "regression_l1",
    "huber",
    "fair",
    "poisson",
    "quantile",
    "mape",
    "gamma",
    "tweedie",
    "lambdarank",
    "rank_xendcg",
)


class LightGBMTeacher(Teacher):
    """A trained LightGBM classifier as a teacher, with exact logits.

    Args:
        model: a ``lightgbm.Booster``, a fitted ``lightgbm.LGBMClassifier``, or the path of a model
            text file written by ``Booster.save_model``.
        batch_size: rows scored per call of ``Booster.predict``; None scores all rows at once.

    Input rows (``logits(X)``) may be a DataFrame, a numpy array or a torch tensor of shape
    ``(n_samples, n_features)``. A DataFrame is matched to the model's features by column name
    (reordered, extra columns ignored; missing columns raise :class:`DataError`), unless the model was
    trained without names (``Column_0``, ...), in which case columns are taken in order. String
    columns (pandas' ``str`` or ``object`` dtype) are turned into ``category`` columns, which LightGBM
    maps with the categories it stored at training time.

    Attributes:
        info: ``num_classes``, ``classes`` (``LGBMClassifier.classes_`` when given one, else
            ``0..C-1``), ``feature_names``, ``n_features`` and ``extra`` with the objective, the
            sigmoid parameter (binary), ``num_trees`` and ``num_iterations``.
        booster: the underlying ``lightgbm.Booster``.

    Raises:
        TeacherError: the objective has no exact softmax logits (see the module docstring).
        NotFittedError: an ``LGBMClassifier`` that has not been fitted.
        BundleError: the model file is missing, truncated, or not a LightGBM text model.
    """

    def __init__(self, model: Any, batch_size: int | None = None) -> None:
        import lightgbm as lgb

        classes: Sequence[Any] | None = None
        if isinstance(model, (str, os.PathLike)):
            text = _read_model_text(Path(model))
            try:
                booster = lgb.Booster(model_str=text)
            except lgb.basic.LightGBMError as err:
                raise BundleError(
                    f"{os.fspath(model)!r} could not be loaded as a LightGBM model: {err}. "
                    "The file may be corrupt; save the model again with Booster.save_model."
                ) from None
            source = f"the model file {os.fspath(model)!r}"
        elif isinstance(model, lgb.Booster):
            booster = model
            text = booster.model_to_string()
            source = "the Booster"
        elif isinstance(model, lgb.LGBMModel):
            try:
                booster = model.booster_
            except (ValueError, AttributeError):  # lightgbm's LGBMNotFittedError is both
                raise NotFittedError(
                    f"This {type(model).__name__} is not fitted yet. Call its fit(X, y) before "
                    "wrapping it in LightGBMTeacher."
                ) from None
            classes = getattr(model, "classes_", None)
            text = booster.model_to_string()
            source = f"the {type(model).__name__}"
        else:
            raise TeacherError(
                "LightGBMTeacher takes a lightgbm.Booster, a fitted lightgbm.LGBMClassifier or the "
                f"path of a saved model text file; got a {type(model).__name__}. For other "
                "scikit-learn style models use SklearnTeacher."
            )

        header = _header(text)
        objective = _header_value(header, "objective")
        name, obj_params = _parse_objective(objective)
        _check_objective(name, objective, source)
        num_class = int(_header_value(header, "num_class") or 1)

        if name == "binary":
            self._scale = float(obj_params.get("sigmoid", 1.0))
            if not np.isfinite(self._scale) or self._scale <= 0:
                raise TeacherError(
                    f"{source} has objective {objective!r} with sigmoid={self._scale}; the sigmoid "
                    "parameter must be a finite number > 0."
                )
        else:
            self._scale = 1.0
        num_classes = 2 if name in ("binary", "cross_entropy") else num_class
        if classes is None:
            classes = tuple(range(num_classes))
        else:
            classes = tuple(np.asarray(classes).tolist())
            if len(classes) != num_classes:
                raise TeacherError(
                    f"{source} has {len(classes)} classes in classes_ but its booster outputs "
                    f"{num_classes}; the classifier and its booster_ disagree. Refit the model."
                )

        names = tuple(booster.feature_name())
        self._match_names = not all(n == f"Column_{i}" for i, n in enumerate(names))
        self.booster = booster
        self.batch_size = batch_size
        self._objective = name
        self._n_categorical = len(booster.pandas_categorical or [])
        extra: dict[str, Any] = {
            "objective": objective,
            "num_trees": booster.num_trees(),
            "num_iterations": booster.current_iteration(),
        }
        if name == "binary":
            extra["sigmoid"] = self._scale
        if booster.best_iteration > 0:
            extra["best_iteration"] = booster.best_iteration
        self.info = TeacherInfo(
            num_classes=num_classes,
            classes=classes,
            kind="lightgbm",
            feature_names=names,
            n_features=booster.num_feature(),
            extra=extra,
        )

    def _logits(self, X: Any) -> torch.Tensor:
        X = self._prepare(X)
        try:
            raw = self.booster.predict(X, raw_score=True)
        except ValueError as err:
            raise DataError(f"LightGBM could not score the rows: {err}") from None
        raw = np.asarray(raw, dtype=np.float64)
        if self._objective == "multiclass":
            return torch.from_numpy(raw.reshape(raw.shape[0], -1)).float()
        return binary_logits_from_margin(raw, self._scale)

    def _prepare(self, X: Any) -> Any:
        if torch.is_tensor(X):
            X = X.detach().cpu().numpy()
        elif not hasattr(X, "shape"):
            X = np.asarray(X)
        names = self.info.feature_names if self._match_names else None
        X = align_features(X, names, self.info.n_features, "LightGBMTeacher")
        if hasattr(X, "columns") and hasattr(X, "iloc"):
            X = self._strings_to_category(X)
        return X

    def _strings_to_category(self, X: Any) -> Any:
        import pandas as pd

        text_cols = [
            c for c in X.columns if X[c].dtype == object or isinstance(X[c].dtype, pd.StringDtype)
        ]
        if text_cols:
            if self._n_categorical == 0:
                raise DataError(
                    f"LightGBMTeacher: column(s) {[str(c) for c in text_cols]} hold strings, but the "
                    "model was not trained on pandas category columns, so it has no mapping from "
                    "strings to its inputs. Encode these columns exactly as they were encoded for "
                    "training."
                )
            X = X.copy()
            for c in text_cols:
                X[c] = X[c].astype("category")
        n_cat = sum(isinstance(X[c].dtype, pd.CategoricalDtype) for c in X.columns)
        if n_cat != self._n_categorical:
            raise DataError(
                f"LightGBMTeacher: the model was trained with {self._n_categorical} pandas category "
                f"column(s) but the DataFrame has {n_cat} category or string column(s). Give "
                "categorical columns the category (or str) dtype and every other column a numeric "
                "dtype, as in training."
            )
        return X


def _read_model_text(path: Path) -> str:
    """Read and sanity-check a model file: LightGBM aborts the process on some truncated files."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"LightGBM model file {str(path)!r} does not exist.") from None
    except OSError as err:
        raise BundleError(f"Cannot read LightGBM model file {str(path)!r}: {err}.") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleError(
            f"{str(path)!r} is not a LightGBM model text file (it is not UTF-8 text). Save the model "
            "with Booster.save_model(path); for a pickled LGBMClassifier, unpickle it and pass the "
            "object instead."
        ) from None
    if not text.startswith("tree\n"):
        raise BundleError(
            f"{str(path)!r} is not a LightGBM model text file (it does not start with 'tree'). "
            "Save the model with Booster.save_model(path)."
        )
    problem = _truncation(text)
    if problem:
        raise BundleError(
            f"LightGBM model file {str(path)!r} is truncated or corrupt: {problem}. Save the model "
            "again with Booster.save_model(path)."
        )
    return text


def _truncation(text: str) -> str | None:
    """A description of what is missing from a model text, or None when it looks whole."""
    end = text.find("\nend of trees")
    if end < 0:
        return "the 'end of trees' marker is missing"
    sizes_line = _header_value(_header(text), "tree_sizes")
    start = text.find("Tree=0\n")
    if sizes_line and start >= 0:
        try:
            sizes = [int(v) for v in sizes_line.split()]
        except ValueError:
            return "the tree_sizes header line is unreadable"
        offset = start
        for i, size in enumerate(sizes):
            block = text[offset : offset + size]
            if (
                len(block) != size
                or not block.startswith(f"Tree={i}\n")
                or "\nleaf_value=" not in block
            ):
                return f"tree {i} of {len(sizes)} is incomplete"
            offset += size
        if offset > end + 1:
            return "the trees overrun the 'end of trees' marker"
    tail_at = text.find("\nend of parameters")
    if "\nparameters:" in text and tail_at < 0:
        return "the parameters section is cut off"
    if tail_at >= 0:
        tail = text[tail_at + len("\nend of parameters") :].strip()
        if tail:
            if not tail.startswith("pandas_categorical:"):
                return "unexpected text after the parameters"
            try:
                json.loads(tail[len("pandas_categorical:") :])
            except ValueError:
                return "the pandas_categorical line is cut off"
    return None


def _header(text: str) -> str:
    stop = text.find("\n\n")
    return text if stop < 0 else text[:stop]


def _header_value(header: str, key: str) -> str | None:
    match = re.search(rf"^{key}=(.*)$", header, flags=re.MULTILINE)
    return match.group(1).strip() if match else None


def _parse_objective(objective: str | None) -> tuple[str | None, dict[str, str]]:
    """``"binary sigmoid:0.5"`` -> ``("binary", {"sigmoid": "0.5"})``; None for a custom objective."""
    if not objective:
        return None, {}
    name, *rest = objective.split()
    params = dict(item.split(":", 1) for item in rest if ":" in item)
    return name, params


def _check_objective(name: str | None, objective: str | None, source: str) -> None:
    if name in _SUPPORTED:
        return
    if name is None or name in ("none", "custom"):
        raise TeacherError(
            f"{source} was trained with a custom objective (its model has no built-in objective), "
            "so nothing says how its raw scores become probabilities. Retrain with "
            "objective='binary' or objective='multiclass', or compute its class probabilities "
            "yourself and wrap them with PrecomputedTeacher(logits_from_proba(proba), rows=X)."
        )
    if name == "multiclassova":
        raise TeacherError(
            f"{source} has objective {objective!r} (one-vs-all): its K sigmoid probabilities do not "
            "sum to 1, so no softmax logits reproduce them. Retrain with objective='multiclass' "
            "(softmax), or normalise its probabilities yourself and wrap them with "
            "PrecomputedTeacher(logits_from_proba(proba), rows=X)."
        )
    if name == "cross_entropy_lambda":
        raise TeacherError(
            f"{source} has objective {objective!r}, whose output is a rate, not a class "
            "probability. Retrain with objective='binary' or 'cross_entropy'."
        )
    kind = "a regression or ranking" if name in _NOT_CLASSIFICATION else "an unsupported"
    raise TeacherError(
        f"{source} has objective {objective!r}, {kind} objective: it gives no class "
        f"probabilities to distil. LightGBMTeacher supports {', '.join(_SUPPORTED)}; train a "
        "classifier (objective='binary' or 'multiclass')."
    )
