"""Turn a DataFrame (or a numeric array) into the tensors a tabular student reads.

:class:`TabularEncoder` follows the scikit-learn lifecycle: settings in ``__init__``, ``fit`` learns
the fitted state (attributes ending in ``_``), ``transform`` returns an :class:`EncodedTable`:

- numeric columns are robust-scaled, ``(x - median) / IQR`` (IQR 0: the standard deviation; that 0
  too: 1), clipped to ``[-clip, clip]`` (default 100); NaN becomes the median (0 after scaling), and
  every numeric column that had a NaN in training gets a 0/1 NaN-indicator column after the scaled
  columns. The clip was 10 until a real fraud table showed that a column that is 0 on most rows
  (a terminal's recent fraud rate: interquartile range 0, so scaled by its standard deviation)
  puts its riskiest rows, the signal, 10 to 16 deviations out: clipped at 10 they looked alike,
  and the distilled student lost 0.013-0.015 of average precision; on seven other real tables 100
  was level with 10 (``benchmarks/results/defaults_cli-clip.md``);
- categorical columns become integer indices into a per-column vocabulary learned in training;
  index 0 is reserved for missing values, categories rarer than ``min_frequency`` and categories
  never seen in training;
- ``integer_codes``: integer columns that may be codes (a region, a product, a branch number) are
  read both ways: as a scaled number and as a category. A tree teacher splits such a column
  into any set of its values; an MLP student reading only the scaled number cannot, and on a
  real table (Ecdat ``VietNamI``, 194 communes as integers) that cost the student 0.16 of average
  precision; with the category as well it matched its teacher.

Everything is vectorised with numpy / pandas (no Python loop over rows), so millions of rows encode in
seconds. The fitted state round-trips through JSON with :meth:`TabularEncoder.to_dict` and
:meth:`TabularEncoder.from_dict`, which is how student bundles store it (no pickle).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch

from ..exceptions import ConfigError, DataError, NotFittedError

__all__ = ["TabularEncoder", "EncodedTable", "MAX_CODES", "MIN_ROWS_PER_CODE"]

#: ``integer_codes="auto"``: an integer column with 3 to this many distinct values ...
MAX_CODES = 1000
#: ... and at least this many training rows per distinct value on average is read as codes too.
MIN_ROWS_PER_CODE = 5

#: Suffix of the name of a NaN-indicator output column (see ``numeric_feature_names_out_``).
NAN_INDICATOR_SUFFIX = "__isnan"
_FORMAT = "crosskd-tabular-encoder"
_FORMAT_VERSION = 1
# How category values are tagged in ``to_dict`` so that their python type comes back.
_DECODERS = {
    "str": str,
    "int": int,
    "float": float,
    "bool": lambda text: {"True": True, "False": False}[text],
}


class EncodedTable(NamedTuple):
    """The tensors of an encoded table, in the order a :class:`TabularStudent` reads them.

    Attributes:
        numeric: ``(n_rows, n_numeric_out)`` float32: scaled numeric columns, then NaN indicators.
        categorical: ``(n_rows, n_categorical)`` int64 category indices, 0 for unknown / missing
            (shape ``(n_rows, 0)`` when the table has no categorical column).
    """

    numeric: torch.Tensor
    categorical: torch.Tensor


class TabularEncoder:
    """Robust scaling for numeric columns, integer codes for categorical ones.

    Args:
        categorical: names of columns to treat as categorical (for example integer merchant ids).
            None: auto-detect, i.e. columns of dtype object, ``str``, ``category`` or bool. Columns
            that cannot be numbers (object, ``str``, ``category``) are categorical either way; a bool
            column not named here is then read as a 0/1 number.
        clip: scaled numeric values are clipped to ``[-clip, clip]`` so that outliers (a data
            error, an amount a thousand times the usual) cannot dominate a student's first layer.
            Real columns of the benchmarks reach 16 (fraud rates), 19 (breast cancer) and 42
            (digits) deviations; see the module docstring for why the default is not 10.
        min_frequency: a category seen fewer times than this in training shares index 0 with
            unknown and missing values.
        integer_codes: numeric columns that are also read as categories (each keeps its scaled
            number too): a list of names, ``"auto"`` (every column whose non-missing training
            values are all integers, with 3 to :data:`MAX_CODES` distinct values and at least
            :data:`MIN_ROWS_PER_CODE` rows per value on average), or None (none).

    Attributes (after ``fit``):
        feature_names_in_: input column names, in training order (``"x0", "x1", ...`` for an array).
        numeric_columns_: names of the numeric input columns.
        categorical_columns_: names of the categorical input columns (the ``code_columns_``
            last).
        code_columns_: the numeric columns also read as categories (``integer_codes``).
        nan_indicator_columns_: numeric columns that had a NaN in training (each gets an indicator).
        center_, scale_: per numeric column, the median and the robust scale.
        categories_: per categorical column, its vocabulary (``categories_[c][i - 1]`` has index i).
        cardinalities_: per categorical column, ``len(categories_[c]) + 1`` (the unknown bucket).
        n_numeric_out_: width of ``EncodedTable.numeric``.
        numeric_feature_names_out_: names of the columns of ``EncodedTable.numeric``.
        last_report_: what the last ``fit`` / ``transform`` met: NaN counts, unseen and missing
            categories, clipped values, ignored extra columns (a dict of plain ints and lists).

    Example:
        >>> enc = TabularEncoder().fit(train_df)
        >>> table = enc.transform(test_df)
        >>> table.numeric.shape, table.categorical.shape
        >>> print(enc.last_report_["unseen_categories"])
    """

    def __init__(
        self,
        categorical: Sequence[str] | None = None,
        clip: float = 100.0,
        min_frequency: int = 1,
        integer_codes: Sequence[str] | str | None = None,
    ) -> None:
        self.categorical = categorical
        self.clip = clip
        self.min_frequency = min_frequency
        self.integer_codes = integer_codes

    # ------------------------------------------------------------------ lifecycle

    @property
    def is_fitted(self) -> bool:
        """True once :meth:`fit` (or :meth:`from_dict`) has set the fitted state."""
        return hasattr(self, "feature_names_in_")

    def fit(self, X: pd.DataFrame | np.ndarray) -> TabularEncoder:
        """Learn column roles, scaling statistics and category vocabularies from ``X``.

        Args:
            X: a DataFrame, or a 2-D numeric array / tensor (its columns are named ``x0, x1, ...``).

        Returns:
            self.

        Raises:
            DataError: no rows or columns, ±inf in a numeric column, a datetime column, a category
                value of an unsupported type, or a name in ``categorical`` that is not a column.
            ConfigError: ``clip`` or ``min_frequency`` out of range.
        """
        clip, min_frequency = self._check_params()
        frame, from_array = _as_frame(X, None)
        if frame.shape[1] == 0:
            raise DataError("TabularEncoder.fit got a table with no columns; pass at least one.")
        if frame.shape[0] == 0:
            raise DataError("TabularEncoder.fit got 0 rows; pass the training rows to learn from.")
        names = list(frame.columns)
        forced = [] if self.categorical is None else [str(c) for c in self.categorical]
        unknown = [c for c in forced if c not in names]
        if unknown:
            raise DataError(
                f"categorical names columns {unknown} that are not in the data. "
                f"Columns are: {_preview(names)}. Fix the names or drop them from categorical."
            )
        categorical: list[str] = []
        numeric: list[str] = []
        for name in names:
            dtype = frame[name].dtype
            _refuse_datetime(name, dtype)
            if name in forced or _is_categorical_dtype(dtype, auto_bool=self.categorical is None):
                categorical.append(name)
            else:
                numeric.append(name)

        values = _numeric_matrix(frame, numeric, "fit")
        codes = self._code_columns(numeric, values)
        categorical += codes
        nan_mask = np.isnan(values)
        nan_counts = nan_mask.sum(axis=0)
        center = np.zeros(len(numeric))
        scale = np.ones(len(numeric))
        for j in range(len(numeric)):  # loop over columns, not rows
            column = values[:, j]
            if nan_counts[j] == len(column):
                continue  # all missing: center 0, scale 1
            q25, q50, q75 = np.nanpercentile(column, [25, 50, 75])
            spread = q75 - q25
            if not spread > 0:
                spread = float(np.nanstd(column))
            center[j] = q50
            scale[j] = spread if spread > 0 and math.isfinite(spread) else 1.0

        categories: dict[str, list[Any]] = {}
        for name in categorical:
            counts = frame[name].value_counts(dropna=True)
            kept = [
                _python_value(v, name) for v in counts.index[counts.to_numpy() >= min_frequency]
            ]
            categories[name] = sorted(kept, key=_sort_key)

        self.feature_names_in_ = names
        self.n_features_in_ = len(names)
        self.input_kind_ = "array" if from_array else "frame"
        self.numeric_columns_ = numeric
        self.categorical_columns_ = categorical
        self.code_columns_ = codes
        self.center_ = [float(v) for v in center]
        self.scale_ = [float(v) for v in scale]
        self.nan_indicator_columns_ = [n for n, k in zip(numeric, nan_counts, strict=True) if k > 0]
        self.categories_ = categories
        self._finish_fit()
        return self

    def _code_columns(self, numeric: list[str], values: np.ndarray) -> list[str]:
        """The numeric columns also read as categories (see ``integer_codes``)."""
        given = self.integer_codes
        if given is None:
            return []
        if isinstance(given, str) and given != "auto":
            raise ConfigError(
                f"integer_codes must be 'auto', a list of column names or None, got {given!r}. "
                f"For one column pass integer_codes=[{given!r}]."
            )
        if given != "auto":
            names = [str(c) for c in given]
            wrong = [c for c in names if c not in numeric]
            if wrong:
                raise DataError(
                    f"integer_codes names {wrong}, which are not numeric columns of the data. "
                    f"Numeric columns: {_preview(numeric)}."
                )
            return names
        found = []
        for j, name in enumerate(numeric):
            column = values[:, j]
            column = column[~np.isnan(column)]
            if len(column) == 0 or not np.all(column == np.round(column)):
                continue
            distinct = len(np.unique(column))
            if 3 <= distinct <= MAX_CODES and len(column) >= MIN_ROWS_PER_CODE * distinct:
                found.append(name)
        return found

    def _finish_fit(self) -> None:
        """Derived fitted state, shared by :meth:`fit` and :meth:`from_dict`."""
        self.cardinalities_ = [len(self.categories_[c]) + 1 for c in self.categorical_columns_]
        self.n_numeric_out_ = len(self.numeric_columns_) + len(self.nan_indicator_columns_)
        self.numeric_feature_names_out_ = list(self.numeric_columns_) + [
            n + NAN_INDICATOR_SUFFIX for n in self.nan_indicator_columns_
        ]
        self._vocab_index = {
            c: pd.Index(self.categories_[c], dtype=object) for c in self.categorical_columns_
        }
        self.last_report_: dict[str, Any] = {}

    def fit_transform(self, X: pd.DataFrame | np.ndarray) -> EncodedTable:
        """``fit(X).transform(X)`` (the report of the transform is kept in ``last_report_``)."""
        self.fit(X)
        return self.transform(X)

    def transform(self, X: pd.DataFrame | np.ndarray) -> EncodedTable:
        """Encode rows with the fitted state.

        DataFrame columns are selected by name, so their order does not matter; extra columns are
        ignored and listed in ``last_report_["extra_columns"]``.

        Args:
            X: a DataFrame with the training columns, or an array of width ``n_features_in_``
                whose columns are in training order.

        Returns:
            :class:`EncodedTable` ``(numeric (n, n_numeric_out_) float32,
            categorical (n, len(categorical_columns_)) int64)``, CPU tensors.

        Raises:
            NotFittedError: before :meth:`fit`.
            DataError: missing columns, an array of the wrong width, ±inf, or text in a column that
                was numeric in training.
        """
        self._check_fitted("transform")
        frame, _ = _as_frame(X, self.feature_names_in_)
        present = set(frame.columns)
        missing = [c for c in self.feature_names_in_ if c not in present]
        if missing:
            raise DataError(
                f"The data lacks {len(missing)} column(s) the encoder was fitted on: "
                f"{_preview(missing)}. Expected columns: {_preview(self.feature_names_in_)}; "
                f"received: {_preview(list(frame.columns))}. Add the missing columns (NaN is "
                "allowed for numeric ones) or refit the encoder."
            )
        wanted = set(self.feature_names_in_)
        extra = [c for c in frame.columns if c not in wanted]
        n = len(frame)

        values = _numeric_matrix(frame, self.numeric_columns_, "transform")
        nan_mask = np.isnan(values)
        # In place, column-major: ``values`` is ours (a fresh float64 copy).
        scaled = values
        np.subtract(scaled, np.asarray(self.center_), out=scaled)
        np.divide(scaled, np.asarray(self.scale_), out=scaled)
        clip = float(self.clip)
        clipped_counts = np.count_nonzero(scaled > clip, axis=0) + np.count_nonzero(
            scaled < -clip, axis=0
        )
        np.clip(scaled, -clip, clip, out=scaled)
        np.copyto(scaled, 0.0, where=nan_mask)
        numeric = np.empty((n, self.n_numeric_out_), dtype=np.float32)
        k = len(self.numeric_columns_)
        numeric[:, :k] = scaled
        position = {name: j for j, name in enumerate(self.numeric_columns_)}
        for i, name in enumerate(self.nan_indicator_columns_):
            numeric[:, k + i] = nan_mask[:, position[name]]

        codes = np.zeros((n, len(self.categorical_columns_)), dtype=np.int64)
        unseen: dict[str, int] = {}
        missing_values: dict[str, int] = {}
        for j, name in enumerate(self.categorical_columns_):
            index = _lookup(self._vocab_index[name], frame[name])
            is_missing = frame[name].isna().to_numpy()
            unseen[name] = int(((index < 0) & ~is_missing).sum())
            missing_values[name] = int(is_missing.sum())
            codes[:, j] = index + 1  # -1 (unknown or missing) becomes 0

        self.last_report_ = {
            "n_rows": n,
            "nan_counts": {
                c: int(v) for c, v in zip(self.numeric_columns_, nan_mask.sum(axis=0), strict=True)
            },
            "clipped_counts": {
                c: int(v) for c, v in zip(self.numeric_columns_, clipped_counts, strict=True)
            },
            "unseen_categories": unseen,
            "missing_categories": missing_values,
            "extra_columns": [str(c) for c in extra],
        }
        return EncodedTable(torch.from_numpy(numeric), torch.from_numpy(codes))

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        """The settings and fitted state as a JSON-safe dict (lists, floats, ints, strings).

        Category values are stored as strings with a type tag (``"str"``, ``"int"``, ``"float"``,
        ``"bool"``) so that :meth:`from_dict` gives back values of the original python type.
        """
        self._check_fitted("to_dict")
        return {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "params": {
                "categorical": None
                if self.categorical is None
                else [str(c) for c in self.categorical],
                "clip": float(self.clip),
                "min_frequency": int(self.min_frequency),
                "integer_codes": self.integer_codes
                if self.integer_codes in (None, "auto")
                else [str(c) for c in self.integer_codes],
            },
            "feature_names_in": list(self.feature_names_in_),
            "input_kind": self.input_kind_,
            "numeric_columns": list(self.numeric_columns_),
            "center": list(self.center_),
            "scale": list(self.scale_),
            "nan_indicator_columns": list(self.nan_indicator_columns_),
            "categorical_columns": list(self.categorical_columns_),
            "code_columns": list(self.code_columns_),
            "categories": {
                c: {
                    "types": [type(v).__name__ for v in self.categories_[c]],
                    "values": [str(v) for v in self.categories_[c]],
                }
                for c in self.categorical_columns_
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TabularEncoder:
        """A fitted encoder from the output of :meth:`to_dict`.

        Raises:
            ConfigError: ``d`` is not an encoder dict, or is inconsistent.
        """
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ConfigError(
                f"Expected a dict from TabularEncoder.to_dict() (format {_FORMAT!r}); received "
                f"{type(d).__name__} with format {d.get('format') if isinstance(d, dict) else None!r}."
            )
        if d.get("format_version", 0) > _FORMAT_VERSION:
            raise ConfigError(
                f"This encoder was saved in format version {d['format_version']}, newer than the "
                f"{_FORMAT_VERSION} this crosskd reads. Upgrade crosskd."
            )
        try:
            params = d["params"]
            enc = cls(
                params["categorical"],
                params["clip"],
                params["min_frequency"],
                params.get("integer_codes"),  # absent in encoders saved before it existed
            )
            enc.feature_names_in_ = [str(c) for c in d["feature_names_in"]]
            enc.n_features_in_ = len(enc.feature_names_in_)
            enc.input_kind_ = str(d["input_kind"])
            enc.numeric_columns_ = [str(c) for c in d["numeric_columns"]]
            enc.center_ = [float(v) for v in d["center"]]
            enc.scale_ = [float(v) for v in d["scale"]]
            enc.nan_indicator_columns_ = [str(c) for c in d["nan_indicator_columns"]]
            enc.categorical_columns_ = [str(c) for c in d["categorical_columns"]]
            enc.code_columns_ = [str(c) for c in d.get("code_columns", [])]
            enc.categories_ = {
                c: [
                    _DECODERS[t](v)
                    for t, v in zip(
                        d["categories"][c]["types"], d["categories"][c]["values"], strict=True
                    )
                ]
                for c in enc.categorical_columns_
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"The encoder dict is incomplete or corrupt ({type(exc).__name__}: {exc}). "
                "Recreate it with TabularEncoder.to_dict()."
            ) from None
        if not (len(enc.center_) == len(enc.scale_) == len(enc.numeric_columns_)):
            raise ConfigError(
                f"The encoder dict has {len(enc.numeric_columns_)} numeric columns but "
                f"{len(enc.center_)} centers and {len(enc.scale_)} scales; it is corrupt."
            )
        enc._finish_fit()
        return enc

    # ------------------------------------------------------------------ helpers

    def _check_params(self) -> tuple[float, int]:
        try:
            clip = float(self.clip)
        except (TypeError, ValueError):
            clip = float("nan")
        if not (clip > 0):
            raise ConfigError(
                f"clip must be a number > 0, got {self.clip!r}. The default is 100.0."
            )
        if isinstance(self.min_frequency, bool) or not isinstance(
            self.min_frequency, (int, np.integer)
        ):
            raise ConfigError(f"min_frequency must be an integer >= 1, got {self.min_frequency!r}.")
        if self.min_frequency < 1:
            raise ConfigError(
                f"min_frequency must be >= 1, got {self.min_frequency}; 1 keeps every category."
            )
        if isinstance(self.categorical, str):
            raise ConfigError(
                f"categorical must be a list of column names, got the string {self.categorical!r}. "
                f"Pass categorical=[{self.categorical!r}]."
            )
        return clip, int(self.min_frequency)

    def _check_fitted(self, method: str) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"TabularEncoder.{method} was called before fit. Call fit(X) (or fit_transform(X)) "
                "with the training data first."
            )

    def __repr__(self) -> str:
        state = (
            f", {len(self.numeric_columns_)} numeric, {len(self.categorical_columns_)} categorical"
            + (f" ({len(self.code_columns_)} of them integer codes)" if self.code_columns_ else "")
            if self.is_fitted
            else ", not fitted"
        )
        return (
            f"TabularEncoder(categorical={self.categorical!r}, clip={self.clip!r}, "
            f"min_frequency={self.min_frequency!r}, integer_codes={self.integer_codes!r}{state})"
        )


# ---------------------------------------------------------------------- module helpers


def _preview(names: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(repr(str(n)) for n in names[:limit])
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return f"[{shown}{more}]"


def _as_frame(X: Any, feature_names: list[str] | None) -> tuple[pd.DataFrame, bool]:
    """``X`` as a DataFrame with string column names; also whether it came from an array."""
    if isinstance(X, pd.DataFrame):
        names = [str(c) for c in X.columns]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise DataError(
                f"The DataFrame has duplicate column names {dupes}. Give every column a unique name."
            )
        if any(not isinstance(c, str) for c in X.columns):
            X = X.set_axis(names, axis=1)
        return X, False
    if isinstance(X, pd.Series):
        raise DataError(
            "TabularEncoder got a Series; it needs a 2-D table. Pass series.to_frame() for one "
            "column, or a DataFrame."
        )
    if torch.is_tensor(X):
        X = X.detach().cpu().numpy()
    if not isinstance(X, np.ndarray):
        raise DataError(
            f"TabularEncoder expects a pandas DataFrame or a 2-D numpy array, got {type(X).__name__}."
        )
    if X.ndim != 2:
        raise DataError(
            f"Expected a 2-D array (n_rows, n_columns), got shape {X.shape}. "
            "Use X.reshape(-1, 1) for a single column."
        )
    if feature_names is not None and X.shape[1] != len(feature_names):
        raise DataError(
            f"The array has {X.shape[1]} columns but the encoder was fitted on "
            f"{len(feature_names)}: {_preview(feature_names)}. Pass the same columns, in the same "
            "order, or a DataFrame with named columns."
        )
    if feature_names is None:
        if X.dtype.kind not in "biuf":
            raise DataError(
                f"A numpy array given to TabularEncoder must be numeric, got dtype {X.dtype}. "
                "Pass a DataFrame to use categorical (text) columns."
            )
        names = [f"x{j}" for j in range(X.shape[1])]
    else:
        names = list(feature_names)
    return pd.DataFrame(X, columns=names, copy=False), True


def _is_categorical_dtype(dtype: Any, auto_bool: bool) -> bool:
    if isinstance(dtype, (pd.CategoricalDtype, pd.StringDtype)):
        return True
    if pd.api.types.is_object_dtype(dtype):
        return True
    return auto_bool and pd.api.types.is_bool_dtype(dtype)


def _refuse_datetime(name: str, dtype: Any) -> None:
    if (
        pd.api.types.is_datetime64_any_dtype(dtype)
        or pd.api.types.is_timedelta64_dtype(dtype)
        or isinstance(dtype, pd.PeriodDtype)
    ):
        raise DataError(
            f"Column {name!r} has dtype {dtype}; the encoder takes numbers and categories, not "
            "dates or durations. Convert it to numbers (for example hour of day, seconds since an "
            f"event: df[{name!r}].dt.hour) or drop it."
        )


def _numeric_matrix(frame: pd.DataFrame, columns: list[str], stage: str) -> np.ndarray:
    """The numeric columns as one float64 ``(n, k)`` array, NaN for missing; refuses ±inf."""
    out = np.empty((len(frame), len(columns)), dtype=np.float64, order="F")
    for j, name in enumerate(columns):
        series = frame[name]
        _refuse_datetime(name, series.dtype)
        try:
            out[:, j] = series.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            raise DataError(
                f"Column {name!r} must be numeric but has dtype {series.dtype} with values that are "
                f"not numbers (during {stage}). Convert it with pd.to_numeric(df[{name!r}]), or pass "
                "it in categorical=[...] when fitting."
            ) from None
    infinite = np.isinf(out)
    if infinite.any():
        counts = infinite.sum(axis=0)
        bad = {name: int(c) for name, c in zip(columns, counts, strict=True) if c}
        first = next(iter(bad))
        raise DataError(
            f"Column {first!r} has {bad[first]} infinite value(s) (±inf) during {stage}"
            + (f"; infinite counts per column: {bad}" if len(bad) > 1 else "")
            + ". The encoder accepts finite numbers and NaN only. Replace them, e.g. "
            "df.replace([np.inf, -np.inf], np.nan), or drop those rows."
        )
    return out


def _python_value(value: Any, column: str) -> Any:
    """A category value as a plain python str / int / float / bool (what ``to_dict`` can tag)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (bool, int, float, str)):
        return value
    raise DataError(
        f"Column {column!r} holds a category value {value!r} of type {type(value).__name__}; "
        "categories must be str, int, float or bool. Convert the column, e.g. "
        f"df[{column!r}].astype(str)."
    )


def _sort_key(value: Any) -> tuple[str, Any]:
    # Sorted by type then value, so the vocabulary does not depend on row order.
    return (type(value).__name__, value)


def _lookup(vocabulary: pd.Index, series: pd.Series) -> np.ndarray:
    """Position of each value of ``series`` in ``vocabulary``, -1 when absent or missing."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        # Look up the few categories once, then index by the integer codes.
        category_index = vocabulary.get_indexer(series.cat.categories)
        codes = series.cat.codes.to_numpy()
        return np.where(codes >= 0, category_index[codes], -1)
    return vocabulary.get_indexer(series)
