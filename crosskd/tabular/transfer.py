"""Transfer sets: unlabelled rows for a teacher to label, so that a student sees more of its function.

A student distilled only on the training rows learns the teacher where the data is; extra rows near
the data (labelled by the teacher, never by hand) show it the teacher's decision surface in between.
Two generators, both vectorised and seeded:

- :func:`munge` (Bucilua, Caruana, Niculescu-Mizil, *Model Compression*, KDD 2006): each synthetic
  row starts from a real row and, attribute by attribute with probability ``p``, takes the value of
  the row's nearest neighbour; a continuous value taken over is also perturbed by a normal draw of
  standard deviation ``|a - b| / s``.
- :func:`jitter`: each synthetic row is a real row with Gaussian noise on its continuous columns,
  scaled per column (a simple baseline for MUNGE).

Both return rows in the input's own form (a DataFrame with its columns and dtypes, or an array), so
the teacher and the student take them as they take the training rows::

    synthetic = crosskd.munge(X_train, n_samples=len(X_train), seed=0)
    Distiller(teacher, student).fit(X_train, y_train, transfer=synthetic)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import ConfigError, DataError

__all__ = ["munge", "jitter"]


def _check_n_samples(n_samples: Any) -> int:
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ConfigError(
            f"n_samples must be a positive integer (the number of synthetic rows), got "
            f"{n_samples!r}. Use e.g. n_samples=len(X)."
        )
    return int(n_samples)


def _check_probability(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not 0.0 <= v <= 1.0:
        raise ConfigError(f"{name} must be a probability in [0, 1], got {value!r}.")
    return v


def _as_table(X: Any, what: str) -> tuple[pd.DataFrame, bool]:
    """``X`` as a DataFrame, and whether it came as an array (so the result goes back as one)."""
    if isinstance(X, pd.DataFrame):
        frame, from_array = X, False
    else:
        if hasattr(X, "detach"):  # a torch tensor
            X = X.detach().cpu().numpy()
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise DataError(
                f"{what} takes a 2-D table (n_rows, n_columns) as a DataFrame or array; got shape "
                f"{arr.shape}. Reshape a single row with x.reshape(1, -1)."
            )
        if arr.dtype.kind not in "biuf":
            raise DataError(
                f"{what} takes a numeric array or a DataFrame; got an array of dtype {arr.dtype}. "
                "Pass a DataFrame to mix numeric and categorical columns."
            )
        frame, from_array = pd.DataFrame(arr), True
    if frame.shape[0] < 2:
        raise DataError(
            f"{what} needs at least 2 real rows to draw from (a row and a neighbour); got "
            f"{frame.shape[0]}."
        )
    if frame.shape[1] == 0:
        raise DataError(f"{what} got a table with no columns; pass at least one column.")
    return frame, from_array


def _column_roles(
    frame: pd.DataFrame, categorical: Sequence[Any] | None, max_discrete: int, what: str
) -> tuple[list[Any], list[Any]]:
    """Split the columns into continuous ones and categorical / discrete ones.

    A column is categorical when named in ``categorical``, or when it is not numeric (object,
    string, category, bool), or (with ``categorical=None``) when it is an integer column with at
    most ``max_discrete`` distinct values (flags, small counts): such a column is only ever swapped,
    never perturbed, so it keeps the values seen in ``X``.
    """
    names = list(frame.columns)
    forced = list(categorical) if categorical is not None else []
    unknown = [c for c in forced if c not in names]
    if unknown:
        raise DataError(
            f"{what}: categorical names columns {unknown} that are not in the data (columns: "
            f"{names[:20]}). Fix the names or drop them from categorical."
        )
    continuous, discrete = [], []
    for name in names:
        column = frame[name]
        dtype = column.dtype
        if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
            raise DataError(
                f"{what}: column {name!r} holds dates ({dtype}); convert it to numbers (for "
                "example seconds since an origin) or drop it."
            )
        if (
            name in forced
            or not pd.api.types.is_numeric_dtype(dtype)
            or pd.api.types.is_bool_dtype(dtype)
        ):
            discrete.append(name)
        elif (
            categorical is None
            and pd.api.types.is_integer_dtype(dtype)
            and column.nunique(dropna=True) <= max_discrete
        ):
            discrete.append(name)
        else:
            continuous.append(name)
    return continuous, discrete


def _continuous_matrix(frame: pd.DataFrame, columns: list[Any], what: str) -> np.ndarray:
    if not columns:
        return np.zeros((len(frame), 0))
    values = frame[columns].to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.isfinite(values[~np.isnan(values)]).all():
        raise DataError(
            f"{what}: the continuous columns hold infinite values; replace them (or drop those "
            "rows) first."
        )
    return values


def _robust_scale(values: np.ndarray) -> np.ndarray:
    """Per column: the interquartile range, else the standard deviation, else 1 (NaN ignored)."""
    if values.shape[1] == 0:
        return np.ones(0)
    with np.errstate(all="ignore"):
        q25, q75 = np.nanpercentile(values, [25, 75], axis=0)
        scale = q75 - q25
        std = np.nanstd(values, axis=0)
    scale = np.where(scale > 0, scale, std)
    return np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)


def _codes(frame: pd.DataFrame, columns: list[Any]) -> np.ndarray:
    """Integer codes of the categorical columns (NaN gets its own code), for neighbour distances."""
    if not columns:
        return np.zeros((len(frame), 0), dtype=np.int64)
    return np.stack(
        [pd.factorize(frame[c], use_na_sentinel=False)[0] for c in columns], axis=1
    ).astype(np.int64)


def _nearest_neighbours(continuous: np.ndarray, scale: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Index of each row's nearest other row: Euclidean on scaled continuous values, plus 1 per
    differing categorical value (the distance of Bucilua et al.). NaN is compared as the median."""
    from sklearn.neighbors import NearestNeighbors

    parts = []
    if continuous.shape[1]:
        z = continuous / scale
        medians = np.nanmedian(z, axis=0)
        z = np.where(np.isnan(z), medians, z)
        parts.append(z)
    if codes.shape[1]:
        # One-hot with weight 1/sqrt(2): two different values are at squared distance 1.
        blocks = []
        for j in range(codes.shape[1]):
            k = int(codes[:, j].max()) + 1
            one_hot = np.zeros((len(codes), k))
            one_hot[np.arange(len(codes)), codes[:, j]] = np.sqrt(0.5)
            blocks.append(one_hot)
        parts.append(np.concatenate(blocks, axis=1))
    points = np.concatenate(parts, axis=1)
    nn = NearestNeighbors(n_neighbors=2).fit(points)
    _, idx = nn.kneighbors(points)
    # The first neighbour is the row itself, unless a duplicate row came first.
    self_first = idx[:, 0] == np.arange(len(points))
    return np.where(self_first, idx[:, 1], idx[:, 0])


def _rebuild(
    frame: pd.DataFrame,
    rows: np.ndarray,
    continuous: list[Any],
    new_continuous: np.ndarray,
    discrete: list[Any],
    discrete_source: np.ndarray,
    from_array: bool,
) -> pd.DataFrame | np.ndarray:
    """Rows of ``frame`` (by index ``rows``) with new continuous values and swapped discrete ones."""
    out = frame.iloc[rows].reset_index(drop=True)
    for j, name in enumerate(discrete):
        out[name] = frame[name].iloc[discrete_source[:, j]].to_numpy()
    for j, name in enumerate(continuous):
        values = new_continuous[:, j]
        dtype = frame[name].dtype
        if pd.api.types.is_integer_dtype(dtype):
            values = np.round(values)
            if not np.isnan(values).any():
                values = values.astype(dtype)
        out[name] = values
    if from_array:
        return out.to_numpy(dtype=np.asarray(frame.to_numpy()).dtype)
    return out


def munge(
    X: pd.DataFrame | np.ndarray,
    n_samples: int,
    *,
    p: float = 0.5,
    s: float = 10.0,
    categorical: Sequence[Any] | None = None,
    max_discrete: int = 10,
    clip: bool = True,
    seed: int = 0,
) -> pd.DataFrame | np.ndarray:
    """Synthetic rows near the real ones, by MUNGE (Bucilua, Caruana, Niculescu-Mizil 2006).

    For each synthetic row a real row ``e`` is drawn at random and its nearest neighbour ``e'`` is
    found (Euclidean distance on robust-scaled continuous columns, plus one per differing categorical
    value). Then, independently for each attribute, with probability ``p``: a continuous value ``a``
    becomes ``normal(b, |a - b| / s)`` with ``b`` the neighbour's value, and a categorical value
    becomes the neighbour's. Otherwise the attribute keeps ``e``'s value. (The paper swaps the values
    of ``e`` and ``e'`` and keeps both rows; drawing one row per draw is the same distribution.)

    Args:
        X: real rows (training rows; labels are not needed): a DataFrame or a 2-D numeric array.
        n_samples: number of synthetic rows to return (rows are drawn with replacement).
        p: probability of taking over each attribute from the neighbour.
        s: local variance parameter: the perturbation's standard deviation is ``|a - b| / s``
            (larger ``s``: values closer to the real ones).
        categorical: columns to treat as categorical (only swapped, never perturbed); None: the
            non-numeric and bool columns and the integer columns with at most ``max_discrete``
            distinct values.
        max_discrete: see ``categorical``.
        clip: clip continuous values to the column's range in ``X`` (so that, for example, counts and
            amounts stay non-negative). Integer columns are rounded either way.
        seed: seed of the numpy generator; the same inputs and seed give the same rows.

    Returns:
        ``n_samples`` rows in the form of ``X`` (a DataFrame with the same columns and dtypes and a
        fresh RangeIndex, or an array of the same dtype). Categorical columns take only values seen
        in ``X``.

    Raises:
        ConfigError: ``n_samples``, ``p`` or ``s`` out of range.
        DataError: ``X`` has fewer than 2 rows, no columns, dates or infinite values.

    Example:
        >>> synthetic = munge(X_train, n_samples=2 * len(X_train), seed=0)
        >>> distiller.fit(X_train, y_train, transfer=synthetic)
    """
    what = "munge"
    n_samples = _check_n_samples(n_samples)
    p = _check_probability(p, "p")
    if isinstance(s, bool) or not isinstance(s, (int, float, np.number)) or not s > 0:
        raise ConfigError(
            f"s must be a positive number (perturbation sd = |a - b| / s), got {s!r}. The paper "
            "uses values such as 5 to 20."
        )
    frame, from_array = _as_table(X, what)
    continuous, discrete = _column_roles(frame, categorical, max_discrete, what)
    values = _continuous_matrix(frame, continuous, what)
    scale = _robust_scale(values)
    neighbour = _nearest_neighbours(values, scale, _codes(frame, discrete))

    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(frame), size=n_samples)
    partner = neighbour[rows]

    a = values[rows]
    b = values[partner]
    take = rng.random(a.shape) < p
    noise = rng.standard_normal(a.shape)
    with np.errstate(invalid="ignore"):
        perturbed = b + noise * np.abs(a - b) / float(s)
    perturbed = np.where(np.isnan(perturbed), b, perturbed)  # one side NaN: take the neighbour's
    new_continuous = np.where(take, perturbed, a)
    if clip and values.shape[1]:
        lo, hi = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
        new_continuous = np.clip(new_continuous, lo, hi)

    swap = rng.random((n_samples, len(discrete))) < p
    discrete_source = np.where(swap, partner[:, None], rows[:, None])
    return _rebuild(frame, rows, continuous, new_continuous, discrete, discrete_source, from_array)


def jitter(
    X: pd.DataFrame | np.ndarray,
    n_samples: int,
    *,
    scale: float = 0.1,
    categorical: Sequence[Any] | None = None,
    max_discrete: int = 10,
    clip: bool = True,
    seed: int = 0,
) -> pd.DataFrame | np.ndarray:
    """Synthetic rows as real rows plus Gaussian noise on the continuous columns.

    Each synthetic row copies a real row drawn at random; each continuous value gets
    ``normal(0, scale * spread)`` added, with ``spread`` the column's interquartile range (its
    standard deviation when that is 0). Categorical columns are copied unchanged.

    Args:
        X: real rows: a DataFrame or a 2-D numeric array.
        n_samples: number of synthetic rows to return.
        scale: noise standard deviation as a share of each column's spread.
        categorical: as in :func:`munge`.
        max_discrete: as in :func:`munge`.
        clip: clip continuous values to the column's range in ``X``.
        seed: seed of the numpy generator.

    Returns:
        ``n_samples`` rows in the form of ``X``.

    Raises:
        ConfigError: ``n_samples`` or ``scale`` out of range.
        DataError: as :func:`munge`.
    """
    what = "jitter"
    n_samples = _check_n_samples(n_samples)
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.number)) or scale < 0:
        raise ConfigError(
            f"scale must be a number >= 0 (noise sd as a share of each column's spread), got "
            f"{scale!r}."
        )
    frame, from_array = _as_table(X, what)
    continuous, discrete = _column_roles(frame, categorical, max_discrete, what)
    values = _continuous_matrix(frame, continuous, what)
    spread = _robust_scale(values)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(frame), size=n_samples)
    new_continuous = values[rows] + rng.standard_normal((n_samples, values.shape[1])) * (
        float(scale) * spread
    )
    if clip and values.shape[1]:
        lo, hi = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
        new_continuous = np.clip(new_continuous, lo, hi)
    discrete_source = np.repeat(rows[:, None], len(discrete), axis=1)
    return _rebuild(frame, rows, continuous, new_continuous, discrete, discrete_source, from_array)
