"""Do the image defaults of ``crosskd distill`` hold on image sets nobody tuned them to?

Four sets built from real digits, written as a user would hand them over (never into the project):

- ``digits400`` / ``digits1797``: scikit-learn's 8x8 digits (a 400-image seeded subset, and all
  1,797), scaled to 16x16 PNGs in one folder per class, the folder names with spaces;
- ``mnist16``: 7,291 MNIST training digits (the size of the USPS training set), the 20x20 box
  around the digit scaled to 16x16 (USPS scans fill their 16x16 frame), one folder per class;
- ``mnist28``: 10,000 other MNIST training digits at 28x28, as an ``.npz``.

Each set is read by ``crosskd.distill_images(data, out)`` with every default (``after``); the sets
named by ``--before`` also with the settings that were the defaults before issue 13 (``before``: a
timm resnet18 teacher read zero-padded to 32x32, 20 epochs, 128 images a step, no early stopping;
the same student). The run's own seeded split holds out the test images (15 %) and the validation images
(10 % of the rest); test images choose nothing. Reported: test accuracy of the teacher, the
student alone (baseline) and the distilled student, the teacher chosen, the epochs run and the
wall time of the whole run.

    OMP_NUM_THREADS=1 python benchmarks/defaults_images.py [--sets ...] [--before digits400,...]
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS_DIR, Results, provenance_line  # noqa: E402

import crosskd  # noqa: E402

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "ocr" / "mnist"
SETS = ("digits400", "digits1797", "mnist16", "mnist28")
#: The image defaults before issue 13, as explicit settings.
BEFORE = dict(
    teacher="timm:resnet18",
    teacher_input_size=[32, 32],
    epochs=20,
    batch_size=128,
    early_stopping=20,  # no early stopping within 20 epochs (None would mean "not given")
)
NAMES = [f"{w} digit" for w in "zero one two three four five six seven eight nine".split()]


def _folder(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    from PIL import Image

    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = path / NAMES[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"scan {i:05d}.png")
    return path


def _idx(name: str) -> np.ndarray:
    with gzip.open(MNIST / name) as fh:
        raw = fh.read()
    if "images" in name:
        return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
    return np.frombuffer(raw, np.uint8, offset=8)


def build(name: str, root: Path, quick: bool) -> Path:
    """Write set ``name`` under ``root``; returns the path to give as ``data``."""
    from PIL import Image

    if name.startswith("digits"):
        from sklearn.datasets import load_digits

        digits = load_digits()
        eight = (digits.images * 255 / 16).clip(0, 255).astype(np.uint8)
        sixteen = np.stack(
            [np.asarray(Image.fromarray(a).resize((16, 16), Image.BILINEAR)) for a in eight]
        )
        n = 400 if name == "digits400" else len(sixteen)
        n = min(n, 120) if quick else n
        rows = np.random.default_rng(0).permutation(len(sixteen))[:n]
        return _folder(root / name, sixteen[rows], digits.target[rows])
    x, y = _idx("train-images-idx3-ubyte.gz"), _idx("train-labels-idx1-ubyte.gz")
    order = np.random.default_rng(1).permutation(len(x))
    if name == "mnist16":
        rows = order[: 300 if quick else 7291]
        small = np.stack(
            [np.asarray(Image.fromarray(a[4:24, 4:24]).resize((16, 16), Image.LANCZOS))
             for a in x[rows]]
        )  # fmt: skip
        return _folder(root / name, small, y[rows])
    rows = order[7291 : 7291 + (300 if quick else 10000)]
    np.savez(root / "mnist28.npz", x=x[rows], y=y[rows])
    return root / "mnist28.npz"


def run_one(data: Path, out: Path, settings: dict) -> tuple[dict, float]:
    started = time.perf_counter()
    report = crosskd.distill_images(
        data, out, progress=False, echo=lambda s: None, latency_repeats=5, **settings
    )
    return report, time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sets, for the tests")
    parser.add_argument(
        "--before",
        default="",
        help="comma-separated sets also run with the pre-issue-13 defaults (slow on large sets)",
    )
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated set names")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    results = Results("defaults_images", argv, quick=args.quick)
    import torch

    torch.set_num_threads(1)
    names = [s for s in args.sets.split(",") if s]
    unknown = sorted(set(names) - set(SETS))
    if unknown:
        parser.error(f"unknown sets {unknown}; known: {', '.join(SETS)}")
    before = [s for s in args.before.split(",") if s]
    unknown = sorted(set(before) - set(names))
    if unknown:
        parser.error(f"--before names sets that do not run: {unknown}")
    variants = {"after": {}, "before": BEFORE}
    rows, lines, details = [], [], {}
    root = Path(tempfile.mkdtemp(prefix="crosskd-defaults-images-"))
    try:
        for name in names:
            data = build(name, root, args.quick)
            for variant, settings in variants.items():
                if variant == "before" and name not in before:
                    continue
                report, seconds = run_one(data, root / f"{name}-{variant}", dict(settings))
                teacher, baseline, student = (report[r] for r in ("teacher", "baseline", "student"))
                accuracy = {
                    r: report[r]["metrics"]["accuracy"] for r in ("teacher", "baseline", "student")
                }
                choice = teacher.get("teacher_choice") or {}
                label = teacher["model"] + (
                    f" {choice['model_kwargs'].get('channels')}"
                    if choice.get("model_kwargs")
                    else ""
                )
                details[f"{name} {variant}"] = {
                    "rows": report["rows"],
                    "teacher_choice": choice,
                    **{
                        r: {
                            "chosen": report[r]["chosen"],
                            "epochs_run": report[r]["epochs_run"],
                            "best_epoch": report[r]["best_epoch"],
                        }
                        for r in ("teacher", "baseline", "student")
                    },
                }
                for role, part, row_role in (
                    ("teacher", teacher, "teacher"),
                    ("alone", baseline, "baseline"),
                    ("distilled", student, "distilled"),
                ):
                    rows.append(
                        {
                            "model": f"{name} {variant}: {role} "
                            + (label if role == "teacher" else str(part["model"])),
                            "role": row_role,
                            "params": part["params"],
                            "bytes": part["bytes"],
                            "metrics": {
                                "accuracy": part["metrics"]["accuracy"],
                                "errors": part["metrics"]["errors"],
                            },
                            "timing": {"epochs_run": part["epochs_run"]},
                            "chosen": variant == "after",
                        }
                    )
                rows[-1]["timing"]["run_wall_seconds"] = seconds
                epochs = "/".join(
                    str(report[r]["epochs_run"]) for r in ("teacher", "baseline", "student")
                )
                line = (
                    f"| {name} | {report['rows']['train']:,} | {variant} | {label} | {epochs} | "
                    f"{accuracy['teacher']:.4f} | {accuracy['baseline']:.4f} | "
                    f"{accuracy['student']:.4f} | {report['rows']['test']:,} | {seconds:.0f} |"
                )
                lines.append(line)
                print(line, flush=True)
                shutil.rmtree(root / f"{name}-{variant}", ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    payload = results.write(
        rows,
        args.out,
        settings={"sets": names, "before": before, "variants": variants},
        runs=details,
    )
    table = (
        "| set | train images | defaults | teacher | epochs run (teacher/alone/distilled) | "
        "teacher | alone | distilled | test images | run s |\n"
        "|---|---:|---|---|---|---:|---:|---:|---:|---:|\n" + "\n".join(lines)
    )
    text = (
        "# Image defaults on sets nobody tuned them to\n\n"
        + provenance_line(payload)
        + "\n\nTest accuracy of one seeded run per set (seed 0): the teacher, the student alone "
        "(an 800-800 MLP on labels) and the distilled student. `after`: every default, no flags "
        "(the `chosen` rows); `before`: the pre-issue-13 defaults given as settings (a resnet18 "
        "teacher zero-padded to 32x32, 20 epochs, 128 images a step, no early stopping). The test "
        "images are the run's own seeded hold-out and chose nothing. `run s`: wall time of the "
        "whole `distill_images` run (teacher, alone, distilled, evaluation, plots) on one "
        "thread of a shared 2-core machine.\n\n" + table + "\n"
    )
    if not args.quick:
        (args.out / "defaults_images.md").write_text(text)
    print(text)
    return payload


if __name__ == "__main__":
    main()
