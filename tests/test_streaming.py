"""Parquet streaming: a table read in row groups, teacher logits cached on disk with fingerprints."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from crosskd import Distiller, LightGBMTeacher, ParquetStream, TabularStudent
from crosskd.exceptions import ConfigError, DataError
from crosskd.metrics import roc_auc


def _table(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 40.0, n),
            "hour": rng.integers(0, 24, n).astype(float),
            "merchant": rng.choice(["shop", "fuel", "web", "atm"], n),
        }
    )
    score = 0.03 * (frame["amount"] - 80) + 1.5 * (frame["merchant"] == "web") + rng.normal(size=n)
    frame["label"] = (score > 1.0).astype(int)
    return frame


def _write(frame, path, row_group_size=250):
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group_size
    )
    return path


def _teacher(frame, rounds=15):
    X = frame.drop(columns="label").astype({"merchant": "category"})
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 7, "seed": 0, "num_threads": 1},
        lgb.Dataset(X, frame["label"]),
        num_boost_round=rounds,
    )
    return LightGBMTeacher(booster)


def _distiller(teacher, **kwargs):
    settings = dict(epochs=2, batch_size=128, progress=False, device="cpu", early_stopping=None)
    settings.update(kwargs)
    return Distiller(teacher, TabularStudent(hidden=(16,)), **settings)


def test_stream_trains_caches_teacher_logits_and_reuses_them(tmp_path):
    frame = _table()
    path = _write(frame, tmp_path / "train.parquet")
    teacher = _teacher(frame)
    stream = ParquetStream(path, target="label", batch_rows=600, sample_rows=1000)
    assert stream.num_rows == 3000 and len(stream.row_group_sizes) == 12
    val = _table(600, seed=1)
    d = _distiller(teacher).fit(stream, eval_set=(val.drop(columns="label"), val["label"]))
    assert len(d.history_) == 2 and d.teacher_cache_["reused"] is False
    assert (tmp_path / "train.parquet.crosskd" / "teacher-logits.npy").is_file()
    cached = np.load(tmp_path / "train.parquet.crosskd" / "teacher-logits.npy")
    np.testing.assert_allclose(
        cached, teacher.logits(frame.drop(columns="label")).numpy(), rtol=1e-6
    )
    assert roc_auc(val["label"].to_numpy(), d.predict_proba(val.drop(columns="label"))[:, 1]) > 0.8

    again = _distiller(teacher).fit(stream)
    assert again.teacher_cache_["reused"] is True
    other = _distiller(_teacher(frame, rounds=5)).fit(stream)
    assert other.teacher_cache_["reused"] is False
    assert "teacher differs" in other.teacher_cache_["reason"]


def test_stream_uses_every_row_once_per_epoch(tmp_path):
    frame = _table(1000)
    path = _write(frame, tmp_path / "t.parquet")
    student = TabularStudent(hidden=(16,))
    seen = []
    student.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].detach().clone()) if module.training else None
    )
    d = Distiller(
        _teacher(frame), student, epochs=2, batch_size=128, progress=False, device="cpu"
    ).fit(ParquetStream(path, "label", batch_rows=300))
    assert d.n_train_rows_ == 1000 and d.n_transfer_rows_ == 0
    # 1000 rows in batches of 128: 7 full batches and one of 104, per epoch (buffers of 300 rows
    # carry their remainders over).
    assert [len(batch) for batch in seen] == ([128] * 7 + [104]) * 2

    # Row identities: the rows fed in each epoch are exactly the table's rows, each once (the
    # encoded numeric columns identify a row: "amount" is continuous, so all 1000 differ).
    def rows(tensor):
        return sorted(map(tuple, np.round(tensor.numpy().astype(np.float64), 5).tolist()))

    expected = rows(d.student_.encode(frame.drop(columns="label"))[0])
    assert len(set(expected)) == 1000
    epochs = [torch.cat(seen[:8]), torch.cat(seen[8:])]
    for fed in epochs:
        assert rows(fed) == expected
    assert not torch.equal(epochs[0], epochs[1])  # shuffled differently in each epoch
    assert np.isfinite(d.history_[0]["train_loss"])


def test_stream_errors(tmp_path):
    frame = _table(500)
    path = _write(frame, tmp_path / "t.parquet")
    with pytest.raises(DataError, match="target column 'nope' is not in"):
        ParquetStream(path, target="nope")
    with pytest.raises(ConfigError, match="batch_rows must be a positive integer"):
        ParquetStream(path, target="label", batch_rows=0)
    with pytest.raises(ConfigError, match="reads the labels from the stream's target column"):
        _distiller(_teacher(frame)).fit(ParquetStream(path, "label"), frame["label"])
