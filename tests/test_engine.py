"""The one engine: every task trains through the same loop, with the same capabilities.

Text lines get what tables had: kill-and-resume with bitwise-equal weights, DDP under torchrun,
cached teacher outputs when inputs are not augmented, validation terms equal to the training terms,
and ``fit`` leaves the student passed in untouched.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from toy import LinearTeacher, kill_when_hung, load_worker, run_torchrun

from crosskd import MLP, Distiller
from crosskd.checkpoint import load_checkpoint
from crosskd.teachers import ModuleTeacher
from crosskd.vision import CRNN, Alphabet, CTCDistiller, RandomShift

HERE = Path(__file__).parent
PACKAGE = HERE.parent / "crosskd"


def _worker():
    return load_worker("ctc_worker")


def _equal_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _without_time(history):
    return [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in history]


def test_one_backward_call_in_the_library():
    """One place runs the optimisation step of every task: the engine's loop."""
    calls = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\.backward\(", line) and not line.lstrip().startswith("#"):
                calls.append(f"{path.relative_to(PACKAGE)}:{number}")
    assert len(calls) == 1 and calls[0].startswith("engine/loop.py"), calls


def test_textline_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path):
    worker = _worker()
    killed = tmp_path / "killed"
    killed.mkdir()
    # hangs when the 3rd step of epoch 3 starts: after the epoch-2 checkpoint, which follows the
    # plateau check of epoch 2 (a restart, if any, is in the checkpoint too)
    hang_at = 2 * worker.STEPS_PER_EPOCH + 3
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, str(HERE / "ctc_worker.py"), str(killed), "--hang-at-step",
            str(hang_at)]  # fmt: skip
    assert kill_when_hung(argv, killed, env=env) == -signal.SIGKILL
    state = load_checkpoint(killed / "ckpt")
    assert len(state.history) == 2 and not state.stopped
    assert state.extra["augment"] is not None  # the augmentation's generators are in it

    resumed = worker.run(killed, resume=True)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    uninterrupted = worker.run(fresh, resume=None)
    assert _equal_state(resumed.student_, uninterrupted.student_)
    assert _without_time(resumed.history_) == _without_time(uninterrupted.history_)
    assert resumed.best_epoch_ == uninterrupted.best_epoch_
    assert resumed.restarts_ == uninterrupted.restarts_


@pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with gloo is not available",
)
def test_textlines_train_under_torchrun_with_two_gloo_ranks(tmp_path):
    worker = _worker()
    proc = run_torchrun("ctc_worker.py", str(tmp_path), "--ddp", timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["history"] == ranks[1]["history"]
    assert ranks[0]["best_epoch"] == ranks[1]["best_epoch"]
    np.testing.assert_array_equal(ranks[0]["logits"], ranks[1]["logits"])
    assert (tmp_path / "student.safetensors").is_file()
    assert (tmp_path / "ckpt" / "checkpoint.safetensors").is_file()
    # Two ranks of 8 lines train nearly like one process with 16 lines per step: not exactly,
    # because the CRNN's BatchNorm layers normalise each rank's 8 lines on their own (measured:
    # 0.15 % apart in the first epoch's loss); a rank that trained on its own shard only, or
    # gradients not averaged, would be far off.
    single = worker.run(None, batch_size=worker.BATCH_SIZE, augment=False, distributed=False)
    assert len(ranks[0]["history"]) == len(single.history_)
    for a, b in zip(ranks[0]["history"], _without_time(single.history_), strict=True):
        for key in ("train_loss", "val_loss"):
            assert a[key] == pytest.approx(b[key], rel=2e-2), key
    losses = [h["train_loss"] for h in ranks[0]["history"]]
    assert losses[-1] < losses[0]


class _CountingCRNN(CRNN):
    calls = 0

    def forward(self, x):
        type(self).calls += x.shape[0]
        return super().forward(x)


def _lines():
    worker = _worker()
    x, y = worker.make_lines(40, seed=2)
    return x, y, Alphabet.from_labels(y)


def test_textline_teacher_outputs_are_cached_without_augmentation():
    x, y, alphabet = _lines()
    torch.manual_seed(0)
    teacher = _CountingCRNN("tiny", num_classes=alphabet.num_classes, width=4, hidden=8, height=16)
    student = CRNN("tiny", num_classes=alphabet.num_classes, width=4, hidden=8, height=16)
    settings = dict(alphabet=alphabet, alpha=0.5, mode="both", epochs=3, batch_size=8,
                    device="cpu", progress=False, plateau_restarts=0, threads=1)  # fmt: skip
    _CountingCRNN.calls = 0
    CTCDistiller(teacher, student, **settings).fit(x[:32], y[:32], eval_set=(x[32:], y[32:]))
    assert _CountingCRNN.calls == 32 + 8  # the training and the validation lines, once each
    _CountingCRNN.calls = 0
    CTCDistiller(teacher, student, augment=RandomShift(1), **settings).fit(
        x[:32], y[:32], eval_set=(x[32:], y[32:])
    )
    assert _CountingCRNN.calls == 3 * 32 + 8  # online: every augmented line, every epoch


def test_validation_reports_the_training_terms_for_every_task():
    x, y, alphabet = _lines()
    torch.manual_seed(0)
    teacher = CRNN("tiny", num_classes=alphabet.num_classes, width=4, hidden=8, height=16)
    student = CRNN("tiny", num_classes=alphabet.num_classes, width=4, hidden=8, height=16)
    ctc = CTCDistiller(teacher, student, alphabet=alphabet, alpha=0.5, epochs=1, batch_size=8,
                       device="cpu", progress=False, augment=RandomShift(1))  # fmt: skip
    ctc.fit(x[:32], y[:32], eval_set=(x[32:], y[32:]))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 1, 4, 4)).astype(np.float32)
    W = rng.normal(size=(16, 3))
    labels = (X.reshape(200, -1) @ W).argmax(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    online = ModuleTeacher(net, classes=(0, 1, 2))
    student = nn.Sequential(nn.Flatten(), MLP(16, 3, hidden=(8,)))
    table = Distiller(online, student, alpha=0.5, epochs=1, batch_size=32,
                      augment=RandomShift(1), progress=False, device="cpu")  # fmt: skip
    table.fit(X[:160], labels[:160], eval_set=(X[160:], labels[160:]))
    for fitted, terms in ((ctc, ("loss", "kd", "ctc")), (table, ("loss", "kd", "ce"))):
        record = fitted.history_[0]
        assert record["epoch"] == 1
        for term in terms:
            assert f"train_{term}" in record and f"val_{term}" in record
        assert record["val_kd"] > 0  # the online teacher's targets are in the validation loss


def test_fit_trains_a_copy_unless_warm_start():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    W = rng.normal(size=(4, 3))
    y = (X @ W).argmax(1)
    student = MLP(4, 3, hidden=(8,))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    d = Distiller(LinearTeacher(W), student, epochs=2, progress=False, device="cpu")
    first = d.fit(X, y).student_
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())
    assert first is not student
    second = d.fit(X, y).student_
    assert _equal_state(first, second)  # a second fit starts afresh: the same result
    warm = Distiller(LinearTeacher(W), student, epochs=2, progress=False, device="cpu",
                     warm_start=True).fit(X, y)  # fmt: skip
    assert warm.student_ is student
    assert not all(torch.equal(before[k], v) for k, v in student.state_dict().items())


@pytest.mark.parametrize(
    "method, params, standardize",
    [("hinton", {}, True), ("dkd", {"nontarget_weight": 4.0}, False), ("dist", {}, False)],
)
def test_every_kd_method_trains_through_the_engine(method, params, standardize):
    from crosskd.losses import logit_kd_loss

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    W = rng.normal(size=(4, 3)) * 2
    y = (X @ W).argmax(1)
    d = Distiller(LinearTeacher(W), MLP(4, 3, hidden=(8,)), alpha=0.8, epochs=3, progress=False,
                  device="cpu", method=method, method_params=params, standardize=standardize,
                  temperature=2.0)  # fmt: skip
    d.fit(X[:240], y[:240], eval_set=(X[240:], y[240:]))
    record = d.history_[d.best_epoch_ - 1]  # the restored weights are the best epoch's
    assert np.isfinite(record["train_kd"]) and record["train_kd"] > 0
    # the validation KD term is the method's, not Hinton's
    expected = logit_kd_loss(
        d.predict_logits(X[240:]), torch.from_numpy(X[240:] @ W).float(), 2.0, method=method,
        labels=torch.from_numpy(y[240:]), standardize=standardize, **params,
    )  # fmt: skip
    assert record["val_kd"] == pytest.approx(float(expected), rel=1e-4)


def test_ranking_method_on_two_classes_and_bad_methods():
    from crosskd import ConfigError

    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    W = rng.normal(size=(4, 2)) * 2
    y = (X @ W).argmax(1)
    d = Distiller(LinearTeacher(W), MLP(4, 2, hidden=(8,)), epochs=2, progress=False,
                  device="cpu", method="ranking")  # fmt: skip
    assert d.fit(X, y).history_[-1]["train_kd"] > 0
    with pytest.raises(ConfigError, match="hinton"):
        Distiller(LinearTeacher(W), MLP(4, 2), method="hintn", progress=False).fit(X, y)
    with pytest.raises(ConfigError, match="nontarget_weight"):
        Distiller(LinearTeacher(W), MLP(4, 2), method="dkd", method_params={"beta": 1},
                  progress=False).fit(X, y)  # fmt: skip


def test_ctc_bag_method_needs_no_frame_alignment():
    x, y, alphabet = _lines()
    torch.manual_seed(0)
    # the teacher reads 12 frames, the student 6 (mean pooling over a wider stride)
    teacher = CRNN("tiny", num_classes=alphabet.num_classes, width=4, hidden=8, height=16)
    student = CRNN("tiny", num_classes=alphabet.num_classes, width=4, hidden=8, height=16,
                   max_reduction=8)  # fmt: skip
    fitted = CTCDistiller(teacher, student, alphabet=alphabet, alpha=0.5, method="bag", epochs=2,
                          batch_size=8, device="cpu", progress=False, threads=1,
                          plateau_restarts=0).fit(x[:32], y[:32])  # fmt: skip
    assert fitted.history_[-1]["train_kd"] > 0
    with pytest.raises(Exception, match="method must be 'frame' or 'bag'"):
        CTCDistiller(teacher, student, alphabet=alphabet, method="bog").fit(x[:8], y[:8])


def test_unchecked_ctc_loss_equals_the_checked_one():
    from crosskd.losses import ctc_loss

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 12, 6, generator=gen)
    targets = torch.tensor([[1, 2, 2, 0], [3, 0, 0, 0], [0, 0, 0, 0], [5, 4, 3, 1]])
    lengths = torch.tensor([3, 1, 0, 4])
    weight = torch.tensor([1.0, 1.0, 0.0, 1.0])
    torch.testing.assert_close(
        ctc_loss(logits, targets, lengths, sample_weight=weight, check=False),
        ctc_loss(logits, targets, lengths, sample_weight=weight),
    )


def test_ctc_epochs_auto_uses_the_plateau_schedule():
    x, y, alphabet = _lines()
    torch.manual_seed(0)
    student = CRNN("tiny", num_classes=alphabet.num_classes, width=4, hidden=8, height=16)
    fitted = CTCDistiller(None, student, alphabet=alphabet, alpha=0.0, epochs="auto",
                          batch_size=16, device="cpu", progress=False, threads=1,
                          plateau_restarts=0).fit(x[:32], y[:32], eval_set=(x[32:], y[32:]))  # fmt: skip
    assert fitted.schedule_ == "plateau" and fitted.epochs_ == 300  # 2 steps an epoch: capped
    assert len(fitted.history_) < fitted.epochs_  # the plateau callback ended the run
    lrs = [h["lr"] for h in fitted.history_]
    assert min(lrs) < max(lrs)  # the rate was cut when the validation CER stalled
