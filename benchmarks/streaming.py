"""Distil a table larger than you would load: 10M x 32 rows streamed from parquet, peak RSS reported.

1. (a child process) writes a synthetic 10M x 32 binary table to ``/tmp`` as parquet, in row groups
   of 262,144 rows, 1M rows at a time (never into the repository);
2. trains a LightGBM teacher on 200k rows of it;
3. ``Distiller.fit(ParquetStream(...))``: teacher logits computed chunk by chunk and cached on disk
   next to fingerprints of the data and the teacher, the encoder fitted on a 200k-row sample, then
   ``--epochs`` epoch(s) over row-group buffers of ``--batch-rows`` rows;
4. reports the peak resident memory of this process (``resource.getrusage``), the time of each
   stage, and the student's ROC AUC on 50k held-out rows.

    python benchmarks/streaming.py                       # 10M rows, 1 epoch
    python benchmarks/streaming.py --rows 1000000        # quicker

Writes ``benchmarks/results/streaming-<device>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_results.py
from _results import Results, provenance_line  # noqa: E402 (standard library only)

FEATURES = 32
ROW_GROUP = 262_144


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def make_rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, FEATURES)).astype(np.float32)
    w = np.linspace(-1.0, 1.0, FEATURES)
    score = X @ w * 0.4 + 0.8 * np.sin(2 * X[:, 0]) * X[:, 1] + 0.5 * (X[:, 2] > 1.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-(score - 1.5)))).astype(np.int8)
    return X, y


def write_parquet(path: Path, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [f"f{j}" for j in range(FEATURES)]
    schema = pa.schema([(n, pa.float32()) for n in names] + [("label", pa.int8())])
    tmp = path.with_name(path.name + ".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for i, start in enumerate(range(0, rows, 1_048_576)):
            X, y = make_rows(min(1_048_576, rows - start), seed=1000 + i)
            arrays = [pa.array(X[:, j]) for j in range(FEATURES)] + [pa.array(y)]
            writer.write_table(
                pa.Table.from_arrays(arrays, schema=schema), row_group_size=ROW_GROUP
            )
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Run the benchmark; returns the results written (None for the writer child)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-rows", type=int, default=1_048_576)
    parser.add_argument(
        "--data", default=None, help="parquet path (default /tmp/crosskd-stream-<rows>.parquet)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--write-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    path = Path(args.data or f"/tmp/crosskd-stream-{args.rows}.parquet")
    if args.write_only:
        write_parquet(path, args.rows)
        return None

    results = Results("streaming", argv, quick=args.rows < 10_000_000)
    started = time.perf_counter()
    if not path.is_file():  # in a child process, so that writing does not count in our peak RSS
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--rows",
                str(args.rows),
                "--data",
                str(path),
                "--write-only",
            ],
            check=True,
        )
    write_seconds = time.perf_counter() - started

    import lightgbm as lgb
    import pyarrow.parquet as pq
    import torch

    from crosskd import Distiller, LightGBMTeacher, ParquetStream, TabularStudent
    from crosskd.metrics import roc_auc
    from crosskd.profiling import device_description

    torch.set_num_threads(args.threads)
    rss_after_imports = peak_rss_gb()
    stage = time.perf_counter()
    head = pq.ParquetFile(path).read_row_groups([0]).to_pandas().iloc[:200_000]
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 31, "seed": 0, "learning_rate": 0.1},
        lgb.Dataset(head.drop(columns="label"), head["label"]),
        num_boost_round=100,
    )
    del head
    teacher = LightGBMTeacher(booster)
    teacher_seconds = time.perf_counter() - stage

    X_val, y_val = make_rows(50_000, seed=7)
    import pandas as pd

    val = pd.DataFrame(X_val, columns=[f"f{j}" for j in range(FEATURES)])
    stream = ParquetStream(
        path,
        target="label",
        batch_rows=args.batch_rows,
        cache_dir=Path("/tmp") / (path.name + ".crosskd"),
    )
    # Start from a cold cache, so that the logits pass is measured.
    for name in ("teacher-logits.npy", "teacher-logits.json"):
        (stream.cache_dir / name).unlink(missing_ok=True)
    distiller = Distiller(
        teacher,
        TabularStudent(hidden=(64, 32)),
        epochs=args.epochs,
        early_stopping=None,
        device="cpu",
        progress=False,
    )
    stage = time.perf_counter()
    distiller.fit(stream, eval_set=(val, y_val))
    fit_seconds = time.perf_counter() - stage
    train_seconds = sum(h["epoch_seconds"] for h in distiller.history_)
    student_auc = roc_auc(y_val, distiller.predict_proba(val)[:, 1])
    teacher_auc = roc_auc(y_val, teacher.predict_proba(val)[:, 1])
    peak = peak_rss_gb()
    size_gb = path.stat().st_size / 1024**3
    json_rows = [
        {
            "model": "lightgbm-100trees (trained on 200k rows)",
            "role": "teacher",
            "metrics": {"roc_auc": teacher_auc},
        },
        {
            "model": f"TabularStudent 64-32, streamed, {args.epochs} epoch(s), batch "
            f"{distiller.batch_size_}",
            "role": "distilled",
            "metrics": {
                "roc_auc": student_auc,
                "samples_per_s": args.rows * args.epochs / train_seconds,
                "peak_rss_gb": peak,
            },
        },
    ]
    result = results.write(
        json_rows,
        args.out,
        name="streaming-cpu",
        device=device_description("cpu"),
        setup={
            "rows": args.rows,
            "features": FEATURES,
            "row_group_rows": ROW_GROUP,
            "batch_rows": args.batch_rows,
            "epochs": args.epochs,
            "parquet_gb": size_gb,
            "parquet_path": str(path),
            "write_seconds": write_seconds,
            "teacher_train_seconds": teacher_seconds,
            "fit_seconds": fit_seconds,
            "train_seconds": train_seconds,
            "teacher_cache": distiller.teacher_cache_,
            "peak_rss_gb_after_imports": rss_after_imports,
        },
    )
    md = [
        f"# Streaming distillation ({result['device']})",
        "",
        provenance_line(result) + " (A shared machine, so one epoch only.)",
        "",
        f"{args.rows:,} rows x {FEATURES} float32 features + a binary label, {size_gb:.2f} GB of "
        f"parquet in row groups of {ROW_GROUP:,} rows (in /tmp, not in the repository); buffers of "
        f"{args.batch_rows:,} rows.",
        "",
        "| stage | seconds |",
        "|---|---:|",
        f"| write the parquet file (child process) | {write_seconds:.1f} |",
        f"| train the LightGBM teacher (200k rows) | {teacher_seconds:.1f} |",
        f"| fit: teacher logits pass + encoder sample + {args.epochs} epoch(s) | {fit_seconds:.1f} |",
        f"| of which training epochs | {train_seconds:.1f} |",
        "",
        "| model | ROC AUC (50k held-out rows) | samples/s | peak RSS (GB) |",
        "|---|---:|---:|---:|",
        f"| teacher: LightGBM 100 trees | {teacher_auc:.4f} | | |",
        f"| student: TabularStudent 64-32, streamed | {student_auc:.4f} | "
        f"{json_rows[1]['metrics']['samples_per_s']:,.0f} | {peak:.2f} |",
        "",
        f"Peak RSS is the whole process's high-water mark (`resource.getrusage`), "
        f"{rss_after_imports:.2f} GB of which was reached by the imports alone; the target is "
        "24 GiB.",
    ]
    Path(args.out, "streaming-cpu.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main()
