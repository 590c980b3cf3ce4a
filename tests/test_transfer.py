"""crosskd.tabular.transfer: MUNGE and jitter transfer sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import crosskd
from crosskd.exceptions import ConfigError, DataError
from crosskd.tabular.transfer import _nearest_neighbours, jitter, munge


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 400
    return pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 30.0, n),
            "risk": rng.uniform(0.0, 1.0, n),
            "count": rng.integers(0, 50, n).astype(np.int64),  # many values: continuous
            "weekend": rng.integers(0, 2, n).astype(np.int64),  # a flag: categorical
            "country": rng.choice(["FR", "BE", "NL"], n),
            "missing": np.where(rng.random(n) < 0.1, np.nan, rng.normal(0.0, 1.0, n)),
        }
    )


@pytest.mark.parametrize("generator", [munge, jitter])
def test_shape_columns_and_dtypes(table, generator):
    out = generator(table, n_samples=250, seed=1)
    assert isinstance(out, pd.DataFrame)
    assert out.shape == (250, table.shape[1])
    assert list(out.columns) == list(table.columns)
    assert list(out.dtypes) == list(table.dtypes)
    assert (out.index == np.arange(250)).all()


@pytest.mark.parametrize("generator", [munge, jitter])
def test_deterministic_for_a_seed(table, generator):
    a = generator(table, n_samples=100, seed=3)
    b = generator(table, n_samples=100, seed=3)
    c = generator(table, n_samples=100, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


@pytest.mark.parametrize("generator", [munge, jitter])
def test_values_in_plausible_ranges(table, generator):
    out = generator(table, n_samples=2000, seed=0)
    for name in ("amount", "risk", "count", "missing"):
        lo, hi = table[name].min(), table[name].max()
        assert out[name].min() >= lo and out[name].max() <= hi, name
    # Synthetic rows resemble the data: medians within a tenth of the spread.
    for name in ("amount", "risk", "count"):
        spread = table[name].quantile(0.75) - table[name].quantile(0.25)
        assert abs(out[name].median() - table[name].median()) < 0.1 * spread, name


@pytest.mark.parametrize("generator", [munge, jitter])
def test_categorical_columns_take_only_seen_values(table, generator):
    out = generator(table, n_samples=2000, seed=0)
    assert set(out["country"]) <= set(table["country"])
    assert set(out["weekend"]) <= {0, 1}
    forced = generator(table, n_samples=500, categorical=["count"], seed=0)
    assert set(forced["count"]) <= set(table["count"])


def test_munge_mixes_a_row_with_its_neighbour():
    # Two far-apart pairs: every synthetic value lies between a row and its neighbour.
    X = np.array([[0.0, 0.0], [1.0, 1.0], [100.0, 100.0], [101.0, 103.0]])
    out = munge(X, n_samples=500, p=0.5, s=1000.0, seed=0)
    assert isinstance(out, np.ndarray) and out.shape == (500, 2) and out.dtype == X.dtype
    low = out[:, 0] < 50
    assert ((out[low] >= -0.01) & (out[low] <= 1.01)).all()
    assert ((out[~low, 0] >= 99.99) & (out[~low, 0] <= 101.01)).all()
    assert ((out[~low, 1] >= 99.99) & (out[~low, 1] <= 103.01)).all()
    # p = 0 returns real rows; p = 1 with a huge s returns (almost) the neighbours.
    same = munge(X, n_samples=50, p=0.0, seed=0)
    assert all(any(np.array_equal(r, x) for x in X) for r in same)


def test_nearest_neighbour_is_another_row():
    values = np.array([[0.0], [0.0], [5.0], [5.1]])
    idx = _nearest_neighbours(values, np.ones(1), np.zeros((4, 0), dtype=np.int64))
    assert list(idx) == [1, 0, 3, 2]


def test_exported():
    assert crosskd.munge is munge
    assert crosskd.jitter is jitter


def test_errors(table):
    with pytest.raises(ConfigError, match="n_samples must be a positive integer"):
        munge(table, n_samples=0)
    with pytest.raises(ConfigError, match=r"p must be a probability in \[0, 1\]"):
        munge(table, n_samples=5, p=1.5)
    with pytest.raises(ConfigError, match="s must be a positive number"):
        munge(table, n_samples=5, s=0)
    with pytest.raises(ConfigError, match="scale must be a number >= 0"):
        jitter(table, n_samples=5, scale=-1)
    with pytest.raises(DataError, match="at least 2 real rows"):
        munge(table.iloc[:1], n_samples=5)
    with pytest.raises(DataError, match="not in the data"):
        munge(table, n_samples=5, categorical=["nope"])
    with pytest.raises(DataError, match="2-D table"):
        munge(np.zeros(5), n_samples=5)
    with pytest.raises(DataError, match="holds dates"):
        munge(pd.DataFrame({"t": pd.date_range("2020", periods=3)}), n_samples=2)
