"""The one ``crosskd distill`` scaffold: regression tests of issue 17's CLI items (3, 4, 5, 8, 9, 2,
10) and the checks the scaffold makes before any training."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_cli_textline import _error  # one line on stderr, exit status 2

from crosskd.cli import build_parser, main, translate
from crosskd.config import SETTINGS, resolve_settings
from crosskd.pipeline import (
    RunData,
    _agreement,
    _order_classes,
    _warnings,
    make_kind,
    time_together,
)

ROOT = Path(__file__).resolve().parents[1]


def _table(path: Path, n: int = 300, seed: int = 0, labels=("legit", "fraud")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.gamma(2.0, 40.0, n).round(2)
    fraud = rng.random(n) < 0.08 + 0.5 * (amount > 150)
    frame = pd.DataFrame(
        {"amount": amount, "hour": rng.integers(0, 24, n), "label": np.where(fraud, *labels[::-1])}
    )
    frame.to_csv(path, index=False)
    return frame


# ------------------------------------------------------------------ every flag a message names


def _all_flags() -> set[str]:
    parser = build_parser()
    flags = {o for a in parser._actions for o in a.option_strings}
    sub = next(a for a in parser._actions if a.dest == "command")
    for command in sub.choices.values():
        flags |= {o for a in command._actions for o in a.option_strings}
    return flags


def test_every_flag_named_in_a_message_exists():
    """Issue 17 item 5: a message names only flags that exist (``--image-size`` did not)."""
    flags = _all_flags()
    named: dict[str, str] = {}
    for path in (ROOT / "crosskd").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for flag in re.findall(
                    r"(?<![\w-])--[a-z][a-z0-9_-]*[a-z0-9](?![\w-])", node.value
                ):
                    named.setdefault(flag, str(path.relative_to(ROOT)))
    outside = {"--nproc_per_node"}  # torchrun's own flag, in a how-to-launch message
    missing = {f: where for f, where in named.items() if f not in flags | outside}
    assert not missing, missing
    assert "--image-size" in named and "--image-size" in flags
    # settings named in backticks become flags that exist
    for key in SETTINGS:
        assert translate(f"`{key}` is wrong").split()[0] in flags


# ------------------------------------------------------------------ checks before any training


def test_text_in_a_numeric_test_column_fails_before_training(tmp_path, capsys):
    """Issue 17 item 3: the string in --test is found before the teacher trains."""
    _table(tmp_path / "train.csv")
    test = _table(tmp_path / "test.csv", n=60, seed=1)
    test["amount"] = test["amount"].astype(object)
    test.loc[5, "amount"] = "12,50 EUR"
    test.to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "run"
    err = _error(["distill", "--data", str(tmp_path / "train.csv"), "--test",
                  str(tmp_path / "test.csv"), "--target", "label", "--out", str(out)], capsys)  # fmt: skip
    assert "Column 'amount' of --test holds 1 value(s) that are not numbers ('12,50 EUR'" in err
    assert "row 7 of the file" in err
    assert not out.exists()  # nothing trained, nothing written


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--student", "timm:mobilenetv3_smal"], r"no model named 'mobilenetv3_smal' \(--student\)\. "
         r"Did you mean 'mobilenetv3_small_100'"),
        (["--teacher", "timm:resnet-18"], r"'resnet-18' \(--teacher\)\. Did you mean 'resnet18'"),
        (["--student", "svm"], "--student for images must be mlp, cnn or timm:NAME"),
        (["--student", "cnn", "--hidden", "64"], "--hidden sets the widths of an MLP student"),
        (["--drop", "id"], "--drop is a setting for tables, but the data is read as images"),
    ],
)  # fmt: skip
def test_image_settings_fail_before_training(tmp_path, capsys, flags, message):
    """Issue 17 item 3: a typo in a model name stops the run before the teacher's training."""
    np.savez(tmp_path / "d.npz", x=np.zeros((30, 8, 8), np.uint8), y=np.arange(30) % 3)
    out = tmp_path / "run"
    err = _error(["distill", "--data", str(tmp_path / "d.npz"), "--out", str(out), *flags], capsys)
    assert re.search(message, err), err
    assert not out.exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--student", "cnn"], "--student for tables is mlp"),
        (["--teacher", "timm:resnet18"], "--teacher for tables is lightgbm"),
        (["--image-size", "8", "8"], "--image-size is a setting for images, but the data is read"),
        (["--head-width", "8"], "--head-width is a setting for text lines"),
        (["--positive-label", "maybe"], r"--positive-label 'maybe' is not one of the classes"),
        (
            ["--teacher-model", "nowhere.txt"],
            "LightGBM model file '.*nowhere.txt' does not exist \\(--teacher-model\\)",
        ),
    ],
)
def test_table_flags_that_do_not_apply_are_errors(tmp_path, capsys, monkeypatch, flags, message):
    """Issue 17 item 3: ``--student cnn`` on a table was silently ignored."""
    monkeypatch.chdir(tmp_path)
    _table(tmp_path / "t.csv")
    err = _error(
        ["distill", "--data", "t.csv", "--target", "label", "--out", "run", *flags], capsys
    )
    assert re.search(message, err), err
    assert not (tmp_path / "run").exists()


def test_text_line_backbone_typo_fails_before_reading(tmp_path, capsys):
    (tmp_path / "lines").mkdir()
    err = _error(["distill", "--task", "textline", "--data", str(tmp_path / "lines"), "--out",
                  str(tmp_path / "o"), "--student", "resnet-18"], capsys)  # fmt: skip
    assert "Did you mean 'resnet18'" in err


def test_an_out_folder_with_other_files_is_refused(tmp_path, capsys):
    _table(tmp_path / "t.csv")
    (tmp_path / "notes.txt").write_text("mine")
    err = _error(["distill", "--data", str(tmp_path / "t.csv"), "--target", "label",
                  "--out", str(tmp_path)], capsys)  # fmt: skip
    assert "holds files that are not a crosskd run's ('notes.txt', 't.csv')" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "t.csv"]


def test_image_size_resizes_mixed_images(tmp_path, capsys):
    """Issue 17 item 5: the resize option the message names exists and works."""
    for label, size in (("a", (10, 12)), ("b", (14, 9))):
        (tmp_path / "img" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("L", size, 40 * i).save(tmp_path / "img" / label / f"{i}.png")
    base = {"data": str(tmp_path / "img"), "out": str(tmp_path / "o")}
    kind = make_kind("image", resolve_settings(None, {**base, "image_size": [8, 8]}, "image"))
    assert kind.read(print).x.shape == (6, 1, 8, 8)
    err = _error(["distill", "--task", "image", "--data", base["data"], "--out", base["out"]],
                 capsys)  # fmt: skip
    assert "--image-size" in err


# ------------------------------------------------------------------ classes and agreement


def test_positive_class_order():
    """Issue 17 item 2: 0/1 and booleans keep 1 / True; two strings take the minority class."""
    said: list[str] = []
    data = RunData(x=None, y=np.array([1, 1, 1, 0]), classes=["fraud", "legit"])
    data.y_test = np.array([0, 1])
    _order_classes(data, None, said.append)
    # "legit" is the majority, so "fraud" (the minority) becomes the positive class, index 1
    assert data.classes == ["legit", "fraud"] and data.y.tolist() == [0, 0, 0, 1]
    assert data.y_test.tolist() == [1, 0] and data.info["positive_label"] == "fraud"
    assert said and "the positive class is 'fraud', the minority class" in said[0]
    for classes in ([0, 1], [False, True]):
        data = RunData(x=None, y=np.array([1, 1, 1, 0]), classes=list(classes))
        _order_classes(data, None, said.append)
        assert data.classes == list(classes) and data.y.tolist() == [1, 1, 1, 0]
    data = RunData(x=None, y=np.array([0, 1, 1]), classes=["fraud", "legit"])
    _order_classes(data, "legit", said.append)
    assert data.classes == ["fraud", "legit"] and data.info["positive_label_reason"] == "given"


def test_rank_agreement_and_lost_confident_positives():
    """Issue 17 item 9: fidelity on imbalanced data is rank agreement, not the share of rows."""
    n = 200
    teacher = np.linspace(0.01, 0.9, n)
    student = teacher.copy()
    student[-2:] = 0.02  # the teacher's two most confident positives, lost by the student
    agreement = _agreement("binary", np.c_[1 - teacher, teacher], np.c_[1 - student, student])
    assert agreement["top1_rows"] == 2 and agreement["top1_overlap"] == 0.0
    assert agreement["teacher_top1_in_student_top5"] == 0.0
    assert agreement["prediction_agreement"] == pytest.approx(0.99)
    assert 0.9 < agreement["spearman"] < 1.0
    report = {
        "task": "binary",
        "teacher": {"metrics": {"average_precision": 0.90}},
        "student": {"metrics": {"average_precision": 0.70}, "agreement": agreement},
    }
    fitted = SimpleNamespace(history_=[{}] * 10, best_epoch_=10)
    warnings = _warnings(report, fitted, epochs=10)
    assert any("trails the teacher by 0.200 in average_precision" in w for w in warnings)
    assert any("still improving" in w for w in warnings)
    assert any("loses the teacher's most confident positives" in w for w in warnings)
    close = {**report, "student": {"metrics": {"average_precision": 0.88}}}
    assert _warnings(close, SimpleNamespace(history_=[{}] * 4, best_epoch_=2), epochs=10) == []


def test_latency_is_timed_in_one_loop_and_the_minimum_kept():
    """Issue 17 item 10: both students timed in the same loop, repeated, the minimum reported."""
    calls: list[str] = []
    fake = {"teacher": lambda x: calls.append("t"), "student": lambda x: calls.append("s")}
    result = time_together(fake, None, repeats=3)
    assert calls == ["t", "s"] * 4  # one warm-up each, then 3 rounds, each model once a round
    assert set(result) == {"teacher", "student"} and all(v >= 0 for v in result.values())


def test_table_batch_size_follows_the_training_rows():
    """512 rows a step left a 900-row table 2 steps an epoch; the default now gives >= 32."""
    from crosskd.trainer import auto_batch_size

    sizes = [auto_batch_size("cpu", n) for n in (100, 884, 1105, 5000, 10**6)]
    assert sizes == [16, 16, 32, 128, 512]


def test_demo_help_states_no_false_time():
    demo = next(a for a in build_parser()._actions if a.dest == "command").choices["demo"]
    text = " ".join(demo.format_help().split())
    assert "2 min" not in text and "seconds" not in text
    assert "one loop, repeated, and keeps the minimum" in text


# ------------------------------------------------------------------ one run end to end


@pytest.fixture(scope="module")
def fraud_run(tmp_path_factory):
    """A fraud / legit CSV through the CLI with relative paths (no --positive-label)."""
    root = tmp_path_factory.mktemp("scaffold")
    _table(root / "tx.csv", n=400)
    return root


def test_two_string_target_baseline_and_absolute_paths(fraud_run, monkeypatch, capsys):
    """Issue 17 items 2, 8, 9, 10 on one run: the minority class is positive and said so, the
    baseline is in the table, report.json and summary, ranks are compared, paths are absolute."""
    monkeypatch.chdir(fraud_run)
    capsys.readouterr()
    argv = ["distill", "--data", "tx.csv", "--target", "label", "--out", "run", "--epochs", "2",
            "--quiet"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "note: the positive class is 'fraud', the minority class" in printed
    assert re.search(r"^baseline\s+MLP 32-16", printed, flags=re.M)
    run = fraud_run / "run"
    report = json.loads((run / "report.json").read_text())
    assert report["settings"]["batch_size"] == "auto"
    assert report["student"]["chosen"]["batch_size"] == 16  # from the ~240 training rows
    assert report["student"]["chosen"]["threads"] >= 1
    assert report["baseline"]["chosen"]["schedule"] == "cosine"  # --epochs 2: a fixed budget
    assert "batch_size: auto" in (run / "config.yaml").read_text()
    # the bundle holds the class names: a loaded student predicts them
    import crosskd

    predicted = crosskd.load(run).predict(pd.read_csv(fraud_run / "tx.csv").drop(columns="label"))
    assert set(predicted) <= {"legit", "fraud"}
    assert report["data"]["classes"] == ["legit", "fraud"]
    assert report["data"]["positive_label"] == "fraud"
    assert report["baseline"]["params"] == report["student"]["params"] > 0
    for role in ("baseline", "student"):
        assert {"spearman", "top1_overlap", "top5_overlap"} <= set(report[role]["agreement"])
    for path in [report["data"]["path"], report["settings"]["out"], *report["files"].values()]:
        assert Path(path).is_absolute() and Path(path).exists(), path
    assert report["teacher"]["file"] == str(run / "teacher-lightgbm.txt")
    summary = (run / "summary.md").read_text()
    assert "| baseline (MLP 32-16) |" in summary and "**Positive class**: `fraud`" in summary
    assert "top 1 % overlap" in summary
    # issue 16 item 4: the fast path's latency in every table run
    assert report["serving"]["dataframe_row_p50_us"] > 0 and "us p50" in summary
    # the same run without the baseline, the other class as the positive one
    assert main([*argv[:-5], "--out", "run2", "--epochs", "1", "--quiet", "--no-baseline",
                 "--positive-label", "legit"]) == 0  # fmt: skip
    report = json.loads((fraud_run / "run2" / "report.json").read_text())
    assert report["baseline"] is None and report["data"]["classes"] == ["fraud", "legit"]
    assert "No baseline was trained" in (fraud_run / "run2" / "summary.md").read_text()
    # a run folder can be written again (its own files only)
    assert main([*argv[:-5], "--out", "run2", "--epochs", "1", "--quiet", "--no-baseline"]) == 0


def test_export_quantize_int8_decides_on_the_run_validation_rows(fraud_run, monkeypatch, capsys):
    """Issue 16 item 2 through the CLI: the int8 copy and its measurements beside the export."""
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(fraud_run)
    argv = ["distill", "--data", "tx.csv", "--target", "label", "--out", "q", "--epochs", "2",
            "--no-baseline", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["export", "q", "--quantize", "int8"]) == 0
    printed = capsys.readouterr().out
    assert (fraud_run / "q" / "student.int8.onnx").is_file()
    measured = json.loads((fraud_run / "q" / "student.int8.json").read_text())
    assert measured["metric"] == "average_precision" and "validation" in json.dumps(measured)
    assert "int8" in printed


def test_unreadable_images_are_listed_and_the_flag_named(tmp_path, capsys):
    """Issue 17 item 10: all bad files in one message that names the CLI flag to skip them."""
    from PIL import Image

    for label in ("a", "b"):
        folder = tmp_path / "imgs" / label
        folder.mkdir(parents=True)
        for i in range(6):
            Image.new("L", (8, 8), 40 * i).save(folder / f"{i}.png")
    (tmp_path / "imgs" / "a" / "bad1.png").write_bytes(b"not an image")
    (tmp_path / "imgs" / "b" / "bad2.png").write_bytes(b"nor this")
    argv = ["distill", "--task", "image", "--data", str(tmp_path / "imgs"), "--out",
            str(tmp_path / "run"), "--quiet"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "bad1.png" in err and "bad2.png" in err and "--skip-unreadable" in err
    parsed = build_parser().parse_args([*argv, "--skip-unreadable"])
    assert parsed.skip_unreadable is True
