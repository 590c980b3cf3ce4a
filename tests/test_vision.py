"""Images: readers, augmentation, preprocessing, image students, TimmTeacher, the image pipeline."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import crosskd
from crosskd import Distiller
from crosskd.exceptions import BundleError, ConfigError, DataError, TeacherError
from crosskd.teachers import ModuleTeacher, TimmTeacher
from crosskd.vision import (
    Compose,
    ImageMLP,
    ImagePreprocess,
    RandomAffine,
    RandomBlur,
    RandomNoise,
    RandomShift,
    SmallCNN,
    TimmStudent,
    as_images,
    load_digits_images,
    load_images,
    load_mnist,
    read_idx,
    read_image_folder,
    read_npz,
    textline_augment,
)


def _idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    return load_digits_images()


# ------------------------------------------------------------------------------------------ readers


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz) -> None:
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    raw = _idx_bytes(images)
    path = tmp_path / ("x-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(raw) if gz else raw)
    np.testing.assert_array_equal(read_idx(path), images)
    ints = np.array([1, -2, 300], dtype=np.int32)
    (tmp_path / "ints").write_bytes(_idx_bytes(ints, 0x0C))
    np.testing.assert_array_equal(read_idx(tmp_path / "ints"), ints)


def test_read_idx_errors(tmp_path) -> None:
    images = np.zeros((2, 3, 3), dtype=np.uint8)
    bad_magic = tmp_path / "magic"
    bad_magic.write_bytes(b"\x01\x02\x08\x03" + _idx_bytes(images)[4:])
    with pytest.raises(DataError, match="not an IDX file: its magic number is 01020803"):
        read_idx(bad_magic)
    short = tmp_path / "short"
    short.write_bytes(_idx_bytes(images)[:-1])
    with pytest.raises(DataError, match=r"17 data bytes but its header says shape \(2, 3, 3\)"):
        read_idx(short)
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "missing")


def test_mnist_folder_layout(tmp_path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2], dtype=np.uint8)
    for prefix in ("train", "t10k"):
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(_idx_bytes(images))
        (tmp_path / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels)))
    x, y = load_mnist("test", tmp_path)
    assert x.shape == (6, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0] * 255, images, atol=1e-4)
    x2, y2, classes = load_images(tmp_path / "train-images-idx3-ubyte")
    np.testing.assert_array_equal(y2, y)
    assert classes == (0, 1, 2)


@pytest.mark.data
def test_real_mnist_header_and_counts(shared_data) -> None:
    folder = shared_data / "ocr" / "mnist"
    train_labels = read_idx(folder / "train-labels-idx1-ubyte.gz")
    test_labels = read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    assert train_labels.shape == (60000,) and test_labels.shape == (10000,)
    assert np.bincount(train_labels).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert np.bincount(test_labels).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    x, y = load_mnist("test", folder)
    assert x.shape == (10000, 1, 28, 28) and 0.0 <= x.min() and x.max() <= 1.0


def test_npz_and_as_images(tmp_path) -> None:
    x = np.random.default_rng(0).integers(0, 256, (5, 6, 7, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([3, 1, 3, 1, 2]))
    images, y = read_npz(tmp_path / "d.npz")
    assert images.shape == (5, 3, 6, 7)
    _, codes, classes = load_images(tmp_path / "d.npz")
    assert classes == (1, 2, 3) and codes.tolist() == [2, 0, 2, 0, 1]
    np.savez(tmp_path / "bad.npz", images=x)
    with pytest.raises(DataError, match="expected 'x' \\(images\\) and 'y'"):
        read_npz(tmp_path / "bad.npz")
    with pytest.raises(DataError, match="Divide by 255"):
        as_images(np.full((2, 4, 4), 7.0))
    assert as_images(np.zeros((2, 16))).shape == (2, 1, 4, 4)


def _write_png(path, size=(6, 5), value=128, mode="L") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 0)).save(path)


def test_image_folder(tmp_path) -> None:
    for cls in ("cat", "dog"):
        for i in range(3):
            _write_png(tmp_path / cls / f"{i}.png", value=40 * i)
    (tmp_path / "dog" / "notes.txt").write_text("ignored")
    x, y, classes = read_image_folder(tmp_path)
    assert (
        x.shape == (6, 1, 5, 6) and classes == ("cat", "dog") and y.tolist() == [0, 0, 0, 1, 1, 1]
    )
    _write_png(tmp_path / "dog" / "rgb.png", mode="RGB")
    x, _, _ = read_image_folder(tmp_path)
    assert x.shape == (7, 3, 5, 6)
    x, _, _ = read_image_folder(tmp_path, size=(8, 8), channels=1)
    assert x.shape == (7, 1, 8, 8)


def test_image_folder_errors_name_the_file(tmp_path) -> None:
    _write_png(tmp_path / "a" / "0.png")
    _write_png(tmp_path / "b" / "big.png", size=(9, 9))
    with pytest.raises(DataError, match=r"big\.png' is 9x9 but .*0\.png' is 5x6.*size=\(H, W\)"):
        read_image_folder(tmp_path)
    (tmp_path / "b" / "big.png").unlink()
    (tmp_path / "b" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"Could not read the image .*broken\.png"):
        read_image_folder(tmp_path)
    with pytest.raises(DataError, match="no class subfolders"):
        read_image_folder(tmp_path / "a")


# ------------------------------------------------------------------------------------- augmentation


def test_random_shift_is_a_seeded_integer_shift() -> None:
    x = torch.rand(64, 1, 10, 10) + 0.1  # no zeros inside, so the shifted-in border is visible
    out = RandomShift(2, seed=3)(x)
    assert out.shape == x.shape
    torch.testing.assert_close(RandomShift(2, seed=3)(x), out)
    assert not torch.equal(RandomShift(2, seed=4)(x), out)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(out[i, 0], padded[i, 0, 2 - dy : 12 - dy, 2 - dx : 12 - dx])
        ]
        assert len(matches) == 1
    batch = (x, torch.arange(64))
    shifted, idx = RandomShift(2)(batch)
    assert torch.equal(idx, batch[1])
    with pytest.raises(DataError, match=r"image batches of shape \(N, C, H, W\)"):
        RandomShift(2)(torch.rand(4, 100))
    with pytest.raises(ConfigError, match="max_shift"):
        RandomShift(-1)


def test_affine_and_compose_keep_shapes() -> None:
    x = torch.rand(8, 3, 12, 12)
    aug = Compose(RandomShift(1), RandomAffine(degrees=10, scale=(0.9, 1.1), translate=0.05))
    assert aug(x).shape == x.shape
    torch.testing.assert_close(RandomAffine(degrees=0, scale=(1, 1))(x), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: RandomBlur((0.3, 1.5), p=0.5, seed=seed),
        lambda seed: RandomNoise((0.02, 0.2), p=0.5, seed=seed),
        lambda seed: textline_augment(seed, blur_p=0.5, noise_p=0.5),
    ],
    ids=["blur", "noise", "textline_augment"],
)
def test_blur_noise_are_seeded_and_keep_shape_dtype(make) -> None:
    x = torch.rand(16, 2, 12, 20)
    out = make(3)(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    torch.testing.assert_close(make(3)(x), out, rtol=0, atol=0)  # same seed, same output
    assert not torch.equal(make(4)(x), out)  # another seed, other draws
    aug = make(3)
    first = aug(x)
    assert not torch.equal(aug(x), first)  # the generator moves on ...
    aug.reset()
    torch.testing.assert_close(aug(x), first, rtol=0, atol=0)  # ... and reset() rewinds it
    changed = (out != x).flatten(1).any(dim=1)
    if not isinstance(aug, Compose):  # (the affine part of textline_augment moves every image)
        assert 0 < int(changed.sum()) < len(x)  # p=0.5: some images augmented, some untouched
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    batch = (x.double(), torch.arange(16))
    out64, idx = make(3)(batch)
    assert out64.dtype == torch.float64 and torch.equal(idx, batch[1])


def test_blur_noise_with_p_zero_are_the_identity() -> None:
    x = torch.rand(8, 1, 10, 30)
    assert torch.equal(RandomBlur((0.5, 2.0), p=0.0)(x), x)
    assert torch.equal(RandomNoise((0.1, 0.3), p=0.0)(x), x)
    assert torch.equal(RandomBlur((0.0, 0.0), p=1.0)(x), x)
    assert torch.equal(RandomNoise((0.0, 0.0), p=1.0)(x), x)


def test_blur_is_a_normalised_gaussian_that_keeps_constant_images() -> None:
    constant = torch.full((4, 3, 9, 14), 0.37)
    torch.testing.assert_close(RandomBlur((0.5, 2.0), p=1.0)(constant), constant)
    impulse = torch.zeros(1, 1, 15, 15)
    impulse[0, 0, 7, 7] = 1.0
    out = RandomBlur((1.0, 1.0), p=1.0)(impulse)[0, 0]
    g = torch.exp(-0.5 * torch.arange(-3.0, 4.0) ** 2)
    g = g / g.sum()
    expected = torch.zeros(15, 15)
    expected[4:11, 4:11] = g[:, None] * g[None, :]  # radius ceil(3 * sigma) = 3
    torch.testing.assert_close(out, expected)
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-6)


def test_noise_is_clamped_and_has_the_drawn_std() -> None:
    x = torch.full((64, 1, 16, 16), 0.5)
    out = RandomNoise((0.1, 0.1), p=1.0)(x)
    assert float((out - x).std()) == pytest.approx(0.1, rel=0.05)
    edges = torch.cat([torch.zeros(8, 1, 8, 8), torch.ones(8, 1, 8, 8)])
    noisy = RandomNoise((0.5, 0.5), p=1.0)(edges)
    assert float(noisy.min()) == 0.0 and float(noisy.max()) == 1.0
    assert 0 < float((noisy != edges).float().mean()) < 1


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: RandomBlur((1.0, 0.5)), r"sigma must be a pair \(low, high\)"),
        (lambda: RandomBlur((-0.1, 0.5)), "0 <= low <= high"),
        (lambda: RandomBlur(1.0), "sigma must be a pair"),
        (lambda: RandomBlur((0.1, float("inf"))), "sigma must be a pair"),
        (lambda: RandomBlur(p=1.5), r"p \(the probability of augmenting an image\) must be in"),
        (lambda: RandomNoise((0.1, "x")), "std must be a pair"),
        (lambda: RandomNoise(p=-0.1), "must be in \\[0, 1\\]"),
        (lambda: RandomNoise(p=True), "must be in"),
        (lambda: RandomNoise(seed=1.5), "seed must be an integer"),
        (lambda: textline_augment(noise_p=2), "must be in"),
        (lambda: textline_augment(scale=(1.1, 0.9)), "scale must be"),
        (lambda: textline_augment(seed="0"), "seed must be an integer"),
    ],
)
def test_blur_noise_bad_arguments(make, message) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


def test_augment_reprs() -> None:
    assert (
        repr(RandomBlur((0.1, 1.0), p=0.3, seed=2)) == "RandomBlur(sigma=(0.1, 1.0), p=0.3, seed=2)"
    )
    assert repr(RandomNoise((0, 0.05), p=0.3)) == "RandomNoise(std=(0.0, 0.05), p=0.3, seed=0)"
    assert repr(textline_augment(1)) == (
        "Compose(RandomAffine(degrees=3.0, scale=(0.95, 1.05), translate=0.03, seed=3), "
        "RandomBlur(sigma=(0.1, 1.0), p=0.3, seed=4), RandomNoise(std=(0.0, 0.05), p=0.3, seed=5))"
    )


class _Recorder(torch.nn.Module):
    """A model that remembers the inputs it saw in training mode / in the teacher's no-grad call."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(16, num_classes)
        self.num_classes = num_classes
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.linear(x.reshape(len(x), -1))


def test_teacher_and_student_see_the_same_augmented_batch() -> None:
    x = torch.rand(40, 1, 4, 4)
    y = np.arange(40) % 3
    teacher_net, student = _Recorder(), _Recorder()
    teacher = ModuleTeacher(teacher_net, classes=(0, 1, 2))
    student = (
        Distiller(
            teacher,
            student,
            alpha=0.5,
            epochs=2,
            batch_size=16,
            augment=RandomShift(1),
            progress=False,
        )
        .fit(x, y)
        .student_
    )  # fit trains a copy of the student passed in
    train_batches = [t for t in student.seen if t.shape[0] in (16, 8)][-len(teacher_net.seen) :]
    assert len(teacher_net.seen) == 6  # 3 batches x 2 epochs, online
    for t_in, s_in in zip(teacher_net.seen, train_batches, strict=True):
        assert torch.equal(t_in, s_in)
    assert not any(torch.equal(t_in, x[: len(t_in)]) for t_in in teacher_net.seen)


def test_timm_teacher_online_sees_the_student_batch_with_its_own_preprocessing() -> None:
    student = _Recorder()
    teacher = TimmTeacher("test_resnet", 3, input_size=(16, 16), mean=0.5, std=0.25)
    calls: list[torch.Tensor] = []
    teacher.model.register_forward_pre_hook(lambda m, args: calls.append(args[0].detach().clone()))
    x = torch.rand(16, 1, 4, 4)
    student = (
        Distiller(
            teacher,
            student,
            alpha=0.5,
            epochs=1,
            batch_size=16,
            augment=RandomShift(1),
            progress=False,
        )
        .fit(x, np.arange(16) % 3)
        .student_
    )
    s_in = student.seen[-1]
    assert calls[-1].shape == (16, 1, 16, 16)
    expected = (torch.nn.functional.pad(s_in, (6, 6, 6, 6)) - 0.5) / 0.25
    torch.testing.assert_close(calls[-1], expected)


# ----------------------------------------------------------------------------------- preprocessing


def test_preprocess_pads_normalises_and_converts_channels() -> None:
    pre = ImagePreprocess(3, (32, 32), mean=(0.5, 0.5, 0.5), std=0.5)
    x = torch.ones(2, 1, 28, 28)
    out = pre(x)
    assert out.shape == (2, 3, 32, 32)
    assert float(out[0, 0, 0, 0]) == -1.0 and float(out[0, 0, 2, 2]) == 1.0
    assert ImagePreprocess(1, (8, 8), resize="bilinear")(torch.rand(2, 3, 16, 16)).shape == (
        2,
        1,
        8,
        8,
    )
    assert float(ImagePreprocess(1)(torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)).max()) == 1.0
    with pytest.raises(ConfigError, match="mean has 2 values for in_chans=3"):
        ImagePreprocess(3, mean=(0.1, 0.2))


# ------------------------------------------------------------------------------------ TimmTeacher


class _Evil:
    """Stands for any pickled object that is not a tensor (it could run code when unpickled)."""


def test_timm_teacher_checkpoints_are_loaded_safely(tmp_path) -> None:
    from safetensors.torch import save_file

    source = TimmTeacher("test_resnet", 4, input_size=(16, 16))
    x = torch.rand(5, 1, 16, 16)
    expected = source.logits(x)
    state = source.model.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "w.pt")
    for name in ("w.safetensors", "w.pt"):
        loaded = TimmTeacher("test_resnet", 4, input_size=(16, 16), checkpoint=tmp_path / name)
        torch.testing.assert_close(loaded.logits(x), expected)
        assert loaded.info.kind == "timm"
        assert loaded.info.preprocessing["input_size"] == [16, 16]

    torch.save({"weights": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(BundleError, match="Could not read the teacher checkpoint .* safely"):
        TimmTeacher("test_resnet", 4, checkpoint=tmp_path / "evil.pt")
    with pytest.raises(BundleError, match="does not match the model"):
        TimmTeacher("test_resnet", 7, checkpoint=tmp_path / "w.safetensors")
    with pytest.raises(ConfigError, match="timm has no model named 'resnet_nope'"):
        TimmTeacher("resnet_nope", 3)
    with pytest.raises(ConfigError, match="needs num_classes"):
        TimmTeacher("test_resnet")
    with pytest.raises(TeacherError, match="num_classes=4 but num_classes=3"):
        TimmTeacher(source.model, 3)


def test_timm_teacher_bf16_channels_last_and_on_device() -> None:
    torch.manual_seed(0)
    plain = TimmTeacher("test_resnet", 3, input_size=(16, 16), mean=0.5, std=0.5)
    x = torch.rand(6, 1, 12, 12)
    ref = plain.logits(x)
    torch.testing.assert_close(plain.logits_on_device(x), ref, atol=1e-5, rtol=1e-5)
    fast = TimmTeacher(
        plain.model,
        input_size=(16, 16),
        mean=0.5,
        std=0.5,
        channels_last=True,
        precision="bf16-mixed",
    )
    out = fast.logits(x)
    assert out.dtype == torch.float32
    scale = ref.abs().max()
    # A reference computed in bf16 the plain way (autocast around the same model on the same
    # preprocessed input): the fast path is that computation, memory layout aside, so it may
    # differ by at most one bf16 rounding (unit roundoff u = 2**-8) of the largest logit.
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ref_bf16 = plain.model(plain.preprocess(x)).float()
    torch.testing.assert_close(out, ref_bf16, atol=2**-8 * float(scale), rtol=0.0)
    # Against float32: each conv / linear layer of test_resnet (16) rounds its inputs and weights
    # to bf16 (relative error <= u each), so to first order the logits move by at most about
    # 16 u of their scale (measured: 0.011 of it, i.e. 2.7 u). bf16 really ran: not the fp32 result.
    layers = sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in plain.model.modules())
    assert layers == 16
    assert 0 < float((out - ref).abs().max()) <= layers * 2**-8 * float(scale)


def test_import_crosskd_does_not_import_timm() -> None:
    code = "import sys, crosskd, crosskd.vision; print('timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------- students


@pytest.mark.parametrize(
    "student",
    [
        lambda: ImageMLP((1, 8, 8), 10, (32,), dropout=0.1, input_dropout=0.1, max_norm=2.0),
        lambda: SmallCNN(1, 10, width=4),
        lambda: TimmStudent("test_resnet", 10, 1, (16, 16), mean=0.3, std=0.3),
    ],
    ids=["mlp", "cnn", "timm"],
)
def test_image_students_save_and_load(student, digits, tmp_path) -> None:
    x, y = digits[0][:200], digits[1][:200]
    d = Distiller(None, student(), alpha=0.0, epochs=1, batch_size=64, progress=False).fit(x, y)
    path = d.save(tmp_path / "s")
    loaded = crosskd.load(path)
    np.testing.assert_allclose(loaded.predict_proba(x), d.predict_proba(x), atol=1e-6)


def test_image_mlp_max_norm_holds_and_shape_errors() -> None:
    net = ImageMLP((1, 4, 4), 3, (8,), max_norm=0.5)
    with torch.no_grad():
        net.mlp.layers[0].parametrizations.weight.original.mul_(100)
    assert float(net.mlp.layers[0].weight.detach().norm(dim=1).max()) <= 0.5 + 1e-5
    with pytest.raises(DataError, match=r"ImageMLP expects images of shape \(N, 1, 4, 4\)"):
        net(torch.rand(2, 1, 5, 5))
    with pytest.raises(DataError, match=r"SmallCNN expects images of shape \(N, 3, H, W\)"):
        SmallCNN(3, 3)(torch.rand(2, 1, 8, 8))


# ------------------------------------------------------------------------------- end to end


def test_digits_teacher_then_distilled_student(digits) -> None:
    x, y = digits
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    train, test = order[:1400], order[1400:]
    teacher_net = ImageMLP((1, 8, 8), 10, (256, 256), dropout=0.2, input_dropout=0.1)
    trained = Distiller(
        None,
        teacher_net,
        alpha=0.0,
        epochs=20,
        batch_size=64,
        lr=2e-3,
        early_stopping=None,
        progress=False,
    ).fit(x[train], y[train])
    teacher_acc = trained.evaluate(x[test], y[test])["accuracy"]
    assert teacher_acc > 0.9
    teacher = ModuleTeacher(trained.student_, classes=range(10))
    student = Distiller(
        teacher,
        ImageMLP((1, 8, 8), 10, (32,)),
        temperature=4.0,
        alpha=0.9,
        epochs=15,
        batch_size=64,
        lr=3e-3,
        early_stopping=None,
        progress=False,
    ).fit(x[train], y[train])
    assert student.evaluate(x[test], y[test])["accuracy"] > 0.9


def test_distill_images_pipeline(digits, tmp_path) -> None:
    x, y = digits
    np.savez(tmp_path / "digits.npz", x=(x[:400] * 255).astype(np.uint8), y=y[:400])
    report = crosskd.distill_images(
        tmp_path / "digits.npz",
        tmp_path / "run",
        teacher="timm:test_resnet",
        student="cnn",
        teacher_input_size=(8, 8),
        epochs=5,
        batch_size=16,
        lr=3e-3,
        shift=1,
        device="cpu",
        progress=False,
        echo=lambda s: None,
    )
    on_disk = json.loads((tmp_path / "run" / "report.json").read_text())
    assert on_disk["kind"] == "image" and on_disk["rows"]["test"] == 60
    for role in ("teacher", "student"):
        assert set(on_disk[role]["metrics"]) == {"accuracy", "errors"}
        assert on_disk[role]["params"] > 0 and on_disk[role]["latency_ms_batch1"] > 0
    assert report["teacher"]["metrics"]["accuracy"] > 0.5
    assert (tmp_path / "run" / "teacher.safetensors").is_file()
    loaded = crosskd.load(tmp_path / "run")
    assert loaded.predict(x[:3]).shape == (3,)
    again = crosskd.distill_images(
        tmp_path / "digits.npz",
        tmp_path / "run2",
        teacher_model=tmp_path / "run" / "teacher.safetensors",
        student="mlp",
        hidden=(32,),
        epochs=1,
        shift=0,
        device="cpu",
        progress=False,
        echo=lambda s: None,
    )
    assert again["teacher"]["trained"] is False
    assert again["teacher"]["metrics"] == report["teacher"]["metrics"]
