"""Which student a run saves: the distilled one, or the baseline when it is better on validation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import crosskd
from crosskd.cli import main
from crosskd.selection import compare_on_validation


def _proba(pred: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.full((len(pred), n_classes), 0.1 / max(1, n_classes - 1))
    out[np.arange(len(pred)), pred] = 0.9
    return out


def test_multiclass_accuracy_and_its_standard_error():
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    right = y.copy()
    wrong = (y + 1) % 3
    student = _proba(np.where(np.arange(10) < 4, wrong, right), 3)  # 6 of 10 right
    baseline = _proba(right, 3)  # 10 of 10 right
    found = compare_on_validation("multiclass", y, student, baseline)
    assert found["deployed"] == "baseline"
    assert found["validation"] == {"student": 0.6, "baseline": 1.0}
    assert found["difference"] == pytest.approx(-0.4)
    d = np.where(np.arange(10) < 4, -1.0, 0.0)
    assert found["standard_error"] == pytest.approx(np.std(d, ddof=1) / np.sqrt(10))
    assert found["rows"] == 10 and found["metric"] == "accuracy"
    assert "did not help" in found["reason"]


def test_a_tie_keeps_the_distilled_student_and_is_uncertain():
    y = np.array([0, 1, 1, 0])
    same = _proba(np.array([0, 1, 0, 0]), 2)
    found = compare_on_validation("multiclass", y, same, same.copy())
    assert found["deployed"] == "student"
    assert found["difference"] == 0.0 and found["uncertain"]
    assert "uncertain" in found["reason"]


def test_a_baseline_better_by_less_than_one_standard_error_keeps_the_distilled_student():
    y = np.arange(40) % 4
    rows = np.arange(40)
    student = _proba(np.where(rows < 8, (y + 1) % 4, y), 4)  # 32 of 40 right
    baseline = _proba(np.where((rows >= 2) & (rows < 9), (y + 1) % 4, y), 4)  # 33 of 40 right
    found = compare_on_validation("multiclass", y, student, baseline)
    assert found["difference"] == pytest.approx(-1 / 40)
    assert found["standard_error"] > 1 / 40
    assert found["deployed"] == "student" and found["uncertain"]
    assert "within one standard error" in found["reason"]


def test_binary_uses_average_precision_with_a_bootstrap_error():
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.2).astype(int)
    good = np.clip(y * 0.6 + rng.random(400) * 0.5, 0, 1)
    noise = rng.random(400)
    student = np.stack([1 - good, good], axis=1)
    baseline = np.stack([1 - noise, noise], axis=1)
    found = compare_on_validation("binary", y, student, baseline)
    assert found["metric"] == "average_precision" and found["deployed"] == "student"
    assert found["validation"]["student"] > found["validation"]["baseline"]
    assert 0 < found["standard_error"] < found["difference"] / 2
    assert not found["uncertain"]
    # the other way round: the baseline is saved
    flipped = compare_on_validation("binary", y, baseline, student)
    assert flipped["deployed"] == "baseline"
    assert flipped["difference"] == pytest.approx(-found["difference"])


def test_sequence_uses_cer_lower_is_better():
    refs = ["abc", "hello", "xy", "zz"]
    student = ["abc", "hello", "xy", "zz"]
    baseline = ["ab", "hallo", "xy", "z"]
    found = compare_on_validation("sequence", refs, student, baseline)
    assert found["metric"] == "cer" and not found["higher_is_better"]
    assert found["validation"] == {"student": 0.0, "baseline": pytest.approx(3 / 12)}
    assert found["deployed"] == "student" and found["difference"] == pytest.approx(3 / 12)
    assert compare_on_validation("sequence", refs, baseline, student)["deployed"] == "baseline"


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match="task must be"):
        compare_on_validation("ranking", [0], np.ones((1, 2)), np.ones((1, 2)))


def _table(path, n=900, flip=False, seed=0):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    y = np.where(x1 + 0.5 * x2 + 0.3 * rng.normal(size=n) > 0, "yes", "no")
    if flip:
        y = np.where(y == "yes", "no", "yes")
    pd.DataFrame({"feature one": x1, "f-2": x2, "label": y}).to_csv(path, index=False)


def test_a_teacher_worse_than_the_student_alone_is_not_distilled_into_the_saved_student(tmp_path):
    """A teacher trained on flipped labels: the distilled student (alpha 1) follows it, the
    baseline wins on validation, so student.safetensors holds the baseline; --keep-distilled
    keeps the distilled one."""
    _table(tmp_path / "flipped.csv", flip=True)
    _table(tmp_path / "data.csv")
    common = ["--target", "label", "--positive-label", "yes", "--epochs", "8", "--quiet"]
    assert main(["distill", "--data", str(tmp_path / "flipped.csv"), "--out",
                 str(tmp_path / "bad"), "--no-baseline", *common]) == 0  # fmt: skip
    teacher = str(tmp_path / "bad" / "teacher-lightgbm.txt")
    argv = ["distill", "--data", str(tmp_path / "data.csv"), "--teacher-model", teacher,
            "--alpha", "1", *common]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    selection = report["selection"]
    assert selection["deployed"] == "baseline" and not selection["uncertain"]
    assert selection["validation"]["baseline"] > selection["validation"]["student"]
    assert report["baseline"]["file"].endswith("student.safetensors")
    assert report["student"]["file"] is None
    assert "Distillation did not help" in report["warnings"][0]
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "**Saved as the student**: the baseline" in summary
    x = pd.read_csv(tmp_path / "data.csv").drop(columns=["label"])
    saved = crosskd.load(tmp_path / "run").predict_proba(x)[:, 1]
    assert saved.shape == (len(x),)

    assert main([*argv, "--out", str(tmp_path / "kept"), "--keep-distilled"]) == 0
    kept = json.loads((tmp_path / "kept" / "report.json").read_text())
    assert kept["selection"] is None
    assert kept["student"]["file"].endswith("student.safetensors")
    distilled = crosskd.load(tmp_path / "kept").predict_proba(x)[:, 1]
    # the baseline ranks the rows the right way round, the distilled student the wrong way
    y = pd.read_csv(tmp_path / "data.csv")["label"].eq("yes").to_numpy()
    assert saved[y].mean() > saved[~y].mean()
    assert distilled[y].mean() < distilled[~y].mean()


def test_a_small_validation_split_is_flagged():
    from crosskd.pipeline import _small_validation

    few = _small_validation("binary", np.r_[np.ones(9), np.zeros(400)])
    assert "only 9 positive rows (of 409 rows)" in few and "`validation_size`" in few
    assert _small_validation("binary", np.r_[np.ones(30), np.zeros(400)]) is None
    assert "only 60 rows" in _small_validation("multiclass", np.arange(60) % 3)
    assert _small_validation("sequence", ["ab"] * 50) is None
