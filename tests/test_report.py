"""Run artefacts: summary.md and valid PNG plots."""

from __future__ import annotations

import numpy as np
import pytest

from crosskd.exceptions import DataError
from crosskd.report import write_run_artefacts

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def history(epochs=4, val=True):
    records = []
    for e in range(1, epochs + 1):
        r = {"epoch": e, "train_loss": 1 / e, "train_kd": 0.6 / e, "train_ce": 0.4 / e}
        if val:
            r.update(val_loss=1.1 / e, val_kd=0.7 / e, val_ce=0.4 / e, val_accuracy=0.5 + e / 20)
        records.append(r)
    return records


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000
    from matplotlib.image import imread

    assert imread(path).ndim == 3


def proba(n, k, seed):
    logits = np.random.default_rng(seed).normal(size=(n, k)) * 2
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_binary_run(tmp_path):
    report = {
        "task": "binary",
        "target": "is_fraud",
        "classes": [0, 1],
        "rows": {"train": 100, "validation": 20, "test": 50, "transfer": 0},
        "teacher": {"kind": "lightgbm", "params": 900, "bytes": 40000, "metrics": {"roc_auc": 0.9}},
        "student": {"params": 700, "bytes": 3000, "best_epoch": 3, "metrics": {"roc_auc": 0.88}},
        "settings": {"temperature": 2.0, "alpha": 0.7},
    }
    y = np.random.default_rng(0).integers(0, 2, 50)
    files = write_run_artefacts(
        tmp_path / "run",
        report,
        history(),
        y_true=y,
        teacher_proba=proba(50, 2, 1),
        student_proba=proba(50, 2, 2),
    )
    assert set(files) == {"summary", "curves", "scores", "reliability"}
    for kind in ("curves", "scores", "reliability"):
        assert_png(files[kind])
    summary = files["summary"].read_text()
    assert "| teacher (lightgbm) | 900 | 40,000 | 0.9000 |" in summary
    assert "![Training curves](curves.png)" in summary and "13.3x smaller" in summary


def test_multiclass_run_has_a_confusion_matrix(tmp_path):
    classes = list("abcdefghij")
    y = np.random.default_rng(0).choice(classes, 80)
    files = write_run_artefacts(
        tmp_path, {"classes": classes}, history(val=False), y_true=y, student_proba=proba(80, 10, 3)
    )
    assert set(files) == {"summary", "curves", "confusion"}
    assert_png(files["confusion"])
    assert_png(files["curves"])


def test_without_test_predictions_only_the_summary_and_curves(tmp_path):
    files = write_run_artefacts(tmp_path, {}, history(2))
    assert set(files) == {"summary", "curves"}
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_inconsistent_inputs_are_explained(tmp_path):
    with pytest.raises(DataError, match="3 columns but there are 2 classes"):
        write_run_artefacts(tmp_path, {"classes": [0, 1]}, [], student_proba=proba(5, 3, 0))
    with pytest.raises(DataError, match="class indices from 0 to 5"):
        write_run_artefacts(tmp_path, {}, [], y_true=np.arange(6), student_proba=proba(6, 3, 0))
