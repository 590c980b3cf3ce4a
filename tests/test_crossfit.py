"""Cross-fitted teacher targets: out-of-fold logits on the training rows, the final model elsewhere."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from crosskd import ConfigError, LightGBMTeacher, crossfit_lightgbm


def _frame(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.choice(["x", "y"], n)}
    )
    y = ((X.a + 0.5 * X.b + rng.normal(scale=0.7, size=n)) > 0).astype(int).to_numpy()
    return X, y


def test_training_rows_get_out_of_fold_logits_and_other_rows_the_final_model():
    X, y = _frame()
    params = {"n_jobs": 1, "n_estimators": 40, "num_leaves": 7}
    teacher = crossfit_lightgbm(X, y, folds=4, params=params)
    assert isinstance(teacher.final, LightGBMTeacher)
    assert teacher.info.extra["cross_fitted_folds"] == 4
    own = teacher.final.logits(X)
    oof = teacher.logits(X)
    assert oof.shape == own.shape and not torch.equal(oof, own)
    # the final model is more confident on the rows it was fitted on than the fold models
    margin = lambda z: (z[:, 1] - z[:, 0]).abs().mean()  # noqa: E731
    assert margin(own) > margin(oof)
    # any other rows (a subset, reordered rows, new rows) are scored by the final model
    torch.testing.assert_close(teacher.logits(X.iloc[:50]), teacher.final.logits(X.iloc[:50]))
    shuffled = X.sample(frac=1.0, random_state=0)
    torch.testing.assert_close(teacher.logits(shuffled), teacher.final.logits(shuffled))


def test_folds_are_checked():
    X, y = _frame(60)
    with pytest.raises(ConfigError, match="folds must be an integer >= 2"):
        crossfit_lightgbm(X, y, folds=1)
