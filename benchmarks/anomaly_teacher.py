"""Anomaly teacher: does the fitted score-to-logit slope let a student learn a detector's ranking?

An ``IsolationForest`` is trained, without labels, on one week of the Fraud Detection Handbook's
transactions (its 15 model inputs), and distilled with ``crosskd.Distiller`` (``alpha=1``: the
teacher's soft targets only) into a small ``TabularStudent``, twice:

- ``anomaly_scale=1.0``, the old default: ``P(anomaly) = sigmoid(-d)``, nearly uniform targets;
- ``anomaly_scale="auto"``, the new default: the slope fitted from the spread of ``d`` on the
  training rows (``pi / (sqrt(3) * 1.4826 * MAD(d))``, see ``crosskd.SklearnTeacher``);

and, to show how much the exact slope matters, with fixed slopes around the fitted one
(``--extra-scales``; rows not chosen).

Measured on a later, held-out week: the spread of the teacher's P(anomaly) (5th-95th percentile),
the students' rank agreement with the detector (Spearman of the student's P(anomaly) against the
detector's anomaly score ``-d``, and the overlap of their top 1 %), and, for context, each
model's ROC AUC against the fraud labels (which no model saw). Mean and std over seeds (the
detector is the same for every seed; the seed changes the student's initialisation and batches).

Run (about 2 minutes on 2 shared CPU cores)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/anomaly_teacher.py

Writes ``benchmarks/results/anomaly_teacher.{json,md}`` through ``benchmarks/_results.py``.
``--quick`` runs a tiny version (written as ``anomaly_teacher-quick.{json,md}``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import crosskd
import crosskd.datasets.fraud as fraud
import crosskd.metrics as kdm
from crosskd.profiling import device_description, model_size

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_results.py
from _results import Results, mean_std, provenance_line  # noqa: E402

BENCHMARK = "anomaly_teacher"
FEATURES = list(fraud.HANDBOOK_FEATURES)
TRAIN_START = pd.Timestamp("2018-07-25")  # the handbook's first training week (chapter 3.4)


def week(frame: pd.DataFrame, start: pd.Timestamp, days: int) -> pd.DataFrame:
    when = frame["TX_DATETIME"]
    return frame[(when >= start) & (when < start + pd.Timedelta(days=days))]


def run(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train the detector, distil it per slope setting and seed, and measure.

    Returns:
        The rows (the detector, then one student per slope setting) and the ``data`` section.
    """
    from sklearn.ensemble import IsolationForest

    torch.set_num_threads(args.threads)
    frame = fraud.load_handbook(columns=["TX_DATETIME", "TX_FRAUD", *FEATURES])
    days = 1 if args.quick else 7
    train = week(frame, TRAIN_START, days)
    test = week(frame, TRAIN_START + pd.Timedelta(days=days + 7), days)  # after a 7-day delay
    if args.quick:
        train, test = train.iloc[:3000], test.iloc[:3000]
    X_train, X_test = train[FEATURES].reset_index(drop=True), test[FEATURES].reset_index(drop=True)
    y_test = test["TX_FRAUD"].to_numpy()
    print(f"train {len(X_train):,} rows, held-out {len(X_test):,} rows", flush=True)

    detector = IsolationForest(n_estimators=args.trees, random_state=0, n_jobs=args.threads).fit(
        X_train
    )
    detector_score = -detector.decision_function(X_test)  # higher: more anomalous
    k = max(1, int(round(0.01 * len(X_test))))
    rows: list[dict[str, Any]] = [
        {
            "model": f"IsolationForest({args.trees} trees)",
            "role": "teacher",
            "params": None,
            "bytes": None,
            "metrics": {"roc_auc": kdm.roc_auc(y_test, detector_score)},
            "timing": {},
            "chosen": True,  # the one detector every student learns from
        }
    ]
    for setting in (1.0, "auto", *args.extra_scales):
        spearman, top1, auc, spread, scales = [], [], [], [], []
        for seed in args.seeds:
            teacher = crosskd.SklearnTeacher(detector, anomaly_scale=setting)
            distiller = crosskd.Distiller(
                teacher,
                crosskd.TabularStudent(hidden=tuple(args.hidden)),
                alpha=1.0,
                epochs=args.epochs,
                seed=seed,
                progress=False,
            ).fit(X_train)  # no labels: the teacher's soft targets only
            scales.append(float(teacher.anomaly_scale_))
            p_teacher = teacher.predict_proba(X_test)[:, 1]
            spread.append(float(np.quantile(p_teacher, 0.95) - np.quantile(p_teacher, 0.05)))
            p_student = distiller.predict_proba(X_test)[:, 1]
            spearman.append(kdm.rank_agreement(p_student, detector_score))
            top1.append(kdm.top_k_agreement(p_student, detector_score, k))
            auc.append(kdm.roc_auc(y_test, p_student))
            print(
                f"anomaly_scale={setting!r} seed {seed}: slope {scales[-1]:.3g}, teacher P "
                f"spread {spread[-1]:.3f}, Spearman {spearman[-1]:.4f}, top-1% {top1[-1]:.3f}",
                flush=True,
            )
        rows.append(
            {
                "model": (
                    f"TabularStudent{tuple(args.hidden)} from anomaly_scale={setting!r}"
                    + (f" (fitted {scales[0]:.3g})" if setting == "auto" else "")
                ),
                "role": "distilled",
                "params": model_size(distiller.student_).params,
                "bytes": model_size(distiller.student_).bytes,
                "metrics": {
                    "spearman_vs_detector": mean_std(spearman),
                    "top1pct_overlap_vs_detector": mean_std(top1),
                    "roc_auc": mean_std(auc),
                    "teacher_p_spread_5_95": spread[0],
                },
                "anomaly_scale": scales[0],
                "timing": {},
                "chosen": setting == "auto",
            }
        )
    data = {
        "train": f"{TRAIN_START.date()} + {days} days, {len(X_train)} rows",
        "held_out": f"{(TRAIN_START + pd.Timedelta(days=days + 7)).date()} + {days} days, "
        f"{len(X_test)} rows",
        "top_k": k,
        "seeds": list(args.seeds),
        "epochs": args.epochs,
    }
    return rows, data


def markdown(result: dict[str, Any]) -> str:
    """The markdown report of a results payload (as written by :meth:`Results.write`)."""
    lines = [
        "# Anomaly teacher: the fitted score-to-logit slope",
        "",
        provenance_line(result),
        "",
        f"IsolationForest trained on {result['data']['train']}; students distilled on the same rows "
        f"(alpha=1, no labels, {result['data']['epochs']} epochs); measured on "
        f"{result['data']['held_out']}. Mean ± std over seeds {result['data']['seeds']}.",
        "",
        "| model | slope | teacher P(anomaly) 5-95 % spread | Spearman vs detector | "
        "top-1 % overlap | ROC AUC (fraud labels) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    teacher = result["rows"][0]
    lines.append(
        f"| {teacher['model']} (the detector's score) | | | 1 | 1 | "
        f"{teacher['metrics']['roc_auc']:.4f} |"
    )
    for row in result["rows"][1:]:
        m = row["metrics"]

        def pm(v: list[float]) -> str:
            return f"{v[0]:.4f} ± {v[1]:.4f}"

        lines.append(
            f"| {row['model']} | {row['anomaly_scale']:.3g} | {m['teacher_p_spread_5_95']:.3f} | "
            f"{pm(m['spearman_vs_detector'])} | {pm(m['top1pct_overlap_vs_detector'])} | "
            f"{pm(m['roc_auc'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write its results; returns the JSON payload."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny version (1 day, 3k rows)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--hidden", type=int, nargs="+", default=[32, 16])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--extra-scales",
        type=float,
        nargs="*",
        default=[10.0, 160.0],
        help="fixed slopes also tried, to show how sensitive the result is to the slope",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.trees, args.extra_scales = args.seeds[:1], 2, 20, []
    results = Results(BENCHMARK, argv, quick=args.quick)
    rows, data = run(args)
    name = BENCHMARK + ("-quick" if args.quick else "")
    settings = {
        "seeds": list(args.seeds),
        "epochs": args.epochs,
        "trees": args.trees,
        "hidden": list(args.hidden),
        "threads": args.threads,
        "extra_scales": list(args.extra_scales),
    }
    payload = results.write(
        rows, args.out, name=name, device=device_description("cpu"), settings=settings, data=data
    )
    text = markdown(payload)
    (args.out / f"{name}.md").write_text(text)
    print(text)
    return payload


if __name__ == "__main__":
    main()
