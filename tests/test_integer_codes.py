"""integer_codes: integer columns read both as numbers and as categories (encoder, CLI, serving)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import crosskd
from crosskd.cli import main
from crosskd.exceptions import ConfigError, DataError
from crosskd.serving import Scorer
from crosskd.tabular import TabularEncoder
from crosskd.tabular.encoder import MAX_CODES, MIN_ROWS_PER_CODE


def frame(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    out = pd.DataFrame(
        {
            "region": rng.integers(1, 50, n),  # a code: 49 values, ~20 rows each
            "amount": rng.normal(size=n),  # not integers
            "flag": rng.integers(0, 2, n),  # two values: a plain number
            "age": rng.integers(18, 90, n).astype(float),  # integers stored as floats, with NaN
            "row id": np.arange(n),  # integers, but one row per value
            "shop": rng.choice(["a", "b"], n),
        }
    )
    out.loc[3, "age"] = np.nan
    return out


def test_auto_finds_integer_columns_with_few_values_and_enough_rows_each():
    enc = TabularEncoder(integer_codes="auto").fit(frame())
    assert enc.code_columns_ == ["region", "age"]
    # the codes keep their number and gain a category, after the real categorical columns
    assert enc.numeric_columns_ == ["region", "amount", "flag", "age", "row id"]
    assert enc.categorical_columns_ == ["shop", "region", "age"]
    table = enc.transform(frame().head(5))
    assert table.numeric.shape == (5, 6)  # 5 numbers + the NaN indicator of age
    assert table.categorical.shape == (5, 3) and int(table.categorical.min()) >= 0
    assert "2 of them integer codes" in repr(enc)
    # the limits are the documented ones
    many = pd.DataFrame({"c": np.arange(MAX_CODES + 1).repeat(MIN_ROWS_PER_CODE)})
    assert TabularEncoder(integer_codes="auto").fit(many).code_columns_ == []
    few_rows = pd.DataFrame({"c": np.arange(10).repeat(MIN_ROWS_PER_CODE - 1)})
    assert TabularEncoder(integer_codes="auto").fit(few_rows).code_columns_ == []


def test_default_reads_no_codes_and_a_list_names_them():
    assert TabularEncoder().fit(frame()).code_columns_ == []
    enc = TabularEncoder(integer_codes=["flag"]).fit(frame())
    assert enc.code_columns_ == ["flag"] and "flag" in enc.numeric_columns_


def test_round_trip_and_unseen_codes():
    enc = TabularEncoder(integer_codes="auto").fit(frame())
    back = TabularEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    assert back.code_columns_ == enc.code_columns_ and back.integer_codes == "auto"
    test = frame(n=50, seed=1)
    test.loc[:4, "region"] = 777  # never seen: the unknown bucket, its number still scaled
    a, b = enc.transform(test), back.transform(test)
    assert (a.categorical == b.categorical).all() and (a.numeric == b.numeric).all()
    assert (a.categorical[:5, 1] == 0).all()
    # an encoder saved before integer_codes existed loads without codes
    old = enc.to_dict()
    del old["params"]["integer_codes"], old["code_columns"]
    old["categorical_columns"] = ["shop"]
    old["categories"] = {"shop": old["categories"]["shop"]}
    assert TabularEncoder.from_dict(old).code_columns_ == []


def test_bad_integer_codes_are_refused():
    with pytest.raises(ConfigError, match="integer_codes=\\['region'\\]"):
        TabularEncoder(integer_codes="region").fit(frame())
    with pytest.raises(DataError, match=r"\['shop', 'nope'\], which are not numeric columns"):
        TabularEncoder(integer_codes=["shop", "nope"]).fit(frame())


def test_student_serving_and_onnx_agree_with_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    from crosskd.export import OnnxExport, export_onnx

    data = frame(n=600)
    y = ((data.region % 7 == 0) | (data.amount > 1)).astype(int).to_numpy()
    student = crosskd.TabularStudent(hidden=(8, 4), encoder=TabularEncoder(integer_codes="auto"))
    fitted = crosskd.Distiller(None, student, alpha=0.0, epochs=3, progress=False, device="cpu",
                               seed=0).fit(data, y)  # fmt: skip
    path = fitted.save(tmp_path / "student")
    test = frame(n=40, seed=2)
    test.loc[:2, "region"] = 999
    expected = fitted.predict_proba(test)
    np.testing.assert_allclose(crosskd.load(path).predict_proba(test), expected, atol=1e-6)
    scorer = Scorer.load(path, backend="numpy")
    np.testing.assert_allclose(scorer.predict_proba(test), expected, atol=1e-6)
    row = {c: test[c].iloc[0] for c in test.columns}
    np.testing.assert_allclose(scorer.predict_proba(row), expected[[0]], atol=1e-6)
    onnx = export_onnx(fitted, tmp_path / "s.onnx")
    got = OnnxExport.from_file(onnx.path).predict_proba(test)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_cli_chooses_integer_codes_on_validation_and_reports_them(tmp_path, capsys):
    data = frame(n=900)
    data["label"] = np.where((data.region % 5 == 0) | (data.amount > 1.2), "yes", "no")
    data.to_csv(tmp_path / "t.csv", index=False)
    argv = ["distill", "--data", str(tmp_path / "t.csv"), "--target", "label", "--epochs", "3",
            "--quiet"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "auto")]) == 0
    printed = capsys.readouterr().out
    assert "integer columns that may be codes: 'region', 'age'" in printed
    report = json.loads((tmp_path / "auto" / "report.json").read_text())
    assert report["settings"]["integer_codes"] == "auto"
    info = report["data"]["integer_codes"]
    assert info["columns"] == ["region", "age"] and isinstance(info["used"], bool)
    v = info["validation"]
    assert v["metric"] == "average_precision" and v["standard_error"] >= 0
    assert info["used"] == (v["with_codes"] - v["without"] > v["standard_error"])
    encoder = crosskd.load(tmp_path / "auto").student_.encoder
    assert encoder.code_columns_ == (["region", "age"] if info["used"] else [])
    # the student alone trained for the choice is the run's baseline (no third fit)
    assert report["baseline"]["params"] == report["student"]["params"]

    argv.append("--no-baseline")
    assert main([*argv, "--out", str(tmp_path / "none"), "--integer-codes", "none"]) == 0
    assert crosskd.load(tmp_path / "none").student_.encoder.code_columns_ == []
    assert main([*argv, "--out", str(tmp_path / "one"), "--integer-codes", "flag"]) == 0
    assert "read as numbers and as categories (--integer-codes): 'flag'" in (
        capsys.readouterr().out
    )
    assert crosskd.load(tmp_path / "one").student_.encoder.code_columns_ == ["flag"]
    info = json.loads((tmp_path / "one" / "report.json").read_text())["data"]["integer_codes"]
    assert info == {"columns": ["flag"], "used": True, "validation": None}
