"""benchmarks/methods.py: the choices (temperature and method on validation only) and the paired
comparison with the reference method that the method tables report."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import methods  # noqa: E402


def test_compare_pairs_by_seed_and_measures_noise() -> None:
    test = {"hinton": [0.60, 0.70, 0.65], "dist": [0.62, 0.72, 0.67], "ranking": [0.70, 0.60, 0.65]}
    out = methods.compare(test, "hinton", higher=True)
    assert out["hinton"]["scores"] == pytest.approx([0.65, np.std([0.60, 0.70, 0.65])])
    assert "difference" not in out["hinton"]
    # dist: +0.02 on every seed -> no noise, beyond it, better
    assert out["dist"]["difference"][0] == pytest.approx(0.02)
    assert out["dist"]["noise"] == pytest.approx(0.0, abs=1e-12)
    assert out["dist"]["beyond_seed_noise"] and out["dist"]["better"]
    # ranking: the same mean as hinton, paired differences +0.1 / -0.1 / 0 -> within the noise
    assert out["ranking"]["difference"][0] == pytest.approx(0.0, abs=1e-12)
    assert not out["ranking"]["beyond_seed_noise"] and not out["ranking"]["better"]


def test_compare_lower_is_better() -> None:
    out = methods.compare({"hinton": [60, 62, 64], "dkd": [55, 57, 59]}, "hinton", higher=False)
    assert out["dkd"]["difference"][0] == pytest.approx(-5.0)
    assert out["dkd"]["beyond_seed_noise"] and out["dkd"]["better"]


def test_choose_temperature_reads_validation_and_breaks_ties_low() -> None:
    assert methods.choose_temperature({1.0: 0.5, 4.0: 0.7}, higher=True) == 4.0
    assert methods.choose_temperature({1.0: 30, 4.0: 25}, higher=False) == 4.0
    assert methods.choose_temperature({4.0: 25, 1.0: 25}, higher=False) == 1.0


def test_run_methods_chooses_on_validation_never_on_test() -> None:
    calls = []

    def fit(name: str, t: float, seed: int) -> tuple[float, float, dict]:
        calls.append((name, t, seed))
        # validation errors: "a" is best at T=4, "b" at T=1 and better overall on validation;
        # the test scores say the opposite, and must not change any choice
        val = {("a", 1.0): 30, ("a", 4.0): 20, ("b", 1.0): 10, ("b", 4.0): 40}[(name, t)]
        test = {"a": 5, "b": 50}[name] + seed
        return val, test, {"cer": 0.1 * seed}

    out = methods.run_methods(["a", "b"], [1.0, 4.0], 3, fit, False, lambda m: None)
    assert out["a"]["temperature"] == 4.0 and out["b"]["temperature"] == 1.0
    assert out["b"]["chosen"] and not out["a"]["chosen"]
    # seed 0 at the chosen T is reused; seeds 1 and 2 run only at the chosen T
    assert out["a"]["test"] == [5, 6, 7] and out["b"]["test"] == [50, 51, 52]
    assert sorted(c for c in calls if c[2] > 0) == [("a", 4.0, 1), ("a", 4.0, 2),
                                                     ("b", 1.0, 1), ("b", 1.0, 2)]  # fmt: skip
    assert out["a"]["extra_metrics"]["cer"] == pytest.approx([0.1, np.std([0.0, 0.1, 0.2])])


def test_method_table_and_rows_agree() -> None:
    fit_out = {
        "hinton": {"temperature": 1.0, "validation": {1.0: 30.0}, "test": [60, 62],
                   "extra_metrics": {}, "chosen": False},
        "dkd": {"temperature": 4.0, "validation": {1.0: 31.0, 4.0: 25.0}, "test": [55, 57],
                "extra_metrics": {}, "chosen": True},
    }  # fmt: skip
    summary = methods.compare({n: m["test"] for n, m in fit_out.items()}, "hinton", False)
    lines = methods.method_table("mlp", fit_out, summary, "hinton", "val", "test", 1)
    assert lines[2] == "| hinton | 1 | 30.0 | 61.0 ± 1.0 | — |  |  |"
    assert lines[3] == "| dkd | 4 | 25.0 | 56.0 ± 1.0 | -5.0 ± 0.0 | yes | yes |"
    rows = methods.method_rows("mnist", "MNIST", "mlp", 10, fit_out, summary, "errors", "hinton")
    assert [r["chosen"] for r in rows] == [False, True]
    assert rows[1]["validation_by_temperature"] == {"1.0": 31.0, "4.0": 25.0}
    assert rows[1]["metrics"]["errors"] == [56.0, 1.0]
