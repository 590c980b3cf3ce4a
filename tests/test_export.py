"""ONNX export: onnxruntime gives torch's probabilities, for every kind of student."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import crosskd
from crosskd.exceptions import BundleError, ConfigError, NotFittedError

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from crosskd.export import ExportError, OnnxExport, export_command, export_onnx  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def table(n=240, categorical=True, nan=True, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "amount": rng.lognormal(3, 1.5, n),
            "hour": rng.integers(0, 24, n).astype(float),
            "delay": rng.normal(0, 5, n),
        }
    )
    if categorical:
        frame["merchant"] = rng.choice(["shop", "fuel", "web", "atm"], n)
        frame["country"] = pd.Series(rng.choice(["fr", "de", None], n), dtype=object)
    if nan:
        frame.loc[rng.random(n) < 0.2, "amount"] = np.nan
        frame.loc[rng.random(n) < 0.1, "delay"] = np.nan
    y = ((frame.hour > 12) ^ (frame.delay.fillna(0) > 2)).astype(int)
    if categorical:
        y = y | (frame.merchant == "web").astype(int)
    return frame, y.to_numpy()


def fit(frame, y, **kwargs):
    return crosskd.Distiller(
        None, crosskd.TabularStudent(hidden=(8, 4)), alpha=0.0, epochs=3, progress=False, **kwargs
    ).fit(frame, y)


@pytest.mark.parametrize(
    "categorical,nan", [(True, True), (False, True), (True, False), (False, False)]
)
def test_tabular_student_parity(tmp_path, categorical, nan):
    frame, y = table(categorical=categorical, nan=nan)
    distiller = fit(frame, y)
    result = export_onnx(distiller, tmp_path / "student.onnx")
    assert result.path.is_file() and result.max_abs_diff <= 1e-5
    expected_inputs = ("numeric", "categorical") if categorical else ("numeric",)
    assert result.input_names == expected_inputs
    assert result.numeric_columns == ("amount", "hour", "delay")
    # Real rows (with unseen categories and NaN) through the saved file give torch's answer.
    test, _ = table(n=50, categorical=categorical, nan=True, seed=1)
    if categorical:
        test.loc[:4, "merchant"] = "never-seen"
    got = OnnxExport.from_file(result.path).predict_proba(test)
    np.testing.assert_allclose(got, distiller.predict_proba(test), atol=1e-5)


def test_categorical_codes_are_documented_formula(tmp_path):
    frame, y = table()
    distiller = fit(frame, y)
    result = export_onnx(distiller, tmp_path / "s.onnx")
    encoder = distiller.student_.encoder
    codes = result.encode_categorical(frame)
    for j, column in enumerate(result.categorical_columns):
        vocabulary = encoder.categories_[column]
        manual = [0 if v not in vocabulary else 1 + vocabulary.index(v) for v in frame[column]]
        np.testing.assert_array_equal(codes[:, j], manual)
    np.testing.assert_array_equal(codes, distiller.student_.encode(frame)[1].numpy())
    # out-of-range codes are read as unknown (0), not an onnxruntime crash
    feeds = result.inputs(frame.head(3))
    session = result.session()
    feeds_bad = dict(feeds, categorical=np.full_like(feeds["categorical"], 999))
    feeds_zero = dict(feeds, categorical=np.zeros_like(feeds["categorical"]))
    np.testing.assert_allclose(
        session.run(None, feeds_bad)[0], session.run(None, feeds_zero)[0], atol=1e-7
    )


def test_mlp_student_parity_with_batch_norm(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)).astype(np.float32)
    y = rng.integers(0, 3, 200)
    mlp = crosskd.MLP(5, 3, hidden=(16, 8), batch_norm=True, dropout=0.2)
    distiller = crosskd.Distiller(None, mlp, alpha=0.0, epochs=2, progress=False).fit(X, y)
    result = export_onnx(distiller, tmp_path / "mlp")
    assert result.path.name == "mlp.onnx" and result.input_names == ("input",)
    np.testing.assert_allclose(result.predict_proba(X), distiller.predict_proba(X), atol=1e-5)


def test_image_students_parity(tmp_path):
    from crosskd.vision import ImageMLP, SmallCNN

    cnn = SmallCNN(in_chans=1, num_classes=10, width=4)
    result = export_onnx(cnn, tmp_path / "cnn.onnx", input_shape=(1, 16, 16))
    assert result.input_shape == (1, 16, 16) and result.max_abs_diff <= 1e-5
    images = torch.rand(3, 1, 16, 16)
    np.testing.assert_allclose(
        result.predict_proba(images.numpy()),
        torch.softmax(cnn.eval()(images), -1).detach().numpy(),
        atol=1e-5,
    )
    assert export_onnx(ImageMLP((1, 8, 8), 10, (16,)), tmp_path / "mlp.onnx").max_abs_diff <= 1e-5
    with pytest.raises(ConfigError, match="input_shape"):
        export_onnx(cnn, tmp_path / "x.onnx")


def test_disagreement_raises_and_writes_nothing(tmp_path, monkeypatch):
    frame, y = table(n=120)
    distiller = fit(frame, y)
    import crosskd.export as export_module

    real = export_module._tabular_graph

    def broken(student, onnx, opset):
        model = real(student, onnx, opset)
        for init in model.graph.initializer:
            if init.name.startswith("center"):
                values = onnx.numpy_helper.to_array(init) + 1.0
                init.CopyFrom(onnx.numpy_helper.from_array(values, init.name))
        return model

    monkeypatch.setattr(export_module, "_tabular_graph", broken)
    with pytest.raises(ExportError, match="onnxruntime and torch disagree"):
        export_onnx(distiller, tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []


def test_export_command_and_errors(tmp_path, capsys):
    frame, y = table(n=120)
    distiller = fit(frame, y)
    distiller.save(tmp_path / "run" / "student.safetensors")
    result = export_command(tmp_path / "run", "onnx", None)
    assert result.path == tmp_path / "run" / "student.onnx"
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="not supported"):
        export_command(tmp_path / "run", "tflite", None)
    with pytest.raises(BundleError, match="does not exist"):
        export_command(tmp_path / "nowhere", "onnx", None)
    with pytest.raises(NotFittedError):
        export_onnx(crosskd.TabularStudent(), tmp_path / "x.onnx")


def test_kdclassifier_exports(tmp_path):
    from crosskd.estimator import KDClassifier

    frame, y = table(n=120)
    clf = KDClassifier(epochs=2).fit(frame, y)
    result = export_onnx(clf, tmp_path / "clf.onnx")
    np.testing.assert_allclose(result.predict_proba(frame), clf.predict_proba(frame), atol=1e-5)


def test_distiller_export_method(tmp_path):
    frame, y = table()
    distiller = fit(frame, y)
    result = distiller.export(tmp_path / "student.onnx")
    assert result.path.is_file() and result.max_abs_diff <= 1e-5
    np.testing.assert_allclose(
        result.predict_proba(frame), distiller.predict_proba(frame), atol=1e-5
    )
    with pytest.raises(ConfigError, match="Unknown export format 'tflite'"):
        distiller.export(tmp_path / "student.tflite", format="tflite")


def test_the_exporter_does_not_import_the_trainer():
    import ast
    from pathlib import Path

    import crosskd.export as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any("trainer" in name for name in imported), imported


def _text_reader():
    """A fitted-like text-line reader: a random CRNN and its alphabet (what export duck-types)."""
    from types import SimpleNamespace

    from crosskd.vision import CRNN, Alphabet

    torch.manual_seed(0)
    alphabet = Alphabet("abc")
    net = CRNN("tiny", num_classes=alphabet.num_classes, height=16, width=4, hidden=8)
    return SimpleNamespace(student_=net.eval(), alphabet_=alphabet), net


def test_text_line_student_exports_with_the_same_readings(tmp_path):
    from crosskd.losses import greedy_decode

    reader, net = _text_reader()
    lines = torch.rand(6, 1, 16, 40)
    result = export_onnx(reader, tmp_path / "lines.onnx", sample=lines)
    assert result.alphabet == {"chars": ["a", "b", "c"], "blank": 0}
    assert OnnxExport.from_file(result.path).alphabet == result.alphabet
    probs = result.predict_proba(lines.numpy())
    assert probs.shape[0] == 6 and probs.ndim == 3 and probs.shape[2] == 4
    with torch.inference_mode():
        expected = greedy_decode(net(lines))
    assert greedy_decode(torch.from_numpy(probs)) == expected
    assert any(expected)  # a random CRNN reads something: the check compares real readings


def test_text_line_export_refuses_other_readings(tmp_path, monkeypatch):
    import crosskd.export as export_module

    reader, _ = _text_reader()
    real = export_module._torch_graph

    def other_weights(module, example, onnx, opset):
        changed = __import__("copy").deepcopy(module)
        with torch.no_grad():
            changed.classifier.bias[0] += 50.0  # the blank wins every frame
        return real(changed, example, onnx, opset)

    monkeypatch.setattr(export_module, "_torch_graph", other_weights)
    with pytest.raises(ExportError, match="onnxruntime reads .* lines differently from torch"):
        export_onnx(reader, tmp_path / "bad.onnx", sample=torch.rand(4, 1, 16, 40), atol=1.0)
    assert not (tmp_path / "bad.onnx").exists()
