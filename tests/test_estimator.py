"""KDClassifier: scikit-learn's own estimator checks, and the places fraud teams use it.

scikit-learn estimator checks that are *not run* for KDClassifier, with the reason (also listed in
docs/estimator.md):

- ``check_sample_weights_*`` and ``check_classifiers_one_label_sample_weights``: ``fit`` takes no
  ``sample_weight`` (use ``class_weight``); scikit-learn yields them only for estimators that do.
- ``check_estimators_nan_inf``: not yielded because KDClassifier declares ``allow_nan`` (NaN gets a
  missing-value indicator); infinite values are still refused, tested below.
- ``check_array_api_input``: skipped by scikit-learn unless ``SCIPY_ARRAY_API=1``; KDClassifier
  takes numpy arrays and DataFrames (it converts other arrays), not the array API.
- decision_function, multi-output, multilabel, partial_fit and pairwise checks: not yielded, the
  estimator has none of these.

No check is expected to fail: ``EXPECTED_FAILED_CHECKS`` is empty.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import crosskd
from crosskd.estimator import KDClassifier
from crosskd.exceptions import ConfigError, TeacherError


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny networks: with 2 threads on a busy 2-core machine, torch's thread pool spends most of
    # its time waiting (17x slower here); one thread is faster and deterministic.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: Checks that are known to fail, with the reason (none today).
EXPECTED_FAILED_CHECKS: dict[str, str] = {}

# Small and fast, but enough steps to pass check_classifiers_train (accuracy > 0.83 on blobs).
CHECKED = KDClassifier(alpha=0.0, epochs=10, batch_size=64, lr=1e-2)


@parametrize_with_checks([CHECKED], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        n_samples=240, n_features=6, n_informative=4, weights=[0.7], random_state=0
    )
    return X, y


def fast(**kwargs):
    return KDClassifier(epochs=8, batch_size=32, lr=1e-2, **kwargs)


def test_fit_with_an_unfitted_teacher_fits_a_copy(data):
    X, y = data
    teacher = LogisticRegression()
    clf = fast(teacher=teacher).fit(X, y)
    assert not hasattr(teacher, "coef_")  # the parameter is never modified
    assert isinstance(clf.teacher_, crosskd.SklearnTeacher)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert set(clf.predict(X)) <= set(clf.classes_)
    assert clf.n_features_in_ == 6
    assert {"train_kd", "train_ce"} <= set(clf.distiller_.history_[-1])


def test_fitted_teacher_is_used_as_is_and_crosskd_teacher_too(data):
    X, y = data
    model = LogisticRegression().fit(X, y)
    coef = model.coef_.copy()
    clf = fast(teacher=model).fit(X, y)
    # wrapped as it is: the very object, not a copy, and not refitted
    assert isinstance(clf.teacher_, crosskd.SklearnTeacher)
    assert clf.teacher_.model is model
    np.testing.assert_array_equal(model.coef_, coef)
    wrapped = crosskd.SklearnTeacher(model)
    assert fast(teacher=wrapped).fit(X, y).teacher_ is wrapped
    with pytest.raises(ConfigError, match="fit_teacher=True"):
        fast(teacher=wrapped, fit_teacher=True).fit(X, y)
    with pytest.raises(TeacherError, match="not fitted"):
        fast(teacher=LogisticRegression(), fit_teacher=False).fit(X, y)


def test_lightgbm_teacher_and_anomaly_detector(data):
    lightgbm = pytest.importorskip("lightgbm")
    X, y = data
    clf = fast(teacher=lightgbm.LGBMClassifier(n_estimators=10, verbose=-1)).fit(X, y)
    assert isinstance(clf.teacher_, crosskd.LightGBMTeacher)
    detector = fast(teacher=IsolationForest(n_estimators=20, random_state=0)).fit(X, y)
    assert list(detector.classes_) == [0, 1]


def test_pipeline_and_cross_val_score(data):
    X, y = data
    pipe = make_pipeline(StandardScaler(), fast(teacher=LogisticRegression().fit(X, y)))
    scores = cross_val_score(pipe, X, y, cv=3, scoring="roc_auc")
    assert scores.shape == (3,) and np.all(scores > 0.6)


def test_grid_search_over_temperature_and_alpha(data):
    X, y = data
    search = GridSearchCV(
        fast(teacher=LogisticRegression()),
        {"temperature": [1.0, 4.0], "alpha": [0.3, 0.9]},
        cv=2,
        scoring="accuracy",
    )
    search.fit(X, y)
    assert set(search.best_params_) == {"temperature", "alpha"}
    assert len(search.cv_results_["params"]) == 4
    assert search.best_estimator_.distiller_.temperature == search.best_params_["temperature"]


def test_clone_and_params_round_trip(data):
    clf = fast(teacher=LogisticRegression(C=0.5), hidden=(8,), temperature=3.0)
    copy = clone(clf)
    assert copy.get_params()["temperature"] == 3.0
    assert copy.get_params()["teacher__C"] == 0.5
    copy.set_params(alpha=0.2, teacher__C=2.0)
    assert copy.alpha == 0.2 and copy.teacher.C == 2.0 and clf.teacher.C == 0.5


def test_dataframe_with_text_and_nan_and_save_load(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame(
        {
            "amount": rng.lognormal(3, 1, n),
            "hour": rng.integers(0, 24, n).astype(float),
            "merchant": rng.choice(["a", "b", "c"], n),
        }
    )
    frame.loc[::7, "amount"] = np.nan
    y = np.where((frame.merchant == "a") & (frame.hour > 12), "fraud", "ok")
    clf = fast().fit(frame, y)
    assert list(clf.feature_names_in_) == ["amount", "hour", "merchant"]
    assert list(clf.classes_) == ["fraud", "ok"]
    path = clf.save(tmp_path / "student")
    loaded = crosskd.load(path)
    np.testing.assert_allclose(loaded.predict_proba(frame), clf.predict_proba(frame), atol=1e-6)


def test_infinite_values_are_refused(data):
    X, y = data
    X = X.copy()
    X[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        fast().fit(X, y)
