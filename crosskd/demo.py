"""``crosskd demo``: the main job end to end on built-in data, no files needed.

1. simulate card transactions with the Fraud Detection Handbook's simulator (customers, terminals,
   its three fraud scenarios) and compute the handbook's 15 features;
2. split by time: a feature warm-up, then train / validation / delay / test days; the delay days are
   transactions whose labels are not known yet, a natural transfer set;
3. train a LightGBM teacher (early stopping on the validation days);
4. train the same small MLP student twice per seed: on labels alone (class-weighted), and distilled
   from the teacher (plus the delay days as a transfer set);
5. print ROC AUC and average precision (mean ± std over seeds), parameters, bytes and CPU
   inference time per 10,000 rows for teacher, student alone and distilled student (the three
   timed in one loop, each call repeated, the minimum kept: the time least disturbed by other work).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .exceptions import ConfigError

__all__ = ["DEMO_SIZES", "DemoRow", "DemoResult", "demo_data", "run_demo"]

#: Simulator sizes: customers, terminals, and days of train / validation / delay / test after a
#: 30-day warm-up that fills the features' 30-day windows.
DEMO_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"customers": 400, "terminals": 800, "train": 10, "val": 4, "delay": 4, "test": 7},
    "small": {"customers": 2500, "terminals": 5000, "train": 14, "val": 7, "delay": 7, "test": 14},
    "medium": {
        "customers": 5000,
        "terminals": 10000,
        "train": 28,
        "val": 7,
        "delay": 7,
        "test": 21,
    },
}
WARMUP_DAYS = 30
#: Distillation settings of the demo, chosen by validation average precision (never test) in
#: ``python benchmarks/demo_sweep.py`` (T in {1, 2} x alpha in {0.5, 0.7, 0.9}, 3 seeds; results in
#: benchmarks/results/demo_sweep.md). Class weights are not used (the fraud benchmark measured
#: "balanced" weights below unweighted training in average precision, see docs/fraud.md).
DEMO_TEMPERATURE = 2.0
DEMO_ALPHA = 0.5
STUDENT_HIDDEN = (32, 16)


@dataclass
class DemoRow:
    """One line of the demo's table."""

    model: str
    params: int
    bytes: int
    roc_auc: list[float] = field(default_factory=list)
    average_precision: list[float] = field(default_factory=list)
    ms_per_10k: float = float("nan")


@dataclass
class DemoResult:
    """The demo's rows and the data sizes it ran on."""

    rows: list[DemoRow]
    sizes: dict[str, int]
    seconds: float

    def row(self, model: str) -> DemoRow:
        return next(r for r in self.rows if r.model == model)


def demo_data(
    size: str = "small", seed: int = 0
) -> dict[str, tuple[pd.DataFrame, np.ndarray | None]]:
    """Simulated transactions split by day: ``{"train", "val", "delay", "test"}`` -> (X, y).

    X holds the handbook's 15 features; y is TX_FRAUD (None for the delay days, whose labels are
    not known yet at training time).
    """
    from .datasets.fraud import HANDBOOK_FEATURES, add_handbook_features, simulate_transactions

    if size not in DEMO_SIZES:
        raise ConfigError(f"size must be one of {sorted(DEMO_SIZES)}, got {size!r}.")
    spec = DEMO_SIZES[size]
    n_days = WARMUP_DAYS + spec["train"] + spec["val"] + spec["delay"] + spec["test"]
    raw = simulate_transactions(
        n_customers=spec["customers"], n_terminals=spec["terminals"], n_days=n_days, seed=seed
    )
    data = add_handbook_features(raw)
    day = data["TX_TIME_DAYS"].to_numpy()
    bounds = np.cumsum([WARMUP_DAYS, spec["train"], spec["val"], spec["delay"], spec["test"]])
    parts = {}
    for name, lo, hi in zip(
        ("train", "val", "delay", "test"), bounds[:-1], bounds[1:], strict=True
    ):
        rows = data[(day >= lo) & (day < hi)]
        X = rows[HANDBOOK_FEATURES].reset_index(drop=True)
        y = rows["TX_FRAUD"].to_numpy().astype(np.int64)
        parts[name] = (X, None if name == "delay" else y)
    return parts


#: Timed calls per model for the speed column (the minimum is reported).
SPEED_REPEATS = 5


def _ms_per_10k(predictors: dict[str, Callable[[Any], Any]], X: pd.DataFrame) -> dict[str, float]:
    """CPU milliseconds per 10,000 rows of each predictor, all timed in one loop, repeated."""
    from .pipeline import time_together

    reps = int(np.ceil(10_000 / len(X)))
    batch = pd.concat([X] * reps, ignore_index=True).iloc[:10_000] if reps > 1 else X.iloc[:10_000]
    return time_together(predictors, batch, SPEED_REPEATS)


def run_demo(
    size: str = "small",
    seeds: int = 3,
    data_seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    echo: Callable[[str], Any] = print,
    threads: int | str = "auto",
) -> DemoResult:
    """Run the demo and print its table; returns the numbers behind it."""
    from .metrics import average_precision, roc_auc
    from .profiling import model_size
    from .tabular import TabularStudent
    from .tabular.gbdt import fit_lightgbm
    from .teachers import LightGBMTeacher
    from .trainer import Distiller

    if seeds < 1:
        raise ConfigError(f"seeds must be >= 1, got {seeds}.")
    started = time.perf_counter()
    echo(f"simulating transactions ({size}) ...")
    parts = demo_data(size, seed=data_seed)
    (X_tr, y_tr), (X_va, y_va), (X_de, _), (X_te, y_te) = (
        parts[k] for k in ("train", "val", "delay", "test")
    )
    sizes = {"train": len(X_tr), "val": len(X_va), "delay": len(X_de), "test": len(X_te)}
    echo(
        f"  train {len(X_tr):,} rows ({int(y_tr.sum())} frauds), validation {len(X_va):,}, "
        f"delay (unlabelled transfer set) {len(X_de):,}, test {len(X_te):,} ({int(y_te.sum())} frauds)"
    )

    echo("training the LightGBM teacher ...")
    n_jobs = threads if isinstance(threads, int) else "auto"
    model = fit_lightgbm(
        X_tr, y_tr, eval_set=(X_va, y_va), seed=data_seed, params={"n_jobs": n_jobs}
    )
    teacher = LightGBMTeacher(model)
    t_size = model_size(model)
    p_teacher = teacher.predict_proba(X_te)[:, 1]
    teacher_row = DemoRow("LightGBM teacher", t_size.params, t_size.bytes)
    teacher_row.roc_auc.append(roc_auc(y_te, p_teacher))
    teacher_row.average_precision.append(average_precision(y_te, p_teacher))

    alone = DemoRow("student alone", 0, 0)
    distilled = DemoRow("student distilled", 0, 0)
    common = dict(
        epochs=60, batch_size=512, device=device, early_stopping=6, progress=progress,
        threads=threads,
    )  # fmt: skip
    timed: dict[str, Callable[[Any], Any]] = {teacher_row.model: teacher.predict_proba}
    used: dict[str, list[Any]] = {"epochs": [], "threads": []}
    for seed in range(seeds):
        echo(f"training students, seed {seed + 1}/{seeds} ...")
        for row, kd in ((alone, False), (distilled, True)):
            distiller = Distiller(
                teacher if kd else None,
                TabularStudent(hidden=STUDENT_HIDDEN),
                temperature=DEMO_TEMPERATURE,
                alpha=DEMO_ALPHA if kd else 0.0,
                seed=seed,
                **common,
            )
            distiller.fit(X_tr, y_tr, eval_set=(X_va, y_va), transfer=X_de if kd else None)
            if kd:
                used["epochs"].append(f"{distiller.best_epoch_}/{len(distiller.history_)}")
                used["threads"].append(distiller.threads_)
            proba = distiller.predict_proba(X_te)[:, 1]
            row.roc_auc.append(roc_auc(y_te, proba))
            row.average_precision.append(average_precision(y_te, proba))
            if seed == 0:
                size_s = model_size(distiller.student_)
                row.params, row.bytes = size_s.params, size_s.bytes
                distiller.student_.cpu()  # latency is reported on the CPU, like the teacher's
                timed[row.model] = distiller.predict_proba

    speeds = _ms_per_10k(timed, X_te)
    for row in (teacher_row, alone, distilled):
        row.ms_per_10k = speeds[row.model]
    result = DemoResult([teacher_row, alone, distilled], sizes, time.perf_counter() - started)
    echo("")
    echo(format_table(result, seeds))
    gain = np.mean(distilled.average_precision) - np.mean(alone.average_precision)
    echo(
        f"\ndistilled student vs student alone, mean average precision over {seeds} seed(s): "
        f"{np.mean(distilled.average_precision):.4f} vs {np.mean(alone.average_precision):.4f} "
        f"({gain:+.4f}); {result.seconds:.0f} s in all"
    )
    lgb_threads = model.get_params().get("n_jobs")
    echo(
        f"settings: T={DEMO_TEMPERATURE:g}, alpha={DEMO_ALPHA:g} (chosen on the validation days "
        f"by benchmarks/demo_sweep.py); students: batch {common['batch_size']}, at most "
        f"{common['epochs']} epochs, stopped after {common['early_stopping']} epochs without a "
        f"better validation average precision, the best epoch kept (distilled, best/run per "
        f"seed: {', '.join(used['epochs'])}); torch threads {sorted(set(used['threads']))} and "
        f"LightGBM n_jobs {lgb_threads} (threads={threads!r}: "
        + (
            "no more than the idle cores, one for small steps)"
            if threads == "auto"
            else "as given)"
        )
    )
    return result


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


def format_table(result: DemoResult, seeds: int) -> str:
    """The demo's markdown table."""
    lines = [
        "| model | params | bytes | ROC AUC | average precision | CPU ms / 10k rows |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in result.rows:
        lines.append(
            f"| {row.model} | {row.params:,} | {row.bytes:,} | {_mean_std(row.roc_auc)} | "
            f"{_mean_std(row.average_precision)} | {row.ms_per_10k:.1f} |"
        )
    lines.append(f"\nstudents: mean ± std over {seeds} seed(s); teacher: one model.")
    return "\n".join(lines)
