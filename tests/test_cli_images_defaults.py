"""Image defaults that follow the data (issue 13): the automatic teacher, the automatic budget, the
``chosen`` block of ``report.json``, explicit settings still honoured, messages for bad values."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from test_cli_textline import _error  # one line on stderr, exit status 2

import crosskd.vision.distill as image_distill
from crosskd.cli import main
from crosskd.config import defaults, resolve_settings
from crosskd.exceptions import ConfigError
from crosskd.vision.distill import (
    IMAGE_MIN_EPOCHS,
    IMAGE_PASSES,
    WIDE_TEACHER_IMAGES,
    choose_image_teacher,
    image_epochs,
    teacher_input_size,
)


def _digits(path, n=90):
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.savez(path, x=(digits.images[:n] * 16).astype(np.uint8), y=digits.target[:n])
    return path


# ------------------------------------------------------------------ the choice, unit level


def test_image_defaults_choose_from_the_data():
    image = defaults("image")
    assert (image["teacher"], image["epochs"], image["batch_size"]) == ("auto", "auto", "auto")
    assert image["early_stopping"] == "auto"


@pytest.mark.parametrize(
    "n, shape, channels, size, resize",
    [
        (300, (1, 16, 16), [16, 32, 64, 128], [32, 32], "bilinear"),
        (WIDE_TEACHER_IMAGES - 1, (1, 28, 28), [16, 32, 64, 128], [32, 32], "bilinear"),
        (WIDE_TEACHER_IMAGES, (1, 16, 16), [32, 64, 128, 256], [32, 32], "bilinear"),
        (50_000, (3, 64, 48), [32, 64, 128, 256], [64, 48], "auto"),
        (500, (1, 8, 24), [16, 32, 64, 128], [32, 96], "bilinear"),
    ],
)
def test_the_auto_teacher_follows_the_number_and_size_of_the_images(
    n, shape, channels, size, resize
):
    choice = choose_image_teacher(n, shape).report()
    assert choice["teacher"] == "timm:resnet10t"
    assert choice["model_kwargs"]["channels"] == channels
    assert (choice["input_size"], choice["resize"]) == (size, resize)
    assert f"{n:,} training images" in choice["reason"]


def test_small_images_are_scaled_up_for_the_teacher_keeping_their_aspect():
    assert teacher_input_size(16, 16) == (32, 32)
    assert teacher_input_size(8, 24) == (32, 96)
    assert teacher_input_size(40, 100) == (40, 100)


@pytest.mark.parametrize(
    "n, shape, message",
    [
        (0, (1, 8, 8), "a positive number of training images, got 0"),
        (True, (1, 8, 8), "a positive number of training images, got True"),
        (10, (8, 8), r"input_shape \(C, H, W\) of positive sizes, got \(8, 8\)"),
        (10, (1, 0, 8), r"of positive sizes, got \(1, 0, 8\)"),
    ],
)
def test_bad_values_for_the_teacher_choice(n, shape, message):
    with pytest.raises(ConfigError, match=message):
        choose_image_teacher(n, shape)


def test_the_image_budget_has_a_floor_of_steps_and_a_cap_of_passes():
    # a few hundred images: the 300-epoch bound of the table rule
    assert image_epochs(300, 16) == 300
    # a large set: the pass cap, never below the minimum
    assert image_epochs(10_000, 128) == IMAGE_PASSES // 10_000
    assert image_epochs(10_000_000, 512) == IMAGE_MIN_EPOCHS
    # more images per step -> fewer steps -> never fewer epochs
    assert image_epochs(2_000, 64) >= image_epochs(2_000, 16)


# ------------------------------------------------------------------ runs


def test_a_default_run_reports_the_teacher_and_budget_it_chose(tmp_path, monkeypatch, capsys):
    # a budget of 2 epochs keeps the test fast; the choice itself is the library's
    monkeypatch.setattr(image_distill, "IMAGE_PASSES", 1)
    monkeypatch.setattr(image_distill, "IMAGE_MIN_EPOCHS", 2)
    out = tmp_path / "run"
    argv = ["distill", "--data", str(_digits(tmp_path / "d.npz")), "--out", str(out),
            "--quiet", "--latency-repeats", "1"]  # fmt: skip
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "teacher auto: 68 training images < 20,000: resnet10t" in said
    report = json.loads((out / "report.json").read_text())
    teacher = report["teacher"]
    assert teacher["model"] == "resnet10t"
    assert teacher["teacher_choice"]["auto"] is True
    assert teacher["teacher_choice"]["input_size"] == [32, 32]
    for role in ("teacher", "baseline", "student"):
        chosen = report[role]["chosen"]
        assert chosen["epochs"] == 2 and chosen["schedule"] == "plateau"
        assert chosen["batch_size"] == 16  # 68 images: the smallest power of two
        assert report[role]["epochs_run"] <= 2
    assert report["settings"]["teacher"] == "auto"


def test_explicit_teacher_epochs_and_batch_size_are_honoured(tmp_path):
    out = tmp_path / "run"
    argv = ["distill", "--data", str(_digits(tmp_path / "d.npz", 60)), "--out", str(out),
            "--teacher", "timm:test_resnet", "--student", "cnn", "--epochs", "1",
            "--batch-size", "8", "--quiet", "--latency-repeats", "1"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["teacher"]["model"] == "test_resnet"
    assert report["teacher"]["teacher_choice"]["auto"] is False
    for role in ("teacher", "baseline", "student"):
        chosen = report[role]["chosen"]
        assert (chosen["epochs"], chosen["batch_size"], chosen["schedule"]) == (1, 8, "cosine")
        assert report[role]["epochs_run"] == 1


def test_teacher_epochs_set_the_teacher_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(image_distill, "IMAGE_PASSES", 1)
    monkeypatch.setattr(image_distill, "IMAGE_MIN_EPOCHS", 1)
    out = tmp_path / "run"
    argv = ["distill", "--data", str(_digits(tmp_path / "d.npz", 60)), "--out", str(out),
            "--teacher", "timm:test_resnet", "--teacher-epochs", "2", "--no-baseline",
            "--quiet", "--latency-repeats", "1"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["teacher"]["chosen"]["epochs"] == 2
    assert report["student"]["chosen"]["epochs"] == 1  # auto, with the budget patched to 1


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--teacher", "autoo"], r"no model named 'autoo' \(--teacher\).* --teacher for images "
         r"is auto \(a teacher chosen from the number and size of the images\) or timm:NAME"),
        (["--epochs", "0"], r"--epochs must be a positive integer or auto, "
         r"got 0"),
        (["--batch-size", "-4"], "--batch-size must be a positive integer or auto, got -4"),
        (["--early-stopping", "0"], "--early-stopping must be a positive integer, auto"),
    ],
)  # fmt: skip
def test_bad_image_budget_values_are_refused_before_training(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    err = _error(["distill", "--data", str(_digits(tmp_path / "d.npz", 30)), "--out", str(out),
                  *flags], capsys)  # fmt: skip
    assert re.search(message, err), err
    assert not out.exists()


def test_settings_accept_auto_for_the_image_budget():
    s = resolve_settings(None, {"data": "d", "out": "o", "epochs": "auto", "batch_size": 32},
                         "image")  # fmt: skip
    assert (s["epochs"], s["batch_size"], s["teacher"]) == ("auto", 32, "auto")


def test_the_image_batch_gives_enough_steps_on_every_device():
    from crosskd.pipeline import make_kind
    from crosskd.trainer import auto_batch_size

    base = {"data": "d.npz", "out": "o", "device": "cpu"}
    kind = make_kind("image", resolve_settings(None, base, "image"))
    assert (kind._batch(306), kind._batch(1_374), kind._batch(100_000)) == (16, 32, 512)
    # the trainer's CUDA rule would give 306 images a single step an epoch
    assert auto_batch_size("cuda", 306) == 512
    given = make_kind("image", resolve_settings(None, {**base, "batch_size": 24}, "image"))
    assert given._batch(306) == 24
