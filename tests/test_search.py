"""temperature="auto" / alpha="auto": chosen on validation rows, recorded, with clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from toy import LinearTeacher

from crosskd import MLP, ConfigError, Distiller
from crosskd.search import ALPHAS, METHODS, TEMPERATURES


def _data(n=300, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    W = rng.normal(size=(4, k)) * 2
    return X, (X @ W + rng.gumbel(size=(n, k))).argmax(1), W


def test_auto_pair_is_chosen_on_validation_and_recorded(tmp_path):
    X, y, W = _data()
    d = Distiller(LinearTeacher(W), MLP(4, 3, hidden=(8,)), temperature="auto", alpha="auto",
                  epochs=6, progress=False, device="cpu")  # fmt: skip
    d.fit(X[:240], y[:240], eval_set=(X[240:], y[240:]))
    search = d.search_
    assert search["metric"] == "val_log_loss" and search["epochs_per_trial"] == 3
    assert len(search["trials"]) == len(TEMPERATURES) * len(ALPHAS)
    best = max(search["trials"], key=lambda t: t["score"])
    assert search["chosen"] == {
        "temperature": best["temperature"],
        "alpha": best["alpha"],
        "method": "hinton",
    }
    assert d.method_ == "hinton"
    assert (d.temperature_, d.alpha_) == (best["temperature"], best["alpha"])
    assert d.temperature == "auto"  # the setting stays as given (scikit-learn's rule)
    assert isinstance(search["uncertain"], bool)
    d.save(tmp_path / "s.safetensors")  # the chosen values are saved, not "auto"


def test_only_the_auto_setting_varies_and_binary_uses_average_precision():
    X, y, W = _data(k=2)
    d = Distiller(LinearTeacher(W), MLP(4, 2, hidden=(8,)), temperature="auto", alpha=0.7,
                  epochs=4, validation_fraction=0.25, progress=False, device="cpu")  # fmt: skip
    d.fit(X, y)
    assert [t["alpha"] for t in d.search_["trials"]] == [0.7] * len(TEMPERATURES)
    assert d.search_["metric"] == "val_average_precision" and d.alpha_ == 0.7


def test_auto_needs_validation_rows_and_labels():
    X, y, W = _data()
    with pytest.raises(ConfigError, match="eval_set=.*validation_fraction"):
        Distiller(LinearTeacher(W), MLP(4, 3), temperature="auto", progress=False).fit(X, y)
    with pytest.raises(ConfigError, match="temperature='auto'"):
        Distiller(LinearTeacher(W), MLP(4, 3), temperature="auto", alpha=1.0,
                  validation_fraction=0.2, progress=False).fit(X)  # fmt: skip
    with pytest.raises(ConfigError, match="temperature"):
        Distiller(LinearTeacher(W), MLP(4, 3), temperature="hot", progress=False).fit(X, y)


@pytest.fixture(scope="module")
def auto_three_classes():
    """One ``method="auto"`` fit on three classes, shared by the tests that read its search."""
    X, y, W = _data()
    d = Distiller(LinearTeacher(W), MLP(4, 3, hidden=(8,)), temperature=2.0, alpha=0.9,
                  method="auto", epochs=6, validation_fraction=0.25, progress=False,
                  device="cpu")  # fmt: skip
    return d.fit(X, y), W


def test_method_auto_tries_each_method_at_the_given_pair_and_records_the_choice(
    auto_three_classes,
):
    d, W = auto_three_classes
    X, y, _ = _data()
    trials = d.search_["trials"]
    assert [t["method"] for t in trials if not t["standardize"]] == list(METHODS)
    assert {(t["temperature"], t["alpha"]) for t in trials} == {(2.0, 0.9)}
    best = max(trials, key=lambda t: t["score"])
    assert d.search_["chosen"]["method"] == d.method_ == best["method"]
    assert d.method == "auto"
    # a plain fit records its method too
    plain = Distiller(LinearTeacher(W), MLP(4, 3, hidden=(8,)), method="dist", epochs=2,
                      progress=False, device="cpu").fit(X, y)  # fmt: skip
    assert plain.method_ == "dist" and not hasattr(plain, "search_")


def test_method_auto_also_tries_standardised_logits_with_three_classes_only(auto_three_classes):
    d, _ = auto_three_classes
    trials = d.search_["trials"]
    assert [(t["method"], t["standardize"]) for t in trials] == [
        *[(m, False) for m in METHODS],
        ("hinton", True),
    ]
    best = max(trials, key=lambda t: t["score"])
    chosen = d.search_["chosen"]
    assert (chosen["method"], chosen["standardize"]) == (best["method"], best["standardize"])
    assert d.standardize_ == best["standardize"] and d.standardize is False  # as given
    # two classes: standardised logits carry no gradient, so they are not tried
    X2, y2, W2 = _data(k=2)
    d2 = Distiller(LinearTeacher(W2), MLP(4, 2, hidden=(8,)), temperature=2.0, alpha=0.9,
                   method="auto", epochs=4, validation_fraction=0.25, progress=False,
                   device="cpu").fit(X2, y2)  # fmt: skip
    assert [t["method"] for t in d2.search_["trials"]] == list(METHODS)
    assert "standardize" not in d2.search_["chosen"] and d2.standardize_ is False


def test_method_auto_refuses_method_params():
    X, y, W = _data()
    with pytest.raises(ConfigError, match="method='auto' chooses between methods"):
        Distiller(LinearTeacher(W), MLP(4, 3), method="auto", validation_fraction=0.2,
                  method_params={"nontarget_weight": 8.0}, progress=False).fit(X, y)  # fmt: skip
