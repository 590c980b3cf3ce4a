"""TabularEncoder, MLP and TabularStudent: shapes, column checks, messages, config round trips."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from crosskd.exceptions import ConfigError, DataError, NotFittedError
from crosskd.tabular import MLP, EncodedTable, TabularEncoder, TabularStudent


def make_frame(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3.0, 1.0, n)
    amount[::7] = np.nan
    return pd.DataFrame(
        {
            "amount": amount,
            "hour": rng.integers(0, 24, n),
            "merchant": pd.Series(rng.choice(["shop", "fuel", "food", "web"], n), dtype="str"),
            "channel": pd.Series(rng.choice(["pos", "online"], n)).astype("category"),
            "foreign": rng.random(n) > 0.7,
            "constant": np.full(n, 5.0),
        }
    )


# ---------------------------------------------------------------------------------------- encoder


def test_encoder_roles_shapes_and_values():
    df = make_frame()
    enc = TabularEncoder()
    table = enc.fit_transform(df)
    assert isinstance(table, EncodedTable)
    assert enc.feature_names_in_ == list(df.columns)
    assert enc.numeric_columns_ == ["amount", "hour", "constant"]
    assert enc.categorical_columns_ == ["merchant", "channel", "foreign"]
    assert enc.nan_indicator_columns_ == ["amount"]
    assert enc.n_numeric_out_ == 4
    assert enc.numeric_feature_names_out_[-1] == "amount__isnan"
    assert enc.cardinalities_ == [5, 3, 3]
    assert table.numeric.dtype == torch.float32 and table.numeric.shape == (40, 4)
    assert table.categorical.dtype == torch.int64 and table.categorical.shape == (40, 3)
    nan_rows = torch.tensor(df["amount"].isna().to_numpy())
    # NaN -> median -> 0 after scaling, and the indicator says so.
    assert torch.all(table.numeric[nan_rows, 0] == 0)
    assert torch.equal(table.numeric[:, 3], nan_rows.float())
    # Constant column: IQR 0 and std 0 -> scale 1, centred at 0.
    assert torch.all(table.numeric[:, 2] == 0)
    assert table.numeric.abs().max() <= enc.clip
    # Known categories are 1..k, never 0, in training.
    assert table.categorical.min() >= 1
    assert enc.last_report_["nan_counts"]["amount"] == int(nan_rows.sum())


def test_encoder_robust_scaling_and_clip():
    x = np.concatenate([np.arange(100.0), [1e6]])
    enc = TabularEncoder(clip=3.0).fit(pd.DataFrame({"x": x}))
    q25, q50, q75 = np.percentile(x, [25, 50, 75])
    assert enc.center_ == [pytest.approx(q50)]
    assert enc.scale_ == [pytest.approx(q75 - q25)]
    out = enc.transform(pd.DataFrame({"x": x})).numeric[:, 0]
    assert out[-1] == pytest.approx(3.0)
    assert enc.last_report_["clipped_counts"] == {"x": 1}
    assert enc.transform(pd.DataFrame({"x": [q50]})).numeric.item() == pytest.approx(0.0)


def test_default_clip_keeps_the_rare_values_of_a_zero_inflated_column_apart():
    """A rate that is 0 on 99 % of the rows (a terminal's recent fraud share) has interquartile
    range 0 and is scaled by its standard deviation: its rare high values lie 10-16 deviations
    out. The default clip must not flatten them (at 10 it did, and cost the fraud student AP),
    while a wild value (a data error) is still clipped."""
    rng = np.random.default_rng(0)
    rate = np.zeros(10_000)
    rate[:100] = np.linspace(0.05, 1.0, 100)
    rng.shuffle(rate)
    enc = TabularEncoder().fit(pd.DataFrame({"rate": rate}))
    assert enc.scale_ == [pytest.approx(rate.std())]
    high = pd.DataFrame({"rate": [0.6, 0.8, 1.0]})
    z = enc.transform(high).numeric[:, 0].numpy()
    assert z[0] > 10 and np.all(np.diff(z) > 0)  # beyond the old clip, and still ordered
    assert enc.last_report_["clipped_counts"] == {"rate": 0}
    wild = enc.transform(pd.DataFrame({"rate": [1e4]})).numeric.item()
    assert wild == pytest.approx(enc.clip) and enc.clip == 100.0


def test_encoder_unseen_and_missing_categories_go_to_zero():
    enc = TabularEncoder().fit(make_frame())
    new = make_frame(6, seed=1)
    new["merchant"] = pd.Series(["shop", "casino", "casino", None, "web", "atm"], dtype="str")
    table = enc.transform(new)
    codes = table.categorical[:, enc.categorical_columns_.index("merchant")]
    assert codes.tolist()[1:4] == [0, 0, 0] and codes[5] == 0
    assert codes[0] > 0 and codes[4] > 0
    assert enc.last_report_["unseen_categories"]["merchant"] == 3
    assert enc.last_report_["missing_categories"]["merchant"] == 1


def test_encoder_min_frequency_and_forced_categorical():
    df = pd.DataFrame({"code": [1, 1, 1, 2, 2, 3], "x": np.arange(6.0), "flag": [True, False] * 3})
    enc = TabularEncoder(categorical=["code"], min_frequency=2).fit(df)
    assert enc.categorical_columns_ == ["code"]
    assert enc.numeric_columns_ == ["x", "flag"]  # a bool not named is a 0/1 number
    assert enc.categories_["code"] == [1, 2]
    assert enc.transform(df).categorical[:, 0].tolist() == [1, 1, 1, 2, 2, 0]


def test_encoder_reordered_columns_give_identical_output_and_extra_columns_are_reported():
    df = make_frame()
    enc = TabularEncoder().fit(df)
    a = enc.transform(df)
    shuffled = df[list(reversed(df.columns))].assign(unused=1.0)
    b = enc.transform(shuffled)
    assert torch.equal(a.numeric, b.numeric) and torch.equal(a.categorical, b.categorical)
    assert enc.last_report_["extra_columns"] == ["unused"]


def test_encoder_missing_columns_message():
    enc = TabularEncoder().fit(make_frame())
    with pytest.raises(
        DataError, match=r"lacks 2 column\(s\) the encoder was fitted on: \['hour', 'merchant'\]"
    ):
        enc.transform(make_frame().drop(columns=["hour", "merchant"]))
    with pytest.raises(DataError, match="Add the missing columns"):
        enc.transform(make_frame().drop(columns=["hour"]))


def test_encoder_inf_message_at_fit_and_transform():
    df = make_frame()
    bad = df.copy()
    bad.loc[[1, 2], "amount"] = [np.inf, -np.inf]
    with pytest.raises(DataError, match=r"Column 'amount' has 2 infinite value.*Replace them"):
        TabularEncoder().fit(bad)
    enc = TabularEncoder().fit(df)
    with pytest.raises(DataError, match=r"'amount' has 2 infinite.*during transform.*drop"):
        enc.transform(bad)


def test_encoder_datetime_column_refused():
    df = pd.DataFrame({"x": [1.0, 2.0], "when": pd.to_datetime(["2024-01-01", "2024-01-02"])})
    with pytest.raises(
        DataError, match=r"Column 'when' has dtype datetime64.*Convert it to numbers.*drop"
    ):
        TabularEncoder().fit(df)


def test_encoder_numpy_arrays_and_wrong_width():
    X = np.random.default_rng(0).normal(size=(30, 3))
    X[0, 1] = np.nan
    enc = TabularEncoder().fit(X)
    assert enc.feature_names_in_ == ["x0", "x1", "x2"]
    assert enc.transform(X).numeric.shape == (30, 4)
    assert enc.categorical_columns_ == [] and enc.transform(X).categorical.shape == (30, 0)
    with pytest.raises(DataError, match=r"array has 2 columns but the encoder was fitted on 3"):
        enc.transform(X[:, :2])
    with pytest.raises(DataError, match=r"2-D array"):
        TabularEncoder().fit(X[:, 0])
    with pytest.raises(DataError, match="must be numeric"):
        TabularEncoder().fit(np.array([["a", "b"]], dtype=object))


def test_encoder_not_fitted_and_bad_settings():
    with pytest.raises(NotFittedError, match=r"before fit\. Call fit\(X\)"):
        TabularEncoder().transform(make_frame())
    with pytest.raises(ConfigError, match="clip must be"):
        TabularEncoder(clip=0).fit(make_frame())
    with pytest.raises(ConfigError, match="min_frequency must be >= 1"):
        TabularEncoder(min_frequency=0).fit(make_frame())
    with pytest.raises(DataError, match=r"categorical names columns \['nope'\]"):
        TabularEncoder(categorical=["nope"]).fit(make_frame())
    with pytest.raises(DataError, match="0 rows"):
        TabularEncoder().fit(make_frame().iloc[:0])


def test_encoder_to_dict_round_trip_is_json_and_identical():
    df = make_frame()
    df["code"] = np.arange(len(df)) % 3
    enc = TabularEncoder(categorical=["code", "merchant", "channel", "foreign"]).fit(df)
    d = json.loads(json.dumps(enc.to_dict()))
    back = TabularEncoder.from_dict(d)
    assert back.categories_ == enc.categories_
    assert [type(v) for v in back.categories_["foreign"]] == [bool, bool]
    assert [type(v) for v in back.categories_["code"]] == [int, int, int]
    new = make_frame(12, seed=3).assign(code=[0, 1, 2, 5] * 3)
    a, b = enc.transform(new), back.transform(new)
    assert torch.equal(a.numeric, b.numeric) and torch.equal(a.categorical, b.categorical)
    with pytest.raises(ConfigError, match="Expected a dict from TabularEncoder.to_dict"):
        TabularEncoder.from_dict({"format": "other"})


# ---------------------------------------------------------------------------------------- students


def test_mlp_shapes_config_and_autocast():
    mlp = MLP(5, 3, hidden=(8, 4), dropout=0.1, batch_norm=True)
    x = torch.randn(6, 5)
    assert mlp(x).shape == (6, 3)
    assert mlp.num_parameters() == sum(p.numel() for p in mlp.parameters())
    clone = MLP.from_config(json.loads(json.dumps(mlp.config())))
    assert clone.config() == mlp.config()
    clone.load_state_dict(mlp.state_dict())
    mlp.eval(), clone.eval()
    assert torch.equal(mlp(x), clone(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert mlp(x).shape == (6, 3)
    with pytest.raises(DataError, match=r"expects input of shape \(batch, 5\)"):
        mlp(torch.randn(6, 4))
    with pytest.raises(ConfigError, match="num_classes must be an integer >= 2"):
        MLP(5, 1)


def test_student_build_forward_and_parameters():
    df = make_frame()
    student = TabularStudent(hidden=(8,), num_classes=2)
    assert not student.is_built
    with pytest.raises(NotFittedError, match=r"build\(X, num_classes\) or Distiller.fit"):
        student.encode(df)
    assert student.build(df, 2) is student and student.is_built
    numeric, categorical = student.encode(df)
    assert numeric.shape == (40, 4) and categorical.shape == (40, 3)
    logits = student(numeric, categorical)
    assert logits.shape == (40, 2) and logits.dtype == torch.float32
    # Embedding widths: min(16, (cardinality + 1) // 2) for cardinalities 5, 3, 3 -> 3, 2, 2.
    assert [e.embedding_dim for e in student.embeddings] == [3, 2, 2]
    assert student.mlp.in_features == 4 + 7
    expected = sum(p.numel() for p in student.parameters())
    assert student.num_parameters() == expected
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert student(numeric, categorical).shape == (40, 2)
    with pytest.raises(DataError, match=r"categorical must have shape \(40, 3\)"):
        student(numeric, categorical[:, :2])


def test_student_num_classes_mismatch_and_fixed_embedding_dim():
    df = make_frame()
    with pytest.raises(DataError, match=r"has 3 classes.*Give the student num_classes=3"):
        TabularStudent(num_classes=2).build(df, 3)
    student = TabularStudent(embedding_dim=4).build(df, 3)
    assert [e.embedding_dim for e in student.embeddings] == [4, 4, 4]
    assert student(*student.encode(df)).shape == (40, 3)


def test_student_numeric_only_with_prefitted_encoder():
    X = np.random.default_rng(1).normal(size=(20, 3))
    enc = TabularEncoder().fit(X)
    student = TabularStudent(hidden=(4,), encoder=enc).build(None, 2)
    numeric, categorical = student.encode(X)
    assert categorical.shape == (20, 0)
    assert student(numeric, categorical).shape == (20, 2)
    assert student(numeric).shape == (20, 2)


def test_student_config_round_trip():
    df = make_frame()
    student = TabularStudent(hidden=(8, 4), dropout=0.2, num_classes=2).build(df, 2)
    cfg = json.loads(json.dumps(student.config()))
    clone = TabularStudent.from_config(cfg)
    assert clone.is_built and clone.config() == student.config()
    clone.load_state_dict(student.state_dict())
    student.eval(), clone.eval()
    assert torch.equal(student(*student.encode(df)), clone(*clone.encode(df)))
    with pytest.raises(ConfigError, match=r"unknown keys \['colour'\]"):
        TabularStudent.from_config({**cfg, "colour": "red"})
