"""The trainer's fast paths and per-device defaults give the results of the plain paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from toy import LinearTeacher

import crosskd.engine.batches as batches_module
from crosskd import MLP, Distiller
from crosskd.losses import distillation_loss
from crosskd.tasks.classification import ClassificationTask
from crosskd.trainer import auto_batch_size


def _data(n=600, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    W = rng.normal(size=(d, k)) * 2.0
    y = (X @ W + rng.gumbel(size=(n, k))).argmax(1)
    return X, y, W


def _fit(X, y, W, **kwargs):
    torch.manual_seed(0)
    settings = dict(epochs=2, batch_size=64, progress=False, device="cpu", early_stopping=None)
    settings.update(kwargs)
    return Distiller(LinearTeacher(W), MLP(X.shape[1], W.shape[1], hidden=(16,)), **settings).fit(
        X, y
    )


def test_cpu_defaults_resolve_to_the_measured_ones():
    X, y, W = _data()
    d = _fit(X, y, W, batch_size="auto", precision="auto")
    # 600 rows: batches of 16 give 37 steps per epoch (>= 32)
    assert (d.batch_size_, d.lr_, d.precision_) == (16, 3e-3, "32")


def test_auto_batch_size_per_device():
    assert auto_batch_size("cpu", 10_000_000) == 512
    assert auto_batch_size("cpu", 16_384) == 512
    assert auto_batch_size("cpu", 4_000) == 64  # 62 steps per epoch
    assert auto_batch_size("cpu", 142) == 16  # a small table: 9 steps, not 1
    assert auto_batch_size("cuda", 1_000) == 512  # small tables keep small batches
    assert auto_batch_size("cuda", 400_000) == 4096  # >= 64 steps per epoch
    assert auto_batch_size("cuda", 2_000_000) == 16384  # capped


def test_auto_epochs_and_patience_follow_the_steps():
    from crosskd.trainer import auto_epochs, auto_patience

    assert auto_epochs(9) == 300  # capped
    assert auto_epochs(50) == 200  # 10,000 steps
    assert auto_epochs(10_000) == 20  # at least 20 epochs
    assert auto_patience(300) == 30 and auto_patience(20) == 5


def test_permuting_once_equals_gathering_per_step(monkeypatch):
    X, y, W = _data()
    fast = _fit(X, y, W)
    monkeypatch.setattr(batches_module, "PERMUTE_ONCE_BYTES", -1)  # force the per-step gather
    slow = _fit(X, y, W)
    for a, b in zip(
        fast.student_.state_dict().values(), slow.student_.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


@pytest.mark.parametrize("alpha", [0.0, 0.4, 1.0])
@pytest.mark.parametrize("class_weight", [None, torch.tensor([0.5, 2.0, 1.0])])
def test_step_loss_equals_distillation_loss(alpha, class_weight):
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(32, 3, generator=gen, requires_grad=True)
    t = torch.randn(32, 3, generator=gen) * 3
    target = torch.randint(0, 3, (32,), generator=gen)
    target[:5] = -1  # unlabelled rows
    task = ClassificationTask(
        temperature=2.5, alpha=alpha, num_classes=3, class_weight=class_weight, focal_gamma=1.0
    )
    expected = distillation_loss(
        s, t, target, 2.5, alpha, class_weight=class_weight, focal_gamma=1.0
    )
    for cached, teacher in ((False, t), (True, task.cache_targets(t))):
        got = task.loss(s, teacher, (target,), cached)
        for key in ("loss", "kd", "ce"):
            torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6)
