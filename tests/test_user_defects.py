"""Issue 17, "The first hour of a new user": each of these tests failed before its fix."""

from __future__ import annotations

import json
import os
import stat
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import crosskd
from crosskd.exceptions import DataError

lgb = pytest.importorskip("lightgbm")

# Column names LightGBM rewrites (space -> "_") or refuses (JSON characters, line breaks), plus
# dots, a slash, a percent sign and non-ASCII letters it keeps.
ODD_NAMES = [
    "mean radius",
    "ratio.a/b",
    "bucket[0]",
    "key:value",
    'quote"d',
    "a,b",
    "{set}",
    "prix (€)",
    "größe",
    "50%",
    "two\nlines",
]

TINY_LGBM = {"n_estimators": 8, "num_leaves": 4, "min_child_samples": 5, "n_jobs": 1}


def odd_frame(n: int = 240, seed: int = 0, names=ODD_NAMES) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, len(names))), columns=names)
    y = (X.iloc[:, 0] - X.iloc[:, -1] > 0).astype(int).to_numpy()
    return X, y


# ------------------------------------------------------------------------ 1. LightGBM column names


def test_fit_lightgbm_takes_any_column_names():
    from crosskd.tabular.gbdt import fit_lightgbm, lightgbm_feature_names

    X, y = odd_frame()
    X["segment"] = np.where(y == 1, "retail", "online")  # a string column too
    X["flag"] = X["größe"] > 0  # and a bool one
    model = fit_lightgbm(X, y, eval_set=(X.iloc[:60], y[:60]), params=TINY_LGBM)
    teacher = crosskd.LightGBMTeacher(model)
    proba = teacher.predict_proba(X)
    assert proba.shape == (len(X), 2)
    assert ((proba[:, 1] > 0.5) == y).mean() > 0.8
    # Columns are matched by their original names, in any order, extra columns ignored.
    shuffled = X[list(reversed(X.columns))].assign(extra=1.0)
    np.testing.assert_allclose(teacher.predict_proba(shuffled), proba)
    # The names LightGBM holds are the documented, reversible ones.
    names = lightgbm_feature_names(X.columns)
    assert list(model.booster_.feature_name()) == names
    assert teacher.feature_columns(X.columns) == dict(zip(names, X.columns, strict=True))
    # A saved model file keeps the mapping: its names alone say which column feeds which input.
    again = crosskd.LightGBMTeacher(lgb.Booster(model_str=model.booster_.model_to_string()))
    np.testing.assert_allclose(again.predict_proba(shuffled), proba, rtol=1e-6)


def test_lightgbm_feature_names_are_safe_distinct_and_readable():
    from crosskd.tabular.gbdt import lightgbm_feature_names

    names = lightgbm_feature_names(["a b", "a_b", "a%20b", "x[1]", "plain", 7, "größe"])
    assert len(set(names)) == 7
    assert names[1] == "a_b" and names[4] == "plain" and names[5] == "7" and names[6] == "größe"
    for name in names:
        assert not set(name) & set('",:[]{} \n\r')
    with pytest.raises(DataError, match="appears twice"):
        lightgbm_feature_names(["a", "a"])


def test_fit_lightgbm_space_and_underscore_twins():
    from crosskd.tabular.gbdt import fit_lightgbm

    X, y = odd_frame(names=["a b", "a_b", "c"])
    model = fit_lightgbm(X, y, params=TINY_LGBM)
    teacher = crosskd.LightGBMTeacher(model)
    cols = teacher.feature_columns(X.columns)
    assert sorted(cols.values()) == ["a b", "a_b", "c"]
    swapped = X.rename(columns={"a b": "a_b", "a_b": "a b"})
    assert not np.allclose(teacher.predict_proba(swapped), teacher.predict_proba(X))


@pytest.mark.parametrize("form", ["classifier", "booster", "file"])
def test_user_trained_lightgbm_with_spaces_and_unicode(form, tmp_path):
    names = ["mean radius", "worst area", "ratio.a", "größe", "naïve score", "plain"]
    X, y = odd_frame(names=names)
    clf = lgb.LGBMClassifier(verbose=-1, **TINY_LGBM).fit(X, y)
    assert "mean_radius" in clf.booster_.feature_name()  # LightGBM's own rewrite
    if form == "classifier":
        model = clf
    elif form == "booster":
        model = clf.booster_
    else:
        model = tmp_path / "model.txt"
        clf.booster_.save_model(str(model))
    teacher = crosskd.LightGBMTeacher(model)
    np.testing.assert_allclose(
        teacher.predict_proba(X[list(reversed(names))]), clf.predict_proba(X), rtol=1e-6
    )


def test_missing_column_message_names_only_what_is_missing():
    names = ["mean radius", "worst area", "plain"]
    X, y = odd_frame(names=names)
    clf = lgb.LGBMClassifier(verbose=-1, **TINY_LGBM).fit(X, y)
    teacher = crosskd.LightGBMTeacher(clf)
    with pytest.raises(DataError) as err:
        teacher.logits(X.drop(columns=["worst area"]))
    message = str(err.value)
    assert "lacks 1 of the 3" in message and "'worst_area'" in message
    assert "mean_radius" not in message.split("Got columns")[0]  # given columns are not "missing"
    assert "spaces" in message  # says how names are matched


def test_lightgbm_bool_and_string_columns_as_in_training():
    from crosskd.tabular.gbdt import fit_lightgbm

    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {
            "amount": rng.normal(size=300),
            "flag": rng.random(300) > 0.5,
            "kind": rng.choice(["x", "y"], 300),
        }
    )
    y = ((X["amount"] + X["flag"]) > 0.5).astype(int).to_numpy()
    model = fit_lightgbm(X, y, params=TINY_LGBM)
    proba = crosskd.LightGBMTeacher(model).predict_proba(X)
    assert proba.shape == (300, 2)


def test_cli_distill_with_odd_column_names(tmp_path, monkeypatch):
    from crosskd.cli import main
    from crosskd.tabular import gbdt

    for key, value in TINY_LGBM.items():  # a small teacher: the names are what is tested
        monkeypatch.setitem(gbdt.DEFAULT_PARAMS, key, value)

    names = [n for n in ODD_NAMES if "\n" not in n]  # a CSV header holds no line break
    X, y = odd_frame(n=300, names=names)
    X["target"] = y
    data = tmp_path / "bc.csv"
    X.to_csv(data, index=False)
    out = tmp_path / "run"
    argv = ["distill", "--data", str(data), "--target", "target", "--out", str(out)]
    assert main([*argv, "--epochs", "2", "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["teacher"]["metrics"]["roc_auc"] > 0.8
    # The teacher file it wrote scores the original CSV columns.
    teacher = crosskd.LightGBMTeacher(next(out.glob("teacher*.txt")))
    assert teacher.predict_proba(pd.read_csv(data)).shape == (300, 2)


def test_kdclassifier_unfitted_lgbm_on_string_columns_in_cross_val_score():
    from sklearn.model_selection import cross_val_score

    X, y = odd_frame(n=200, names=["mean radius", "b"])
    X["merchant"] = np.where(np.arange(200) % 3 == 0, "online", "shop")
    clf = crosskd.KDClassifier(
        teacher=lgb.LGBMClassifier(verbose=-1, **TINY_LGBM),
        hidden=(4,),
        epochs=25,
        batch_size=100,
        lr=5e-2,
    )
    scores = cross_val_score(clf, X, y, cv=2, scoring="roc_auc", error_score="raise")
    assert scores.shape == (2,) and np.all(scores > 0.8)


# ------------------------------------------------------------------------ 6. file modes


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_writes_respect_the_umask(tmp_path, mask):
    from crosskd._atomic import atomic_path, write_json

    old = os.umask(mask)
    try:
        written = write_json(tmp_path / "report.json", {"a": 1})
        with atomic_path(tmp_path / "model.bin") as tmp:
            tmp.write_bytes(b"weights")
    finally:
        os.umask(old)
    for path in (written, tmp_path / "model.bin"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


# ------------------------------------------------------------------------ 7. anomaly teacher scale


@pytest.fixture(scope="module")
def detector_data():
    from sklearn.ensemble import IsolationForest

    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(380, 4)), rng.normal(loc=4.0, size=(20, 4))])
    return X, IsolationForest(n_estimators=30, random_state=0).fit(X)


def test_anomaly_scale_is_fitted_from_the_score_spread(detector_data):
    X, detector = detector_data
    teacher = crosskd.SklearnTeacher(detector)  # the default: "auto"
    p = teacher.predict_proba(X)[:, 1]
    # The probabilities use the range (with a slope of 1 they all lay within 0.44-0.56) ...
    assert np.quantile(p, 0.95) - np.quantile(p, 0.05) > 0.5
    # ... the detector's own threshold stays at P = 0.5 ...
    np.testing.assert_array_equal(p > 0.5, detector.predict(X) == -1)
    # ... and the slope is the documented one: pi / (sqrt(3) * robust std of d).
    d = detector.decision_function(X)
    sigma = 1.4826 * np.median(np.abs(d - np.median(d)))
    assert teacher.anomaly_scale_ == pytest.approx(np.pi / (np.sqrt(3) * sigma))
    assert teacher.info.extra["anomaly_scale"] == pytest.approx(teacher.anomaly_scale_)
    # Fitted once: later calls, on any rows, use the same slope.
    np.testing.assert_allclose(teacher.predict_proba(X[:5])[:, 1], p[:5], rtol=1e-6)


def test_anomaly_scale_fitted_explicitly_or_fixed(detector_data):
    X, detector = detector_data
    teacher = crosskd.SklearnTeacher(detector).fit_anomaly_scale(X)
    assert teacher.predict_proba(X[:2]).shape == (2, 2)  # few rows are fine once fitted
    fixed = crosskd.SklearnTeacher(detector, anomaly_scale=1.0)
    assert fixed.anomaly_scale_ == 1.0
    p = fixed.predict_proba(X[:2])[:, 1]
    np.testing.assert_allclose(p, 1 / (1 + np.exp(detector.decision_function(X[:2]))), rtol=1e-6)
    with pytest.raises(DataError, match="fit_anomaly_scale"):
        crosskd.SklearnTeacher(detector).predict_proba(X[:3])  # 3 rows say nothing of the spread


def test_kdclassifier_fits_the_anomaly_scale_on_its_training_rows(detector_data):
    from sklearn.ensemble import IsolationForest

    X, _ = detector_data
    y = np.r_[np.zeros(380, int), np.ones(20, int)]
    clf = crosskd.KDClassifier(
        teacher=IsolationForest(n_estimators=30, random_state=0), hidden=(4,), epochs=1
    ).fit(X, y)
    d = clf.teacher_.model.decision_function(X)
    sigma = 1.4826 * np.median(np.abs(d - np.median(d)))
    assert clf.teacher_.anomaly_scale_ == pytest.approx(np.pi / (np.sqrt(3) * sigma))


# ------------------------------------------------------------------------ 10. unreadable images


def _image_folder(root, bad=("1/broken.png", "0/empty.png")):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("0", "1"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 255, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"img{i}.png")
    (root / bad[0]).write_bytes(b"not a png at all")
    (root / bad[1]).write_bytes(b"")
    return [root / b for b in bad]


def test_image_folder_lists_every_unreadable_file(tmp_path):
    from crosskd.vision import read_image_folder

    bad = _image_folder(tmp_path)
    with pytest.raises(DataError) as err:
        read_image_folder(tmp_path)
    message = str(err.value)
    assert "2 of the 8 image files" in message
    assert all(str(b) in message for b in bad)
    assert "skip_unreadable=True" in message
    with pytest.warns(UserWarning, match="skipped 2 unreadable") as record:
        x, y, classes = read_image_folder(tmp_path, skip_unreadable=True)
    assert all(str(b) in str(record[0].message) for b in bad)
    assert x.shape == (6, 1, 8, 8) and list(y) == [0, 0, 0, 1, 1, 1]


def test_image_folder_lists_only_the_first_unreadable_files(tmp_path):
    from crosskd.vision import load_images

    _image_folder(tmp_path)
    for i in range(12):
        (tmp_path / "0" / f"junk{i:02d}.png").write_bytes(b"junk")
    with pytest.raises(DataError) as err:
        load_images(tmp_path)
    message = str(err.value)
    assert "14 of the 20 image files" in message and "and 4 more" in message
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert load_images(tmp_path, skip_unreadable=True)[0].shape[0] == 6


def _textline_folder(root):
    from PIL import Image

    root.mkdir()
    for label in ("ab12", "cd34", "ef56"):
        Image.fromarray(np.full((10, 30), 200, np.uint8)).save(root / f"{label}.png")
    (root / "zz99.png").write_bytes(b"broken")
    (root / "yy00.png").write_bytes(b"")
    return root


def test_textline_readers_list_every_unreadable_file(tmp_path):
    from crosskd.vision import load_textlines

    folder = _textline_folder(tmp_path / "lines")
    with pytest.raises(DataError) as err:
        load_textlines(folder, height=16)
    assert "2 of the 5 image files" in str(err.value)
    assert "zz99.png" in str(err.value) and "yy00.png" in str(err.value)
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        images, labels, files = load_textlines(folder, height=16, skip_unreadable=True)
    assert labels == ["ab12", "cd34", "ef56"] and images.shape[0] == 3 == len(files)

    tsv = tmp_path / "lines.tsv"
    tsv.write_text("".join(f"lines/{f.name}\t{f.stem}\n" for f in sorted(folder.iterdir())))
    with pytest.raises(DataError, match="2 of the 5 image files"):
        load_textlines(tsv, height=16)
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        _, labels, _ = load_textlines(tsv, height=16, skip_unreadable=True)
    assert labels == ["ab12", "cd34", "ef56"]


# ------------------------------------------------------------------------ 10. missing batch axis


def test_single_image_without_batch_axis_says_add_it(tmp_path):
    from crosskd.vision import ImageMLP, SmallCNN

    image = torch.rand(1, 12, 12)
    with pytest.raises(DataError, match=r"add the batch axis: x\[None\]"):
        SmallCNN(in_chans=1, num_classes=2, width=4)(image)
    with pytest.raises(DataError, match=r"add the batch axis: x\[None\]"):
        SmallCNN(in_chans=3, num_classes=2, width=4)(torch.rand(3, 12, 12))
    with pytest.raises(DataError, match=r"add the channel axis: x\[:, None\]"):
        SmallCNN(in_chans=1, num_classes=2, width=4)(torch.rand(5, 12, 12))
    with pytest.raises(DataError, match=r"add the batch axis: x\[None\]"):
        ImageMLP(input_shape=(3, 8, 8), num_classes=2, hidden=(4,))(torch.rand(3, 8, 8))

    # The message a loaded student gives for a single image.
    rng = np.random.default_rng(0)
    x = rng.random((20, 1, 12, 12)).astype(np.float32)
    distiller = crosskd.Distiller(
        None, SmallCNN(in_chans=1, num_classes=2, width=4), epochs=1, alpha=0.0, progress=False
    ).fit(x, rng.integers(0, 2, 20))
    loaded = crosskd.load(distiller.save(tmp_path / "cnn.safetensors"))
    with pytest.raises(DataError, match=r"x\[None\]"):
        loaded.predict(x[0])
    assert loaded.predict(x[0][None]).shape == (1,)


def test_preprocess_refuses_one_colour_image_without_the_batch_axis():
    from crosskd.vision import ImagePreprocess

    with pytest.raises(DataError, match=r"add the batch axis: x\[None\]"):
        ImagePreprocess(in_chans=3)(torch.rand(3, 8, 8))  # was read as 3 grey images
    assert ImagePreprocess(in_chans=3)(torch.rand(3, 1, 8, 8)).shape == (3, 3, 8, 8)
    assert ImagePreprocess(in_chans=1)(torch.rand(5, 8, 8)).shape == (5, 1, 8, 8)  # (N, H, W)


def test_one_image_without_the_batch_axis_says_how_to_add_it():
    import numpy as np
    import pytest
    import torch

    from crosskd import CRNN, DataError, Distiller, ImageMLP

    crnn = CRNN("tiny", num_classes=5, width=4, hidden=8, height=16)
    with pytest.raises(DataError, match=r"add the batch axis: x\[None\]"):
        crnn(torch.rand(1, 16, 48))
    x = np.random.default_rng(0).random((40, 1, 8, 8)).astype(np.float32)
    y = np.arange(40) % 2
    d = Distiller(None, ImageMLP((1, 8, 8), 2, hidden=(8,)), alpha=0.0, epochs=1,
                  progress=False, device="cpu").fit(x, y)  # fmt: skip
    with pytest.raises(DataError, match=r"add the batch axis: x\[None\]"):
        d.predict_proba(x[0])


def test_distiller_repr_and_evaluate_without_labels():
    import numpy as np
    import pytest
    from toy import LinearTeacher

    from crosskd import MLP, ConfigError, Distiller

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    W = rng.normal(size=(4, 2)) * 2
    y = (X @ W).argmax(1)
    d = Distiller(LinearTeacher(W), MLP(4, 2, hidden=(8,)), alpha=0.9, epochs=3, progress=False)
    text = repr(d)
    assert "alpha=0.9" in text and "epochs=3" in text and "temperature" not in text
    d.fit(X, y)
    assert "fitted: epochs" in repr(d)
    fid = d.evaluate(X)  # no labels: fidelity to the teacher
    assert {"prediction_agreement", "spearman", "top1_overlap", "top5_overlap"} <= set(fid)
    assert 0.5 < fid["prediction_agreement"] <= 1.0
    loaded = Distiller(None, MLP(4, 2), alpha=0.0)
    loaded.student_, loaded.classes_ = d.student_, d.classes_
    with pytest.raises(ConfigError, match="without labels measures fidelity"):
        loaded.evaluate(X)
