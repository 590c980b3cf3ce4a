"""The text-line defaults on three real line sets, against recipes chosen on validation with more
compute.

Sets (none of them used to develop the defaults except the 8x8 lines, see below):

- ``captcha``: the 1,040 captcha lines of ``../shared/data/ocr/captcha`` (200x50, 5 characters);
  a seeded draw of ``--train-lines`` lines to train on and ``--test-lines`` others to test on;
- ``mnist``: lines of 3 to 10 MNIST digits (:mod:`crosskd.datasets.digit_lines`), training lines
  from MNIST's training digits, test lines from its test digits;
- ``digits8``: lines of 4 to 8 of scikit-learn's 8x8 digit scans
  (:mod:`crosskd.datasets.small_digit_lines`): small low-resolution crops, 10 pixels high before
  they are scaled to the line height (the kind of data the old defaults failed on). The choices of
  the new defaults (the augmentation search, its length) were looked at on this set's training
  lines only.

Recipes, each the command a user runs (``crosskd distill --task textline --data TRAIN --test TEST``
in a child process, ``--no-baseline`` to save time: the baseline does not change the teacher or the
distilled student):

- ``default``: no other flag: the frozen defaults (``epochs: auto``, ``augment: auto``);
- ``none`` and ``augment``: the augmentation fixed off or on (``--no-augment``; ``augment: true``
  in a config file), the epoch budget auto: each trains its teacher and student for the whole
  budget. Together with ``default`` about 3x the compute of the default alone. ``best`` is, per
  seed, whichever of the two has the lower validation CER of the distilled student (the
  teacher's on a tie): a recipe chosen on validation with the full runs of both;
- ``old`` (``--recipes old``): the defaults before this change (``epochs: 30``, ``augment:
  true``).

Every number is measured on the test lines once; every choice reads validation CERs only.
``report.json`` of each run gives the chosen augmentation, epochs and stop reasons, plateau
restarts. Run (one thread, ``nice``; the lines and run folders go to /tmp)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/textline_defaults.py \\
        [--sets digits8,mnist,captcha] [--recipes default,none,augment] [--seeds 0,1] \\
        [--train-lines 400] [--test-lines 200] [--quick]

Results are rewritten after every run, so a cut-off run leaves a truthful partial table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_results.py
from _results import RESULTS_DIR, Results, provenance_line  # noqa: E402

RECIPES: dict[str, list[str]] = {
    "default": [],
    "none": ["--no-augment"],
    "augment": ["CONFIG:augment: true\n"],
    "old": ["CONFIG:augment: true\nepochs: 30\n"],
}
SETS = ("digits8", "mnist", "captcha")


def write_set(name: str, work: Path, n_train: int, n_test: int) -> tuple[Path, Path]:
    """Training and test TSVs of one line set under ``work/name``."""
    folder = work / name
    if name == "mnist":
        from crosskd.datasets.digit_lines import write_digit_lines
        from crosskd.vision import load_mnist

        x, y = load_mnist("train")
        xs, ys = load_mnist("test")
        train = write_digit_lines(folder / "train", x, y, n_train, seed=0)
        test = write_digit_lines(folder / "test", xs, ys, n_test, seed=1)
    elif name == "digits8":
        from crosskd.datasets.small_digit_lines import write_small_digit_lines

        train = write_small_digit_lines(folder / "train", "train", n_train, seed=0)
        test = write_small_digit_lines(folder / "test", "test", n_test, seed=1)
    elif name == "captcha":
        root = Path(os.environ.get("CROSSKD_DATA", Path(__file__).resolve().parents[2] / "shared"
                                   / "data")) / "ocr" / "captcha" / "images"  # fmt: skip
        files = sorted(root.glob("*.png"))
        order = np.random.default_rng(0).permutation(len(files))
        if n_train + n_test > len(files):
            raise SystemExit(
                f"captcha has {len(files)} lines; ask for fewer than {n_train}+{n_test}"
            )
        folder.mkdir(parents=True, exist_ok=True)
        train, test = folder / "train.tsv", folder / "test.tsv"
        for tsv, rows in ((train, order[:n_train]), (test, order[n_train : n_train + n_test])):
            lines = ["path\tlabel", *(f"{files[i]}\t{files[i].stem}" for i in rows)]
            tsv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        raise SystemExit(f"unknown set {name!r}; choose from {SETS}")
    return train, test


def run_recipe(recipe: str, train: Path, test: Path, out: Path, seed: int, quick: bool) -> dict:
    """One ``crosskd distill`` run; returns what the tables read from its report."""
    import shutil

    if out.exists():
        shutil.rmtree(out)
    command = [sys.executable, "-m", "crosskd", "distill", "--task", "textline", "--data",
               str(train), "--test", str(test), "--out", str(out), "--no-baseline",
               "--seed", str(seed)]  # fmt: skip
    config_text = ""
    for flag in RECIPES[recipe]:
        if flag.startswith("CONFIG:"):
            config_text += flag[len("CONFIG:") :]
        else:
            command.append(flag)
    if quick:
        command += ["--epochs", "2", "--teacher", "tiny", "--student-width", "2", "--head-width",
                    "8"]  # fmt: skip
        config_text = config_text.replace("epochs: 30\n", "")
    if config_text:
        config = out.parent / f"{out.name}.yaml"
        config.write_text(config_text)
        command.insert(4, str(config))
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    report = json.loads((out / "report.json").read_text())
    choices = report.get("textline_choices", {})
    part: dict[str, Any] = {"seconds": seconds, "command": " ".join(command[1:])}
    for role in ("teacher", "student"):
        block = report[role]
        part[role] = {
            "model": block["model"],
            "params": block["params"],
            "test": {k: block["metrics"][k] for k in ("sequence_accuracy", "cer")},
            **{k: choices.get(role, {}).get(k) for k in ("augment", "augment_search", "epochs",
               "epochs_run", "best_epoch", "best_val_cer", "stop_reason", "restarts")},
        }  # fmt: skip
    return part


def _mean_std(values: Sequence[float]) -> list[float]:
    return [float(np.mean(values)), float(np.std(values))]


def best_of(runs: dict[str, dict[int, dict]], seed: int) -> str | None:
    """``none`` or ``augment`` for one seed: the lower student validation CER (the teacher's on a
    tie); None until both ran."""
    options = [r for r in ("none", "augment") if seed in runs.get(r, {})]
    if len(options) < 2:
        return None
    return min(options, key=lambda r: (runs[r][seed]["student"]["best_val_cer"],
                                       runs[r][seed]["teacher"]["best_val_cer"]))  # fmt: skip


def rows_of(runs: dict[str, dict[str, dict[int, dict]]]) -> list[dict[str, Any]]:
    rows = []
    for name, by_recipe in runs.items():
        seeds = sorted({s for r in by_recipe.values() for s in r})
        picked = {s: best_of(by_recipe, s) for s in seeds}
        recipes = {r: by_recipe[r] for r in by_recipe}
        if any(picked.values()):
            recipes["best"] = {s: by_recipe[p][s] for s, p in picked.items() if p}
        for recipe, per_seed in recipes.items():
            for role in ("teacher", "student"):
                parts = [per_seed[s][role] for s in sorted(per_seed)]
                rows.append(
                    {
                        "model": f"{name} {recipe}: {parts[0]['model']}",
                        "role": "teacher" if role == "teacher" else "distilled",
                        "set": name,
                        "recipe": recipe,
                        "params": parts[0]["params"],
                        "seeds": sorted(per_seed),
                        "metrics": {
                            k: _mean_std([p["test"][k] for p in parts])
                            for k in ("sequence_accuracy", "cer")
                        },
                        "val_cer": _mean_std([p["best_val_cer"] for p in parts]),
                        "augment": [p["augment"] for p in parts],
                        "epochs_run": [p["epochs_run"] for p in parts],
                        "stop_reason": [p["stop_reason"] for p in parts],
                        "restarts": [p["restarts"] for p in parts],
                        "seconds": [per_seed[s]["seconds"] for s in sorted(per_seed)],
                        "picked": [picked[s] for s in sorted(per_seed)]
                        if recipe == "best"
                        else None,
                        "chosen": recipe == "default",
                    }
                )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| set | recipe | model | seq. accuracy | CER | val CER | augment | epochs run | stop | "
        "restarts | minutes |\n|---|---|---|---:|---:|---:|---|---|---|---|---:|\n"
    )

    def ms(v: list[float], digits: int) -> str:
        return f"{v[0]:.{digits}f} ± {v[1]:.{digits}f}"

    lines = []
    for r in rows:
        role = "teacher" if r["role"] == "teacher" else "student"
        aug = ", ".join(str(a) for a in r["augment"])
        if r["picked"]:
            aug += f" (picked: {', '.join(str(p) for p in r['picked'])})"
        minutes = sum(r["seconds"]) / 60 / len(r["seconds"])
        lines.append(
            f"| {r['set']} | {r['recipe']} | {role} | {ms(r['metrics']['sequence_accuracy'], 3)} | "
            f"{ms(r['metrics']['cer'], 4)} | {ms(r['val_cer'], 4)} | {aug} | "
            f"{', '.join(str(e) for e in r['epochs_run'])} | "
            f"{', '.join(str(s) for s in r['stop_reason'])} | "
            f"{', '.join(str(s) for s in r['restarts'])} | "
            f"{minutes:.1f} |"
        )
    return head + "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--recipes", default="default,none,augment")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--train-lines", type=int, default=400)
    parser.add_argument("--test-lines", type=int, default=200)
    parser.add_argument("--work", default="/tmp/textline-defaults")
    parser.add_argument("--quick", action="store_true", help="tiny models, 2 epochs (tests)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--name",
        default="textline_defaults",
        help="results file stem (e.g. textline_defaults-old for --recipes old)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.train_lines, args.test_lines = 40, 10
    sets = [s for s in args.sets.split(",") if s]
    recipes = [r for r in args.recipes.split(",") if r]
    unknown = sorted(set(recipes) - set(RECIPES))
    if unknown:
        raise SystemExit(f"unknown recipes {unknown}; choose from {sorted(RECIPES)}")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    results = Results("textline_defaults", argv, quick=args.quick)
    work = Path(args.work)
    runs: dict[str, dict[str, dict[int, dict]]] = {}
    name = f"{args.name}-quick" if args.quick else args.name
    payload: dict[str, Any] = {}
    data = {name: write_set(name, work, args.train_lines, args.test_lines) for name in sets}
    for seed in seeds:  # every set and recipe of one seed before the next seed
        for set_name in sets:
            train, test = data[set_name]
            runs.setdefault(set_name, {})
            for recipe in recipes:
                out = work / f"{set_name}-{recipe}-{seed}"
                part = run_recipe(recipe, train, test, out, seed, args.quick)
                runs[set_name].setdefault(recipe, {})[seed] = part
                rows = rows_of(runs)
                payload = results.write(
                    rows,
                    args.out,
                    name=name,
                    settings={"sets": sets, "recipes": recipes, "seeds": seeds,
                              "train_lines": args.train_lines, "test_lines": args.test_lines},
                    runs=runs,
                    partial=(set_name, seed, recipe) != (sets[-1], seeds[-1], recipes[-1]),
                )  # fmt: skip
                text = (
                    "# The text-line defaults on three real line sets\n\n"
                    + provenance_line(payload)
                    + f"\n\n{args.train_lines} training lines (10 % of them held out for "
                    f"validation), {args.test_lines} test lines per set; seeds {seeds}; mean ± "
                    "std over the seeds; `best` is, per seed, `none` or `augment`, whichever has "
                    "the lower validation CER of the distilled student.\n\n" + table(rows)
                )
                if not args.quick:
                    (args.out / f"{name}.md").write_text(text)
    print(table(rows_of(runs)))
    return payload


if __name__ == "__main__":
    main()
