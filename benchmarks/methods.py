"""KD methods beyond Hinton's on our three domains: which one should a user pick?

One benchmark, one domain per run (``--domain``), each written to its own results file:

- ``fraud`` (``methods.json``): the Fraud Detection Handbook's transactions and prequential folds
  (``crosskd.datasets.fraud``), a LightGBM teacher per fold, a 15-64-32-2 ``TabularStudent`` (3,170
  parameters) distilled with each method for the same fixed, CPU-sized budget (``--epochs``,
  cosine schedule, 512 rows a step), ``alpha=0.9`` and the delay week as an unlabelled transfer
  set. Methods: ``hinton``, ``ranking`` (pairwise order of the teacher's scores, weighted toward its
  top scores), ``dist`` (Pearson correlations; with two classes only its intra-class term carries
  information). DKD and logit standardisation reduce to Hinton's loss or to no gradient with two
  classes (``docs/methods.md``), so they are not run on this binary task.
- ``mnist`` (``methods-mnist.json``): MNIST characters; a LeNet-style CNN teacher (the one of
  ``benchmarks/mnist_hinton.py``, 2-pixel jitter) trained once on 55,000 training images, its
  logits cached; two students, the 784-800-800-10 MLP of Hinton et al. (``--mnist-epochs``) and a
  4,370-parameter ``SmallCNN(width=8)`` (``--cnn-epochs``), trained without jitter (AdamW, cosine,
  batch 128) with ``alpha=0.9``: ``hinton``, ``dkd``, ``dist``, ``hinton+ls`` (logit
  standardisation; ``dkd+ls`` and ``dist+ls`` with ``--mnist-methods``) and, for the CNN,
  ``hinton+hint`` (Hinton's term plus a FitNets feature hint, the teacher run online); the same
  student alone (no teacher) is the control. Validation: 5,000 held-out training images (errors),
  test: the 10,000 test images (errors).
- ``textlines`` (``methods-textlines.json``): CTC text lines, the captcha lines and lines of MNIST
  digits (``crosskd.datasets.digit_lines``); the default CRNN teacher (timm resnet18 backbone)
  trained once per set with labels, then the smallest student of ``benchmarks/textline_ctc.py``
  (tiny CRNN, width 4, head 20) distilled with the default KD mode (``both``: frame term + the
  teacher's decoded lines) and the frame term ``frame`` (frame-wise KL) or ``bag`` (the
  blank-masked, time-averaged KL), ``alpha=0.5``, for the same fixed budget
  (``--textline-epochs``, cosine, no augmentation); ``mutual``: deep mutual learning, the
  student and a peer (the same CRNN, other initial weights) each distilled from the teacher
  (``frame``) and from each other, the one with the lower validation CER kept (twice the training
  compute); the student alone is the control. Validation:
  a tenth of the training lines (CER); test: held-out lines (sequence accuracy and CER).

Every method gets the same tuning budget: its temperature is chosen among the domain's
temperatures on the validation data (one seed), then it trains ``--seeds`` seeds (the validation
seed among them) on the test data. Reported: the test metric, mean and std over (fold, seed), and
whether the difference to Hinton's loss (text lines: to ``frame``) exceeds the seed noise (the std
of the paired per-seed differences). ``chosen`` marks the method with the best validation score of
its group: what ``method="auto"`` would pick with the same budget.

    OMP_NUM_THREADS=1 python benchmarks/methods.py [--domain fraud] [--folds 2] [--seeds 3] [--quick]
    OMP_NUM_THREADS=1 python benchmarks/methods.py --domain mnist
    OMP_NUM_THREADS=1 python benchmarks/methods.py --domain textlines
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS_DIR, Results, mean_std, provenance_line  # noqa: E402

from crosskd import Distiller, LightGBMTeacher, TabularStudent, fit_lightgbm  # noqa: E402
from crosskd.datasets.fraud import HANDBOOK_FEATURES, handbook_folds, load_handbook  # noqa: E402
from crosskd.metrics import average_precision  # noqa: E402

METHODS = ("hinton", "ranking", "dist")


def _fit(teacher, fold, method: str, temperature: float, seed: int, epochs: int) -> float:
    train, delay, test = fold
    fitted = Distiller(
        teacher,
        TabularStudent(hidden=(64, 32)),
        temperature=temperature,
        alpha=0.9,
        method=method,
        epochs=epochs,
        batch_size=512,
        schedule="cosine",
        early_stopping=None,
        seed=seed,
        progress=False,
        device="cpu",
        threads=1,
    ).fit(train[HANDBOOK_FEATURES], train["TX_FRAUD"], transfer=delay[HANDBOOK_FEATURES])
    return average_precision(test["TX_FRAUD"], fitted.predict_proba(test[HANDBOOK_FEATURES])[:, 1])


def fraud(args: argparse.Namespace, results: Results) -> dict:
    """The fraud column (``methods.json``): see the module docstring."""
    if args.quick:
        args.folds, args.seeds, args.epochs, args.temperatures = 1, 1, 2, [1.0, 2.0]
    torch.set_num_threads(1)
    started = time.perf_counter()
    data = load_handbook("transformed", columns=[*HANDBOOK_FEATURES, "TX_DATETIME", "CUSTOMER_ID",
                                                  "TX_FRAUD"])  # fmt: skip
    folds = {w: handbook_folds(data, w, n_folds=args.folds) for w in ("validation", "test")}
    teachers = {}
    for which, fold_list in folds.items():
        for i, (train, _, _) in enumerate(fold_list):
            model = fit_lightgbm(train[HANDBOOK_FEATURES], train["TX_FRAUD"], params={"n_jobs": 1})
            teachers[(which, i)] = LightGBMTeacher(model)
    teacher_ap = [
        average_precision(test["TX_FRAUD"], teachers[("test", i)].predict_proba(
            test[HANDBOOK_FEATURES])[:, 1])
        for i, (_, _, test) in enumerate(folds["test"])
    ]  # fmt: skip
    print(f"teacher test AP {np.mean(teacher_ap):.4f} ({time.perf_counter() - started:.0f} s)")
    chosen_t, val_scores = {}, {}
    for method in METHODS:
        val_scores[method] = {}
        for t in args.temperatures:
            aps = [
                _fit(teachers[("validation", i)], fold, method, t, 0, args.epochs)
                for i, fold in enumerate(folds["validation"])
            ]
            val_scores[method][t] = float(np.mean(aps))
            print(f"{method} T={t:g}: validation AP {val_scores[method][t]:.4f}", flush=True)
        chosen_t[method] = max(val_scores[method], key=val_scores[method].get)
    test_scores: dict[str, list[float]] = {}
    for method in METHODS:
        test_scores[method] = [
            _fit(teachers[("test", i)], fold, method, chosen_t[method], seed, args.epochs)
            for i, fold in enumerate(folds["test"])
            for seed in range(args.seeds)
        ]
        print(f"{method}: test AP {np.mean(test_scores[method]):.4f}", flush=True)
    best = max(METHODS, key=lambda m: val_scores[m][chosen_t[m]])
    base = np.asarray(test_scores["hinton"])
    rows = [
        {
            "model": "LightGBM teacher (per fold)",
            "role": "teacher",
            "metrics": {"average_precision": mean_std(teacher_ap)},
            "chosen": True,
        }
    ]
    lines = []
    for method in METHODS:
        scores = np.asarray(test_scores[method])
        diff = scores - base
        noise = float(np.std(diff)) if method != "hinton" else 0.0
        beyond = method != "hinton" and abs(float(diff.mean())) > noise
        rows.append(
            {
                "model": f"15-64-32-2 student, {method}, T={chosen_t[method]:g}",
                "role": "distilled",
                "params": 3170,
                "metrics": {"average_precision": mean_std(scores.tolist())},
                "validation": {"average_precision": val_scores[method][chosen_t[method]]},
                "validation_by_temperature": {str(k): v for k, v in val_scores[method].items()},
                "difference_to_hinton": mean_std(diff.tolist()) if method != "hinton" else None,
                "beyond_seed_noise": beyond,
                "chosen": method == best,
            }
        )
        lines.append(
            f"| {method} | {chosen_t[method]:g} | {val_scores[method][chosen_t[method]]:.4f} | "
            f"{scores.mean():.4f} ± {scores.std():.4f} | "
            + ("—" if method == "hinton" else f"{diff.mean():+.4f} ± {noise:.4f}")
            + f" | {'yes' if beyond else 'no'} | {'yes' if method == best else ''} |"
        )
    payload = results.write(
        rows,
        args.out,
        name="methods-quick" if args.quick else "methods",
        settings={
            "folds": args.folds,
            "seeds": args.seeds,
            "epochs": args.epochs,
            "temperatures": args.temperatures,
            "alpha": 0.9,
        },
    )
    text = (
        "# KD methods on fraud data\n\n" + provenance_line(payload) + "\n\n"
        f"Teacher (LightGBM, per fold) test AP {np.mean(teacher_ap):.4f}; {args.folds} test "
        f"folds x {args.seeds} seeds per method; T chosen per method on {args.folds} validation "
        f"folds; {args.epochs} epochs, alpha 0.9, delay week as transfer set.\n\n"
        "| method | T (validation) | validation AP | test AP | minus Hinton (± seed noise) | "
        "beyond noise | chosen on validation |\n|---|---:|---:|---:|---:|---|---|\n"
        + "\n".join(lines)
        + "\n"
    )
    if not args.quick:
        (args.out / "methods.md").write_text(text)
    print(text)
    return payload


# ------------------------------------------------------------------------------ shared


DOMAINS = ("fraud", "mnist", "textlines")
DEFAULT_SETS = ["captcha", "mnist"]
DEFAULT_TEMPERATURES = {"fraud": (1.0, 2.0, 4.0), "mnist": (1.0, 4.0),
                        "textlines": (1.0, 2.0)}  # fmt: skip


def compare(
    test: dict[str, list[float]], reference: str, higher: bool
) -> dict[str, dict[str, Any]]:
    """Each method's test scores against the reference method's, paired by (fold/set, seed).

    Returns per method: ``mean_std`` of its scores, and (not for the reference) the mean paired
    difference ``method - reference``, the seed noise (std of the paired differences) and whether
    the mean difference exceeds it, with ``better`` saying in which direction (``higher``: larger
    scores are better).
    """
    base = np.asarray(test[reference], dtype=float)
    out = {}
    for method, values in test.items():
        scores = np.asarray(values, dtype=float)
        row: dict[str, Any] = {"scores": mean_std(scores.tolist())}
        if method != reference:
            diff = scores - base
            noise = float(np.std(diff))
            row.update(
                difference=mean_std(diff.tolist()),
                noise=noise,
                beyond_seed_noise=bool(abs(float(diff.mean())) > noise),
                better=bool((diff.mean() > 0) == higher) if diff.mean() != 0 else False,
            )
        out[method] = row
    return out


def choose_temperature(val: dict[float, float], higher: bool) -> float:
    """The temperature with the best validation score (ties: the lower temperature)."""
    return sorted(val, key=lambda t: (-val[t] if higher else val[t], t))[0]


def _pm(values: list[float], digits: int) -> str:
    return f"{values[0]:.{digits}f} ± {values[1]:.{digits}f}"


def method_table(
    group: str,
    methods: dict[str, dict[str, Any]],
    summary: dict[str, dict[str, Any]],
    reference: str,
    val_name: str,
    test_name: str,
    digits: int,
    extra: tuple[str, str] | None = None,
) -> list[str]:
    """Markdown lines of one group: method, T, validation score, test score, difference to the
    reference, and ``extra = (key, header)``: one more test metric of ``extra_metrics``."""
    lines = [
        f"| {group}: method | T (validation) | {val_name} | {test_name} | minus {reference} "
        "(± seed noise) | beyond noise | chosen on validation |"
        + (f" {extra[1]} |" if extra else ""),
        "|---|---:|---:|---:|---:|---|---|" + ("---:|" if extra else ""),
    ]
    for name, m in methods.items():
        s = summary[name]
        diff = (
            "—"
            if name == reference
            else f"{s['difference'][0]:+.{digits}f} ± {s['noise']:.{digits}f}"
        )
        beyond = "" if name == reference else ("yes" if s["beyond_seed_noise"] else "no")
        lines.append(
            f"| {name} | {m['temperature']:g} | {m['validation'][m['temperature']]:.{digits}f} | "
            f"{_pm(s['scores'], digits)} | {diff} | {beyond} | {'yes' if m['chosen'] else ''} |"
            + (f" {_pm(m['extra_metrics'][extra[0]], digits)} |" if extra else "")
        )
    return lines


def method_rows(
    domain: str,
    data: str,
    student: str,
    params: int,
    methods: dict[str, dict[str, Any]],
    summary: dict[str, dict[str, Any]],
    metric: str,
    reference: str,
) -> list[dict[str, Any]]:
    """The JSON rows of one group (one per method)."""
    rows = []
    for name, m in methods.items():
        s = summary[name]
        rows.append(
            {
                "model": f"{data}: {student}, {name}, T={m['temperature']:g}",
                "role": "distilled",
                "domain": domain,
                "data": data,
                "student": student,
                "method": name,
                "temperature": m["temperature"],
                "params": params,
                "metrics": {metric: s["scores"], **m.get("extra_metrics", {})},
                "per_seed": m["test"],
                "validation": {metric: m["validation"][m["temperature"]]},
                "validation_by_temperature": {str(k): v for k, v in m["validation"].items()},
                "reference": reference,
                "difference_to_reference": s.get("difference"),
                "seed_noise": s.get("noise"),
                "beyond_seed_noise": s.get("beyond_seed_noise"),
                "chosen": m["chosen"],
            }
        )
    return rows


def run_methods(
    names: list[str],
    temperatures: list[float],
    seeds: int,
    fit: Any,
    higher: bool,
    log: Any,
) -> dict[str, dict[str, Any]]:
    """For each method: T chosen on validation (seed 0), then ``seeds`` seeds at that T (the
    seed-0 fit reused). ``fit(method, T, seed)`` returns ``(validation score, test score, extra
    test metrics)``. The method with the best validation score (at its T) is ``chosen``."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        val, first = {}, {}
        for t in temperatures:
            val[t], test0, extra0 = fit(name, t, 0)
            first[t] = (test0, extra0)
            log(f"  {name} T={t:g}: validation {val[t]:.4f}")
        t = choose_temperature(val, higher)
        test, extras = [first[t][0]], [first[t][1]]
        for seed in range(1, seeds):
            _, score, extra = fit(name, t, seed)
            test.append(score)
            extras.append(extra)
        log(f"  {name}: T={t:g}, test {np.mean(test):.4f} (seeds {test})")
        out[name] = {
            "temperature": t,
            "validation": val,
            "test": test,
            "extra_metrics": {
                k: mean_std([e[k] for e in extras]) for k in (extras[0] if extras else {})
            },
            "chosen": False,
        }
    best = sorted(
        out, key=lambda n: -out[n]["validation"][out[n]["temperature"]] if higher
        else out[n]["validation"][out[n]["temperature"]]
    )[0]  # fmt: skip
    out[best]["chosen"] = True
    return out


def write_markdown(
    args: argparse.Namespace,
    payload: dict,
    file: str,
    title: str,
    intro: str,
    md: list[str],
    started: float,
) -> dict:
    """Write (not for ``--quick``) and print one domain's markdown; returns ``payload``."""
    text = "\n".join(
        [
            f"# {title}",
            "",
            provenance_line(payload),
            "",
            intro,
            "",
            *md,
            f"Wall time {(time.perf_counter() - started) / 60:.1f} min.",
            "",
        ]
    )
    if not args.quick:
        (args.out / file).write_text(text)
    print(text)
    return payload


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ mnist

#: name: (KD method, logit standardisation, feature hint). ``hinton+hint``: Hinton's term plus a
#: FitNets hint from the CNN student's second stage (16 x 14 x 14) to the teacher's second conv
#: layer (64 x 8 x 8), weight 1, the teacher run online; CNN students only.
MNIST_METHODS = {
    "hinton": ("hinton", False, False),
    "dkd": ("dkd", False, False),
    "dist": ("dist", False, False),
    "hinton+ls": ("hinton", True, False),
    "dkd+ls": ("dkd", True, False),
    "dist+ls": ("dist", True, False),
    "hinton+hint": ("hinton", False, True),
}
#: the hinted layers (student's, teacher's) of ``hinton+hint``
MNIST_HINT = ("features.12", "features.4")


def mnist(args: argparse.Namespace, results: Results) -> dict:
    """The MNIST column (``methods-mnist.json``): see the module docstring."""
    from mnist_hinton import LeNet

    from crosskd.hints import FeatureHint
    from crosskd.profiling import model_size
    from crosskd.teachers import ModuleTeacher, PrecomputedTeacher
    from crosskd.vision import ImageMLP, RandomShift, SmallCNN, load_mnist

    started = time.perf_counter()
    x, y = load_mnist("train")
    x_test, y_test = load_mnist("test")
    n_val, t_epochs = 5000, args.teacher_epochs or 12
    epochs, cnn_epochs = args.mnist_epochs, args.cnn_epochs
    if args.quick:
        x, y, x_test, y_test = x[:2000], y[:2000], x_test[:500], y_test[:500]
        n_val, t_epochs, epochs, cnn_epochs, args.seeds = 500, 1, 1, 1, 2
        args.temperatures = args.temperatures[:2]
    order = np.random.default_rng(0).permutation(len(y))
    x_val, y_val = x[order[:n_val]], y[order[:n_val]]
    x_fit, y_fit = x[order[n_val:]], y[order[n_val:]]

    def errors(d: Distiller, xs: np.ndarray, ys: np.ndarray) -> int:
        return int((d.predict_logits(xs).argmax(1).numpy() != ys).sum())

    def train(
        teacher: Any, net: torch.nn.Module, *, epochs: int, seed: int, **kw: Any
    ) -> Distiller:
        return Distiller(
            teacher, net, epochs=epochs, batch_size=128, lr=1e-3, weight_decay=0.0,
            device="cpu", early_stopping=None, seed=seed, progress=False, threads=1,
            chunk_size=2048, **kw,
        ).fit(x_fit, y_fit)  # fmt: skip

    log(f"teacher: LeNet-style CNN, jitter 2px, {t_epochs} epochs on {len(y_fit):,} images ...")
    torch.manual_seed(0)
    t_fit = train(
        None,
        LeNet((1, 28, 28), width=32, hidden=256, padding=0, dropout=0.3),
        epochs=t_epochs,
        seed=0,
        alpha=0.0,
        augment=RandomShift(2, seed=0),
    )
    teacher = PrecomputedTeacher(t_fit.predict_logits(x_fit), rows=x_fit, classes=range(10))
    online = ModuleTeacher(t_fit.student_, classes=range(10), batch_size=2048)  # for hints
    t_val, t_test = errors(t_fit, x_val, y_val), errors(t_fit, x_test, y_test)
    log(f"teacher: validation errors {t_val}, test errors {t_test}")
    rows: list[dict[str, Any]] = [
        {
            "model": f"teacher: LeNet-style CNN, jitter 2px, {t_epochs} epochs",
            "role": "teacher",
            "domain": "mnist",
            "params": model_size(t_fit.student_).params,
            "metrics": {"errors": t_test},
            "validation": {"errors": t_val},
            "chosen": True,
        }
    ]

    def seeded(make: Any) -> Any:
        """``make`` with torch seeded first: initial weights set by the seed (torch seeds its
        generator randomly at start-up)."""

        def build(seed: int) -> torch.nn.Module:
            torch.manual_seed(seed)
            return make()

        return build

    students = {  # name: (builder, epochs, takes feature hints)
        "784-800-800-10 MLP": (
            seeded(lambda: ImageMLP((1, 28, 28), 10, (800, 800))),
            epochs,
            False,
        ),
        "SmallCNN(width=8)": (seeded(lambda: SmallCNN(1, 10, width=8)), cnn_epochs, True),
    }
    names = [n.strip() for n in args.mnist_methods.split(",") if n.strip()]
    unknown = sorted(set(names) - set(MNIST_METHODS))
    if unknown or "hinton" not in names:
        raise SystemExit(f"--mnist-methods: {unknown or 'hinton missing'}; choose from "
                         f"{', '.join(MNIST_METHODS)} (hinton is the reference)")  # fmt: skip
    md = []
    for student, (build, n_epochs, hints) in students.items():
        params = model_size(build(0)).params
        alone = []
        for seed in range(args.seeds):
            d = train(None, build(seed), epochs=n_epochs, seed=seed, alpha=0.0)
            alone.append(errors(d, x_test, y_test))
        log(f"{student} alone: test errors {alone}")
        rows.append(
            {
                "model": f"MNIST: {student}, alone",
                "role": "baseline",
                "domain": "mnist",
                "student": student,
                "params": params,
                "metrics": {"errors": mean_std(alone)},
                "per_seed": alone,
                "chosen": True,
            }
        )

        def fit(
            name: str, t: float, seed: int, build: Any = build, epochs: int = n_epochs
        ) -> tuple[float, float, dict]:
            method, standardize, hint = MNIST_METHODS[name]
            d = train(
                online if hint else teacher, build(seed), epochs=epochs, seed=seed, temperature=t,
                alpha=0.9, method=method, standardize=standardize,
                hint=FeatureHint(*MNIST_HINT) if hint else None,
            )  # fmt: skip
            return errors(d, x_val, y_val), errors(d, x_test, y_test), {}

        log(f"{student}: methods ...")
        own = [n for n in names if hints or not MNIST_METHODS[n][2]]
        methods = run_methods(own, args.temperatures, args.seeds, fit, False, log)
        summary = compare({n: m["test"] for n, m in methods.items()}, "hinton", higher=False)
        rows += method_rows("mnist", "MNIST", student, params, methods, summary, "errors", "hinton")
        md += [
            f"### {student} ({params:,} parameters, {n_epochs} epochs)",
            "",
            f"Alone (no teacher): {_pm(mean_std(alone), 1)} test errors.",
            "",
            *method_table(
                student,
                methods,
                summary,
                "hinton",
                f"validation errors / {n_val:,}",
                f"test errors / {len(y_test):,}",
                1,
            ),  # fmt: skip
            "",
        ]
    payload = results.write(
        rows,
        args.out,
        name="methods-mnist-quick" if args.quick else "methods-mnist",
        settings={
            "domain": "mnist",
            "seeds": args.seeds,
            "teacher_epochs": t_epochs,
            "epochs": {"784-800-800-10 MLP": epochs, "SmallCNN(width=8)": cnn_epochs},
            "methods": names,
            "batch_size": 128,
            "lr": 1e-3,
            "temperatures": args.temperatures,
            "alpha": 0.9,
            "n_val": n_val,
            "teacher_logits": "cached (students train without jitter)",
        },
    )
    return write_markdown(
        args,
        payload,
        "methods-mnist.md",
        "KD methods on MNIST",
        (
            f"Teacher: LeNet-style CNN, 2-pixel jitter, {t_epochs} epochs on {len(y_fit):,} "
            f"images: {t_val} validation errors / {n_val:,}, **{t_test} test errors**. Students: "
            f"the MLP {epochs} epochs, the CNN {cnn_epochs}, AdamW lr 1e-3, cosine, batch 128, alpha 0.9, the teacher's logits "
            f"cached (no jitter); T chosen per method on the validation images (seed 0) from "
            f"{', '.join(f'{t:g}' for t in args.temperatures)}; then {args.seeds} seeds "
            "(mean ± std); the difference to Hinton is paired by seed."
        ),
        md,
        started,
    )


# ------------------------------------------------------------------------------ text lines

#: name: (mode, frame method, mutual learning). ``mutual``: the student and a peer (a copy with
#: other initial weights) each distil from the teacher (``frame``) and from each other; the one
#: with the lower validation CER is kept (twice the training compute of the other methods).
TEXTLINE_METHODS = {
    "frame": ("both", "frame", False),
    "bag": ("both", "bag", False),
    "mutual": ("both", "frame", True),
}


def textline_set(
    name: str,
    args: argparse.Namespace,
    t_epochs: int,
    epochs: int,
    n_train: int,
    n_test: int,
    student_cfg: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[str]]:
    """One line set of the text-line column: its rows and markdown lines."""
    from textline_defaults import write_set

    from crosskd.profiling import model_size
    from crosskd.vision import CRNN, Alphabet, load_textlines
    from crosskd.vision.ctc_trainer import CTCDistiller
    from crosskd.vision.textline_distill import TEACHER_CRNN

    rows: list[dict[str, Any]] = []
    md: list[str] = []
    train_tsv, test_tsv = write_set(name, args.work, n_train, n_test)
    x, y, _ = load_textlines(train_tsv, height=32, channels=1, width=None)
    x_test, y_test, _ = load_textlines(test_tsv, height=32, channels=1, width=int(x.shape[-1]))
    order = np.random.default_rng(0).permutation(len(y))
    n_val = max(2, len(y) // 10)
    val, fit_idx = order[:n_val], order[n_val:]
    x_val, y_val = x[val], [y[i] for i in val]
    x_fit, y_fit = x[fit_idx], [y[i] for i in fit_idx]
    alphabet = Alphabet.from_labels(y_fit)
    shape = {"num_classes": alphabet.num_classes, "in_chans": 1, "height": 32}

    def train(teacher: Any, net: torch.nn.Module, *, epochs: int, seed: int, **kw: Any) -> Any:
        return CTCDistiller(
            teacher, net, alphabet=alphabet, epochs=epochs, augment=None, schedule="cosine",
            device="cpu", threads=1, seed=seed, progress=False, **kw,
        ).fit(x_fit, y_fit, eval_set=(x_val, y_val))  # fmt: skip

    def student(seed: int) -> CRNN:
        torch.manual_seed(seed)
        return CRNN(**student_cfg, **shape)

    log(f"{name}: {len(y_fit)} training / {n_val} validation / {len(y_test)} test lines; "
        f"teacher CRNN resnet18, {t_epochs} epochs ...")  # fmt: skip
    torch.manual_seed(0)
    t_net = CRNN(backbone="resnet18", **TEACHER_CRNN, **shape)
    t_fit = train(None, t_net, epochs=t_epochs, seed=0, alpha=0.0)
    t_test = t_fit.evaluate(x_test, y_test)
    t_val = t_fit.evaluate(x_val, y_val)
    log(f"{name}: teacher test {t_test}")
    teacher = t_fit.student_
    frames = {m.output_frames(32, int(x.shape[-1])) for m in (teacher, student(0))}
    resample = "linear" if len(frames) > 1 else None
    params = model_size(student(0)).params
    rows.append(
        {
            "model": f"{name}: teacher CRNN resnet18, {t_epochs} epochs",
            "role": "teacher",
            "domain": "textlines",
            "data": name,
            "params": model_size(teacher).params,
            "metrics": t_test,
            "validation": t_val,
            "chosen": True,
        }
    )
    alone = [train(None, student(s), epochs=epochs, seed=s, alpha=0.0).evaluate(x_test, y_test)
             for s in range(args.seeds)]  # fmt: skip
    log(f"{name}: student alone {alone}")
    rows.append(
        {
            "model": f"{name}: tiny CRNN w4 h20, alone",
            "role": "baseline",
            "domain": "textlines",
            "data": name,
            "student": "tiny CRNN w4 h20",
            "params": params,
            "metrics": {k: mean_std([a[k] for a in alone]) for k in alone[0]},
            "per_seed": alone,
            "chosen": True,
        }
    )

    def fit(method: str, t: float, seed: int) -> tuple[float, float, dict]:
        mode, frame, mutual = TEXTLINE_METHODS[method]
        d = train(
            teacher, student(seed), epochs=epochs, seed=seed, temperature=t, alpha=0.5,
            mode=mode, method=frame, resample=resample, mutual=mutual,
        )  # fmt: skip
        test = d.evaluate(x_test, y_test)
        return d.evaluate(x_val, y_val)["cer"], test["sequence_accuracy"], {"cer": test["cer"]}

    methods = run_methods(list(TEXTLINE_METHODS), args.temperatures, args.seeds, fit, False,
                          log)  # fmt: skip
    # the temperature and the chosen method read the validation CER (lower is better); the
    # test metric compared is the sequence accuracy (higher is better)
    summary = compare({n: m["test"] for n, m in methods.items()}, "frame", higher=True)
    rows += method_rows("textlines", name, "tiny CRNN w4 h20", params, methods, summary,
                        "sequence_accuracy", "frame")  # fmt: skip
    for row in rows[-len(methods) :]:
        row["validation"] = {"cer": row.pop("validation")["sequence_accuracy"]}
    md += [
        f"### {name} ({len(y_fit)} training lines; student tiny CRNN w4 h20, {params:,} "
        "parameters)",
        "",
        f"Teacher: sequence accuracy {t_test['sequence_accuracy']:.3f}, CER "
        f"{t_test['cer']:.3f}. Student alone: sequence accuracy "
        f"{_pm(mean_std([a['sequence_accuracy'] for a in alone]), 3)}, CER "
        f"{_pm(mean_std([a['cer'] for a in alone]), 3)}.",
        "",
        *method_table(
            name,
            methods,
            summary,
            "frame",
            "validation CER",
            "test sequence accuracy",
            3,
            extra=("cer", "test CER"),
        ),  # fmt: skip
        "",
    ]
    return rows, md


def textlines(args: argparse.Namespace, results: Results) -> dict:
    """The text-line column (``methods-textlines.json``): see the module docstring."""
    started = time.perf_counter()
    t_epochs, epochs = args.teacher_epochs or 30, args.textline_epochs
    n_train, n_test = args.train_lines, args.test_lines
    if args.quick:
        t_epochs, epochs, n_train, n_test, args.seeds = 1, 1, 40, 10, 2
        args.temperatures = args.temperatures[:2]
    student_cfg = {"backbone": "tiny", "width": 4, "hidden": 20, "head": "conv"}
    rows: list[dict[str, Any]] = []
    md = []
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    for name in sets:
        set_rows, set_md = textline_set(name, args, t_epochs, epochs, n_train, n_test, student_cfg)
        rows += set_rows
        md += set_md
    # the default sets write methods-textlines.*, other sets a file named after them
    stem = "methods-textlines" + ("" if sets == DEFAULT_SETS else "-" + "-".join(sets))
    payload = results.write(
        rows,
        args.out,
        name=f"{stem}-quick" if args.quick else stem,
        settings={
            "domain": "textlines",
            "sets": args.sets,
            "train_lines": n_train,
            "test_lines": n_test,
            "seeds": args.seeds,
            "teacher_epochs": t_epochs,
            "epochs": epochs,
            "temperatures": args.temperatures,
            "alpha": 0.5,
            "student": student_cfg,
            "augment": None,
        },
    )
    return write_markdown(
        args,
        payload,
        f"{stem}.md",
        "KD methods on text lines (CTC)",
        (
            f"Teacher: CRNN (timm resnet18 backbone), {t_epochs} epochs on labels; students "
            f"{epochs} epochs, cosine, no augmentation, alpha 0.5, KD mode `both` (the frame term "
            "below + the teacher's decoded lines); validation: a tenth of the training lines "
            f"(CER); T chosen per method on it (seed 0) from "
            f"{', '.join(f'{t:g}' for t in args.temperatures)}; then {args.seeds} seeds (mean ± "
            "std); the difference to `frame` is paired by seed."
        ),
        md,
        started,
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", choices=DOMAINS, default="fraud")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--folds", type=int, default=2, help="fraud: validation and test folds")
    parser.add_argument("--epochs", type=int, default=10, help="fraud: epochs of every student")
    parser.add_argument("--temperatures", type=float, nargs="+", default=None,
                        help="the temperatures each method chooses from (default: per domain, "
                        "fraud 1 2 4, mnist 1 4, textlines 1 2)")  # fmt: skip
    parser.add_argument("--mnist-epochs", type=int, default=10, help="mnist: the MLP student")
    parser.add_argument("--cnn-epochs", type=int, default=5, help="mnist: the CNN student")
    parser.add_argument(
        "--mnist-methods",
        default="hinton,dkd,dist,hinton+ls,hinton+hint",
        help=f"mnist: methods among {','.join(MNIST_METHODS)}",
    )
    parser.add_argument("--teacher-epochs", type=int, default=None,
                        help="epochs of the teacher (mnist: 12, textlines: 30)")  # fmt: skip
    parser.add_argument("--textline-epochs", type=int, default=20)
    parser.add_argument(
        "--sets",
        default=",".join(DEFAULT_SETS),
        help="textlines: the line sets among captcha, mnist, digits8 (benchmarks/"
        "textline_defaults.py); other sets than the default write methods-textlines-<sets>.*",
    )
    parser.add_argument("--train-lines", type=int, default=800, help="textlines (captcha: at "
                        "most 1,040 with the test lines)")  # fmt: skip
    parser.add_argument("--test-lines", type=int, default=240)
    parser.add_argument("--work", type=Path, default=Path("/tmp/crosskd-methods"),
                        help="textlines: folder for the generated lines")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="tiny version for the tests")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.temperatures is None:
        args.temperatures = list(DEFAULT_TEMPERATURES[args.domain])
    results = Results("methods", argv, quick=args.quick)
    torch.set_num_threads(1)
    return {"fraud": fraud, "mnist": mnist, "textlines": textlines}[args.domain](args, results)


if __name__ == "__main__":
    main()
