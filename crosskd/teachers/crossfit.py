"""Cross-fitted teacher targets: out-of-fold logits on the rows the teacher was trained on.

A gradient-boosted teacher scores the rows it was trained on more confidently than unseen rows
(it has fitted them), and those scores are the soft targets a student learns from. When crosskd
trains the teacher on the same rows as the student, :func:`crossfit_lightgbm` trains K more models,
each without one fold, and scores every training row with the model that did not see it; the
final teacher, trained on all rows, scores everything else (validation, transfer and test rows)
and is the one saved. :class:`CrossFittedTeacher` serves both: the out-of-fold logits for exactly
the training rows (checked by a fingerprint of their values, order and columns), the final model
for any other rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..exceptions import ConfigError
from .base import Teacher, TeacherInfo, fingerprint, num_rows

__all__ = ["CrossFittedTeacher", "crossfit_lightgbm"]


class CrossFittedTeacher(Teacher):
    """A teacher whose logits on its own training rows are out of fold.

    Args:
        final: the teacher trained on all rows (it scores every other set of rows).
        rows: the training rows (DataFrame, array).
        oof_logits: ``(len(rows), num_classes)`` logits of each training row from a model that did
            not see it.
        folds: K, for the record.
    """

    def __init__(
        self, final: Teacher, rows: Any, oof_logits: np.ndarray | torch.Tensor, folds: int
    ):
        oof = torch.as_tensor(np.asarray(oof_logits, dtype=np.float32))
        if oof.shape != (num_rows(rows), final.info.num_classes):
            raise ConfigError(
                f"oof_logits has shape {tuple(oof.shape)}; expected ({num_rows(rows)}, "
                f"{final.info.num_classes}): one row of logits per training row."
            )
        self.final = final
        self.folds = folds
        self._oof = oof
        self._fingerprint = fingerprint(rows)
        self.info = TeacherInfo(
            num_classes=final.info.num_classes,
            classes=final.info.classes,
            kind=final.info.kind,
            extra={**final.info.extra, "cross_fitted_folds": folds},
        )

    def logits(self, X: Any, batch_size: int | None = None) -> torch.Tensor:
        if num_rows(X) == self._oof.shape[0] and fingerprint(X) == self._fingerprint:
            return self._oof.clone()
        return self.final.logits(X, batch_size)

    def _logits(self, X: Any) -> torch.Tensor:
        return self.final.logits(X)


def crossfit_lightgbm(
    X: Any,
    y: Any,
    *,
    folds: int = 5,
    eval_set: tuple[Any, Any] | None = None,
    params: dict[str, Any] | None = None,
    seed: int = 0,
) -> CrossFittedTeacher:
    """Train a LightGBM teacher on ``X`` and K fold models for out-of-fold targets on ``X``.

    Args:
        X, y: the training rows and labels (the rows the student will learn from).
        folds: K >= 2; stratified when every class has at least K rows.
        eval_set: validation rows for early stopping (each model stops on them).
        params: LightGBM settings (see :func:`crosskd.fit_lightgbm`).
        seed: seed of the folds and of the models.

    Returns:
        A :class:`CrossFittedTeacher` whose ``final`` is the all-rows
        :class:`~crosskd.LightGBMTeacher` (save that one).
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    from ..tabular.gbdt import fit_lightgbm
    from .base import _take
    from .lightgbm import LightGBMTeacher

    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"folds must be an integer >= 2, got {folds!r}.")
    labels = np.asarray(y)
    final = LightGBMTeacher(fit_lightgbm(X, labels, eval_set=eval_set, params=params, seed=seed))
    _, counts = np.unique(labels, return_counts=True)
    splitter = (
        StratifiedKFold(folds, shuffle=True, random_state=seed)
        if counts.min() >= folds
        else KFold(folds, shuffle=True, random_state=seed)
    )
    oof = np.zeros((num_rows(X), final.info.num_classes), dtype=np.float32)
    for train_idx, held_idx in splitter.split(np.zeros(len(labels)), labels):
        rows = _rows(X, train_idx, _take)
        model = fit_lightgbm(rows, labels[train_idx], eval_set=eval_set, params=params, seed=seed)
        fold_teacher = LightGBMTeacher(model)
        if tuple(fold_teacher.info.classes) != tuple(final.info.classes):
            raise ConfigError(
                f"A fold lacks some classes ({list(fold_teacher.info.classes)} of "
                f"{list(final.info.classes)}); use fewer folds, or more rows of the rare classes."
            )
        oof[held_idx] = fold_teacher.logits(_rows(X, held_idx, _take)).numpy()
    return CrossFittedTeacher(final, X, oof, folds)


def _rows(X: Any, idx: np.ndarray, take: Any) -> Any:
    if hasattr(X, "iloc"):
        return X.iloc[idx]
    return np.asarray(X)[idx]
