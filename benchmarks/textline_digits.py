"""The default text-line recipe on lines of real handwritten digits (MNIST), a set it was not
developed on.

Builds lines of 3 to 10 MNIST digits (random spacing and overlap, vertical jitter;
:mod:`crosskd.datasets.digit_lines`): training lines from MNIST's training digits only, test lines
from its test digits only. Then runs the command a user runs, with every default,

    crosskd distill --task textline --data TRAIN/lines.tsv --test TEST/lines.tsv --out RUN

in a child process, and records the teacher, the baseline (the student trained alone) and the
distilled student (sequence accuracy and CER on the test lines, parameters, batch-1 latency,
epochs run) from its ``report.json``, with the wall time::

    python benchmarks/textline_digits.py [--train-lines 800] [--test-lines 200] [--quick]

The lines and the run folder go to /tmp, never into the repository.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_results.py
from _results import RESULTS_DIR, Results, provenance_line  # noqa: E402

ROLES = {"teacher": "teacher", "baseline": "baseline", "student": "distilled"}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-lines", type=int, default=800)
    parser.add_argument("--test-lines", type=int, default=200)
    parser.add_argument("--work", default="/tmp/digit-lines", help="folder for lines and the run")
    parser.add_argument("--quick", action="store_true", help="60 / 20 lines, 2 epochs (tests)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.quick:
        args.train_lines, args.test_lines = 60, 20
    results = Results("textline_digits", argv, quick=args.quick)

    from crosskd.datasets.digit_lines import write_digit_lines
    from crosskd.vision import load_mnist

    work = Path(args.work)
    x_train, y_train = load_mnist("train")
    x_test, y_test = load_mnist("test")
    train = write_digit_lines(work / "train", x_train, y_train, args.train_lines, seed=0)
    test = write_digit_lines(work / "test", x_test, y_test, args.test_lines, seed=1)
    run = work / "run"
    if run.exists():
        import shutil

        shutil.rmtree(run)
    command = [sys.executable, "-m", "crosskd", "distill", "--task", "textline", "--data",
               str(train), "--test", str(test), "--out", str(run), "--quiet"]  # fmt: skip
    if args.quick:
        command += ["--epochs", "2", "--teacher-epochs", "2"]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    report = json.loads((run / "report.json").read_text())
    rows = []
    for key, role in ROLES.items():
        part = report.get(key)
        if not part:
            continue
        rows.append(
            {
                "model": f"{key}: {part.get('model')}",
                "role": role,
                "params": part.get("params"),
                "metrics": {k: part["metrics"][k] for k in ("sequence_accuracy", "cer")},
                "timing": {"latency_ms_batch1": part.get("latency_ms_batch1")},
                "epochs_run": part.get("epochs_run"),
                "best_epoch": part.get("best_epoch"),
                "chosen": True,
            }
        )
    payload = results.write(
        rows,
        args.out,
        name="textline_digits-quick" if args.quick else "textline_digits",
        settings={"train_lines": args.train_lines, "test_lines": args.test_lines},
        run={"command": " ".join(command[1:]), "seconds": seconds, "settings": report["settings"]},
    )
    table = "\n".join(
        f"| {r['model']} | {r['role']} | {r['params']:,} | {r['metrics']['sequence_accuracy']:.3f} "
        f"| {r['metrics']['cer']:.4f} | {r['epochs_run']} |"
        for r in rows
    )
    text = (
        "# The default text-line recipe on handwritten digit lines\n\n"
        + provenance_line(payload)
        + f"\n\n{args.train_lines} training lines (MNIST training digits), {args.test_lines} test "
        f"lines (MNIST test digits), 3-10 digits each; every setting at its default; "
        f"{seconds / 60:.1f} min.\n\n"
        "| model | role | params | seq. accuracy | CER | epochs run |\n"
        "|---|---|---:|---:|---:|---:|\n" + table + "\n"
    )
    if not args.quick:
        (args.out / "textline_digits.md").write_text(text)
    print(text)
    return payload


if __name__ == "__main__":
    main()
