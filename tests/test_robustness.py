"""Bad inputs get clear errors (what was wrong, what was expected, how to fix it), at the Python API
and at the ``crosskd distill`` command line; recoveries (unseen categories, batch sizes, tiny data)
do what docs/robustness.md says; no code path unpickles a user file.

Cases already tested elsewhere are not repeated here; docs/robustness.md lists every case with the
test that covers it (test_losses, test_teachers, test_tabular, test_io, test_trainer, test_cli,
test_checkpoint).
"""

from __future__ import annotations

import ast
import pickle
import re
import subprocess
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from toy import LinearTeacher

import crosskd
from crosskd import Distiller, PrecomputedTeacher, TabularStudent
from crosskd.cli import main
from crosskd.exceptions import ConfigError, CrossKDError, DataError, DeviceError
from crosskd.tabular import MLP
from crosskd.teachers import LightGBMTeacher

PACKAGE = Path(crosskd.__file__).parent


def data(n=120, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    W = rng.normal(size=(d, k))
    y = (X @ W).argmax(1)
    return X, y, W


def net(d=4, k=3):
    return nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, k))


def distiller(teacher, student, **kwargs):
    settings = dict(epochs=1, batch_size=32, progress=False, device="cpu")
    settings.update(kwargs)
    return Distiller(teacher, student, **settings)


# --------------------------------------------------------------------------------------------------
# Python API: data


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            "nan",
            r"X has 1 NaN and 0 infinite value\(s\) \(first at index \(3, 1\)\).*TabularStudent",
        ),
        ("inf", r"X has 0 NaN and 1 infinite value\(s\).*finite numbers only"),
        ("1d", r"X has shape \(120,\); Sequential needs rows.*reshape"),
        ("ragged", r"X is ragged \(rows of different lengths\)"),
        ("text", r"X must be numeric for Sequential, got dtype <U"),
    ],
)
def test_plain_student_refuses_unusable_X(bad, message):
    # Before: NaN / inf trained to a "Training diverged" error (or, with a teacher that scores NaN
    # rows, a message about the teacher); a 1-D X failed deep inside torch's Linear.
    X, y, W = data()
    if bad == "nan":
        X[3, 1] = np.nan
    elif bad == "inf":
        X[3, 1] = np.inf
    elif bad == "1d":
        X = X[:, 0]
    elif bad == "ragged":
        X = [[1.0, 2.0], [3.0]] * 60
    elif bad == "text":
        X = X.astype(str)
    with pytest.raises(DataError, match=message):
        distiller(LinearTeacher(W), net()).fit(X, y)


@pytest.mark.parametrize(
    "bad, message",
    [
        ("empty", r"fit got 0 training rows\. Pass at least one row\."),
        ("frame", r"Sequential takes tensors, but X is a DataFrame\. Use crosskd\.TabularStudent"),
        ("2-D y", r"y must be 1-D \(one label per row\), got shape \(120, 2\)"),
    ],
)
def test_empty_data_frames_for_plain_students_and_2d_labels(bad, message):
    X, y, W = data()
    if bad == "empty":
        X, y = X[:0], y[:0]
    elif bad == "frame":
        X = pd.DataFrame(X)
    elif bad == "2-D y":
        y = np.column_stack([y, y])
    with pytest.raises(DataError, match=message):
        distiller(LinearTeacher(W), net()).fit(X, y)


def test_predict_and_transfer_rows_must_have_the_training_width():
    X, y, W = data()
    d = distiller(LinearTeacher(W), net()).fit(X, y)
    with pytest.raises(
        DataError, match=r"per-row shape \[\(3,\)\], but it was trained on \[\(4,\)\]"
    ):
        d.predict_proba(X[:, :3])
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(DataError, match="X has 1 NaN"):
        d.predict_proba(Xn)
    with pytest.raises(DataError, match=r"transfer gives the student inputs of per-row shape"):
        distiller(LinearTeacher(W), net()).fit(X, y, transfer=X[:, :3])


@pytest.mark.parametrize(
    "eval_set, message",
    [
        ("X only", r"eval_set must be a pair \(X_val, y_val\), got a tuple of length 1"),
        ("array", r"eval_set must be a pair \(X_val, y_val\), got a ndarray"),
        ("empty", "eval_set has 0 rows"),
    ],
)
def test_bad_eval_set(eval_set, message):
    X, y, W = data()
    value = {"X only": (X,), "array": X, "empty": (X[:0], y[:0])}[eval_set]
    with pytest.raises(DataError, match=message):
        distiller(LinearTeacher(W), net()).fit(X, y, eval_set=value)


def test_labels_that_mix_text_and_numbers():
    X, y, W = data(n=6)
    y_mixed = pd.Series([0, 1, "yes", 0, 1, "yes"], dtype=object)
    with pytest.raises(DataError, match=r"y mixes text labels \['yes'\] with numeric labels"):
        distiller(None, net(), alpha=0.0).fit(X, y_mixed)


def test_constant_target_without_teacher():
    X, _, _ = data()
    with pytest.raises(DataError, match=r"The target has 1 class \(\[1\]\); a classifier needs"):
        distiller(None, net(), alpha=0.0).fit(X, np.ones(len(X), dtype=int))


def test_validation_fraction_of_too_few_rows():
    # Before: a raw ValueError from scikit-learn's train_test_split.
    X, y, W = data()
    with pytest.raises(
        DataError, match=r"validation_fraction=0.2 of 1 training row\(s\) leaves no row"
    ):
        distiller(LinearTeacher(W), net(), validation_fraction=0.2).fit(X[:1], y[:1])


def test_duplicate_dataframe_columns_through_the_distiller():
    X, y, _ = data()
    frame = pd.DataFrame(X, columns=["a", "b", "a", "c"])
    with pytest.raises(DataError, match=r"duplicate column names \['a'\]"):
        distiller(None, TabularStudent(hidden=(4,)), alpha=0.0).fit(frame, y)


def test_teacher_that_returns_non_finite_logits():
    X, y, W = data()

    class Broken(LinearTeacher):
        def _logits(self, X):
            out = super()._logits(X)
            out[5] = np.nan
            return out

    with pytest.raises(
        DataError, match="The teacher returned non-finite logits for 1 of the training"
    ):
        distiller(Broken(W), net()).fit(X, y)


def test_teacher_feature_count_differs_from_the_data():
    X, y, _ = data()
    booster = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": 1},
        lgb.Dataset(np.column_stack([X, X[:, :1]]), y),
        num_boost_round=2,
    )
    with pytest.raises(
        DataError, match="could not score the training rows: LightGBMTeacher: the model expects 5"
    ):
        distiller(LightGBMTeacher(booster), net()).fit(X, y)


def test_precomputed_teacher_with_validation_fraction_and_foreign_eval_rows():
    # validation_fraction splits rows the precomputed logits are tied to: the logits are now
    # scored before the split (before: "not the rows the precomputed logits were computed for").
    X, y, W = data()
    teacher = PrecomputedTeacher(X.astype(np.float64) @ W, rows=X)
    d = distiller(teacher, net(), validation_fraction=0.25, epochs=2).fit(X, y)
    assert "val_loss" in d.history_[0]
    other, y_other, _ = data(n=30, seed=1)
    with pytest.raises(DataError, match="The teacher could not score the validation rows: "):
        distiller(teacher, net()).fit(X, y, eval_set=(other, y_other))


# --------------------------------------------------------------------------------------------------
# Python API: settings


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"weight_decay": -1.0}, ConfigError, "weight_decay must be a number >= 0"),
        ({"device": "gpu"}, ConfigError, "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
        ({"val_metric": "f7"}, ConfigError, r"val_metric='f7' is not computed here"),
        ({"lr": float("nan")}, ConfigError, "lr must be a positive number"),
    ],
)
def test_bad_settings(kwargs, error, message):
    X, y, W = data()
    with pytest.raises(error, match=message):
        distiller(LinearTeacher(W), net(), **kwargs).fit(X, y, eval_set=(X, y))


def test_teacher_and_student_of_the_wrong_type():
    X, y, _ = data()
    model = lgb.LGBMClassifier(n_estimators=2, verbose=-1).fit(X, y)
    with pytest.raises(ConfigError, match="teacher must be a crosskd Teacher.*got LGBMClassifier"):
        distiller(model, net()).fit(X, y)
    with pytest.raises(ConfigError, match="student must be a torch.nn.Module, got LGBMClassifier"):
        distiller(None, model, alpha=0.0).fit(X, y)


# --------------------------------------------------------------------------------------------------
# Python API: recoveries


def test_batch_size_larger_than_the_data_and_a_single_row():
    X, y, W = data()
    d = distiller(LinearTeacher(W), net(), batch_size=10_000, epochs=2).fit(X, y)
    assert len(d.history_) == 2 and np.isfinite(d.history_[-1]["train_loss"])
    one = distiller(LinearTeacher(W), net()).fit(X[:1], y[:1])
    assert one.predict_proba(X[:1]).shape == (1, 3)


def test_batchnorm_student_never_gets_a_batch_of_one_row():
    # 33 rows in batches of 32 would leave one row, which BatchNorm refuses in training (before:
    # a raw ValueError from torch); it joins the previous batch instead.
    X, y, W = data(n=33)
    d = distiller(LinearTeacher(W), MLP(4, 3, (8,), batch_norm=True), epochs=2).fit(X, y)
    assert len(d.history_) == 2
    with pytest.raises(DataError, match="BatchNorm layers, which need at least 2 rows per batch"):
        distiller(LinearTeacher(W), MLP(4, 3, (8,), batch_norm=True)).fit(X[:1], y[:1])


def test_unseen_categories_and_extra_columns_are_handled_and_counted():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"amount": rng.normal(size=200), "shop": rng.choice(["a", "b"], 200)})
    y = (frame["shop"] == "a").astype(int).to_numpy()
    d = distiller(None, TabularStudent(hidden=(4,)), alpha=0.0).fit(frame, y)
    new = frame.head(5).assign(shop=["a", "zzz", "zzz", None, "b"], note="extra")
    proba = d.predict_proba(new)
    assert np.isfinite(proba).all()
    report = d.student_.encoder.last_report_
    assert report["unseen_categories"] == {"shop": 2}
    assert report["missing_categories"] == {"shop": 1}
    assert report["extra_columns"] == ["note"]


# --------------------------------------------------------------------------------------------------
# Safe persistence: no code path unpickles a user file


FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def unsafe_loading(source: str, where: str) -> list[str]:
    """Lines of ``source`` that import a pickle module or may unpickle a file."""
    problems = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names = {(node.module or "").split(".")[0]}
        else:
            names = set()
        if names & FORBIDDEN_MODULES:
            problems.append(f"{where}:{node.lineno} imports {sorted(names & FORBIDDEN_MODULES)}")
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        kwargs = {k.arg: k.value for k in node.keywords}
        line = f"{where}:{node.lineno} {name}(...)"

        if name.endswith("jit.load"):
            problems.append(line)
        elif name.endswith("torch.load") and not is_constant(kwargs, "weights_only", True):
            problems.append(f"{line} without weights_only=True")
        elif name.endswith(("np.load", "numpy.load")) and "allow_pickle" in kwargs:
            if not is_constant(kwargs, "allow_pickle", False):
                problems.append(f"{line} with allow_pickle")
        elif name.endswith(("read_pickle", "pickle.load", "pickle.loads", "Unpickler")):
            problems.append(line)
    return problems


def is_constant(kwargs: dict, key: str, value: object) -> bool:
    return isinstance(kwargs.get(key), ast.Constant) and kwargs[key].value is value


def test_no_code_path_unpickles_a_user_file():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = str(path.relative_to(PACKAGE.parent))
        problems += unsafe_loading(path.read_text(encoding="utf-8"), where)
    assert not problems, "unsafe loading:\n" + "\n".join(problems)


def test_the_scan_catches_unsafe_loading():
    source = (
        "import pickle\nimport torch, numpy as np, pandas as pd\n"
        "torch.load(p)\ntorch.load(p, weights_only=False)\nnp.load(p, allow_pickle=True)\n"
        "pd.read_pickle(p)\ntorch.jit.load(p)\n"
        "torch.load(p, weights_only=True)\nnp.load(p)\nnp.load(p, allow_pickle=False)\n"
    )
    assert [line.split(" ")[0] for line in unsafe_loading(source, "x")] == [
        "x:1", "x:3", "x:4", "x:5", "x:6", "x:7",
    ]  # fmt: skip


def test_a_pickled_teacher_model_file_is_refused_not_unpickled(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CrossKDError, match="is not a LightGBM model text file"):
        LightGBMTeacher(path)
    assert not marker.exists()


# --------------------------------------------------------------------------------------------------
# The command line: one line "crosskd: error: ...", exit status 2, no traceback


def table(path: Path, n=200, seed=0, **overrides) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 40.0, n).round(2),
            "shop": rng.choice(["grocery", "fuel", "online"], n),
            "label": (rng.random(n) < 0.3).astype(int),
        }
    )
    for name, value in overrides.items():
        frame[name] = value
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return frame


def run_cli(capsys, *args: str) -> str:
    code = main(["distill", "--quiet", "--epochs", "1", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("crosskd: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """LightGBM model files: a good binary one (amount, shop), a 3-class one, a one-vs-all one,
    one trained on other columns, a truncated one and a pickle."""
    root = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {"amount": rng.normal(size=120), "shop": pd.Categorical(rng.choice(["a", "b"], 120))}
    )
    y3 = rng.integers(0, 3, 120)
    params = {"verbose": -1, "num_threads": 1, "min_data_in_leaf": 5}
    paths = {}
    for name, extra, data_X in [
        ("binary", {"objective": "binary"}, X),
        ("three", {"objective": "multiclass", "num_class": 3}, X),
        ("ova", {"objective": "multiclassova", "num_class": 3}, X),
        ("other_columns", {"objective": "binary"}, X.rename(columns={"amount": "value"})),
    ]:
        labels = y3 if "num_class" in extra else (y3 > 0).astype(int)
        booster = lgb.train({**params, **extra}, lgb.Dataset(data_X, labels), num_boost_round=3)
        paths[name] = root / f"{name}.txt"
        booster.save_model(str(paths[name]))
    text = paths["binary"].read_text()
    paths["truncated"] = root / "truncated.txt"
    paths["truncated"].write_text(text[: len(text) // 2])
    paths["pickle"] = root / "model.pkl"
    paths["pickle"].write_bytes(pickle.dumps({"not": "a model"}))
    return paths


@pytest.mark.parametrize(
    "case, message",
    [
        ("empty file", r"Could not read '.*empty.csv' as csv: No columns to parse"),
        (
            "header only",
            r"has no rows \(only a header with columns \['amount', 'shop', 'label'\]\)",
        ),
        ("folder", r"is a folder, not a file"),
        ("suffix", r"has suffix '.xlsx'; expected one of .csv"),
        ("latin-1", r"not UTF-8 text \(byte b'\\xe9' at position \d+\)\. Save the file as UTF-8"),
        ("duplicate columns", r"duplicate column names \['amount'\] in its header line"),
        ("bad parquet", r"Could not read '.*bad.parquet' as parquet"),
        ("target all empty", r"Target column 'label' is empty in all 200 rows"),
        ("target constant", r"Target column 'label' has a single value \(1\) in its 200 labelled"),
        ("target mixed", r"mixes numbers with text: '\?' \(7 rows\) are not numbers"),
        ("few rows", r"--data has 6 labelled rows; crosskd distill needs at least 20"),
        ("inf feature", r"Column 'amount' has 1 infinite value\(s\) \(±inf\) during fit"),
    ],
)
def test_cli_bad_data(tmp_path, capsys, case, message):
    data = tmp_path / "t.csv"
    if case == "empty file":
        data = tmp_path / "empty.csv"
        data.write_bytes(b"")
    elif case == "header only":
        data.write_text("amount,shop,label\n")
    elif case == "folder":
        data = tmp_path
    elif case == "suffix":
        data = tmp_path / "t.xlsx"
        data.write_bytes(b"PK\x03\x04")
    elif case == "latin-1":
        data.write_bytes("amount,shop,label\n1,caf\xe9,0\n2,bar,1\n".encode("latin-1"))
    elif case == "duplicate columns":
        data.write_text("amount,amount,label\n" + "".join(f"{i},{i},{i % 2}\n" for i in range(40)))
    elif case == "bad parquet":
        data = tmp_path / "bad.parquet"
        data.write_bytes(b"PAR1 this is not parquet")
    elif case == "target all empty":
        table(data, label=np.nan)
    elif case == "target constant":
        table(data, label=1)
    elif case == "target mixed":
        table(data, label=["?"] * 7 + [0, 1] * 96 + [1])
    elif case == "few rows":
        table(data, n=6, label=[0, 1, 0, 1, 0, 1])
    elif case == "inf feature":
        table(data, amount=[np.inf] + [1.0] * 199, label=[0, 1] * 100)
    err = run_cli(capsys, "--data", str(data), "--target", "label", "--out", str(tmp_path / "o"))
    assert re.search(message, err), err


@pytest.mark.parametrize(
    "flags, error_type, message",
    [
        (["--device", "cuda"], DeviceError, "no usable CUDA device"),
        (["--device", "gpu"], ConfigError, "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
        (
            ["--epochs", "0"],
            ConfigError,
            "--epochs must be a positive integer .*or auto.*, got 0",
        ),
        (
            ["--batch-size", "0"],
            ConfigError,
            "--batch-size must be a positive integer or auto, got 0",
        ),
        (
            ["--alpha", "nan"],
            ConfigError,
            r"--alpha must be a number in \[0, 1\] \(tables, images: or auto\), got nan",
        ),
        (["--test-size", "1.5"], ConfigError, r"--test-size must be a number in \(0, 1\), got 1.5"),
    ],
)
def test_cli_bad_settings_fail_before_reading_data(tmp_path, capsys, flags, error_type, message):
    if error_type is DeviceError and torch.cuda.is_available():
        pytest.skip("checks the error on a machine without CUDA")
    # --data does not exist: the settings are checked first, before any data is read or any
    # teacher is trained.
    err = run_cli(capsys, "--data", str(tmp_path / "later.csv"), "--target", "label",
                  "--out", str(tmp_path / "o"), *flags)  # fmt: skip
    assert re.search(message, err), err


@pytest.mark.parametrize(
    "model, message",
    [
        ("truncated", r"is truncated or corrupt: .*Save the model again"),
        ("pickle", r"is not a LightGBM model text file \(it is not UTF-8 text\)"),
        ("ova", r"one-vs-all.*Retrain with objective='multiclass'"),
        ("three", r"--teacher-model has 3 classes but target 'label' has 2 \(\['0', '1'\]\)"),
        (
            "other_columns",
            r"the DataFrame lacks 1 of the 2 columns the model was trained on: 'value'",
        ),
        ("missing", r"LightGBM model file '.*missing.txt' does not exist"),
    ],
)
def test_cli_bad_teacher_model(tmp_path, capsys, models, model, message):
    data = tmp_path / "t.csv"
    table(data)
    path = tmp_path / "missing.txt" if model == "missing" else models[model]
    err = run_cli(capsys, "--data", str(data), "--target", "label", "--out", str(tmp_path / "o"),
                  "--teacher-model", str(path))  # fmt: skip
    assert re.search(message, err), err


def test_cli_bad_output_folder_and_test_file(tmp_path, capsys):
    data = tmp_path / "t.csv"
    table(data)
    err = run_cli(capsys, "--data", str(data), "--target", "label", "--out", str(data))
    assert "exists and is not a folder" in err
    err = run_cli(capsys, "--data", str(data), "--target", "label",
                  "--out", str(data / "below-a-file"))  # fmt: skip
    assert "Cannot create the --out folder" in err
    test = tmp_path / "test.csv"
    table(test, label=["fraud"] * 200)
    err = run_cli(capsys, "--data", str(data), "--target", "label", "--test", str(test),
                  "--out", str(tmp_path / "o"))  # fmt: skip
    assert re.search(r"--test has labels \['fraud'\] that the training data does not have", err)
    table(test, label=np.nan)
    err = run_cli(capsys, "--data", str(data), "--target", "label", "--test", str(test),
                  "--out", str(tmp_path / "o"))  # fmt: skip
    assert "has no row with a label in 'label'" in err
    pd.read_csv(data).drop(columns=["shop"]).to_csv(test, index=False)
    err = run_cli(capsys, "--data", str(data), "--target", "label", "--test", str(test),
                  "--out", str(tmp_path / "o"))  # fmt: skip
    assert re.search(r"lacks 1 feature column\(s\) of --data: \['shop'\]", err)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--hidden", "0"], "expected positive layer sizes"),
        (["--temperature", "abc"], "expected a number or auto, got 'abc'"),
    ],
)
def test_cli_flags_argparse_refuses(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as info:
        main(["distill", "--data", "d.csv", "--target", "y", "--out", str(tmp_path), *flags])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("crosskd distill: error: ")
    assert message in err and "Traceback" not in err


def test_cli_unseen_categories_are_counted_in_the_report(tmp_path, capsys):
    data, test = tmp_path / "train.csv", tmp_path / "test.csv"
    table(data, n=300)
    frame = table(test, n=60, seed=1)
    frame.loc[:9, "shop"] = "casino"
    frame.to_csv(test, index=False)
    code = main(["distill", "--quiet", "--epochs", "1", "--data", str(data), "--test", str(test),
                 "--target", "label", "--out", str(tmp_path / "o")])  # fmt: skip
    assert code == 0
    import json

    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["test_encoding"]["unseen_categories"] == {"shop": 10}
    assert "10 test value(s) of categorical columns were never seen" in capsys.readouterr().out


def test_cli_subprocess_error_is_one_line_without_traceback(tmp_path):
    data = tmp_path / "t.csv"
    data.write_bytes("amount,shop,label\n1,caf\xe9,0\n".encode("latin-1"))
    proc = subprocess.run(
        [sys.executable, "-m", "crosskd", "distill", "--data", str(data), "--target", "label",
         "--out", str(tmp_path / "o"), "--device", "cpu"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("crosskd: error: ") and "not UTF-8 text" in proc.stderr
