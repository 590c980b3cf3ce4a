"""Cross-fitted teacher targets against plain ones, on the demo's data and the fraud handbook's.

``--data demo`` (the default): the demo's data and settings (``crosskd.demo``: LightGBM teacher, 15-32-16-2 student, T=2,
alpha=0.7, the delay days as a transfer set, the demo's budget), 3 seeds: the student distilled from
the plain teacher's targets and from :func:`crosskd.crossfit_lightgbm`'s (out-of-fold on the
training days). Validation AP (the validation days) decides which is better; test AP is reported.

``--data fraud``: the Fraud Detection Handbook's prequential folds (``benchmarks/fraud_handbook.py``:
4 validation folds, 4 test folds), its LightGBM teacher ``lgb-300x31leaves-4095bins`` (fixed
trees, plain or cross-fitted on each fold's training days) and its validation-chosen recipe of the
last full run (the 15-64-32-2 student, DIST at T=2, alpha=1, the delay days as a transfer set,
40 epochs), 3 seeds per fold: the mean AP over the validation folds decides, the test folds are
reported.

    OMP_NUM_THREADS=1 python benchmarks/crossfit.py [--data demo|fraud] [--folds 5] [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS_DIR, Results, mean_std, provenance_line  # noqa: E402

from crosskd import Distiller, LightGBMTeacher, TabularStudent, crossfit_lightgbm  # noqa: E402
from crosskd.demo import DEMO_ALPHA, DEMO_TEMPERATURE, STUDENT_HIDDEN, demo_data  # noqa: E402
from crosskd.metrics import average_precision  # noqa: E402
from crosskd.tabular.gbdt import fit_lightgbm  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="the tiny demo data, one seed")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--data", choices=("demo", "fraud"), default="demo")
    args = parser.parse_args(argv)
    if args.data == "fraud":
        return fraud(args, argv)
    results = Results("crossfit", argv, quick=args.quick)
    torch.set_num_threads(1)
    parts = demo_data("tiny" if args.quick else "small", seed=0)
    (X, y), (X_val, y_val), (X_delay, _), (X_test, y_test) = (
        parts[k] for k in ("train", "val", "delay", "test")
    )
    plain = LightGBMTeacher(fit_lightgbm(X, y, eval_set=(X_val, y_val), params={"n_jobs": 1}))
    cross = crossfit_lightgbm(X, y, folds=args.folds, eval_set=(X_val, y_val), params={"n_jobs": 1})
    seeds = [0] if args.quick else [0, 1, 2]
    scores: dict[str, dict[str, list[float]]] = {}
    for name, teacher in (("plain", plain), ("cross-fitted", cross)):
        scores[name] = {"val": [], "test": []}
        for seed in seeds:
            fitted = Distiller(
                teacher,
                TabularStudent(hidden=STUDENT_HIDDEN),
                temperature=DEMO_TEMPERATURE,
                alpha=DEMO_ALPHA,
                epochs=60,
                batch_size=512,
                early_stopping=6,
                seed=seed,
                progress=False,
                device="cpu",
            ).fit(X, y, eval_set=(X_val, y_val), transfer=X_delay)
            for split, (Xs, ys) in (("val", (X_val, y_val)), ("test", (X_test, y_test))):
                scores[name][split].append(average_precision(ys, fitted.predict_proba(Xs)[:, 1]))
            print(f"{name} seed {seed}: val AP {scores[name]['val'][-1]:.4f}", flush=True)
    best = max(scores, key=lambda n: np.mean(scores[n]["val"]))
    rows = [
        {
            "model": f"student distilled from the {name} teacher targets",
            "role": "distilled",
            "metrics": {"average_precision": mean_std(s["test"])},
            "validation": {"average_precision": mean_std(s["val"])},
            "per_seed": {"val": s["val"], "test": s["test"]},
            "chosen": name == best,
        }
        for name, s in scores.items()
    ]
    payload = results.write(rows, args.out, settings={"folds": args.folds, "seeds": seeds})
    table = "\n".join(
        f"| {name} | {np.mean(s['val']):.4f} ± {np.std(s['val']):.4f} | "
        f"{np.mean(s['test']):.4f} ± {np.std(s['test']):.4f} | {'yes' if name == best else ''} |"
        for name, s in scores.items()
    )
    text = (
        "# Cross-fitted teacher targets on the demo data\n\n" + provenance_line(payload) + "\n\n"
        "| teacher targets | validation AP | test AP | chosen on validation |\n"
        "|---|---:|---:|---|\n" + table + "\n"
    )
    (args.out / ("crossfit-quick.md" if args.quick else "crossfit.md")).write_text(text)
    print(text)
    return payload


def fraud(args: argparse.Namespace, argv: list[str] | None) -> dict:
    """``--data fraud``: plain vs cross-fitted LightGBM targets on the handbook's folds."""
    import fraud_handbook as fh

    results = Results("crossfit", argv, quick=args.quick)
    torch.set_num_threads(1)
    settings = fh.QUICK if args.quick else fh.FULL
    name = next(iter(settings.lightgbm_grid)) if args.quick else "lgb-300x31leaves-4095bins"
    params = settings.lightgbm_grid[name]
    hidden = settings.students[0] if args.quick else (64, 32)
    val_folds, test_folds = fh.load_folds(settings)
    scores: dict[str, dict[str, list[float]]] = {
        n: {"val": [], "test": []} for n in ("plain", "cross-fitted")
    }
    for split, folds in (("val", val_folds), ("test", test_folds)):
        for fold in folds:
            teachers = {
                "plain": LightGBMTeacher(fit_lightgbm(fold.X, fold.y, params=params, seed=0)),
                "cross-fitted": crossfit_lightgbm(
                    fold.X, fold.y, folds=args.folds, params=params, seed=0
                ),
            }
            for kind, teacher in teachers.items():
                per_seed = []
                for seed in settings.seeds:
                    fitted = fh.fit_student(
                        settings, hidden, teacher, fold, seed=seed, temperature=2.0, alpha=1.0,
                        transfer=fold.delay, method="dist",
                    )  # fmt: skip
                    score = fitted.predict_proba(fold.test[fh.FEATURES])[:, 1]
                    per_seed.append(average_precision(fold.test["TX_FRAUD"].to_numpy(), score))
                scores[kind][split].append(float(np.mean(per_seed)))
                print(f"{fold.name} {kind}: AP {scores[kind][split][-1]:.4f}", flush=True)
    best = max(scores, key=lambda n: np.mean(scores[n]["val"]))
    student = "-".join(str(v) for v in (len(fh.FEATURES), *hidden, 2))
    rows = [
        {
            "model": f"mlp-{student} distilled (dist, T=2, alpha=1) + delay-period transfer set, "
            f"from the {kind} {name} targets",
            "role": "distilled",
            "metrics": {"average_precision": mean_std(s["test"])},
            "validation": {"average_precision": mean_std(s["val"])},
            "per_fold": {"val": s["val"], "test": s["test"]},
            "chosen": kind == best,
        }
        for kind, s in scores.items()
    ]
    out_name = "crossfit-fraud" + ("-quick" if args.quick else "")
    payload = results.write(
        rows,
        args.out,
        name=out_name,
        settings={"folds": args.folds, "seeds": list(settings.seeds), "teacher": name},
    )
    table = "\n".join(
        f"| {kind} | {np.mean(s['val']):.4f} ± {np.std(s['val']):.4f} | "
        f"{np.mean(s['test']):.4f} ± {np.std(s['test']):.4f} | {'yes' if kind == best else ''} |"
        for kind, s in scores.items()
    )
    text = (
        "# Cross-fitted teacher targets on the fraud handbook's folds\n\n"
        + provenance_line(payload)
        + f"\n\nTeacher {name} per fold; student mlp-{student}, DIST T=2, alpha=1, the delay "
        "days as a transfer set; AP: mean ± std over the folds of each fold's mean over "
        f"{len(settings.seeds)} seed(s).\n\n"
        "| teacher targets | validation AP | test AP | chosen on validation |\n"
        "|---|---:|---:|---|\n" + table + "\n"
    )
    (args.out / f"{out_name}.md").write_text(text)
    print(text)
    return payload


if __name__ == "__main__":
    main()
