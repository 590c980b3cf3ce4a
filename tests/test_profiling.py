"""model_size and device_description."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

import crosskd
from crosskd.profiling import device_description


def data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, (X[:, 0] + rng.normal(size=n) > 0).astype(int)


def test_torch_module_size():
    size = crosskd.model_size(crosskd.MLP(4, 2, hidden=(8,)))
    assert size.params == 4 * 8 + 8 + 8 * 2 + 2
    assert size.bytes == size.params * 4


def test_forest_and_boosting_sizes_count_every_node():
    X, y = data()
    forest = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(X, y)
    size = crosskd.model_size(forest)
    assert size.params == sum(t.tree_.node_count for t in forest.estimators_)
    assert size.bytes > 0
    boosting = GradientBoostingClassifier(n_estimators=4, max_depth=2, random_state=0).fit(X, y)
    assert crosskd.model_size(boosting).params == sum(
        t.tree_.node_count for t in boosting.estimators_.ravel()
    )


def test_teachers_and_ensembles_add_up():
    X, y = data()
    lgb_model = crosskd.fit_lightgbm(X, y, params={"n_estimators": 5})
    forest = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(X, y)
    a, b = crosskd.LightGBMTeacher(lgb_model), crosskd.SklearnTeacher(forest)
    assert crosskd.model_size(a) == crosskd.model_size(lgb_model)
    assert crosskd.model_size(b) == crosskd.model_size(forest)
    both = crosskd.model_size(crosskd.EnsembleTeacher([a, b]))
    assert both.params == crosskd.model_size(a).params + crosskd.model_size(b).params
    with pytest.raises(TypeError, match="Cannot measure the size of a str"):
        crosskd.model_size("model.txt")


def test_device_description_names_the_cpu():
    assert device_description().startswith("cpu: ")
