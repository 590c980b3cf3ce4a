"""Serving latency: the LightGBM teacher against the distilled student, through each serving path.

On one machine, in one run: p50 / p99 latency of one row (batch 1) and rows/s at batch 10,000 for

- the LightGBM teacher: ``LightGBMTeacher.predict_proba`` on a DataFrame, and ``Booster.predict``
  on a numpy array (the raw model);
- the student: ``Distiller.predict_proba`` on a DataFrame (eager torch, encoding included), the raw
  student module on pre-encoded tensors, the same module traced with ``torch.jit.trace``, exported
  with ``torch.export``, and the ONNX file of ``crosskd.export.export_onnx`` run by onnxruntime.

    python benchmarks/latency.py

Writes ``benchmarks/results/latency-<device>.json`` and ``.md``. Everything runs with one thread
(torch, LightGBM, onnxruntime), so the paths compete on equal terms on a shared machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from crosskd import Distiller, LightGBMTeacher, TabularStudent
from crosskd.profiling import device_description, model_size, time_inference

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_results.py
from _results import Results, provenance_line  # noqa: E402

FEATURES = 32


def make_rows(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, FEATURES)).astype(np.float32)
    w = np.linspace(-1.0, 1.0, FEATURES)
    score = X @ w * 0.4 + 0.8 * np.sin(2 * X[:, 0]) * X[:, 1] + 0.5 * (X[:, 2] > 1.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-(score - 1.5)))).astype(np.int64)
    return pd.DataFrame(X, columns=[f"f{j}" for j in range(FEATURES)]), y


def percentiles(fn: Callable[[], Any], calls: int) -> tuple[float, float]:
    """p50 and p99 of one call, in microseconds (after 50 warm-up calls)."""
    for _ in range(50):
        fn()
    times = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter_ns()
        fn()
        times[i] = time.perf_counter_ns() - start
    return float(np.percentile(times, 50) / 1e3), float(np.percentile(times, 99) / 1e3)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the results written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=100_000)
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--calls", type=int, default=2000, help="batch-1 calls per path")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    results = Results("latency", argv, quick=False)

    import lightgbm as lgb

    torch.set_num_threads(1)
    X, y = make_rows(args.train_rows + 10_000, seed=0)
    X_tr, y_tr, X_te = X.iloc[: args.train_rows], y[: args.train_rows], X.iloc[args.train_rows :]
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 31, "seed": 0, "num_threads": 1},
        lgb.Dataset(X_tr, y_tr),
        num_boost_round=args.trees,
    )
    teacher = LightGBMTeacher(booster)
    distiller = Distiller(
        teacher, TabularStudent(hidden=(64, 32)), epochs=3, device="cpu", progress=False
    ).fit(X_tr, y_tr)
    student = distiller.student_.eval()
    row_frame, big_frame = X_te.iloc[:1], X_te.iloc[:10_000]
    row_np, big_np = row_frame.to_numpy(), big_frame.to_numpy()
    row_t = tuple(t.contiguous() for t in student.encode(row_frame))
    big_t = tuple(t.contiguous() for t in student.encode(big_frame))

    def raw(module: Any, inputs: tuple[torch.Tensor, ...]) -> Callable[[], Any]:
        def call() -> Any:
            with torch.inference_mode():
                return module(*inputs)

        return call

    paths: list[dict[str, Any]] = [
        {
            "model": f"teacher: LightGBMTeacher.predict_proba (DataFrame), {args.trees} trees",
            "role": "teacher",
            "one": lambda: teacher.predict_proba(row_frame),
            "big": lambda: teacher.predict_proba(big_frame),
            "size": model_size(teacher),
        },
        {
            "model": "teacher: Booster.predict (numpy, raw model)",
            "role": "teacher",
            "one": lambda: booster.predict(row_np, num_threads=1),
            "big": lambda: booster.predict(big_np, num_threads=1),
            "size": model_size(teacher),
        },
        {
            "model": "student: Distiller.predict_proba (DataFrame, eager torch, encoding included)",
            "role": "distilled",
            "one": lambda: distiller.predict_proba(row_frame),
            "big": lambda: distiller.predict_proba(big_frame),
        },
        {
            "model": "student: raw module on pre-encoded tensors (eager torch)",
            "role": "distilled",
            "one": raw(student, row_t),
            "big": raw(student, big_t),
        },
    ]
    notes: list[str] = []
    example = tuple(t[:2] for t in big_t)  # batch 2: a batch of 1 would be specialised
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # shape checks become constants: fine for serving
            traced = torch.jit.trace(student, example, check_trace=False)
        paths.append(
            {
                "model": "student: torch.jit.trace of the module (pre-encoded tensors)",
                "role": "distilled",
                "one": raw(traced, row_t),
                "big": raw(traced, big_t),
            }
        )
    except Exception as err:  # noqa: BLE001 (report why a path is missing)
        notes.append(f"torch.jit.trace unavailable: {type(err).__name__}: {err}")
    try:
        batch = torch.export.Dim("batch", min=1, max=1_000_000)
        exported = torch.export.export(
            student, example, dynamic_shapes=tuple({0: batch} for _ in example)
        ).module()
        paths.append(
            {
                "model": "student: torch.export program (pre-encoded tensors)",
                "role": "distilled",
                "one": raw(exported, row_t),
                "big": raw(exported, big_t),
            }
        )
    except Exception as err:  # noqa: BLE001
        notes.append(f"torch.export unavailable: {type(err).__name__}: {str(err)[:300]}")
    try:
        import onnxruntime as ort

        from crosskd.export import export_onnx

        onnx_path = Path(tempfile.mkdtemp()) / "student.onnx"
        exported_onnx = export_onnx(distiller, onnx_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        feed_one, feed_big = exported_onnx.inputs(row_frame), exported_onnx.inputs(big_frame)
        paths.append(
            {
                "model": "student: ONNX (crosskd.export.export_onnx) in onnxruntime, raw numeric "
                "rows (scaling inside the graph)",
                "role": "distilled",
                "one": lambda: session.run(None, feed_one),
                "big": lambda: session.run(None, feed_big),
            }
        )
    except Exception as err:  # noqa: BLE001
        notes.append(f"onnxruntime path unavailable: {type(err).__name__}: {str(err)[:300]}")

    rows = []
    for path in paths:
        p50, p99 = percentiles(path["one"], args.calls)
        seconds = time_inference(lambda _x, fn=path["big"]: fn(), None, repeats=5, warmup=1)
        size = path.get("size") or model_size(student)
        rows.append(
            {
                "model": path["model"],
                "role": path["role"],
                "params": size.params,
                "bytes": size.bytes,
                "metrics": {},
                "timing": {
                    "p50_us_batch1": p50,
                    "p99_us_batch1": p99,
                    "rows_per_s_batch10000": 10_000 / seconds,
                },
            }
        )
        print(
            f"{path['model']:<100} p50 {p50:>9.1f} us  p99 {p99:>9.1f} us  {10_000 / seconds:>12,.0f} rows/s"
        )

    from crosskd.metrics import roc_auc

    y_te = y[args.train_rows :]
    auc_teacher = roc_auc(y_te, teacher.predict_proba(X_te)[:, 1])
    auc_student = roc_auc(y_te, distiller.predict_proba(X_te)[:, 1])
    for row in rows:
        row["metrics"]["roc_auc"] = auc_teacher if row["role"] == "teacher" else auc_student
    result = results.write(
        rows,
        args.out,
        name="latency-cpu",
        device=device_description("cpu"),
        setup={
            "train_rows": args.train_rows,
            "features": FEATURES,
            "trees": args.trees,
            "student": "TabularStudent 64-32 (3 epochs)",
            "calls_batch1": args.calls,
            "threads": 1,
            "notes": notes,
        },
    )
    md = [
        f"# Serving latency ({result['device']})",
        "",
        provenance_line(result) + " One thread for every path (shared machine: compare the "
        "rows with each other).",
        "",
        f"Synthetic binary table, {FEATURES} numeric features; teacher LightGBM {args.trees} trees "
        f"x 31 leaves, student TabularStudent 64-32 distilled for 3 epochs, both on "
        f"{args.train_rows:,} rows; ROC AUC on 10,000 held-out rows. Batch 1: p50 / p99 over "
        f"{args.calls:,} calls of one row; batch 10,000: best of 5.",
        "",
        "| path | params | bytes | ROC AUC | p50 batch 1 (us) | p99 batch 1 (us) | rows/s batch 10,000 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        t = row["timing"]
        md.append(
            f"| {row['model']} | {row['params']:,} | {row['bytes']:,} | "
            f"{row['metrics']['roc_auc']:.4f} | {t['p50_us_batch1']:,.1f} | "
            f"{t['p99_us_batch1']:,.1f} | {t['rows_per_s_batch10000']:,.0f} |"
        )
    if notes:
        md += ["", "Paths not measured:", ""] + [f"- {note}" for note in notes]
    Path(args.out, "latency-cpu.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main()
