"""int8 quantisation of an exported student, refused when it costs more than a stated tolerance.

:func:`quantize_onnx` takes a ``.onnx`` file written by :func:`crosskd.export.export_onnx`
(``crosskd export``) and quantises it with onnxruntime's quantisation tools:

- ``mode="dynamic"`` (default): weights stored in int8, activations quantised on the fly
  (``MatMulInteger`` / ``ConvInteger``); needs no data;
- ``mode="static"``: weights (one scale per output channel) and activations in int8 with scales
  fitted on calibration rows (``QuantizeLinear`` / ``DequantizeLinear`` around ``Gemm``,
  ``MatMul`` and ``Conv``; the input scaling and the softmax stay in float, so probabilities are
  not rounded to 1/255 steps).

It then scores the validation rows with both files and compares the metric: average precision
(``"average_precision"``, two classes), accuracy (``"accuracy"``, more classes) or character error
rate (``"cer"``, sequence students read with greedy CTC decoding). When the int8 file is worse by
more than the tolerance (:data:`TOLERANCES`: 0.005 AP, 0.2 accuracy point, 0.005 CER), nothing is
written and :class:`~crosskd.exceptions.ExportError` says by how much, unless ``force=True``. Test
rows, when given, are scored and reported, never used to decide.

The report (:class:`QuantizeReport`) gives both files' sizes, their batch-1 latency and rows/s on
one onnxruntime thread, and the metric of each on the validation (and test) rows.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_path
from .exceptions import ConfigError, DataError, ExportError

__all__ = ["QuantizeReport", "quantize_onnx", "TOLERANCES", "MODES", "METRICS"]

#: Largest allowed loss of each metric (AP and CER in absolute units, accuracy 0.2 points).
TOLERANCES: dict[str, float] = {"average_precision": 0.005, "accuracy": 0.002, "cer": 0.005}
#: Quantisation modes.
MODES = ("dynamic", "static")
#: Metrics :func:`quantize_onnx` knows; for ``"cer"`` lower is better.
METRICS = tuple(TOLERANCES)


@dataclass
class QuantizeReport:
    """What :func:`quantize_onnx` measured and wrote.

    Attributes:
        source: the float32 ``.onnx`` file.
        path: the int8 file (written only when ``accepted`` or ``forced``; None otherwise).
        mode: ``"dynamic"`` or ``"static"``.
        metric: the metric compared; ``higher_is_better`` tells its direction.
        validation: ``{"fp32": value, "int8": value, "change": int8 - fp32}`` on the validation
            rows, and ``"rows"``.
        test: the same on the test rows (reported only), or None.
        tolerance: the largest allowed loss; ``loss``: the measured loss (positive = worse).
        accepted: ``loss <= tolerance``; ``forced``: written although not accepted.
        bytes: ``{"fp32": size, "int8": size}`` of the files.
        latency_us: ``{"fp32": p50, "int8": p50}`` of one row, one onnxruntime thread.
        rows_per_s: ``{"fp32": ..., "int8": ...}`` at ``batch_rows`` rows per call.
    """

    source: Path
    path: Path | None
    mode: str
    metric: str
    higher_is_better: bool
    validation: dict[str, float]
    test: dict[str, float] | None
    tolerance: float
    loss: float
    accepted: bool
    forced: bool
    bytes: dict[str, int]
    latency_us: dict[str, float]
    rows_per_s: dict[str, float]
    batch_rows: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (paths as strings)."""
        out = asdict(self)
        out["source"] = str(self.source)
        out["path"] = None if self.path is None else str(self.path)
        return out

    def summary(self) -> str:
        """One line for the command line."""
        v = self.validation
        verdict = "written" if self.path is not None else "not written"
        forced = " (forced)" if self.forced else ""
        return (
            f"int8 ({self.mode}) {verdict}{forced}: {self.metric} on {int(v['rows'])} validation rows "
            f"{v['fp32']:.4f} -> {v['int8']:.4f} (change {v['change']:+.4f}, tolerance "
            f"{self.tolerance:g}); {self.bytes['fp32']:,} -> {self.bytes['int8']:,} bytes; one row "
            f"{self.latency_us['fp32']:.1f} -> {self.latency_us['int8']:.1f} us"
        )


def _require_ort() -> Any:
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxruntime.quantization  # noqa: F401
    except ImportError as err:
        raise ConfigError(
            f"int8 quantisation needs onnx and onnxruntime ({err.name} is missing). Install them "
            'with: pip install "crosskd[onnx]"'
        ) from None
    return onnxruntime


def _session(ort: Any, model: str | bytes, threads: int = 1) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _feeds_for(source: Path, X: Any) -> dict[str, np.ndarray]:
    """The onnxruntime feeds of rows ``X`` for a crosskd ``.onnx`` file."""
    if isinstance(X, Mapping):
        return {str(k): np.asarray(v) for k, v in X.items()}
    from .export import OnnxExport

    info = OnnxExport.from_file(source)
    if info.encoder is not None:
        return info.inputs(X)
    arr = np.ascontiguousarray(np.asarray(X), dtype=np.float32)
    return {info.input_names[0]: arr}


def _take(feeds: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v[start:stop]) for k, v in feeds.items()}


def _n_rows(feeds: dict[str, np.ndarray]) -> int:
    return int(next(iter(feeds.values())).shape[0])


def _predict(session: Any, feeds: dict[str, np.ndarray], chunk: int = 4096) -> np.ndarray:
    n = _n_rows(feeds)
    parts = [
        session.run(["probabilities"], _take(feeds, s, s + chunk))[0] for s in range(0, n, chunk)
    ]
    return np.concatenate(parts) if parts else np.empty((0,))


def _greedy_strings(probs: np.ndarray, alphabet: Sequence[str]) -> list[str]:
    best = probs.argmax(axis=-1)
    out = []
    for path in best:
        chars, previous = [], -1
        for k in path.tolist():
            if k != previous and k != 0:
                chars.append(alphabet[k - 1])
            previous = k
        out.append("".join(chars))
    return out


def _score(
    metric: str, probs: np.ndarray, y: Any, classes: Sequence[Any] | None, alphabet: Any
) -> float:
    from . import metrics as kdm

    if metric == "cer":
        if probs.ndim != 3:
            raise ConfigError(
                f"metric='cer' needs a sequence student (probabilities (n, frames, classes)); this "
                f"file gives shape {probs.shape}. Use metric='accuracy'."
            )
        if alphabet is None:
            raise ConfigError(
                "metric='cer' needs the alphabet (the characters of classes 1, 2, ...; 0 is the "
                "blank): pass alphabet=... (a string or a list of characters)."
            )
        return float(kdm.character_error_rate(_greedy_strings(probs, list(alphabet)), list(y)))
    if probs.ndim != 2:
        raise ConfigError(
            f"metric={metric!r} needs class probabilities (n, classes); this file gives shape "
            f"{probs.shape}. Use metric='cer' for sequence students."
        )
    labels = np.asarray(y)
    if classes is not None:
        index = {c: i for i, c in enumerate(classes)}
        try:
            codes = np.asarray([index[v.item() if hasattr(v, "item") else v] for v in labels])
        except KeyError as err:
            raise DataError(
                f"The label {err.args[0]!r} is not among the classes {list(classes)} stored in the "
                "ONNX file. Pass the labels the student was trained on."
            ) from None
    else:
        codes = labels.astype(np.int64)
    if metric == "average_precision":
        if probs.shape[1] != 2:
            raise ConfigError(
                f"metric='average_precision' needs two classes; this student has {probs.shape[1]}. "
                "Use metric='accuracy'."
            )
        return float(kdm.average_precision(codes, probs[:, 1].astype(np.float64)))
    return float(np.mean(probs.argmax(axis=1) == codes))


def _timing(
    session: Any, feeds: dict[str, np.ndarray], calls: int, batch_rows: int
) -> tuple[float, float]:
    """p50 of one-row calls (us) and rows/s at ``batch_rows`` rows per call (best of 3)."""
    n = _n_rows(feeds)
    singles = [_take(feeds, i % n, i % n + 1) for i in range(min(calls, 64))]
    for feed in singles[:10]:
        session.run(["probabilities"], feed)
    times = np.empty(calls)
    for i in range(calls):
        feed = singles[i % len(singles)]
        start = time.perf_counter_ns()
        session.run(["probabilities"], feed)
        times[i] = time.perf_counter_ns() - start
    reps = int(math.ceil(batch_rows / n))
    big = {
        k: np.ascontiguousarray(np.concatenate([v] * reps)[:batch_rows]) for k, v in feeds.items()
    }
    session.run(["probabilities"], big)
    best = min(_elapsed(lambda: session.run(["probabilities"], big)) for _ in range(3))
    return float(np.percentile(times, 50) / 1e3), float(batch_rows / best)


def _elapsed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _quantize(
    ort: Any, source: Path, target: Path, mode: str, calibration: dict[str, np.ndarray] | None
) -> None:
    import logging

    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime suggests pre-processing on every call
    try:
        if mode == "dynamic":
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
            return

        class _Reader(CalibrationDataReader):
            def __init__(self, feeds: dict[str, np.ndarray]) -> None:
                n = _n_rows(feeds)
                self._batches = iter([_take(feeds, s, s + 256) for s in range(0, n, 256)])

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self._batches, None)

        quantize_static(
            str(source),
            str(target),
            _Reader(calibration),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Gemm", "MatMul", "Conv"],
            per_channel=True,
        )
    except Exception as err:  # onnxruntime's tools raise many kinds of errors
        raise ExportError(
            f"onnxruntime could not quantise {source} ({mode}): {type(err).__name__}: {err}"
        ) from err
    finally:
        logging.getLogger().setLevel(quiet)


def quantize_onnx(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str] | None = None,
    *,
    validation: tuple[Any, Any],
    test: tuple[Any, Any] | None = None,
    metric: str = "auto",
    mode: str = "dynamic",
    calibration: Any = None,
    tolerance: float | None = None,
    force: bool = False,
    alphabet: Sequence[str] | str | None = None,
    timing_calls: int = 500,
    batch_rows: int = 10_000,
) -> QuantizeReport:
    """Quantise a crosskd ``.onnx`` file to int8 and check what it costs on validation rows.

    Args:
        source: a file written by :func:`crosskd.export.export_onnx` (``crosskd export``).
        target: the int8 file; None: ``<source stem>.int8.onnx`` next to it.
        validation: ``(X, y)``: rows as the export takes them (a DataFrame of raw rows for a
            tabular student, an array ``(n, *input_shape)`` otherwise, or the onnxruntime feeds
            dict) and their labels (class labels; strings for ``"cer"``). The decision is taken
            on these rows only.
        test: ``(X, y)`` reported, never used to decide.
        metric: ``"average_precision"``, ``"accuracy"``, ``"cer"``, or ``"auto"`` (two classes:
            AP; more: accuracy; sequence output: CER).
        mode: ``"dynamic"`` or ``"static"``.
        calibration: rows (as ``validation``'s X) to fit the activation scales; required for
            ``mode="static"`` (use training rows of the run, not the validation rows).
        tolerance: largest allowed loss of the metric; None: :data:`TOLERANCES`.
        force: write the int8 file even when the loss is above the tolerance.
        alphabet: for ``"cer"``, the characters of classes 1, 2, ... (0 is the CTC blank).
        timing_calls: one-row calls timed per file.
        batch_rows: rows per call for the rows/s figure.

    Returns:
        A :class:`QuantizeReport`.

    Raises:
        ExportError: the int8 file loses more than ``tolerance`` on the validation rows (nothing
            is written unless ``force``; the error's ``report`` attribute holds the
            measurements), or onnxruntime cannot quantise the file.
        ConfigError: a setting is out of range, onnxruntime is missing, static mode without
            calibration rows, a metric that does not fit the student.
        BundleError: ``source`` is not a crosskd ONNX file.
    """
    ort = _require_ort()
    src = Path(source)
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {list(MODES)}, got {mode!r}.")
    if metric != "auto" and metric not in METRICS:
        raise ConfigError(f"metric must be 'auto' or one of {list(METRICS)}, got {metric!r}.")
    if tolerance is not None and not (
        isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0
    ):
        raise ConfigError(f"tolerance must be a finite number >= 0, got {tolerance!r}.")
    if mode == "static" and calibration is None:
        raise ConfigError(
            "mode='static' needs calibration rows to fit the activation scales: pass "
            "calibration= a few thousand training rows of the run (not the validation rows), or "
            "use mode='dynamic'."
        )
    if not isinstance(validation, tuple) or len(validation) != 2:
        raise ConfigError("validation must be a pair (X, y) of rows and their labels.")
    from .export import OnnxExport

    info = OnnxExport.from_file(src)
    dst = Path(target) if target is not None else src.with_name(src.stem + ".int8.onnx")
    if dst.resolve() == src.resolve():
        raise ConfigError(f"The int8 file would overwrite its source {src}; pass another target.")

    val_feeds = _feeds_for(src, validation[0])
    if _n_rows(val_feeds) != len(validation[1]):
        raise DataError(
            f"validation has {_n_rows(val_feeds)} rows but {len(validation[1])} labels; pass the "
            "labels of the same rows."
        )
    fp32 = _session(ort, src)
    probs32 = _predict(fp32, val_feeds)
    if metric == "auto":
        metric = (
            "cer"
            if probs32.ndim == 3
            else ("average_precision" if probs32.shape[1] == 2 else "accuracy")
        )
    limit = TOLERANCES[metric] if tolerance is None else float(tolerance)
    higher = metric != "cer"
    classes = None if info.classes is None or metric == "cer" else info.classes

    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "int8.onnx"
        calib = None if calibration is None else _feeds_for(src, calibration)
        _quantize(ort, src, staged, mode, calib)
        int8 = _session(ort, staged.read_bytes())
        probs8 = _predict(int8, val_feeds)

        def compare(p32: np.ndarray, p8: np.ndarray, y: Any) -> dict[str, float]:
            a = _score(metric, p32, y, classes, alphabet)
            b = _score(metric, p8, y, classes, alphabet)
            return {"fp32": a, "int8": b, "change": b - a, "rows": float(len(y))}

        val = compare(probs32, probs8, validation[1])
        loss = (val["fp32"] - val["int8"]) if higher else (val["int8"] - val["fp32"])
        accepted = loss <= limit
        test_result = None
        if test is not None:
            test_feeds = _feeds_for(src, test[0])
            test_result = compare(_predict(fp32, test_feeds), _predict(int8, test_feeds), test[1])
        lat32, rps32 = _timing(fp32, val_feeds, timing_calls, batch_rows)
        lat8, rps8 = _timing(int8, val_feeds, timing_calls, batch_rows)
        sizes = {"fp32": src.stat().st_size, "int8": staged.stat().st_size}
        written = None
        if accepted or force:
            dst.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(dst) as out:
                out.write_bytes(staged.read_bytes())
            written = dst
    report = QuantizeReport(
        source=src,
        path=written,
        mode=mode,
        metric=metric,
        higher_is_better=higher,
        validation=val,
        test=test_result,
        tolerance=limit,
        loss=loss,
        accepted=accepted,
        forced=bool(force and not accepted),
        bytes=sizes,
        latency_us={"fp32": lat32, "int8": lat8},
        rows_per_s={"fp32": rps32, "int8": rps8},
        batch_rows=batch_rows,
    )
    if not accepted and not force:
        direction = "lowers" if higher else "raises"
        error = ExportError(
            f"int8 quantisation ({mode}) {direction} the validation {metric} from "
            f"{val['fp32']:.4f} to {val['int8']:.4f} ({val['change']:+.4f} on "
            f"{int(val['rows'])} rows), more than the tolerance {limit:g}. Nothing was written. "
            + (
                "Try mode='static' (--quantize-mode static) with calibration rows, "
                if mode == "dynamic"
                else "Try more calibration rows, "
            )
            + "allow a larger tolerance, or pass force=True (--force) to write it anyway."
        )
        error.report = report  # the measurements, for the command line to print
        raise error
    return report
