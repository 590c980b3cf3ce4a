"""The Distiller: lifecycle, reproducibility, early stopping, transfer sets, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from toy import LinearTeacher

from crosskd import Distiller, ModuleTeacher, TabularStudent
from crosskd.exceptions import ConfigError, DataError, DeviceError, NotFittedError, TrainingError


def make_data(n=1200, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    W = rng.normal(size=(d, k)) * 2.0
    y = (X @ W + rng.gumbel(size=(n, k))).argmax(1)
    return X, y, W


def mlp(d=5, k=3, hidden=16):
    return nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, k))


def test_fit_returns_self_and_fitted_state():
    X, y, W = make_data()
    d = Distiller(LinearTeacher(W), mlp(), epochs=3, progress=False, device="cpu")
    assert d.fit(X[:1000], y[:1000], eval_set=(X[1000:], y[1000:])) is d
    assert d.classes_ == (0, 1, 2)
    assert len(d.history_) == 3
    assert {"train_loss", "train_kd", "train_ce", "val_loss", "val_accuracy"} <= set(d.history_[0])
    proba = d.predict_proba(X[1000:])
    assert proba.shape == (200, 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-9)
    assert set(d.predict(X[:10])) <= {0, 1, 2}
    assert set(d.evaluate(X[1000:], y[1000:])) == {"accuracy", "log_loss"}


def test_same_seed_same_weights_different_seed_different():
    X, y, W = make_data()

    def train(seed):
        torch.manual_seed(123)  # the student's initial weights are the user's: keep them equal
        d = Distiller(LinearTeacher(W), mlp(), epochs=2, seed=seed, progress=False, device="cpu")
        return d.fit(X, y).predict_logits(X[:50])

    a, b, c = train(0), train(0), train(1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_teacher_only_student_matches_teacher():
    # alpha=1, no labels at all: the student learns from the teacher alone.
    X, _, W = make_data(n=3000)
    teacher = LinearTeacher(W)
    d = Distiller(
        teacher,
        mlp(hidden=32),
        alpha=1.0,
        temperature=1.0,
        epochs=40,
        lr=1e-2,
        progress=False,
        device="cpu",
    )
    d.fit(X, None)
    agree = (d.predict_proba(X).argmax(1) == teacher.predict_proba(X).argmax(1)).mean()
    assert agree > 0.95


def test_transfer_rows_are_used():
    # Labels for 50 rows only; 2,000 unlabelled transfer rows carry the teacher's knowledge.
    X, y, W = make_data(n=2100)
    teacher = LinearTeacher(W)
    kwargs = dict(temperature=1.0, epochs=30, lr=1e-2, progress=False, device="cpu", seed=0)
    alone = Distiller(None, mlp(), alpha=0.0, **kwargs).fit(X[:50], y[:50])
    kd = Distiller(teacher, mlp(), alpha=0.9, **kwargs).fit(X[:50], y[:50], transfer=X[50:2050])
    assert kd.n_transfer_rows_ == 2000
    test = slice(2050, 2100)
    assert kd.evaluate(X[test], y[test])["accuracy"] >= alone.evaluate(X[test], y[test])["accuracy"]
    t_agree = (kd.predict_proba(X).argmax(1) == teacher.predict_proba(X).argmax(1)).mean()
    assert t_agree > 0.9


def test_early_stopping_restores_best_weights():
    X, y, W = make_data(n=600)
    d = Distiller(
        LinearTeacher(W),
        mlp(hidden=64),
        epochs=60,
        lr=3e-2,
        early_stopping=3,
        val_metric="loss",
        progress=False,
        device="cpu",
    )
    d.fit(X[:100], y[:100], eval_set=(X[100:], y[100:]))
    losses = [h["val_loss"] for h in d.history_]
    assert d.best_epoch_ == int(np.argmin(losses)) + 1
    assert len(d.history_) <= d.best_epoch_ + 3
    # The restored weights are the best epoch's: recomputing the validation loss gives its value.
    from crosskd.losses import distillation_loss

    logits = d.predict_logits(X[100:])
    t_logits = LinearTeacher(W).logits(X[100:])
    val = distillation_loss(logits, t_logits, torch.as_tensor(y[100:]), d.temperature, d.alpha)
    assert float(val["loss"]) == pytest.approx(min(losses), rel=1e-4)


def test_labels_mapped_through_teacher_classes():
    X, y, W = make_data()
    names = np.array(["low", "mid", "high"])
    d = Distiller(
        LinearTeacher(W, classes=("low", "mid", "high")),
        mlp(),
        epochs=2,
        progress=False,
        device="cpu",
    )
    d.fit(X, names[y])
    assert d.classes_ == ("low", "mid", "high")
    assert set(d.predict(X[:20])) <= set(names)
    with pytest.raises(DataError, match=r"labels \['other'\] are not among the classes"):
        Distiller(
            LinearTeacher(W, classes=("low", "mid", "high")), mlp(), epochs=1, progress=False
        ).fit(X[:3], ["low", "mid", "other"])


def test_class_count_mismatch_message():
    X, y, W = make_data()
    with pytest.raises(
        DataError,
        match="has 3 classes but the student outputs 2 logits. Give the student num_classes=3",
    ):
        Distiller(LinearTeacher(W), mlp(k=2), epochs=1, progress=False).fit(X, y)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": 0}, "temperature must be finite and > 0"),
        ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"batch_size": 2.5}, "batch_size must be a positive integer"),
        ({"precision": "fp8"}, "precision must be one of"),
        ({"teacher_mode": "lazy"}, "teacher_mode must be one of"),
        ({"class_weight": [1.0]}, "class_weight has 1 weights for 3 classes"),
        ({"class_weight": "heavy"}, "class_weight must be None, 'balanced'"),
        ({"validation_fraction": 1.0}, r"validation_fraction must be in \(0, 1\)"),
        ({"early_stopping": 0}, "early_stopping must be None, .auto. or a positive number"),
    ],
)
def test_bad_settings(kwargs, message):
    X, y, W = make_data(n=50)
    with pytest.raises(ConfigError, match=message):
        Distiller(LinearTeacher(W), mlp(), progress=False, device="cpu", **kwargs).fit(X, y)


def test_alpha_without_teacher_and_augment_without_online():
    X, y, W = make_data(n=50)
    with pytest.raises(ConfigError, match="teacher is None"):
        Distiller(None, mlp(), alpha=0.5, progress=False).fit(X, y)
    with pytest.raises(ConfigError, match="augment changes every batch"):
        Distiller(LinearTeacher(W), mlp(), augment=lambda b: b, progress=False).fit(X, y)
    with pytest.raises(ConfigError, match="needs a torch teacher"):
        Distiller(LinearTeacher(W), mlp(), teacher_mode="online", progress=False).fit(X, y)


def test_predict_before_fit():
    with pytest.raises(NotFittedError, match="not fitted yet"):
        Distiller(None, mlp(), alpha=0).predict_proba(np.zeros((2, 5)))


def test_row_count_and_missing_labels():
    X, y, W = make_data(n=50)
    with pytest.raises(DataError, match="X has 50 rows but y has 49 labels"):
        Distiller(LinearTeacher(W), mlp(), progress=False).fit(X, y[:49])
    y_nan = y.astype(float)
    y_nan[3] = np.nan
    with pytest.raises(DataError, match="missing labels"):
        Distiller(LinearTeacher(W), mlp(), progress=False).fit(X, y_nan)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_requested_without_gpu():
    X, y, W = make_data(n=50)
    with pytest.raises(DeviceError, match="no usable CUDA device"):
        Distiller(LinearTeacher(W), mlp(), device="cuda", progress=False).fit(X, y)


def test_bf16_mixed_on_cpu_trains():
    X, y, W = make_data(n=400)
    d = Distiller(
        LinearTeacher(W), mlp(), precision="bf16-mixed", epochs=3, progress=False, device="cpu"
    )
    d.fit(X, y)
    assert all(np.isfinite(h["train_loss"]) for h in d.history_)
    assert d.predict_proba(X).dtype == np.float64


def test_online_teacher_sees_augmented_batch():
    X, y, W = make_data(n=300)
    teacher_net = nn.Linear(5, 3)
    seen = []

    def augment(batch):
        (x,) = batch
        seen.append(x.shape[0])
        return (x + 0.01 * torch.randn_like(x),)

    teacher = ModuleTeacher(teacher_net, device="cpu")
    d = Distiller(
        teacher, mlp(), augment=augment, epochs=2, batch_size=100, progress=False, device="cpu"
    )
    d.fit(X, y)
    assert seen == [100, 100, 100] * 2


def test_tabular_student_on_dataframe_with_strings_and_nans(tmp_path):
    rng = np.random.default_rng(0)
    n = 800
    frame = pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 30.0, n),
            "hour": rng.integers(0, 24, n).astype(float),
            "merchant": pd.array(rng.choice(["shop", "fuel", "web", "atm"], n), dtype="str"),
        }
    )
    frame.loc[rng.choice(n, 40, replace=False), "amount"] = np.nan
    y = ((frame["merchant"] == "web") & (frame["hour"] < 6)).astype(int).to_numpy()
    d = Distiller(
        None,
        TabularStudent(hidden=(16,)),
        alpha=0.0,
        epochs=5,
        class_weight="balanced",
        progress=False,
        device="cpu",
        validation_fraction=0.2,
    )
    d.fit(frame, y)
    assert d.history_ and "val_average_precision" in d.history_[0]
    before = d.predict_proba(frame)
    path = d.save(tmp_path / "student.safetensors")
    loaded = Distiller.load(path)
    np.testing.assert_allclose(loaded.predict_proba(frame), before, atol=1e-6)
    assert loaded.classes_ == d.classes_
    reordered = frame[["merchant", "amount", "hour"]]
    np.testing.assert_allclose(loaded.predict_proba(reordered), before, atol=1e-6)


def test_divergence_is_reported():
    X, y, W = make_data(n=200)
    X = X * 3e37  # float32 overflow in the first layer: the loss becomes inf / nan
    with pytest.raises(TrainingError, match="Training diverged"):
        Distiller(
            LinearTeacher(W * 1e-37), mlp(), epochs=2, batch_size=512, progress=False, device="cpu"
        ).fit(X, y)
