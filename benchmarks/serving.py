"""Serving side by side: compiled trees against the distilled student, one process, one thread.

Fraud (the handbook's 15 features): a LightGBM teacher of the fraud benchmark's shape (300 trees x
31 leaves, 4,095 bins) trained on one handbook week, and a 15-64-32-2 student distilled from it
(early stopping on the next validation week). Paths timed in the same run:

- teacher: ``Booster.predict``, lleaves (LLVM-compiled), treelite + tl2cgen (C-compiled); the
  compiled models must give LightGBM's probabilities (max abs difference reported);
- student: ``crosskd.serving.Scorer`` (numpy row, dict, one-row DataFrame; batches through its
  onnxruntime network), ``Distiller.predict_proba`` (DataFrame, torch), the torch module on
  encoded tensors, the ONNX export (fp32) and its int8 quantisation (:func:`crosskd.quantize.
  quantize_onnx`, dynamic, checked on the validation week) in onnxruntime.

OCR (MNIST): a small timm teacher (resnet10t, 16-128 channels) trained on 15,000 images for one
epoch, a SmallCNN (width 16) student distilled from it; teacher in timm / torch, student in torch, ONNX fp32 and
ONNX int8 (static, calibrated on training images, checked on held-out training images).

Batch 1: p50 / p99 of one call over ``--calls`` calls per path, the paths interleaved in rounds so
that a busy machine slows them alike. Batch 10,000: rows/s of the best of ``--repeats``
interleaved calls. Quality: average precision on the handbook's 4 test folds (mean, std), accuracy
on the 10,000 MNIST test images.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/serving.py

Writes ``benchmarks/results/serving.json`` and ``serving.md`` (``serving-quick.*`` with
``--quick``) through ``benchmarks/_results.py``. Needs lleaves (with llvmlite <
0.44) and treelite + tl2cgen (treelite of the version tl2cgen was built with); a missing one is
reported and skipped.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # before numpy is imported: one BLAS thread

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import crosskd  # noqa: E402
import crosskd.datasets.fraud as fraud  # noqa: E402
import crosskd.metrics as kdm  # noqa: E402
from crosskd.export import OnnxExport, export_onnx  # noqa: E402
from crosskd.profiling import device_description, model_size  # noqa: E402
from crosskd.quantize import quantize_onnx  # noqa: E402
from crosskd.serving import Scorer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_results.py, fraud_handbook
from _results import Results, mean_std, provenance_line  # noqa: E402
from fraud_handbook import FULL, KEY_COLUMNS, REFERENCE_START  # noqa: E402

BENCHMARK = "serving"
FEATURES = list(fraud.HANDBOOK_FEATURES)
TEACHER = "lgb-300x31leaves-4095bins"
BATCH = 10_000
#: Serving libraries whose versions the results record (besides the helper's environment).
SERVING_LIBRARIES = ("onnx", "lleaves", "llvmlite", "treelite", "tl2cgen")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- timing


def latency(
    paths: dict[str, tuple[Callable[[Any], Any], Sequence[Any]]], calls: int, rounds: int = 10
) -> dict[str, tuple[float, float]]:
    """p50 and p99 (us) of one call per path; paths interleaved in ``rounds`` rounds."""
    per = max(1, calls // rounds)
    samples: dict[str, list[int]] = {name: [] for name in paths}
    for fn, items in paths.values():  # warm-up
        for item in items[:50]:
            fn(item)
    for r in range(rounds):
        for name, (fn, items) in paths.items():
            out = samples[name]
            for j in range(per):
                item = items[(r * per + j) % len(items)]
                start = time.perf_counter_ns()
                fn(item)
                out.append(time.perf_counter_ns() - start)
    return {
        name: (float(np.percentile(v, 50) / 1e3), float(np.percentile(v, 99) / 1e3))
        for name, v in samples.items()
    }


def throughput(
    paths: dict[str, tuple[Callable[[Any], Any], Any, int]], repeats: int
) -> dict[str, float]:
    """rows/s of one big call per path: the best of ``repeats`` interleaved calls."""
    best = {name: float("inf") for name in paths}
    for fn, batch, _ in paths.values():
        fn(batch)
    for _ in range(repeats):
        for name, (fn, batch, _) in paths.items():
            start = time.perf_counter()
            fn(batch)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: paths[name][2] / best[name] for name in paths}


def version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# ----------------------------------------------------------------------------- fraud


def fraud_data(days: int) -> tuple[pd.DataFrame, pd.DataFrame, list[pd.DataFrame]]:
    """Training week and validation week (the latest validation fold), and the 4 test folds' test
    weeks of the handbook's protocol."""
    data = fraud.load_handbook("transformed", columns=KEY_COLUMNS + FEATURES)
    first = REFERENCE_START - pd.Timedelta(days=2 * days + 3 * days)
    last = REFERENCE_START + pd.Timedelta(days=3 * days + 3 * days)
    stamps = data["TX_DATETIME"]
    data = data[(stamps >= first) & (stamps < last)].reset_index(drop=True)
    train, _, val = fraud.handbook_folds(data, "validation", n_folds=1, days=days)[0]
    tests = [test for _, _, test in fraud.handbook_folds(data, "test", n_folds=4, days=days)]
    return train.reset_index(drop=True), val.reset_index(drop=True), tests


def compile_lleaves(booster: Any, folder: Path) -> tuple[Any, int] | str:
    try:
        import lleaves
    except ImportError as err:
        return f"lleaves not installed ({err})"
    model_file = folder / "teacher.txt"
    booster.save_model(str(model_file))
    model = lleaves.Model(model_file=str(model_file))
    library = folder / "teacher_lleaves.so"
    model.compile(cache=str(library))
    return model, library.stat().st_size


def compile_treelite(booster: Any, folder: Path) -> tuple[Any, Any, int] | str:
    try:
        import tl2cgen
        import treelite
    except ImportError as err:
        return f"treelite / tl2cgen not installed ({err})"
    model = treelite.frontend.from_lightgbm(booster)
    library = folder / "teacher_treelite.so"
    tl2cgen.export_lib(model, toolchain="gcc", libpath=str(library), params={}, nthread=1)
    predictor = tl2cgen.Predictor(str(library), nthread=1)
    return predictor, tl2cgen.DMatrix, library.stat().st_size


def run_fraud(args: argparse.Namespace, folder: Path) -> tuple[list[dict], dict, list[str]]:
    notes: list[str] = []
    started = time.perf_counter()
    train, val, tests = fraud_data(args.days)
    X, y = train[FEATURES], train["TX_FRAUD"].to_numpy()
    X_val, y_val = val[FEATURES], val["TX_FRAUD"].to_numpy()
    log(
        f"fraud data: train {len(X):,} rows, validation {len(X_val):,}, test folds "
        f"{[len(t) for t in tests]} ({time.perf_counter() - started:.0f} s)"
    )
    params = dict(FULL.lightgbm_grid[TEACHER])
    if args.quick:
        params["n_estimators"] = 30
    started = time.perf_counter()
    model = crosskd.fit_lightgbm(X, y, params=params, seed=0)
    booster = model.booster_
    log(f"teacher {TEACHER}: {booster.num_trees()} trees in {time.perf_counter() - started:.0f} s")
    teacher = crosskd.LightGBMTeacher(model)
    started = time.perf_counter()
    distiller = crosskd.Distiller(
        teacher,
        crosskd.TabularStudent(hidden=(64, 32)),
        temperature=2.0,
        alpha=0.9,
        epochs=3 if args.quick else 40,
        batch_size=1024,
        lr=1e-2,
        early_stopping=5,
        device="cpu",
        seed=0,
        progress=False,
    ).fit(X, y, eval_set=(X_val, y_val))
    bundle = distiller.save(folder / "student")
    loaded = crosskd.load(bundle)
    scorer = Scorer.load(bundle)
    student = loaded.student_.eval()
    log(
        f"student 15-64-32-2: best epoch {distiller.best_epoch_} in "
        f"{time.perf_counter() - started:.0f} s"
    )

    started = time.perf_counter()
    lleaves_model = compile_lleaves(booster, folder)
    if isinstance(lleaves_model, str):
        notes.append(lleaves_model)
    treelite_model = compile_treelite(booster, folder)
    if isinstance(treelite_model, str):
        notes.append(treelite_model)
    log(f"compiled trees in {time.perf_counter() - started:.0f} s")

    onnx_path = export_onnx(loaded, folder / "student.onnx", sample=X_val.iloc[:256]).path
    int8 = (
        quantize_onnx(
            onnx_path,
            validation=(X_val, y_val),
            test=(
                pd.concat([t[FEATURES] for t in tests]),
                np.concatenate([t["TX_FRAUD"].to_numpy() for t in tests]),
            ),
            mode="dynamic",
            timing_calls=200,
            batch_rows=BATCH,
            force=True,  # measured either way; the report says whether it was accepted
        )
        if not args.no_int8
        else None
    )
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    info = OnnxExport.from_file(onnx_path)
    sessions = {
        "fp32": ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    }
    if int8 is not None and int8.path is not None:
        sessions["int8"] = ort.InferenceSession(
            str(int8.path), options, providers=["CPUExecutionProvider"]
        )

    # --- one score function per path, for the test folds (quality)
    def onnx_scores(which: str) -> Callable[[pd.DataFrame], np.ndarray]:
        return lambda rows: sessions[which].run(["probabilities"], info.inputs(rows))[0][:, 1]

    def torch_scores(rows: pd.DataFrame) -> np.ndarray:
        with torch.inference_mode():
            logits = student(*student.encode(rows))
        return torch.softmax(logits.double(), -1)[:, 1].numpy()

    score_fns: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
        "lightgbm": lambda rows: booster.predict(rows.to_numpy(np.float64), num_threads=1),
        "scorer": lambda rows: scorer.predict_proba(rows.to_numpy(np.float64))[:, 1],
        "scorer-frame": lambda rows: scorer.predict_proba(rows)[:, 1],
        "distiller": lambda rows: loaded.predict_proba(rows)[:, 1],
        "torch": torch_scores,
        "onnx-fp32": onnx_scores("fp32"),
    }
    if "int8" in sessions:
        score_fns["onnx-int8"] = onnx_scores("int8")
    if not isinstance(lleaves_model, str):
        lle = lleaves_model[0]
        score_fns["lleaves"] = lambda rows: lle.predict(rows.to_numpy(np.float64), n_jobs=1)
    if not isinstance(treelite_model, str):
        predictor, dmatrix = treelite_model[0], treelite_model[1]
        score_fns["treelite"] = lambda rows: predictor.predict(
            dmatrix(rows.to_numpy(np.float64))
        ).reshape(-1)
    quality: dict[str, dict[str, list[float]]] = {}
    scores_test: dict[str, list[np.ndarray]] = {}
    for name, fn in score_fns.items():
        per_fold = [fn(t[FEATURES]) for t in tests]
        scores_test[name] = per_fold
        quality[name] = {
            "average_precision": mean_std(
                [
                    kdm.average_precision(t["TX_FRAUD"].to_numpy(), s)
                    for t, s in zip(tests, per_fold, strict=True)
                ]
            ),
            "roc_auc": mean_std(
                [
                    kdm.roc_auc(t["TX_FRAUD"].to_numpy(), s)
                    for t, s in zip(tests, per_fold, strict=True)
                ]
            ),
        }
    diffs = {
        name: float(
            max(
                np.max(np.abs(a - b))
                for a, b in zip(scores_test[name], scores_test["lightgbm"], strict=True)
            )
        )
        for name in ("lleaves", "treelite")
        if name in scores_test
    }
    parity = float(
        max(
            np.max(np.abs(a - b))
            for a, b in zip(scores_test["scorer"], scores_test["distiller"], strict=True)
        )
    )
    parity_frame = float(
        max(
            np.max(np.abs(a - b))
            for a, b in zip(scores_test["scorer-frame"], scores_test["distiller"], strict=True)
        )
    )
    log(
        f"quality done; compiled vs LightGBM max |diff| {diffs}; Scorer vs predict_proba "
        f"{parity:.2e}"
    )

    # --- batch 1: the same 1,000 test rows for every path
    pool = pd.concat(tests)[FEATURES].sample(n=1000, random_state=0)
    rows2d = [pool.iloc[[i]].to_numpy(np.float64) for i in range(len(pool))]
    rows1d = [r[0].copy() for r in rows2d]
    dicts = [{c: float(v) for c, v in zip(FEATURES, r, strict=True)} for r in rows1d]
    frames = [pool.iloc[[i]] for i in range(len(pool))]
    encoded = [tuple(t.contiguous() for t in student.encode(f)) for f in frames]
    feeds = {k: [info.inputs(f) for f in frames] for k in sessions}

    def run_torch(inputs: tuple[torch.Tensor, ...]) -> Any:
        with torch.inference_mode():
            return torch.softmax(student(*inputs), -1)

    single: dict[str, tuple[Callable[[Any], Any], Sequence[Any]]] = {
        "teacher: LightGBM Booster.predict (numpy row)": (
            lambda r: booster.predict(r, num_threads=1),
            rows2d,
        ),
    }
    if "lleaves" in score_fns:
        single["teacher: lleaves, LLVM-compiled (numpy row)"] = (
            lambda r: lle.predict(r, n_jobs=1),
            rows2d,
        )
    if "treelite" in score_fns:
        single["teacher: treelite + tl2cgen, C-compiled (numpy row)"] = (
            lambda r: predictor.predict(dmatrix(r)),
            rows2d,
        )
    single.update(
        {
            "student: crosskd Scorer, numpy row (1, 15)": (scorer.predict_proba, rows2d),
            "student: crosskd Scorer, numpy row (15,)": (scorer.predict_proba, rows1d),
            "student: crosskd Scorer, dict": (scorer.predict_proba, dicts),
            "student: crosskd Scorer, one-row DataFrame": (scorer.predict_proba, frames),
            "student: Distiller.predict_proba (DataFrame, torch)": (loaded.predict_proba, frames),
            "student: torch module on encoded tensors": (run_torch, encoded),
        }
    )
    for which in sessions:
        session = sessions[which]
        single[f"student: ONNX {which} in onnxruntime (raw numeric row)"] = (
            lambda f, s=session: s.run(["probabilities"], f),
            feeds[which],
        )
    calls = 300 if args.quick else args.calls
    started = time.perf_counter()
    lat = latency(single, calls)
    log(f"batch 1 timed in {time.perf_counter() - started:.0f} s")

    # --- batch 10,000
    big = pd.concat(tests)[FEATURES].sample(n=BATCH, random_state=1, replace=True)
    big = big.reset_index(drop=True)
    big_np = big.to_numpy(np.float64)
    big_records = big.to_dict("records")
    big_encoded = tuple(t.contiguous() for t in student.encode(big))
    big_feeds = info.inputs(big)
    many: dict[str, tuple[Callable[[Any], Any], Any, int]] = {
        "teacher: LightGBM Booster.predict (numpy row)": (
            lambda b: booster.predict(b, num_threads=1),
            big_np,
            BATCH,
        ),
    }
    if "lleaves" in score_fns:
        many["teacher: lleaves, LLVM-compiled (numpy row)"] = (
            lambda b: lle.predict(b, n_jobs=1),
            big_np,
            BATCH,
        )
    if "treelite" in score_fns:
        many["teacher: treelite + tl2cgen, C-compiled (numpy row)"] = (
            lambda b: predictor.predict(dmatrix(b)),
            big_np,
            BATCH,
        )
    many.update(
        {
            "student: crosskd Scorer, numpy row (1, 15)": (scorer.predict_proba, big_np, BATCH),
            "student: crosskd Scorer, dict": (scorer.predict_proba, big_records, BATCH),
            "student: crosskd Scorer, one-row DataFrame": (scorer.predict_proba, big, BATCH),
            "student: Distiller.predict_proba (DataFrame, torch)": (
                loaded.predict_proba,
                big,
                BATCH,
            ),
            "student: torch module on encoded tensors": (run_torch, big_encoded, BATCH),
        }
    )
    for which in sessions:
        session = sessions[which]
        many[f"student: ONNX {which} in onnxruntime (raw numeric row)"] = (
            lambda f, s=session: s.run(["probabilities"], f),
            big_feeds,
            BATCH,
        )
    started = time.perf_counter()
    rps = throughput(many, 2 if args.quick else args.repeats)
    log(f"batch {BATCH:,} timed in {time.perf_counter() - started:.0f} s")

    # --- rows
    size = model_size(booster)
    student_size = model_size(student)
    quality_of = {
        "teacher: LightGBM Booster.predict (numpy row)": "lightgbm",
        "teacher: lleaves, LLVM-compiled (numpy row)": "lleaves",
        "teacher: treelite + tl2cgen, C-compiled (numpy row)": "treelite",
        "student: crosskd Scorer, numpy row (1, 15)": "scorer",
        "student: crosskd Scorer, numpy row (15,)": "scorer",
        "student: crosskd Scorer, dict": "scorer",
        "student: crosskd Scorer, one-row DataFrame": "scorer-frame",
        "student: Distiller.predict_proba (DataFrame, torch)": "distiller",
        "student: torch module on encoded tensors": "torch",
        "student: ONNX fp32 in onnxruntime (raw numeric row)": "onnx-fp32",
        "student: ONNX int8 in onnxruntime (raw numeric row)": "onnx-int8",
    }
    nbytes = {
        "lleaves": None if isinstance(lleaves_model, str) else lleaves_model[1],
        "treelite": None if isinstance(treelite_model, str) else treelite_model[2],
        "onnx-fp32": onnx_path.stat().st_size,
        "onnx-int8": None if int8 is None or int8.path is None else int8.path.stat().st_size,
    }
    rows = []
    for name in single:
        key = quality_of[name]
        teacher_row = name.startswith("teacher")
        p50, p99 = lat[name]
        rows.append(
            {
                "model": f"fraud {name}",
                "role": "teacher" if teacher_row else "distilled",
                "params": size.params if teacher_row else student_size.params,
                "bytes": nbytes.get(key)
                or (size.bytes if teacher_row else Path(bundle).stat().st_size),
                "metrics": quality[key],
                "timing": {
                    "p50_us_batch1": p50,
                    "p99_us_batch1": p99,
                    "rows_per_s_batch1": 1e6 / p50,
                    "rows_per_s_batch10000": rps.get(name),
                },
                "chosen": name
                in (
                    "teacher: LightGBM Booster.predict (numpy row)",
                    "student: crosskd Scorer, numpy row (1, 15)",
                ),
            }
        )
    compiled = [n for n in rps if n.startswith("teacher:") and "compiled" in n]
    best_tree = max(compiled or [next(iter(rps))], key=lambda n: rps[n])
    fast = "student: crosskd Scorer, numpy row (1, 15)"
    lleaves_name = "teacher: lleaves, LLVM-compiled (numpy row)"
    checks = {
        "numpy_row_p50_us": lat[fast][0],
        "numpy_row_1d_p50_us": lat["student: crosskd Scorer, numpy row (15,)"][0],
        "lleaves_row_p50_us": lat[lleaves_name][0] if lleaves_name in lat else None,
        "numpy_row_at_or_below_lleaves": (
            lat[fast][0] <= lat[lleaves_name][0] if lleaves_name in lat else None
        ),
        "dict_p50_us": lat["student: crosskd Scorer, dict"][0],
        "dataframe_p50_us": lat["student: crosskd Scorer, one-row DataFrame"][0],
        "dict_and_dataframe_within_30_us": (
            lat["student: crosskd Scorer, dict"][0] <= 30
            and lat["student: crosskd Scorer, one-row DataFrame"][0] <= 30
        ),
        "best_compiled_tree": best_tree,
        "batch10000_ratio_to_best_compiled_tree": rps[fast] / rps[best_tree],
        "batch10000_at_least_10x": rps[fast] >= 10 * rps[best_tree],
        "compiled_trees_max_abs_diff_to_lightgbm": diffs,
        # equal at the 4 decimals the markdown shows (mean and std over the test folds)
        "compiled_trees_equal_lightgbm_ap": {
            k: [round(v, 4) for v in quality[k]["average_precision"]]
            == [round(v, 4) for v in quality["lightgbm"]["average_precision"]]
            for k in diffs
        },
        "scorer_vs_predict_proba_max_abs_diff": parity,
        "scorer_dataframe_vs_predict_proba_max_abs_diff": parity_frame,
        "int8_within_tolerance": None if int8 is None else bool(int8.accepted),
    }
    extra = {
        "train_rows": len(X),
        "validation_rows": len(X_val),
        "test_rows": [len(t) for t in tests],
        "train_period": [str(train["TX_DATETIME"].min()), str(train["TX_DATETIME"].max())],
        "validation_period": [str(val["TX_DATETIME"].min()), str(val["TX_DATETIME"].max())],
        "teacher_params": params,
        "best_epoch": int(distiller.best_epoch_),
        "int8": None if int8 is None else int8.to_dict(),
        "checks": checks,
    }
    for name, diff in diffs.items():
        if diff > 1e-9:
            changed = sum(
                int(np.count_nonzero(np.abs(a - b) > 1e-9))
                for a, b in zip(scores_test[name], scores_test["lightgbm"], strict=True)
            )
            notes.append(
                f"{name} does not reproduce LightGBM {version('lightgbm')}: {changed:,} of "
                f"{sum(len(t) for t in tests):,} test rows get another probability (largest "
                f"difference {diff:.4f}), test AP {quality[name]['average_precision'][0]:.4f} "
                f"against {quality['lightgbm']['average_precision'][0]:.4f}. Its timing is shown, "
                "but its scores are not LightGBM's."
            )
    return rows, extra, notes


# ----------------------------------------------------------------------------- OCR


def run_ocr(args: argparse.Namespace, folder: Path) -> tuple[list[dict], dict, list[str]]:
    from crosskd.vision import SmallCNN, TimmStudent

    X_all, y_all = crosskd.load_mnist("train")
    X_test, y_test = crosskd.load_mnist("test")
    n_train = 2000 if args.quick else args.ocr_train_images
    X, y = X_all[:n_train], y_all[:n_train]
    X_val, y_val = X_all[-5000:], y_all[-5000:]
    if args.quick:
        X_test, y_test = X_test[:1000], y_test[:1000]
    started = time.perf_counter()
    net = TimmStudent(
        "resnet10t",
        num_classes=10,
        in_chans=1,
        input_size=(32, 32),
        model_kwargs={"channels": [16, 32, 64, 128]},
    )
    teacher_fit = crosskd.Distiller(
        None,
        net,
        alpha=0.0,
        epochs=1,
        batch_size=128,
        lr=3e-3,
        early_stopping=None,
        device="cpu",
        seed=0,
        progress=False,
    ).fit(X, y)
    teacher_module = teacher_fit.student_.eval()
    log(
        f"OCR teacher resnet10t on {n_train:,} images in {time.perf_counter() - started:.0f} s, "
        f"validation accuracy {np.mean(teacher_fit.predict(X_val[:2000]) == y_val[:2000]):.4f}"
    )
    started = time.perf_counter()
    distiller = crosskd.Distiller(
        teacher_module.as_teacher(device="cpu"),
        SmallCNN(width=16),
        temperature=4.0,
        alpha=0.9,
        epochs=1 if args.quick else 3,
        batch_size=128,
        lr=3e-3,
        early_stopping=None,
        device="cpu",
        seed=0,
        progress=False,
    ).fit(X, y)
    student = distiller.student_.eval()
    log(
        f"OCR student SmallCNN(16) in {time.perf_counter() - started:.0f} s, validation accuracy "
        f"{np.mean(distiller.predict(X_val[:2000]) == y_val[:2000]):.4f}"
    )
    onnx_path = export_onnx(distiller, folder / "ocr_student.onnx", sample=X_val[:64]).path
    int8 = quantize_onnx(
        onnx_path,
        validation=(X_val, y_val),
        test=(X_test, y_test),
        mode="static",
        calibration=X[:2000],
        timing_calls=100,
        batch_rows=2000,
        force=True,  # measured either way; the report says whether it was accepted
    )
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sessions = {
        "fp32": ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    }
    if int8.path is not None:
        sessions["int8"] = ort.InferenceSession(
            str(int8.path), options, providers=["CPUExecutionProvider"]
        )

    def torch_run(module: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
        def run(images: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return torch.softmax(module(torch.from_numpy(images)), -1).numpy()

        return run

    paths: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray], Any]] = {
        "teacher: timm resnet10t, torch eager": (
            "teacher",
            torch_run(teacher_module),
            teacher_module,
        ),
        "student: SmallCNN, torch eager": ("distilled", torch_run(student), student),
    }
    for which, session in sessions.items():
        paths[f"student: SmallCNN, ONNX {which} in onnxruntime"] = (
            "distilled",
            lambda b, s=session: s.run(["probabilities"], {"input": b})[0],
            which,
        )
    # Quality and batch 10,000 in one pass over the test images (one timed call per path).
    rows = []
    singles = [X_test[i : i + 1] for i in range(200)]
    lat = latency(
        {name: (fn, singles) for name, (_, fn, _) in paths.items()},
        100 if args.quick else args.ocr_calls,
    )
    for name, (role, fn, what) in paths.items():
        fn(X_test[:256])
        start = time.perf_counter()
        probs = fn(X_test)
        seconds = time.perf_counter() - start
        acc = float(np.mean(probs.argmax(1) == y_test))
        if isinstance(what, torch.nn.Module):
            size = model_size(what)
            params, nbytes = size.params, size.bytes
        else:
            params = model_size(student).params
            nbytes = (onnx_path if what == "fp32" else int8.path).stat().st_size
        rows.append(
            {
                "model": f"OCR {name}",
                "role": role,
                "params": params,
                "bytes": nbytes,
                "metrics": {"accuracy": acc},
                "timing": {
                    "p50_us_batch1": lat[name][0],
                    "p99_us_batch1": lat[name][1],
                    "rows_per_s_batch1": 1e6 / lat[name][0],
                    "rows_per_s_batch10000": len(X_test) / seconds,
                },
                "chosen": name
                in (
                    "teacher: timm resnet10t, torch eager",
                    "student: SmallCNN, ONNX int8 in onnxruntime"
                    if int8.accepted
                    else "student: SmallCNN, ONNX fp32 in onnxruntime",
                ),
            }
        )
        log(f"{name}: accuracy {acc:.4f}, {len(X_test) / seconds:,.0f} images/s")
    extra = {
        "train_images": n_train,
        "validation_images": len(X_val),
        "test_images": len(X_test),
        "int8": int8.to_dict(),
    }
    return rows, extra, []


# ----------------------------------------------------------------------------- report


def markdown(result: dict) -> str:
    """The markdown report of a results payload (as written by :meth:`Results.write`)."""
    env, libs = result["environment"], result["libraries"]
    lines = [
        f"# Serving side by side ({result['device']})",
        "",
        provenance_line(result),
        "",
        "One thread for every path (numpy BLAS, torch, onnxruntime, LightGBM, lleaves, tl2cgen). "
        f"lleaves {libs.get('lleaves')} (llvmlite {libs.get('llvmlite')}), treelite "
        f"{libs.get('treelite')} + tl2cgen {libs.get('tl2cgen')}, onnxruntime "
        f"{env.get('onnxruntime')}, numpy {env.get('numpy')}, torch {env.get('torch')}.",
        "",
        "Batch 1: p50 / p99 of one call over the same 1,000 test rows (1,000 calls per path, the "
        "paths interleaved in 10 rounds so that the shared machine's load hits them alike). "
        "Batch 10,000: rows/s, best of the interleaved repeats. AP and ROC AUC: mean ± std over "
        "the handbook's 4 test folds (each path scores every test row). OCR accuracy: the 10,000 "
        "MNIST test images.",
        "",
        "| path | role | params | bytes | AP (test folds) | p50 batch 1 (us) | p99 batch 1 (us) "
        "| rows/s batch 10,000 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        metrics, timing = row["metrics"], row["timing"]
        if "average_precision" in metrics:
            q = "{:.4f} ± {:.4f}".format(*metrics["average_precision"])
        else:
            q = f"accuracy {metrics['accuracy']:.4f}"
        r10k = timing["rows_per_s_batch10000"]
        lines.append(
            f"| {row['model']}{' (chosen)' if row['chosen'] else ''} | {row['role']} | "
            f"{row['params']:,} | {row['bytes']:,} | {q} | {timing['p50_us_batch1']:,.1f} | "
            f"{timing['p99_us_batch1']:,.1f} | {'-' if r10k is None else f'{r10k:,.0f}'} |"
        )
    fraud_extra = result.get("fraud", {})
    checks = fraud_extra.get("checks", {})
    if checks:
        lines += ["", "## Checks (fraud)", ""]
        lines += [f"- `{k}`: {v}" for k, v in checks.items()]
    for part in ("fraud", "ocr"):
        q8 = result.get(part, {}).get("int8")
        if q8:
            v = q8["validation"]
            t = q8.get("test") or {}
            lines += [
                "",
                f"## int8 ({part}, {q8['mode']})",
                "",
                f"{q8['metric']} on {int(v['rows']):,} validation rows: fp32 {v['fp32']:.4f}, "
                f"int8 {v['int8']:.4f} (change {v['change']:+.4f}; tolerance {q8['tolerance']}; "
                f"{'accepted' if q8['accepted'] else 'refused'}). Test rows (reported only): "
                + (
                    f"fp32 {t['fp32']:.4f}, int8 {t['int8']:.4f} (change {t['change']:+.4f})."
                    if t
                    else "-"
                )
                + f" Size {q8['bytes']['fp32']:,} -> {q8['bytes']['int8']:,} bytes; one row "
                f"{q8['latency_us']['fp32']:.1f} -> {q8['latency_us']['int8']:.1f} us.",
            ]
    if result["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write its results; returns the JSON payload."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--calls", type=int, default=1000, help="batch-1 calls per fraud path")
    parser.add_argument("--repeats", type=int, default=7, help="batch-10,000 calls per path")
    parser.add_argument("--ocr-train-images", type=int, default=15_000)
    parser.add_argument("--ocr-calls", type=int, default=200)
    parser.add_argument("--no-ocr", action="store_true")
    parser.add_argument("--no-int8", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a tiny version (30 trees, ...)")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)

    results = Results(BENCHMARK, argv, quick=args.quick)
    torch.set_num_threads(1)
    rows: list[dict] = []
    notes: list[str] = []
    sections: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        fraud_rows, fraud_extra, fraud_notes = run_fraud(args, Path(tmp))
        rows += fraud_rows
        notes += fraud_notes
        sections["fraud"] = fraud_extra
        if not args.no_ocr:
            ocr_rows, ocr_extra, ocr_notes = run_ocr(args, Path(tmp))
            rows += ocr_rows
            notes += ocr_notes
            sections["ocr"] = ocr_extra
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    stem = BENCHMARK + ("-quick" if args.quick else "")
    payload = results.write(
        rows,
        args.out,
        name=stem,
        device=device_description("cpu"),
        settings=settings,
        libraries={name: version(name) for name in SERVING_LIBRARIES},
        **sections,
        notes=notes,
    )
    folder = Path(args.out)
    (folder / f"{stem}.md").write_text(markdown(payload))
    log(f"wrote {folder / stem}.json and .md in {payload['wall_seconds']:.0f} s")
    print(json.dumps(payload["fraud"]["checks"], indent=2))
    return payload


if __name__ == "__main__":
    main()
