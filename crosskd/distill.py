"""``crosskd distill`` for a user's own table: teacher, student, bundle, report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._atomic import atomic_path, write_json
from .config import CONFIG_NAME, save_resolved_config
from .datasets.tables import read_table
from .exceptions import ConfigError, DataError
from .profiling import model_size
from .report import write_run_artefacts

__all__ = ["distill_table", "REPORT_NAME", "STUDENT_NAME", "TEACHER_NAME"]

REPORT_NAME = "report.json"
STUDENT_NAME = "student.safetensors"
TEACHER_NAME = "teacher-lightgbm.txt"
#: Fewest labelled rows ``distill_table`` accepts (they are split into train, validation and test).
MIN_LABELLED_ROWS = 20


def _split_target(
    frame: pd.DataFrame, target: str, drop: Sequence[str], what: str
) -> tuple[pd.DataFrame, pd.Series]:
    if target not in frame.columns:
        raise DataError(
            f"Target column {target!r} is not in {what}; its columns are {list(frame.columns)[:20]}. "
            "Pass the label column with --target."
        )
    missing = [c for c in drop if c not in frame.columns]
    if missing:
        raise DataError(f"--drop names columns {missing} that are not in {what}.")
    if target in drop:
        raise ConfigError(f"--drop names the target column {target!r}; drop other columns only.")
    X = frame.drop(columns=[target, *drop])
    if X.shape[1] == 0:
        raise DataError(f"{what} has no feature column left after removing the target and --drop.")
    return X, frame[target]


def _check_settings(
    temperature: float,
    alpha: float,
    epochs: int,
    batch_size: int,
    test_size: float,
    device: str,
    precision: str,
) -> None:
    """Refuse bad settings before reading data or training the teacher (fail early)."""
    from ._device import check_precision, resolve_device
    from .losses import check_alpha, check_temperature

    check_temperature(temperature)
    check_alpha(alpha)
    check_precision(precision)
    resolve_device(device)
    for flag, value in (("--epochs", epochs), ("--batch-size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{flag} must be a positive integer, got {value!r}.")
    if not (0.0 < test_size < 1.0):
        raise ConfigError(f"--test-size must be in (0, 1), got {test_size}.")


def _plain(value: Any) -> Any:
    """A numpy scalar as the python value it holds (for messages and JSON)."""
    return value.item() if isinstance(value, np.generic) else value


def _check_target(y: pd.Series, target: str) -> None:
    """Refuse a target with no label at all, or one that mixes numbers with stray text."""
    labelled = y.dropna()
    if labelled.empty:
        raise DataError(
            f"Target column {target!r} is empty in all {len(y):,} rows, so there is nothing to "
            "learn from. Rows with an empty target are only a transfer set; give at least some "
            "rows a label."
        )
    if labelled.dtype == object or isinstance(labelled.dtype, pd.StringDtype):
        numeric = pd.to_numeric(labelled, errors="coerce")
        text = labelled[numeric.isna()]
        if 0 < len(text) < len(labelled):
            examples = pd.Series(text.astype(str)).value_counts().head(5)
            shown = ", ".join(f"{v!r} ({n} rows)" for v, n in examples.items())
            raise DataError(
                f"Target column {target!r} mixes numbers with text: {shown} are not numbers while "
                f"{len(labelled) - len(text):,} rows are. This is usually a data error that would "
                "become an extra class. Fix those values, or make them empty to use the rows as "
                "unlabelled transfer rows."
            )


def _label_codes(y: pd.Series, classes: list[Any], what: str) -> np.ndarray:
    codes = pd.Index(classes).get_indexer(pd.Index(y.to_numpy()))
    if (codes < 0).any():
        unknown = sorted({str(v) for v in y.to_numpy()[codes < 0]})[:10]
        raise DataError(
            f"{what} has labels {unknown} that the training data does not have (classes "
            f"{[str(c) for c in classes]}). Use the same label values in both files."
        )
    return codes


def _silent(*args: Any, **kwargs: Any) -> None:
    """``echo`` of ranks other than 0 under torchrun."""


def _device_type(device: str) -> str:
    from ._device import resolve_device

    return resolve_device(device).type


def distill_table(
    data: str | Path,
    target: str,
    out: str | Path,
    *,
    test: str | Path | None = None,
    teacher_model: str | Path | None = None,
    drop: Sequence[str] = (),
    temperature: float = 2.0,
    alpha: float = 0.7,
    hidden: Sequence[int] = (32, 16),
    epochs: int = 30,
    batch_size: int = 512,
    test_size: float = 0.2,
    device: str = "auto",
    precision: str = "32",
    seed: int = 0,
    progress: bool = True,
    echo: Any = print,
) -> dict[str, Any]:
    """Distil a LightGBM teacher into a small MLP on a table, and write the results to ``out``.

    Rows whose target is missing are a transfer set: the teacher labels them and the student learns
    from those soft targets only. Labels are ordered by value (``sorted``); a LightGBM model given
    with ``teacher_model`` must use the same order (class ``i`` is the i-th smallest label).

    Writes ``out/student.safetensors``, ``out/teacher-lightgbm.txt`` (when a teacher is trained) and
    ``out/report.json``. Returns the report.
    """
    from sklearn.model_selection import train_test_split

    from .tabular import TabularStudent
    from .tabular.gbdt import fit_lightgbm
    from .teachers import LightGBMTeacher
    from .trainer import Distiller

    _check_settings(temperature, alpha, epochs, batch_size, test_size, device, precision)
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(
            f"--out {str(out_dir)!r} exists and is not a folder. Pass a folder path (it is created "
            "when missing)."
        )
    frame = read_table(data)
    X_all, y_all = _split_target(frame, target, drop, f"--data {str(data)!r}")
    _check_target(y_all, target)
    unlabelled = y_all.isna().to_numpy()
    X_transfer = X_all[unlabelled] if unlabelled.any() else None
    X, y = X_all[~unlabelled], y_all[~unlabelled]
    classes = [_plain(c) for c in sorted(pd.unique(y), key=lambda v: (str(type(v)), v))]
    if len(classes) < 2:
        raise DataError(
            f"Target column {target!r} has a single value ({classes[0]!r}) in its "
            f"{len(y):,} labelled rows; a classifier needs at least two classes. Check the target "
            "column, or add rows of the other classes."
        )
    if len(y) < MIN_LABELLED_ROWS:
        raise DataError(
            f"--data has {len(y)} labelled rows; crosskd distill needs at least "
            f"{MIN_LABELLED_ROWS} to split them into train, validation and test sets. Add rows."
        )
    codes = _label_codes(y, classes, "--data")
    counts = np.bincount(codes, minlength=len(classes))
    stratify = codes if counts.min() >= 2 else None
    if test is not None:
        X_test, y_test = _split_target(read_table(test), target, drop, f"--test {str(test)!r}")
        lacking = [c for c in X.columns if c not in X_test.columns]
        if lacking:
            raise DataError(
                f"--test {str(test)!r} lacks {len(lacking)} feature column(s) of --data: "
                f"{[str(c) for c in lacking][:10]}. Pass a test table with the same columns."
            )
        keep = ~y_test.isna().to_numpy()
        if not keep.any():
            raise DataError(
                f"--test {str(test)!r} has no row with a label in {target!r}, so nothing can be "
                "evaluated. Pass a test table with labels, or leave out --test."
            )
        X_test, y_test_codes = X_test[keep], _label_codes(y_test[keep], classes, "--test")
        X_fit, y_fit = X, codes
    else:
        idx_fit, idx_test = train_test_split(
            np.arange(len(codes)), test_size=test_size, random_state=seed, stratify=stratify
        )
        X_fit, y_fit = X.iloc[np.sort(idx_fit)], codes[np.sort(idx_fit)]
        X_test, y_test_codes = X.iloc[np.sort(idx_test)], codes[np.sort(idx_test)]
    fit_counts = np.bincount(y_fit, minlength=len(classes))
    idx_train, idx_val = train_test_split(
        np.arange(len(y_fit)),
        test_size=0.15,
        random_state=seed,
        stratify=y_fit if fit_counts.min() >= 2 else None,
    )
    idx_train, idx_val = np.sort(idx_train), np.sort(idx_val)
    X_train, y_train = X_fit.iloc[idx_train], y_fit[idx_train]
    X_val, y_val = X_fit.iloc[idx_val], y_fit[idx_val]
    # The student's encoder is fitted here, on the rows Distiller.fit would fit it on, so that data
    # it refuses (±inf, dates, ...) stops the run before the teacher is trained.
    student = TabularStudent(hidden=tuple(hidden), num_classes=len(classes))
    student.encoder.fit(X_train)

    # Under torchrun: rank 0 trains the teacher and writes every file; the other ranks load that
    # teacher, take part in training (DistributedDataParallel) and write nothing.
    from .distributed import barrier, distributed_context, launched_distributed

    ctx = distributed_context(_device_type(device)) if launched_distributed() else None
    main = ctx is None or ctx.is_main
    if not main:
        echo = _silent  # one voice: rank 0's
    try:
        if main:
            out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"Cannot create the --out folder {str(out_dir)!r}: {err.strerror or err}. Pass a "
            "folder path you can write to."
        ) from None
    if teacher_model is not None:
        teacher = LightGBMTeacher(teacher_model)
        if teacher.info.num_classes != len(classes):
            raise DataError(
                f"--teacher-model has {teacher.info.num_classes} classes but target {target!r} has "
                f"{len(classes)} ({[str(c) for c in classes]}). Use a model trained on this target."
            )
        teacher_path = Path(teacher_model)
    else:
        teacher_path = out_dir / TEACHER_NAME
        if main:
            echo(f"training a LightGBM teacher on {len(y_train):,} rows ...")
            model = fit_lightgbm(X_train, y_train, eval_set=(X_val, y_val), seed=seed)
            with atomic_path(teacher_path) as tmp:
                model.booster_.save_model(str(tmp))
            teacher = LightGBMTeacher(model)
        barrier()
        if not main:
            teacher = LightGBMTeacher(teacher_path)  # rank 0's teacher, so every rank agrees

    binary = len(classes) == 2
    distiller = Distiller(
        teacher,
        student,
        temperature=temperature,
        alpha=alpha,
        epochs=epochs,
        batch_size=batch_size,
        class_weight="balanced" if binary else None,
        device=device,
        precision=precision,
        seed=seed,
        progress=progress,
    )
    echo(f"distilling into a {'-'.join(str(h) for h in hidden)} MLP student ...")
    distiller.fit(X_train, y_train, eval_set=(X_val, y_val), transfer=X_transfer)
    if not main:
        return {}  # only rank 0 evaluates and writes the outputs

    from .metrics import classification_metrics

    teacher_proba = teacher.predict_proba(X_test)
    student_proba = distiller.predict_proba(X_test)  # last: `seen` below reads its encoding
    teacher_metrics = classification_metrics(y_test_codes, teacher_proba)
    student_metrics = classification_metrics(y_test_codes, student_proba)
    # What the student's encoder met on the test rows (predict_proba just encoded them).
    seen = distiller.student_.encoder.last_report_
    test_encoding = {
        "unseen_categories": {k: v for k, v in seen["unseen_categories"].items() if v},
        "missing_values": {
            **{k: v for k, v in seen["nan_counts"].items() if v},
            **{k: v for k, v in seen["missing_categories"].items() if v},
        },
    }
    keys = ["roc_auc", "average_precision", "accuracy"] if binary else ["accuracy"]
    keys = [k for k in keys if k in student_metrics]
    student_path = distiller.save(out_dir / STUDENT_NAME)
    t_size, s_size = model_size(teacher), model_size(distiller.student_)
    report = {
        "task": "binary" if binary else "multiclass",
        "target": target,
        "classes": [c.item() if hasattr(c, "item") else c for c in classes],
        "rows": {
            "train": int(len(y_train)),
            "validation": int(len(y_val)),
            "test": int(len(y_test_codes)),
            "transfer": 0 if X_transfer is None else int(len(X_transfer)),
        },
        "settings": {
            "temperature": temperature,
            "alpha": alpha,
            "hidden": list(hidden),
            "epochs": epochs,
            "batch_size": batch_size,
            "seed": seed,
            "device": str(device),
            "precision": precision,
        },
        "teacher": {
            "kind": "lightgbm",
            "file": str(teacher_path),
            "params": t_size.params,
            "bytes": t_size.bytes,
            "metrics": {k: teacher_metrics[k] for k in keys},
        },
        "student": {
            "file": str(student_path),
            "params": s_size.params,
            "bytes": s_size.bytes,
            "best_epoch": distiller.best_epoch_,
            "metrics": {k: student_metrics[k] for k in keys},
        },
        "test_encoding": test_encoding,
    }
    write_json(out_dir / REPORT_NAME, report)
    save_resolved_config(
        out_dir,
        {
            "data": str(data),
            "target": target,
            "out": str(out_dir),
            "test": None if test is None else str(test),
            "teacher_model": None if teacher_model is None else str(teacher_model),
            "drop": list(drop),
            "temperature": temperature,
            "alpha": alpha,
            "hidden": list(hidden),
            "epochs": epochs,
            "batch_size": batch_size,
            "test_size": test_size,
            "device": str(device),
            "precision": precision,
            "seed": seed,
            "quiet": not progress,
        },
    )
    artefacts = write_run_artefacts(
        out_dir,
        report,
        distiller.history_,
        y_true=y_test_codes,
        teacher_proba=teacher_proba,
        student_proba=student_proba,
        classes=classes,
    )
    echo("")
    echo(f"{'model':<10}{'params':>10}{'bytes':>11}" + "".join(f"{k:>19}" for k in keys))
    for name, part in (("teacher", report["teacher"]), ("student", report["student"])):
        echo(
            f"{name:<10}{part['params']:>10,}{part['bytes']:>11,}"
            + "".join(f"{part['metrics'][k]:>19.4f}" for k in keys)
        )
    unseen = sum(test_encoding["unseen_categories"].values())
    if unseen:
        echo(
            f"\nnote: {unseen:,} test value(s) of categorical columns were never seen in training "
            f"({test_encoding['unseen_categories']}); the student reads them as 'unknown'."
        )
    written = [student_path, out_dir / REPORT_NAME, out_dir / CONFIG_NAME, *artefacts.values()]
    if teacher_model is None:
        written.insert(1, teacher_path)
    echo(f"\nwrote to {out_dir}: " + ", ".join(Path(p).name for p in written))
    return report
