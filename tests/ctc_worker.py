"""A small, deterministic text-line (CTC) run for the engine tests (tests/test_engine.py).

``python ctc_worker.py OUT [--hang-at-step K]`` trains with checkpoints in ``OUT/ckpt`` and
``resume=True``; with ``--hang-at-step K`` it writes ``OUT/hung`` and sleeps when the K-th training
step starts, so that the test can kill it with SIGKILL in the middle of an epoch. Under
``torchrun --nproc_per_node=2 ctc_worker.py OUT --ddp`` each rank writes what it saw to
``OUT/rank<r>.json``. The tests import :func:`run` to train in-process with the same settings.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

EPOCHS = 4
BATCH_SIZE = 16
N_TRAIN, N_VAL = 72, 16  # 5 steps per epoch (the last one of 8 lines)
STEPS_PER_EPOCH = 5


def make_lines(n: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """``n`` rendered 16 x 48 lines of 2-4 digits (uint8, white on black) and their labels."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    font = ImageFont.load_default()
    images, labels = [], []
    for _ in range(n):
        text = "".join(rng.choice(list("0123"), size=int(rng.integers(2, 5))))
        img = Image.new("L", (48, 16), 0)
        ImageDraw.Draw(img).text((int(rng.integers(1, 4)), 2), text, fill=255, font=font)
        images.append(np.asarray(img))
        labels.append(text)
    return np.stack(images)[:, None], labels


def run(
    out: Path | None,
    resume: object = None,
    hang_at_step: int | None = None,
    batch_size: int = BATCH_SIZE,
    augment: bool = True,
    distributed: bool | str = "auto",
):
    """Distil a tiny CRNN teacher into a smaller one; returns the fitted CTCDistiller."""
    from crosskd.vision import CRNN, Alphabet, CTCDistiller, textline_augment

    torch.set_num_threads(1)  # the same kernels in every process, for bitwise comparisons
    x, y = make_lines(N_TRAIN + N_VAL)
    alphabet = Alphabet.from_labels(y)
    torch.manual_seed(0)
    teacher = CRNN("tiny", num_classes=alphabet.num_classes, width=8, hidden=16, height=16)
    torch.manual_seed(1)
    student = CRNN("tiny", num_classes=alphabet.num_classes, width=4, hidden=8, height=16)
    if hang_at_step is not None:
        from toy import hang_at_step as hang

        hang(student, out, hang_at_step)
    distiller = CTCDistiller(
        teacher.eval(),
        student,
        alphabet=alphabet,
        alpha=0.5,
        mode="both",
        temperature=2.0,
        epochs=EPOCHS,
        batch_size=batch_size,
        augment=textline_augment(seed=3) if augment else None,
        plateau_restarts=1,
        plateau_epochs=2,
        seed=5,
        progress=False,
        device="cpu",
        precision="32",
        distributed=distributed,
        checkpoint_dir=None if out is None else out / "ckpt",
    )
    return distiller.fit(
        x[:N_TRAIN], y[:N_TRAIN], eval_set=(x[N_TRAIN:], y[N_TRAIN:]), resume=resume
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--hang-at-step", type=int)
    parser.add_argument("--ddp", action="store_true")
    args = parser.parse_args()
    if not args.ddp:
        run(args.out, resume=True, hang_at_step=args.hang_at_step)
    else:
        fitted = run(args.out, batch_size=BATCH_SIZE // 2, augment=False)
        rank = fitted.dist_.rank if fitted.dist_ is not None else 0
        if rank == 0:
            fitted.save(args.out / "student.safetensors")
        x, _ = make_lines(N_TRAIN + N_VAL)
        logits = fitted.student_(torch.from_numpy(x[N_TRAIN:]).float() / 255)
        (args.out / f"rank{rank}.json").write_text(
            json.dumps(
                {
                    "world_size": fitted.dist_.world_size if fitted.dist_ is not None else 1,
                    "history": [
                        {k: v for k, v in h.items() if k != "epoch_seconds"}
                        for h in fitted.history_
                    ],
                    "best_epoch": fitted.best_epoch_,
                    "logits": logits.tolist(),
                }
            )
        )
