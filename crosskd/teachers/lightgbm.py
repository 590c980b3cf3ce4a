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

**Column names.** LightGBM does not keep every DataFrame column name as given: it replaces spaces
with ``_`` and refuses names holding any of ``" , : [ ] { }`` ("Do not support special JSON
characters in feature name"); a line break splits its model file. When crosskd trains LightGBM
(:func:`crosskd.fit_lightgbm`, ``KDClassifier``, ``crosskd distill``) it names the features with
:func:`lightgbm_feature_names`: those characters and ``%`` are percent-escaped (``bucket[0]`` ->
``bucket%5B0%5D``), spaces become ``_`` as LightGBM would make them (``%20`` instead, only when that
would merge two names, such as ``a b`` and ``a_b``). The names are reversible, so a model file
alone says which column feeds each input. :meth:`LightGBMTeacher.feature_columns` matches a
DataFrame's columns to the model's inputs by name: exactly, then as LightGBM rewrites them (spaces
-> ``_``: a model you trained on ``mean radius`` takes a frame with ``mean radius``), then as
crosskd names them.

``lightgbm`` is imported only when a :class:`LightGBMTeacher` is created.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..exceptions import BundleError, DataError, NotFittedError, TeacherError
from .base import Teacher, TeacherInfo, align_features, binary_logits_from_margin

__all__ = ["LightGBMTeacher", "lightgbm_feature_names"]

#: Characters crosskd percent-escapes in a LightGBM feature name: those LightGBM refuses (its JSON
#: check), line breaks (one line of the model file holds every name) and the escape character.
_ESCAPED = frozenset('%",:[]{}\n\r')
_ESCAPE_CODE = re.compile(r"%([0-9A-F]{2})")

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
    ``(n_samples, n_features)``. A DataFrame is matched to the model's features by column name (see
    :meth:`feature_columns`: reordered, extra columns ignored, names matched as LightGBM and crosskd
    rewrite them; missing columns raise :class:`DataError`), unless the model was trained without
    names (``Column_0``, ...), in which case columns are taken in order. The columns of the model's
    pandas ``category`` features (string, bool or other columns made categorical for training, as
    :func:`crosskd.fit_lightgbm` does) are turned into ``category`` columns, which LightGBM maps with
    the categories it stored at training time.

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
        positions = _categorical_positions(text)
        # The features that were pandas category columns, when the model file says which they are.
        self._category_positions = (
            positions
            if self._n_categorical and positions and len(positions) == self._n_categorical
            else None
        )
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
        from .._threads import choose_threads

        # Small batches on one thread (LightGBM's pool costs more than it saves); large ones on
        # the idle cores, never all cores of a busy machine.
        threads = 1 if len(X) < 20_000 else choose_threads("auto", window=0.0)
        try:
            raw = self.booster.predict(X, raw_score=True, num_threads=threads)
        except ValueError as err:
            raise DataError(f"LightGBM could not score the rows: {err}") from None
        raw = np.asarray(raw, dtype=np.float64)
        if self._objective == "multiclass":
            return torch.from_numpy(raw.reshape(raw.shape[0], -1)).float()
        return binary_logits_from_margin(raw, self._scale)

    def feature_columns(self, columns: Iterable[Any]) -> dict[str, Any]:
        """Which of ``columns`` (a DataFrame's column labels) feeds each input of the model.

        A model input named ``f`` takes the column whose name is ``f`` exactly; failing that, the
        one column whose name becomes ``f`` as LightGBM rewrites names (spaces -> ``_``) or as
        crosskd names them for LightGBM (:func:`lightgbm_feature_names`).

        Args:
            columns: the column labels of the rows to score.

        Returns:
            ``{model input name: column label}`` in the model's input order.

        Raises:
            DataError: inputs that no column feeds (the message lists them, how names are matched,
                and the columns given), or two columns that match one input equally well.
        """
        columns = list(columns)
        features = self.info.feature_names or ()
        exact: dict[str, list[Any]] = {}
        rewritten: dict[str, list[Any]] = {}
        for col in columns:
            text = str(col)
            exact.setdefault(text, []).append(col)
            for key in _name_keys(text) - {text}:
                rewritten.setdefault(key, []).append(col)
        found: dict[str, Any] = {}
        missing = []
        for feature in features:
            candidates = exact.get(feature) or rewritten.get(feature) or []
            if not candidates:
                missing.append(feature)
            elif len(candidates) > 1:
                raise DataError(
                    f"LightGBMTeacher: columns {[str(c) for c in candidates]} all match the model's "
                    f"input {feature!r}. Keep only the column the model was trained on."
                )
            else:
                found[feature] = candidates[0]
        if missing:
            shown = ", ".join(_shown_name(m) for m in missing[:10])
            more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
            raise DataError(
                f"LightGBMTeacher: the DataFrame lacks {len(missing)} of the {len(features)} "
                f"columns the model was trained on: {shown}{more}. Got columns "
                f"{[str(c) for c in columns][:20]}. Names are matched exactly, or as LightGBM "
                "stores them (spaces become '_'; crosskd percent-escapes the characters LightGBM "
                "refuses, e.g. '[' as %5B). Pass a DataFrame with every training column (extra "
                "columns are ignored, order does not matter)."
            )
        used = Counter(str(c) for c in found.values())
        twice = sorted(c for c, k in used.items() if k > 1)
        if twice:
            raise DataError(
                f"LightGBMTeacher: column(s) {twice} match more than one input of the model "
                f"(its inputs: {list(features)[:20]}). Rename the columns as in training."
            )
        return found

    def _prepare(self, X: Any) -> Any:
        if torch.is_tensor(X):
            X = X.detach().cpu().numpy()
        elif not hasattr(X, "shape"):
            X = np.asarray(X)
        if hasattr(X, "columns") and hasattr(X, "iloc"):
            if self._match_names:
                found = self.feature_columns(X.columns)
                wanted = list(found.values())
                if list(X.columns) != wanted:
                    X = X[wanted]
            else:
                X = align_features(X, None, self.info.n_features, "LightGBMTeacher")
            return self._to_category(X)
        return align_features(X, None, self.info.n_features, "LightGBMTeacher")

    def _to_category(self, X: Any) -> Any:
        import pandas as pd

        if self._category_positions is not None:
            convert = [
                X.columns[i]
                for i in self._category_positions
                if not isinstance(X.iloc[:, i].dtype, pd.CategoricalDtype)
            ]
            if convert:
                X = X.copy()
                for c in convert:
                    X[c] = X[c].astype("category")
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


def lightgbm_feature_names(columns: Iterable[Any]) -> list[str]:
    """The feature names crosskd gives LightGBM for DataFrame columns: safe, distinct, reversible.

    ``" , : [ ] { }`` (which LightGBM refuses), line breaks and ``%`` are percent-escaped
    (``bucket[0]`` -> ``bucket%5B0%5D``, ``50%`` -> ``50%25``); spaces become ``_``, as LightGBM
    itself would make them, or ``%20`` where ``_`` would merge two names (``a b`` next to ``a_b``).
    Other characters (dots, slashes, accents, any script) are kept. Non-string labels are
    ``str()``-ed. :class:`LightGBMTeacher` matches the original columns to these names.

    Args:
        columns: the DataFrame's column labels, in order.

    Returns:
        One name per column, in the same order.

    Raises:
        DataError: two labels are the same once ``str()``-ed (e.g. ``1`` and ``"1"``).

    Example:
        >>> lightgbm_feature_names(["mean radius", "bucket[0]", "größe"])
        ['mean_radius', 'bucket%5B0%5D', 'größe']
    """
    texts = [str(c) for c in columns]
    repeated = sorted(t for t, k in Counter(texts).items() if k > 1)
    if repeated:
        raise DataError(
            f"Column name(s) {repeated[:10]} appears twice (after str()); LightGBM needs distinct "
            "feature names. Rename the columns."
        )
    escaped = [_escape(t) for t in texts]
    readable = [e.replace(" ", "_") for e in escaped]
    clashes = Counter(readable)
    return [
        r if clashes[r] == 1 else e.replace(" ", "%20")
        for r, e in zip(readable, escaped, strict=True)
    ]


def _escape(text: str) -> str:
    return "".join(f"%{ord(ch):02X}" if ch in _ESCAPED else ch for ch in text)


def _name_keys(text: str) -> set[str]:
    """The names a column called ``text`` may have in a LightGBM model."""
    escaped = _escape(text)
    return {
        text,
        text.replace(" ", "_"),  # LightGBM's own rewrite
        escaped.replace(" ", "_"),  # crosskd's names (lightgbm_feature_names)
        escaped.replace(" ", "%20"),
    }


def _shown_name(feature: str) -> str:
    """A model input's name for a message; crosskd's escapes decoded where there are any."""
    decoded = _ESCAPE_CODE.sub(
        lambda m: (
            chr(int(m.group(1), 16)) if chr(int(m.group(1), 16)) in _ESCAPED | {" "} else m.group(0)
        ),
        feature,
    )
    return repr(feature) if decoded == feature else f"{decoded!r} (stored as {feature!r})"


def _categorical_positions(text: str) -> tuple[int, ...] | None:
    """The indices in the model file's ``[categorical_feature: ...]`` line, or None."""
    match = re.search(r"^\[categorical_feature: ?(.*)\]$", text, flags=re.MULTILINE)
    if not match or not match.group(1).strip():
        return None
    try:
        return tuple(int(v) for v in match.group(1).split(","))
    except ValueError:
        return None


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
