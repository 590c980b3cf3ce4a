"""Card-transaction fraud data of the Fraud Detection Handbook: simulator, features, loader, splits.

Le Borgne, Siblini, Lebichot, Bontempi, *Reproducible Machine Learning for Credit Card Fraud
Detection - Practical Handbook* (2022). Its simulated transactions (``../shared/data/fraud/fdh``)
are the tabular benchmark of crosskd; this module holds everything needed to use them the
handbook's way:

- :func:`simulate_transactions`: a vectorised generator of the same kind (chapter 3.2), for demos
  and tests that must not depend on the reference files;
- :func:`add_handbook_features` / :data:`HANDBOOK_FEATURES`: the 15 model inputs (chapter 3.3);
- :func:`load_handbook`: the raw or transformed parquet file;
- :func:`handbook_split`, :func:`prequential_folds`, :func:`handbook_folds`: the train / delay /
  test protocol (chapters 3.4 and 5), with cards already known to be compromised removed from
  the test days.

Never use ``TX_FRAUD_SCENARIO`` as a feature: it encodes the label.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ..exceptions import ConfigError, DataError
from ._paths import reference_path

__all__ = [
    "RAW_COLUMNS",
    "HANDBOOK_FEATURES",
    "simulate_transactions",
    "add_handbook_features",
    "load_handbook",
    "handbook_split",
    "prequential_folds",
    "handbook_folds",
]

#: Columns of the simulator output (the raw parquet file), in order.
RAW_COLUMNS: list[str] = [
    "TRANSACTION_ID",
    "TX_DATETIME",
    "CUSTOMER_ID",
    "TERMINAL_ID",
    "TX_AMOUNT",
    "TX_TIME_SECONDS",
    "TX_TIME_DAYS",
    "TX_FRAUD",
    "TX_FRAUD_SCENARIO",
]

#: The handbook's 15 model inputs, in the transformed file's order.
HANDBOOK_FEATURES: list[str] = [
    "TX_AMOUNT",
    "TX_DURING_WEEKEND",
    "TX_DURING_NIGHT",
    "CUSTOMER_ID_NB_TX_1DAY_WINDOW",
    "CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW",
    "CUSTOMER_ID_NB_TX_7DAY_WINDOW",
    "CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW",
    "CUSTOMER_ID_NB_TX_30DAY_WINDOW",
    "CUSTOMER_ID_AVG_AMOUNT_30DAY_WINDOW",
    "TERMINAL_ID_NB_TX_1DAY_WINDOW",
    "TERMINAL_ID_RISK_1DAY_WINDOW",
    "TERMINAL_ID_NB_TX_7DAY_WINDOW",
    "TERMINAL_ID_RISK_7DAY_WINDOW",
    "TERMINAL_ID_NB_TX_30DAY_WINDOW",
    "TERMINAL_ID_RISK_30DAY_WINDOW",
]

_FILES = {
    "raw": "transactions_raw_2018-04-01_2018-09-30.parquet",
    "transformed": "transactions_transformed_2018-04-01_2018-09-30.parquet",
}

_DAY_NS = 86_400 * 10**9
_WINDOWS = (1, 7, 30)

# The handbook's population, to which the per-day numbers of compromised terminals (2) and
# customers (3) refer.
_HANDBOOK_TERMINALS = 10_000
_HANDBOOK_CUSTOMERS = 5_000


# ----------------------------------------------------------------------------- simulator


def _check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, but is {value!r}.")
    return int(value)


def _terminals_within(
    customer_xy: np.ndarray, terminal_xy: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """CSR lists of the terminals strictly within ``radius`` of each customer (ascending ids)."""
    n_customers = len(customer_xy)
    chunk = max(1, 4_000_000 // max(1, len(terminal_xy)))
    rows, cols = [], []
    for lo in range(0, n_customers, chunk):
        block = customer_xy[lo : lo + chunk]
        d2 = ((block[:, None, :] - terminal_xy[None, :, :]) ** 2).sum(axis=2)
        r, c = np.nonzero(d2 < radius * radius)
        rows.append(r + lo)
        cols.append(c)
    rows_all = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    cols_all = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    counts = np.bincount(rows_all, minlength=n_customers)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return cols_all.astype(np.int64), np.stack([offsets, counts], axis=1)


def _per_day_count(rng: np.random.Generator, expected: float) -> int:
    """``expected`` rounded down or up at random, so that its mean is ``expected``."""
    whole = int(np.floor(expected))
    return whole + int(rng.random() < expected - whole)


def simulate_transactions(
    n_customers: int = 5000,
    n_terminals: int = 10000,
    n_days: int = 183,
    start_date: str = "2018-04-01",
    radius: float = 5.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Simulate card transactions with planted frauds, as the handbook's simulator (chapter 3.2).

    Customers and terminals sit at uniform positions in a 100 x 100 square; a customer uses the
    terminals strictly within ``radius`` (customers without one make no transaction). Each
    customer has a mean amount U(5, 100), a standard deviation of half of it and a rate U(0, 4):
    every day it makes Poisson(rate) transactions at a time of day N(noon, 20,000 s), truncated to
    whole seconds, and those falling outside the day are dropped; amounts are normal (a negative
    draw is replaced by U(0, 2 * mean)), rounded to cents, at a terminal drawn uniformly from the
    customer's.

    Fraud scenarios, applied in this order (a later one overwrites the scenario of an earlier):
    (1) every amount over 220 is fraud; (2) each day, 2 random terminals are compromised for 28
    days: all their transactions are fraud; (3) each day, 3 random customers are compromised for
    14 days: a third of their transactions in those days (drawn at random) get 5 times the amount
    and are fraud. The per-day numbers 2 and 3 refer to the handbook's 10,000 terminals and 5,000
    customers and scale with ``n_terminals`` and ``n_customers`` (a fractional number is rounded
    at random, keeping its mean), so that the fraud rate (about 0.8 %) does not depend on the size.

    The generator is fully vectorised with numpy (a Python loop runs only over the days of the
    fraud scenarios) and deterministic for a seed; it is not bit-identical to the handbook's code,
    which draws from per-customer seeded global generators.

    Args:
        n_customers: Number of customers (cards).
        n_terminals: Number of terminals.
        n_days: Number of simulated days.
        start_date: Date of day 0 (``TX_DATETIME`` = start_date + ``TX_TIME_SECONDS``).
        radius: Distance within which a customer uses a terminal.
        seed: Seed of the numpy generator.

    Returns:
        A DataFrame with the raw file's columns :data:`RAW_COLUMNS`, sorted by time (ties by
        customer), ``TRANSACTION_ID`` = 0..n-1 in that order. ``TX_DATETIME`` is
        datetime64[ns], ``TX_AMOUNT`` float64, all other columns int64.

    Raises:
        ConfigError: a size is not a positive integer, radius is not positive, or start_date
            is not a date.

    Example:
        >>> raw = simulate_transactions(n_customers=500, n_terminals=1000, n_days=60, seed=1)
        >>> data = add_handbook_features(raw)
    """
    n_customers = _check_positive_int(n_customers, "n_customers")
    n_terminals = _check_positive_int(n_terminals, "n_terminals")
    n_days = _check_positive_int(n_days, "n_days")
    if not np.isfinite(radius) or radius <= 0:
        raise ConfigError(
            f"radius must be a positive number, but is {radius!r}. The handbook uses 5."
        )
    try:
        origin = pd.Timestamp(start_date)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"start_date must be a date such as '2018-04-01', but is {start_date!r}."
        ) from err
    rng = np.random.default_rng(seed)

    # Profiles.
    customer_xy = rng.uniform(0.0, 100.0, size=(n_customers, 2))
    mean_amount = rng.uniform(5.0, 100.0, size=n_customers)
    std_amount = mean_amount / 2.0
    rate = rng.uniform(0.0, 4.0, size=n_customers)
    terminal_xy = rng.uniform(0.0, 100.0, size=(n_terminals, 2))
    neighbours, csr = _terminals_within(customer_xy, terminal_xy, float(radius))

    # Transactions: one Poisson count per (day, customer), then one row per transaction.
    counts = rng.poisson(np.broadcast_to(rate, (n_days, n_customers))).ravel()
    customer = np.repeat(np.tile(np.arange(n_customers), n_days), counts)
    day = np.repeat(np.repeat(np.arange(n_days), n_customers), counts)
    n = len(customer)
    time_of_day = np.trunc(rng.normal(86_400 / 2, 20_000, size=n)).astype(np.int64)
    amount = rng.normal(mean_amount[customer], std_amount[customer])
    negative = amount < 0
    amount[negative] = rng.uniform(0.0, 2.0 * mean_amount[customer[negative]])
    amount = np.round(amount, 2)
    n_available = csr[customer, 1]
    pick = np.floor(rng.random(n) * n_available).astype(np.int64)
    keep = (time_of_day > 0) & (time_of_day < 86_400) & (n_available > 0)
    customer, day, time_of_day, amount = customer[keep], day[keep], time_of_day[keep], amount[keep]
    terminal = neighbours[csr[customer, 0] + pick[keep]]
    seconds = day * 86_400 + time_of_day
    order = np.lexsort((customer, seconds))
    customer, day, seconds, amount, terminal = (
        customer[order],
        day[order],
        seconds[order],
        amount[order],
        terminal[order],
    )
    n = len(customer)
    fraud = np.zeros(n, np.int64)
    scenario = np.zeros(n, np.int64)

    # Scenario 1: large amounts.
    large = amount > 220
    fraud[large] = 1
    scenario[large] = 1

    # Scenario 2: compromised terminals, 28 days.
    compromised = np.zeros((n_terminals, n_days), dtype=bool)
    per_day = 2.0 * n_terminals / _HANDBOOK_TERMINALS
    for d in range(n_days):
        chosen = rng.choice(
            n_terminals, size=min(_per_day_count(rng, per_day), n_terminals), replace=False
        )
        compromised[chosen, d : d + 28] = True
    hit = compromised[terminal, day]
    fraud[hit] = 1
    scenario[hit] = 2

    # Scenario 3: compromised customers, 14 days, a third of their transactions x5.
    by_customer = np.argsort(customer, kind="stable")  # customer, then time
    customer_sorted = customer[by_customer]
    day_sorted = day[by_customer]
    bounds = np.searchsorted(customer_sorted, np.arange(n_customers + 1))
    per_day = 3.0 * n_customers / _HANDBOOK_CUSTOMERS
    for d in range(n_days):
        chosen = rng.choice(
            n_customers, size=min(_per_day_count(rng, per_day), n_customers), replace=False
        )
        candidates = []
        for c in chosen:
            lo, hi = bounds[c], bounds[c + 1]
            days_c = day_sorted[lo:hi]
            a, b = np.searchsorted(days_c, [d, d + 14])
            candidates.append(by_customer[lo + a : lo + b])
        pool = np.concatenate(candidates) if candidates else np.zeros(0, np.int64)
        k = len(pool) // 3
        if k:
            rows = rng.choice(pool, size=k, replace=False)
            amount[rows] = np.round(amount[rows] * 5, 2)
            fraud[rows] = 1
            scenario[rows] = 3

    origin64 = np.datetime64(origin.to_datetime64(), "ns")
    return pd.DataFrame(
        {
            "TRANSACTION_ID": np.arange(n, dtype=np.int64),
            "TX_DATETIME": origin64 + (seconds * 10**9).astype("timedelta64[ns]"),
            "CUSTOMER_ID": customer.astype(np.int64),
            "TERMINAL_ID": terminal.astype(np.int64),
            "TX_AMOUNT": amount.astype(np.float64),
            "TX_TIME_SECONDS": seconds.astype(np.int64),
            "TX_TIME_DAYS": day.astype(np.int64),
            "TX_FRAUD": fraud,
            "TX_FRAUD_SCENARIO": scenario,
        }
    )


# ----------------------------------------------------------------------------- features


def _require_columns(frame: object, columns: Sequence[str], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise DataError(
            f"{what} takes a pandas DataFrame of transactions, but received "
            f"{type(frame).__name__}. Load one with load_handbook(kind='raw') or "
            "simulate_transactions()."
        )
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{what} needs the columns {missing}, which the frame lacks (it has "
            f"{list(frame.columns)}). Pass transactions with the handbook's raw columns."
        )


def _datetime_ns(frame: pd.DataFrame, what: str) -> np.ndarray:
    column = frame["TX_DATETIME"]
    if (
        not pd.api.types.is_datetime64_any_dtype(column)
        or getattr(column.dt, "tz", None) is not None
    ):
        raise DataError(
            f"{what} needs TX_DATETIME as a timezone-naive datetime column, but it has dtype "
            f"{column.dtype}. Convert it with pd.to_datetime(...)."
        )
    values = column.to_numpy().astype("datetime64[ns]").view(np.int64)
    if column.isna().any():
        raise DataError(f"{what}: TX_DATETIME has {int(column.isna().sum())} missing values.")
    return values


class _EntityWindows:
    """Rows sorted by (entity, time) with a strictly increasing int64 key per chunk of entities.

    ``count_before(offset, side)`` is, for each row, the index (in sorted order) of the first row
    of the same entity whose time is > (``side='right'``) its time minus ``offset`` nanoseconds:
    the windows of the handbook's time-based rolling sums become differences of prefix sums.
    """

    def __init__(self, entity: np.ndarray, time_ns: np.ndarray, max_offset: int) -> None:
        codes = np.unique(entity, return_inverse=True)[1].astype(np.int64)
        self.order = np.lexsort((time_ns, codes))  # stable: ties keep row order
        self.codes = codes[self.order]
        t = time_ns[self.order]
        self.t_rel = t - (t.min() if len(t) else 0)
        self.margin = int(max_offset) + 1
        self.span = int(self.t_rel.max() if len(t) else 0) + 2 * self.margin + 1
        self.per_chunk = max(1, (2**62) // self.span)

    def index_after(self, offset_ns: int) -> np.ndarray:
        """Sorted index of the first same-entity row with time > row time - offset_ns."""
        out = np.empty(len(self.codes), np.int64)
        n_codes = int(self.codes[-1]) + 1 if len(self.codes) else 0
        bounds = np.searchsorted(self.codes, np.arange(0, n_codes + self.per_chunk, self.per_chunk))
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=False):
            if hi <= lo:
                continue
            base = self.codes[lo]
            key = (self.codes[lo:hi] - base) * self.span + self.t_rel[lo:hi] + self.margin
            out[lo:hi] = lo + np.searchsorted(key, key - offset_ns, side="right")
        return out


def add_handbook_features(raw: pd.DataFrame, delay_days: int = 7) -> pd.DataFrame:
    """Add the handbook's 15 model inputs (chapter 3.3) to raw transactions.

    - ``TX_DURING_WEEKEND``: 1 on Saturday and Sunday; ``TX_DURING_NIGHT``: 1 when the hour is <= 6.
    - ``CUSTOMER_ID_NB_TX_{w}DAY_WINDOW`` / ``CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW`` for w = 1, 7,
      30: number and mean amount of the customer's transactions in (t - w days, t], the current
      one included (with equal timestamps, those earlier in row order count, later ones not, as
      pandas' time-based rolling does).
    - ``TERMINAL_ID_NB_TX_{w}DAY_WINDOW`` / ``TERMINAL_ID_RISK_{w}DAY_WINDOW``: number of the
      terminal's transactions in (t - delay - w days, t - delay] and the share of them that are
      fraud (0 when there are none): labels become known only after the delay.

    Windows are measured in continuous time from ``TX_DATETIME``, exactly as the handbook's
    ``rolling('{w}d')``. A row's features use only rows at or before it, and its terminal risk
    only labels at least ``delay_days`` old, so there is no leakage from the future. Computed with
    sorting, binary search and prefix sums (no per-customer loop): the 1.75M-row reference file
    takes a few seconds.

    Args:
        raw: Transactions with at least TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT and
            TX_FRAUD (the raw file's columns).
        delay_days: Label delay of the terminal windows, in days.

    Returns:
        A copy of ``raw`` (same index and row order) with the feature columns added (replaced if
        present), in the transformed file's order; counts and means are float64, the two flags
        int64.

    Raises:
        DataError: a column is missing, TX_DATETIME is not a datetime, values are missing, or
            TX_FRAUD is not 0/1.
        ConfigError: delay_days is negative.
    """
    what = "add_handbook_features"
    _require_columns(
        raw, ["TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_FRAUD"], what
    )
    if (
        isinstance(delay_days, bool)
        or not isinstance(delay_days, int | np.integer)
        or delay_days < 0
    ):
        raise ConfigError(
            f"delay_days must be an integer >= 0, but is {delay_days!r}. The handbook uses 7."
        )
    t = _datetime_ns(raw, what)
    amount = raw["TX_AMOUNT"].to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.isfinite(amount).all():
        raise DataError(
            f"{what}: TX_AMOUNT has {int((~np.isfinite(amount)).sum())} NaN or infinite values."
        )
    label = raw["TX_FRAUD"].to_numpy()
    if not np.isin(label, [0, 1]).all():
        raise DataError(
            f"{what}: TX_FRAUD must be 0 or 1, but holds {np.unique(label)[:5].tolist()}."
        )
    label = label.astype(np.float64)
    n = len(raw)

    features: dict[str, np.ndarray] = {"TX_AMOUNT": amount}
    dt = raw["TX_DATETIME"].dt
    features["TX_DURING_WEEKEND"] = (dt.day_of_week >= 5).to_numpy().astype(np.int64)
    features["TX_DURING_NIGHT"] = (dt.hour <= 6).to_numpy().astype(np.int64)

    # Customer windows: (t - w, t], rows up to and including the current one in sorted order.
    customer = _EntityWindows(raw["CUSTOMER_ID"].to_numpy(), t, max(_WINDOWS) * _DAY_NS)
    # Prefix sums restart at each customer, so their rounding error stays at the customer's scale.
    running = pd.Series(amount[customer.order]).groupby(customer.codes).cumsum().to_numpy()
    group_start = np.searchsorted(customer.codes, customer.codes, side="left")
    end = np.arange(1, n + 1)
    for w in _WINDOWS:
        start = customer.index_after(w * _DAY_NS)
        nb = (end - start).astype(np.float64)
        before = np.where(start > group_start, running[np.maximum(start - 1, 0)], 0.0)
        total = running - before
        for name, values in (("NB_TX", nb), ("AVG_AMOUNT", total / nb)):
            out = np.empty(n)
            out[customer.order] = values
            features[f"CUSTOMER_ID_{name}_{w}DAY_WINDOW"] = out

    # Terminal windows: (t - delay - w, t - delay].
    delay_ns = int(delay_days) * _DAY_NS
    terminal = _EntityWindows(raw["TERMINAL_ID"].to_numpy(), t, delay_ns + max(_WINDOWS) * _DAY_NS)
    fraud_prefix = np.concatenate([[0.0], np.cumsum(label[terminal.order])])
    hi = terminal.index_after(delay_ns)
    for w in _WINDOWS:
        lo = terminal.index_after(delay_ns + w * _DAY_NS)
        nb = (hi - lo).astype(np.float64)
        frauds = fraud_prefix[hi] - fraud_prefix[lo]
        risk = np.divide(frauds, nb, out=np.zeros(n), where=nb > 0)
        for name, values in (("NB_TX", nb), ("RISK", risk)):
            out = np.empty(n)
            out[terminal.order] = values
            features[f"TERMINAL_ID_{name}_{w}DAY_WINDOW"] = out

    result = raw.drop(
        columns=[c for c in HANDBOOK_FEATURES if c in raw.columns and c != "TX_AMOUNT"]
    )
    for name in HANDBOOK_FEATURES[1:]:
        result[name] = features[name]
    return result


# ----------------------------------------------------------------------------- loader


def load_handbook(
    kind: Literal["raw", "transformed"] = "transformed",
    path: str | Path | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read the handbook's transactions (2018-04-01 to 2018-09-30, 1,754,155 rows).

    Args:
        kind: ``"raw"`` (simulator output) or ``"transformed"`` (plus :data:`HANDBOOK_FEATURES`).
        path: The parquet file; by default the reference copy in
            ``<data root>/fraud/fdh`` (see ``CROSSKD_DATA``).
        columns: Columns to read (all by default).

    Returns:
        The transactions, sorted by time as stored, with a RangeIndex.

    Raises:
        ConfigError: kind is unknown.
        DataError: the file is absent, or a requested column is not in it.
    """
    if kind not in _FILES:
        raise ConfigError(f"kind must be 'raw' or 'transformed', but is {kind!r}.")
    if path is None:
        file = reference_path("fraud", "fdh", _FILES[kind])
    else:
        file = Path(path)
        if not file.is_file():
            raise DataError(
                f"The handbook file {str(file)!r} does not exist. Pass the path of "
                f"{_FILES[kind]}, or leave path=None to use the reference data."
            )
    if columns is not None:
        import pyarrow.parquet as pq

        available = pq.read_schema(file).names
        missing = [c for c in columns if c not in available]
        if missing:
            raise DataError(
                f"Columns {missing} are not in {file.name} (it has {available}). "
                "Use kind='transformed' for the model inputs."
            )
    return pd.read_parquet(file, columns=None if columns is None else list(columns))


# ----------------------------------------------------------------------------- protocol


def _parse_date(value: str | pd.Timestamp, name: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name} must be a date such as '2018-07-25', but is {value!r}.") from err
    if stamp is pd.NaT or stamp.tz is not None:
        raise ConfigError(
            f"{name} must be a timezone-naive date such as '2018-07-25', but is {value!r}."
        )
    return stamp


def handbook_split(
    df: pd.DataFrame,
    start_train: str | pd.Timestamp = "2018-07-25",
    train_days: int = 7,
    delay_days: int = 7,
    test_days: int = 7,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The handbook's train / delay / test split (chapter 3.4, ``get_train_test_set``).

    Days are counted from ``start_train`` (midnight): train = days [0, train_days), delay = the
    next ``delay_days`` days (their labels are not known yet when the model is trained, so they
    are not used for training), test = the next ``test_days`` days. On test day D, the cards
    already known to be compromised are removed: those with a fraud on a day in
    [0, D - delay_days), i.e. in training, in the delay period up to D - delay_days - 1, and
    (when test_days > delay_days) on earlier test days whose labels are known by then. With the
    defaults this reproduces the handbook's counts: train 67,240 transactions / 598 frauds, test
    58,264 / 385.

    Args:
        df: Transactions with TX_DATETIME, CUSTOMER_ID and TX_FRAUD (raw or transformed).
        start_train: First training day.
        train_days: Days of training.
        delay_days: Days between training and test (label delay).
        test_days: Days of test.

    Returns:
        ``(train, delay, test)``: row subsets of ``df`` in its order and with its index. ``delay``
        holds all rows of the delay period (nothing removed).

    Raises:
        DataError: a column is missing or TX_DATETIME is not a datetime.
        ConfigError: a number of days is not a positive integer (delay_days may be 0), or
            start_train is not a date.
    """
    what = "handbook_split"
    _require_columns(df, ["TX_DATETIME", "CUSTOMER_ID", "TX_FRAUD"], what)
    train_days = _check_positive_int(train_days, "train_days")
    delay_days = _check_positive_int(delay_days, "delay_days", minimum=0)
    test_days = _check_positive_int(test_days, "test_days")
    start = _parse_date(start_train, "start_train")
    t = _datetime_ns(df, what)
    day = np.floor_divide(t - start.as_unit("ns").value, _DAY_NS)
    first_test = train_days + delay_days
    train = (day >= 0) & (day < train_days)
    delay = (day >= train_days) & (day < first_test)
    test = (day >= first_test) & (day < first_test + test_days)

    # First day (from start_train) with a fraud of each customer; known on day D if < D - delay.
    label = df["TX_FRAUD"].to_numpy()
    customer = df["CUSTOMER_ID"].to_numpy()
    fraud_rows = (label == 1) & (day >= 0)
    first_fraud = pd.Series(day[fraud_rows]).groupby(customer[fraud_rows]).min()
    customer_first = (
        pd.Series(customer).map(first_fraud).to_numpy(dtype=np.float64, na_value=np.inf)
    )
    known = customer_first < (day - delay_days)
    test &= ~known
    return df[train], df[delay], df[test]


def prequential_folds(
    df: pd.DataFrame,
    start_train: str | pd.Timestamp = "2018-08-15",
    n_folds: int = 4,
    train_days: int = 7,
    delay_days: int = 7,
    test_days: int = 7,
    step_days: int = 7,
) -> list[tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    """Prequential folds (handbook chapter 5, ``prequentialSplit``): :func:`handbook_split` moved back in time.

    Fold ``i`` is ``handbook_split(df, start_train - i * step_days, ...)``: fold 0 is the latest.
    Note that the handbook names its folds by the *training* start: its test folds use
    start_train = 2018-08-15 (2018-07-25 + 3 x 7 days), so their test weeks start on 2018-08-29,
    08-22, 08-15 and 08-08. See :func:`handbook_folds` for the handbook's test and validation
    folds by name.

    Args:
        df: Transactions with TX_DATETIME, CUSTOMER_ID and TX_FRAUD.
        start_train: Training start of fold 0.
        n_folds: Number of folds.
        train_days: Days of training per fold.
        delay_days: Days between training and test.
        test_days: Days of test per fold.
        step_days: Days between the starts of consecutive folds.

    Returns:
        A list of ``n_folds`` tuples ``(train, delay, test)``.

    Raises:
        ConfigError: a number is not a positive integer or start_train is not a date.
        DataError: as :func:`handbook_split`.
    """
    n_folds = _check_positive_int(n_folds, "n_folds")
    step_days = _check_positive_int(step_days, "step_days")
    start = _parse_date(start_train, "start_train")
    return [
        handbook_split(
            df,
            start - pd.Timedelta(days=fold * step_days),
            train_days=train_days,
            delay_days=delay_days,
            test_days=test_days,
        )
        for fold in range(n_folds)
    ]


def handbook_folds(
    df: pd.DataFrame,
    which: Literal["test", "validation"] = "test",
    n_folds: int = 4,
    reference_start: str | pd.Timestamp = "2018-07-25",
    days: int = 7,
) -> list[tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    """The handbook's prequential test or validation folds (chapters 5.2-5.3 and 7).

    The handbook fixes a reference training start (2018-07-25, the single split of chapter 3.4)
    and 7-day train, delay and test periods, and derives:

    - test folds: training starts at reference + (n_folds - 1) x 7 days = 2018-08-15, then 7 days
      earlier per fold; test weeks start 2018-08-29, 08-22, 08-15, 08-08;
    - validation folds (for choosing hyper-parameters): training starts at reference - (delay +
      test) = 2018-07-11, then 7 days earlier per fold; test weeks start 2018-07-25, 07-18, 07-11,
      07-04, so no validation test week overlaps a test fold's test week.

    Args:
        df: Transactions with TX_DATETIME, CUSTOMER_ID and TX_FRAUD.
        which: ``"test"`` or ``"validation"``.
        n_folds: Number of folds.
        reference_start: The reference training start.
        days: Length of the train, delay and test periods and the step between folds.

    Returns:
        A list of ``n_folds`` tuples ``(train, delay, test)``, latest fold first.

    Raises:
        ConfigError: which is unknown, or a number is not a positive integer.
        DataError: as :func:`handbook_split`.
    """
    n_folds = _check_positive_int(n_folds, "n_folds")
    days = _check_positive_int(days, "days")
    reference = _parse_date(reference_start, "reference_start")
    if which == "test":
        start = reference + pd.Timedelta(days=(n_folds - 1) * days)
    elif which == "validation":
        start = reference - pd.Timedelta(days=2 * days)
    else:
        raise ConfigError(f"which must be 'test' or 'validation', but is {which!r}.")
    return prequential_folds(
        df, start, n_folds=n_folds, train_days=days, delay_days=days, test_days=days, step_days=days
    )
