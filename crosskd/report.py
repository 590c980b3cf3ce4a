"""Run artefacts a person wants to look at: a markdown summary and PNG plots.

:func:`write_run_artefacts` is called at the end of ``crosskd distill`` (and can be called on any
fitted :class:`~crosskd.Distiller`'s ``history_``). It writes, into the run folder:

- ``summary.md``: task, rows, split, teacher vs baseline vs student quality, size and latency,
  agreement with the teacher, warnings, training, settings, the plots;
- ``curves.png``: every loss term of the history per epoch (each ``train_<term>`` solid, its
  ``val_<term>`` dashed: ``loss``, ``kd``, ``ce`` or ``ctc``, ...) and every other ``val_*`` key
  (the validation metrics), for any kind of run;
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


def write_run_artefacts(
    out_dir: str | os.PathLike[str],
    report: Mapping[str, Any],
    history: Sequence[Mapping[str, float]],
    *,
    y_true: Any = None,
    teacher_proba: Any = None,
    student_proba: Any = None,
    classes: Sequence[Any] | None = None,
    baseline_proba: Any = None,
    baseline_history: Sequence[Mapping[str, float]] | None = None,
) -> dict[str, Path]:
    """Write ``summary.md`` and the PNG plots of a run into ``out_dir``.

    Args:
        out_dir: the run folder (created when missing).
        report: the run report (``crosskd distill``'s ``report.json`` content); every key is
            optional, what is there is summarised.
        history: per-epoch records of the (distilled) student's trainer (``history_``):
            ``epoch``, ``train_<term>`` per loss term, ``val_<term>``, ``val_<metric>``.
        y_true: test labels: integer class indices ``0..C-1`` (the columns of the
            probabilities), or, when not integers, labels found in ``classes``. Needed for the reliability diagram and confusion matrix.
        teacher_proba: teacher probabilities on the test rows, ``(n, C)``.
        student_proba: student probabilities on the test rows, ``(n, C)``.
        classes: class labels, the columns of the probabilities (default: the report's
            ``data.classes``); plots and the summary name them.
        baseline_proba: the baseline's probabilities on the test rows (its reliability curve).
        baseline_history: the baseline's history (its validation metrics join the curves).

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
    given = (report.get("data") or {}).get("classes") or report.get("classes")
    classes = list(classes if classes is not None else given or [])
    teacher_p = _proba(teacher_proba, "teacher_proba")
    student_p = _proba(student_proba, "student_proba")
    baseline_p = _proba(baseline_proba, "baseline_proba")
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
        written["curves"] = _plot_curves(out / PLOT_NAMES["curves"], history, baseline_history)
    if len(classes) == 2:
        if teacher_p is not None and student_p is not None:
            written["scores"] = _plot_scores(
                out / PLOT_NAMES["scores"], teacher_p, student_p, y, classes
            )
        if y is not None and (teacher_p is not None or student_p is not None):
            written["reliability"] = _plot_reliability(
                out / PLOT_NAMES["reliability"],
                y,
                {"teacher": teacher_p, "baseline": baseline_p, "student": student_p},
                classes,
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


def _loss_terms(history: Sequence[Mapping[str, float]]) -> list[str]:
    """The loss terms a history logs: the suffixes of its ``train_*`` keys, in order."""
    return list(dict.fromkeys(k[6:] for r in history for k in r if k.startswith("train_")))


def _plot_curves(
    target: Path,
    history: Sequence[Mapping[str, float]],
    baseline: Sequence[Mapping[str, float]] | None = None,
) -> Path:
    terms = _loss_terms(history)
    metrics = list(
        dict.fromkeys(
            k
            for r in [*history, *(baseline or [])]
            for k in r
            if k.startswith("val_") and k[4:] not in terms and _finite(r[k])
        )
    )
    fig, axes = _figure(2 if metrics else 1)
    ax = axes[0]
    colors = [f"C{i}" for i in range(10)]
    for i, term in enumerate(terms):
        for split, style in (("train", "-"), ("val", "--")):
            key = f"{split}_{term}"
            epochs, values = _series(history, key)
            if values:
                ax.plot(epochs, values, style, color=colors[i % 10], label=key, marker=".")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss term")
    ax.set_title("Distilled student: loss terms (training solid, validation dashed)")
    if terms:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    if metrics:
        ax = axes[1]
        for i, key in enumerate(metrics):
            for name, records, style in (("student", history, "-"), ("baseline", baseline, ":")):
                epochs, values = _series(records or [], key)
                if values:
                    label = f"{name} {key}"
                    ax.plot(epochs, values, style, color=colors[i % 10], marker=".", label=label)
        ax.set_xlabel("epoch")
        ax.set_title("Validation metrics (baseline dotted)")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    return _save(fig, target)


def _series(history: Sequence[Mapping[str, float]], key: str) -> tuple[list[int], list[float]]:
    epochs = [int(r.get("epoch", i + 1)) for i, r in enumerate(history)]
    values = [r.get(key, math.nan) for r in history]
    if not any(_finite(v) for v in values):
        return [], []
    return epochs, values


def _plot_scores(
    target: Path,
    teacher_p: np.ndarray,
    student_p: np.ndarray,
    y: np.ndarray | None,
    classes: Sequence[Any],
) -> Path:
    fig, axes = _figure(size=(5.0, 5.0))
    ax = axes[0]
    t, s = teacher_p[:, 1], student_p[:, 1]
    if y is None:
        ax.scatter(t, s, s=6, alpha=0.4, color="tab:blue")
    else:
        for label, color in ((0, "tab:blue"), (1, "tab:red")):
            name = f"true {classes[label]}"
            mask = y == label
            ax.scatter(t[mask], s[mask], s=6, alpha=0.4, color=color, label=name)
        ax.legend(fontsize="small", markerscale=3)
    ax.plot([0, 1], [0, 1], color="grey", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"teacher P({classes[1]})")
    ax.set_ylabel(f"student P({classes[1]})")
    agreement = float(np.mean((t >= 0.5) == (s >= 0.5))) if len(t) else math.nan
    ax.set_title(f"Teacher vs student scores (decision agreement {agreement:.1%})")
    return _save(fig, target)


def _plot_reliability(
    target: Path,
    y: np.ndarray,
    probas: Mapping[str, np.ndarray | None],
    classes: Sequence[Any],
) -> Path:
    fig, axes = _figure(size=(5.0, 5.0))
    ax = axes[0]
    ax.plot([0, 1], [0, 1], color="grey", lw=1, label="perfectly calibrated")
    bins = np.linspace(0.0, 1.0, 11)
    colors = {"teacher": "tab:green", "baseline": "tab:orange", "student": "tab:blue"}
    for name, p in probas.items():
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
        ax.plot(xs, ys, marker="o", color=colors.get(name), label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"predicted P({classes[1]}), 10 bins")
    ax.set_ylabel(f"observed frequency of {classes[1]}")
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


_ROLES = ("teacher", "baseline", "student")
_TITLES = {
    "curves": "Training curves",
    "scores": "Teacher vs student scores",
    "reliability": "Reliability diagram",
    "confusion": "Confusion matrix",
}


def _summary(
    report: Mapping[str, Any],
    history: Sequence[Mapping[str, float]],
    written: Mapping[str, Path],
    classes: list[Any],
    teacher_p: np.ndarray | None,
    student_p: np.ndarray | None,
) -> str:
    lines = ["# crosskd distill: run summary", ""]
    data = report.get("data") or {}
    task = report.get("task", "binary" if len(classes) == 2 else "multiclass")
    kind = report.get("kind")
    target = data.get("target", report.get("target"))
    lines.append(
        f"- **Task**: {task}"
        + (f" ({kind})" if kind else "")
        + (f", target `{target}`" if target else "")
        + (f", classes {', '.join(f'`{c}`' for c in classes[:20])}" if classes else "")
        + (" ..." if len(classes) > 20 else "")
    )
    if data.get("positive_label") is not None:
        lines.append(
            f"- **Positive class**: `{data['positive_label']}` "
            f"({data.get('positive_label_reason', 'given')}); scores are P({data['positive_label']})"
        )
    rows = report.get("rows") or {}
    if rows:
        lines.append("- **Rows**: " + ", ".join(f"{k} {int(v):,}" for k, v in rows.items()))
    split = report.get("split") or {}
    if split:
        lines.append(
            f"- **Split**: seed {split.get('seed')}, test from {split.get('test_source')}"
            + (", stratified" if split.get("stratified") else "")
        )
    parts = {r: report.get(r) for r in _ROLES if report.get(r)}
    metric_keys = list(dict.fromkeys(k for p in parts.values() for k in p.get("metrics") or {}))
    if parts:
        lines += ["", "## Teacher, baseline and distilled student (test rows)", ""]
        header = ["model", "params", "bytes", *metric_keys, "CPU ms (batch 1)"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        for role, part in parts.items():
            metrics = part.get("metrics") or {}
            name = f"{role} ({part['model']})" if part.get("model") else role
            cells = [
                name,
                _int(part.get("params")),
                _int(part.get("bytes")),
                *(_num(metrics.get(k)) for k in metric_keys),
                _num(part.get("latency_ms_batch1"), 3),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        if "baseline" in report and not report.get("baseline"):
            lines += ["", "No baseline was trained (`baseline` off)."]
        selection = report.get("selection")
        if selection:
            lines += [
                "",
                f"**Saved as the student**: the {selection['deployed']}, chosen on the "
                f"{selection['rows']:,} validation rows by {selection['metric']} (student "
                f"{_num(selection['validation']['student'])}, baseline "
                f"{_num(selection['validation']['baseline'])}, standard error of the difference "
                f"{_num(selection['standard_error'])}"
                + (
                    "; uncertain: the validation rows cannot tell them apart"
                    if selection["uncertain"]
                    else ""
                )
                + ").",
            ]
        teacher, student = parts.get("teacher") or {}, parts.get("student") or {}
        if teacher.get("bytes") and student.get("bytes"):
            lines += [
                "",
                f"The student is {teacher['bytes'] / student['bytes']:.1f}x smaller than the "
                "teacher in bytes. Latency: the minimum over repeated calls, all models timed in "
                "one loop.",
            ]
    serving = report.get("serving") or {}
    if serving.get("dataframe_row_p50_us") is not None:
        lines += [
            "",
            f"Serving one transaction through `{serving['path']}` (numpy, no torch): "
            f"{serving['dataframe_row_p50_us']:.1f} us p50 for a one-row DataFrame, "
            f"{serving['dict_p50_us']:.1f} us for a dict (`docs/serving.md`).",
        ]
    lines += _agreement_lines(parts, teacher_p, student_p)
    warnings = report.get("warnings") or []
    if warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in warnings]
    if history:
        last = history[-1]
        best = (parts.get("student") or {}).get("best_epoch")
        lines += [
            "",
            "## Training",
            "",
            f"{len(history)} epoch(s)"
            + (f"; best epoch {best} (its weights are kept)" if best else "")
            + ". Last epoch: "
            + ", ".join(
                f"{k} {last[k]:.4g}"
                for k in last
                if (k.startswith("train_") or k.startswith("val_")) and _finite(last[k])
            )
            + ".",
        ]
    chosen = {r: (parts[r].get("chosen") or {}) for r in parts}
    chosen = {r: c for r, c in chosen.items() if c}
    if chosen:
        lines += ["", "## What each trainer used (`auto` settings resolved)", ""]
        for role, values in chosen.items():
            shown = {k: v for k, v in values.items() if k != "search"}
            lines.append(f"- {role}: " + ", ".join(f"{k} {v}" for k, v in shown.items()))
            if values.get("search"):
                search = values["search"]
                lines.append(
                    f"  (search on validation: {len(search.get('trials', []))} trials, chosen "
                    f"{search.get('chosen')}"
                    + ("; uncertain" if search.get("uncertain") else "")
                    + ")"
                )
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
    if written:
        lines += ["", "## Plots", ""]
        for name, path in written.items():
            lines += [f"### {_TITLES[name]}", "", f"![{_TITLES[name]}]({path.name})", ""]
    lines += _use_lines(report, parts)
    return "\n".join(lines)


def _agreement_lines(
    parts: Mapping[str, Any], teacher_p: np.ndarray | None, student_p: np.ndarray | None
) -> list[str]:
    rows = {r: (parts[r].get("agreement") or {}) for r in ("baseline", "student") if r in parts}
    rows = {r: a for r, a in rows.items() if a}
    if not rows and teacher_p is not None and student_p is not None and len(student_p):
        rows = {"student": {"prediction_agreement": float(np.mean(
            teacher_p.argmax(1) == student_p.argmax(1)))}}  # fmt: skip
    if not rows:
        return []
    out = ["", "## Agreement with the teacher (test rows)", ""]
    ranked = any("spearman" in a for a in rows.values())
    if ranked:
        out += [
            "| model | same class | Spearman | top 1 % overlap | top 5 % overlap | teacher's top 1 % "
            "in the model's top 5 % |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for role, a in rows.items():
            cells = [a.get(k) for k in ("prediction_agreement", "spearman", "top1_overlap",
                                        "top5_overlap", "teacher_top1_in_student_top5")]  # fmt: skip
            out.append(f"| {role} | " + " | ".join(_num(v) for v in cells) + " |")
        out += [
            "",
            "On an imbalanced target the share of rows given the teacher's class says little; the "
            "overlaps say whether the student ranks the teacher's most suspicious rows first.",
        ]
    else:
        for role, a in rows.items():
            out.append(
                f"- {role}: predicts the teacher's class (or reading) for "
                f"{a.get('prediction_agreement', math.nan):.1%} of the test rows (fidelity)."
            )
    return out


def _use_lines(report: Mapping[str, Any], parts: Mapping[str, Any]) -> list[str]:
    files = [f"`{Path(str(p['file'])).name}`" for p in parts.values() if p.get("file")]
    if report.get("task") == "sequence":
        use = [
            'reader = crosskd.load("<this folder>")   # a CTCDistiller with its alphabet',
            "texts = reader.predict(images)           # (n, C, H, W) -> n strings",
        ]
    else:
        use = [
            'student = crosskd.load("<this folder>")  # student.safetensors: weights (+ encoder)',
            "proba = student.predict_proba(rows)       # (n_rows, n_classes)",
        ]
    return [
        "",
        "## Use the student",
        "",
        "```python",
        "import crosskd",
        "",
        *use,
        "```",
        "",
        "Export it with `crosskd export <this folder> --format onnx --out student.onnx`."
        + (f" Files: {', '.join(dict.fromkeys(files))}, `report.json`." if files else ""),
        "",
    ]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _int(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, (int, float)) else ""


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:.{digits}f}" if _finite(value) else ""


def _atomic_write_text(target: Path, text: str) -> None:
    write_text(target, text)
