"""The ``crosskd distill --task textline`` run of docs/textline.md, as a results file.

Runs the command a user runs, in a child process (so that its peak memory is the child's own),
on the captcha lines, then reads the ``report.json`` it writes and records the teacher and the
student (sequence accuracy and CER on the command's seeded test split, parameters, batch-1 CPU
latency), the wall time and the child's peak resident memory in
``benchmarks/results/textline_cli.json`` and ``.md``::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/textline_cli.py [--data DIR] [--run /tmp/captcha-run]

About 3.5 minutes on 2 idle CPU cores. The run folder goes to /tmp, never into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_results.py
from _results import Results, provenance_line  # noqa: E402

ROLES = {"teacher": "teacher", "student": "distilled"}


def default_data() -> Path:
    """The captcha folder: ``$CROSSKD_DATA/ocr/captcha``, else ``../shared/data/ocr/captcha``."""
    root = os.environ.get("CROSSKD_DATA")
    base = Path(root) if root else Path(__file__).resolve().parents[2] / "shared" / "data"
    return base / "ocr" / "captcha"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the command and write its results; returns the JSON payload."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="captcha folder (default: shared data)")
    parser.add_argument("--run", default="/tmp/captcha-run", help="the command's --out folder")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    results = Results("textline_cli", argv, quick=False)
    data = Path(args.data) if args.data else default_data()
    command = [
        sys.executable,
        "-m",
        "crosskd",
        "distill",
        "--task",
        "textline",
        "--data",
        str(data),
        "--out",
        args.run,
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2  # KiB on Linux
    report = json.loads((Path(args.run) / "report.json").read_text())
    rows = []
    for part, role in ROLES.items():
        r = report[part]
        rows.append(
            {
                "model": f"{part}: {r['model']}",
                "role": role,
                "params": r["params"],
                "bytes": r["bytes"],
                "frames": r["frames"],
                "metrics": {
                    "sequence_accuracy": r["metrics"]["sequence_accuracy"],
                    "cer": r["metrics"]["cer"],
                },
                "timing": {"latency_ms_batch1": r["latency_ms_batch1"]},
                "best_epoch": r["best_epoch"],
                "chosen": True,  # the command's one teacher and one student
            }
        )
    payload = results.write(
        rows,
        args.out,
        cli_command=["crosskd", *command[3:]],
        cli_seconds=seconds,
        peak_rss_gb_child=peak_gb,
        data_rows=report["rows"],
        settings=report["settings"],
    )
    lines = [
        "# `crosskd distill --task textline` on the captcha lines",
        "",
        provenance_line(payload),
        "",
        f"`{' '.join(payload['cli_command'])}`: {seconds / 60:.1f} min, peak resident memory of "
        f"the command's process {peak_gb:.2f} GB; rows "
        + ", ".join(f"{k} {v:,}" for k, v in report["rows"].items())
        + ". Sequence accuracy and CER on the command's seeded test split.",
        "",
        "| model | role | params | seq. accuracy | CER | latency ms (batch 1) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        m = row["metrics"]
        lines.append(
            f"| {row['model']} | {row['role']} | {row['params']:,} | "
            f"{m['sequence_accuracy']:.3f} | {m['cer']:.4f} | "
            f"{row['timing']['latency_ms_batch1']:.2f} |"
        )
    Path(args.out, "textline_cli.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return payload


if __name__ == "__main__":
    main()
