"""Small PyTorch students for tabular data.

- :class:`MLP`: ``Linear - ReLU (- BatchNorm) (- Dropout)`` blocks and a linear head; input is a float
  matrix, output is logits.
- :class:`TabularStudent`: a :class:`~crosskd.tabular.encoder.TabularEncoder`, one embedding per
  categorical column and an :class:`MLP` on ``[numeric, embeddings]``. Its layers are sized by
  :meth:`TabularStudent.build` from the data, so the user gives only the shape of the network.

Both describe themselves with ``config()`` (a JSON-safe dict) and come back with
``from_config(cfg)`` plus ``load_state_dict``: that is how :mod:`crosskd.io` saves them, without pickle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..exceptions import ConfigError, DataError, NotFittedError
from .encoder import TabularEncoder

__all__ = ["MLP", "TabularStudent"]

#: Largest embedding width chosen automatically (``embedding_dim=None``).
MAX_AUTO_EMBEDDING_DIM = 16


def _check_hidden(hidden: Sequence[int], owner: str) -> tuple[int, ...]:
    if isinstance(hidden, (int, np.integer)) and not isinstance(hidden, bool):
        hidden = (int(hidden),)
    try:
        sizes = tuple(hidden)
    except TypeError:
        sizes = (None,)
    if not all(
        isinstance(h, (int, np.integer)) and not isinstance(h, bool) and h > 0 for h in sizes
    ):
        raise ConfigError(
            f"{owner} hidden must be a sequence of layer widths > 0, e.g. (64, 32), got {hidden!r}. "
            "Pass () for no hidden layer (a linear model)."
        )
    return tuple(int(h) for h in sizes)


def _check_dropout(dropout: float, owner: str) -> float:
    try:
        value = float(dropout)
    except (TypeError, ValueError):
        value = float("nan")
    if not (0.0 <= value < 1.0):
        raise ConfigError(f"{owner} dropout must be in [0, 1), got {dropout!r}.")
    return value


def _check_num_classes(num_classes: Any, owner: str) -> int:
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, (int, np.integer))
        or num_classes < 2
    ):
        raise ConfigError(
            f"{owner} num_classes must be an integer >= 2 (binary tasks use 2 logits), got "
            f"{num_classes!r}."
        )
    return int(num_classes)


class MLP(nn.Module):
    """A multilayer perceptron: ``[Linear - ReLU (- BatchNorm1d) (- Dropout)] * k - Linear``.

    Args:
        in_features: width of the input.
        num_classes: number of output logits (>= 2).
        hidden: widths of the hidden layers; ``()`` gives a linear model.
        dropout: dropout probability after each hidden block (0: none).
        batch_norm: add ``BatchNorm1d`` after each hidden ReLU.

    Shapes:
        ``forward(x)``: ``(batch, in_features)`` float -> ``(batch, num_classes)`` logits.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (64, 32),
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if (
            isinstance(in_features, bool)
            or not isinstance(in_features, (int, np.integer))
            or in_features < 1
        ):
            raise ConfigError(f"MLP in_features must be an integer >= 1, got {in_features!r}.")
        self.in_features = int(in_features)
        self.num_classes = _check_num_classes(num_classes, "MLP")
        self.hidden = _check_hidden(hidden, "MLP")
        self.dropout = _check_dropout(dropout, "MLP")
        self.batch_norm = bool(batch_norm)
        blocks: list[nn.Module] = []
        width = self.in_features
        for size in self.hidden:
            blocks += [nn.Linear(width, size), nn.ReLU()]
            if self.batch_norm:
                blocks.append(nn.BatchNorm1d(size))
            if self.dropout > 0:
                blocks.append(nn.Dropout(self.dropout))
            width = size
        self.layers = nn.Sequential(*blocks)
        self.head = nn.Linear(width, self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch, num_classes)`` for ``x`` of shape ``(batch, in_features)``."""
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise DataError(
                f"MLP expects input of shape (batch, {self.in_features}), got {tuple(x.shape)}."
            )
        return self.head(self.layers(x))

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def config(self) -> dict[str, Any]:
        """The constructor arguments as a JSON-safe dict (``MLP.from_config`` inverts it)."""
        return {
            "in_features": self.in_features,
            "num_classes": self.num_classes,
            "hidden": list(self.hidden),
            "dropout": self.dropout,
            "batch_norm": self.batch_norm,
        }

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> MLP:
        """A new MLP (fresh weights) from :meth:`config`'s output."""
        _check_keys(cfg, {"in_features", "num_classes", "hidden", "dropout", "batch_norm"}, "MLP")
        missing = sorted({"in_features", "num_classes"} - set(cfg))
        if missing:
            raise ConfigError(f"MLP.from_config needs the keys {missing}; received {sorted(cfg)}.")
        return cls(**cfg)


class TabularStudent(nn.Module):
    """A DataFrame-to-logits student: encoder, categorical embeddings and an MLP.

    The network is sized by :meth:`build` (called by ``Distiller.fit``): the encoder is fitted on the
    training data (unless it already is), each categorical column gets an ``nn.Embedding``, and the
    MLP reads ``[numeric, embedding_1, ..., embedding_k]``.

    Args:
        hidden: widths of the MLP's hidden layers.
        dropout: dropout probability after each hidden block.
        embedding_dim: width of every categorical embedding; None: ``min(16, (cardinality + 1) // 2)``
            per column.
        num_classes: number of logits; None: given by :meth:`build` (from the teacher).
        encoder: a :class:`TabularEncoder`, fitted or not; None: ``TabularEncoder()``.

    Shapes:
        ``encode(X)`` -> ``(numeric (n, n_numeric_out) float32, categorical (n, n_cat) int64)``;
        ``forward(numeric, categorical)`` -> ``(n, num_classes)`` logits.

    Example:
        >>> student = TabularStudent(hidden=(32, 16)).build(train_df, num_classes=2)
        >>> logits = student(*student.encode(test_df))
    """

    def __init__(
        self,
        hidden: Sequence[int] = (32, 16),
        dropout: float = 0.0,
        embedding_dim: int | None = None,
        num_classes: int | None = None,
        encoder: TabularEncoder | None = None,
    ) -> None:
        super().__init__()
        self.hidden = _check_hidden(hidden, "TabularStudent")
        self.dropout = _check_dropout(dropout, "TabularStudent")
        if embedding_dim is not None and (
            isinstance(embedding_dim, bool)
            or not isinstance(embedding_dim, (int, np.integer))
            or embedding_dim < 1
        ):
            raise ConfigError(
                f"TabularStudent embedding_dim must be an integer >= 1 or None (automatic), got "
                f"{embedding_dim!r}."
            )
        self.embedding_dim = None if embedding_dim is None else int(embedding_dim)
        self.num_classes = (
            None if num_classes is None else _check_num_classes(num_classes, "TabularStudent")
        )
        if encoder is not None and not isinstance(encoder, TabularEncoder):
            raise ConfigError(
                f"TabularStudent encoder must be a TabularEncoder, got {type(encoder).__name__}."
            )
        self.encoder = encoder if encoder is not None else TabularEncoder()
        self.embeddings: nn.ModuleList | None = None
        self.mlp: MLP | None = None

    # ------------------------------------------------------------------ building

    @property
    def is_built(self) -> bool:
        """True once :meth:`build` has created the layers."""
        return self.mlp is not None

    def build(
        self, X: pd.DataFrame | np.ndarray | None, num_classes: int | None = None
    ) -> TabularStudent:
        """Fit the encoder on ``X`` (unless already fitted) and create the layers, fresh weights.

        Args:
            X: training rows (DataFrame or 2-D array); may be None when the encoder is fitted.
            num_classes: number of logits, usually the teacher's; None: the ``num_classes`` given
                to the constructor.

        Returns:
            self.

        Raises:
            DataError: ``num_classes`` differs from the one given to the constructor.
            ConfigError: no ``num_classes`` anywhere, or no data for an unfitted encoder.
        """
        if num_classes is None:
            if self.num_classes is None:
                raise ConfigError(
                    "TabularStudent.build needs num_classes (the teacher's number of classes); "
                    "pass build(X, num_classes=K) or TabularStudent(num_classes=K)."
                )
            num_classes = self.num_classes
        k = _check_num_classes(num_classes, "TabularStudent")
        if self.num_classes is not None and self.num_classes != k:
            raise DataError(
                f"The teacher has {k} classes but the student was created with "
                f"num_classes={self.num_classes}. Give the student num_classes={k}."
            )
        if not self.encoder.is_fitted:
            if X is None:
                raise ConfigError(
                    "TabularStudent.build(X=None) needs a fitted encoder; pass the training data X."
                )
            self.encoder.fit(X)
        self.num_classes = k
        dims = [self._embedding_width(c) for c in self.encoder.cardinalities_]
        self.embeddings = nn.ModuleList(
            nn.Embedding(card, dim)
            for card, dim in zip(self.encoder.cardinalities_, dims, strict=True)
        )
        self.mlp = MLP(self.encoder.n_numeric_out_ + sum(dims), k, self.hidden, self.dropout)
        return self

    def _embedding_width(self, cardinality: int) -> int:
        if self.embedding_dim is not None:
            return self.embedding_dim
        return max(1, min(MAX_AUTO_EMBEDDING_DIM, (cardinality + 1) // 2))

    def _check_built(self, method: str) -> None:
        if not self.is_built:
            raise NotFittedError(
                f"TabularStudent.{method} was called before the student was built. Call "
                "student.build(X, num_classes) or Distiller.fit first."
            )

    # ------------------------------------------------------------------ data path

    def encode(self, X: pd.DataFrame | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode rows with the fitted encoder.

        Returns:
            ``(numeric, categorical)``: ``(n, n_numeric_out)`` float32 and ``(n, n_categorical)``
            int64 CPU tensors, the inputs of :meth:`forward`. What the encoder met (unseen
            categories, NaN) is in ``student.encoder.last_report_``.
        """
        self._check_built("encode")
        table = self.encoder.transform(X)
        return table.numeric, table.categorical

    def forward(
        self, numeric: torch.Tensor, categorical: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits for encoded rows.

        Args:
            numeric: ``(batch, n_numeric_out)`` float.
            categorical: ``(batch, n_categorical)`` int64 indices (None when there are no
                categorical columns).

        Returns:
            ``(batch, num_classes)`` logits (bf16 under a bf16 autocast, else float32).
        """
        self._check_built("forward")
        n_cat = len(self.embeddings)
        if categorical is None:
            if n_cat:
                raise DataError(
                    f"This student has {n_cat} categorical column(s); call "
                    "forward(numeric, categorical) with both tensors from encode(X)."
                )
            categorical = numeric.new_zeros((numeric.shape[0], 0), dtype=torch.long)
        n_num = self.encoder.n_numeric_out_
        if numeric.ndim != 2 or numeric.shape[1] != n_num:
            raise DataError(
                f"numeric must have shape (batch, {n_num}), got {tuple(numeric.shape)}. "
                "Use the tensors returned by student.encode(X)."
            )
        if categorical.ndim != 2 or categorical.shape != (numeric.shape[0], n_cat):
            raise DataError(
                f"categorical must have shape ({numeric.shape[0]}, {n_cat}), got "
                f"{tuple(categorical.shape)}. Use the tensors returned by student.encode(X)."
            )
        if n_cat == 0:
            return self.mlp(numeric.float())
        if categorical.device.type == "cpu" and categorical.numel():
            # Cheap on CPU; on a GPU an out-of-range index would be a device-side assert.
            too_big = categorical >= categorical.new_tensor(self.encoder.cardinalities_)
            if bool(too_big.any()) or bool((categorical < 0).any()):
                raise DataError(
                    "categorical holds indices outside the embedding tables (cardinalities "
                    f"{self.encoder.cardinalities_}). Use the tensors returned by student.encode(X)."
                )
        parts = [numeric.float()] + [
            embedding(categorical[:, j]) for j, embedding in enumerate(self.embeddings)
        ]
        return self.mlp(torch.cat(parts, dim=1))

    # ------------------------------------------------------------------ description

    def num_parameters(self) -> int:
        """Number of trainable parameters (embeddings included)."""
        self._check_built("num_parameters")
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild the student, as a JSON-safe dict.

        ``TabularStudent.from_config(student.config())`` is the same network with fresh weights;
        load the weights with ``load_state_dict`` (what :func:`crosskd.io.load_bundle` does).
        """
        return {
            "hidden": list(self.hidden),
            "dropout": self.dropout,
            "embedding_dim": self.embedding_dim,
            "num_classes": self.num_classes,
            "encoder": self.encoder.to_dict() if self.encoder.is_fitted else None,
        }

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> TabularStudent:
        """A student from :meth:`config`'s output: built (fresh weights) when the config holds a
        fitted encoder and ``num_classes``, otherwise unbuilt."""
        _check_keys(
            cfg, {"hidden", "dropout", "embedding_dim", "num_classes", "encoder"}, "TabularStudent"
        )
        encoder = None if cfg.get("encoder") is None else TabularEncoder.from_dict(cfg["encoder"])
        student = cls(
            hidden=cfg.get("hidden", (32, 16)),
            dropout=cfg.get("dropout", 0.0),
            embedding_dim=cfg.get("embedding_dim"),
            num_classes=cfg.get("num_classes"),
            encoder=encoder,
        )
        if encoder is not None and student.num_classes is not None:
            student.build(None)
        return student

    def extra_repr(self) -> str:
        if not self.is_built:
            return "not built: call build(X, num_classes)"
        return (
            f"{len(self.encoder.numeric_columns_)} numeric, "
            f"{len(self.encoder.categorical_columns_)} categorical columns, "
            f"num_classes={self.num_classes}"
        )


def _check_keys(cfg: Any, allowed: set[str], owner: str) -> None:
    if not isinstance(cfg, dict):
        raise ConfigError(f"{owner}.from_config expects a dict, got {type(cfg).__name__}.")
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ConfigError(
            f"{owner}.from_config got unknown keys {unknown}; allowed keys are {sorted(allowed)}."
        )
