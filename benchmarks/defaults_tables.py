"""Do the Distiller's defaults hold on tables nobody tuned them to?

Five tables (scikit-learn's iris, wine, breast cancer and digits, and the demo's simulated card
transactions), 3 seeds each: a seeded, stratified 80/20 train/test split, then 20 % of the
training rows for validation; a LightGBM teacher (``fit_lightgbm``, early stopping on the
validation rows) and a 32-16 ``TabularStudent`` distilled with

- ``old``: the defaults before this benchmark (30 epochs, 512 rows a step, patience 5, validation
  accuracy for multiclass / average precision for two classes), T=2, alpha=0.7;
- ``default``: the current defaults (``epochs="auto"``, ``batch_size="auto"``, the plateau
  schedule, validation log loss for multiclass), T=2, alpha=0.7;
- ``search``: the current defaults with ``temperature="auto", alpha="auto"`` (12 pairs, short
  runs, chosen on validation);
- ``cosine``: the automatic budget with a cosine schedule over it instead of the plateau schedule.

Nothing is chosen on the test rows: the ``chosen`` row is the library default, fixed before this
run. Test accuracy (multiclass) or average precision (two classes) is reported, mean and std over
the seeds, with the wall time of each fit.

    OMP_NUM_THREADS=1 python benchmarks/defaults_tables.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS_DIR, Results, mean_std, provenance_line  # noqa: E402

import crosskd  # noqa: E402
from crosskd.metrics import classification_metrics  # noqa: E402

VARIANTS = {
    "old": dict(epochs=30, batch_size=512, early_stopping=5, schedule="cosine", val_metric="old"),
    "default": {},
    "search": dict(temperature="auto", alpha="auto"),
    "cosine": dict(schedule="cosine"),
}
FIXED = dict(temperature=2.0, alpha=0.7)


def load(name: str, quick: bool) -> tuple[pd.DataFrame, np.ndarray]:
    from sklearn import datasets

    if name == "demo":
        from crosskd.demo import demo_data

        parts = demo_data("tiny" if quick else "small", seed=0)
        X = pd.concat([parts[k][0] for k in ("train", "val", "test")], ignore_index=True)
        y = np.concatenate([parts[k][1] for k in ("train", "val", "test")])
        return X, y
    loader = {
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
        "digits": datasets.load_digits,
    }[name]
    data = loader(as_frame=True)
    return data.data, data.target.to_numpy()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two small tables, one seed")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    results = Results("defaults_tables", argv, quick=args.quick)
    torch.set_num_threads(1)
    from sklearn.model_selection import train_test_split

    names = ["iris", "wine"] if args.quick else ["iris", "wine", "breast_cancer", "digits", "demo"]
    seeds = [0] if args.quick else [0, 1, 2]
    rows, lines = [], []
    for name in names:
        X, y = load(name, args.quick)
        binary = len(np.unique(y)) == 2
        metric = "average_precision" if binary else "accuracy"
        scores: dict[str, list[float]] = {v: [] for v in VARIANTS}
        scores["teacher"] = []
        seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for seed in seeds:
            X_tr, X_te, y_tr, y_te = train_test_split(
                X, y, test_size=0.2, random_state=seed, stratify=y
            )
            X_fit, X_val, y_fit, y_val = train_test_split(
                X_tr, y_tr, test_size=0.2, random_state=seed, stratify=y_tr
            )
            model = crosskd.fit_lightgbm(
                X_fit, y_fit, eval_set=(X_val, y_val), params={"n_jobs": 1}, seed=seed
            )
            teacher = crosskd.LightGBMTeacher(model)
            scores["teacher"].append(
                classification_metrics(np.asarray(y_te), teacher.predict_proba(X_te))[metric]
            )
            for variant, settings in VARIANTS.items():
                settings = {**FIXED, **settings}
                if settings.get("val_metric") == "old":
                    settings["val_metric"] = "average_precision" if binary else "accuracy"
                started = time.perf_counter()
                fitted = crosskd.Distiller(
                    teacher,
                    crosskd.TabularStudent(hidden=(32, 16)),
                    seed=seed,
                    progress=False,
                    device="cpu",
                    **settings,
                ).fit(X_fit, y_fit, eval_set=(X_val, y_val))
                seconds[variant].append(time.perf_counter() - started)
                scores[variant].append(fitted.evaluate(X_te, y_te)[metric])
                print(
                    f"{name} seed {seed} {variant}: {metric} {scores[variant][-1]:.4f}", flush=True
                )
        rows.append(
            {
                "model": f"{name}: LightGBM",
                "role": "teacher",
                "metrics": {metric: mean_std(scores["teacher"])},
            }
        )
        for variant in VARIANTS:
            rows.append(
                {
                    "model": f"{name}: TabularStudent(32, 16) {variant}",
                    "role": "distilled",
                    "metrics": {metric: mean_std(scores[variant])},
                    "timing": {"fit_seconds": mean_std(seconds[variant])},
                    "chosen": variant == "default",
                }
            )
        lines.append(
            f"| {name} | {metric} | {np.mean(scores['teacher']):.4f} | "
            + " | ".join(
                f"{np.mean(scores[v]):.4f} ± {np.std(scores[v]):.4f} ({np.mean(seconds[v]):.1f} s)"
                for v in VARIANTS
            )
            + " |"
        )
    payload = results.write(
        rows, args.out, settings={"variants": VARIANTS, "fixed": FIXED, "seeds": seeds}
    )
    table = (
        "| data | test metric | teacher | " + " | ".join(VARIANTS) + " |\n"
        "|---|---|---:|" + "---:|" * len(VARIANTS) + "\n" + "\n".join(lines)
    )
    text = (
        "# Defaults on tables nobody tuned them to\n\n"
        + provenance_line(payload)
        + "\n\nStudents: mean ± std over seeds (fit time in brackets); `default` is the library "
        "default, fixed before this run (the `chosen` row). Test rows were used for nothing but "
        "this table.\n\n" + table + "\n"
    )
    (args.out / "defaults_tables.md").write_text(text)
    print(text)
    return payload


if __name__ == "__main__":
    main()
