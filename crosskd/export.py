"""Export trained students to ONNX, checked against torch with onnxruntime.

:func:`export_onnx` writes one ``.onnx`` file whose output ``"probabilities"`` ``(n, C)`` float32 is
the student's softmax, columns in the order of the classes stored in the file.

**Tabular students** (:class:`~crosskd.tabular.TabularStudent`) are exported *with* the numeric part
of their encoder, so the file takes raw values:

- input ``"numeric"``: ``(n, n_numeric)`` float32, the raw numeric columns in training order
  (``OnnxExport.numeric_columns``), NaN allowed. Inside the graph each value is robust-scaled in
  float64 (``(x - median) / scale``), clipped to ``[-clip, clip]``, NaN becomes 0 (the median) and
  the NaN indicators the student was trained with are appended: exactly
  :meth:`TabularEncoder.transform <crosskd.tabular.TabularEncoder.transform>`.
- input ``"categorical"`` (only when the table has categorical columns): ``(n, n_categorical)``
  int64 category codes, columns in ``OnnxExport.categorical_columns`` order. The code of a value
  ``v`` in column ``c`` is ``1 + encoder.categories_[c].index(v)``, and 0 for a missing value, a
  value never seen in training, or one rarer than ``min_frequency``; codes outside the embedding
  table are read as 0 too. :meth:`OnnxExport.encode_categorical` computes them from a DataFrame
  (and :meth:`OnnxExport.inputs` builds both arrays), and :meth:`OnnxExport.from_file` restores
  the vocabulary from the ``.onnx`` file itself, so serving code needs no other file.

A numeric column goes through float32 on its way in: a value that float32 cannot hold exactly (a
Unix timestamp in seconds, an id above 2**24) is rounded before scaling. Send such columns as
differences or scaled values.

**Other students** (:class:`~crosskd.tabular.MLP`, image students, any ``nn.Module`` returning
``(n, C)`` logits) take one float32 input named ``"input"`` of shape ``(n, *input_shape)``. An
:class:`~crosskd.tabular.MLP` or :class:`~crosskd.tabular.TabularStudent` becomes a hand-built ONNX
graph (Gemm, Relu, Gather, ...); any other module goes through ``torch.onnx.export``.

Files are written atomically (temporary file, then rename), and only after onnxruntime has given
the same probabilities as torch on sample rows within ``atol``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ._atomic import atomic_path
from .exceptions import ConfigError, DataError, ExportError, NotFittedError

__all__ = ["ExportError", "OnnxExport", "export", "export_onnx", "export_command", "FORMATS"]

#: Export formats known to :func:`export` and ``crosskd export``.
FORMATS = ("onnx",)
ONNX_FORMAT = "crosskd-onnx"
ONNX_FORMAT_VERSION = 1
DEFAULT_OPSET = 17
_N_CHECK_ROWS = 64


def _require_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise ConfigError(
            f"ONNX export needs the packages onnx and onnxruntime ({err.name} is missing). "
            'Install them with: pip install "crosskd[onnx]"'
        ) from None
    return onnx, onnxruntime


# ---------------------------------------------------------------------------------- result


@dataclass
class OnnxExport:
    """What :func:`export_onnx` wrote, and how to feed the file.

    Attributes:
        path: the ``.onnx`` file.
        input_names: names of the graph inputs, in order (``("numeric", "categorical")``,
            ``("numeric",)`` or ``("input",)``).
        classes: class labels, the columns of ``"probabilities"`` (None when unknown).
        numeric_columns: for tabular students, the raw numeric columns of input ``"numeric"``.
        categorical_columns: for tabular students, the columns of input ``"categorical"``.
        input_shape: for other students, the per-row shape of input ``"input"``.
        max_abs_diff: largest difference between onnxruntime and torch probabilities on the
            check rows (None when ``check=False``).
        encoder: the fitted :class:`~crosskd.tabular.TabularEncoder` of a tabular student.
        alphabet: for a text-line (CTC) student, its alphabet (``{"chars", "blank"}``); its output
            ``"probabilities"`` is then ``(n, frames, len(chars) + 1)``, read with greedy decoding.
    """

    path: Path
    input_names: tuple[str, ...]
    classes: tuple[Any, ...] | None = None
    numeric_columns: tuple[str, ...] = ()
    categorical_columns: tuple[str, ...] = ()
    input_shape: tuple[int, ...] | None = None
    max_abs_diff: float | None = None
    encoder: Any = field(default=None, repr=False)
    alphabet: dict[str, Any] | None = None

    def encode_categorical(self, frame: pd.DataFrame) -> np.ndarray:
        """The ``"categorical"`` input for the rows of ``frame``: ``(n, n_categorical)`` int64 codes.

        Code ``1 + i`` is ``encoder.categories_[column][i]``; 0 is missing, unseen or rare.

        Raises:
            DataError: ``frame`` lacks a categorical column, or the export is not tabular.
        """
        return encode_categorical(self._encoder("encode_categorical"), frame)

    def inputs(self, frame: pd.DataFrame | np.ndarray) -> dict[str, np.ndarray]:
        """The feed for ``onnxruntime.InferenceSession.run`` for the rows of ``frame``.

        Args:
            frame: a DataFrame with the training columns (extra ones are ignored); for a student
                without categorical columns also a 2-D array of the numeric columns in order.
        """
        encoder = self._encoder("inputs")
        if not isinstance(frame, pd.DataFrame):
            arr = np.asarray(frame)
            if (
                self.categorical_columns
                or arr.ndim != 2
                or arr.shape[1] != len(self.numeric_columns)
            ):
                raise DataError(
                    f"inputs() takes a DataFrame with the columns {list(encoder.feature_names_in_)}"
                    + (
                        f", or an array of shape (n, {len(self.numeric_columns)})"
                        if not self.categorical_columns
                        else ""
                    )
                    + f"; got {type(frame).__name__} of shape {getattr(arr, 'shape', None)}."
                )
            frame = pd.DataFrame(arr, columns=list(self.numeric_columns))
        feeds = {}
        if self.numeric_columns:
            feeds["numeric"] = numeric_matrix(encoder, frame)
        if self.categorical_columns:
            feeds["categorical"] = encode_categorical(encoder, frame)
        return feeds

    def session(self) -> Any:
        """An onnxruntime ``InferenceSession`` on the CPU for this file (created once, kept)."""
        _, ort = _require_onnx()
        if getattr(self, "_session", None) is None:
            self._session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        return self._session

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities ``(n, C)`` float32 from onnxruntime, for a DataFrame (tabular) or an array."""
        if self.encoder is not None:
            feeds = self.inputs(X)
        else:
            feeds = {self.input_names[0]: np.ascontiguousarray(np.asarray(X), dtype=np.float32)}
        return self.session().run(["probabilities"], feeds)[0]

    def _encoder(self, method: str) -> Any:
        if self.encoder is None:
            raise DataError(
                f"OnnxExport.{method} is for tabular students; this file takes one float32 input "
                f"{self.input_names[0]!r} of shape (n, {', '.join(map(str, self.input_shape or ()))})."
            )
        return self.encoder

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> OnnxExport:
        """Read what a crosskd ``.onnx`` file describes (classes, columns, vocabulary).

        Only the protobuf is parsed and the JSON metadata read; nothing is executed.

        Raises:
            BundleError: the file is missing, or is not an ONNX file written by crosskd.
        """
        from .exceptions import BundleError
        from .tabular import TabularEncoder

        onnx, _ = _require_onnx()
        target = Path(path)
        if not target.is_file():
            raise BundleError(f"No ONNX file at {target}. Check the path.")
        try:
            model = onnx.load(str(target), load_external_data=False)
        except Exception as err:  # protobuf's DecodeError and friends
            raise BundleError(f"{target} is not a valid ONNX file ({err}).") from None
        props = {p.key: p.value for p in model.metadata_props}
        if props.get("crosskd_format") != ONNX_FORMAT:
            raise BundleError(
                f"{target} is an ONNX file but was not written by crosskd (no crosskd metadata); "
                "its inputs are described by the tool that wrote it."
            )
        info = json.loads(props["crosskd_info"])
        encoder = None
        if info.get("encoder") is not None:
            encoder = TabularEncoder.from_dict(info["encoder"])
        return cls(
            path=target,
            input_names=tuple(info["input_names"]),
            classes=None if info.get("classes") is None else tuple(info["classes"]),
            numeric_columns=tuple(info.get("numeric_columns", ())),
            categorical_columns=tuple(info.get("categorical_columns", ())),
            input_shape=None if info.get("input_shape") is None else tuple(info["input_shape"]),
            encoder=encoder,
            alphabet=info.get("alphabet"),
        )


# ---------------------------------------------------------------------------------- helpers


def encode_categorical(encoder: Any, frame: pd.DataFrame) -> np.ndarray:
    """Category codes of ``frame``'s categorical columns, as a fitted encoder assigns them.

    Args:
        encoder: a fitted :class:`~crosskd.tabular.TabularEncoder`.
        frame: rows with (at least) the encoder's categorical columns.

    Returns:
        ``(n, len(encoder.categorical_columns_))`` int64: ``1 + position`` of the value in
        ``encoder.categories_[column]``, 0 for missing, unseen or rare values.

    Raises:
        DataError: a categorical column is missing from ``frame``.
    """
    from .tabular.encoder import _lookup

    columns = list(encoder.categorical_columns_)
    if not isinstance(frame, pd.DataFrame):
        raise DataError(
            f"encode_categorical takes a DataFrame with the columns {columns}, got "
            f"{type(frame).__name__}."
        )
    frame = _with_columns(frame, columns, "categorical", "missing values are allowed")
    codes = np.zeros((len(frame), len(columns)), dtype=np.int64)
    for j, name in enumerate(columns):
        vocabulary = pd.Index(encoder.categories_[name], dtype=object)
        codes[:, j] = _lookup(vocabulary, frame[name]) + 1
    return codes


def numeric_matrix(encoder: Any, frame: pd.DataFrame) -> np.ndarray:
    """The ``"numeric"`` input: ``frame``'s raw numeric columns, in training order, as float32.

    Raises:
        DataError: a numeric column is missing or holds text.
    """
    columns = list(encoder.numeric_columns_)
    frame = _with_columns(frame, columns, "numeric", "NaN is allowed")
    try:
        values = frame[columns].to_numpy(dtype=np.float32, na_value=np.nan)
    except (TypeError, ValueError) as err:
        raise DataError(
            f"The numeric columns {columns} must hold numbers (NaN allowed): {err}."
        ) from None
    return np.ascontiguousarray(values)


def _with_columns(frame: pd.DataFrame, columns: list[str], what: str, note: str) -> pd.DataFrame:
    """``frame`` with text column names; refuses one that lacks some of ``columns``."""
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"The data lacks the {what} column(s) {missing}; the student was trained with "
            f"{columns}. Add them ({note})."
        )
    return frame


def _atomic_write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


# ---------------------------------------------------------------------------------- graphs


class _GraphBuilder:
    """A few helpers around ``onnx.helper`` to build a graph node by node."""

    def __init__(self, onnx: Any) -> None:
        self.onnx = onnx
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, array: np.ndarray, hint: str) -> str:
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: Sequence[str], hint: str | None = None, **attrs: Any) -> str:
        out = self.name(hint or op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [out], **attrs))
        return out


def _linear_stack(g: _GraphBuilder, mlp: nn.Module, h: str) -> str:
    """Gemm / Relu / BatchNorm (folded) nodes of a crosskd MLP, from ``h`` to its logits."""
    for layer in [*mlp.layers, mlp.head]:
        if isinstance(layer, nn.Linear):
            weight = layer.weight.detach().cpu().float().numpy()
            args = [h, g.const(weight, "weight")]
            if layer.bias is not None:
                args.append(g.const(layer.bias.detach().cpu().float().numpy(), "bias"))
            h = g.node("Gemm", args, "linear", transB=1)
        elif isinstance(layer, nn.ReLU):
            h = g.node("Relu", [h])
        elif isinstance(layer, nn.BatchNorm1d):
            mean = layer.running_mean.detach().cpu().double().numpy()
            var = layer.running_var.detach().cpu().double().numpy()
            gamma = (
                layer.weight.detach().cpu().double().numpy()
                if layer.weight is not None
                else np.ones_like(mean)
            )
            beta = (
                layer.bias.detach().cpu().double().numpy()
                if layer.bias is not None
                else np.zeros_like(mean)
            )
            mul = gamma / np.sqrt(var + layer.eps)
            add = beta - mean * mul
            h = g.node("Mul", [h, g.const(mul.astype(np.float32), "bn_scale")])
            h = g.node("Add", [h, g.const(add.astype(np.float32), "bn_shift")])
        elif isinstance(layer, (nn.Dropout, nn.Identity)):
            continue  # identity in eval mode
        else:
            raise _Unsupported(type(layer).__name__)
    return h


class _Unsupported(Exception):
    """A layer the hand-built graph does not know: fall back to torch.onnx.export."""


def _tabular_graph(student: nn.Module, onnx: Any, opset: int) -> Any:
    from onnx import TensorProto, helper

    encoder = student.encoder
    g = _GraphBuilder(onnx)
    inputs = []
    parts: list[str] = []
    k = len(encoder.numeric_columns_)
    if k:
        inputs.append(helper.make_tensor_value_info("numeric", TensorProto.FLOAT, ["batch", k]))
        x64 = g.node("Cast", ["numeric"], "x64", to=TensorProto.DOUBLE)
        isnan = g.node("IsNaN", ["numeric"], "isnan")
        z = g.node("Sub", [x64, g.const(np.asarray(encoder.center_, np.float64), "center")])
        z = g.node("Div", [z, g.const(np.asarray(encoder.scale_, np.float64), "scale")])
        clip = float(encoder.clip)
        z = g.node("Max", [z, g.const(np.asarray(-clip, np.float64), "low")])
        z = g.node("Min", [z, g.const(np.asarray(clip, np.float64), "high")])
        z = g.node("Where", [isnan, g.const(np.asarray(0.0, np.float64), "zero"), z], "filled")
        parts.append(g.node("Cast", [z], "scaled", to=TensorProto.FLOAT))
        if encoder.nan_indicator_columns_:
            position = {name: j for j, name in enumerate(encoder.numeric_columns_)}
            idx = np.asarray([position[c] for c in encoder.nan_indicator_columns_], np.int64)
            flags = g.node("Cast", [isnan], "nan_flags", to=TensorProto.FLOAT)
            parts.append(g.node("Gather", [flags, g.const(idx, "indicator_idx")], axis=1))
    n_cat = len(encoder.categorical_columns_)
    if n_cat:
        inputs.append(
            helper.make_tensor_value_info("categorical", TensorProto.INT64, ["batch", n_cat])
        )
        zero = g.const(np.asarray(0, np.int64), "code_zero")
        for j, (embedding, card) in enumerate(
            zip(student.embeddings, encoder.cardinalities_, strict=True)
        ):
            # column j of every row: a scalar index on axis 1 gives shape (batch,)
            code = g.node(
                "Gather", ["categorical", g.const(np.asarray(j, np.int64), "col")], axis=1
            )
            bad = g.node(
                "Or",
                [
                    g.node("Less", [code, zero]),
                    g.node("Greater", [code, g.const(np.asarray(card - 1, np.int64), "max_code")]),
                ],
            )
            code = g.node("Where", [bad, zero, code], "code")
            table = embedding.weight.detach().cpu().float().numpy()
            parts.append(g.node("Gather", [g.const(table, "embedding"), code], axis=0))
    h = parts[0] if len(parts) == 1 else g.node("Concat", parts, "features", axis=1)
    logits = _linear_stack(g, student.mlp, h)
    return _finish_graph(g, onnx, inputs, logits, student.num_classes, opset)


def _mlp_graph(mlp: nn.Module, onnx: Any, opset: int) -> Any:
    from onnx import TensorProto, helper

    g = _GraphBuilder(onnx)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", mlp.in_features])
    logits = _linear_stack(g, mlp, "input")
    return _finish_graph(g, onnx, [inp], logits, mlp.num_classes, opset)


def _finish_graph(
    g: _GraphBuilder, onnx: Any, inputs: list[Any], logits: str, num_classes: int, opset: int
) -> Any:
    from onnx import TensorProto, helper

    g.nodes.append(helper.make_node("Softmax", [logits], ["probabilities"], axis=-1))
    output = helper.make_tensor_value_info(
        "probabilities", TensorProto.FLOAT, ["batch", int(num_classes)]
    )
    graph = helper.make_graph(g.nodes, "crosskd_student", inputs, [output], g.initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="crosskd"
    )
    model.ir_version = min(model.ir_version, 9)  # readable by onnxruntime >= 1.16
    onnx.checker.check_model(model)
    return model


class _Probabilities(nn.Module):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.module(x).float(), dim=-1)


def _torch_graph(module: nn.Module, example: torch.Tensor, onnx: Any, opset: int) -> Any:
    """``torch.onnx.export`` of ``softmax(module(x))`` with a dynamic batch axis."""
    wrapper = _Probabilities(module).eval()
    with tempfile.TemporaryDirectory() as tmp:
        target = os.path.join(tmp, "model.onnx")
        try:
            import onnxscript  # noqa: F401  (the dynamo exporter needs it)

            dynamo = True
        except ImportError:
            dynamo = False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if dynamo:
                    batch = torch.export.Dim("batch", min=1)
                    program = torch.onnx.export(
                        wrapper,
                        (example,),
                        input_names=["input"],
                        output_names=["probabilities"],
                        dynamic_shapes=({0: batch},),
                        opset_version=max(opset, 18),
                        dynamo=True,
                        external_data=False,
                    )
                    program.save(target)
                else:
                    torch.onnx.export(
                        wrapper,
                        (example,),
                        target,
                        input_names=["input"],
                        output_names=["probabilities"],
                        dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}},
                        opset_version=opset,
                        dynamo=False,
                    )
        except Exception as err:  # the exporters raise many kinds of errors
            raise ExportError(
                f"torch.onnx.export could not export the {type(module).__name__}: "
                f"{type(err).__name__}: {err}"
            ) from err
        return onnx.load(target)


# ---------------------------------------------------------------------------------- checks


def _synthetic_tabular_rows(encoder: Any, n: int, seed: int = 0) -> pd.DataFrame:
    """Rows that exercise every branch of the encoder: typical values, outliers, NaN, unknowns."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for name, center, scale in zip(
        encoder.numeric_columns_, encoder.center_, encoder.scale_, strict=True
    ):
        values = center + scale * rng.standard_normal(n) * 4.0
        values[rng.random(n) < 0.15] = np.nan
        columns[name] = values.astype(np.float32).astype(np.float64)
    codes = set(getattr(encoder, "code_columns_", []))
    for name in encoder.categorical_columns_:
        vocabulary = list(encoder.categories_[name])
        if name in codes:  # a number read as a category too: known codes, an unseen one, NaN
            options = [float(v) for v in vocabulary] + [max(vocabulary, default=0) + 1.0, np.nan]
            columns[name] = np.asarray([options[i] for i in rng.integers(0, len(options), n)])
            continue
        options: list[Any] = [*vocabulary, None, "__crosskd_unseen__"]
        columns[name] = pd.Series(
            [options[i] for i in rng.integers(0, len(options), n)], dtype=object
        )
    return pd.DataFrame({c: columns[c] for c in encoder.feature_names_in_})


def _check_tabular(student: nn.Module, model: Any, ort: Any, sample: Any, atol: float) -> float:
    encoder = student.encoder
    if sample is None:
        frame = _synthetic_tabular_rows(encoder, _N_CHECK_ROWS)
    elif isinstance(sample, pd.DataFrame):
        frame = sample.set_axis([str(c) for c in sample.columns], axis=1).copy()
    else:
        frame = pd.DataFrame(np.asarray(sample), columns=list(encoder.feature_names_in_))
    feeds = {}
    if encoder.numeric_columns_:
        feeds["numeric"] = numeric_matrix(encoder, frame)
        # torch sees the same float32-rounded values that the ONNX input holds
        for j, name in enumerate(encoder.numeric_columns_):
            frame[name] = feeds["numeric"][:, j].astype(np.float64)
    if encoder.categorical_columns_:
        feeds["categorical"] = encode_categorical(encoder, frame)
    with torch.inference_mode():
        was_training = student.training
        student.eval()
        numeric, categorical = student.encode(frame)
        expected = torch.softmax(student(numeric, categorical).float(), dim=-1).numpy()
        student.train(was_training)
    return _compare(model, ort, feeds, expected, atol)


def _compare(
    model: Any, ort: Any, feeds: dict[str, np.ndarray], expected: np.ndarray, atol: float
) -> float:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(["probabilities"], feeds)
    if got.shape != expected.shape:
        raise ExportError(
            f"The ONNX model returns probabilities of shape {got.shape} but torch gives "
            f"{expected.shape}; the export is wrong. Please report this with the student's class."
        )
    diff = float(np.max(np.abs(got.astype(np.float64) - expected))) if got.size else 0.0
    if not diff <= atol:
        worst = np.unravel_index(np.nanargmax(np.abs(got - expected)), got.shape)
        raise ExportError(
            f"onnxruntime and torch disagree: the largest difference of probabilities is {diff:.3g} "
            f"(row {worst[0]}, class {worst[1]}: onnxruntime {got[worst]:.6g}, torch "
            f"{expected[worst]:.6g}), above atol={atol:g}. Nothing was written. Export with a "
            "larger atol if this difference is acceptable, or report it with the student's class."
        )
    return diff


# ---------------------------------------------------------------------------------- export


def _resolve_model(model: Any) -> tuple[nn.Module, tuple[Any, ...] | None, Any, Any]:
    """(student module, classes, input shapes known to the trainer, alphabet) from what the user
    passed. Trainers are recognised by their fitted ``student_`` (no trainer is imported)."""
    inner = getattr(model, "distiller_", None)  # a fitted KDClassifier
    if inner is not None:
        model = inner
    if isinstance(model, nn.Module):
        return model, None, None, None
    if getattr(model, "student_", None) is not None:  # a fitted Distiller or CTCDistiller
        classes = getattr(model, "classes_", None)
        return (
            model.student_,
            None if classes is None else tuple(classes),
            getattr(model, "input_shapes_", None),
            getattr(model, "alphabet_", None),
        )
    if hasattr(model, "fit"):  # a trainer or a KDClassifier, not fitted yet
        raise NotFittedError(
            f"This {type(model).__name__} is not fitted: call fit(X, y) (or load a saved student) "
            "before exporting it."
        )
    raise ConfigError(
        f"export_onnx takes a fitted trainer (Distiller, CTCDistiller) or KDClassifier, or a "
        f"student torch module (TabularStudent, MLP, ...); got a {type(model).__name__}."
    )


def _check_readings(
    graph: Any, ort: Any, name: str, example: torch.Tensor, expected: np.ndarray, blank: int
) -> None:
    """Refuse an export whose greedy CTC readings differ from torch's on any line."""
    from .losses import greedy_decode

    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(["probabilities"], {name: example.numpy()})
    ours = greedy_decode(torch.from_numpy(np.ascontiguousarray(got)), blank=blank)
    theirs = greedy_decode(torch.from_numpy(expected), blank=blank)
    wrong = [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b]
    if wrong:
        raise ExportError(
            f"onnxruntime reads {len(wrong)} of {len(ours)} lines differently from torch (first: "
            f"line {wrong[0]}, onnxruntime {ours[wrong[0]]} vs torch {theirs[wrong[0]]}, as class "
            "indices). Nothing was written. Please report this with the student's class."
        )


def export_onnx(
    model: Any,
    path: str | os.PathLike[str],
    *,
    check: bool = True,
    atol: float = 1e-5,
    sample: Any = None,
    input_shape: Sequence[int] | None = None,
    opset: int = DEFAULT_OPSET,
) -> OnnxExport:
    """Write a student as an ONNX model whose output ``"probabilities"`` is its softmax.

    Args:
        model: a fitted :class:`~crosskd.Distiller` (or one from :func:`crosskd.load`), a fitted
            :class:`~crosskd.estimator.KDClassifier`, or a student module: a built
            :class:`~crosskd.tabular.TabularStudent`, an :class:`~crosskd.tabular.MLP`, or any
            ``nn.Module`` returning ``(n, C)`` logits.
        path: the file to write (``.onnx`` is appended when the name has no suffix).
        check: run onnxruntime on sample rows and compare its probabilities with torch's.
        atol: largest allowed absolute difference of probabilities.
        sample: rows for the check: a DataFrame / array of raw rows for a tabular student, a
            float tensor / array ``(n, *input_shape)`` otherwise; None: generated rows (tabular:
            typical values, outliers, NaN, missing and unseen categories; others: uniform [0, 1)).
        input_shape: per-row input shape of a non-tabular student, e.g. ``(1, 28, 28)``; taken
            from the student (MLP, ImageMLP), the Distiller that trained it, or ``sample`` when
            None.
        opset: ONNX opset version.

    Returns:
        An :class:`OnnxExport`: the path, the input names, the columns and how to feed the file.

    Raises:
        ExportError: onnxruntime and torch disagree by more than ``atol`` (nothing is written), or
            the module cannot be exported.
        NotFittedError: the model is not fitted / the student not built.
        ConfigError: onnx / onnxruntime are not installed, or the input shape cannot be known.
    """
    from .tabular import MLP, TabularStudent

    onnx, ort = _require_onnx()
    student, classes, trainer_shapes, alphabet = _resolve_model(model)
    student = getattr(student, "_orig_mod", getattr(student, "module", student))
    if not (isinstance(atol, (int, float)) and atol >= 0 and math.isfinite(atol)):
        raise ConfigError(f"atol must be a finite number >= 0, got {atol!r}.")
    target = Path(path)
    if target.suffix == "":
        target = target.with_name(target.name + ".onnx")
    if target.is_dir():
        raise ConfigError(f"{target} is a folder; pass the path of the .onnx file to write.")
    device = next((p.device for p in student.parameters()), torch.device("cpu"))
    if device.type != "cpu":
        student = student.to("cpu")
    was_training = student.training
    student.eval()
    try:
        info: dict[str, Any]
        if isinstance(student, TabularStudent):
            if not student.is_built:
                raise NotFittedError(
                    "The TabularStudent is not built: train it with Distiller.fit (or call "
                    "student.build(X, num_classes)) before exporting it."
                )
            encoder = student.encoder
            graph = _tabular_graph(student, onnx, opset)
            names = tuple(i.name for i in graph.graph.input)
            diff = _check_tabular(student, graph, ort, sample, atol) if check else None
            info = {
                "numeric_columns": list(encoder.numeric_columns_),
                "categorical_columns": list(encoder.categorical_columns_),
                "encoder": encoder.to_dict(),
                "input_shape": None,
            }
            result_kwargs = {
                "numeric_columns": tuple(encoder.numeric_columns_),
                "categorical_columns": tuple(encoder.categorical_columns_),
                "encoder": encoder,
            }
        else:
            shape = _input_shape(student, input_shape, trainer_shapes, sample)
            example = _example(sample, shape)
            graph = None
            if isinstance(student, MLP):
                try:
                    graph = _mlp_graph(student, onnx, opset)
                except _Unsupported:
                    graph = None
            if graph is None:
                graph = _torch_graph(student, example[:2], onnx, opset)
            names = tuple(i.name for i in graph.graph.input)
            diff = None
            if check:
                with torch.inference_mode():
                    expected = torch.softmax(student(example).float(), dim=-1).numpy()
                diff = _compare(graph, ort, {names[0]: example.numpy()}, expected, atol)
                if expected.ndim == 3:  # CTC frames: the readings must agree too
                    blank = 0 if alphabet is None else int(alphabet.blank)
                    _check_readings(graph, ort, names[0], example, expected, blank)
            info = {"input_shape": list(shape), "encoder": None}
            result_kwargs = {"input_shape": tuple(shape)}
            if alphabet is not None:
                info["alphabet"] = alphabet.to_dict()
                result_kwargs["alphabet"] = alphabet.to_dict()
    finally:
        student.train(was_training)
        if device.type != "cpu":
            student.to(device)

    if classes is None and alphabet is None and getattr(student, "num_classes", None) is not None:
        classes = tuple(range(int(student.num_classes)))
    from .io import _crosskd_version, _json_safe

    info.update(
        {
            "input_names": list(names),
            "classes": None if classes is None else _json_safe(list(classes), "classes"),
            "student_class": type(student).__name__,
            "output": "probabilities",
        }
    )
    del graph.metadata_props[:]
    for key, value in (
        ("crosskd_format", ONNX_FORMAT),
        ("crosskd_format_version", str(ONNX_FORMAT_VERSION)),
        ("crosskd_version", _crosskd_version()),
        ("crosskd_info", json.dumps(info)),
    ):
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    _atomic_write_bytes(target, graph.SerializeToString())
    return OnnxExport(
        path=target,
        input_names=names,
        classes=classes,
        max_abs_diff=diff,
        **result_kwargs,
    )


def _input_shape(
    student: nn.Module,
    given: Sequence[int] | None,
    trainer_shapes: Any,
    sample: Any,
) -> tuple[int, ...]:
    if given is not None:
        try:
            shape = tuple(int(s) for s in given)
        except (TypeError, ValueError):
            shape = ()
        if not shape or min(shape) < 1:
            raise ConfigError(
                f"input_shape must be the per-row shape, e.g. (1, 28, 28) or (20,), got {given!r}."
            )
        return shape
    if sample is not None:
        return tuple(np.asarray(sample).shape[1:])
    if trainer_shapes and len(trainer_shapes) == 1:
        return tuple(int(s) for s in trainer_shapes[0])
    if isinstance(getattr(student, "in_features", None), int):
        return (student.in_features,)
    if getattr(student, "input_shape", None) is not None:
        return tuple(int(s) for s in student.input_shape)
    raise ConfigError(
        f"The input shape of a {type(student).__name__} is not known. Pass input_shape= the "
        "per-row shape, e.g. input_shape=(1, 28, 28), or sample= a few input rows."
    )


def _example(sample: Any, shape: tuple[int, ...]) -> torch.Tensor:
    if sample is None:
        generator = torch.Generator().manual_seed(0)
        return torch.rand((_N_CHECK_ROWS, *shape), generator=generator)
    tensor = (
        sample.detach().cpu().float()
        if torch.is_tensor(sample)
        else torch.from_numpy(np.ascontiguousarray(np.asarray(sample), dtype=np.float32))
    )
    if tuple(tensor.shape[1:]) != tuple(shape) or tensor.shape[0] < 1:
        raise DataError(
            f"sample has shape {tuple(tensor.shape)}; expected (n, {', '.join(map(str, shape))}) "
            "with n >= 1."
        )
    return tensor


def export(
    model: Any, path: str | os.PathLike[str], format: str = "onnx", **kwargs: Any
) -> OnnxExport:
    """Export ``model`` in ``format`` (only ``"onnx"`` today); see :func:`export_onnx`."""
    if format not in FORMATS:
        raise ConfigError(f"Unknown export format {format!r}; choose one of {list(FORMATS)}.")
    return export_onnx(model, path, **kwargs)


def export_command(
    run_dir: str | os.PathLike[str],
    format: str = "onnx",
    out: str | os.PathLike[str] | None = None,
    *,
    quantize: str | None = None,
    quantize_mode: str = "dynamic",
    tolerance: float | None = None,
    force: bool = False,
    echo: Any = print,
) -> OnnxExport:
    """``crosskd export RUN_DIR --format onnx --out FILE [--quantize int8]``: export the student
    of a run, and optionally an int8 copy checked on the run's validation rows.

    Args:
        run_dir: a folder written by ``crosskd distill`` (holding ``student.safetensors``), or the
            ``.safetensors`` bundle itself.
        format: ``"onnx"``.
        out: the file to write; None: ``RUN_DIR/student.onnx``.
        quantize: None, or ``"int8"``: also write ``<out stem>.int8.onnx`` with
            :func:`crosskd.quantize.quantize_onnx`, deciding on the run's validation rows (read
            again through its ``config.yaml``), reporting its test rows, and writing the
            measurements to ``<out stem>.int8.json``.
        quantize_mode: ``"dynamic"`` or ``"static"`` (calibrated on up to 2,000 training rows).
        tolerance: the largest validation metric loss allowed (None: the defaults of
            :data:`crosskd.quantize.TOLERANCES`).
        force: write the int8 file even when it loses more than the tolerance.
        echo: where to print the one-line summary.

    Returns:
        The :class:`OnnxExport`.
    """
    from . import load
    from .exceptions import BundleError

    if format not in FORMATS:
        raise ConfigError(f"--format {format!r} is not supported; choose one of {list(FORMATS)}.")
    if quantize not in (None, "int8"):
        raise ConfigError(f"--quantize {quantize!r} is not supported; the one choice is int8.")
    source = Path(run_dir)
    if not source.exists():
        raise BundleError(
            f"{source} does not exist. Give the `out` folder of a crosskd distill run, or a "
            ".safetensors student bundle."
        )
    folder = source if source.is_dir() else source.parent
    fitted = load(source)
    input_shape, sample = _run_inputs(folder, fitted)
    if out is None:
        out = folder / "student.onnx"
    result = export_onnx(fitted, out, input_shape=input_shape, sample=sample)
    inputs = ", ".join(f"{name} {_describe_input(result, name)}" for name in result.input_names)
    if result.alphabet is not None:
        frames = f"(n, frames, {len(result.alphabet['chars']) + 1})"
        checked = (
            f"onnxruntime reads the {len(sample)} test lines of the run as torch does"
            if sample is not None
            else "onnxruntime reads generated lines as torch does"
        )
        echo(
            f"wrote {result.path} (inputs: {inputs}; output: per-frame probabilities {frames}, "
            f"read with greedy CTC decoding); {checked}, probabilities within "
            f"{result.max_abs_diff:.1e}"
        )
    else:
        rows = f" on {len(sample)} test rows of the run" if sample is not None else ""
        echo(
            f"wrote {result.path} (inputs: {inputs}; output: probabilities (n, "
            f"{len(result.classes or ())}); onnxruntime matches torch within "
            f"{result.max_abs_diff:.1e}{rows})"
        )
    if quantize is not None:
        _quantize_run(result, folder, fitted, quantize_mode, tolerance, force, echo)
    return result


def _quantize_run(
    result: OnnxExport,
    folder: Path,
    fitted: Any,
    mode: str,
    tolerance: float | None,
    force: bool,
    echo: Any,
) -> None:
    """The int8 copy of an exported run, decided on the run's validation rows."""
    import numpy as np

    from ._atomic import write_text
    from .exceptions import CrossKDError
    from .pipeline import run_parts
    from .quantize import quantize_onnx

    if not (folder / "config.yaml").is_file():
        raise ConfigError(
            f"--quantize int8 decides on the run's validation rows, read again through "
            f"{folder / 'config.yaml'}, which does not exist. Export a crosskd distill run folder."
        )
    try:
        parts = run_parts(folder)
    except (CrossKDError, OSError) as err:
        raise ConfigError(
            f"--quantize int8 needs the run's data to decide on its validation rows, and it "
            f"could not be read again ({err}). Run it where the run's data is."
        ) from None
    alphabet = getattr(fitted, "alphabet_", None)
    classes = getattr(fitted, "classes_", None)

    def labels(y: Any) -> Any:
        if alphabet is not None or classes is None:
            return y  # text lines: the strings themselves
        return np.asarray(classes, dtype=object)[np.asarray(y, dtype=np.int64)]

    def rows(x: Any, n: int | None = None) -> Any:
        if n is not None:
            x = x.iloc[:n] if hasattr(x, "iloc") else x[:n]
        return x if hasattr(x, "iloc") else np.asarray(x, dtype=np.float32)

    report = quantize_onnx(
        result.path,
        validation=(rows(parts.val[0]), labels(parts.val[1])),
        test=(rows(parts.test[0]), labels(parts.test[1])),
        mode=mode,
        calibration=rows(parts.train[0], 2000) if mode == "static" else None,
        tolerance=tolerance,
        force=force,
        alphabet=None if alphabet is None else "".join(alphabet.chars),
    )
    target = Path(result.path).with_suffix("")
    write_text(target.with_name(target.name + ".int8.json"), json.dumps(report.to_dict(), indent=2))
    echo(report.summary())


def _run_inputs(folder: Path, fitted: Any) -> tuple[tuple[int, ...] | None, Any]:
    """(per-row input shape, test rows) of the run in ``folder``, for an image or text-line
    student: the shape from ``report.json`` (or the bundle's input geometry), the test rows read
    again through the run's ``config.yaml`` and split (None when the run's data is not there)."""
    student = getattr(fitted, "student_", None)
    if student is None or hasattr(student, "encoder"):  # tabular: generated rows check it
        return None, None
    shape = None
    report = folder / "report.json"
    if report.is_file():
        info = json.loads(report.read_text(encoding="utf-8"))
        shape = (info.get("data") or {}).get("input_shape") or info.get("input_shape")
    sample = None
    if (folder / "config.yaml").is_file():
        from .exceptions import CrossKDError
        from .pipeline import run_test_rows

        try:
            sample = run_test_rows(folder)[0]
        except (CrossKDError, OSError):
            sample = None  # the data moved: the check uses generated inputs
    if sample is not None and len(sample) > 256:
        sample = sample[:256]
    return (None if shape is None else tuple(int(v) for v in shape)), sample


def _describe_input(result: OnnxExport, name: str) -> str:
    if name == "numeric":
        return f"float32 (n, {len(result.numeric_columns)})"
    if name == "categorical":
        return f"int64 (n, {len(result.categorical_columns)})"
    return f"float32 (n, {', '.join(map(str, result.input_shape or ()))})"
