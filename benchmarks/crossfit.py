"""Cross-fitted teacher targets against plain ones, on the demo's simulated transactions.

The demo's data and settings (``crosskd.demo``: LightGBM teacher, 15-32-16-2 student, T=2,
alpha=0.7, the delay days as a transfer set, the demo's budget), 3 seeds: the student distilled from
the plain teacher's targets and from :func:`crosskd.crossfit_lightgbm`'s (out-of-fold on the
training days). Validation AP (the validation days) decides which is better; test AP is reported.

    OMP_NUM_THREADS=1 python benchmarks/crossfit.py [--folds 5] [--quick]
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
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    main()
