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
    assert "| teacher | 900 | 40,000 | 0.9000 |" in summary
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


def test_curves_of_any_history_and_the_baseline_in_the_summary(tmp_path):
    """A CTC history (train_ctc, val_cer, ...) is plotted like a classification one, and the
    summary shows teacher, baseline and student, the agreement and the warnings."""
    records = [
        {"epoch": e, "train_loss": 2 / e, "train_kd": 1 / e, "train_ctc": 1 / e,
         "val_cer": 0.5 / e, "val_sequence_accuracy": e / 10, "epoch_seconds": 1.0}
        for e in range(1, 4)
    ]  # fmt: skip
    part = {"params": 10, "bytes": 40, "latency_ms_batch1": 0.5,
            "metrics": {"sequence_accuracy": 0.9, "cer": 0.02}}  # fmt: skip
    report = {
        "kind": "textline",
        "task": "sequence",
        "teacher": {**part, "model": "CRNN resnet18"},
        "baseline": {**part, "agreement": {"prediction_agreement": 0.5}},
        "student": {**part, "best_epoch": 3, "agreement": {"prediction_agreement": 0.75}},
        "warnings": ["The distilled student trails the teacher."],
    }
    files = write_run_artefacts(tmp_path, report, records, baseline_history=records[:2])
    assert set(files) == {"summary", "curves"}
    assert_png(files["curves"])
    summary = files["summary"].read_text()
    assert "| baseline | 10 | 40 | 0.9000 | 0.0200 | 0.500 |" in summary
    assert "| teacher (CRNN resnet18) |" in summary
    assert "- student: predicts the teacher's class (or reading) for 75.0%" in summary
    assert "## Warnings" in summary and "trails the teacher" in summary
    assert "train_ctc 0.3333" in summary and "reader.predict(images)" in summary


def test_binary_summary_names_the_positive_class_and_ranks(tmp_path):
    agreement = {"prediction_agreement": 0.99, "spearman": 0.5, "top1_overlap": 0.0,
                 "top5_overlap": 0.2, "teacher_top1_in_student_top5": 0.0, "top1_rows": 1}  # fmt: skip
    report = {
        "task": "binary",
        "data": {
            "classes": ["legit", "fraud"],
            "positive_label": "fraud",
            "positive_label_reason": "the minority class",
        },  # fmt: skip
        "teacher": {"metrics": {"average_precision": 0.8}},
        "student": {"metrics": {"average_precision": 0.5}, "agreement": agreement},
    }
    files = write_run_artefacts(
        tmp_path, report, history(2), y_true=np.array([0, 1] * 25),
        teacher_proba=proba(50, 2, 1), student_proba=proba(50, 2, 2),
    )  # fmt: skip
    summary = files["summary"].read_text()
    assert "**Positive class**: `fraud` (the minority class); scores are P(fraud)" in summary
    assert "| student | 0.9900 | 0.5000 | 0.0000 | 0.2000 | 0.0000 |" in summary
