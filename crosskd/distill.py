"""Tables for ``crosskd distill``: read a CSV / parquet table, build a LightGBM teacher and an MLP.

Everything else (output folder, split, baseline, report, plots) is the scaffold's:
:func:`crosskd.pipeline.run`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._atomic import atomic_path
from .exceptions import ConfigError, DataError
from .pipeline import STUDENT_NAME, BaseKind, Parts, RunData, TeacherResult, classification_metrics

__all__ = ["distill_table", "TableKind", "TEACHER_NAME"]

#: File name of the LightGBM teacher a table run trains.
TEACHER_NAME = "teacher-lightgbm.txt"
REPORT_NAME = "report.json"
#: Fewest labelled rows a table run accepts (they are split into train, validation and test).
MIN_LABELLED_ROWS = 20
__all__ += ["REPORT_NAME", "STUDENT_NAME"]


def _split_target(
    frame: pd.DataFrame, target: str, drop: Sequence[str], what: str
) -> tuple[pd.DataFrame, pd.Series]:
    if target not in frame.columns:
        raise DataError(
            f"Target column {target!r} is not in {what}; its columns are "
            f"{list(frame.columns)[:20]}. Give the label column as `target`."
        )
    missing = [c for c in drop if c not in frame.columns]
    if missing:
        raise DataError(f"`drop` names columns {missing} that are not in {what}.")
    if target in drop:
        raise ConfigError(f"`drop` names the target column {target!r}; drop other columns only.")
    X = frame.drop(columns=[target, *drop])
    if X.shape[1] == 0:
        raise DataError(f"{what} has no feature column left after removing the target and `drop`.")
    return X, frame[target]


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


def _numeric_test_columns(X_test: pd.DataFrame, columns: Sequence[str], what: str) -> pd.DataFrame:
    """``X_test`` with the columns that are numeric in training read as numbers; text in one of
    them is refused, naming the column and the values."""
    X_test = X_test.copy()
    for name in columns:
        series = X_test[name]
        if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
            continue
        numbers = pd.to_numeric(series, errors="coerce")
        bad = series[numbers.isna() & series.notna()]
        if len(bad):
            shown = ", ".join(repr(v) for v in pd.unique(bad.astype(str))[:5])
            raise DataError(
                f"Column {name!r} of {what} holds {len(bad):,} value(s) that are not numbers "
                f"({shown}, first at row {int(bad.index[0]) + 2} of the file), but it is numeric "
                "in the training data. Fix or empty those values."
            )
        X_test[name] = numbers
    return X_test


class TableKind(BaseKind):
    """Tables: a LightGBM teacher (trained, or a model file) and an MLP student with its encoder."""

    name = "table"
    sequence = False
    #: ``integer_codes`` of the students' encoders (set by :meth:`prepare`, chosen there for auto)
    codes: str | list[str] | None = None
    #: the student alone trained while choosing the codes, handed out once as the run's baseline
    _baseline: Any = None

    def check(self) -> None:
        if self.s["teacher"] != "lightgbm":
            raise ConfigError(
                f"`teacher` for tables is lightgbm (trained by crosskd) or a model file given as "
                f"`teacher_model`; got {self.s['teacher']!r}."
            )
        if self.s["student"] != "mlp":
            raise ConfigError(
                f"`student` for tables is mlp (an MLP with an encoder of the columns; its widths "
                f"are `hidden`), got {self.s['student']!r}. cnn and timm students read images."
            )
        if self.s["teacher_model"] is not None and not Path(self.s["teacher_model"]).is_file():
            raise ConfigError(
                f"LightGBM model file {self.s['teacher_model']!r} does not exist (`teacher_model`)."
                " Give a model file written by Booster.save_model, or leave `teacher_model` out "
                "to train a teacher."
            )

    def read(self, echo: Callable[[str], Any]) -> RunData:
        from .datasets.tables import read_table

        s = self.s
        data, target, drop = s["data"], s["target"], s["drop"]
        X_all, y_all = _split_target(read_table(data), target, drop, f"`data` {str(data)!r}")
        _check_target(y_all, target)
        unlabelled = y_all.isna().to_numpy()
        X, y = X_all[~unlabelled], y_all[~unlabelled]
        classes = [_plain(c) for c in sorted(pd.unique(y), key=lambda v: (str(type(v)), v))]
        if len(classes) < 2:
            raise DataError(
                f"Target column {target!r} has a single value ({classes[0]!r}) in its "
                f"{len(y):,} labelled rows; a classifier needs at least two classes. Check the "
                "target column, or add rows of the other classes."
            )
        if len(y) < MIN_LABELLED_ROWS:
            raise DataError(
                f"`data` has {len(y)} labelled rows; crosskd distill needs at least "
                f"{MIN_LABELLED_ROWS} to split them into train, validation and test sets. Add rows."
            )
        codes = _label_codes(y, classes, "`data`")
        if all(isinstance(c, float) and c.is_integer() for c in classes):
            classes = [int(c) for c in classes]  # 0.0 / 1.0 of a column with empty targets
        result = RunData(
            x=X.reset_index(drop=True),
            y=codes,
            classes=classes,
            x_transfer=X_all[unlabelled].reset_index(drop=True) if unlabelled.any() else None,
            info={"target": target},
        )
        if s["test"] is not None:
            test = s["test"]
            what = f"`test` {str(test)!r}"
            X_test, y_test = _split_target(read_table(test), target, drop, what)
            lacking = [c for c in X.columns if c not in X_test.columns]
            if lacking:
                raise DataError(
                    f"{what} lacks {len(lacking)} feature column(s) of `data`: "
                    f"{[str(c) for c in lacking][:10]}. Give a test table with the same columns."
                )
            keep = ~y_test.isna().to_numpy()
            if not keep.any():
                raise DataError(
                    f"{what} has no row with a label in {target!r}, so nothing can be evaluated. "
                    "Give a test table with labels, or leave `test` out."
                )
            result.x_test = X_test[keep]
            result.y_test = _label_codes(y_test[keep], classes, "`test`")
            result.test_source = str(Path(test).resolve())
        return result

    def prepare(self, data: RunData, parts: Parts, echo: Callable[[str], Any]) -> None:
        # The encoder is fitted here, on the rows Distiller.fit fits it on, so that data it refuses
        # (±inf, dates, text in a numeric test column) stops the run before the teacher trains.
        self.classes = data.classes
        given = self.s["integer_codes"]
        self.codes = None if given == "none" else given
        probe = self._student(len(data.classes))
        probe.encoder.fit(parts.train[0])
        where = "`test`" if self.s["test"] is not None else "the test rows"
        X_test = _numeric_test_columns(parts.test[0], probe.encoder.numeric_columns_, where)
        probe.encoder.transform(X_test)
        parts.test = (X_test, parts.test[1])
        found = list(probe.encoder.code_columns_)
        info: dict[str, Any] = {"columns": found, "used": bool(found), "validation": None}
        if given == "auto" and found:
            info = self._choose_codes(found, parts, echo)
        elif found:
            echo("integer columns read as numbers and as categories (`integer_codes`): "
                 + ", ".join(repr(c) for c in found))  # fmt: skip
        data.info["integer_codes"] = info

    def _choose_codes(self, found: list[str], parts: Parts, echo: Callable[[str], Any]) -> dict:
        """``integer_codes="auto"``: the student alone, trained with the candidate columns read
        as categories too and without, compared on the validation rows; the categories are kept
        only when they win by more than one standard error (the trained student is reused as
        the run's baseline)."""
        from .selection import compare_on_validation

        echo(
            f"integer columns that may be codes: {', '.join(repr(c) for c in found)}; training "
            "the student alone with and without reading them as categories ..."
        )
        self.role = "baseline"
        epochs, k = self.s["epochs"], len(self.classes)
        fits = {}
        for codes in ("auto", None):
            self.codes = codes
            fits[codes] = self.fit(None, self._student(k), 0.0, parts, epochs)
        x_val, y_val = parts.val
        compared = compare_on_validation(
            "binary" if k == 2 else "multiclass",
            y_val,
            self.evaluate(fits[None], x_val, y_val)[1],
            self.evaluate(fits["auto"], x_val, y_val)[1],
        )
        use = compared["deployed"] == "baseline"  # with categories, better by > 1 std. error
        self.codes = "auto" if use else None
        self._baseline = fits[self.codes]
        scores = compared["validation"]
        echo(
            f"integer codes {'used' if use else 'not used'}: validation {compared['metric']} "
            f"{scores['baseline']:.4f} with them, {scores['student']:.4f} without (standard "
            f"error of the difference {compared['standard_error']:.4f})"
        )
        return {
            "columns": found,
            "used": use,
            "validation": {
                "metric": compared["metric"],
                "with_codes": scores["baseline"],
                "without": scores["student"],
                "standard_error": compared["standard_error"],
                "rule": "used when better with them by more than one standard error",
            },
        }

    def teacher(self, parts: Parts, out: Path, echo: Callable[[str], Any]) -> TeacherResult:
        from .distributed import barrier, distributed_context, launched_distributed
        from .tabular.gbdt import fit_lightgbm
        from .teachers import LightGBMTeacher

        k = len(self.classes)
        if self.s["teacher_model"] is not None:
            teacher = LightGBMTeacher(self.s["teacher_model"])
            if teacher.info.num_classes != k:
                raise DataError(
                    f"`teacher_model` has {teacher.info.num_classes} classes but target "
                    f"{self.s['target']!r} has {k} ({[str(c) for c in self.classes]}). Use a model "
                    "trained on this target."
                )
            path = Path(self.s["teacher_model"])
            return TeacherResult(teacher, teacher, path, False, "LightGBM (given)")
        path = out / TEACHER_NAME
        ctx = None
        if launched_distributed():
            from ._device import resolve_device

            ctx = distributed_context(resolve_device(self.s["device"]).type)
        # Under torchrun rank 0 trains the teacher; the other ranks load its file.
        if ctx is None or ctx.is_main:
            (X_train, y_train), (X_val, y_val) = parts.train, parts.val
            echo(f"training the teacher: LightGBM on {len(y_train):,} rows ...")
            model = fit_lightgbm(X_train, y_train, eval_set=(X_val, y_val), seed=self.s["seed"])
            with atomic_path(path) as tmp:
                model.booster_.save_model(str(tmp))
            teacher = LightGBMTeacher(model)
        barrier()
        if ctx is not None and not ctx.is_main:
            teacher = LightGBMTeacher(path)
        return TeacherResult(teacher, teacher, path, True, "LightGBM")

    def _student(self, num_classes: int) -> Any:
        from .tabular import TabularEncoder, TabularStudent

        encoder = TabularEncoder(integer_codes=self.codes, clip=self.s["clip"])
        return TabularStudent(
            hidden=tuple(self.s["hidden"]), num_classes=num_classes, encoder=encoder
        )

    def student_model(self) -> Any:
        return self._student(len(self.classes))

    def fit(self, teacher: Any, student: Any, alpha: float, parts: Parts, epochs: int) -> Any:
        from .trainer import Distiller

        if teacher is None and alpha == 0.0 and self._baseline is not None:
            cached, self._baseline = self._baseline, None
            return cached
        return Distiller(
            teacher,
            student,
            class_names=[_plain(c) for c in self.classes],
            **self.trainer_settings(alpha, epochs),
        ).fit(
            *parts.train,
            eval_set=parts.val,
            transfer=parts.transfer if teacher is not None else None,
        )

    def evaluate(self, model: Any, x: Any, y: Any) -> tuple[dict[str, float], Any]:
        proba = np.asarray(model.teacher.predict_proba(x) if isinstance(model, TeacherResult)
                           else model.predict_proba(x))  # fmt: skip
        return classification_metrics(y, proba), proba

    def predictor(self, model: Any) -> Callable[[Any], Any]:
        from .pipeline import copy_to_cpu

        if isinstance(model, TeacherResult):
            return model.teacher.predict_proba
        student = copy_to_cpu(model.student_)
        return lambda rows: student(*student.encode(rows))

    def describe(self, model: Any) -> dict[str, Any]:
        if isinstance(model, TeacherResult):
            return {"kind": "lightgbm", "model": model.model}
        return {"model": "MLP " + "-".join(str(h) for h in self.s["hidden"])}

    def extra(self, fitted: Any, parts: Parts, echo: Callable[[str], Any]) -> dict[str, Any]:
        fitted.student_.encode(parts.test[0])
        seen = fitted.student_.encoder.last_report_
        unseen = {k: v for k, v in seen["unseen_categories"].items() if v}
        if unseen:
            echo(
                f"note: {sum(unseen.values()):,} test value(s) of categorical columns were never "
                f"seen in training ({unseen}); the student reads them as 'unknown'."
            )
        return {
            "test_encoding": {
                "unseen_categories": unseen,
                "missing_values": {
                    **{k: v for k, v in seen["nan_counts"].items() if v},
                    **{k: v for k, v in seen["missing_categories"].items() if v},
                },
            },
            "serving": _serving_latency(fitted, parts.test[0]),
        }


def _serving_latency(fitted: Any, X_test: pd.DataFrame, calls: int = 300) -> dict[str, Any]:
    """p50 microseconds of the fast path (:class:`crosskd.serving.Scorer`) on one test row, as a
    one-row DataFrame and as a dict (one thread, after a warm-up)."""
    import time

    from .serving import Scorer

    scorer = Scorer.from_distiller(fitted)
    frame = X_test.iloc[:1]
    record = {str(k): v for k, v in frame.iloc[0].to_dict().items()}
    record = {k: (v.item() if hasattr(v, "item") else v) for k, v in record.items()}
    out: dict[str, Any] = {"path": "crosskd.serving.Scorer", "calls": calls}
    for name, row in (("dataframe_row_p50_us", frame), ("dict_p50_us", record)):
        times = []
        for _ in range(calls + 20):
            started = time.perf_counter()
            scorer.predict_proba(row)
            times.append(time.perf_counter() - started)
        out[name] = float(np.median(times[20:]) * 1e6)
    return out


def distill_table(
    data: str | Path,
    target: str,
    out: str | Path,
    *,
    progress: bool = True,
    echo: Callable[[str], Any] = print,
    **settings: Any,
) -> dict[str, Any]:
    """Distil a LightGBM teacher into a small MLP on a table, and write the results to ``out``.

    Rows whose target is missing are a transfer set: the teacher labels them and the student learns
    from those soft targets only. A two-class target's positive class is index 1 of the
    probabilities (``positive_label``; default 1 / True for 0/1 or boolean labels, else the
    minority class). A LightGBM model given as ``teacher_model`` must use the same class order.

    Args:
        data: the training table (``.csv`` or ``.parquet``).
        target: the label column.
        out: the output folder (created; refused when it holds other files).
        progress: show progress bars.
        echo: where progress lines and the table go.
        **settings: any table setting of :mod:`crosskd.config` (``test``, ``teacher_model``,
            ``drop``, ``hidden``, ``temperature``, ``alpha``, ``epochs``, ``baseline``, ...);
            defaults from :func:`crosskd.config.defaults` ``("table")``.

    Returns:
        The report (also ``out/report.json``; see :mod:`crosskd.pipeline`). Writes
        ``student.safetensors``, ``teacher-lightgbm.txt`` (when a teacher is trained),
        ``config.yaml``, ``summary.md`` and the plots.
    """
    from .pipeline import distill

    given = {"data": data, "target": target, "out": out, **settings}
    return distill("table", {**given, "progress": progress, "echo": echo})
