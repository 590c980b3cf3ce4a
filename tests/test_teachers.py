"""Teacher adapters: one shared contract over every adapter, then each adapter's own checks."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.ensemble import IsolationForest, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from crosskd.exceptions import BundleError, ConfigError, DataError, NotFittedError, TeacherError
from crosskd.teachers import (
    EnsembleTeacher,
    LightGBMTeacher,
    ModuleTeacher,
    PrecomputedTeacher,
    SklearnTeacher,
    Teacher,
)
from crosskd.teachers.base import fingerprint

N_ROWS = 240
N_FEATURES = 5
LGB_PARAMS = {
    "verbose": -1,
    "seed": 0,
    "num_threads": 1,
    "deterministic": True,
    "num_leaves": 7,
    "min_data_in_leaf": 5,
}


# --------------------------------------------------------------------------------------------------
# data and models (tiny, seeded, built once per module)


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(N_ROWS, N_FEATURES))
    X = pd.DataFrame(values, columns=[f"f{i}" for i in range(N_FEATURES)])
    score = values[:, 0] + 0.5 * values[:, 1] - 0.3 * values[:, 2]
    y_bin = (score + 0.5 * rng.normal(size=N_ROWS) > 0).astype(int)
    y_multi = np.digitize(score + 0.3 * rng.normal(size=N_ROWS), [-0.5, 0.5])
    return {"X": X, "y_bin": y_bin, "y_multi": y_multi}


def _booster(X: Any, y: np.ndarray, rounds: int = 15, **params: Any) -> lgb.Booster:
    return lgb.train({**LGB_PARAMS, **params}, lgb.Dataset(X, y), num_boost_round=rounds)


@pytest.fixture(scope="module")
def binary_booster(data) -> lgb.Booster:
    return _booster(data["X"], data["y_bin"], objective="binary")


@pytest.fixture(scope="module")
def multi_booster(data) -> lgb.Booster:
    return _booster(data["X"], data["y_multi"], rounds=8, objective="multiclass", num_class=3)


@pytest.fixture(scope="module")
def logreg(data) -> LogisticRegression:
    return LogisticRegression().fit(data["X"], data["y_bin"])


def _two_class(p_positive: np.ndarray) -> np.ndarray:
    return np.column_stack([1.0 - p_positive, p_positive])


@dataclass
class Case:
    teacher: Teacher
    X: Any
    proba: np.ndarray  # the source model's own class probabilities for X
    classes: tuple[Any, ...]


def _lgb_booster_binary(d, tmp) -> Case:
    booster = d["binary_booster"]
    return Case(LightGBMTeacher(booster), d["X"], _two_class(booster.predict(d["X"])), (0, 1))


def _lgb_classifier_sigmoid(d, tmp) -> Case:
    labels = np.where(d["y_bin"] == 1, "fraud", "legit")
    clf = lgb.LGBMClassifier(n_estimators=15, sigmoid=0.5, **LGB_PARAMS).fit(d["X"], labels)
    teacher = LightGBMTeacher(clf)
    assert teacher.info.extra["sigmoid"] == 0.5
    return Case(teacher, d["X"], clf.predict_proba(d["X"]), ("fraud", "legit"))


def _lgb_multiclass(d, tmp) -> Case:
    booster = d["multi_booster"]
    return Case(LightGBMTeacher(booster, batch_size=50), d["X"], booster.predict(d["X"]), (0, 1, 2))


def _lgb_file(d, tmp) -> Case:
    path = tmp / "binary_model.txt"
    d["binary_booster"].save_model(str(path))
    proba = _two_class(d["binary_booster"].predict(d["X"]))
    return Case(LightGBMTeacher(path), d["X"], proba, (0, 1))


def _sk_logreg_proba(d, tmp) -> Case:
    model = d["logreg"]
    return Case(SklearnTeacher(model), d["X"], model.predict_proba(d["X"]), (0, 1))


def _sk_logreg_decision(d, tmp) -> Case:
    model = d["logreg"]
    teacher = SklearnTeacher(model, method="decision_function")
    return Case(teacher, d["X"], model.predict_proba(d["X"]), (0, 1))


def _sk_logreg_multi_decision(d, tmp) -> Case:
    model = LogisticRegression().fit(d["X"], d["y_multi"])
    teacher = SklearnTeacher(model, method="decision_function")
    return Case(teacher, d["X"], model.predict_proba(d["X"]), (0, 1, 2))


def _sk_pipeline(d, tmp) -> Case:
    labels = np.array(["low", "mid", "high"])[d["y_multi"]]
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(d["X"], labels)
    return Case(SklearnTeacher(model), d["X"], model.predict_proba(d["X"]), ("high", "low", "mid"))


def _sk_random_forest(d, tmp) -> Case:
    model = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0)
    model.fit(d["X"].to_numpy(), d["y_multi"])
    X = d["X"].to_numpy()
    return Case(SklearnTeacher(model), X, model.predict_proba(X), (0, 1, 2))


def _sk_isolation_forest(d, tmp) -> Case:
    model = IsolationForest(n_estimators=20, random_state=0).fit(d["X"])
    scale = 3.0
    p_anomaly = 1.0 / (1.0 + np.exp(scale * model.decision_function(d["X"])))
    return Case(SklearnTeacher(model, anomaly_scale=scale), d["X"], _two_class(p_anomaly), (0, 1))


def _module(d, tmp) -> Case:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(N_FEATURES, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
    )
    X = d["X"].to_numpy().astype(np.float32)
    with torch.no_grad():
        proba = torch.softmax(net(torch.from_numpy(X)).double(), dim=1).numpy()
    return Case(ModuleTeacher(net, batch_size=64), X, proba, (0, 1, 2))


def _timm(d, tmp) -> Case:
    from crosskd.teachers import TimmTeacher

    torch.manual_seed(0)
    teacher = TimmTeacher("test_resnet", 3, input_size=(16, 16), mean=0.5, std=0.25, batch_size=64)
    X = torch.rand(N_ROWS, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = (torch.nn.functional.pad(X, (2, 2, 2, 2)) - 0.5) / 0.25  # its preprocessing, by hand
        proba = torch.softmax(teacher.model.eval()(x).double(), dim=1).numpy()
    return Case(teacher, X, proba, (0, 1, 2))


def _precomputed(d, tmp) -> Case:
    source = LightGBMTeacher(d["multi_booster"])
    teacher = PrecomputedTeacher.from_teacher(source, d["X"])
    return Case(teacher, d["X"], d["multi_booster"].predict(d["X"]), (0, 1, 2))


def _ensemble(d, tmp) -> Case:
    members = [LightGBMTeacher(d["binary_booster"]), SklearnTeacher(d["logreg"])]
    p1 = _two_class(d["binary_booster"].predict(d["X"]))
    p2 = d["logreg"].predict_proba(d["X"])
    geo = p1 ** (2 / 3) * p2 ** (1 / 3)
    proba = geo / geo.sum(axis=1, keepdims=True)
    return Case(EnsembleTeacher(members, weights=[2.0, 1.0]), d["X"], proba, (0, 1))


CASES: dict[str, Callable[..., Case]] = {
    "lgb_booster_binary": _lgb_booster_binary,
    "lgb_classifier_sigmoid_str_labels": _lgb_classifier_sigmoid,
    "lgb_multiclass": _lgb_multiclass,
    "lgb_model_file": _lgb_file,
    "sk_logreg_proba": _sk_logreg_proba,
    "sk_logreg_decision": _sk_logreg_decision,
    "sk_logreg_multiclass_decision": _sk_logreg_multi_decision,
    "sk_pipeline_str_labels": _sk_pipeline,
    "sk_random_forest": _sk_random_forest,
    "sk_isolation_forest": _sk_isolation_forest,
    "module": _module,
    "timm": _timm,
    "precomputed": _precomputed,
    "ensemble": _ensemble,
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request, data, binary_booster, multi_booster, logreg, tmp_path_factory) -> Case:
    d = {**data, "binary_booster": binary_booster, "multi_booster": multi_booster, "logreg": logreg}
    return CASES[request.param](d, tmp_path_factory.mktemp(request.param))


# --------------------------------------------------------------------------------------------------
# the shared contract


def test_contract_shape_dtype_finite(case: Case) -> None:
    logits = case.teacher.logits(case.X)
    n_classes = len(case.classes)
    assert logits.shape == (N_ROWS, n_classes)
    assert logits.dtype == torch.float32
    assert logits.device.type == "cpu"
    assert torch.isfinite(logits).all()
    assert case.teacher.info.num_classes == n_classes
    assert tuple(case.teacher.info.classes) == case.classes


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0, 20.0])
def test_contract_soft_targets_are_distributions(case: Case, temperature: float) -> None:
    q = case.teacher.soft_targets(case.X, temperature)
    assert q.shape == (N_ROWS, len(case.classes))
    assert (q >= 0).all()
    torch.testing.assert_close(q.sum(dim=1), torch.ones(N_ROWS), atol=1e-5, rtol=0)


def test_contract_matches_source_probabilities(case: Case) -> None:
    proba = case.teacher.predict_proba(case.X)
    np.testing.assert_allclose(proba, case.proba, rtol=0, atol=1e-5)


def test_contract_batch_invariance(case: Case) -> None:
    whole = case.teacher.logits(case.X)
    batched = case.teacher.logits(case.X, batch_size=7)
    torch.testing.assert_close(batched, whole, atol=1e-6, rtol=0)


def test_contract_deterministic(case: Case) -> None:
    assert torch.equal(case.teacher.logits(case.X), case.teacher.logits(case.X))


def test_contract_result_is_an_ordinary_tensor(case: Case) -> None:
    logits = case.teacher.logits(case.X)
    assert not logits.is_inference()
    assert not logits.requires_grad


# --------------------------------------------------------------------------------------------------
# LightGBM


def test_import_does_not_load_lightgbm_or_sklearn() -> None:
    code = (
        "import sys, crosskd.teachers as t\n"
        "from crosskd.teachers import LightGBMTeacher, SklearnTeacher, ModuleTeacher\n"
        "print('lightgbm' in sys.modules, 'sklearn' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_lightgbm_binary_logits_are_scaled_margins(data) -> None:
    booster = _booster(data["X"], data["y_bin"], rounds=5, objective="binary", sigmoid=2.0)
    logits = LightGBMTeacher(booster).logits(data["X"])
    raw = booster.predict(data["X"], raw_score=True)
    np.testing.assert_allclose(logits[:, 0].numpy(), 0.0)
    np.testing.assert_allclose(logits[:, 1].numpy(), 2.0 * raw, rtol=1e-6)


def test_lightgbm_cross_entropy(data) -> None:
    booster = _booster(data["X"], data["y_bin"], rounds=5, objective="xentropy")
    teacher = LightGBMTeacher(booster)
    expected = _two_class(booster.predict(data["X"]))
    np.testing.assert_allclose(teacher.predict_proba(data["X"]), expected, atol=1e-6)


def test_lightgbm_refuses_multiclassova(data) -> None:
    booster = _booster(data["X"], data["y_multi"], rounds=3, objective="multiclassova", num_class=3)
    with pytest.raises(
        TeacherError, match=r"multiclassova.*do not\s+sum to 1.*objective='multiclass'"
    ):
        LightGBMTeacher(booster)


def test_lightgbm_refuses_custom_objective(data) -> None:
    def squared(preds, dataset):
        return preds - dataset.get_label(), np.ones_like(preds)

    booster = _booster(data["X"], data["y_bin"], rounds=3, objective=squared)
    with pytest.raises(TeacherError, match="custom objective.*PrecomputedTeacher"):
        LightGBMTeacher(booster)


def test_lightgbm_refuses_regression(data) -> None:
    booster = _booster(data["X"], data["y_bin"].astype(float), rounds=3, objective="regression")
    with pytest.raises(TeacherError, match="'regression', a regression or ranking objective"):
        LightGBMTeacher(booster)


def test_lightgbm_unfitted_classifier() -> None:
    with pytest.raises(NotFittedError, match="not fitted yet"):
        LightGBMTeacher(lgb.LGBMClassifier())


def test_lightgbm_wrong_model_type() -> None:
    with pytest.raises(TeacherError, match="takes a lightgbm.Booster.*got a LogisticRegression"):
        LightGBMTeacher(LogisticRegression())


def test_lightgbm_bad_model_files(binary_booster, tmp_path) -> None:
    text = binary_booster.model_to_string()
    cuts = {
        "half": text[: len(text) // 2],
        "header": text[:100],
        "before_end_of_trees": text[: text.index("end of trees") - 40],
        "pandas_categorical": text[: len(text) - 8],
    }
    for name, cut in cuts.items():
        path = tmp_path / f"{name}.txt"
        path.write_text(cut)
        with pytest.raises(BundleError, match="truncated or corrupt"):
            LightGBMTeacher(path)
    garbage = tmp_path / "garbage.txt"
    garbage.write_bytes(b"\x80\x04\x95 pickled bytes")
    with pytest.raises(BundleError, match="not a LightGBM model text file"):
        LightGBMTeacher(garbage)
    with pytest.raises(BundleError, match="does not exist"):
        LightGBMTeacher(tmp_path / "nowhere.txt")


def test_lightgbm_missing_columns(binary_booster, data) -> None:
    teacher = LightGBMTeacher(binary_booster)
    with pytest.raises(DataError, match=r"lacks 2 of the 5 columns.*'f1', 'f3'"):
        teacher.logits(data["X"].drop(columns=["f1", "f3"]))


def test_lightgbm_reorders_columns_by_name(binary_booster, data) -> None:
    teacher = LightGBMTeacher(binary_booster)
    shuffled = data["X"][["f3", "f0", "f4", "f2", "f1"]].assign(extra=1.0)
    torch.testing.assert_close(teacher.logits(shuffled), teacher.logits(data["X"]))


def test_lightgbm_array_input(binary_booster, data) -> None:
    teacher = LightGBMTeacher(binary_booster)
    values = data["X"].to_numpy()
    torch.testing.assert_close(teacher.logits(values), teacher.logits(data["X"]))
    torch.testing.assert_close(
        teacher.logits(torch.from_numpy(values.copy())), teacher.logits(values)
    )
    with pytest.raises(DataError, match="model expects 5 features, got 4"):
        teacher.logits(values[:, :4])


def test_lightgbm_str_columns_use_the_model_categories() -> None:
    rng = np.random.default_rng(1)
    n = 300
    X = pd.DataFrame(
        {
            "amount": rng.normal(size=n),
            "merchant": rng.choice(["bar", "cafe", "shop", "zoo"], size=n),
        }
    )
    assert not isinstance(X["merchant"].dtype, pd.CategoricalDtype)  # str (pandas 3) or object
    y = ((X["amount"] > 0) ^ X["merchant"].isin(["bar", "zoo"])).astype(int)
    train = X.assign(merchant=X["merchant"].astype("category"))
    booster = _booster(train, y, rounds=10, objective="binary", min_data_per_group=5, cat_smooth=1)
    teacher = LightGBMTeacher(booster)
    expected = _two_class(booster.predict(train))
    # each small batch sees only some categories: the model's stored categories map them back
    np.testing.assert_allclose(teacher.predict_proba(X), expected, atol=1e-6)
    batched = teacher.logits(X, batch_size=7)
    torch.testing.assert_close(batched, teacher.logits(X), atol=0, rtol=0)
    assert not np.allclose(expected[:, 1], expected[0, 1])  # the categories matter


def test_lightgbm_str_column_without_categorical_training(data) -> None:
    booster = _booster(data["X"], data["y_bin"], rounds=3, objective="binary")
    X = data["X"].assign(f4=np.where(data["X"]["f4"] > 0, "a", "b"))
    with pytest.raises(DataError, match=r"column\(s\) \['f4'\] hold strings"):
        LightGBMTeacher(booster).logits(X)


# --------------------------------------------------------------------------------------------------
# scikit-learn


def test_sklearn_anomaly_mapping_sign(data) -> None:
    detector = IsolationForest(n_estimators=20, random_state=0).fit(data["X"])
    # anomaly_scale="auto" fits its slope on the training rows before scoring a 2-row probe.
    teacher = SklearnTeacher(detector).fit_anomaly_scale(data["X"])
    assert teacher.info.classes == (0, 1)
    probe = pd.DataFrame([[0.0] * N_FEATURES, [8.0] * N_FEATURES], columns=data["X"].columns)
    p_anomaly = teacher.predict_proba(probe)[:, 1]
    assert p_anomaly[0] < 0.5 < p_anomaly[1]
    # P(anomaly) > 0.5 exactly where the detector itself says "outlier" (-1)
    flagged = teacher.predict_proba(data["X"])[:, 1] > 0.5
    np.testing.assert_array_equal(flagged, detector.predict(data["X"]) == -1)


def test_sklearn_novelty_lof(data) -> None:
    X = data["X"].to_numpy()
    teacher = SklearnTeacher(LocalOutlierFactor(n_neighbors=10, novelty=True).fit(X))
    assert teacher.logits(X).shape == (N_ROWS, 2)
    with pytest.raises(TeacherError, match="novelty=True"):
        SklearnTeacher(LocalOutlierFactor(n_neighbors=10).fit(X))


def test_sklearn_refusals(data) -> None:
    from sklearn.cluster import KMeans

    with pytest.raises(NotFittedError, match="LogisticRegression is not fitted yet"):
        SklearnTeacher(LogisticRegression())
    svc = LinearSVC().fit(data["X"], data["y_bin"])
    with pytest.raises(TeacherError, match="no predict_proba.*CalibratedClassifierCV"):
        SklearnTeacher(svc)
    assert SklearnTeacher(svc, method="decision_function").logits(data["X"]).shape == (N_ROWS, 2)
    kmeans = KMeans(n_clusters=2, n_init=1, random_state=0).fit(data["X"])
    with pytest.raises(TeacherError, match="neither predict_proba nor decision_function"):
        SklearnTeacher(kmeans)
    with pytest.raises(ConfigError, match="method must be one of"):
        SklearnTeacher(svc, method="proba")
    with pytest.raises(ConfigError, match="anomaly_scale"):
        SklearnTeacher(svc, anomaly_scale=0)


def test_sklearn_columns(logreg, data) -> None:
    teacher = SklearnTeacher(logreg)
    shuffled = data["X"][list(reversed(data["X"].columns))]
    torch.testing.assert_close(teacher.logits(shuffled), teacher.logits(data["X"]))
    with pytest.raises(DataError, match="lacks 1 of the 5 columns.*'f0'"):
        teacher.logits(data["X"].drop(columns="f0"))


# --------------------------------------------------------------------------------------------------
# torch modules


class _TwoInputs(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dense = torch.nn.Linear(3, 4)
        self.embed = torch.nn.Embedding(5, 4)

    def forward(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return self.dense(x) + self.embed(idx)


def test_module_tuple_inputs_and_inferred_classes() -> None:
    net = _TwoInputs()
    teacher = ModuleTeacher(net, batch_size=5)
    with pytest.raises(TeacherError, match="does not know its number of classes yet"):
        _ = teacher.info
    x = np.random.default_rng(0).normal(size=(12, 3))  # float64: cast to the module's float32
    idx = np.arange(12) % 5
    logits = teacher.logits((x, idx))
    assert teacher.info.num_classes == 4
    with torch.no_grad():
        expected = net(torch.from_numpy(x).float(), torch.from_numpy(idx))
    torch.testing.assert_close(logits, expected)


def test_module_on_device_logits_can_be_targets() -> None:
    net = torch.nn.Linear(3, 2)
    teacher = ModuleTeacher(net, classes=("neg", "pos"))
    x = torch.randn(6, 3)
    target = teacher.logits_on_device(x)
    assert target.device == teacher.device and not target.requires_grad
    student = torch.nn.Linear(3, 2)
    loss = torch.nn.functional.kl_div(
        torch.log_softmax(student(x), 1),
        torch.log_softmax(target, 1),
        log_target=True,
        reduction="batchmean",
    )
    loss.backward()  # the teacher's output must not be an inference tensor
    assert student.weight.grad is not None
    assert not net.training


def test_module_rejects_non_2d_output() -> None:
    teacher = ModuleTeacher(torch.nn.Flatten(0), classes=range(3))
    with pytest.raises(DataError, match="needs 2-D logits"):
        teacher.logits(np.zeros((4, 3), dtype=np.float32))


def test_module_bf16_precision_gives_float32() -> None:
    teacher = ModuleTeacher(torch.nn.Linear(3, 2), precision="bf16-mixed")
    logits = teacher.logits(np.ones((4, 3), dtype=np.float32))
    assert logits.dtype == torch.float32


# --------------------------------------------------------------------------------------------------
# precomputed logits


@pytest.fixture
def cached(multi_booster, data) -> PrecomputedTeacher:
    return PrecomputedTeacher.from_teacher(LightGBMTeacher(multi_booster), data["X"])


def test_precomputed_rejects_other_rows(cached, data) -> None:
    with pytest.raises(DataError, match="not the rows the precomputed logits were computed for"):
        cached.logits(data["X"].iloc[::-1])
    with pytest.raises(DataError, match=f"has {N_ROWS} logits but {N_ROWS - 1} rows were given"):
        cached.logits(data["X"].iloc[1:])


def test_precomputed_without_fingerprint_checks_row_count_only(data) -> None:
    teacher = PrecomputedTeacher(np.zeros((N_ROWS, 2)))
    assert teacher.logits(data["X"].iloc[::-1]).shape == (N_ROWS, 2)
    with pytest.raises(DataError, match="has 240 logits but 10 rows"):
        teacher.logits(data["X"].iloc[:10])


def test_precomputed_rows_and_fingerprint(data) -> None:
    logits = np.zeros((N_ROWS, 2))
    teacher = PrecomputedTeacher(logits, fingerprint=fingerprint(data["X"]))
    assert teacher.logits(data["X"]).shape == (N_ROWS, 2)
    with pytest.raises(DataError, match="fingerprints disagree"):
        PrecomputedTeacher(logits, rows=data["X"], fingerprint="0123456789abcdef")
    with pytest.raises(DataError, match="240 logits but rows= has 10 rows"):
        PrecomputedTeacher(logits, rows=data["X"].iloc[:10])


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_precomputed_round_trip_keeps_fingerprint(data, tmp_path, suffix) -> None:
    logits = np.random.default_rng(0).normal(size=(N_ROWS, 3))
    teacher = PrecomputedTeacher(logits, rows=data["X"], classes=["a", "b", "c"])
    path = teacher.save(tmp_path / f"logits{suffix}")
    loaded = PrecomputedTeacher(path)
    assert loaded.fingerprint == teacher.fingerprint == fingerprint(data["X"])
    assert loaded.info.classes == ("a", "b", "c")
    torch.testing.assert_close(loaded.logits(data["X"]), teacher.logits(data["X"]))
    with pytest.raises(DataError, match="reordered"):
        loaded.logits(data["X"].sample(frac=1.0, random_state=0))


def test_precomputed_bad_values_and_files(tmp_path) -> None:
    bad = np.zeros((5, 2))
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="1 non-finite values.*first: row 3"):
        PrecomputedTeacher(bad)
    with pytest.raises(DataError, match="binary_logits_from_margin"):
        PrecomputedTeacher(np.zeros(5))
    with pytest.raises(BundleError, match="does not exist"):
        PrecomputedTeacher(tmp_path / "missing.npy")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(BundleError, match="not a readable parquet file"):
        PrecomputedTeacher(broken)
    with pytest.raises(ConfigError, match=r"\.npy or \.parquet"):
        PrecomputedTeacher(np.zeros((5, 2))).save(tmp_path / "logits.csv")


# --------------------------------------------------------------------------------------------------
# ensembles


def test_ensemble_of_identical_members_equals_the_member(binary_booster, data) -> None:
    member = LightGBMTeacher(binary_booster)
    ensemble = EnsembleTeacher([member, member, member], weights=[1, 2, 3])
    np.testing.assert_allclose(
        ensemble.predict_proba(data["X"]), member.predict_proba(data["X"]), atol=1e-6
    )


def test_ensemble_refusals(binary_booster, multi_booster, logreg) -> None:
    binary = LightGBMTeacher(binary_booster)
    with pytest.raises(TeacherError, match="disagree on the classes"):
        EnsembleTeacher([binary, LightGBMTeacher(multi_booster)])
    with pytest.raises(ConfigError, match=">= 0 and not all 0"):
        EnsembleTeacher([binary, SklearnTeacher(logreg)], weights=[1.0, -1.0])
    with pytest.raises(ConfigError, match=">= 0 and not all 0"):
        EnsembleTeacher([binary, SklearnTeacher(logreg)], weights=[0.0, 0.0])
    with pytest.raises(ConfigError, match="2 weights for 1 members"):
        EnsembleTeacher([binary], weights=[1.0, 1.0])
