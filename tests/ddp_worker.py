"""A small distillation run for the DDP test (tests/test_distributed.py).

Run under ``torchrun --nproc_per_node=2`` it trains with DistributedDataParallel (gloo, CPU) and
rank 0 writes the weights and history to OUT; the test imports :func:`run` to train the same
student in one process with twice the batch, and compares.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

N_TRAIN, N_VAL, D, K = 512, 128, 6, 3
EPOCHS = 4
GLOBAL_BATCH = 64


def make_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N_TRAIN + N_VAL, D)).astype(np.float32)
    W = rng.normal(size=(D, K)) * 2.0
    y = (X @ W + rng.gumbel(size=(N_TRAIN + N_VAL, K))).argmax(1)
    return X, y, W


def run(batch_size: int, out: Path | None = None, distributed: bool | str = "auto"):
    """Train; returns the fitted Distiller."""
    from crosskd import MLP, Distiller
    from crosskd.teachers.base import Teacher, TeacherInfo

    class LinearTeacher(Teacher):
        def __init__(self, W):
            self.W = W
            self.info = TeacherInfo(num_classes=K, classes=tuple(range(K)), kind="toy")

        def _logits(self, X):
            return np.asarray(X, dtype=np.float64) @ self.W

    torch.set_num_threads(1)
    X, y, W = make_data()
    torch.manual_seed(3)
    student = MLP(D, K, hidden=(32,), dropout=0.0)  # no dropout: ranks and one process agree
    distiller = Distiller(
        LinearTeacher(W),
        student,
        temperature=2.0,
        alpha=0.6,
        epochs=EPOCHS,
        batch_size=batch_size,
        lr=1e-2,
        early_stopping=2,
        val_metric="loss",
        seed=5,
        progress=False,
        device="cpu",
        precision="32",
        distributed=distributed,
        checkpoint_dir=None if out is None else out / "ckpt",
    )
    distiller.fit(X[:N_TRAIN], y[:N_TRAIN], eval_set=(X[N_TRAIN:], y[N_TRAIN:]))
    if out is not None:
        distiller.save(out / "student.safetensors")
        rank = distiller.dist_.rank if distiller.dist_ is not None else 0
        world = distiller.dist_.world_size if distiller.dist_ is not None else 1
        # Every rank reports what it saw, so the test can check that all ranks agree.
        (out / f"rank{rank}.json").write_text(
            json.dumps(
                {
                    "world_size": world,
                    "history": [
                        {k: v for k, v in h.items() if k != "epoch_seconds"}
                        for h in distiller.history_
                    ],
                    "best_epoch": distiller.best_epoch_,
                    "logits": distiller.predict_logits(X[N_TRAIN:]).tolist(),
                }
            )
        )
    return distiller


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    run(GLOBAL_BATCH // 2, args.out)
