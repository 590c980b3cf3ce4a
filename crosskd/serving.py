"""Score rows with a trained tabular student in microseconds: numpy only, no torch, no pandas.

:class:`Scorer` reads a student bundle (``Distiller.save`` / ``crosskd distill``) or takes a fitted
:class:`~crosskd.Distiller`, and reproduces, in numpy, what ``Distiller.predict_proba`` computes:

- the encoder's transform (:class:`~crosskd.tabular.TabularEncoder`): robust scaling
  ``(x - median) / scale`` in float64, clipping to ``[-clip, clip]``, NaN as the median (0) plus the
  NaN indicators the student was trained with, categorical values looked up in the training
  vocabularies (0 for missing, rare or unseen values), one embedding per categorical column;
- the network (:class:`~crosskd.tabular.MLP`): linear layers, ReLU, batch norm folded into the next
  layer (eval mode), dropout skipped; the softmax in float64.

Probabilities agree with ``Distiller.predict_proba`` to about 1e-7 (float32 rounding), and bad
rows raise the same :class:`~crosskd.exceptions.DataError` messages as the DataFrame path.

How a call is computed:

- **one row** (a 1-D numpy row, a dict, a one-row DataFrame or 2-D array): the scaling is folded
  into the first layer (``W / scale``), the clip is applied to the raw values, and the network runs
  in float64 on one vector, about a dozen numpy calls in all;
- **several rows**: the encoder's float64 scaling, then the network in float32 like torch; from
  ``onnx_min_rows`` rows on, the network runs in a cached onnxruntime session (fused Gemm + ReLU
  kernels) when onnxruntime and onnx are installed, else in numpy.

This module imports only numpy, json and safetensors' numpy loader (and crosskd's exceptions):
scoring arrays or dicts needs neither torch nor pandas nor the teacher's library. A DataFrame is
read through its own methods (pandas is loaded already when you have one).

Example:
    >>> from crosskd.serving import Scorer
    >>> scorer = Scorer.load("runs/fraud")          # folder of crosskd distill, or the .safetensors
    >>> scorer.predict_proba({"TX_AMOUNT": 57.2, ...})   # (1, 2) float64
    >>> scorer.predict_proba(rows)                  # (n, k) array in training order, or a DataFrame
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import BundleError, ConfigError, DataError, NotFittedError

__all__ = ["Scorer", "BACKENDS"]

#: Values of ``Scorer(backend=...)``.
BACKENDS = ("auto", "numpy", "onnxruntime")
_BUNDLE_KEY = "crosskd"
_BUNDLE_FORMAT = "crosskd-student"
_BUNDLE_VERSION = 1
_ENCODER_FORMAT = "crosskd-tabular-encoder"
_BN_EPS = 1e-5  # torch.nn.BatchNorm1d's default, which crosskd's MLP uses
_FLOAT64 = np.dtype(np.float64)
_isfinite, _exp = math.isfinite, math.exp
_maximum, _minimum = np.maximum, np.minimum
_DECODERS = {
    "str": str,
    "int": int,
    "float": float,
    "bool": lambda text: {"True": True, "False": False}[text],
}


def _preview(names: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(repr(str(n)) for n in names[:limit])
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return f"[{shown}{more}]"


# ------------------------------------------------------------------------------ bundle reading


def _read_bundle(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The crosskd header and the tensors (numpy) of a bundle; never unpickles anything."""
    target = Path(path)
    if target.is_dir():
        target = target / "student.safetensors"
    if not target.exists() and not target.name.endswith(".safetensors"):
        target = target.with_name(target.name + ".safetensors")
    if not target.is_file():
        raise BundleError(
            f"No student bundle at {target}. Pass the .safetensors file written by Distiller.save, "
            "or the --out folder of crosskd distill (it holds student.safetensors)."
        )
    data = target.read_bytes()
    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not 2 <= size <= len(data) - 8:
        raise BundleError(
            f"{target} is not a safetensors file (its first 8 bytes do not give a valid header "
            "length). Save the student with Distiller.save; pickle files are never loaded."
        )
    try:
        header = json.loads(data[8 : 8 + size])
        info = json.loads(header["__metadata__"][_BUNDLE_KEY])
    except (ValueError, KeyError, TypeError):
        raise BundleError(
            f"{target} is not a crosskd student bundle (no readable {_BUNDLE_KEY!r} metadata). "
            "Bundles are written by Distiller.save or crosskd distill."
        ) from None
    if not isinstance(info, dict) or info.get("format") != _BUNDLE_FORMAT:
        raise BundleError(
            f"{target} has crosskd metadata of an unknown format; expected a student."
        )
    version = info.get("format_version")
    if not isinstance(version, int) or version > _BUNDLE_VERSION:
        raise BundleError(
            f"{target} was written in bundle format version {version!r}; this crosskd reads "
            f"version {_BUNDLE_VERSION}. Upgrade crosskd."
        )
    from safetensors.numpy import load

    try:
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own error types (bf16 has no numpy dtype)
        raise BundleError(
            f"{target}: safetensors could not read the tensors as numpy arrays ({exc}). A student "
            "saved in bfloat16 must be saved again in float32 to be served without torch."
        ) from None
    return info, tensors


# ------------------------------------------------------------------------------ the network


def _mlp_layers(
    cfg: Mapping[str, Any], tensors: Mapping[str, np.ndarray], prefix: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(weight (in, out) float64, bias (out,))]`` of a crosskd MLP, batch norm folded in.

    ``MLP`` blocks are ``Linear, ReLU, [BatchNorm1d], [Dropout]``; a ReLU follows every layer but
    the last. A batch norm after a ReLU is an affine map ``a * h + c`` in eval mode, folded into
    the next linear layer: ``W' = diag(a) W``, ``b' = b + c W``.
    """
    hidden = [int(h) for h in cfg.get("hidden", ())]
    batch_norm = bool(cfg.get("batch_norm", False))
    dropout = float(cfg.get("dropout", 0.0) or 0.0)
    block = 2 + int(batch_norm) + int(dropout > 0)

    def tensor(name: str) -> np.ndarray:
        key = prefix + name
        if key not in tensors:
            raise BundleError(
                f"The bundle lacks the tensor {key!r} that its config implies; it is corrupt or "
                "was written by an incompatible crosskd version."
            )
        return np.asarray(tensors[key], dtype=np.float64)

    layers: list[tuple[np.ndarray, np.ndarray]] = []
    pending: tuple[np.ndarray, np.ndarray] | None = None  # batch norm to fold into the next layer
    names = [f"layers.{i * block}." for i in range(len(hidden))] + ["head."]
    for i, name in enumerate(names):
        weight = tensor(name + "weight").T.copy()  # (in, out)
        bias = tensor(name + "bias")
        if pending is not None:
            scale, shift = pending
            bias = bias + shift @ weight
            weight = weight * scale[:, None]
            pending = None
        layers.append((weight, bias))
        if batch_norm and i < len(hidden):
            bn = f"layers.{i * block + 2}."
            mean, var = tensor(bn + "running_mean"), tensor(bn + "running_var")
            gamma, beta = tensor(bn + "weight"), tensor(bn + "bias")
            scale = gamma / np.sqrt(var + _BN_EPS)
            pending = (scale, beta - mean * scale)
    return layers


class _OnnxNetwork:
    """The float32 network (features -> logits) in an onnxruntime session, built on first use."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]], threads: int) -> None:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper

        nodes, inits = [], []
        h = "features"
        for i, (weight, bias) in enumerate(layers):
            inits += [
                numpy_helper.from_array(weight.astype(np.float32), f"w{i}"),
                numpy_helper.from_array(bias.astype(np.float32), f"b{i}"),
            ]
            out = "logits" if i == len(layers) - 1 else f"h{i}"
            nodes.append(helper.make_node("Gemm", [h, f"w{i}", f"b{i}"], [out]))
            if i < len(layers) - 1:
                nodes.append(helper.make_node("Relu", [out], [f"r{i}"]))
                out = f"r{i}"
            h = out
        graph = helper.make_graph(
            nodes,
            "crosskd_scorer",
            [
                helper.make_tensor_value_info(
                    "features", TensorProto.FLOAT, ["n", layers[0][0].shape[0]]
                )
            ],
            [
                helper.make_tensor_value_info(
                    "logits", TensorProto.FLOAT, ["n", layers[-1][0].shape[1]]
                )
            ],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = min(model.ir_version, 9)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        del onnx

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"features": features})[0]


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, ``(n, C)``; two classes as a sigmoid of the logit gap."""
    if logits.shape[1] == 2:
        # sigmoid(l1 - l0) with both tails exact: e = exp(-|d|), big = 1 / (1 + e), small = e * big
        d = np.subtract(logits[:, 1], logits[:, 0], dtype=np.float64)
        e = np.abs(d)
        np.negative(e, out=e)
        np.exp(e, out=e)
        big = e + 1.0
        np.reciprocal(big, out=big)
        e *= big
        positive = d >= 0
        out = np.empty(logits.shape, dtype=np.float64)
        np.copyto(out[:, 1], np.where(positive, big, e))
        np.copyto(out[:, 0], np.where(positive, e, big))
        return out
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


# ------------------------------------------------------------------------------ the scorer


class Scorer:
    """A numpy-only scorer for a trained tabular student (``TabularStudent`` or plain ``MLP``).

    Build it with :meth:`load` (a bundle or run folder) or :meth:`from_distiller` (a fitted
    Distiller); the constructor is internal. A Scorer is read-only after construction and can be
    shared between threads.

    Args (of :meth:`load` and :meth:`from_distiller`):
        backend: ``"auto"`` (numpy, and onnxruntime for batches of ``onnx_min_rows`` rows or more
            when onnx and onnxruntime are installed), ``"numpy"`` (never onnxruntime) or
            ``"onnxruntime"`` (onnxruntime for every batch of 2 rows or more; an error when it is
            not installed).
        threads: onnxruntime intra-op threads (numpy's BLAS threads are set by
            ``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` before numpy is imported).
        onnx_min_rows: batch size from which ``"auto"`` uses onnxruntime.

    Attributes:
        classes_: class labels, the columns of :meth:`predict_proba`.
        feature_names_in_: the input columns, in training order (a 2-D array's columns).
        numeric_columns_, categorical_columns_: the encoder's column roles (tabular students).
        student_class: ``"TabularStudent"`` or ``"MLP"``.
    """

    def __init__(
        self,
        info: Mapping[str, Any],
        tensors: Mapping[str, np.ndarray],
        *,
        backend: str = "auto",
        threads: int = 1,
        onnx_min_rows: int = 256,
        source: str = "the student",
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {list(BACKENDS)}, got {backend!r}.")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"threads must be an integer >= 1, got {threads!r}.")
        if (
            isinstance(onnx_min_rows, bool)
            or not isinstance(onnx_min_rows, int)
            or onnx_min_rows < 2
        ):
            raise ConfigError(f"onnx_min_rows must be an integer >= 2, got {onnx_min_rows!r}.")
        self.backend, self.threads, self.onnx_min_rows = backend, threads, onnx_min_rows
        name = info.get("student_class")
        cfg = info.get("student_config") or {}
        meta = info.get("metadata") or {}
        if name not in ("TabularStudent", "MLP"):
            raise BundleError(
                f"{source} is a {name}; Scorer serves tabular students (TabularStudent, MLP). "
                "Score other students with crosskd.load(path).predict_proba, or export them with "
                "crosskd export and run the .onnx file."
            )
        self.student_class = name
        num_classes = cfg.get("num_classes")
        self.classes_ = tuple(meta.get("classes") or range(int(num_classes or 0)))
        if name == "TabularStudent":
            enc = cfg.get("encoder")
            if not isinstance(enc, dict) or enc.get("format") != _ENCODER_FORMAT:
                raise NotFittedError(f"{source} has no fitted encoder; train it before serving.")
            self._init_encoder(enc)
            layers = _mlp_layers(
                {"hidden": cfg.get("hidden", ()), "dropout": cfg.get("dropout", 0.0)},
                tensors,
                "mlp.",
            )
            self._embeddings = [
                np.asarray(tensors[f"embeddings.{j}.weight"], dtype=np.float32)
                for j in range(len(self.categorical_columns_))
            ]
            widths = [e.shape[1] for e in self._embeddings]
            if [e.shape[0] for e in self._embeddings] != self._cardinalities:
                raise BundleError(f"{source}: embedding tables do not match the vocabularies.")
        else:
            self._tabular = False
            n_in = int(cfg["in_features"])
            self.feature_names_in_ = [f"x{j}" for j in range(n_in)]
            self.numeric_columns_, self.categorical_columns_ = list(self.feature_names_in_), []
            self._n_in, widths, self._embeddings = n_in, [], []
            self._all_numeric = True
            layers = _mlp_layers(cfg, tensors, "")
        if len(self.classes_) != layers[-1][0].shape[1]:
            raise BundleError(
                f"{source} stores {len(self.classes_)} classes but its network has "
                f"{layers[-1][0].shape[1]} outputs; the bundle is corrupt."
            )
        self._layers32 = [(w.astype(np.float32), b.astype(np.float32)) for w, b in layers]
        self._onnx: _OnnxNetwork | None = None
        self._frame_cache: tuple[Any, Any] = (None, None)
        self._pandas_columns: Any = None
        # One-row path: float64, scaling folded into the first layer, clip applied to raw values.
        w1, b1 = layers[0]
        k = len(self.numeric_columns_)
        if self._tabular:
            center, scale = np.asarray(self.center_), np.asarray(self.scale_)
            w_num = w1[:k] / scale[:, None]
            b1 = b1 - center @ w_num
            self._lo, self._hi = center - self.clip * scale, center + self.clip * scale
            start = k + len(self.nan_indicator_columns_)
            self._emb_weights = []
            for width in widths:
                self._emb_weights.append(w1[start : start + width])
                start += width
            self._embeddings64 = [e.astype(np.float64) for e in self._embeddings]
            w1 = w_num
        self._row_first = (np.ascontiguousarray(w1), b1)
        self._row_rest = [
            (np.zeros(layers[i - 1][0].shape[1]), layers[i][0], layers[i][1])
            for i in range(1, len(layers))
        ]
        self._binary = len(self.classes_) == 2
        if self._tabular:
            self._center, self._scale = np.asarray(self.center_), np.asarray(self.scale_)
            self._clip32 = np.float32(self.clip)
            self._width = k + len(self._ind_pos) + sum(widths)
        # The shape of a 1-D float64 row that goes straight to the one-row path.
        self._row_shape = (self._n_in,) if self._all_numeric else (-1,)
        self._row_shape_2d = (1, self._n_in) if self._all_numeric else (-1,)

    def _init_encoder(self, d: Mapping[str, Any]) -> None:
        self._tabular = True
        try:
            self.feature_names_in_ = [str(c) for c in d["feature_names_in"]]
            self.numeric_columns_ = [str(c) for c in d["numeric_columns"]]
            self.center_ = [float(v) for v in d["center"]]
            self.scale_ = [float(v) for v in d["scale"]]
            self.nan_indicator_columns_ = [str(c) for c in d["nan_indicator_columns"]]
            self.categorical_columns_ = [str(c) for c in d["categorical_columns"]]
            self.clip = float(d["params"]["clip"])
            categories = {
                c: [
                    _DECODERS[t](v)
                    for t, v in zip(
                        d["categories"][c]["types"], d["categories"][c]["values"], strict=True
                    )
                ]
                for c in self.categorical_columns_
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(
                f"The student's encoder is incomplete or corrupt ({type(exc).__name__}: {exc})."
            ) from None
        self.categories_ = categories
        self._n_in = len(self.feature_names_in_)
        self._cardinalities = [len(categories[c]) + 1 for c in self.categorical_columns_]
        # Values equal in Python (1, 1.0, True) share one entry, as in a pandas index lookup.
        self._vocab = []
        for c in self.categorical_columns_:
            table: dict[Any, int] = {}
            for i, value in enumerate(categories[c]):
                table.setdefault(value, i + 1)
            self._vocab.append(table)
        position = {n: j for j, n in enumerate(self.feature_names_in_)}
        self._num_pos = np.asarray([position[c] for c in self.numeric_columns_], dtype=np.intp)
        self._cat_pos = [position[c] for c in self.categorical_columns_]
        num_position = {n: j for j, n in enumerate(self.numeric_columns_)}
        self._ind_pos = np.asarray(
            [num_position[c] for c in self.nan_indicator_columns_], dtype=np.intp
        )
        # A numpy row in training order is all numeric, in encoder order: the fast row path.
        self._all_numeric = not self.categorical_columns_

    # ------------------------------------------------------------------ constructors

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        backend: str = "auto",
        threads: int = 1,
        onnx_min_rows: int = 256,
    ) -> Scorer:
        """A Scorer from a bundle written by ``Distiller.save`` or ``crosskd distill``.

        Args:
            path: the ``.safetensors`` file, or a run folder holding ``student.safetensors``.
            backend, threads, onnx_min_rows: see the class.

        Raises:
            BundleError: the file is missing, not a bundle, or holds a non-tabular student.
        """
        info, tensors = _read_bundle(path)
        return cls(
            info,
            tensors,
            backend=backend,
            threads=threads,
            onnx_min_rows=onnx_min_rows,
            source=str(path),
        )

    @classmethod
    def from_distiller(
        cls, distiller: Any, *, backend: str = "auto", threads: int = 1, onnx_min_rows: int = 256
    ) -> Scorer:
        """A Scorer from a fitted :class:`~crosskd.Distiller` (or one from :func:`crosskd.load`).

        The weights are copied; later training of the Distiller does not change the Scorer.

        Raises:
            NotFittedError: the Distiller is not fitted.
            BundleError: its student is not tabular.
        """
        inner = getattr(distiller, "distiller_", None)  # a fitted KDClassifier
        distiller = inner if inner is not None else distiller
        student = getattr(distiller, "student_", None)
        if student is None:
            raise NotFittedError(
                "Scorer.from_distiller needs a fitted Distiller: call fit(X, y) or crosskd.load "
                "first."
            )
        student = getattr(student, "_orig_mod", getattr(student, "module", student))
        tensors = {
            key: value.detach().cpu().float().numpy()
            for key, value in student.state_dict().items()
            if value.is_floating_point()
        }
        info = {
            "student_class": type(student).__name__,
            "student_config": student.config(),
            "metadata": {"classes": list(distiller.classes_)},
        }
        return cls(info, tensors, backend=backend, threads=threads, onnx_min_rows=onnx_min_rows)

    # ------------------------------------------------------------------ public

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, ``(n_rows, n_classes)`` float64, columns in ``classes_`` order.

        Args:
            X: one row (a 1-D array in training column order, or a dict ``{column: value}``), or
                rows: a 2-D array ``(n, n_features)`` in training order, a list of dicts, or a
                DataFrame (columns by name, any order, extra ones ignored).

        Returns:
            The same numbers as ``Distiller.predict_proba`` (within float32 rounding, ~1e-7).

        Raises:
            DataError: what the DataFrame path raises: missing columns, an array of the wrong
                width, text in a numeric column, ±inf (tabular students), NaN or ±inf (MLP).
        """
        if type(X) is np.ndarray and X.dtype is _FLOAT64:
            shape = X.shape
            if shape == self._row_shape:
                return self._row(X)
            if shape == self._row_shape_2d:
                return self._row(X[0])
        if isinstance(X, Mapping):
            return self._from_dict(X)
        module = type(X).__module__
        if module.startswith("pandas"):
            return self._from_frame(X)
        if module.startswith("torch"):
            X = X.detach().cpu().numpy()
        elif isinstance(X, (list, tuple)) and X and isinstance(X[0], Mapping):
            return self._from_records(X)
        return self._from_array(X)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class label of each row, ``(n_rows,)`` (object array of labels)."""
        proba = self.predict_proba(X)
        return np.asarray(self.classes_, dtype=object)[proba.argmax(axis=1)]

    def __repr__(self) -> str:
        return (
            f"Scorer({self.student_class}, {len(self.numeric_columns_)} numeric, "
            f"{len(self.categorical_columns_)} categorical, classes={list(self.classes_)}, "
            f"backend={self.backend!r})"
        )

    # ------------------------------------------------------------------ one row

    def _row(self, x: np.ndarray, codes: Sequence[int] | None = None) -> np.ndarray:
        """Probabilities ``(1, C)`` of one row: ``x`` the raw numeric values (float64, encoder
        order), ``codes`` the category codes. Falls back to the batch path for NaN / inf."""
        # NaN or inf anywhere (or an overflow of the check): the exact batch path decides.
        if not _isfinite(x.dot(x)):
            return self._encoded(x[None, :], None if codes is None else np.asarray([codes]))
        first, rest = self._row_first, self._row_rest
        if self._tabular:
            x = _maximum(_minimum(x, self._hi), self._lo)
        h = x.dot(first[0]) + first[1]
        if codes is not None:
            for table, w, code in zip(self._embeddings64, self._emb_weights, codes, strict=True):
                h += table[code].dot(w)
        for zeros, weight, bias in rest:
            h = _maximum(h, zeros).dot(weight) + bias
        if self._binary:
            a, b = h.tolist()
            if a >= b:
                e = _exp(b - a)
                p0 = 1.0 / (1.0 + e)
                return np.array([[p0, e * p0]])
            e = _exp(a - b)
            p1 = 1.0 / (1.0 + e)
            return np.array([[e * p1, p1]])
        return _softmax(h[None, :])

    # ------------------------------------------------------------------ inputs

    def _from_array(self, X: Any) -> np.ndarray:
        try:
            arr = np.asarray(X)
        except ValueError:
            raise DataError(
                "X is ragged (rows of different lengths); pass a 2-D array (n_samples, n_features)."
            ) from None
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise DataError(
                f"Expected a 2-D array (n_rows, n_columns) or one row, got shape {arr.shape}. "
                "Use X.reshape(1, -1) for one row."
            )
        if arr.shape[1] != self._n_in:
            if self._tabular:
                raise DataError(
                    f"The array has {arr.shape[1]} columns but the encoder was fitted on "
                    f"{self._n_in}: {_preview(self.feature_names_in_)}. Pass the same columns, in "
                    "the same order, or a DataFrame with named columns."
                )
            raise DataError(
                f"X gives the student inputs of per-row shape [{arr.shape[1:]}], but it was "
                f"trained on [({self._n_in},)]. Pass rows with the same columns as the training "
                "rows, in the same order."
            )
        if not self._tabular:
            if arr.dtype.kind not in "biuf":
                raise DataError(
                    f"X must be numeric for MLP, got dtype {arr.dtype}. Convert it, or use "
                    "crosskd.TabularStudent for tables with text columns."
                )
            num = np.ascontiguousarray(arr, dtype=np.float64)
            if len(num) == 1:
                return self._row(num[0])
            return self._encoded(num, None)
        if self._all_numeric and arr.dtype.kind in "biuf":
            num = np.ascontiguousarray(arr, dtype=np.float64)
            if len(num) == 1:
                return self._row(num[0])
            return self._encoded(num, None)
        num = self._numeric_from_columns(
            [arr[:, j] for j in self._num_pos],
            self.numeric_columns_,
            [arr.dtype] * len(self._num_pos),
        )
        codes = np.zeros((len(arr), len(self._cat_pos)), dtype=np.int64)
        for j, (table, pos) in enumerate(zip(self._vocab, self._cat_pos, strict=True)):
            codes[:, j] = self._lookup_values(
                table, arr[:, pos].tolist(), self.categorical_columns_[j]
            )
        if len(num) == 1:
            return self._row(num[0], codes[0].tolist())
        return self._encoded(num, codes)

    def _missing_columns(self, received: Sequence[Any], missing: Sequence[str]) -> DataError:
        return DataError(
            f"The data lacks {len(missing)} column(s) the encoder was fitted on: "
            f"{_preview(missing)}. Expected columns: {_preview(self.feature_names_in_)}; "
            f"received: {_preview(list(received))}. Add the missing columns (NaN is allowed for "
            "numeric ones) or refit the encoder."
        )

    def _from_dict(self, row: Mapping[str, Any]) -> np.ndarray:
        try:
            values = [row[name] for name in self.numeric_columns_]
            cats = [row[name] for name in self.categorical_columns_]
        except KeyError:
            missing = [c for c in self.feature_names_in_ if c not in row]
            raise self._missing_columns(list(row), missing) from None
        try:
            x = np.array(values, dtype=np.float64)
        except (TypeError, ValueError):
            x = self._numeric_from_columns(
                [[v] for v in values], self.numeric_columns_, [None] * len(values)
            )[0]
        if not self._tabular:
            return self._row(x)
        codes = None
        if cats:
            codes = [
                self._lookup_values(table, [v], name)[0]
                for table, v, name in zip(self._vocab, cats, self.categorical_columns_, strict=True)
            ]
        return self._row(x, codes)

    def _from_records(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        n = len(rows)
        columns: list[list[Any]] = [[] for _ in self.feature_names_in_]
        for row in rows:
            if not isinstance(row, Mapping):
                raise DataError(
                    f"A list of rows must hold dicts only; got a {type(row).__name__} among them."
                )
            try:
                for j, name in enumerate(self.feature_names_in_):
                    columns[j].append(row[name])
            except KeyError:
                missing = [c for c in self.feature_names_in_ if c not in row]
                raise self._missing_columns(list(row), missing) from None
        position = {name: j for j, name in enumerate(self.feature_names_in_)}
        numeric = [columns[position[c]] for c in self.numeric_columns_]
        num = self._numeric_from_columns(numeric, self.numeric_columns_, [None] * len(numeric))
        codes = np.zeros((n, len(self.categorical_columns_)), dtype=np.int64)
        for j, name in enumerate(self.categorical_columns_):
            codes[:, j] = self._lookup_values(self._vocab[j], columns[position[name]], name)
        if n == 1:
            return self._row(num[0], codes[0].tolist() if self.categorical_columns_ else None)
        return self._encoded(num, codes if self.categorical_columns_ else None)

    def _from_frame(self, frame: Any) -> np.ndarray:
        if not hasattr(frame, "columns"):
            raise DataError(
                "Scorer got a Series; it needs rows. Pass dict(series) for one row, or a DataFrame."
            )
        if not self._tabular:
            raise DataError(
                "This MLP student takes arrays, but X is a DataFrame. Pass "
                "X.to_numpy(dtype='float32'), or train a crosskd.TabularStudent to score "
                "DataFrames."
            )
        columns = frame.columns
        # Frames cut from one table share their column labels' array: the plan is reused.
        key = getattr(columns, "array", columns)
        cached, plan = self._frame_cache
        if cached is not key:
            plan = self._frame_plan(frame)
            self._frame_cache = (key, plan)
        if plan is None and len(frame.index) == 1:
            # The columns are the training columns, in order, all numeric: one float64 row.
            row = _numeric_row(frame, self._n_in)
            if row is not None:
                return self._row(row)
        positions = self._frame_positions(frame) if plan is None else plan
        n = frame.shape[0]
        get = _column_getter(frame)
        num = self._numeric_from_columns(
            [get(positions[c]) for c in self.numeric_columns_],
            self.numeric_columns_,
            None,
        )
        codes = np.zeros((n, len(self.categorical_columns_)), dtype=np.int64)
        for j, name in enumerate(self.categorical_columns_):
            codes[:, j] = _frame_lookup(self.categories_[name], get(positions[name]))
        if n == 1:
            return self._row(num[0], codes[0].tolist() if self.categorical_columns_ else None)
        return self._encoded(num, codes if self.categorical_columns_ else None)

    def _frame_plan(self, frame: Any) -> dict[str, int] | None:
        """None when the columns are exactly the training columns in order and all numeric (the
        fast one-row path); otherwise the position of each training column."""
        if self._all_numeric and len(frame.columns) == self._n_in:
            if self._pandas_columns is None:
                self._pandas_columns = sys.modules["pandas"].Index(self.feature_names_in_)
            if frame.columns.equals(self._pandas_columns):
                return None
        return self._frame_positions(frame)

    def _frame_positions(self, frame: Any) -> dict[str, int]:
        names = [str(c) for c in frame.columns]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise DataError(
                f"The DataFrame has duplicate column names {dupes}. Give every column a unique name."
            )
        position = {n: j for j, n in enumerate(names)}
        missing = [c for c in self.feature_names_in_ if c not in position]
        if missing:
            raise self._missing_columns(names, missing)
        return {c: position[c] for c in self.feature_names_in_}

    # ------------------------------------------------------------------ encoding

    @staticmethod
    def _numeric_from_columns(
        columns: Sequence[Any], names: Sequence[str], dtypes: Sequence[Any] | None
    ) -> np.ndarray:
        """``(n, k)`` float64 from per-column values (arrays, lists or pandas Series)."""
        n = len(columns[0]) if columns else 0
        out = np.empty((n, len(columns)), dtype=np.float64, order="F")
        for j, (name, values) in enumerate(zip(names, columns, strict=True)):
            dtype = getattr(values, "dtype", None) if dtypes is None else dtypes[j]
            kind = getattr(dtype, "kind", "")
            if kind in ("M", "m") or type(dtype).__name__ == "PeriodDtype":
                raise DataError(
                    f"Column {name!r} has dtype {dtype}; the encoder takes numbers and "
                    "categories, not dates or durations. Convert it to numbers (for example hour "
                    f"of day, seconds since an event: df[{name!r}].dt.hour) or drop it."
                )
            try:
                if hasattr(values, "to_numpy"):
                    out[:, j] = values.to_numpy(dtype=np.float64, na_value=np.nan)
                else:
                    out[:, j] = np.asarray(
                        [np.nan if v is None else v for v in values], dtype=np.float64
                    )
            except (TypeError, ValueError):
                shown = dtype if dtype is not None else _value_types(values)
                raise DataError(
                    f"Column {name!r} must be numeric but has dtype {shown} with values that are "
                    f"not numbers (during transform). Convert it with pd.to_numeric(df[{name!r}]), "
                    "or pass it in categorical=[...] when fitting."
                ) from None
        return out

    @staticmethod
    def _lookup_values(table: Mapping[Any, int], values: Sequence[Any], name: str) -> list[int]:
        try:
            return [table.get(v, 0) for v in values]
        except TypeError:
            bad = next(v for v in values if not _hashable(v))
            raise DataError(
                f"Column {name!r} holds a category value {bad!r:.60} of type "
                f"{type(bad).__name__}; categories must be str, int, float or bool. Convert it."
            ) from None

    def _encoded(self, num: np.ndarray, codes: np.ndarray | None) -> np.ndarray:
        """Probabilities of raw numeric values ``(n, k)`` float64 and category codes ``(n, m)``."""
        if not self._tabular:
            finite = np.isfinite(num)
            if not finite.all():
                n_nan = int(np.isnan(num).sum())
                n_inf = int((~finite).sum()) - n_nan
                first = tuple(int(i) for i in np.argwhere(~finite)[0])
                raise DataError(
                    f"X has {n_nan} NaN and {n_inf} infinite value(s) (first at index {first}); "
                    "MLP takes finite numbers only. Impute or drop them, or use "
                    "crosskd.TabularStudent, which encodes NaN with a missing-value indicator."
                )
            return self._network(num.astype(np.float32))
        n, k = num.shape
        nan = None
        if not np.isfinite(num).all():
            nan = np.isnan(num)
            infinite = np.isinf(num)
            if infinite.any():
                counts = infinite.sum(axis=0)
                bad = {c: int(v) for c, v in zip(self.numeric_columns_, counts, strict=True) if v}
                first = next(iter(bad))
                raise DataError(
                    f"Column {first!r} has {bad[first]} infinite value(s) (±inf) during transform"
                    + (f"; infinite counts per column: {bad}" if len(bad) > 1 else "")
                    + ". The encoder accepts finite numbers and NaN only. Replace them, e.g. "
                    "df.replace([np.inf, -np.inf], np.nan), or drop those rows."
                )
        features = np.empty((n, self._width), dtype=np.float32)
        # (x - center) / scale in float64 as the encoder computes it, rounded once to float32;
        # the clip commutes with that rounding (float32 rounding is monotonic, ±clip is exact).
        scaled = num - self._center
        np.divide(scaled, self._scale, out=features[:, :k], casting="same_kind")
        if nan is not None:
            features[:, :k][nan] = 0.0
        view = features[:, :k]
        np.minimum(view, self._clip32, out=view)
        np.maximum(view, -self._clip32, out=view)
        start = k
        if len(self._ind_pos):
            features[:, k : k + len(self._ind_pos)] = 0.0 if nan is None else nan[:, self._ind_pos]
            start += len(self._ind_pos)
        for j, table in enumerate(self._embeddings):
            features[:, start : start + table.shape[1]] = table[codes[:, j]]
            start += table.shape[1]
        return self._network(features)

    def _network(self, features: np.ndarray) -> np.ndarray:
        n = features.shape[0]
        use_onnx = self.backend == "onnxruntime" or (
            self.backend == "auto" and n >= self.onnx_min_rows
        )
        if use_onnx and n > 0:
            if self._onnx is None:
                try:
                    self._onnx = _OnnxNetwork(self._layers32, self.threads)
                except ImportError as err:
                    if self.backend == "onnxruntime":
                        raise ConfigError(
                            f"backend='onnxruntime' needs onnx and onnxruntime ({err.name} is "
                            'missing). Install them with: pip install "crosskd[onnx]", or use '
                            "backend='numpy'."
                        ) from None
                    self.backend = "numpy"  # remembered: do not retry the import every call
            if self._onnx is not None:
                return _softmax(self._onnx(np.ascontiguousarray(features)))
        h = features
        last = len(self._layers32) - 1
        for i, (weight, bias) in enumerate(self._layers32):
            h = h.dot(weight)
            h += bias
            if i < last:
                np.maximum(h, 0.0, out=h)
        return _softmax(h)


# ---------------------------------------------------------------------------------- helpers


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _value_types(values: Sequence[Any]) -> str:
    kinds = sorted({type(v).__name__ for v in values if v is not None})
    return "object (values of type " + ", ".join(kinds) + ")"


def _numeric_row(frame: Any, width: int) -> np.ndarray | None:
    """The one row of an all-numeric DataFrame as float64 ``(width,)``, or None when it is not
    plain numbers (nullable, text or category columns: the caller takes the general path).

    Reads pandas' column blocks directly (a few microseconds, where ``to_numpy`` interleaves
    blocks of several dtypes in about 15 us); falls back to ``to_numpy`` when those internals are
    not there.
    """
    try:
        blocks = frame._mgr.blocks
        if len(blocks) == 1 and _in_order(blocks[0]):
            values = blocks[0].values
            if type(values) is np.ndarray and values.dtype is _FLOAT64:
                return values[:, 0]
        row = np.empty(width)
        for block in blocks:
            values = block.values
            if type(values) is not np.ndarray or values.dtype.kind not in "fiub":
                return None
            row[block.mgr_locs.indexer] = values[:, 0]
        return row
    except (AttributeError, IndexError, TypeError, ValueError):
        values = frame.to_numpy()
        return values[0] if values.dtype == np.float64 else None


def _in_order(block: Any) -> bool:
    indexer = block.mgr_locs.indexer
    return isinstance(indexer, slice) and indexer.start in (0, None) and indexer.step in (1, None)


def _column_getter(frame: Any) -> Any:
    """``get(j)``: column ``j`` of a DataFrame as a Series (positional, duplicates allowed)."""
    fast = getattr(frame, "_ixs", None)
    if fast is not None:  # pandas' positional column accessor, much cheaper than iloc
        return lambda j: fast(j, axis=1)
    return lambda j: frame.iloc[:, j]


def _frame_lookup(categories: list[Any], series: Any) -> np.ndarray:
    """Codes of a pandas Series as the encoder assigns them (``1 + position``, 0 unknown)."""
    pandas = sys.modules["pandas"]
    vocabulary = pandas.Index(categories, dtype=object)
    if isinstance(series.dtype, pandas.CategoricalDtype):
        category_index = vocabulary.get_indexer(series.cat.categories)
        codes = series.cat.codes.to_numpy()
        index = np.where(codes >= 0, category_index[codes], -1)
    else:
        index = vocabulary.get_indexer(series)
    return index + 1
