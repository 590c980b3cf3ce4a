"""The `crosskd` command: demo and distill, end to end on small data."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import crosskd
from crosskd.cli import main
from crosskd.demo import run_demo


def fraud_like_csv(path, n=1500, seed=0, with_missing_target=0):
    rng = np.random.default_rng(seed)
    merchant = rng.choice(["grocery", "fuel", "online", "atm", "travel"], n)
    amount = rng.gamma(2.0, 40.0, n)
    night = rng.integers(0, 2, n)
    risk = 0.02 + 0.25 * (merchant == "online") * night + 0.2 * (amount > 200)
    fraud = (rng.random(n) < risk).astype(int)
    frame = pd.DataFrame(
        {
            "transaction_id": np.arange(n),
            "amount": amount.round(2),
            "night": night,
            "merchant": merchant,
            "customer_age": rng.normal(45, 12, n).round(),
            "is_fraud": fraud,
        }
    )
    frame.loc[rng.choice(n, 60, replace=False), "customer_age"] = np.nan
    if with_missing_target:
        frame["is_fraud"] = frame["is_fraud"].astype("Float64")
        frame.loc[rng.choice(n, with_missing_target, replace=False), "is_fraud"] = pd.NA
    frame.to_csv(path, index=False)
    return frame


def test_demo_tiny_prints_table(capsys):
    result = run_demo(size="tiny", seeds=1, progress=False)
    out = capsys.readouterr().out
    for name in ("LightGBM teacher", "student alone", "student distilled"):
        assert f"| {name} |" in out
    assert "CPU ms / 10k rows" in out
    distilled = result.row("student distilled")
    assert distilled.params == result.row("student alone").params > 0
    assert 0.5 < distilled.roc_auc[0] <= 1.0
    assert result.row("LightGBM teacher").bytes > distilled.bytes


def test_distill_csv_end_to_end(tmp_path, capsys):
    data = tmp_path / "transactions.csv"
    fraud_like_csv(data, with_missing_target=200)
    out = tmp_path / "run"
    code = main(
        ["distill", "--data", str(data), "--target", "is_fraud", "--out", str(out),
         "--drop", "transaction_id", "--epochs", "4", "--seed", "1", "--quiet"]
    )  # fmt: skip
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "binary" and report["kind"] == "table"
    assert report["rows"]["transfer"] == 200
    for part in ("teacher", "baseline", "student"):
        assert report[part]["params"] > 0
        assert set(report[part]["metrics"]) >= {"roc_auc", "average_precision"}
        assert 0.0 <= report[part]["metrics"]["roc_auc"] <= 1.0
    teacher_files = [p.name for p in out.iterdir() if "teacher" in p.name]
    assert teacher_files == ["teacher-lightgbm.txt"]
    printed = capsys.readouterr().out
    assert "teacher" in printed and "baseline" in printed and "student" in printed
    # The baseline is the same student trained on labels alone.
    assert report["baseline"]["params"] == report["student"]["params"]

    # The saved student predicts from the raw frame (the ID column is simply ignored).
    student = crosskd.load(out)
    frame = pd.read_csv(data)
    proba = student.predict_proba(frame.drop(columns=["is_fraud"]))
    assert proba.shape == (len(frame), 2)

    # The teacher it wrote is reusable.
    out2 = tmp_path / "run2"
    code = main(
        ["distill", "--data", str(data), "--target", "is_fraud", "--out", str(out2),
         "--drop", "transaction_id", "--teacher-model", str(out / "teacher-lightgbm.txt"),
         "--epochs", "2", "--seed", "1", "--quiet"]
    )  # fmt: skip
    assert code == 0
    report2 = json.loads((out2 / "report.json").read_text())
    # Same seed, same split, same teacher: the same teacher metrics.
    assert report2["teacher"]["metrics"] == pytest.approx(report["teacher"]["metrics"], abs=1e-9)
    assert not any("teacher" in p.name for p in out2.iterdir())


def test_distill_multiclass_with_test_file(tmp_path):
    rng = np.random.default_rng(0)
    n = 900
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    label = np.where(x1 > 0.5, "high", np.where(x1 < -0.5, "low", "mid"))
    frame = pd.DataFrame({"x1": x1, "x2": x2, "segment": label})
    frame.iloc[:700].to_parquet(tmp_path / "train.parquet")
    frame.iloc[700:].to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "run"
    code = main(
        ["distill", "--data", str(tmp_path / "train.parquet"), "--target", "segment",
         "--test", str(tmp_path / "test.csv"), "--out", str(out), "--epochs", "5",
         "--temperature", "4", "--alpha", "0.5", "--quiet"]
    )  # fmt: skip
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "multiclass"
    assert report["rows"]["test"] == 200
    assert set(report["student"]["metrics"]) == {"accuracy", "errors"}
    assert report["data"]["classes"] == ["high", "low", "mid"]
    assert report["split"]["test_source"] == str(tmp_path / "test.csv")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target", "nope"], "Target column 'nope' is not in --data"),
        (
            ["--target", "is_fraud", "--alpha", "2"],
            r"--alpha must be a number in \[0, 1\] \(tables, images: or auto\), got 2.0",
        ),
        (
            ["--target", "is_fraud", "--temperature", "0"],
            r"--temperature must be a number > 0 \(tables, images: or auto\), got 0.0",
        ),
        (["--target", "is_fraud", "--drop", "ghost"], r"--drop names columns \['ghost'\]"),
    ],
)
def test_distill_errors_are_one_line(tmp_path, capsys, args, message):
    data = tmp_path / "t.csv"
    fraud_like_csv(data, n=300)
    code = main(["distill", "--data", str(data), "--out", str(tmp_path / "o"), "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("crosskd: error: ")
    assert err.count("\n") == 1
    assert re.search(message, err)


def test_cli_subprocess_missing_file_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "crosskd", "distill", "--data", str(tmp_path / "missing.csv"),
         "--target", "y", "--out", str(tmp_path / "o")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "does not exist" in proc.stderr


def test_distill_from_config_file_then_export(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fraud_like_csv(tmp_path / "tx.csv", n=800)
    (tmp_path / "c.yaml").write_text(
        "data: tx.csv\ntarget: is_fraud\nout: run\ndrop: [transaction_id]\nepochs: 3\nquiet: true\n"
    )
    assert main(["distill", "c.yaml", "--alpha", "0.5"]) == 0  # the flag overrides the file
    run = tmp_path / "run"
    names = {p.name for p in run.iterdir()}
    assert {"student.safetensors", "teacher-lightgbm.txt", "report.json", "config.yaml",
            "summary.md", "curves.png", "scores.png", "reliability.png"} <= names  # fmt: skip
    assert "alpha: 0.5" in (run / "config.yaml").read_text()
    assert json.loads((run / "report.json").read_text())["settings"]["alpha"] == 0.5
    # The resolved config repeats the run.
    assert main(["distill", str(run / "config.yaml")]) == 0
    pytest.importorskip("onnxruntime")
    assert main(["export", str(run)]) == 0
    assert (run / "student.onnx").is_file()
    capsys.readouterr()
    assert main(["distill", "--target", "is_fraud"]) == 2
    assert "data" in capsys.readouterr().err


def test_distill_image_data_from_the_cli(tmp_path, capsys):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images[:240] * 16).astype(np.uint8)
    np.savez(tmp_path / "digits.npz", x=images, y=digits.target[:240])
    out = tmp_path / "run"
    argv = ["distill", "--data", str(tmp_path / "digits.npz"), "--out", str(out),
            "--teacher", "timm:test_resnet", "--student", "cnn", "--epochs", "1", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["kind"] == "image" and report["task"] == "multiclass"
    assert {"accuracy", "errors"} <= set(report["student"]["metrics"])
    assert (out / "teacher.safetensors").is_file()
    # the same artefact set as a table run: config, summary and curves too
    assert {"config.yaml", "summary.md", "curves.png", "confusion.png"} <= {
        p.name for p in out.iterdir()
    }
    # Issue 17 item 4: a CNN student's run exports (input shape from report.json), checked on
    # the run's own test images.
    pytest.importorskip("onnxruntime")
    capsys.readouterr()
    assert main(["export", str(out), "--format", "onnx", "--out", str(tmp_path / "s.onnx")]) == 0
    assert "input float32 (n, 1, 8, 8)" in capsys.readouterr().out
    assert (tmp_path / "s.onnx").is_file()
    capsys.readouterr()
    assert main([*argv[:3], "--out", str(tmp_path / "r2"), "--target", "y"]) == 2
    assert "--target is a setting for tables, but the data is read as images" in (
        capsys.readouterr().err
    )


def test_distill_temperature_and_alpha_auto_from_the_cli(tmp_path):
    data = tmp_path / "t.csv"
    fraud_like_csv(data, n=800)
    out = tmp_path / "run"
    code = main(
        ["distill", "--data", str(data), "--target", "is_fraud", "--out", str(out),
         "--drop", "transaction_id", "--epochs", "6", "--temperature", "auto", "--alpha",
         "AUTO", "--no-baseline", "--quiet"]
    )  # fmt: skip
    assert code == 0
    chosen = json.loads((out / "report.json").read_text())["student"]["chosen"]
    assert chosen["temperature"] in (1.0, 2.0, 4.0, 8.0) and chosen["alpha"] in (0.5, 0.9, 1.0)
    assert len(chosen["search"]["trials"]) == 12


def test_distill_auto_temperature_is_refused_for_text_lines(tmp_path, capsys):
    code = main(["distill", "--task", "textline", "--data", str(tmp_path), "--out",
                 str(tmp_path / "o"), "--temperature", "auto", "--quiet"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "--temperature 'auto' is for tables and images" in err
    with pytest.raises(SystemExit) as stop:
        main(["distill", "--data", "x.csv", "--alpha", "high"])
    assert stop.value.code == 2
    assert "expected a number or auto, got 'high'" in capsys.readouterr().err


def test_distill_method_flag_reaches_the_trainer_and_the_report(tmp_path, capsys):
    data = tmp_path / "t.csv"
    fraud_like_csv(data, n=800)
    out = tmp_path / "run"
    argv = ["distill", "--data", str(data), "--target", "is_fraud", "--out", str(out),
            "--drop", "transaction_id", "--epochs", "4", "--no-baseline", "--quiet"]  # fmt: skip
    assert main([*argv, "--method", "auto"]) == 0
    chosen = json.loads((out / "report.json").read_text())["student"]["chosen"]
    assert chosen["method"] in ("hinton", "dist")
    assert [t["method"] for t in chosen["search"]["trials"]] == ["hinton", "dist"]
    assert main([*argv, "--method", "bag"]) == 2
    assert "--method 'bag' is not a method for tables" in capsys.readouterr().err
