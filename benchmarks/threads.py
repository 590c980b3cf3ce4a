"""``threads="auto"`` against torch's default on an idle and on a busy machine.

Runs ``crosskd demo`` (a child process each time) with ``--threads auto`` and with one thread per
core (what torch and LightGBM take by default), first on the otherwise idle machine, then with
``--busy`` CPU-bound processes spinning beside it (pure Python loops, one per core by default).
Wall time of each run, and the ratio busy / idle. The demo's quality figures are the same in
every run (seeded); only its time changes.

    python benchmarks/threads.py [--size small] [--seeds 3] [--busy 2] [--quick] [--only-auto]

``--only-auto`` times the default demo with ``threads="auto"`` only (``threads-auto.*``): the
issue's target, the demo on the idle machine and beside two CPU-bound processes.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS_DIR, Results, provenance_line  # noqa: E402


def _spin(stop: mp.Event) -> None:  # a CPU-bound neighbour
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def _demo(size: str, seeds: int, threads: str) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "crosskd", "demo", "--size", size, "--seeds", str(seeds),
         "--threads", threads, "--quiet"],
        check=True, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--quick", action="store_true", help="the tiny demo, one seed")
    parser.add_argument(
        "--only-auto",
        action="store_true",
        help="time threads=auto only (the default demo; one per core takes minutes when busy)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.seeds = "tiny", 1
    results = Results("threads", argv, quick=args.quick)
    cores = str(os.cpu_count() or 1)
    settings = {"auto": "auto", f"{cores} (one per core)": cores}
    if args.only_auto:
        settings = {"auto": "auto"}
    times: dict[tuple[str, str], float] = {}
    for load in ("idle", "busy"):
        stop = mp.Event()
        neighbours = []
        if load == "busy":
            neighbours = [mp.Process(target=_spin, args=(stop,)) for _ in range(args.busy)]
            for p in neighbours:
                p.start()
        try:
            for name, value in settings.items():
                times[(name, load)] = _demo(args.size, args.seeds, value)
                print(f"{load}, threads {name}: {times[(name, load)]:.1f} s", flush=True)
        finally:
            stop.set()
            for p in neighbours:
                p.join()
    rows = [
        {
            "model": f"crosskd demo --size {args.size} --seeds {args.seeds}, threads {name}",
            "role": "distilled",
            "timing": {
                "idle_seconds": times[(name, "idle")],
                "busy_seconds": times[(name, "busy")],
                "ratio": times[(name, "busy")] / times[(name, "idle")],
            },
            "chosen": name == "auto",
        }
        for name in settings
    ]
    payload = results.write(
        rows,
        args.out,
        name="threads-auto" if args.only_auto else "threads",
        settings={"size": args.size, "seeds": args.seeds, "busy": args.busy},
    )
    table = "\n".join(
        f"| {name} | {times[(name, 'idle')]:.1f} | {times[(name, 'busy')]:.1f} | "
        f"{times[(name, 'busy')] / times[(name, 'idle')]:.2f} |"
        for name in settings
    )
    text = (
        "# Threads: auto against one per core\n\n"
        + provenance_line(payload)
        + f"\n\n`crosskd demo --size {args.size} --seeds {args.seeds}`, wall seconds; busy: "
        f"{args.busy} CPU-bound processes beside it.\n\n"
        "| threads | idle (s) | busy (s) | busy / idle |\n|---|---:|---:|---:|\n" + table + "\n"
    )
    (args.out / ("threads-auto.md" if args.only_auto else "threads.md")).write_text(text)
    print(text)
    return payload


if __name__ == "__main__":
    main()
