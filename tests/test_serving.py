"""crosskd.serving.Scorer: numpy-only scoring with the same numbers and errors as predict_proba."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import crosskd
from crosskd.exceptions import BundleError, ConfigError, DataError, NotFittedError
from crosskd.serving import Scorer

ROOT = Path(__file__).resolve().parents[1]
ATOL = 1e-6


def table(n=300, seed=0):
    """Numeric columns with NaN, a text category with missing values, an integer category."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "amount": rng.lognormal(3, 1.5, n),
            "hour": rng.integers(0, 24, n).astype(float),
            "delay": rng.normal(0, 5, n),
            "merchant": rng.choice(["shop", "fuel", "web", "atm"], n),
            "country": pd.Series(rng.choice(["fr", "de", None], n), dtype=object),
            "terminal": rng.integers(0, 5, n),
        }
    )
    frame.loc[rng.random(n) < 0.2, "amount"] = np.nan
    frame.loc[rng.random(n) < 0.1, "delay"] = np.nan
    frame.loc[: n // 10, "amount"] = 1e6  # outliers, clipped
    y = ((frame.hour > 12) ^ (frame.delay.fillna(0) > 2)) | (frame.merchant == "web")
    return frame, y.astype(int).to_numpy()


def fit(frame, y, classes=None, **student):
    labels = y if classes is None else np.asarray(classes, dtype=object)[y]
    student = crosskd.TabularStudent(hidden=(8, 4), **student)
    return crosskd.Distiller(
        None, student, alpha=0.0, epochs=2, progress=False, device="cpu", seed=0
    ).fit(frame, labels)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    frame, y = table()
    distiller = fit(frame, y)
    path = distiller.save(tmp_path_factory.mktemp("mixed") / "student")
    return frame, distiller, path


@pytest.fixture(scope="module")
def numeric(tmp_path_factory):
    frame, y = table()
    frame = frame[["amount", "hour", "delay"]]
    distiller = fit(frame, y)
    path = distiller.save(tmp_path_factory.mktemp("numeric") / "student")
    return frame, distiller, path


def unseen_rows(frame):
    test, _ = table(n=40, seed=1)
    test = test[list(frame.columns)].copy()
    if "merchant" in test:
        test.loc[:3, "merchant"] = "never-seen"
        test.loc[4:6, "terminal"] = 99
    return test


# ----------------------------------------------------------------------------- parity


def test_mixed_table_parity_every_input_kind(mixed):
    frame, distiller, path = mixed
    scorer = Scorer.load(path, backend="numpy")
    test = unseen_rows(frame)
    expected = distiller.predict_proba(test)
    np.testing.assert_allclose(scorer.predict_proba(test), expected, atol=ATOL, rtol=0)
    # one row at a time: DataFrame, dict, object array, in any column order
    shuffled = test[list(reversed(test.columns))]
    for i in range(len(test)):
        row = test.iloc[[i]]
        np.testing.assert_allclose(scorer.predict_proba(row), expected[[i]], atol=ATOL, rtol=0)
        np.testing.assert_allclose(
            scorer.predict_proba(shuffled.iloc[[i]]), expected[[i]], atol=ATOL, rtol=0
        )
        record = {c: test[c].iloc[i] for c in test.columns}
        np.testing.assert_allclose(scorer.predict_proba(record), expected[[i]], atol=ATOL, rtol=0)
    records = test.to_dict("records")
    np.testing.assert_allclose(scorer.predict_proba(records), expected, atol=ATOL, rtol=0)
    objects = test.to_numpy(dtype=object)
    np.testing.assert_allclose(scorer.predict_proba(objects), expected, atol=ATOL, rtol=0)
    np.testing.assert_allclose(scorer.predict_proba(objects[0]), expected[[0]], atol=ATOL, rtol=0)
    assert list(scorer.predict(test)) == list(distiller.predict(test))


def test_numeric_table_parity_rows_batches_and_backends(numeric):
    frame, distiller, path = numeric
    test = unseen_rows(frame)
    expected = distiller.predict_proba(test)
    values = test.to_numpy(dtype=np.float64)
    for backend in ("numpy", "onnxruntime", "auto"):
        scorer = Scorer.load(path, backend=backend, onnx_min_rows=8)
        np.testing.assert_allclose(scorer.predict_proba(values), expected, atol=ATOL, rtol=0)
        np.testing.assert_allclose(scorer.predict_proba(test), expected, atol=ATOL, rtol=0)
    scorer = Scorer.load(path)
    for i in range(len(test)):  # rows with NaN go through the exact path, others the folded one
        np.testing.assert_allclose(
            scorer.predict_proba(values[i]), expected[[i]], atol=ATOL, rtol=0
        )
        np.testing.assert_allclose(
            scorer.predict_proba(test.iloc[[i]]), expected[[i]], atol=ATOL, rtol=0
        )
    assert np.isnan(values).any(axis=1).any() and (~np.isnan(values).any(axis=1)).any()
    # a float32 array and a list of lists are rows too
    np.testing.assert_allclose(
        scorer.predict_proba(values.astype(np.float32)),
        distiller.predict_proba(test.astype(np.float32)),
        atol=ATOL,
        rtol=0,
    )
    np.testing.assert_allclose(scorer.predict_proba(values.tolist()), expected, atol=ATOL, rtol=0)


def test_from_distiller_matches_load_and_keeps_string_classes(tmp_path):
    frame, y = table(n=120)
    distiller = fit(frame, y, classes=["legit", "fraud"])
    scorer = Scorer.from_distiller(distiller)
    assert scorer.classes_ == tuple(distiller.classes_) == ("fraud", "legit")
    np.testing.assert_allclose(
        scorer.predict_proba(frame), distiller.predict_proba(frame), atol=ATOL, rtol=0
    )
    assert list(scorer.predict(frame.iloc[:5])) == list(distiller.predict(frame.iloc[:5]))
    loaded = Scorer.load(distiller.save(tmp_path / "s"))
    np.testing.assert_allclose(
        loaded.predict_proba(frame), scorer.predict_proba(frame), atol=1e-12, rtol=0
    )


def test_three_classes_and_embedding_width(tmp_path):
    frame, _ = table(n=150)
    y = np.random.default_rng(3).integers(0, 3, len(frame))
    distiller = fit(frame, y, embedding_dim=3)
    scorer = Scorer.load(distiller.save(tmp_path / "s"))
    np.testing.assert_allclose(
        scorer.predict_proba(frame), distiller.predict_proba(frame), atol=ATOL, rtol=0
    )
    row = frame.iloc[[7]]
    np.testing.assert_allclose(
        scorer.predict_proba(row), distiller.predict_proba(row), atol=ATOL, rtol=0
    )


def test_mlp_bundle_with_batch_norm_and_dropout(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)).astype(np.float32)
    y = rng.integers(0, 3, 200)
    mlp = crosskd.MLP(5, 3, hidden=(16, 8), batch_norm=True, dropout=0.2)
    distiller = crosskd.Distiller(None, mlp, alpha=0.0, epochs=2, progress=False).fit(X, y)
    scorer = Scorer.load(distiller.save(tmp_path / "mlp"))
    expected = distiller.predict_proba(X)
    np.testing.assert_allclose(scorer.predict_proba(X), expected, atol=ATOL, rtol=0)
    np.testing.assert_allclose(
        scorer.predict_proba(X[3].astype(np.float64)), expected[[3]], atol=ATOL, rtol=0
    )
    bad = X[:4].copy()
    bad[1, 2] = np.nan
    with pytest.raises(DataError) as err_scorer:
        scorer.predict_proba(bad)
    with pytest.raises(DataError) as err_torch:
        distiller.predict_proba(bad)
    assert str(err_scorer.value) == str(err_torch.value)
    with pytest.raises(DataError, match="finite numbers only"):
        scorer.predict_proba(bad[1].astype(np.float64))
    with pytest.raises(DataError, match="DataFrame"):
        scorer.predict_proba(pd.DataFrame(X))


# ----------------------------------------------------------------------------- errors


def messages(scorer, distiller, X):
    with pytest.raises(DataError) as err_scorer:
        scorer.predict_proba(X)
    with pytest.raises(DataError) as err_frame:
        distiller.predict_proba(X if not isinstance(X, dict) else pd.DataFrame([X]))
    return str(err_scorer.value), str(err_frame.value)


def test_bad_rows_raise_the_dataframe_paths_errors(mixed):
    frame, distiller, path = mixed
    scorer = Scorer.load(path)
    row = {c: frame[c].iloc[0] for c in frame.columns}

    # a missing key / column: the same message, word for word
    no_hour = {k: v for k, v in row.items() if k != "hour"}
    got, want = messages(scorer, distiller, no_hour)
    assert got == want and "lacks 1 column(s)" in got and "'hour'" in got
    got, want = messages(scorer, distiller, frame.drop(columns=["hour", "merchant"]).iloc[:3])
    assert got == want
    got, want = messages(scorer, distiller, frame.drop(columns=["hour"]).iloc[[0]])
    assert got == want

    # text where a number is expected: same start, both name the column
    text = dict(row, delay="soon")
    got, want = messages(scorer, distiller, text)
    assert got.startswith("Column 'delay' must be numeric") and want.startswith(got[:30])
    frame_text = frame.iloc[:2].assign(delay=["soon", "late"])
    got, want = messages(scorer, distiller, frame_text)
    assert got == want

    # ±inf is refused, NaN is allowed in numeric columns, like the encoder
    got, want = messages(scorer, distiller, dict(row, amount=float("inf")))
    assert got == want and "infinite" in got
    got, want = messages(scorer, distiller, frame.iloc[:3].assign(amount=[1.0, np.inf, -np.inf]))
    assert got == want
    nan_row = dict(row, amount=np.nan, country=None, merchant=float("nan"))
    np.testing.assert_allclose(
        scorer.predict_proba(nan_row),
        distiller.predict_proba(pd.DataFrame([nan_row])),
        atol=ATOL,
        rtol=0,
    )

    # an array of the wrong width
    got, want = messages(scorer, distiller, frame.to_numpy(dtype=object)[:2, :4])
    assert got == want and "columns but the encoder was fitted on 6" in got

    # unhashable category value, a Series, duplicate columns
    with pytest.raises(DataError, match="'merchant' holds a category value"):
        scorer.predict_proba(dict(row, merchant=["shop"]))
    with pytest.raises(DataError, match="Series"):
        scorer.predict_proba(frame.iloc[0])
    dupes = pd.concat([frame.iloc[:2], frame[["hour"]].iloc[:2]], axis=1)
    got, want = messages(scorer, distiller, dupes)
    assert got == want and "duplicate" in got


def test_settings_and_bundles_are_checked(tmp_path, mixed):
    _, distiller, path = mixed
    with pytest.raises(ConfigError, match="backend"):
        Scorer.load(path, backend="tensorrt")
    with pytest.raises(ConfigError, match="threads"):
        Scorer.load(path, threads=0)
    with pytest.raises(BundleError, match="No student bundle"):
        Scorer.load(tmp_path / "nothing")
    (tmp_path / "junk.safetensors").write_bytes(b"\x80\x04 not a bundle at all")
    with pytest.raises(BundleError, match="not a safetensors file"):
        Scorer.load(tmp_path / "junk.safetensors")
    with pytest.raises(NotFittedError, match="fitted Distiller"):
        Scorer.from_distiller(crosskd.Distiller(None, crosskd.TabularStudent()))
    from crosskd.vision import SmallCNN

    cnn = crosskd.Distiller(None, SmallCNN(width=2), alpha=0.0, epochs=1, progress=False)
    images = np.random.default_rng(0).random((20, 1, 8, 8)).astype(np.float32)
    cnn.fit(images, np.arange(20) % 10)
    with pytest.raises(BundleError, match="Scorer serves tabular students"):
        Scorer.load(cnn.save(tmp_path / "cnn"))
    # a run folder works as well as the file
    run = tmp_path / "run"
    run.mkdir()
    (run / "student.safetensors").write_bytes(Path(path).read_bytes())
    assert Scorer.load(run).classes_ == tuple(distiller.classes_)
    assert "TabularStudent" in repr(Scorer.load(run))


# ----------------------------------------------------------------------------- imports

_LIGHT_IMPORT = """
import json, sys
sys.path.insert(0, {root!r})
{prelude}
from crosskd.serving import Scorer
scorer = Scorer.load({path!r}, backend="numpy")
proba = scorer.predict_proba({row!r})
proba = scorer.predict_proba([{row!r}, {row!r}])
heavy = [m for m in ("torch", "pandas", "lightgbm", "timm", "sklearn") if m in sys.modules]
print(json.dumps({{"heavy": heavy, "proba": proba.tolist()}}))
"""

# Import crosskd/serving.py without running crosskd/__init__.py, to check the module's own imports.
_BYPASS_PACKAGE = """
import types
package = types.ModuleType("crosskd")
package.__path__ = [{package!r}]
sys.modules["crosskd"] = package
"""


def _run_light(prelude: str, path, row) -> dict:
    code = _LIGHT_IMPORT.format(root=str(ROOT), prelude=prelude, path=str(path), row=row)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_serving_module_imports_neither_torch_nor_pandas(numeric):
    frame, distiller, path = numeric
    row = {c: float(frame[c].iloc[5]) for c in frame.columns}
    result = _run_light(_BYPASS_PACKAGE.format(package=str(ROOT / "crosskd")), path, row)
    assert result["heavy"] == []
    np.testing.assert_allclose(
        result["proba"][0], distiller.predict_proba(pd.DataFrame([row]))[0], atol=ATOL
    )


def test_import_crosskd_serving_is_light(numeric):
    frame, _, path = numeric
    row = {c: float(frame[c].iloc[5]) for c in frame.columns}
    assert _run_light("", path, row)["heavy"] == []


# ----------------------------------------------------------------------------- int8 export


@pytest.fixture(scope="module")
def exported(numeric, tmp_path_factory):
    from crosskd.export import export_onnx

    frame, distiller, _ = numeric
    folder = tmp_path_factory.mktemp("onnx")
    return frame, distiller, export_onnx(distiller, folder / "student.onnx").path


def test_quantize_dynamic_reports_size_latency_and_metric(exported):
    from crosskd.quantize import quantize_onnx

    frame, distiller, path = exported
    _, y = table()
    val = (frame.iloc[:200], y[:200])
    test = (frame.iloc[200:], y[200:])
    report = quantize_onnx(
        path, validation=val, test=test, tolerance=1.0, timing_calls=20, batch_rows=300
    )
    assert report.path == path.with_name("student.int8.onnx") and report.path.is_file()
    assert report.metric == "average_precision" and report.higher_is_better
    assert report.accepted and not report.forced and report.mode == "dynamic"
    assert report.bytes["int8"] == report.path.stat().st_size and report.bytes["fp32"] > 0
    assert set(report.latency_us) == set(report.rows_per_s) == {"fp32", "int8"}
    import crosskd.metrics as kdm

    want = kdm.average_precision(y[:200], distiller.predict_proba(frame.iloc[:200])[:, 1])
    assert report.validation["fp32"] == pytest.approx(want, abs=1e-4)
    assert report.validation["change"] == pytest.approx(
        report.validation["int8"] - report.validation["fp32"]
    )
    assert report.test is not None and report.test["rows"] == len(frame) - 200
    assert "validation rows" in report.summary() and json.dumps(report.to_dict())


def test_quantize_refuses_a_loss_above_tolerance_unless_forced(exported, tmp_path, monkeypatch):
    import crosskd.quantize as q
    from crosskd.exceptions import ExportError
    from crosskd.export import export_onnx

    frame, _, path = exported
    _, y = table()
    # An "int8" model that has learnt the opposite labels: its AP is far lower.
    flipped = fit(frame, 1 - y)
    bad = export_onnx(flipped, tmp_path / "flipped.onnx").path
    monkeypatch.setattr(
        q, "_quantize", lambda ort, src, dst, mode, cal: dst.write_bytes(bad.read_bytes())
    )
    target = tmp_path / "out.int8.onnx"
    with pytest.raises(ExportError, match="lowers the validation average_precision") as err:
        q.quantize_onnx(path, target, validation=(frame, y), timing_calls=5, batch_rows=50)
    assert not target.exists() and "Nothing was written" in str(err.value)
    assert (
        err.value.report.loss > q.TOLERANCES["average_precision"] and not err.value.report.accepted
    )
    report = q.quantize_onnx(
        path, target, validation=(frame, y), force=True, timing_calls=5, batch_rows=50
    )
    assert report.forced and report.path == target and target.is_file()


def test_quantize_static_and_settings(exported, tmp_path):
    from crosskd.quantize import quantize_onnx

    frame, _, path = exported
    _, y = table()
    with pytest.raises(ConfigError, match="calibration rows"):
        quantize_onnx(path, validation=(frame, y), mode="static")
    with pytest.raises(ConfigError, match="mode must be"):
        quantize_onnx(path, validation=(frame, y), mode="int4")
    with pytest.raises(ConfigError, match="overwrite its source"):
        quantize_onnx(path, path, validation=(frame, y))
    with pytest.raises(DataError, match="labels"):
        quantize_onnx(path, tmp_path / "x.onnx", validation=(frame, y[:10]))
    report = quantize_onnx(
        path,
        tmp_path / "static.onnx",
        validation=(frame.iloc[150:], y[150:]),
        calibration=frame.iloc[:150],
        mode="static",
        tolerance=1.0,
        timing_calls=5,
        batch_rows=50,
    )
    import onnx

    ops = {n.op_type for n in onnx.load(str(report.path)).graph.node}
    assert "QuantizeLinear" in ops and "Softmax" in ops  # probabilities stay in float


def test_quantize_accuracy_and_cer_metrics(tmp_path):
    import crosskd.quantize as q
    from crosskd.export import export_onnx

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6)).astype(np.float32)
    y = np.asarray(["a", "b", "c"], dtype=object)[rng.integers(0, 3, 120)]
    distiller = crosskd.Distiller(
        None, crosskd.MLP(6, 3, hidden=(8,)), alpha=0.0, epochs=2, progress=False
    ).fit(X, y)
    path = export_onnx(distiller, tmp_path / "mlp.onnx").path
    report = q.quantize_onnx(path, validation=(X, y), tolerance=1.0, timing_calls=5, batch_rows=50)
    assert report.metric == "accuracy"
    assert report.validation["fp32"] == pytest.approx(np.mean(distiller.predict(X) == y))
    # greedy CTC decoding and the CER used for sequence students
    probs = np.zeros((2, 5, 3))
    probs[0, [0, 1, 2, 3, 4], [1, 1, 0, 1, 2]] = 1  # a a - a b -> "aab"
    probs[1, :, 0] = 1  # all blank -> ""
    assert q._greedy_strings(probs, "ab") == ["aab", ""]
    assert q._score("cer", probs, ["aab", "b"], None, "ab") == pytest.approx(1 / 4)
    with pytest.raises(ConfigError, match="alphabet"):
        q._score("cer", probs, ["aab", "b"], None, None)


def test_one_row_frames_of_mixed_numeric_dtypes(tmp_path):
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=200),
            "count": rng.integers(0, 9, 200),
            "b": rng.normal(size=200).astype(np.float32),
            "flag": rng.integers(0, 2, 200).astype(np.int8),
        }
    )
    y = (frame.a + frame["count"] > 4).astype(int).to_numpy()
    distiller = fit(frame, y)
    scorer = Scorer.load(distiller.save(tmp_path / "s"))
    expected = distiller.predict_proba(frame)
    shuffled = frame[["flag", "b", "a", "count"]]
    copied = frame.copy()  # a frame whose blocks are laid out anew
    for i in range(0, 200, 7):
        for source in (frame, shuffled, copied):
            np.testing.assert_allclose(
                scorer.predict_proba(source.iloc[[i]]), expected[[i]], atol=ATOL, rtol=0
            )
    single = pd.DataFrame(frame.to_numpy(np.float64), columns=frame.columns)
    np.testing.assert_allclose(scorer.predict_proba(single.iloc[[3]]), expected[[3]], atol=ATOL)


def test_two_class_softmax_keeps_both_tails():
    from crosskd.serving import _softmax

    logits = np.asarray([[0, 800], [800, 0], [0, 1e-3], [-30, 30], [5, 5]], dtype=np.float32)
    z = logits.astype(np.float64)
    want = np.exp(z - z.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    got = _softmax(logits)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert got[3, 0] > 0  # exp(-60): tiny, not rounded to 0


# ----------------------------------------------------------------------------- the benchmark


@pytest.mark.slow
@pytest.mark.data
def test_serving_benchmark_quick_writes_the_json_form(tmp_path):
    """benchmarks/serving.py --quick (30 trees, 3 epochs, no OCR) runs end to end."""
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "serving.py"),
            "--quick",
            "--no-ocr",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    result = json.loads((tmp_path / "serving-quick.json").read_text())
    for key in (
        "benchmark",
        "command",
        "device",
        "git_commit",
        "argv",
        "environment",
        "load_average",
        "wall_seconds",
        "machine",
        "git_dirty",
        "crosskd_version",
        "settings",
        "libraries",
        "rows",
    ):
        assert key in result
    assert result["quick"] is True and result["benchmark"] == "serving"
    assert result["argv"][:2] == ["benchmarks/serving.py", "--quick"]
    names = [row["model"] for row in result["rows"]]
    assert any("Scorer, dict" in n for n in names) and any("Booster" in n for n in names)
    assert sum(row["chosen"] for row in result["rows"]) == 2
    checks = result["fraud"]["checks"]
    assert checks["scorer_vs_predict_proba_max_abs_diff"] < 1e-6
    assert (tmp_path / "serving-quick.md").read_text().startswith("# Serving side by side")
