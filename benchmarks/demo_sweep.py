"""The sweep that chose `crosskd demo`'s distillation settings, on validation days only.

For each setting (student alone; distilled at each temperature and alpha, with the delay days as a
transfer set) it trains the demo's 15-32-16-2 student with 3 seeds and reports the validation
average precision at the early-stopping epoch (the selection criterion) next to the test average
precision (reported, never used for the choice).

    python benchmarks/demo_sweep.py [--size small] [--seeds 3] [--out benchmarks/results]

Writes ``demo_sweep.md`` and ``demo_sweep.json`` (the form of ../shared/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import crosskd
from crosskd.demo import DEMO_SIZES, STUDENT_HIDDEN, demo_data
from crosskd.tabular.gbdt import fit_lightgbm

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_results.py
from _results import Results, provenance_line  # noqa: E402

SETTINGS = [("alone", None, 0.0, False)] + [
    (f"T={t:g} alpha={a:g} +delay", t, a, True) for t in (1.0, 2.0) for a in (0.5, 0.7, 0.9)
]


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the sweep; returns the results written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=sorted(DEMO_SIZES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    results = Results("demo_sweep", argv, quick=False)

    parts = demo_data(args.size, seed=0)
    (X_tr, y_tr), (X_va, y_va), (X_de, _), (X_te, y_te) = (
        parts[k] for k in ("train", "val", "delay", "test")
    )
    teacher = crosskd.LightGBMTeacher(fit_lightgbm(X_tr, y_tr, eval_set=(X_va, y_va)))
    rows = []
    for name, temperature, alpha, transfer in SETTINGS:
        val_ap, test_ap = [], []
        for seed in range(args.seeds):
            distiller = crosskd.Distiller(
                teacher if alpha > 0 else None,
                crosskd.TabularStudent(hidden=STUDENT_HIDDEN),
                temperature=temperature or 1.0,
                alpha=alpha,
                epochs=args.epochs,
                early_stopping=6,
                seed=seed,
                device="cpu",
                progress=False,
            )
            distiller.fit(X_tr, y_tr, eval_set=(X_va, y_va), transfer=X_de if transfer else None)
            val_ap.append(distiller.best_score_)
            test_ap.append(distiller.evaluate(X_te, y_te)["average_precision"])
        rows.append(
            {
                "model": f"15-{'-'.join(map(str, STUDENT_HIDDEN))}-2 {name}",
                "role": "baseline" if alpha == 0 else "distilled",
                "metrics": {
                    "val_average_precision": [float(np.mean(val_ap)), float(np.std(val_ap))],
                    "average_precision": [float(np.mean(test_ap)), float(np.std(test_ap))],
                },
            }
        )
        print(
            f"{name:24s} val AP {np.mean(val_ap):.4f}  test AP {np.mean(test_ap):.4f}", flush=True
        )
    best = max(rows[1:], key=lambda r: r["metrics"]["val_average_precision"][0])
    for r in rows:
        r["chosen"] = r is best or r["role"] == "baseline"
    payload = results.write(rows, args.out, selected=best["model"])
    lines = [
        "# Demo settings sweep",
        "",
        provenance_line(payload),
        "",
        f"Mean ± std over {args.seeds} seeds. Selection by validation AP only; test AP is shown, "
        "not used.",
        "",
        "| student | validation AP | test AP |",
        "|---|---:|---:|",
    ]
    for r in rows:
        v, t = r["metrics"]["val_average_precision"], r["metrics"]["average_precision"]
        lines.append(f"| {r['model']} | {v[0]:.4f} ± {v[1]:.4f} | {t[0]:.4f} ± {t[1]:.4f} |")
    better = [
        r["model"]
        for r in rows[1:]
        if r["metrics"]["average_precision"][0] > best["metrics"]["average_precision"][0]
    ]
    if better:
        lines += ["", "Not chosen, but better on test: " + "; ".join(better) + "."]
    lines += ["", f"Selected (highest validation AP among distilled): **{best['model']}**."]
    Path(args.out, "demo_sweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return payload


if __name__ == "__main__":
    main()
