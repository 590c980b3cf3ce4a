"""Issue 5: text-line data, CRNN, CTC losses, decoding, metrics and the CTCDistiller."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from crosskd import ConfigError, DataError
from crosskd.io import load_bundle
from crosskd.losses import (
    blank_aware_kd_loss,
    ctc_loss,
    decoded_targets,
    frame_kd_loss,
    greedy_decode,
)
from crosskd.metrics import character_error_rate, edit_distance, sequence_accuracy
from crosskd.vision import (
    CRNN,
    Alphabet,
    CTCDistiller,
    kfold_assignment,
    load_textlines,
    looks_like_textlines,
    read_textline_folder,
    read_textline_tsv,
    resize_textline,
    split_textlines,
)

# ------------------------------------------------------------------------------------ alphabet


def test_alphabet_unicode_roundtrip():
    a = Alphabet.from_labels(["çà", "日本", "ab"])
    assert a.chars == tuple(sorted("çà日本ab"))
    assert a.num_classes == len(a.chars) + 1 and a.blank == 0
    assert a.decode(a.encode("日ç")) == "日ç"
    assert Alphabet.from_dict(a.to_dict()) == a
    assert 0 not in a.encode("ab")


def test_alphabet_unknown_character_message():
    a = Alphabet.from_labels(["abc"])
    with pytest.raises(DataError, match=r"'xaz'.*'x'.*'z'"):
        a.encode("xaz")
    with pytest.raises(ConfigError, match="distinct"):
        Alphabet("aa")


# ---------------------------------------------------------------------------------- readers


def _write_lines(folder, labels, size=(40, 12)):
    folder.mkdir(parents=True, exist_ok=True)
    for i, label in enumerate(labels):
        img = Image.new("L", (size[0] + 4 * i, size[1]), 200)
        img.save(folder / f"{label}.png")


def test_read_folder_and_tsv(tmp_path):
    _write_lines(tmp_path / "imgs", ["ab1", "c2d", "ñe"])
    x, y, files = read_textline_folder(tmp_path / "imgs", height=16)
    assert x.shape[:3] == (3, 1, 16) and x.shape[3] % 4 == 0 and x.dtype == np.float32
    assert sorted(y) == ["ab1", "c2d", "ñe"] and len(files) == 3
    # right padding with the background (auto: border median 200/255)
    assert np.allclose(x[0, 0, :, -1], 200 / 255)
    tsv = tmp_path / "lines.tsv"
    tsv.write_text("path\tlabel\nimgs/ab1.png\thello world\nimgs/ñe.png\tñe\n", encoding="utf-8")
    x2, y2, _ = read_textline_tsv(tsv, height=16, width=64)
    assert x2.shape == (2, 1, 16, 64) and y2 == ["hello world", "ñe"]
    x3, y3, _ = load_textlines(tsv, height=16, width=64)
    assert y3 == y2


def test_reader_errors_name_the_file(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "abc.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="abc.png"):
        read_textline_folder(tmp_path / "bad")
    tsv = tmp_path / "x.tsv"
    tsv.write_text("missing.png\tab\n")
    with pytest.raises(DataError, match="line 1.*missing.png"):
        read_textline_tsv(tsv)
    tsv.write_text("no tab here\n")
    with pytest.raises(DataError, match="no tab"):
        read_textline_tsv(tsv)


def test_colour_transparent_and_16bit_lines_read_as_grey(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    rgb = np.zeros((12, 40, 3), np.uint8)
    rgb[...] = (255, 255, 255)
    rgb[3:9, 5:20] = (200, 0, 0)  # red text on white
    Image.fromarray(rgb).save(folder / "rgb.png")
    rgba = np.zeros((12, 40, 4), np.uint8)  # dark text on a transparent (black, alpha 0) ground
    rgba[3:9, 5:20] = (0, 0, 0, 255)
    Image.fromarray(rgba).save(folder / "rgba.png")
    grey16 = np.full((12, 40), 65535, np.uint16)
    grey16[3:9, 5:20] = 0
    Image.fromarray(grey16).save(folder / "sixteen.png")
    x, y, _ = read_textline_folder(folder, height=12, width=40, pad_value=1.0)
    assert x.shape == (3, 1, 12, 40) and y == ["rgb", "rgba", "sixteen"]
    for i in range(3):  # a white ground and dark text in every file
        assert x[i, 0, 0, 0] == pytest.approx(1.0) and x[i, 0, 5, 10] < 0.5
    x3, _, _ = read_textline_folder(folder, height=12, width=40, channels=3)
    assert x3.shape == (3, 3, 12, 40)
    np.testing.assert_allclose(x3[0, :, 5, 10], [200 / 255, 0, 0])


def test_looks_like_textlines(tmp_path):
    _write_lines(tmp_path / "lines", ["ab", "cd"])
    assert looks_like_textlines(tmp_path / "lines")
    (tmp_path / "captcha").mkdir()
    (tmp_path / "captcha" / "README.md").write_text("x")
    _write_lines(tmp_path / "captcha" / "images", ["ab"])
    assert looks_like_textlines(tmp_path / "captcha")  # the shared captcha layout
    _write_lines(tmp_path / "classes" / "cat", ["1"])
    _write_lines(tmp_path / "classes" / "dog", ["2"])
    assert not looks_like_textlines(tmp_path / "classes")  # class subfolders: image data
    (tmp_path / "empty").mkdir()
    assert not looks_like_textlines(tmp_path / "empty")
    (tmp_path / "lines.tsv").write_text("path\tlabel\nlines/ab.png\tab\n")
    assert looks_like_textlines(tmp_path / "lines.tsv")
    (tmp_path / "table.tsv").write_text("amount\tis_fraud\n3.5\t0\n")
    assert not looks_like_textlines(tmp_path / "table.tsv")
    (tmp_path / "t.csv").write_text("path,label\nlines/ab.png,ab\n")
    assert not looks_like_textlines(tmp_path / "t.csv")
    assert not looks_like_textlines(tmp_path / "missing")


def test_resize_keeps_aspect_and_pads():
    img = np.full((10, 20), 255, np.uint8)
    out = resize_textline(img, 20, 60, pad_value=0.0)
    assert out.shape == (20, 60)
    assert (out[:, :40] == 255).all() and (out[:, 40:] == 0).all()
    assert resize_textline(img, 20, 30).shape == (20, 30)  # squeezed when too wide


def test_split_and_kfold_are_seeded():
    s = split_textlines(100, val=10, test=0.2, seed=3)
    assert (len(s.train), len(s.val), len(s.test)) == (70, 10, 20)
    assert len(set(s.train) | set(s.val) | set(s.test)) == 100
    assert s.report() == split_textlines(100, val=10, test=0.2, seed=3).report()
    folds = kfold_assignment(1040, 5, seed=0)
    assert np.bincount(folds).tolist() == [208] * 5
    assert (folds == kfold_assignment(1040, 5, seed=0)).all()
    assert not (folds == kfold_assignment(1040, 5, seed=1)).all()
    with pytest.raises(ConfigError):
        split_textlines(10, val=5, test=5)


# ------------------------------------------------------------------------------------ losses


def test_ctc_loss_values_and_errors():
    torch.manual_seed(0)
    logits = torch.randn(2, 8, 5, requires_grad=True)
    targets = torch.tensor([[1, 2, 0], [3, 3, 4]])
    lengths = torch.tensor([2, 3])
    loss = ctc_loss(logits, targets, lengths)
    ref = torch.nn.functional.ctc_loss(
        logits.log_softmax(-1).transpose(0, 1),
        targets,
        torch.tensor([8, 8]),
        lengths,
        reduction="mean",
        zero_infinity=True,
    )
    assert torch.allclose(loss, ref, atol=1e-5)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    # a near-perfect path gives a near-zero loss: "1 blank 2" over frames
    perfect = torch.full((1, 3, 5), -20.0)
    perfect[0, 0, 1] = perfect[0, 1, 0] = perfect[0, 2, 2] = 20.0
    assert ctc_loss(perfect, torch.tensor([[1, 2]]), torch.tensor([2])) < 1e-4
    with pytest.raises(DataError, match="blank"):
        ctc_loss(logits, torch.tensor([[0, 1, 1], [1, 1, 1]]), lengths)
    with pytest.raises(DataError, match="frames"):
        ctc_loss(logits[:, :2], targets, lengths)


def test_frame_kd_zero_when_identical_and_gradients():
    torch.manual_seed(0)
    t = torch.randn(3, 6, 5)
    s = t.clone().requires_grad_(True)
    for temperature in (1.0, 4.0):
        assert frame_kd_loss(s, t, temperature) < 1e-6
        assert blank_aware_kd_loss(s, t, temperature) < 1e-6
    s2 = torch.randn(3, 6, 5, requires_grad=True)
    loss = frame_kd_loss(s2, t, 2.0) + blank_aware_kd_loss(s2, t, 2.0)
    assert loss > 0
    loss.backward()
    assert torch.isfinite(s2.grad).all()
    # mask: only masked-in frames count
    mask = torch.zeros(3, 6)
    mask[:, 0] = 1
    ref = frame_kd_loss(s2[:, :1], t[:, :1])
    assert torch.allclose(frame_kd_loss(s2, t, mask=mask), ref, atol=1e-6)


def test_frame_count_mismatch_and_resampling():
    torch.manual_seed(0)
    s = torch.randn(2, 4, 5)
    t = torch.randn(2, 8, 5)
    with pytest.raises(DataError, match="8 frames.*4.*resample"):
        frame_kd_loss(s, t)
    with pytest.raises(DataError, match="classes"):
        frame_kd_loss(s, torch.randn(2, 4, 6))
    # a teacher whose frames repeat twice resamples (nearest or linear) to itself
    t_small = torch.randn(2, 4, 5)
    t_big = t_small.repeat_interleave(2, dim=1)
    assert frame_kd_loss(t_small, t_big, resample="nearest") < 1e-6
    for mode in ("linear", "nearest"):
        value = frame_kd_loss(s, t, resample=mode)
        assert torch.isfinite(value) and value > 0
    # linear interpolation of a constant sequence is that sequence
    const = torch.randn(2, 1, 5).expand(2, 8, 5)
    assert frame_kd_loss(const[:, :3], const, resample="linear") < 1e-5


def test_blank_aware_rule():
    # frame 0: teacher confidently blank, student wrong; frame 1: teacher says class 1
    t = torch.tensor([[[10.0, 0.0, 0.0], [0.0, 10.0, 0.0]]])
    s = torch.tensor([[[0.0, 0.0, 10.0], [0.0, 10.0, 0.0]]])
    kl = frame_kd_loss(s, t)
    kl0 = frame_kd_loss(s[:, :1], t[:, :1])
    kl1 = frame_kd_loss(s[:, 1:], t[:, 1:])
    # excluded: only frame 1 counts
    assert torch.allclose(blank_aware_kd_loss(s, t, blank_weight=0.0), kl1, atol=1e-6)
    # down-weighted by w: (w * kl0 + kl1) / (w + 1)
    w = 0.25
    expected = (w * kl0 + kl1) / (w + 1)
    assert torch.allclose(blank_aware_kd_loss(s, t, blank_weight=w), expected, atol=1e-6)
    # weight 1 is plain frame KD
    assert torch.allclose(blank_aware_kd_loss(s, t, blank_weight=1.0), kl, atol=1e-6)
    # all frames confidently blank and excluded: 0, still differentiable
    sg = s.clone().requires_grad_(True)
    zero = blank_aware_kd_loss(sg, t[:, :1].expand(1, 2, 3), blank_weight=0.0)
    zero.backward()
    assert zero == 0 and torch.isfinite(sg.grad).all()


def _one_hot(path, classes=4):
    x = torch.full((len(path), classes), -5.0)
    x[torch.arange(len(path)), torch.tensor(path)] = 5.0
    return x


def test_greedy_decode_hand_made():
    logits = torch.stack(
        [_one_hot([1, 1, 0, 1, 2, 2]), _one_hot([0, 0, 0, 0, 0, 0]), _one_hot([3, 0, 3, 3, 0, 1])]
    )
    assert greedy_decode(logits) == [[1, 1, 2], [], [3, 3, 1]]
    assert greedy_decode(logits, lengths=torch.tensor([2, 6, 3])) == [[1], [], [3, 3]]
    targets, lengths = decoded_targets([[1, 1, 2], []])
    assert targets.tolist() == [[1, 1, 2], [0, 0, 0]] and lengths.tolist() == [3, 0]


# ----------------------------------------------------------------------------------- metrics


def test_cer_and_sequence_accuracy_hand_computed():
    assert edit_distance("kitten", "sitting") == 3
    # edits: 3 + 0 + 1 (deletion) = 4 over 7 + 3 + 2 = 12 reference characters
    assert character_error_rate(["kitten", "abc", "x"], ["sitting", "abc", "xy"]) == pytest.approx(
        4 / 12
    )
    assert sequence_accuracy(["a", "b", "c", "d"], ["a", "b", "x", "y"]) == 0.5
    assert character_error_rate(["日本"], ["日"]) == 1.0
    with pytest.raises(DataError, match="same number"):
        character_error_rate(["a"], ["a", "b"])
    with pytest.raises(DataError):
        character_error_rate(["a"], [""])


# ------------------------------------------------------------------------------------- CRNN


def test_crnn_shapes_and_bundle(tmp_path):
    m = CRNN("tiny", num_classes=7, width=4, hidden=8, height=16)
    assert m(torch.rand(2, 1, 16, 64)).shape == (2, 16, 7)
    assert m.output_frames(16, 64) == 16
    lstm = CRNN("tiny", num_classes=7, width=4, hidden=8, head="bilstm", height=16)
    assert lstm(torch.rand(2, 1, 16, 64)).shape == (2, 16, 7)
    with pytest.raises(ConfigError, match="head"):
        CRNN("tiny", num_classes=7, head="gru")
    with pytest.raises(DataError, match="in_chans"):
        m(torch.rand(2, 3, 16, 64))


def test_crnn_height_pooling():
    # flatten: each frame holds all D x H' features of its column, so the model is tied to its
    # input height; mean: height averaged away, any height, fewer head parameters
    flat = CRNN("tiny", num_classes=7, width=4, hidden=8, height=32)
    mean = CRNN("tiny", num_classes=7, width=4, hidden=8, height=32, pool="mean")
    assert flat.feature_height == 4 and flat.config()["pool"] == "flatten"
    assert flat.head.net[0].in_channels == 4 * 16 and mean.head.net[0].in_channels == 16
    assert flat(torch.rand(2, 1, 32, 64)).shape == mean(torch.rand(2, 1, 32, 64)).shape
    assert mean(torch.rand(2, 1, 48, 64)).shape == (2, 16, 7)
    with pytest.raises(DataError, match=r"32 pixels high.*height 48.*load_textlines\(height=32\)"):
        flat(torch.rand(2, 1, 48, 64))
    with pytest.raises(ConfigError, match="pool"):
        CRNN("tiny", num_classes=7, pool="max")
    with pytest.raises(ConfigError, match="height"):
        CRNN("tiny", num_classes=7, height=0)
    # a round trip keeps the pooling; a config saved before ``pool`` existed is a mean-pooled model
    assert CRNN.from_config(flat.config()).config() == flat.config()
    old = {k: v for k, v in mean.config().items() if k not in ("pool", "height")}
    rebuilt = CRNN.from_config(old)
    assert rebuilt.pool == "mean"
    rebuilt.load_state_dict(mean.state_dict())


def test_crnn_timm_backbone_reduction():
    m = CRNN("resnet18", num_classes=5, hidden=16)
    assert m.reduction == 8 and m(torch.rand(1, 1, 32, 128)).shape == (1, 16, 5)
    with pytest.raises(ConfigError, match="timm has no model"):
        CRNN("not_a_model_xyz", num_classes=5)


# ------------------------------------------------------------------------------- end to end


def _render(n, seed):
    rng = np.random.default_rng(seed)
    font = ImageFont.load_default()
    images, labels = [], []
    for _ in range(n):
        text = "".join(rng.choice(list("0123456789"), size=int(rng.integers(3, 6))))
        img = Image.new("L", (64, 16), 0)
        ImageDraw.Draw(img).text(
            (int(rng.integers(1, 6)), int(rng.integers(0, 4))), text, fill=255, font=font
        )
        images.append(np.asarray(img))
        labels.append(text)
    return np.stack(images)[:, None], labels


def test_ctc_distiller_end_to_end(tmp_path):
    x, y = _render(240, 0)
    xv, yv, x, y = x[200:], y[200:], x[:200], y[:200]
    alphabet = Alphabet.from_labels(y)
    torch.manual_seed(0)
    teacher = CRNN("tiny", num_classes=alphabet.num_classes, width=16, hidden=64, height=16)
    fitted_teacher = CTCDistiller(
        None,
        teacher,
        alphabet=alphabet,
        alpha=0.0,
        epochs=12,
        batch_size=16,
        device="cpu",
        progress=False,
    ).fit(x, y, eval_set=(xv, yv))
    teacher_cer = fitted_teacher.evaluate(xv, yv)["cer"]
    assert teacher_cer < 0.5

    torch.manual_seed(1)
    student = CRNN("tiny", num_classes=alphabet.num_classes, width=8, hidden=32, height=16)
    untrained = CTCDistiller(None, student, alphabet=alphabet, alpha=0.0, device="cpu")
    untrained.student_, untrained.alphabet_, untrained.device_ = (
        student,
        alphabet,
        torch.device("cpu"),
    )
    before = untrained.evaluate(xv, yv)["cer"]
    kd = CTCDistiller(
        fitted_teacher.student_,
        student,
        alphabet=alphabet,
        alpha=0.5,
        mode="both",
        temperature=2.0,
        epochs=8,
        batch_size=16,
        device="cpu",
        progress=False,
        early_stopping=4,
    ).fit(x, y, eval_set=(xv, yv), transfer=xv)
    after = kd.evaluate(xv, yv)
    assert after["cer"] < before - 0.1, (before, after, kd.history_)
    assert {"train_loss", "train_ctc", "train_kd", "val_cer", "val_sequence_accuracy"} <= set(
        kd.history_[0]
    )
    preds = kd.predict(xv)
    assert len(preds) == len(xv) and all(isinstance(p, str) for p in preds)

    path = kd.save(tmp_path / "student")
    loaded = CTCDistiller.load(path)
    assert loaded.alphabet_ == alphabet and loaded.predict(xv) == preds
    _, meta = load_bundle(path)
    assert meta["alphabet"]["chars"] == list(alphabet.chars)


def test_ctc_distiller_settings_errors():
    x, y = _render(8, 1)
    a = Alphabet.from_labels(y)
    with pytest.raises(ConfigError, match="needs a teacher"):
        CTCDistiller(None, CRNN(num_classes=a.num_classes), alpha=0.5).fit(x, y)
    with pytest.raises(ConfigError, match="num_classes="):
        CTCDistiller(None, CRNN(num_classes=3), alphabet=a, alpha=0.0, device="cpu").fit(x, y)
    with pytest.raises(ConfigError, match="mode"):
        CTCDistiller(None, CRNN(num_classes=a.num_classes), alpha=0.0, mode="x").fit(x, y)


class _BlankOnly(torch.nn.Module):
    """A 'CRNN' that ignores its input: CTC can only teach it the all-blank output."""

    def __init__(self, num_classes: int, frames: int = 16) -> None:
        super().__init__()
        self.num_classes, self.frames = num_classes, frames
        self.out = torch.nn.Linear(1, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x.new_zeros(len(x), self.frames, 1))


def test_ctc_distiller_restarts_from_the_all_blank_plateau(capsys):
    x, y = _render(24, 2)
    a = Alphabet.from_labels(y)
    model = _BlankOnly(a.num_classes)
    first = model.out.bias.detach().clone()
    kd = CTCDistiller(
        None,
        model,
        alphabet=a,
        alpha=0.0,
        epochs=3,
        plateau_epochs=1,
        plateau_restarts=2,
        batch_size=8,
        device="cpu",
        progress=True,
    ).fit(x, y)
    assert kd.restarts_ == 2
    # two stalled attempts of one epoch each, then the last attempt runs all its epochs
    assert [h["attempt"] for h in kd.history_] == [0, 1, 2, 2, 2]
    assert "all-blank plateau after 1 epochs" in capsys.readouterr().err
    # each attempt starts from new (seeded) weights
    assert not torch.equal(kd.student_.out.bias, first)

    off = CTCDistiller(
        None,
        _BlankOnly(a.num_classes),
        alphabet=a,
        alpha=0.0,
        epochs=3,
        plateau_epochs=1,
        plateau_restarts=0,
        batch_size=8,
        device="cpu",
        progress=False,
    ).fit(x, y)
    assert off.restarts_ == 0 and len(off.history_) == 3 and "attempt" not in off.history_[0]
    # the same validation CER every epoch: the latest of the tied epochs is kept, and patience
    # (strict improvements only) stops the run
    tied = CTCDistiller(
        None,
        _BlankOnly(a.num_classes),
        alphabet=a,
        alpha=0.0,
        epochs=6,
        early_stopping=2,
        plateau_restarts=0,
        batch_size=8,
        device="cpu",
        progress=False,
    ).fit(x, y, eval_set=(x[:8], y[:8]))
    cers = [h["val_cer"] for h in tied.history_]
    assert len(cers) == 3 and len(set(cers)) == 1
    assert tied.best_epoch_ == 3  # 1-based, the latest of the tied epochs
    for bad in ({"plateau_restarts": -1}, {"plateau_restarts": 1.5}, {"plateau_epochs": 0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            CTCDistiller(None, _BlankOnly(a.num_classes), alphabet=a, alpha=0.0, **bad).fit(x, y)


def test_reinitialise_keeps_the_bilstm_forget_bias():
    from crosskd.engine import reinitialise as _reinitialise

    m = CRNN("tiny", num_classes=7, width=4, hidden=8, head="bilstm", height=16)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    _reinitialise(m, 1)
    assert not torch.equal(before["classifier.weight"], m.classifier.weight)
    bias = m.head.lstm.bias_ih_l0.detach()
    assert torch.all(bias[8:16] == 1.0) and torch.all(bias[:8] == 0.0)
    state = {k: v.clone() for k, v in m.state_dict().items()}
    _reinitialise(m, 1)  # same seed, same weights
    assert all(torch.equal(state[k], v) for k, v in m.state_dict().items())


@pytest.mark.data
def test_captcha_folder_counts(shared_data):
    x, y, files = load_textlines(shared_data / "ocr" / "captcha", height=32)
    assert len(y) == 1040 == len(set(y)) and x.shape[:3] == (1040, 1, 32)
    assert {len(s) for s in y} == {5}
    assert "".join(Alphabet.from_labels(y).chars) == "2345678bcdefgmnpwxy"
