"""A small, deterministic distillation run for the kill-and-resume test (tests/test_checkpoint.py).

Run as a script it trains with checkpoints in ``OUT/ckpt`` and ``resume=True``; with
``--hang-at-step K`` it writes ``OUT/hung`` and sleeps when the K-th training step starts, so that the
test can kill it with SIGKILL at a known point in the middle of an epoch (no race on timing). The
test imports :func:`run` to train in-process (resumed and uninterrupted) with the same settings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

EPOCHS = 5
BATCH_SIZE = 64
N_TRAIN = 480  # with 80 transfer rows: 560 rows, 9 steps per epoch (the last one of 48 rows)
STEPS_PER_EPOCH = 9


def make_frame(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A fraud-like table: two numeric columns (with NaN), one categorical column, labels 0/1."""
    rng = np.random.default_rng(seed)
    amount = rng.gamma(2.0, 40.0, n)
    hour = rng.integers(0, 24, n).astype(float)
    merchant = rng.choice(["shop", "fuel", "web", "atm"], n)
    score = 0.02 * (amount - 80) + 1.5 * (merchant == "web") * (hour < 6) + rng.normal(size=n)
    frame = pd.DataFrame({"amount": amount, "hour": hour, "merchant": merchant})
    frame.loc[rng.choice(n, n // 20, replace=False), "amount"] = np.nan
    return frame, (score > 0.8).astype(int)


def run(out: Path, model_path: Path, resume: object = True, hang_at_step: int | None = None):
    """Train the student; returns the fitted Distiller."""
    from crosskd import Distiller, LightGBMTeacher, TabularStudent

    torch.set_num_threads(1)  # the same kernels in every process, for bitwise comparisons
    X, y = make_frame(N_TRAIN + 160)
    X_train, y_train = X.iloc[:N_TRAIN], y[:N_TRAIN]
    X_val, y_val = X.iloc[N_TRAIN : N_TRAIN + 80], y[N_TRAIN : N_TRAIN + 80]
    transfer = X.iloc[N_TRAIN + 80 :]
    student = TabularStudent(hidden=(16, 8), dropout=0.2)
    if hang_at_step is not None:
        from toy import hang_at_step as hang

        hang(student, out, hang_at_step)
    distiller = Distiller(
        LightGBMTeacher(model_path),
        student,
        temperature=3.0,
        alpha=0.7,
        epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        lr=1e-2,
        early_stopping=None,
        val_metric="loss",
        seed=7,
        progress=False,
        device="cpu",
        checkpoint_dir=out / "ckpt",
    )
    return distiller.fit(
        X_train, y_train, eval_set=(X_val, y_val), transfer=transfer, resume=resume
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("model", type=Path)
    parser.add_argument("--hang-at-step", type=int)
    args = parser.parse_args()
    run(args.out, args.model, resume=True, hang_at_step=args.hang_at_step)
