"""Deep mutual learning of CTC text-line readers: two networks trained together by the one engine.

The task's mutual terms are :func:`crosskd.losses.mutual_kd_loss` on the split logits;
``CTCDistiller(mutual=True)`` trains a student and a peer online and keeps the better one; with
``mutual=False`` nothing changes.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from toy import load_worker

from crosskd import ConfigError, DataError
from crosskd.engine.loop import reinitialise
from crosskd.io import load_bundle
from crosskd.losses import ctc_loss, decoded_targets, frame_kd_loss, greedy_decode, mutual_kd_loss
from crosskd.metrics import character_error_rate
from crosskd.tasks.ctc import MUTUAL_TERMS, CTCTask, MutualPair
from crosskd.vision import CRNN, Alphabet, CTCDistiller, RandomShift
from crosskd.vision.ctc_trainer import PEER_SEED_OFFSET
from crosskd.vision.data import as_images


def _lines(n=40, seed=2):
    x, y = load_worker("ctc_worker").make_lines(n, seed=seed)  # 16 x 48, 2-4 digits of "0123"
    return x, y, Alphabet.from_labels(y)


def _crnn(alphabet, **kw):
    return CRNN("tiny", num_classes=alphabet.num_classes, width=4, hidden=8, height=16, **kw)


class _Doubled(nn.Module):
    """A reader with twice the frames of a tiny CRNN (each frame repeated): 24 frames per line."""

    def __init__(self, crnn: nn.Module) -> None:
        super().__init__()
        self.crnn = crnn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.repeat_interleave(self.crnn(x), 2, dim=1)


class _Fixed(nn.Module):
    """A reader with a parameter but no ``reset_parameters``: a copy cannot be re-initialised."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(12, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1, -1) + 0 * x.mean()


def _task(alpha=0.5, frames=6, peer_frames=6, resample=None, teacher=None, mode="frame"):
    return CTCTask(
        alphabet=None, temperature=2.0, alpha=alpha, mode=mode, blank_threshold=None,
        blank_weight=0.1, resample=resample, teacher=teacher, frames=frames,
        peer_frames=peer_frames,
    )  # fmt: skip


def _targets():
    labels, lengths = decoded_targets([[1, 2], [3], [2, 2, 1]])
    return labels, lengths, torch.tensor([True, True, False])  # the last line is unlabelled


# ------------------------------------------------------------------------------------ the task


def test_task_mutual_terms_are_mutual_kd_loss_on_the_split_logits():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(3, 6, 5, generator=gen, requires_grad=True)
    b = torch.randn(3, 6, 5, generator=gen, requires_grad=True)
    teacher = (torch.randn(3, 6, 5, generator=gen),)
    task = _task()
    assert task.terms == MUTUAL_TERMS
    targets = _targets()
    terms = task.loss(torch.cat([a, b], dim=1), teacher, targets, cached=True)
    want_a, want_b = mutual_kd_loss(a, b, 2.0)
    torch.testing.assert_close(terms["mutual"], want_a, rtol=0, atol=0)
    torch.testing.assert_close(terms["peer_mutual"], want_b, rtol=0, atol=0)
    labels, lengths, labelled = targets
    weight = labelled.float()
    ctc_a = ctc_loss(a, labels, lengths, sample_weight=weight)
    ctc_b = ctc_loss(b, labels, lengths, sample_weight=weight)
    kd_a, kd_b = frame_kd_loss(a, teacher[0], 2.0), frame_kd_loss(b, teacher[0], 2.0)
    for name, want in (("ctc", ctc_a), ("peer_ctc", ctc_b), ("kd", kd_a), ("peer_kd", kd_b)):
        torch.testing.assert_close(terms[name], want, msg=name)
    own_a = 0.5 * (kd_a + want_a) + 0.5 * ctc_a
    own_b = 0.5 * (kd_b + want_b) + 0.5 * ctc_b
    torch.testing.assert_close(terms["loss"], own_a + own_b)
    # each network's gradient is that of its own loss alone (the other side is detached)
    grad_a, grad_b = torch.autograd.grad(terms["loss"], (a, b))
    torch.testing.assert_close(grad_a, torch.autograd.grad(own_a, a)[0])
    torch.testing.assert_close(grad_b, torch.autograd.grad(own_b, b)[0])
    assert all(not v.requires_grad for k, v in terms.items() if k != "loss")


def test_task_mutual_terms_resample_when_the_frames_differ():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(3, 6, 5, generator=gen)
    b = torch.randn(3, 12, 5, generator=gen)
    with pytest.raises(ConfigError, match="student gives 6 frames per line but its mutual"):
        _task(peer_frames=12).loss(torch.cat([a, b], dim=1), None, _targets(), cached=True)
    terms = _task(peer_frames=12, resample="linear").loss(
        torch.cat([a, b], dim=1), None, _targets(), cached=True
    )
    torch.testing.assert_close(terms["mutual"], frame_kd_loss(a, b, 2.0, resample="linear"))
    torch.testing.assert_close(terms["peer_mutual"], frame_kd_loss(b, a, 2.0, resample="linear"))
    with pytest.raises(DataError, match=r"\(batch, 6 \+ 12 frames, classes\)"):
        _task(peer_frames=12).split(a)


def test_task_mutual_gradients_are_finite_at_extreme_logits():
    # the scales of the KD methods' test (tests/test_kd_methods.py): |logits| up to 1e4, saturated
    # one-hot frames that disagree (torch's CTC itself overflows its gradient near 1e10)
    gen = torch.Generator().manual_seed(2)
    one_a, one_b = torch.zeros(3, 6, 5), torch.zeros(3, 6, 5)
    one_a[..., 0], one_b[..., 1] = 1e4, 1e4

    def spread():
        return (torch.rand(3, 6, 5, generator=gen) * 2 - 1) * 1e4

    pairs = [
        (spread(), spread()),
        (torch.full((3, 6, 5), 1e4), torch.full((3, 6, 5), -1e4)),
        (one_a, one_b),
    ]
    for temperature in (0.5, 4.0):
        task = _task(mode="both")
        task.temperature = temperature
        for a, b in pairs:
            a, b = a.clone().requires_grad_(), b.clone().requires_grad_()
            terms = task.loss(torch.cat([a, b], dim=1), None, _targets(), cached=True)
            assert all(torch.isfinite(v) for v in terms.values()), terms
            grads = torch.autograd.grad(terms["loss"], (a, b))
            assert all(torch.isfinite(g).all() for g in grads), temperature
    assert float(terms["mutual"]) > 1e3  # the saturated pair disagrees: a large, finite term


# ------------------------------------------------------------------------------- the trainer


def _mutual(student, alphabet, teacher=None, **kw):
    settings = dict(alphabet=alphabet, alpha=0.5, temperature=2.0, epochs=3, batch_size=8,
                    device="cpu", progress=False, plateau_restarts=0, threads=1, lr=1e-2)  # fmt: skip
    settings.update(kw)
    return CTCDistiller(teacher, student, **settings)


def test_two_students_train_together_and_the_better_is_kept(tmp_path):
    x, y, alphabet = _lines(96)
    torch.manual_seed(0)
    student = _crnn(alphabet)
    start = copy.deepcopy(student.state_dict())
    peer_start = copy.deepcopy(student)
    reinitialise(peer_start, 0 + PEER_SEED_OFFSET)  # the default peer: seed + PEER_SEED_OFFSET
    peer_start = peer_start.state_dict()
    assert not torch.equal(start["classifier.weight"], peer_start["classifier.weight"])

    xv, yv = x[80:], y[80:]
    fitted = _mutual(student, alphabet, mutual=True, epochs=10)
    fitted.fit(x[:80], y[:80], eval_set=(xv, yv))
    # the student passed in is left as it was; both networks trained
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in start.items())
    pair = {fitted.mutual_["chosen"]: fitted.student_}
    pair["peer" if fitted.mutual_["chosen"] == "student" else "student"] = fitted.peer_
    for name, init in (("student", start), ("peer", peer_start)):
        now = pair[name].state_dict()
        assert not torch.equal(now["classifier.weight"], init["classifier.weight"]), name
    # plain readers, not the training pair
    assert type(fitted.student_) is CRNN and type(fitted.peer_) is CRNN
    assert not isinstance(fitted.student_, MutualPair)
    # the mutual terms are logged, per network
    for record in fitted.history_:
        assert record["train_mutual"] > 0 and record["train_peer_mutual"] > 0
        assert record["val_mutual"] > 0 and record["train_kd"] == 0  # no teacher
        assert record["val_cer"] == min(record["val_cer_student"], record["val_cer_peer"])
    # the kept network has the lower validation CER, and predicts
    cers = fitted.mutual_["cer"]
    assert fitted.mutual_["on"] == "validation"
    assert fitted.mutual_["frames"] == {"student": 12, "peer": 12}
    assert cers[fitted.mutual_["chosen"]] == min(cers.values()) < 0.6  # it learnt to read
    assert fitted.evaluate(xv, yv)["cer"] == min(cers.values())
    with torch.no_grad():
        peer_reads = [alphabet.decode(s) for s in greedy_decode(fitted.peer_(_float(xv)))]
    assert character_error_rate(peer_reads, yv) == max(cers.values())
    best = fitted.history_[fitted.best_epoch_ - 1]
    assert best["val_cer"] == pytest.approx(min(cers.values()))
    predictions = fitted.predict(xv)
    assert len(predictions) == len(xv) and all(isinstance(p, str) for p in predictions)
    # the bundle is the kept network, with the choice in its metadata
    path = fitted.save(tmp_path / "mutual")
    _, meta = load_bundle(path)
    assert meta["mutual"]["chosen"] == fitted.mutual_["chosen"]
    assert CTCDistiller.load(path).predict(xv) == predictions


def _float(images):
    return torch.from_numpy(as_images(images))


def test_mutual_with_a_teacher_and_a_peer_of_other_frames():
    x, y, alphabet = _lines(24, seed=3)
    torch.manual_seed(1)
    teacher, student = _crnn(alphabet), _crnn(alphabet)
    peer = _Doubled(_crnn(alphabet, pool="mean"))
    fitted = _mutual(student, alphabet, teacher=teacher, mutual=True, peer=peer, epochs=2,
                     mode="both", resample="linear")  # fmt: skip
    fitted.fit(x, y)  # no eval_set: the choice is made on training lines
    record = fitted.history_[-1]
    for term in ("kd", "mutual", "peer_kd", "peer_mutual", "ctc", "peer_ctc"):
        assert record[f"train_{term}"] > 0, term
    assert fitted.mutual_["on"] == "training lines"
    assert fitted.mutual_["frames"] == {"student": 12, "peer": 24}
    assert fitted.frames_ == fitted.mutual_["frames"][fitted.mutual_["chosen"]]
    assert {type(fitted.student_), type(fitted.peer_)} == {CRNN, _Doubled}
    assert len(fitted.predict(x[:4])) == 4
    # the same peer without resample: refused before training, saying what to do
    with pytest.raises(ConfigError, match="resample='linear'"):
        _mutual(student, alphabet, mutual=True, peer=_Doubled(_crnn(alphabet))).fit(x, y)


def test_mutual_settings_errors():
    x, y, alphabet = _lines(8, seed=4)
    student = _crnn(alphabet)
    cases = [
        (dict(peer=_crnn(alphabet)), "mutual=False"),
        (dict(mutual="yes"), "mutual must be True"),
        (dict(mutual=1), "mutual must be True"),
        (dict(mutual=True, alpha=0.0), "alpha=0 gives the mutual term no weight"),
        (dict(mutual=True, peer="crnn"), "peer must be an nn.Module"),
        (dict(mutual=True, peer=student), "peer is the student object itself"),
        (dict(mutual=True, peer=_crnn(Alphabet("01"))), "The peer outputs 3 classes"),
    ]
    for settings, message in cases:
        with pytest.raises(ConfigError, match=message):
            _mutual(student, alphabet, **settings).fit(x, y)
    with pytest.raises(ConfigError, match="no submodule of _Fixed has reset_parameters"):
        _mutual(_Fixed(alphabet.num_classes), alphabet, mutual=True).fit(x, y)
    with pytest.raises(ConfigError, match=r"transfer images need a teacher \(or mutual=True\)"):
        _mutual(student, alphabet, alpha=0.0).fit(x, y, transfer=x[:4])
    # alpha > 0 without a teacher is mutual learning's own KD term, not an error; unlabelled
    # lines get the mutual term only
    fitted = _mutual(student, alphabet, mutual=True, epochs=1).fit(x, y, transfer=x[:4])
    assert fitted.peer_ is not None and fitted.history_[0]["train_mutual"] > 0


def test_mutual_off_changes_nothing():
    x, y, alphabet = _lines(24, seed=5)
    torch.manual_seed(2)
    teacher, student = _crnn(alphabet), _crnn(alphabet)
    runs = [
        _mutual(student, alphabet, teacher=teacher, epochs=2, **extra).fit(
            x[:16], y[:16], eval_set=(x[16:], y[16:])
        )
        for extra in ({}, {"mutual": False})
    ]
    plain, off = runs
    a, b = plain.student_.state_dict(), off.student_.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    keys = set(off.history_[0])
    assert not any("mutual" in k or "peer" in k for k in keys)
    assert {"train_loss", "train_kd", "train_ctc", "val_cer"} <= keys
    assert off.peer_ is None and off.mutual_ is None
    for h1, h2 in zip(plain.history_, off.history_, strict=True):
        assert {k: v for k, v in h1.items() if k != "epoch_seconds"} == {
            k: v for k, v in h2.items() if k != "epoch_seconds"
        }
    # and the training pair, switched on, is a different run
    on = _mutual(student, alphabet, teacher=teacher, epochs=2, mutual=True).fit(
        x[:16], y[:16], eval_set=(x[16:], y[16:])
    )
    assert "train_mutual" in on.history_[0]


def test_mutual_through_the_augmentation_search_and_a_resumed_checkpoint(tmp_path):
    x, y, alphabet = _lines(32, seed=6)
    torch.manual_seed(3)
    teacher, student = _crnn(alphabet), _crnn(alphabet)
    data = (x[:24], y[:24])
    val = (x[24:], y[24:])
    # the winner of the race continues as a pair (both of its networks), with an online teacher
    searched = _mutual(student, alphabet, teacher=teacher, mutual=True, epochs=4, augment_epochs=2,
                       augment={"none": None, "shift": RandomShift(1)})  # fmt: skip
    searched.fit(*data, eval_set=val)
    assert searched.augment_ in ("none", "shift") and len(searched.history_) == 4
    assert all("train_peer_mutual" in h for h in searched.history_)
    assert searched.peer_ is not None and searched.mutual_["on"] == "validation"
    cers = searched.mutual_["cer"]
    assert searched.evaluate(*val)["cer"] == cers[searched.mutual_["chosen"]] == min(cers.values())
    # the pair is checkpointed and resumed like a single reader
    settings = dict(mutual=True, epochs=2, checkpoint_dir=tmp_path / "ckpt")
    first = _mutual(student, alphabet, **settings).fit(*data, eval_set=val)
    again = _mutual(student, alphabet, **settings).fit(*data, eval_set=val, resume=True)
    assert again.mutual_ == first.mutual_
    for a, b in ((first.student_, again.student_), (first.peer_, again.peer_)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    with pytest.raises(ConfigError, match="mutual=True in the checkpoint"):  # not a pair
        _mutual(student, alphabet, epochs=2, alpha=0.0, checkpoint_dir=tmp_path / "ckpt").fit(
            *data, eval_set=val, resume=True
        )
