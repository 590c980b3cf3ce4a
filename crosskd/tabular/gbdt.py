"""Training a LightGBM teacher on a DataFrame, for users who do not have one yet."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import DataError
from ..teachers.lightgbm import lightgbm_feature_names

__all__ = ["fit_lightgbm", "to_lightgbm_frame", "lightgbm_feature_names"]

#: Defaults that gave a stable teacher on the fraud data (shallow trees, small learning rate).
DEFAULT_PARAMS: dict[str, Any] = {
    "n_estimators": 400,
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_child_samples": 20,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
}


def to_lightgbm_frame(X: Any) -> pd.DataFrame | np.ndarray:
    """Return X in a form LightGBM accepts: names it keeps, and numbers or categories.

    String / object / bool columns become ``category``; columns are renamed with
    :func:`lightgbm_feature_names` (LightGBM refuses ``" , : [ ] { }`` in a name and rewrites
    spaces), which :class:`crosskd.LightGBMTeacher` maps back to the original columns. An array is
    returned as a numpy array.
    """
    if not isinstance(X, pd.DataFrame):
        return np.asarray(X)
    out = X.copy()
    out.columns = lightgbm_feature_names(X.columns)
    for name, original in zip(out.columns, X.columns, strict=True):
        dtype = out[name].dtype
        if (
            pd.api.types.is_object_dtype(dtype)
            or pd.api.types.is_string_dtype(dtype)
            or pd.api.types.is_bool_dtype(dtype)
        ):
            out[name] = out[name].astype("category")
        elif pd.api.types.is_datetime64_any_dtype(dtype):
            raise DataError(
                f"Column {original!r} holds dates ({dtype}); LightGBM needs numbers. Convert it (for "
                "example to a day of week or seconds since an origin) or drop it with --drop."
            )
    return out


def fit_lightgbm(
    X: Any,
    y: Any,
    *,
    eval_set: tuple[Any, Any] | None = None,
    params: dict[str, Any] | None = None,
    early_stopping_rounds: int = 50,
    seed: int = 0,
):
    """Fit an ``lightgbm.LGBMClassifier`` teacher (binary or multiclass, chosen from ``y``).

    The features are named with :func:`lightgbm_feature_names` (any column name works: LightGBM
    itself refuses ``[``, ``:``, ... and rewrites spaces), and :class:`crosskd.LightGBMTeacher`
    matches the original columns to them, in any order.

    Args:
        X: training rows; string and bool columns are used as categorical features.
        y: labels.
        eval_set: ``(X_val, y_val)`` for early stopping on validation log-loss.
        params: overrides of :data:`DEFAULT_PARAMS` (any LGBMClassifier argument).
        early_stopping_rounds: rounds without improvement before stopping (with ``eval_set``).
        seed: random_state of the model.

    Returns:
        The fitted ``LGBMClassifier``; wrap it in :class:`crosskd.LightGBMTeacher`.
    """
    import lightgbm as lgb

    settings = {**DEFAULT_PARAMS, **(params or {})}
    settings.setdefault("random_state", seed)
    settings.setdefault("verbose", -1)
    if settings.get("n_jobs", -1) in (-1, None, "auto"):
        from .._threads import choose_threads

        # all cores is LightGBM's default; on a machine busy with other work that makes its
        # threads wait on each other: take the idle cores only
        settings["n_jobs"] = choose_threads("auto")
    model = lgb.LGBMClassifier(**settings)
    fit_kwargs: dict[str, Any] = {}
    if eval_set is not None:
        X_val, y_val = eval_set
        X_val, y_val = to_lightgbm_frame(X_val), np.asarray(y_val)
        if "eval_X" in inspect.signature(model.fit).parameters:  # lightgbm >= 4.7
            fit_kwargs.update(eval_X=(X_val,), eval_y=(y_val,))
        else:
            fit_kwargs["eval_set"] = [(X_val, y_val)]
        fit_kwargs["callbacks"] = [lgb.early_stopping(early_stopping_rounds, verbose=False)]
    model.fit(to_lightgbm_frame(X), np.asarray(y), **fit_kwargs)
    return model
