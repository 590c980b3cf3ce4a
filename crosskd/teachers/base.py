"""The teacher protocol and the conversions that are easy to get wrong, written once.

Every teacher, whatever library it comes from, exposes one thing: :meth:`Teacher.logits`, a float32
``(n_samples, num_classes)`` tensor whose softmax is the teacher's class distribution. Temperature is
never applied here: :meth:`Teacher.soft_targets` calls :func:`crosskd.losses.soften`.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..exceptions import DataError
from ..losses import soften

__all__ = [
    "Teacher",
    "TeacherInfo",
    "binary_logits_from_margin",
    "logits_from_proba",
    "fingerprint",
    "num_rows",
    "align_features",
]

#: Smallest probability used when a probability is turned into a log-probability.
PROBA_EPS = 1e-12


@dataclass(frozen=True)
class TeacherInfo:
    """What a teacher is, so a trainer can check it against the data and the student.

    Attributes:
        num_classes: number of logits per row.
        classes: class labels in logit order (``classes[i]`` is the label of logit ``i``).
        kind: short name of the source library ("lightgbm", "sklearn", "torch", "precomputed", ...).
        feature_names: input column names in the order the model expects, when known.
        n_features: number of input features, when known.
        preprocessing: for image teachers, the expected input (mean, std, input_size, ...).
        extra: anything else worth reporting (objective, number of trees, ...).
    """

    num_classes: int
    classes: tuple[Any, ...]
    kind: str
    feature_names: tuple[str, ...] | None = None
    n_features: int | None = None
    preprocessing: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Teacher(ABC):
    """A model whose class distribution a student learns.

    Subclasses implement :meth:`_logits` (a float32 numpy array or tensor for a batch of rows) and set
    ``self.info``; batching, dtype and checks live here.
    """

    info: TeacherInfo
    #: rows per call of ``_logits`` in :meth:`logits`; None: all at once.
    batch_size: int | None = None

    @abstractmethod
    def _logits(self, X: Any) -> np.ndarray | torch.Tensor:
        """Logits for the rows of ``X`` (a slice of what the user passed)."""

    def logits(self, X: Any, batch_size: int | None = None) -> torch.Tensor:
        """Teacher logits for every row of ``X``.

        Args:
            X: rows in the form the source model takes (DataFrame, array, tensor, ...).
            batch_size: rows per call of the underlying model; default ``self.batch_size``.

        Returns:
            ``(n_samples, num_classes)`` float32 CPU tensor (``(n_samples, frames, num_classes)`` for
            sequence teachers).
        """
        n = num_rows(X)
        if n == 0:
            raise DataError(
                f"{type(self).__name__}.logits got 0 rows. Pass at least one row to score."
            )
        size = batch_size or self.batch_size or n
        parts = [
            _as_float_tensor(self._logits(_take(X, start, min(start + size, n))))
            for start in range(0, n, size)
        ]
        out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
        if out.shape[0] != n or out.shape[-1] != self.info.num_classes:
            raise DataError(
                f"{type(self).__name__} produced logits of shape {tuple(out.shape)} for {n} rows "
                f"and {self.info.num_classes} classes; expected ({n}, {self.info.num_classes})."
            )
        return out

    def soft_targets(self, X: Any, temperature: float = 1.0) -> torch.Tensor:
        """``softmax(logits / T)``: the teacher's class distribution at temperature T."""
        return torch.softmax(soften(self.logits(X), temperature), dim=-1)

    def predict_proba(self, X: Any) -> np.ndarray:
        """The teacher's class probabilities (T = 1) as a float64 numpy array."""
        return self.soft_targets(X, 1.0).double().numpy()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(kind={self.info.kind!r}, num_classes={self.info.num_classes})"
        )


def binary_logits_from_margin(
    margin: np.ndarray | torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    """Exact two-class logits of a model whose positive-class probability is ``sigmoid(scale * m)``.

    ``softmax([0, scale * m]) == [1 - sigmoid(scale * m), sigmoid(scale * m)]`` exactly, so the
    logits ``[0, scale * m]`` reproduce the model's probabilities with no clipping and no loss of
    precision near 0 or 1 (LightGBM's binary objective: ``scale`` is its ``sigmoid`` parameter).

    Args:
        margin: ``(n,)`` raw scores.
        scale: the sigmoid's slope.

    Returns:
        ``(n, 2)`` float32 tensor.
    """
    m = torch.as_tensor(
        np.asarray(margin, dtype=np.float64) if not torch.is_tensor(margin) else margin
    )
    m = m.double().reshape(-1) * float(scale)
    return torch.stack([torch.zeros_like(m), m], dim=1).float()


def logits_from_proba(proba: np.ndarray | torch.Tensor, eps: float = PROBA_EPS) -> torch.Tensor:
    """``log(clip(proba, eps, 1))``: logits whose softmax gives back ``proba`` (up to the clip).

    Args:
        proba: ``(n, num_classes)`` probabilities whose rows sum to 1.
        eps: lower clip, so that a probability of exactly 0 gives a finite logit.

    Returns:
        ``(n, num_classes)`` float32 tensor.
    """
    p = torch.as_tensor(
        np.asarray(proba, dtype=np.float64) if not torch.is_tensor(proba) else proba
    )
    p = p.double()
    if p.ndim != 2:
        raise DataError(
            f"Probabilities must be 2-D (n_samples, num_classes); got shape {tuple(p.shape)}."
        )
    return torch.log(p.clamp(min=eps, max=1.0)).float()


def num_rows(X: Any) -> int:
    """Number of rows of a DataFrame, array, tensor, sequence, or tuple of arrays (first one's)."""
    if isinstance(X, tuple) and X and hasattr(X[0], "shape"):
        return int(X[0].shape[0])
    if hasattr(X, "shape"):
        if len(X.shape) == 0:
            raise DataError("Got a scalar where rows of data were expected.")
        return int(X.shape[0])
    if isinstance(X, Sequence):
        return len(X)
    raise DataError(
        f"Cannot count the rows of a {type(X).__name__}. Pass a pandas DataFrame, a numpy array or a "
        "torch tensor."
    )


def align_features(
    X: Any, feature_names: Sequence[str] | None, n_features: int | None, owner: str
) -> Any:
    """Check the columns of ``X`` against what a tabular model expects, and put them in its order.

    A DataFrame is matched by column name when ``feature_names`` is given: columns are reordered to
    the model's order and extra columns are dropped. Without names (or for arrays and tensors) only
    the number of columns is checked.

    Args:
        X: ``(n_samples, n_columns)`` DataFrame, array or tensor.
        feature_names: the model's input names in its order, or None when it has none.
        n_features: the number of inputs the model expects, or None when unknown.
        owner: who is asking, for the error message (e.g. "LightGBMTeacher").

    Returns:
        ``X`` itself, or a DataFrame view with the model's columns in the model's order.

    Raises:
        DataError: columns the model needs are missing, or the number of columns is wrong.
    """
    if hasattr(X, "columns") and hasattr(X, "iloc"):
        if feature_names:
            by_name = {str(c): c for c in X.columns}
            missing = [f for f in feature_names if f not in by_name]
            if missing:
                shown = ", ".join(repr(m) for m in missing[:10])
                more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
                raise DataError(
                    f"{owner}: the DataFrame lacks {len(missing)} of the {len(feature_names)} "
                    f"columns the model was trained on: {shown}{more}. Got columns "
                    f"{[str(c) for c in X.columns][:20]}. Pass a DataFrame with every training "
                    "column (extra columns are ignored, order does not matter)."
                )
            wanted = [by_name[f] for f in feature_names]
            if list(X.columns) != wanted:
                X = X[wanted]
            return X
        n_cols = X.shape[1]
    else:
        shape = tuple(getattr(X, "shape", ()))
        if len(shape) != 2:
            raise DataError(
                f"{owner} expects 2-D input (n_samples, n_features); got shape {shape}. "
                "Reshape a single row with x.reshape(1, -1)."
            )
        n_cols = shape[1]
    if n_features is not None and n_cols != n_features:
        raise DataError(
            f"{owner}: the model expects {n_features} features, got {n_cols}. Pass the columns "
            "the model was trained on, in the same order (or a DataFrame with the same names)."
        )
    return X


def _take(X: Any, start: int, stop: int) -> Any:
    if start == 0 and stop == num_rows(X):
        return X
    if isinstance(X, tuple) and X and hasattr(X[0], "shape"):
        return tuple(_take(x, start, stop) for x in X)
    if hasattr(X, "iloc"):
        return X.iloc[start:stop]
    return X[start:stop]


def _as_float_tensor(values: np.ndarray | torch.Tensor) -> torch.Tensor:
    if torch.is_tensor(values):
        return values.detach().to("cpu", torch.float32)
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


def fingerprint(X: Any) -> str:
    """A short, stable hash of the rows of ``X`` (values, shape, and column names when present).

    Used to tie precomputed or cached teacher logits to the exact rows they were computed for. Equal
    data gives equal fingerprints across processes and machines; any changed value, row order or
    column order gives a different one.

    Returns:
        A 16-hex-digit string.
    """
    h = hashlib.blake2b(digest_size=8)
    if hasattr(X, "columns") and hasattr(X, "iloc"):
        h.update(repr([str(c) for c in X.columns]).encode())
        h.update(repr(X.shape).encode())
        for name in X.columns:
            col = X[name]
            h.update(str(col.dtype).encode())
            values = col.to_numpy()
            if values.dtype.kind in "biufcmM":
                h.update(np.ascontiguousarray(values).tobytes())
            else:
                h.update(
                    "\x1f".join("\x00" if v is None or v != v else str(v) for v in values).encode()
                )
        return h.hexdigest()
    if torch.is_tensor(X):
        X = X.detach().cpu().numpy()
    if isinstance(X, tuple):
        for part in X:
            h.update(fingerprint(part).encode())
        return h.hexdigest()
    arr = np.asarray(X)
    h.update(str(arr.dtype).encode())
    h.update(repr(arr.shape).encode())
    if arr.dtype.kind in "biufcmM":
        h.update(np.ascontiguousarray(arr).tobytes())
    else:
        h.update("\x1f".join(str(v) for v in arr.reshape(-1)).encode())
    return h.hexdigest()
