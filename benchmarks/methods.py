"""KD methods beyond Hinton's on fraud data: which one should a user pick?

The Fraud Detection Handbook's transactions and prequential folds (``crosskd.datasets.fraud``): a
LightGBM teacher per fold, a 15-64-32-2 ``TabularStudent`` (3,170 parameters) distilled with each
method for the same fixed, CPU-sized budget (``--epochs``, cosine schedule, 512 rows a step),
``alpha=0.9`` and the delay week as an unlabelled transfer set. Every method gets the same tuning
budget: its temperature is chosen among ``--temperatures`` by mean validation-fold AP (one seed),
then it trains ``--seeds`` seeds on each test fold. Reported: test AP, mean and std over
(fold, seed), and whether the difference to Hinton's loss exceeds the seed noise (the std of the
per-seed differences, paired by fold and seed).

Methods: ``hinton``, ``ranking`` (pairwise order of the teacher's scores, weighted toward its top
scores), ``dist`` (Pearson correlations; with two classes only its intra-class term carries
information). DKD and logit standardisation reduce to Hinton's loss or to no gradient with two
classes (``docs/methods.md``), so they are not run on this binary task.

    OMP_NUM_THREADS=1 python benchmarks/methods.py [--folds 2] [--seeds 3] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS_DIR, Results, mean_std, provenance_line  # noqa: E402

from crosskd import Distiller, LightGBMTeacher, TabularStudent, fit_lightgbm  # noqa: E402
from crosskd.datasets.fraud import HANDBOOK_FEATURES, handbook_folds, load_handbook  # noqa: E402
from crosskd.metrics import average_precision  # noqa: E402

METHODS = ("hinton", "ranking", "dist")


def _fit(teacher, fold, method: str, temperature: float, seed: int, epochs: int) -> float:
    train, delay, test = fold
    fitted = Distiller(
        teacher,
        TabularStudent(hidden=(64, 32)),
        temperature=temperature,
        alpha=0.9,
        method=method,
        epochs=epochs,
        batch_size=512,
        schedule="cosine",
        early_stopping=None,
        seed=seed,
        progress=False,
        device="cpu",
        threads=1,
    ).fit(train[HANDBOOK_FEATURES], train["TX_FRAUD"], transfer=delay[HANDBOOK_FEATURES])
    return average_precision(test["TX_FRAUD"], fitted.predict_proba(test[HANDBOOK_FEATURES])[:, 1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    parser.add_argument("--quick", action="store_true", help="one fold, one seed, 2 epochs")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.quick:
        args.folds, args.seeds, args.epochs, args.temperatures = 1, 1, 2, [1.0, 2.0]
    results = Results("methods", argv, quick=args.quick)
    torch.set_num_threads(1)
    started = time.perf_counter()
    data = load_handbook("transformed", columns=[*HANDBOOK_FEATURES, "TX_DATETIME", "CUSTOMER_ID",
                                                  "TX_FRAUD"])  # fmt: skip
    folds = {w: handbook_folds(data, w, n_folds=args.folds) for w in ("validation", "test")}
    teachers = {}
    for which, fold_list in folds.items():
        for i, (train, _, _) in enumerate(fold_list):
            model = fit_lightgbm(train[HANDBOOK_FEATURES], train["TX_FRAUD"], params={"n_jobs": 1})
            teachers[(which, i)] = LightGBMTeacher(model)
    teacher_ap = [
        average_precision(test["TX_FRAUD"], teachers[("test", i)].predict_proba(
            test[HANDBOOK_FEATURES])[:, 1])
        for i, (_, _, test) in enumerate(folds["test"])
    ]  # fmt: skip
    print(f"teacher test AP {np.mean(teacher_ap):.4f} ({time.perf_counter() - started:.0f} s)")
    chosen_t, val_scores = {}, {}
    for method in METHODS:
        val_scores[method] = {}
        for t in args.temperatures:
            aps = [
                _fit(teachers[("validation", i)], fold, method, t, 0, args.epochs)
                for i, fold in enumerate(folds["validation"])
            ]
            val_scores[method][t] = float(np.mean(aps))
            print(f"{method} T={t:g}: validation AP {val_scores[method][t]:.4f}", flush=True)
        chosen_t[method] = max(val_scores[method], key=val_scores[method].get)
    test_scores: dict[str, list[float]] = {}
    for method in METHODS:
        test_scores[method] = [
            _fit(teachers[("test", i)], fold, method, chosen_t[method], seed, args.epochs)
            for i, fold in enumerate(folds["test"])
            for seed in range(args.seeds)
        ]
        print(f"{method}: test AP {np.mean(test_scores[method]):.4f}", flush=True)
    best = max(METHODS, key=lambda m: val_scores[m][chosen_t[m]])
    base = np.asarray(test_scores["hinton"])
    rows = [
        {
            "model": "LightGBM teacher (per fold)",
            "role": "teacher",
            "metrics": {"average_precision": mean_std(teacher_ap)},
            "chosen": True,
        }
    ]
    lines = []
    for method in METHODS:
        scores = np.asarray(test_scores[method])
        diff = scores - base
        noise = float(np.std(diff)) if method != "hinton" else 0.0
        beyond = method != "hinton" and abs(float(diff.mean())) > noise
        rows.append(
            {
                "model": f"15-64-32-2 student, {method}, T={chosen_t[method]:g}",
                "role": "distilled",
                "params": 3170,
                "metrics": {"average_precision": mean_std(scores.tolist())},
                "validation": {"average_precision": val_scores[method][chosen_t[method]]},
                "validation_by_temperature": {str(k): v for k, v in val_scores[method].items()},
                "difference_to_hinton": mean_std(diff.tolist()) if method != "hinton" else None,
                "beyond_seed_noise": beyond,
                "chosen": method == best,
            }
        )
        lines.append(
            f"| {method} | {chosen_t[method]:g} | {val_scores[method][chosen_t[method]]:.4f} | "
            f"{scores.mean():.4f} ± {scores.std():.4f} | "
            + ("—" if method == "hinton" else f"{diff.mean():+.4f} ± {noise:.4f}")
            + f" | {'yes' if beyond else 'no'} | {'yes' if method == best else ''} |"
        )
    payload = results.write(
        rows,
        args.out,
        name="methods-quick" if args.quick else "methods",
        settings={
            "folds": args.folds,
            "seeds": args.seeds,
            "epochs": args.epochs,
            "temperatures": args.temperatures,
            "alpha": 0.9,
        },
    )
    text = (
        "# KD methods on fraud data\n\n" + provenance_line(payload) + "\n\n"
        f"Teacher (LightGBM, per fold) test AP {np.mean(teacher_ap):.4f}; {args.folds} test "
        f"folds x {args.seeds} seeds per method; T chosen per method on {args.folds} validation "
        f"folds; {args.epochs} epochs, alpha 0.9, delay week as transfer set.\n\n"
        "| method | T (validation) | validation AP | test AP | minus Hinton (± seed noise) | "
        "beyond noise | chosen on validation |\n|---|---:|---:|---:|---:|---|---|\n"
        + "\n".join(lines)
        + "\n"
    )
    if not args.quick:
        (args.out / "methods.md").write_text(text)
    print(text)
    return payload


if __name__ == "__main__":
    main()
