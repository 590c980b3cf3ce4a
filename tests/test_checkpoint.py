"""Checkpoint and resume: a run killed with SIGKILL mid-epoch resumes to bitwise the same weights.

Also: the checkpoint holds no pickle, resuming checks that data, settings and teacher are the run's
own, and every bad resume input gets a clear error.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
import torch
from torch import nn
from toy import LinearTeacher, kill_when_hung, load_worker

from crosskd import Distiller
from crosskd.checkpoint import CHECKPOINT_NAME, load_checkpoint
from crosskd.exceptions import BundleError, ConfigError, DataError

HERE = Path(__file__).parent


def _worker():
    return load_worker("resume_worker")


def _equal_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path, single_thread):
    worker = _worker()
    X, y = worker.make_frame(400, seed=1)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 7, "seed": 0, "num_threads": 1},
        lgb.Dataset(X.astype({"merchant": "category"}), y),
        num_boost_round=10,
    )
    model = tmp_path / "teacher.txt"
    booster.save_model(str(model))

    # 1. A process that hangs when the 4th step of epoch 3 starts (after the epoch-2 checkpoint).
    killed = tmp_path / "killed"
    killed.mkdir()
    hang_at = 2 * worker.STEPS_PER_EPOCH + 4
    argv = [sys.executable, str(HERE / "resume_worker.py"), str(killed), str(model),
            "--hang-at-step", str(hang_at)]  # fmt: skip
    assert kill_when_hung(argv, killed, timeout=120) == -signal.SIGKILL
    state = load_checkpoint(killed / "ckpt")
    assert state.epoch == 2 and not state.stopped
    assert len(state.history) == 2

    # 2. Resume in this process from the killed run's checkpoint, 3. run uninterrupted elsewhere.
    resumed = worker.run(killed, model, resume=True)
    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    uninterrupted = worker.run(fresh_dir, model, resume=None)

    assert _equal_state(resumed.student_, uninterrupted.student_)
    assert len(resumed.history_) == len(uninterrupted.history_) == worker.EPOCHS
    for a, b in zip(resumed.history_, uninterrupted.history_, strict=True):
        assert {k: v for k, v in a.items() if k != "epoch_seconds"} == {
            k: v for k, v in b.items() if k != "epoch_seconds"
        }
    assert resumed.best_epoch_ == uninterrupted.best_epoch_
    assert load_checkpoint(killed / "ckpt").epoch == worker.EPOCHS


# --------------------------------------------------------------------------------------------------
# in-process checks on a plain torch student


def _data(n=300, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    W = rng.normal(size=(d, k)) * 2.0
    y = (X @ W + rng.gumbel(size=(n, k))).argmax(1)
    return X, y, W


def _net(d=4, k=3):
    torch.manual_seed(11)
    return nn.Sequential(
        nn.Linear(d, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, k)
    )


class Crash(Exception):
    pass


def _distiller(W, student, tmp_path, **kwargs):
    settings = dict(
        epochs=8, batch_size=32, lr=3e-2, early_stopping=2, val_metric="loss", seed=1,
        progress=False, device="cpu", checkpoint_dir=tmp_path / "ckpt",
    )  # fmt: skip
    settings.update(kwargs)
    return Distiller(LinearTeacher(W), student, **settings)


def _crash_after(student: nn.Module, steps: int) -> None:
    calls = {"n": 0}

    def hook(module, args):
        if module.training:
            calls["n"] += 1
            if calls["n"] > steps:
                raise Crash

    student.register_forward_pre_hook(hook)


def test_crash_then_resume_with_early_stopping_and_batchnorm(tmp_path, single_thread):
    X, y, W = _data()
    train, val = slice(0, 250), slice(250, 300)
    reference = _distiller(W, _net(), tmp_path / "ref").fit(
        X[train], y[train], eval_set=(X[val], y[val])
    )
    # 250 rows, batch 32: 8 steps per epoch; crash in the middle of epoch 3, with checkpoints
    # every 2 epochs (so epoch 3 is trained again from the epoch-2 checkpoint).
    crashing = _net()
    _crash_after(crashing, 2 * 8 + 3)
    with pytest.raises(Crash):
        _distiller(W, crashing, tmp_path, checkpoint_every=2).fit(
            X[train], y[train], eval_set=(X[val], y[val])
        )
    assert load_checkpoint(tmp_path / "ckpt").epoch == 2
    resumed = _distiller(W, _net(), tmp_path, checkpoint_every=2).fit(
        X[train], y[train], eval_set=(X[val], y[val]), resume=tmp_path / "ckpt"
    )
    assert _equal_state(resumed.student_, reference.student_)
    assert resumed.best_epoch_ == reference.best_epoch_
    assert [h["val_loss"] for h in resumed.history_] == [h["val_loss"] for h in reference.history_]
    # Resuming a finished (or early-stopped) run trains nothing and gives the same weights.
    again = _distiller(W, _net(), tmp_path).fit(
        X[train], y[train], eval_set=(X[val], y[val]), resume=True
    )
    assert _equal_state(again.student_, reference.student_)
    assert len(again.history_) == len(reference.history_)


def test_checkpoint_is_safetensors_plus_json_without_pickle(tmp_path):
    X, y, W = _data(n=100)
    _distiller(W, _net(), tmp_path, epochs=2).fit(X, y)
    path = tmp_path / "ckpt" / CHECKPOINT_NAME
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    doc = json.loads(header["__metadata__"]["crosskd"])
    assert doc["format"] == "crosskd-checkpoint" and doc["epoch"] == 2
    assert {"optimizer", "scheduler", "rng", "early_stopping", "history", "run"} <= set(doc)
    names = set(header) - {"__metadata__"}
    assert {"rng.torch", "rng.generator", "rng.numpy", "rng.python"} <= names
    assert any(n.startswith("optimizer.") and n.endswith(".exp_avg_sq") for n in names)
    assert b"\x80\x04" not in data[:2] and not data.startswith(b"PK")  # not a torch.save / pickle
    assert not list((tmp_path / "ckpt").glob("*.tmp"))  # atomic: no temporary file left


def test_resume_true_without_a_checkpoint_starts_afresh(tmp_path):
    X, y, W = _data(n=100)
    d = _distiller(W, _net(), tmp_path, epochs=2).fit(X, y, resume=True)
    assert len(d.history_) == 2
    assert (tmp_path / "ckpt" / CHECKPOINT_NAME).is_file()


def test_resume_refuses_other_settings_data_or_teacher(tmp_path):
    X, y, W = _data(n=100)
    _distiller(W, _net(), tmp_path, epochs=2).fit(X, y)
    with pytest.raises(ConfigError, match=r"other settings \(epochs=2 in the checkpoint, 3 now\)"):
        _distiller(W, _net(), tmp_path, epochs=3).fit(X, y, resume=True)
    with pytest.raises(DataError, match="the training labels differ from the run that wrote it"):
        _distiller(W, _net(), tmp_path, epochs=2).fit(X, (y + 1) % 3, resume=True)
    with pytest.raises(DataError, match="the training rows and the teacher's targets differ"):
        _distiller(W, _net(), tmp_path, epochs=2).fit(X * 2, y, resume=True)
    with pytest.raises(DataError, match="the teacher's targets differ"):
        _distiller(W * 2, _net(), tmp_path, epochs=2).fit(X, y, resume=True)


def test_bad_resume_inputs(tmp_path):
    X, y, W = _data(n=60)
    with pytest.raises(ConfigError, match="resume=True continues from checkpoint_dir, but"):
        _distiller(W, _net(), tmp_path, checkpoint_dir=None).fit(X, y, resume=True)
    with pytest.raises(BundleError, match="No checkpoint at"):
        _distiller(W, _net(), tmp_path).fit(X, y, resume=tmp_path / "nope.safetensors")
    with pytest.raises(ConfigError, match="resume must be None, True or the path"):
        _distiller(W, _net(), tmp_path).fit(X, y, resume=3)
    with pytest.raises(ConfigError, match="checkpoint_every must be a positive number"):
        _distiller(W, _net(), tmp_path, checkpoint_every=0).fit(X, y)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="checkpoint_dir .* is a file"):
        _distiller(W, _net(), tmp_path, checkpoint_dir=tmp_path / "file").fit(X, y)
    # A student bundle is not a checkpoint.
    d = _distiller(W, _net(), tmp_path, epochs=1, checkpoint_dir=None).fit(X, y)
    from crosskd.tabular import MLP

    bundle_student = MLP(4, 3, (8,))
    from crosskd.io import save_bundle

    bundle = save_bundle(tmp_path / "student", bundle_student)
    with pytest.raises(BundleError, match="not a crosskd training checkpoint"):
        d.fit(X, y, resume=bundle)
    # Truncated and pickled checkpoints are refused without being unpickled.
    _distiller(W, _net(), tmp_path, epochs=1).fit(X, y)
    ckpt = tmp_path / "ckpt" / CHECKPOINT_NAME
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(ckpt.read_bytes()[:-100])
    with pytest.raises(BundleError, match="truncated"):
        _distiller(W, _net(), tmp_path, epochs=1).fit(X, y, resume=truncated)
    pickled = tmp_path / "pickled.safetensors"
    torch.save({"model": _net().state_dict()}, pickled)
    with pytest.raises(BundleError, match="never loads those"):
        _distiller(W, _net(), tmp_path, epochs=1).fit(X, y, resume=pickled)
    assert os.listdir(tmp_path / "ckpt") == [CHECKPOINT_NAME]
