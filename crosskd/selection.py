"""Which student a ``crosskd distill`` run deploys: the distilled one or the baseline, on validation.

A run trains the student twice: on labels alone (the baseline) and distilled from the teacher. On
data nobody tuned the defaults to, a teacher can be worse than the student alone (a large CNN
trained from scratch on a few hundred images), and a student that follows it is worse too. The
run therefore scores both students on the validation split (never on the test rows) and deploys
the distilled student unless the baseline is better there by more than one standard error of
the paired difference (a difference the validation rows cannot resolve keeps the distilled
student: on the data sets measured here distillation helps more often than not).

The comparison is paired (the same validation rows), and its standard error says whether the
validation split can tell the two apart: ``uncertain`` is true when the difference is within two
standard errors, a choice the report states rather than hides.

- two classes: average precision (the standard error from a seeded paired bootstrap);
- more classes: accuracy (the standard error of the per-row difference in correctness);
- text lines: character error rate (the standard error of the per-line difference in edit
  errors, over the validation characters).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BOOTSTRAP_SAMPLES", "compare_on_validation"]

#: resamples of the paired bootstrap of the average-precision difference.
BOOTSTRAP_SAMPLES = 200


def _ap_difference(y: np.ndarray, s_student: np.ndarray, s_baseline: np.ndarray) -> tuple:
    """Student minus baseline average precision, and its paired-bootstrap standard error."""
    from .metrics import average_precision

    diff = average_precision(y, s_student) - average_precision(y, s_baseline)
    rng = np.random.default_rng(0)
    n, found = len(y), []
    for _ in range(BOOTSTRAP_SAMPLES):
        idx = rng.integers(0, n, n)
        if y[idx].min() == y[idx].max():
            continue  # a resample with one class has no average precision
        found.append(
            average_precision(y[idx], s_student[idx]) - average_precision(y[idx], s_baseline[idx])
        )
    se = float(np.std(found, ddof=1)) if len(found) > 1 else float("inf")
    return float(diff), se


def _per_row(values: np.ndarray, scale: float) -> float:
    """Standard error of the mean of ``values`` (per row), times ``scale``."""
    if len(values) < 2:
        return float("inf")
    return float(np.std(values, ddof=1) / np.sqrt(len(values)) * scale)


def compare_on_validation(
    task: str, y_val: Any, student_out: Any, baseline_out: Any
) -> dict[str, Any]:
    """Compare the distilled student with the baseline on the validation rows.

    Args:
        task: ``"binary"``, ``"multiclass"`` or ``"sequence"``.
        y_val: validation targets: class indices (``(n,)`` ints) or label strings (text lines).
        student_out: the distilled student's outputs on the validation rows: probabilities
            ``(n, C)``, or decoded strings (text lines).
        baseline_out: the baseline's outputs, like ``student_out``.

    Returns:
        ``{"deployed": "student" | "baseline", "metric", "higher_is_better", "validation":
        {"student", "baseline"}, "difference" (student minus baseline, in the metric's own
        direction: positive means the student is better), "standard_error", "uncertain",
        "rows", "reason"}``.
    """
    from .metrics import average_precision, edit_distance

    if task == "binary":
        y = np.asarray(y_val).astype(int)
        s, b = np.asarray(student_out)[:, 1], np.asarray(baseline_out)[:, 1]
        metric, higher = "average_precision", True
        scores = {"student": average_precision(y, s), "baseline": average_precision(y, b)}
        better, se = _ap_difference(y, s, b)
    elif task == "multiclass":
        y = np.asarray(y_val).astype(int)
        right_s = (np.argmax(np.asarray(student_out), axis=1) == y).astype(float)
        right_b = (np.argmax(np.asarray(baseline_out), axis=1) == y).astype(float)
        metric, higher = "accuracy", True
        scores = {"student": float(right_s.mean()), "baseline": float(right_b.mean())}
        better, se = scores["student"] - scores["baseline"], _per_row(right_s - right_b, 1.0)
    elif task == "sequence":
        refs = [str(v) for v in y_val]
        err_s = np.array([edit_distance(p, r) for p, r in zip(student_out, refs, strict=True)])
        err_b = np.array([edit_distance(p, r) for p, r in zip(baseline_out, refs, strict=True)])
        chars = max(1, sum(len(r) for r in refs))
        metric, higher = "cer", False
        scores = {"student": err_s.sum() / chars, "baseline": err_b.sum() / chars}
        # per line, edit errors over the mean characters per line: the CER difference's error
        better = float((err_b - err_s).sum() / chars)
        se = _per_row(err_b - err_s, len(refs) / chars)
    else:
        raise ValueError(f"task must be binary, multiclass or sequence, not {task!r}")
    deployed = "baseline" if better < -se else "student"
    uncertain = not abs(better) > 2 * se
    word = "higher" if higher else "lower"
    if deployed == "student":
        reason = (
            f"the distilled student's validation {metric} ({scores['student']:.4f}) is "
            + ("no worse than" if better >= 0 else "within one standard error of")
            + f" the baseline's ({scores['baseline']:.4f})"
        )
    else:
        reason = (
            f"the baseline's validation {metric} ({scores['baseline']:.4f}, {word} is better) "
            f"beats the distilled student's ({scores['student']:.4f}) by more than one standard "
            f"error ({se:.4f}): distillation from this teacher did not help on the validation rows"
        )
    if uncertain and se == 0.0:
        reason += (
            f"; the two make the same errors on the same {len(np.asarray(y_val))} validation "
            "rows, so the choice is uncertain"
        )
    elif uncertain:
        reason += (
            f"; the difference ({abs(better):.4f}) is within two standard errors ({se:.4f}) of "
            f"the {len(np.asarray(y_val))} validation rows, so the choice is uncertain"
        )
    return {
        "deployed": deployed,
        "metric": metric,
        "higher_is_better": higher,
        "validation": {k: float(v) for k, v in scores.items()},
        "difference": float(better),
        "standard_error": float(se),
        "uncertain": bool(uncertain),
        "rows": int(len(np.asarray(y_val))),
        "reason": reason,
    }
