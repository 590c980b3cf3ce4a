"""Run artefacts a person wants to look at: a markdown summary and PNG plots.

:func:`write_run_artefacts` is called at the end of ``crosskd distill`` (and can be called on any
fitted :class:`~crosskd.Distiller`'s ``history_``). It writes, into the run folder:

- ``summary.md``: task, rows, teacher vs student quality and size, settings, the plots;
- ``curves.png``: each loss term per epoch (``loss``, ``kd``, ``ce``; training solid, validation
  dashed) and the validation metrics;
- binary tasks: ``scores.png`` (teacher vs student probability of the positive class on the test
  rows: points on the diagonal are rows where the student copies the teacher) and
  ``reliability.png`` (predicted probability vs observed frequency, teacher and student);
- multiclass tasks (characters): ``confusion.png``, the student's confusion matrix (rows: true
  class, normalised per row).

Plots use matplotlib's Agg backend (no display needed); every file is written atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_path, write_text
from .exceptions import DataError

__all__ = ["write_run_artefacts", "SUMMARY_NAME", "PLOT_NAMES"]

SUMMARY_NAME = "summary.md"
#: File names of the plots, by kind.
PLOT_NAMES = {
    "curves": "curves.png",
    "scores": "scores.png",
    "reliability": "reliability.png",
    "confusion": "confusion.png",
}
_LOSS_TERMS = ("loss", "kd", "ce")


def write_run_artefacts(
    out_dir: str | os.PathLike[str],
    report: Mapping[str, Any],
    history: Sequence[Mapping[str, float]],
    *,
    y_true: Any = None,
    teacher_proba: Any = None,
    student_proba: Any = None,
    classes: Sequence[Any] | None = None,
) -> dict[str, Path]:
    """Write ``summary.md`` and the PNG plots of a run into ``out_dir``.

    Args:
        out_dir: the run folder (created when missing).
        report: the run report (``crosskd distill``'s ``report.json`` content); every key is
            optional, what is there is summarised.
        history: per-epoch records of the trainer (``Distiller.history_``): ``epoch``,
            ``train_loss``, ``train_kd``, ``train_ce``, ``val_*``.
        y_true: test labels: integer class indices ``0..C-1`` (the columns of the
            probabilities), or, when not integers, labels found in ``classes``. Needed for the reliability diagram and confusion matrix.
        teacher_proba: teacher probabilities on the test rows, ``(n, C)``.
        student_proba: student probabilities on the test rows, ``(n, C)``.
        classes: class labels, the columns of the probabilities (default: ``report["classes"]``).

    Returns:
        ``{kind: path}`` of the files written: ``summary`` and any of ``curves``, ``scores``,
        ``reliability``, ``confusion`` (a plot is skipped when its inputs are not given).

    Raises:
        DataError: the probabilities or labels have inconsistent shapes.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    classes = list(classes if classes is not None else report.get("classes") or [])
    teacher_p = _proba(teacher_proba, "teacher_proba")
    student_p = _proba(student_proba, "student_proba")
    width = next((p.shape[1] for p in (student_p, teacher_p) if p is not None), len(classes))
    if not classes and width:
        classes = list(range(width))
    for name, p in (("teacher_proba", teacher_p), ("student_proba", student_p)):
        if p is not None and p.shape[1] != len(classes):
            raise DataError(
                f"{name} has {p.shape[1]} columns but there are {len(classes)} classes "
                f"({classes[:10]}); pass probabilities with one column per class."
            )
    if teacher_p is not None and student_p is not None and len(teacher_p) != len(student_p):
        raise DataError(
            f"teacher_proba has {len(teacher_p)} rows but student_proba has {len(student_p)}; "
            "pass both for the same test rows."
        )
    y = _labels(
        y_true, classes, next((len(p) for p in (student_p, teacher_p) if p is not None), None)
    )

    written: dict[str, Path] = {}
    if history:
        written["curves"] = _plot_curves(out / PLOT_NAMES["curves"], history)
    if len(classes) == 2:
        if teacher_p is not None and student_p is not None:
            written["scores"] = _plot_scores(out / PLOT_NAMES["scores"], teacher_p, student_p, y)
        if y is not None and (teacher_p is not None or student_p is not None):
            written["reliability"] = _plot_reliability(
                out / PLOT_NAMES["reliability"], y, teacher_p, student_p
            )
    elif len(classes) > 2 and y is not None and student_p is not None:
        written["confusion"] = _plot_confusion(out / PLOT_NAMES["confusion"], y, student_p, classes)
    summary = _summary(report, history, written, classes, teacher_p, student_p)
    _atomic_write_text(out / SUMMARY_NAME, summary)
    return {"summary": out / SUMMARY_NAME, **written}


# ---------------------------------------------------------------------------------- inputs


def _proba(values: Any, name: str) -> np.ndarray | None:
    if values is None:
        return None
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise DataError(f"{name} must have shape (n_rows, n_classes >= 2), got {arr.shape}.")
    return arr


def _labels(y_true: Any, classes: list[Any], n: int | None) -> np.ndarray | None:
    if y_true is None:
        return None
    if hasattr(y_true, "to_numpy"):
        y_true = y_true.to_numpy()
    y = np.asarray(y_true).ravel()
    if n is not None and len(y) != n:
        raise DataError(
            f"y_true has {len(y)} labels but the probabilities have {n} rows; pass the labels of "
            "the same test rows."
        )
    if y.dtype.kind in "iu":
        if len(y) and (y.min() < 0 or y.max() >= len(classes)):
            raise DataError(
                f"y_true holds class indices from {y.min()} to {y.max()}, but there are "
                f"{len(classes)} classes; integer labels are read as class indices 0.."
                f"{len(classes) - 1} (the columns of the probabilities)."
            )
        return y.astype(np.int64)
    lookup = {c: i for i, c in enumerate(classes)}
    try:
        codes = np.asarray([lookup[v.item() if hasattr(v, "item") else v] for v in y], np.int64)
    except KeyError as err:
        raise DataError(
            f"y_true holds {err.args[0]!r}, which is not one of the classes {classes[:10]}. Pass "
            "class indices 0..C-1 or the class labels."
        ) from None
    return codes


# ---------------------------------------------------------------------------------- plots


def _figure(ncols: int = 1, size: tuple[float, float] = (6.0, 4.0)) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * ncols, size[1]), dpi=100, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def _save(fig: Any, target: Path) -> Path:
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    return target


def _plot_curves(target: Path, history: Sequence[Mapping[str, float]]) -> Path:
    epochs = [int(r.get("epoch", i + 1)) for i, r in enumerate(history)]
    metrics = sorted(
        {
            k
            for r in history
            for k in r
            if k.startswith("val_") and k[4:] not in _LOSS_TERMS and _finite(r[k])
        }
    )
    fig, axes = _figure(2 if metrics else 1)
    ax = axes[0]
    colors = {"loss": "black", "kd": "tab:blue", "ce": "tab:orange"}
    for term in _LOSS_TERMS:
        for split, style in (("train", "-"), ("val", "--")):
            key = f"{split}_{term}"
            values = [r.get(key, math.nan) for r in history]
            if any(_finite(v) for v in values):
                ax.plot(epochs, values, style, color=colors[term], label=key, marker=".")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss term")
    ax.set_title("Loss terms (kd: soft term incl. T², ce: label term)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    if metrics:
        ax = axes[1]
        for key in metrics:
            ax.plot(epochs, [r.get(key, math.nan) for r in history], marker=".", label=key)
        ax.set_xlabel("epoch")
        ax.set_title("Validation metrics")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    return _save(fig, target)


def _plot_scores(
    target: Path, teacher_p: np.ndarray, student_p: np.ndarray, y: np.ndarray | None
) -> Path:
    fig, axes = _figure(size=(5.0, 5.0))
    ax = axes[0]
    t, s = teacher_p[:, 1], student_p[:, 1]
    if y is None:
        ax.scatter(t, s, s=6, alpha=0.4, color="tab:blue")
    else:
        for label, color, name in ((0, "tab:blue", "class 0"), (1, "tab:red", "class 1")):
            mask = y == label
            ax.scatter(t[mask], s[mask], s=6, alpha=0.4, color=color, label=name)
        ax.legend(fontsize="small", markerscale=3)
    ax.plot([0, 1], [0, 1], color="grey", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("teacher P(class 1)")
    ax.set_ylabel("student P(class 1)")
    agreement = float(np.mean((t >= 0.5) == (s >= 0.5))) if len(t) else math.nan
    ax.set_title(f"Teacher vs student scores (decision agreement {agreement:.1%})")
    return _save(fig, target)


def _plot_reliability(
    target: Path, y: np.ndarray, teacher_p: np.ndarray | None, student_p: np.ndarray | None
) -> Path:
    fig, axes = _figure(size=(5.0, 5.0))
    ax = axes[0]
    ax.plot([0, 1], [0, 1], color="grey", lw=1, label="perfectly calibrated")
    bins = np.linspace(0.0, 1.0, 11)
    for name, p, color in (("teacher", teacher_p, "tab:green"), ("student", student_p, "tab:blue")):
        if p is None:
            continue
        score = p[:, 1]
        which = np.clip(np.digitize(score, bins) - 1, 0, len(bins) - 2)
        xs, ys = [], []
        for b in range(len(bins) - 1):
            mask = which == b
            if mask.any():
                xs.append(float(score[mask].mean()))
                ys.append(float((y[mask] == 1).mean()))
        ax.plot(xs, ys, marker="o", color=color, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted P(class 1), 10 bins")
    ax.set_ylabel("observed frequency of class 1")
    ax.set_title("Reliability diagram (test rows)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, target)


def _plot_confusion(target: Path, y: np.ndarray, student_p: np.ndarray, classes: list[Any]) -> Path:
    k = len(classes)
    pred = student_p.argmax(axis=1)
    matrix = np.zeros((k, k), dtype=np.float64)
    np.add.at(matrix, (y, pred), 1.0)
    totals = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    side = min(12.0, 3.0 + 0.3 * k)
    fig, axes = _figure(size=(side, side * 0.85))
    ax = axes[0]
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    labels = [str(c) for c in classes]
    step = max(1, k // 40)
    ax.set_xticks(range(0, k, step), labels[::step], rotation=90 if k > 10 else 0)
    ax.set_yticks(range(0, k, step), labels[::step])
    if k <= 15:
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    ax.text(
                        j,
                        i,
                        f"{int(matrix[i, j])}",
                        ha="center",
                        va="center",
                        fontsize="small",
                        color="white" if normalised[i, j] > 0.5 else "black",
                    )
    accuracy = float(np.trace(matrix) / matrix.sum()) if matrix.sum() else math.nan
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"Student confusion matrix (accuracy {accuracy:.1%})")
    return _save(fig, target)


# ---------------------------------------------------------------------------------- summary


def _summary(
    report: Mapping[str, Any],
    history: Sequence[Mapping[str, float]],
    written: Mapping[str, Path],
    classes: list[Any],
    teacher_p: np.ndarray | None,
    student_p: np.ndarray | None,
) -> str:
    lines = ["# crosskd distill: run summary", ""]
    task = report.get("task", "binary" if len(classes) == 2 else "multiclass")
    target = report.get("target")
    lines.append(
        f"- **Task**: {task}"
        + (f", target `{target}`" if target else "")
        + (f", classes {', '.join(f'`{c}`' for c in classes[:20])}" if classes else "")
        + (" ..." if len(classes) > 20 else "")
    )
    rows = report.get("rows") or {}
    if rows:
        lines.append("- **Rows**: " + ", ".join(f"{k} {int(v):,}" for k, v in rows.items()))
    teacher, student = report.get("teacher") or {}, report.get("student") or {}
    metric_keys = list(
        dict.fromkeys([*(teacher.get("metrics") or {}), *(student.get("metrics") or {})])
    )
    if teacher or student:
        lines += ["", "## Teacher vs student (test rows)", ""]
        header = ["model", "params", "bytes", *metric_keys]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        for name, part in (("teacher", teacher), ("student", student)):
            if not part:
                continue
            metrics = part.get("metrics") or {}
            cells = [
                f"{name} ({part['kind']})" if part.get("kind") else name,
                _int(part.get("params")),
                _int(part.get("bytes")),
                *(_num(metrics.get(k)) for k in metric_keys),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        if teacher.get("bytes") and student.get("bytes"):
            lines += [
                "",
                f"The student is {teacher['bytes'] / student['bytes']:.1f}x smaller than the "
                "teacher in bytes.",
            ]
    if teacher_p is not None and student_p is not None and len(student_p):
        agreement = float(np.mean(teacher_p.argmax(1) == student_p.argmax(1)))
        lines.append(
            f"On the test rows the student predicts the teacher's class for {agreement:.1%} of "
            "the rows (fidelity)."
        )
    if history:
        last = history[-1]
        best = student.get("best_epoch")
        lines += [
            "",
            "## Training",
            "",
            f"{len(history)} epoch(s)"
            + (f"; best epoch {best} (its weights are kept)" if best else "")
            + ". Last epoch: "
            + ", ".join(
                f"{k} {last[k]:.4g}"
                for k in ("train_loss", "train_kd", "train_ce", "val_loss")
                if k in last and _finite(last[k])
            )
            + ".",
        ]
    settings = report.get("settings") or {}
    if settings:
        lines += ["", "## Settings", ""]
        lines += [f"- `{k}`: {v}" for k, v in settings.items()]
    encoding = report.get("test_encoding") or {}
    unseen = encoding.get("unseen_categories") or {}
    if unseen:
        lines += [
            "",
            f"Note: the test rows hold categorical values never seen in training ({unseen}); "
            "the student reads them as 'unknown'.",
        ]
    titles = {
        "curves": "Training curves",
        "scores": "Teacher vs student scores",
        "reliability": "Reliability diagram",
        "confusion": "Confusion matrix",
    }
    if written:
        lines += ["", "## Plots", ""]
        for kind, path in written.items():
            lines += [f"### {titles[kind]}", "", f"![{titles[kind]}]({path.name})", ""]
    files = [f"`{Path(str(p)).name}`" for p in (student.get("file"), teacher.get("file")) if p]
    lines += [
        "",
        "## Use the student",
        "",
        "```python",
        "import crosskd",
        "",
        'student = crosskd.load("<this folder>")  # student.safetensors: weights + encoder',
        "proba = student.predict_proba(frame)       # (n_rows, n_classes)",
        "```",
        "",
        "Export it with `crosskd export <this folder> --format onnx --out student.onnx`."
        + (f" Files: {', '.join(files)}, `report.json`." if files else ""),
        "",
    ]
    return "\n".join(lines)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _int(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, (int, float)) else ""


def _num(value: Any) -> str:
    return f"{value:.4f}" if _finite(value) else ""


def _atomic_write_text(target: Path, text: str) -> None:
    write_text(target, text)
