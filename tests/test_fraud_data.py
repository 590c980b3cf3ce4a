"""crosskd.datasets.fraud: simulator, handbook features, loader and the train / delay / test protocol.

Fast tests use small simulated frames; tests marked ``data`` check the reference copy of the
Fraud Detection Handbook's data against the handbook's published numbers.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest

from crosskd.datasets.fraud import (
    HANDBOOK_FEATURES,
    RAW_COLUMNS,
    add_handbook_features,
    handbook_folds,
    handbook_split,
    load_handbook,
    prequential_folds,
    simulate_transactions,
)
from crosskd.exceptions import ConfigError, DataError
from crosskd.metrics import average_precision, card_precision_at_k, roc_auc

DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def sim() -> pd.DataFrame:
    return simulate_transactions(n_customers=500, n_terminals=1000, n_days=60, seed=0)


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return simulate_transactions(n_customers=150, n_terminals=300, n_days=50, seed=3)


# ----------------------------------------------------------------------------- simulator


def test_simulator_columns_dtypes_and_order(sim):
    assert list(sim.columns) == RAW_COLUMNS
    assert sim["TX_DATETIME"].dtype == "datetime64[ns]"
    assert sim["TX_AMOUNT"].dtype == np.float64
    for column in RAW_COLUMNS:
        if column not in ("TX_DATETIME", "TX_AMOUNT"):
            assert sim[column].dtype == np.int64, column
    assert (sim["TRANSACTION_ID"].to_numpy() == np.arange(len(sim))).all()
    seconds = sim["TX_TIME_SECONDS"].to_numpy()
    assert (np.diff(seconds) >= 0).all()
    assert (sim["TX_TIME_DAYS"].to_numpy() == seconds // 86_400).all()
    assert ((seconds % 86_400) > 0).all()
    expected = pd.Timestamp("2018-04-01") + pd.to_timedelta(seconds, unit="s")
    assert (sim["TX_DATETIME"].to_numpy() == expected.to_numpy()).all()
    assert sim["TX_TIME_DAYS"].max() == 59
    assert (sim["TX_AMOUNT"] >= 0).all()
    assert np.allclose(sim["TX_AMOUNT"], sim["TX_AMOUNT"].round(2))


def test_simulator_is_deterministic(sim):
    again = simulate_transactions(n_customers=500, n_terminals=1000, n_days=60, seed=0)
    pd.testing.assert_frame_equal(sim, again)
    other = simulate_transactions(n_customers=500, n_terminals=1000, n_days=60, seed=1)
    assert len(other) != len(sim) or not other["TX_AMOUNT"].equals(sim["TX_AMOUNT"])


def test_simulator_fraud_scenarios(sim):
    fraud = sim["TX_FRAUD"].to_numpy()
    scenario = sim["TX_FRAUD_SCENARIO"].to_numpy()
    assert 0.002 < fraud.mean() < 0.02  # the handbook's data: 0.84 %
    assert ((scenario > 0) == (fraud == 1)).all()
    assert set(np.unique(scenario)) == {0, 1, 2, 3}
    assert (sim.loc[scenario == 1, "TX_AMOUNT"] > 220).all()
    assert (fraud[sim["TX_AMOUNT"].to_numpy() > 220] == 1).all()
    # Scenario 2 compromises whole terminals: a terminal's scenario-2 frauds come in runs of days.
    s2 = sim[scenario == 2]
    assert s2["TERMINAL_ID"].nunique() < len(s2) / 3


def test_simulator_fraud_rate_near_handbook_for_handbook_density():
    # Same density as the handbook (1 customer per 2 terminals), long enough to reach steady state.
    df = simulate_transactions(n_customers=400, n_terminals=800, n_days=90, seed=5)
    assert 0.004 < df["TX_FRAUD"].mean() < 0.014


def test_simulator_volume_matches_its_model():
    # Each customer makes Poisson(rate) transactions a day, rate ~ U(0, 4) (mean 2), at a time
    # N(noon, 20,000 s) kept only inside the day: P(kept) = 1 - erfc(43,200 / (20,000 sqrt 2)).
    # With 1,000 terminals in the 100 x 100 square almost every customer has one within radius 5.
    # The mean rate of 500 customers has a relative std of (4 / sqrt 12) / 2 / sqrt 500 = 2.6 %:
    # 15 % is about 6 of those.
    n_customers, n_terminals, n_days = 500, 1000, 60
    df = simulate_transactions(
        n_customers=n_customers, n_terminals=n_terminals, n_days=n_days, seed=2
    )
    kept = 1.0 - math.erfc(43_200 / (20_000 * math.sqrt(2)))
    expected = n_customers * 2.0 * n_days * kept
    assert 0.85 * expected < len(df) < 1.15 * expected
    assert df["CUSTOMER_ID"].between(0, n_customers - 1).all()
    assert df["TERMINAL_ID"].between(0, n_terminals - 1).all()
    assert df["CUSTOMER_ID"].nunique() > 0.95 * n_customers
    per_day = df.groupby("TX_TIME_DAYS").size()
    assert len(per_day) == n_days and per_day.min() > 0.7 * expected / n_days


def test_simulator_errors():
    with pytest.raises(ConfigError, match="n_customers must be an integer >= 1"):
        simulate_transactions(n_customers=0)
    with pytest.raises(ConfigError, match="radius must be a positive number"):
        simulate_transactions(n_customers=5, n_terminals=5, n_days=2, radius=-1.0)
    with pytest.raises(ConfigError, match="start_date must be a date"):
        simulate_transactions(n_customers=5, n_terminals=5, n_days=2, start_date="soon")


# ----------------------------------------------------------------------------- features


def _brute_force_features(raw: pd.DataFrame, i: int, delay_days: int = 7) -> dict[str, float]:
    """The handbook's definitions, evaluated for row ``i`` by scanning all rows."""
    row = raw.iloc[i]
    t = raw["TX_DATETIME"]
    out = {
        "TX_AMOUNT": row["TX_AMOUNT"],
        "TX_DURING_WEEKEND": int(row["TX_DATETIME"].weekday() >= 5),
        "TX_DURING_NIGHT": int(row["TX_DATETIME"].hour <= 6),
    }
    position = np.arange(len(raw))
    # Equal timestamps: rows up to and including i in row order count.
    at_or_before = (t < row["TX_DATETIME"]) | ((t == row["TX_DATETIME"]) & (position <= i))
    same_customer = raw["CUSTOMER_ID"] == row["CUSTOMER_ID"]
    for w in (1, 7, 30):
        inside = same_customer & at_or_before & (t > row["TX_DATETIME"] - w * DAY)
        amounts = raw.loc[inside, "TX_AMOUNT"]
        out[f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW"] = float(len(amounts))
        out[f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW"] = float(amounts.mean())
    same_terminal = raw["TERMINAL_ID"] == row["TERMINAL_ID"]
    end = row["TX_DATETIME"] - delay_days * DAY
    for w in (1, 7, 30):
        inside = same_terminal & (t <= end) & (t > end - w * DAY)
        labels = raw.loc[inside, "TX_FRAUD"]
        out[f"TERMINAL_ID_NB_TX_{w}DAY_WINDOW"] = float(len(labels))
        out[f"TERMINAL_ID_RISK_{w}DAY_WINDOW"] = float(labels.mean()) if len(labels) else 0.0
    return out


def test_features_match_brute_force(small):
    raw = small.copy()
    # Force equal timestamps for one customer, to pin down the tie rule.
    tied_customer = raw["CUSTOMER_ID"].iloc[2000]
    customer_rows = np.flatnonzero(raw["CUSTOMER_ID"].to_numpy() == tied_customer)
    a, b = customer_rows[5], customer_rows[6]
    raw.loc[b, "TX_DATETIME"] = raw.loc[a, "TX_DATETIME"]
    raw = raw.sort_values("TX_DATETIME", kind="stable").reset_index(drop=True)
    features = add_handbook_features(raw)
    assert list(features.columns) == RAW_COLUMNS + HANDBOOK_FEATURES[1:]
    rng = np.random.default_rng(0)
    rows = set(rng.choice(len(raw), size=40, replace=False).tolist())
    rows |= set(np.flatnonzero(raw["TX_FRAUD"].to_numpy() == 1)[:10].tolist())
    rows |= set(np.flatnonzero(raw["CUSTOMER_ID"].to_numpy() == tied_customer).tolist()[:12])
    rows.add(len(raw) - 1)
    for i in sorted(rows):
        expected = _brute_force_features(raw, i)
        got = features.iloc[i]
        for name in HANDBOOK_FEATURES:
            assert got[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-9), (i, name)


def test_features_delay_argument(small):
    features = add_handbook_features(small, delay_days=0)
    i = len(small) - 1
    expected = _brute_force_features(small, i, delay_days=0)
    for name in HANDBOOK_FEATURES:
        assert features.iloc[i][name] == pytest.approx(expected[name], rel=1e-9, abs=1e-9)


def test_features_do_not_leak_the_future(small):
    features = add_handbook_features(small)
    cut = pd.Timestamp("2018-04-01") + 30 * DAY
    future = small["TX_DATETIME"] >= cut
    changed = small.copy()
    changed.loc[future, "TX_FRAUD"] = 1 - changed.loc[future, "TX_FRAUD"]
    changed.loc[future, "TX_AMOUNT"] = changed.loc[future, "TX_AMOUNT"] * 3 + 1
    again = add_handbook_features(changed)
    before = ~future.to_numpy()
    pd.testing.assert_frame_equal(
        features.loc[before, HANDBOOK_FEATURES[1:]], again.loc[before, HANDBOOK_FEATURES[1:]]
    )
    # Labels flipped at >= cut reach terminal risk only a delay (7 days) later.
    label_only = small.copy()
    label_only.loc[future, "TX_FRAUD"] = 1 - label_only.loc[future, "TX_FRAUD"]
    risk = [c for c in HANDBOOK_FEATURES if "RISK" in c]
    blind = (small["TX_DATETIME"] < cut + 7 * DAY).to_numpy()
    again = add_handbook_features(label_only)
    pd.testing.assert_frame_equal(features.loc[blind, risk], again.loc[blind, risk])
    assert not features.loc[~blind, risk].equals(again.loc[~blind, risk])


def test_features_keep_index_and_replace_existing(small):
    shuffled_index = small.set_axis(np.arange(len(small))[::-1] * 10)
    features = add_handbook_features(shuffled_index)
    assert features.index.equals(shuffled_index.index)
    twice = add_handbook_features(features)
    assert list(twice.columns) == list(features.columns)
    pd.testing.assert_frame_equal(twice, features)


def test_features_errors(small):
    with pytest.raises(DataError, match=r"columns \['TERMINAL_ID'\]"):
        add_handbook_features(small.drop(columns="TERMINAL_ID"))
    with pytest.raises(DataError, match="datetime"):
        add_handbook_features(small.assign(TX_DATETIME=small["TX_TIME_SECONDS"]))
    with pytest.raises(DataError, match="TX_FRAUD must be 0 or 1"):
        add_handbook_features(small.assign(TX_FRAUD=2))
    with pytest.raises(ConfigError, match="delay_days"):
        add_handbook_features(small, delay_days=-1)
    with pytest.raises(DataError, match="DataFrame"):
        add_handbook_features(small.to_numpy())


# ----------------------------------------------------------------------------- protocol


def _reference_split(df, start, train_days=7, delay_days=7, test_days=7):
    """The handbook's get_train_test_set, written as its day loop."""
    day = ((df["TX_DATETIME"] - pd.Timestamp(start)) // DAY).to_numpy()
    train = df[(day >= 0) & (day < train_days)]
    known = set(train.loc[train["TX_FRAUD"] == 1, "CUSTOMER_ID"])
    tests = []
    for d in range(test_days):
        previous = df[day == train_days + d - 1]
        known |= set(previous.loc[previous["TX_FRAUD"] == 1, "CUSTOMER_ID"])
        today = df[day == train_days + delay_days + d]
        tests.append(today[~today["CUSTOMER_ID"].isin(known)])
    return train, pd.concat(tests)


def test_split_matches_day_loop(sim):
    train, delay, test = handbook_split(sim, "2018-04-20")
    ref_train, ref_test = _reference_split(sim, "2018-04-20")
    assert train.index.equals(ref_train.index)
    assert test.index.equals(ref_test.index)
    days = sim["TX_TIME_DAYS"]
    assert set(days[delay.index]) == set(range(26, 33))
    assert len(delay) == int(((days >= 26) & (days < 33)).sum())
    # Removed test rows are exactly the cards with a fraud in the known period.
    full_test = sim[(days >= 33) & (days < 40)]
    assert len(test) < len(full_test)


def test_split_with_long_test_period_removes_frauds_of_earlier_test_days(sim):
    _, _, test = handbook_split(sim, "2018-04-10", train_days=5, delay_days=2, test_days=10)
    day = (sim["TX_DATETIME"] - pd.Timestamp("2018-04-10")) // DAY
    frauds = sim[(sim["TX_FRAUD"] == 1) & (day >= 0)]
    first_fraud = day[frauds.index].groupby(frauds["CUSTOMER_ID"]).min()
    test_day = day[test.index]
    known_since = test["CUSTOMER_ID"].map(first_fraud)
    # Kept rows: no fraud of the card on a day before test day - delay (days 0..D-3).
    assert not (known_since < test_day - 2).any()
    # Removed rows: all others of days 7..16 whose card had such a fraud.
    period = sim[(day >= 7) & (day < 17)]
    removed = period.drop(index=test.index)
    assert len(removed) > 0
    assert (removed["CUSTOMER_ID"].map(first_fraud) < day[removed.index] - 2).all()
    # Test days 10.. (D - 2 >= 8) also see frauds of earlier test days.
    late = period[day[period.index] >= 12]
    late_removed = late.drop(index=test.index.intersection(late.index))
    assert (late_removed["CUSTOMER_ID"].map(first_fraud) >= 7).any()


def test_prequential_folds_move_back_in_time(sim):
    folds = prequential_folds(sim, "2018-05-01", n_folds=3)
    starts = [train["TX_DATETIME"].min().normalize() for train, _, _ in folds]
    assert starts == [pd.Timestamp(d) for d in ("2018-05-01", "2018-04-24", "2018-04-17")]
    test_starts = [test["TX_DATETIME"].min().normalize() for _, _, test in folds]
    assert test_starts == [s + 14 * DAY for s in starts]


def test_handbook_folds_dates(sim):
    folds = handbook_folds(sim, "validation", n_folds=2, reference_start="2018-05-01")
    starts = [train["TX_DATETIME"].min().normalize() for train, _, _ in folds]
    assert starts == [pd.Timestamp("2018-04-17"), pd.Timestamp("2018-04-10")]
    folds = handbook_folds(sim, "test", n_folds=2, reference_start="2018-04-10")
    starts = [train["TX_DATETIME"].min().normalize() for train, _, _ in folds]
    assert starts == [pd.Timestamp("2018-04-17"), pd.Timestamp("2018-04-10")]
    with pytest.raises(ConfigError, match="'test' or 'validation'"):
        handbook_folds(sim, "train")


def test_split_errors(sim):
    with pytest.raises(ConfigError, match="start_train must be a date"):
        handbook_split(sim, "someday")
    with pytest.raises(ConfigError, match="test_days must be an integer >= 1"):
        handbook_split(sim, test_days=0)
    with pytest.raises(DataError, match=r"columns \['CUSTOMER_ID'\]"):
        handbook_split(sim.drop(columns="CUSTOMER_ID"))


def test_load_handbook_errors(tmp_path):
    with pytest.raises(ConfigError, match="'raw' or 'transformed'"):
        load_handbook("features")
    with pytest.raises(DataError, match="does not exist"):
        load_handbook("raw", path=tmp_path / "missing.parquet")


# ----------------------------------------------------------------------------- reference data


def _load_or_skip(kind: str) -> pd.DataFrame:
    # The data root may exist without the handbook's files: skip then, unless CI requires them.
    try:
        return load_handbook(kind)
    except DataError as err:
        if os.environ.get("CROSSKD_REQUIRE_DATA") == "1":
            pytest.fail(f"CROSSKD_REQUIRE_DATA=1 but the handbook data is missing: {err}")
        pytest.skip(f"handbook data not found: {err}")


@pytest.fixture(scope="module")
def raw_data() -> pd.DataFrame:
    return _load_or_skip("raw")


@pytest.fixture(scope="module")
def transformed() -> pd.DataFrame:
    return _load_or_skip("transformed")


@pytest.mark.data
def test_reference_files_as_documented(raw_data, transformed):
    assert list(raw_data.columns) == RAW_COLUMNS
    assert list(transformed.columns) == RAW_COLUMNS + HANDBOOK_FEATURES[1:]
    assert len(raw_data) == len(transformed) == 1_754_155
    assert int(raw_data["TX_FRAUD"].sum()) == 14_681
    subset = load_handbook("raw", columns=["TX_FRAUD"])
    assert list(subset.columns) == ["TX_FRAUD"]
    with pytest.raises(DataError, match="not in"):
        load_handbook("raw", columns=["TX_DURING_NIGHT"])


@pytest.mark.data
def test_features_reproduce_transformed_file(raw_data, transformed):
    features = add_handbook_features(raw_data)
    # The two files order rows with equal timestamps differently: align by transaction id.
    reference = transformed.set_index("TRANSACTION_ID").loc[raw_data["TRANSACTION_ID"].to_numpy()]
    # The handbook sorts each customer's rows with an unstable sort, so for a customer's rows
    # with equal timestamps (29 pairs in 1.75M rows) the order, hence the counts, is arbitrary.
    tied = raw_data.duplicated(["CUSTOMER_ID", "TX_DATETIME"], keep=False).to_numpy()
    assert tied.sum() < 100
    for name in HANDBOOK_FEATURES:
        ours = features[name].to_numpy()
        theirs = reference[name].to_numpy()
        assert np.allclose(ours[~tied], theirs[~tied], rtol=1e-9, atol=1e-9), name
        if "TERMINAL" in name or "CUSTOMER" not in name:
            assert np.allclose(ours, theirs, rtol=1e-9, atol=1e-9), name
    # On tied rows the counts agree as multisets within each tie group.
    groups = raw_data.loc[tied].groupby(["CUSTOMER_ID", "TX_DATETIME"]).indices
    for rows in groups.values():
        index = raw_data.index[tied][rows]
        for name in ("CUSTOMER_ID_NB_TX_1DAY_WINDOW", "CUSTOMER_ID_NB_TX_30DAY_WINDOW"):
            assert sorted(features.loc[index, name]) == sorted(reference[name].to_numpy()[index])


@pytest.mark.data
def test_single_split_counts(transformed):
    train, delay, test = handbook_split(transformed)
    assert (len(train), int(train["TX_FRAUD"].sum())) == (67_240, 598)
    assert (len(test), int(test["TX_FRAUD"].sum())) == (58_264, 385)
    assert train["TX_DATETIME"].min() >= pd.Timestamp("2018-07-25")
    assert test["TX_DATETIME"].min() >= pd.Timestamp("2018-08-08")
    assert delay["TX_DATETIME"].max() < pd.Timestamp("2018-08-08")
    folds = handbook_folds(transformed, "test")
    assert [f[2]["TX_DATETIME"].min().normalize() for f in folds] == [
        pd.Timestamp(d) for d in ("2018-08-29", "2018-08-22", "2018-08-15", "2018-08-08")
    ]
    assert folds[-1][2].index.equals(test.index)


@pytest.mark.data
def test_logistic_regression_matches_handbook(transformed):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    train, _, test = handbook_split(transformed)
    scaler = StandardScaler().fit(train[HANDBOOK_FEATURES])
    model = LogisticRegression(random_state=0).fit(
        scaler.transform(train[HANDBOOK_FEATURES]), train["TX_FRAUD"]
    )
    score = model.predict_proba(scaler.transform(test[HANDBOOK_FEATURES]))[:, 1]
    # Handbook chapter 3.4: 0.871 / 0.606 / 0.291.
    assert roc_auc(test["TX_FRAUD"], score) == pytest.approx(0.871, abs=0.005)
    assert average_precision(test["TX_FRAUD"], score) == pytest.approx(0.606, abs=0.005)
    assert card_precision_at_k(test.assign(score=score), k=100) == pytest.approx(0.291, abs=0.005)
