"""The one scaffold of ``crosskd distill``: every run, whatever its data, goes through :func:`run`.

The scaffold owns what every data kind does alike, in this order:

1. settings: the kind's schema (:mod:`crosskd.config`), checked with the model names before any
   data is read;
2. the output folder: created, or reused when it is empty or holds an earlier run's files; a
   folder holding anything else is refused;
3. the data: read by the kind (training data, ``test`` data, all checks on both), the class order
   (the positive class of a two-class target is index 1), then one seeded split (stratified for
   classes) into train / validation / test, reported with digests of its row indices;
4. the kind's checks that need the split (encoder, alphabet, frames): still before training;
5. the teacher (trained or loaded), the **baseline** (the same student trained on labels alone;
   ``baseline=False`` skips it), the distilled **student**; the one of the two students that
   scores better on the validation rows is saved as ``student.safetensors`` (the distilled one
   unless the baseline is better by more than one standard error; :mod:`crosskd.selection`);
6. test metrics, agreement with the teacher, CPU latency (batch 1) of all models timed in one
   loop, repeated, the minimum reported;
7. ``report.json`` (the schema below), ``config.yaml``, ``summary.md`` and the plots
   (:mod:`crosskd.report`), and the console table.

A data kind is a small class (:class:`Kind`) that only reads data and builds models:
:class:`crosskd.distill.TableKind`, :class:`crosskd.vision.distill.ImageKind`,
:class:`crosskd.vision.textline_distill.TextlineKind`.

``report.json`` (schema version :data:`SCHEMA_VERSION`; paths absolute)::

    {"schema": 1, "kind": "table" | "image" | "textline",
     "task": "binary" | "multiclass" | "sequence",
     "data": {"path", "test", "classes", "positive_label", "positive_label_reason", ...kind's},
     "rows": {"train", "validation", "test", "transfer"},
     "split": {"seed", "test_source", "stratified", "n_train", "n_val", "n_test", "sha256_12"},
     "settings": {...every setting of the kind...},
     "teacher" | "baseline" | "student": {"model", "file", "trained", "params", "bytes",
         "latency_ms_batch1", "best_epoch", "epochs_run", "metrics": {...},
         "chosen": {...what the trainer chose for its "auto" settings: epochs, batch_size,
                    schedule, threads, temperature / alpha (and the search), ...},
         "agreement": {...with the teacher...}},
     "serving": {...tables: the fast path's p50 (crosskd.serving.Scorer)...},
     "baseline": null when skipped,
     "selection": {...which student student.safetensors holds, chosen on the validation rows:
                   "deployed": "student" | "baseline", "metric", "validation", "difference",
                   "standard_error", "uncertain", "reason"} (crosskd.selection); null without
                   a baseline or with choose_on_validation off,
     "warnings": [...], "device": ..., "files": {name: path}}

Other features add their fields to this dict (and their sections to ``summary.md`` in
:mod:`crosskd.report`), not files of their own.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ._atomic import write_json
from .exceptions import ConfigError, DataError

__all__ = [
    "Kind",
    "BaseKind",
    "RunData",
    "Parts",
    "TeacherResult",
    "run",
    "REPORT_NAME",
    "STUDENT_NAME",
    "SCHEMA_VERSION",
    "WIDE_GAP",
    "check_timm_name",
    "time_together",
    "run_test_rows",
    "classification_metrics",
]

SCHEMA_VERSION = 1
REPORT_NAME = "report.json"
STUDENT_NAME = "student.safetensors"
#: A distilled student whose main test metric is this much (absolute) worse than the teacher's
#: gets a warning in the terminal and the summary.
WIDE_GAP = 0.05
#: Files a run writes; an output folder holding only these (or nothing) can be written to.
RUN_FILES = frozenset(
    {
        STUDENT_NAME,
        REPORT_NAME,
        "config.yaml",
        "summary.md",
        "curves.png",
        "scores.png",
        "reliability.png",
        "confusion.png",
        "teacher.safetensors",
        "teacher-lightgbm.txt",
        "student.onnx",
    }
)


# ---------------------------------------------------------------------------------- the kinds


@dataclass
class RunData:
    """What a kind reads.

    Attributes:
        x: the labelled training rows (a DataFrame, an ``(N, C, H, W)`` array, ...).
        y: their labels: ``(N,)`` int64 class codes, or a list of strings (sequences).
        classes: class labels in code order (None for sequences).
        x_test, y_test: test rows and labels when they come from a file (``test`` setting or the
            MNIST t10k files); None: the scaffold holds out a share of ``x``.
        test_source: where the test rows come from (an absolute path), or None.
        x_transfer: unlabelled rows the teacher labels for the student (or None).
        info: fields for the report's ``data`` block (target, input shape, alphabet, ...).
    """

    x: Any
    y: Any
    classes: list[Any] | None = None
    x_test: Any = None
    y_test: Any = None
    test_source: str | None = None
    x_transfer: Any = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Parts:
    """The split rows: ``(x, y)`` of train, validation and test, and the transfer rows."""

    train: tuple[Any, Any]
    val: tuple[Any, Any]
    test: tuple[Any, Any]
    transfer: Any = None


@dataclass
class TeacherResult:
    """A teacher, ready to distil from.

    Attributes:
        teacher: what the kind's trainer takes as its teacher.
        module: the model whose size is reported.
        file: its file (written, or the one given).
        trained: whether this run trained it.
        model: a short description (``"LightGBM"``, ``"resnet18"``).
        fitted: the trainer that trained it (its history), or None.
    """

    teacher: Any
    module: Any
    file: Path
    trained: bool
    model: str
    fitted: Any = None


class Kind(Protocol):
    """What a data kind gives the scaffold (one instance per run, holding its settings)."""

    name: str  # "table", "image", "textline"
    sequence: bool  # CTC sequences (True) or classes (False)
    s: dict[str, Any]  # every setting of the run (paths absolute)

    def check(self) -> None:
        """Checks of the settings alone (model names, values), before any data is read."""

    def read(self, echo: Callable[[str], Any]) -> RunData:
        """Read the training (and test) data, with every check on both."""

    def prepare(self, data: RunData, parts: Parts, echo: Callable[[str], Any]) -> None:
        """Checks and fits that need the split (encoder, alphabet, frames), before training."""

    def teacher(self, parts: Parts, out: Path, echo: Callable[[str], Any]) -> TeacherResult:
        """Train (with :meth:`fit` on labels alone) or load the teacher."""

    def student_model(self) -> Any:
        """A fresh, untrained student module (called once for the baseline, once distilled)."""

    def fit(self, teacher: Any, student: Any, alpha: float, parts: Parts, epochs: int) -> Any:
        """Train ``student`` (teacher None: on labels alone); returns the fitted trainer."""

    def evaluate(self, model: Any, x: Any, y: Any) -> tuple[dict[str, float], Any]:
        """``(metrics, outputs)`` of a teacher result or a fitted trainer on test rows; outputs:
        ``(n, C)`` probabilities, or the decoded strings."""

    def predictor(self, model: Any) -> Callable[[Any], Any]:
        """A CPU function that predicts one batch (for latency), for a teacher or a trainer."""

    def describe(self, model: Any) -> dict[str, Any]:
        """Report fields of a teacher result or a fitted trainer (``model``, ``config``, ...)."""

    def save(self, fitted: Any, path: Path) -> Path:
        """Save a fitted student as a bundle."""

    def extra(self, fitted: Any, parts: Parts, echo: Callable[[str], Any]) -> dict[str, Any]:
        """Kind-specific top-level report fields (e.g. ``test_encoding`` for tables); notes
        about them go to ``echo``."""


class BaseKind:
    """What every kind does alike: hold the settings, save a fitted student, no extra fields."""

    name = ""
    sequence = False

    def __init__(
        self, settings: Mapping[str, Any], progress: bool = True, given: frozenset = frozenset()
    ) -> None:
        self.s = dict(settings)
        self.progress = progress
        self.role = "student"
        self.given = given

    def trainer_settings(self, alpha: float, epochs: int) -> dict[str, Any]:
        """The trainer settings every kind passes alike (from the run's settings)."""
        s = self.s
        return {
            "temperature": s["temperature"],
            "alpha": alpha,
            "method": s["method"],
            "epochs": epochs,
            "batch_size": s["batch_size"],
            "lr": s["lr"],
            "device": s["device"],
            "precision": s["precision"],
            "early_stopping": s["early_stopping"],
            "seed": s["seed"],
            "threads": s["threads"],
            # the bar is labelled with what trains: teacher, baseline or student
            "progress": self.role if self.progress else False,
        }

    def save(self, fitted: Any, path: Path) -> Path:
        return fitted.save(path)

    def extra(self, fitted: Any, parts: Parts, echo: Callable[[str], Any]) -> dict[str, Any]:
        return {}


# ---------------------------------------------------------------------------------- checks


def check_timm_name(name: Any, what: str) -> str:
    """``name`` if timm knows it; else a ConfigError with the closest names (``resnet-18`` ->
    ``resnet18``)."""
    import difflib

    import timm

    if not isinstance(name, str) or not name:
        raise ConfigError(f"{what} must be a timm model name such as resnet18, got {name!r}.")
    if timm.is_model(name):
        return name
    names = timm.list_models()

    def squash(text: str) -> str:
        return text.lower().replace("-", "").replace("_", "").replace(".", "")

    squashed = {squash(n): n for n in names}
    close = [squashed[squash(name)]] if squash(name) in squashed else []
    close += [
        squashed[c]
        for c in difflib.get_close_matches(squash(name), list(squashed), n=5, cutoff=0.75)
        if squashed[c] not in close
    ]
    hint = f" Did you mean {', '.join(repr(c) for c in close[:5])}?" if close else ""
    raise ConfigError(
        f"timm has no model named {name!r} ({what}).{hint} See timm.list_models() for the names."
    )


def _check_common(settings: Mapping[str, Any], kind: str) -> None:
    from ._device import check_precision, resolve_device
    from .losses import check_alpha, check_temperature

    methods = (
        ("frame", "bag") if kind == "textline" else ("hinton", "dkd", "dist", "ranking", "auto")
    )
    if settings.get("method", methods[0]) not in methods:
        raise ConfigError(
            f"`method` {settings['method']!r} is not a method for "
            f"{'text lines' if kind == 'textline' else kind + 's'}: give one of "
            f"{', '.join(methods)}."
        )
    searched = [k for k in ("temperature", "alpha") if settings[k] == "auto"]
    if searched and kind == "textline":
        raise ConfigError(
            f"{' and '.join(f'`{k}`' for k in searched)} 'auto' is for tables and images: give "
            "a number for text lines (defaults: `temperature` 1, `alpha` 0.5)."
        )
    if "temperature" not in searched:
        check_temperature(settings["temperature"])
    if "alpha" not in searched:
        check_alpha(settings["alpha"])
    check_precision(settings["precision"])
    resolve_device(settings["device"])


def _check_out(out: Path) -> None:
    """Refuse an output path that is a file, or a folder holding files a run does not write."""
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"`out` {str(out)!r} exists and is not a folder. Give a folder path (it is created "
            "when missing)."
        )
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES)
        if other:
            shown = ", ".join(repr(n) for n in other[:5]) + (" ..." if len(other) > 5 else "")
            raise ConfigError(
                f"`out` {str(out)!r} holds files that are not a crosskd run's ({shown}); a run "
                "would mix its results with them. Give an empty or new folder, or the folder of "
                "an earlier run to overwrite it."
            )


# ---------------------------------------------------------------------------------- split


def _digest(indices: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:12]


def _hold_out(
    n: int, size: int | float, labels: np.ndarray | None, seed: int, what: str
) -> tuple[np.ndarray, np.ndarray, bool]:
    """(kept, held out) sorted row indices; stratified by ``labels`` when every class can be."""
    from sklearn.model_selection import train_test_split

    count = max(1, int(round(size * n))) if isinstance(size, float) else int(size)
    if not 1 <= count < n:
        raise DataError(
            f"`{what}` ({size}) holds out {count} of {n} rows; it must leave at least one row on "
            f"each side. Give another `{what}`."
        )
    rows = np.arange(n)
    stratified = False
    if labels is not None:
        classes, counts = np.unique(labels, return_counts=True)
        if counts.min() >= 2 and len(classes) <= min(count, n - count):
            kept, held = train_test_split(rows, test_size=count, random_state=seed, stratify=labels)
            stratified = True
    if not stratified:
        kept, held = train_test_split(rows, test_size=count, random_state=seed)
    return np.sort(kept), np.sort(held), stratified


def _take(x: Any, idx: np.ndarray) -> Any:
    if hasattr(x, "iloc"):
        return x.iloc[idx]
    if isinstance(x, list):
        return [x[i] for i in idx]
    return x[idx]


def _split(data: RunData, settings: Mapping[str, Any], sequence: bool) -> tuple[Parts, dict]:
    seed = settings["seed"]
    n = len(data.y)
    labels = None if sequence else np.asarray(data.y)
    if data.x_test is None:
        fit_rows, test_rows, stratified = _hold_out(
            n, settings["test_size"], labels, seed, "test_size"
        )
        test = (_take(data.x, test_rows), _take(data.y, test_rows))
    else:
        fit_rows, test_rows, stratified = np.arange(n), np.arange(0), False
        test = (data.x_test, data.y_test)
    fit_labels = None if labels is None else labels[fit_rows]
    keep, held, val_stratified = _hold_out(
        len(fit_rows), settings["validation_size"], fit_labels, seed, "validation_size"
    )
    train_rows, val_rows = fit_rows[keep], fit_rows[held]
    parts = Parts(
        train=(_take(data.x, train_rows), _take(data.y, train_rows)),
        val=(_take(data.x, val_rows), _take(data.y, val_rows)),
        test=test,
        transfer=data.x_transfer,
    )
    report = {
        "seed": int(seed),
        "test_source": "split of data" if data.x_test is None else data.test_source,
        "stratified": bool(val_stratified and (stratified or data.x_test is not None)),
        "n_train": len(train_rows),
        "n_val": len(val_rows),
        "n_test": len(test[1]),
        "sha256_12": {
            "train": _digest(train_rows),
            "val": _digest(val_rows),
            **({"test": _digest(test_rows)} if data.x_test is None else {}),
        },
    }
    return parts, report


# ---------------------------------------------------------------------------------- classes


def _order_classes(data: RunData, positive: Any, echo: Callable[[str], Any]) -> None:
    """Put the positive class of a two-class target at index 1 (remapping the codes)."""
    classes = list(data.classes or [])
    if len(classes) != 2:
        if positive is not None:
            raise ConfigError(
                f"`positive_label` {positive!r} is given, but the target has {len(classes)} "
                "classes; a positive class exists only for two. Remove `positive_label`."
            )
        return
    if positive is not None:
        match = [i for i, c in enumerate(classes) if c == positive or str(c) == str(positive)]
        if not match:
            raise ConfigError(
                f"`positive_label` {positive!r} is not one of the classes "
                f"{[str(c) for c in classes]}. Give one of them."
            )
        index, reason = match[0], "given"
    elif all(isinstance(c, (bool, np.bool_)) for c in classes) or all(
        isinstance(c, (int, float, np.integer, np.floating)) and not isinstance(c, bool)
        for c in classes
    ):
        index, reason = int(np.argmax([float(c) for c in classes])), "the larger value, 1 / True"
    else:
        counts = np.bincount(np.asarray(data.y), minlength=2)
        index = int(np.argmin(counts)) if counts[0] != counts[1] else 1
        reason = "the minority class" if counts[0] != counts[1] else "the later name (no minority)"
        echo(
            f"note: the positive class is {classes[index]!r}, {reason} of "
            f"{[str(c) for c in classes]}; choose another with `positive_label`."
        )
    if index == 0:
        classes.reverse()
        data.y = 1 - np.asarray(data.y)
        if data.y_test is not None:
            data.y_test = 1 - np.asarray(data.y_test)
    data.classes = classes
    data.info.update({"positive_label": classes[1], "positive_label_reason": reason})


# ---------------------------------------------------------------------------------- metrics


def classification_metrics(y: Any, proba: np.ndarray) -> dict[str, float]:
    """Binary: ``roc_auc``, ``average_precision``, ``accuracy``, ``errors``; more classes:
    ``accuracy``, ``errors``."""
    from .metrics import classification_metrics as all_metrics

    y = np.asarray(y)
    found = all_metrics(y, proba)
    keys = ("roc_auc", "average_precision", "accuracy") if proba.shape[1] == 2 else ("accuracy",)
    out = {k: float(found[k]) for k in keys if k in found}
    out["errors"] = int((np.argmax(proba, axis=1) != y).sum())
    return out


def _main_metric(task: str) -> tuple[str, bool]:
    """(name, higher is better) of the metric warnings compare."""
    return {
        "binary": ("average_precision", True),
        "multiclass": ("accuracy", True),
        "sequence": ("cer", False),
    }[task]


def _agreement(task: str, teacher_out: Any, other_out: Any) -> dict[str, Any]:
    """How closely a student follows the teacher on the test rows."""
    from .metrics import fidelity

    if task == "sequence":
        same = [a == b for a, b in zip(teacher_out, other_out, strict=True)]
        return {"prediction_agreement": float(np.mean(same)) if same else float("nan")}
    return fidelity(np.asarray(teacher_out), np.asarray(other_out))


#: settings a trainer resolves from "auto" (or searches), as fitted attributes.
_CHOSEN = (
    "temperature_",
    "alpha_",
    "method_",
    "teacher_choice_",
    "epochs_",
    "early_stopping_",
    "schedule_",
    "batch_size_",
    "lr_",
    "precision_",
    "threads_",
    "restarts_",
    "augment_",
    "augment_search_",
    "stop_reason_",
    "plateau_epochs_",
)


def _chosen(fitted: Any) -> dict[str, Any]:
    """What the trainer chose for its ``"auto"`` settings (and the T / alpha search, if any)."""
    out = {name[:-1]: getattr(fitted, name) for name in _CHOSEN if hasattr(fitted, name)}
    if getattr(fitted, "search_", None) is not None:
        out["search"] = fitted.search_
    return out


#: Fewer validation positives (two classes), rows (more classes) or lines (text) than this, and
#: the choices made on validation (best epoch, learning-rate cuts, saved student) are noisy.
SMALL_VALIDATION = {"binary": 30, "multiclass": 100, "sequence": 50}


def _small_validation(task: str, y_val: Any) -> str | None:
    """A warning when the validation split is too small to choose on reliably, else None."""
    n = len(y_val)
    count = int(np.sum(np.asarray(y_val) == 1)) if task == "binary" else n
    if count >= SMALL_VALIDATION[task]:
        return None
    what = {"binary": "positive rows", "multiclass": "rows", "sequence": "lines"}[task]
    return (
        f"The validation split holds only {count} {what} (of {n} rows): the best epoch, the "
        "learning-rate cuts and the choice of the saved student are made on it and are "
        f"uncertain (fewer than {SMALL_VALIDATION[task]}). A larger `validation_size` (e.g. "
        "0.25) gives steadier choices; compare runs with a few `seed` values before trusting "
        "a small difference."
    )


def _warnings(report: Mapping[str, Any], student_fit: Any, epochs: int) -> list[str]:
    task = report["task"]
    name, higher = _main_metric(task)
    out: list[str] = []
    t = report["teacher"]["metrics"].get(name)
    s = report["student"]["metrics"].get(name)
    if t is not None and s is not None:
        gap = (t - s) if higher else (s - t)
        if gap > WIDE_GAP:
            out.append(
                f"The distilled student trails the teacher by {gap:.3f} in {name} "
                f"({s:.4f} vs {t:.4f}); try more `epochs`, a larger student or another "
                "`temperature` / `alpha`."
            )
    history = getattr(student_fit, "history_", None) or []
    best = getattr(student_fit, "best_epoch_", None)
    budget = getattr(student_fit, "epochs_", epochs)
    if len(history) >= 2 and best is not None and len(history) >= budget and best >= len(history):
        out.append(
            f"The distilled student's best validation epoch is its last ({best} of {budget}): it "
            "was still improving when training stopped. Give more `epochs`."
        )
    agreement = report["student"].get("agreement") or {}
    kept = agreement.get("teacher_top1_in_student_top5")
    if kept is not None and kept < 0.5:
        out.append(
            f"The student loses the teacher's most confident positives: of the teacher's "
            f"{agreement['top1_rows']} highest-scored test rows (top 1 %), {kept:.0%} are in the "
            "student's top 5 %."
        )
    return out


# ---------------------------------------------------------------------------------- latency


def time_together(
    predictors: Mapping[str, Callable[[Any], Any]], sample: Any, repeats: int
) -> dict[str, float]:
    """Milliseconds per call of each predictor on ``sample``: all timed in one loop (each
    repeat calls every model once, in turn), after one warm-up call each; the minimum over
    ``repeats`` is kept, the time least disturbed by other work."""
    import torch

    best = dict.fromkeys(predictors, float("inf"))
    with torch.inference_mode():
        for predict in predictors.values():
            predict(sample)
        for _ in range(repeats):
            for name, predict in predictors.items():
                start = time.perf_counter()
                predict(sample)
                best[name] = min(best[name], time.perf_counter() - start)
    return {name: 1000.0 * seconds for name, seconds in best.items()}


# ---------------------------------------------------------------------------------- the run


def _absolute(settings: Mapping[str, Any]) -> dict[str, Any]:
    from .config import PATH_KEYS

    out = dict(settings)
    for key in PATH_KEYS:
        if isinstance(out.get(key), str):
            out[key] = str(Path(out[key]).expanduser().resolve())
    return out


def _silent(*args: Any, **kwargs: Any) -> None:
    """``echo`` of ranks other than 0 under torchrun."""


def run(kind: Kind, *, echo: Callable[[str], Any] = print) -> dict[str, Any]:
    """Run ``crosskd distill`` for one data kind; returns the report (also in ``report.json``).

    Args:
        kind: the data kind's reader / builder (:func:`make_kind`), holding every setting of the
            kind in ``kind.s`` (:func:`crosskd.config.resolve_settings`).
        echo: where progress lines and the table go (``print``; ``lambda s: None`` for silence).
    """
    from .config import save_resolved_config
    from .distributed import distributed_context, launched_distributed
    from .profiling import model_size
    from .report import write_run_artefacts

    settings = kind.s
    _check_common(settings, kind.name)
    kind.check()  # may set settings that come from a given teacher (a text line's height)
    out = Path(settings["out"])
    _check_out(out)

    data = kind.read(echo)
    if not kind.sequence:
        _order_classes(data, settings.get("positive_label"), echo)
    parts, split = _split(data, settings, kind.sequence)
    kind.prepare(data, parts, echo)

    ctx = None
    if launched_distributed():
        from ._device import resolve_device

        ctx = distributed_context(resolve_device(settings["device"]).type)
    main = ctx is None or ctx.is_main
    if not main:
        echo = _silent
    try:
        if main:
            out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"Cannot create the `out` folder {str(out)!r}: {err.strerror or err}. Give a folder "
            "path you can write to."
        ) from None

    epochs = settings["epochs"]
    teacher = kind.teacher(parts, out, echo)
    baseline = None
    if settings["baseline"]:
        budget = "epochs chosen on validation" if epochs == "auto" else f"{epochs} epochs at most"
        echo(f"training the baseline: the student on labels alone ({budget}) ...")
        kind.role = "baseline"
        baseline = kind.fit(None, kind.student_model(), 0.0, parts, epochs)
    peer = " and a peer (mutual learning; --no-mutual: alone)" if settings.get("mutual") else ""
    echo(
        f"distilling the teacher into the student{peer} (T={settings['temperature']}, "
        f"alpha={settings['alpha']}) ..."
    )
    kind.role = "student"
    student = kind.fit(teacher.teacher, kind.student_model(), settings["alpha"], parts, epochs)
    mutual = getattr(student, "mutual_", None)
    if mutual:
        cer = mutual["cer"]
        echo(
            f"mutual learning: kept the {mutual['chosen']} (validation CER student "
            f"{cer['student']:.4f}, peer {cer['peer']:.4f})"
        )
    if not main:
        return {}  # only rank 0 evaluates and writes the outputs
    task = "sequence" if kind.sequence else ("binary" if len(data.classes) == 2 else "multiclass")
    selection = None
    if baseline is not None and settings["choose_on_validation"]:
        from .selection import compare_on_validation

        x_val, y_val = parts.val
        selection = compare_on_validation(
            task,
            y_val,
            kind.evaluate(student, x_val, y_val)[1],
            kind.evaluate(baseline, x_val, y_val)[1],
        )
        echo(f"deployed: the {selection['deployed']} ({selection['reason']})")
    deployed = baseline if selection and selection["deployed"] == "baseline" else student
    student_file = kind.save(deployed, out / STUDENT_NAME)

    x_test, y_test = parts.test
    roles: dict[str, Any] = {"teacher": teacher, "baseline": baseline, "student": student}
    roles = {k: v for k, v in roles.items() if v is not None}
    evaluated = {role: kind.evaluate(model, x_test, y_test) for role, model in roles.items()}
    latency = time_together(
        {role: kind.predictor(model) for role, model in roles.items()},
        _take(x_test, np.arange(1)),
        settings["latency_repeats"],
    )

    def block(role: str, model: Any) -> dict[str, Any]:
        fitted = model.fitted if isinstance(model, TeacherResult) else model
        size = model_size(model.module if isinstance(model, TeacherResult) else model.student_)
        history = getattr(fitted, "history_", None)
        part = {
            **kind.describe(model),
            "file": None,
            "trained": True,
            "params": size.params,
            "bytes": size.bytes,
            "latency_ms_batch1": latency[role],
            "best_epoch": getattr(fitted, "best_epoch_", None),
            "epochs_run": len(history) if history is not None else None,
            "chosen": _chosen(fitted),
            "metrics": evaluated[role][0],
        }
        if role != "teacher":
            part["agreement"] = _agreement(task, evaluated["teacher"][1], evaluated[role][1])
        return part

    blocks = {role: block(role, model) for role, model in roles.items()}
    blocks["teacher"].update({"file": str(teacher.file.resolve()), "trained": teacher.trained})
    blocks["student" if deployed is student else "baseline"]["file"] = str(student_file.resolve())
    report: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "kind": kind.name,
        "task": task,
        "data": {
            "path": settings["data"],
            "test": settings.get("test"),
            **({"classes": _plain(data.classes)} if data.classes is not None else {}),
            **data.info,
        },
        "rows": {
            "train": len(parts.train[1]),
            "validation": len(parts.val[1]),
            "test": len(y_test),
            "transfer": 0 if parts.transfer is None else len(parts.transfer),
        },
        "split": split,
        "settings": settings,
        "teacher": blocks["teacher"],
        "baseline": blocks.get("baseline"),
        "student": blocks["student"],
        "selection": selection,
        "device": str(getattr(student, "device_", settings["device"])),
        **kind.extra(student, parts, echo),
    }
    report["warnings"] = _warnings(report, student, epochs)
    small = _small_validation(task, parts.val[1])
    if small:
        report["warnings"].append(small)
    if deployed is not student:
        report["warnings"].insert(
            0,
            f"Distillation did not help on the validation rows: {selection['reason']}. "
            f"{STUDENT_NAME} holds the baseline (the student trained on labels alone). A "
            "stronger teacher (more `teacher_epochs`, another `teacher`) may change this; "
            "`choose_on_validation` off keeps the distilled student.",
        )
    config_file = save_resolved_config(out, settings, kind.name)
    outputs = {role: evaluated[role][1] for role in roles}
    artefacts = write_run_artefacts(
        out,
        report,
        getattr(student, "history_", []),
        y_true=None if kind.sequence else y_test,
        teacher_proba=None if kind.sequence else outputs["teacher"],
        student_proba=None if kind.sequence else outputs["student"],
        baseline_proba=None if kind.sequence or baseline is None else outputs["baseline"],
        classes=data.classes,
        baseline_history=getattr(baseline, "history_", None),
    )
    files = {"student": student_file, "report": out / REPORT_NAME, "config": config_file}
    if teacher.trained:
        files["teacher"] = teacher.file
    files.update(artefacts)
    report["files"] = {name: str(Path(p).resolve()) for name, p in files.items()}
    write_json(out / REPORT_NAME, report)
    _print_table(report, echo)
    for line in report["warnings"]:
        echo(f"warning: {line}")
    echo(f"\nwrote to {out.resolve()}: " + ", ".join(Path(p).name for p in files.values()))
    return report


def _plain(values: Any) -> Any:
    return [v.item() if hasattr(v, "item") else v for v in values]


def _print_table(report: Mapping[str, Any], echo: Callable[[str], Any]) -> None:
    rows = [(r, report[r]) for r in ("teacher", "baseline", "student") if report.get(r)]
    keys = list(rows[0][1]["metrics"])
    head = f"{'model':<10}{'':<24}{'params':>12}{'bytes':>13}"
    head += "".join(f"{k:>19}" for k in keys) + f"{'ms (cpu, batch 1)':>19}"
    echo("")
    echo(head)
    for role, part in rows:
        cells = "".join(
            f"{part['metrics'][k]:>19.4f}"
            if isinstance(part["metrics"][k], float)
            else f"{part['metrics'][k]:>19}"
            for k in keys
        )
        echo(
            f"{role:<10}{str(part.get('model', ''))[:23]:<24}{part['params']:>12,}"
            f"{part['bytes']:>13,}{cells}{part['latency_ms_batch1']:>19.3f}"
        )


def make_kind(
    name: str, settings: Mapping[str, Any], progress: bool = True, given: frozenset = frozenset()
) -> Kind:
    """The reader / builder of data kind ``name`` for a run with ``settings`` (``given``: the
    keys the user set, not defaults)."""
    if name == "table":
        from .distill import TableKind as cls
    elif name == "image":
        from .vision.distill import ImageKind as cls
    elif name == "textline":
        from .vision.textline_distill import TextlineKind as cls
    else:
        raise ConfigError(f"The data kind must be table, image or textline; got {name!r}.")
    return cls(_absolute(settings), progress=progress, given=frozenset(given))


def distill(kind: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The library entry of every kind: ``given`` settings over the kind's defaults, then
    :func:`run`. Paths may be :class:`~pathlib.Path`, sequences tuples; ``given`` may also hold
    ``progress`` (default True) and ``echo`` (default ``print``)."""
    from .config import resolve_settings

    given = dict(given)
    progress = given.pop("progress", True)
    echo = given.pop("echo", print)
    plain = {
        k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
        for k, v in given.items()
    }
    settings = resolve_settings(None, plain, kind)
    settings["quiet"] = not progress
    return run(make_kind(kind, settings, progress, frozenset(plain)), echo=echo)


def run_parts(run_dir: str | Path) -> Parts:
    """The train / validation / test rows of the run in ``run_dir``: its data read again with the
    settings of its ``config.yaml``, and split again (the same seed, the same split). Labels are
    codes in the run's class order (strings for text lines)."""
    from .config import config_task, resolve_settings

    config = Path(run_dir) / "config.yaml"
    name = config_task(config) or "table"
    kind = make_kind(name, resolve_settings(config, None, name), progress=False)
    data = kind.read(_silent)
    if not kind.sequence:
        _order_classes(data, kind.s.get("positive_label"), _silent)
    return _split(data, kind.s, kind.sequence)[0]


def run_test_rows(run_dir: str | Path) -> tuple[Any, Any]:
    """The test rows ``(x, y)`` of the run in ``run_dir`` (see :func:`run_parts`)."""
    return run_parts(run_dir).test


def copy_to_cpu(module: Any) -> Any:
    """An evaluation copy of ``module`` on the CPU (the trained one stays where it is)."""
    return copy.deepcopy(module).to("cpu").eval()
