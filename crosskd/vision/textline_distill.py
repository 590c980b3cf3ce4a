"""The text-line pipeline behind ``crosskd distill --task textline``: CRNN teacher, student, report.

Every default of the task is in :data:`TEXTLINE_DEFAULTS`, the one place to change the recipe.
"""

from __future__ import annotations

import copy
import difflib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .._atomic import write_json
from ..exceptions import BundleError, ConfigError, DataError

__all__ = ["TEXTLINE_DEFAULTS", "distill_textlines"]

REPORT_NAME = "report.json"
STUDENT_NAME = "student.safetensors"
#: File name of the teacher trained by :func:`distill_textlines` (reusable as ``teacher_model``).
TEACHER_NAME = "teacher.safetensors"

#: Every default of ``crosskd distill --task textline`` / :func:`distill_textlines`. ``teacher`` and
#: ``student`` are :class:`~crosskd.vision.CRNN` arguments (``num_classes`` and ``in_chans`` come
#: from the data); ``augment`` holds :func:`~crosskd.vision.textline_augment`'s arguments (None: no
#: augmentation).
TEXTLINE_DEFAULTS: dict[str, Any] = {
    # images: grey, resized to `height` keeping the aspect ratio, padded on the right to `width`
    # (None: the widest training line at that height, rounded up to a multiple of 4)
    "height": 32,
    "width": None,
    "channels": 1,
    # models
    # (benchmarks/textline_ctc.py: a timm resnet18 up to layer1, 32 frames for a 128-pixel line,
    # and a student at about 1/30 of its parameters with the same 32 frames)
    "teacher": {"backbone": "resnet18", "max_reduction": 4, "hidden": 256, "head": "conv"},
    "student": {"backbone": "tiny", "width": 7, "hidden": 40, "head": "conv"},
    # training (teacher and student alike; teacher_epochs None: the same as epochs)
    "epochs": 30,
    "teacher_epochs": None,
    "batch_size": 32,
    "lr": 3e-3,
    "warmup_epochs": 1.0,
    "early_stopping": None,
    "augment": {
        "degrees": 3.0,
        "scale": [0.95, 1.05],
        "translate": 0.03,
        "blur": [0.1, 1.0],
        "blur_p": 0.3,
        "noise": [0.0, 0.05],
        "noise_p": 0.3,
    },
    # distillation (CTCDistiller)
    "temperature": 1.0,
    "alpha": 0.5,
    "mode": "both",
    "resample": "linear",
    # splits: shares (or counts) of the lines; test_size is used only without a test set
    "test_size": 0.1,
    "validation_size": 0.1,
    # runtime
    "device": "auto",
    "precision": "32",
    "seed": 0,
    "latency_repeats": 20,
}

_MODEL_DICTS = ("teacher", "student", "augment")


def _settings(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """:data:`TEXTLINE_DEFAULTS` with ``overrides`` on top (model and augment dicts merged)."""
    settings = copy.deepcopy(TEXTLINE_DEFAULTS)
    for key, value in overrides.items():
        if key not in settings:
            close = difflib.get_close_matches(key, list(settings), n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"Unknown text-line setting {key!r}.{hint} Known: {', '.join(settings)}."
            )
        if key in _MODEL_DICTS and value is not None:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{key} must be a dict of settings, got {value!r}.")
            base = settings[key] if isinstance(settings[key], dict) else {}
            value = {**base, **value}
        settings[key] = value
    for key in ("height", "channels", "epochs", "batch_size", "latency_repeats"):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be a positive integer, got {value!r}.")
    for key in ("width", "teacher_epochs", "early_stopping"):
        value = settings[key]
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ConfigError(f"{key} must be a positive integer or None, got {value!r}.")
    if settings["channels"] not in (1, 3):
        raise ConfigError(f"channels must be 1 (grey) or 3 (RGB), got {settings['channels']!r}.")
    for key in ("test_size", "validation_size"):
        value = settings[key]
        fraction = isinstance(value, float) and 0.0 < value < 1.0
        count = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        if not (fraction or count):
            raise ConfigError(
                f"{key} must be a fraction in (0, 1) or a count >= 1 of lines, got {value!r}."
            )
    return settings


def _count(value: int | float, n: int) -> int:
    """Lines for a share or count ``value`` of ``n``; at least one."""
    return max(1, int(round(value * n)) if isinstance(value, float) else int(value))


def _check_labels(labels: Sequence[str], files: Sequence[Path], source: Any) -> None:
    empty = [str(f) for f, label in zip(files, labels, strict=True) if not label]
    if empty:
        raise DataError(
            f"{len(empty)} text line(s) of {str(source)!r} have an empty label, e.g. {empty[0]!r}. "
            "Every line needs its text: name the image <text>.png, or give the text after the tab "
            "in the TSV."
        )


def _save(fitted: Any, path: Path, geometry: dict[str, Any]) -> Path:
    """``fitted.save(path)`` with the input geometry in the bundle's metadata."""
    return fitted.save(path, metadata={"input": geometry})


def _load_teacher(path: str | os.PathLike[str], device: str) -> tuple[Any, dict[str, Any]]:
    """A fitted CTCDistiller holding the teacher CRNN of ``path``, and its input geometry."""
    from ..io import read_bundle_info
    from .crnn import CRNN
    from .ctc_trainer import CTCDistiller

    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"The teacher checkpoint {str(p)!r} does not exist. Pass the teacher.safetensors written "
            "by an earlier text-line run, or leave the teacher out to train one."
        )
    info = read_bundle_info(p)  # BundleError for a file that is not a crosskd bundle
    metadata = info.get("metadata") or {}
    if info.get("student_class") != "CRNN" or "alphabet" not in metadata:
        raise BundleError(
            f"{str(p)!r} is not a text-line teacher (it holds a {info.get('student_class')} "
            f"{'without' if 'alphabet' not in metadata else 'with'} an alphabet). Pass the "
            "teacher.safetensors of an earlier crosskd distill --task textline run."
        )
    fitted = CTCDistiller.load(p, device=device)
    if not isinstance(fitted.student_, CRNN):  # pragma: no cover - checked via the header above
        raise BundleError(f"{str(p)!r} does not hold a CRNN.")
    return fitted, dict(metadata.get("input") or {})


def _frames_needed(label: str) -> int:
    """CTC frames a label needs: one per character and one between repeated characters."""
    return len(label) + sum(a == b for a, b in zip(label, label[1:], strict=False))


def _model_name(cfg: Mapping[str, Any]) -> str:
    backbone = cfg.get("backbone", "tiny")
    size = f"tiny w{cfg.get('width', 16)}" if backbone == "tiny" else str(backbone)
    return f"CRNN {size} {cfg.get('head', 'conv')}{cfg.get('hidden', 64)}"


def _latency_ms(model: torch.nn.Module, sample: torch.Tensor, repeats: int) -> float:
    """CPU milliseconds to read one line (batch 1): forward pass plus greedy CTC decoding."""
    from ..losses import greedy_decode
    from ..profiling import time_inference

    cpu_model = copy.deepcopy(model).to("cpu").eval()
    x = sample[:1].cpu()

    def read(batch: torch.Tensor) -> Any:
        return greedy_decode(cpu_model(batch))

    with torch.inference_mode():
        return 1000.0 * time_inference(read, x, repeats=repeats, warmup=3)


def distill_textlines(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    test: str | os.PathLike[str] | None = None,
    teacher_model: str | os.PathLike[str] | None = None,
    progress: bool = True,
    echo: Callable[[str], Any] = print,
    **settings: Any,
) -> dict[str, Any]:
    """Train (or load) a CRNN teacher on text lines, distil it into a small CRNN, write the results.

    Reads the lines (:func:`crosskd.vision.load_textlines`: a folder of ``<label>.png`` images or a
    TSV of ``path<TAB>label`` lines; colour images are converted to grey, every image is resized to
    ``height`` and padded to one width), builds the :class:`~crosskd.vision.Alphabet` from the
    training labels, holds out a seeded validation part (and, without ``test``, a seeded test part;
    :func:`~crosskd.vision.split_textlines`), trains the teacher on labels unless ``teacher_model``
    is given, then distils it into the student with :class:`~crosskd.vision.CTCDistiller`, the
    teacher run online on the same augmented batches. Both models keep the weights of their epoch
    with the lowest validation CER.

    Args:
        data: the training lines (folder or TSV).
        out: output folder (created).
        test: test lines (folder or TSV); None: a seeded ``test_size`` share of ``data``.
        teacher_model: a ``teacher.safetensors`` of an earlier run (its alphabet must cover the
            training labels; the student then uses that alphabet); None trains a teacher.
        progress: print one line per epoch.
        echo: where to print progress lines (``print``; ``lambda s: None`` for silence).
        **settings: overrides of :data:`TEXTLINE_DEFAULTS` (``teacher``, ``student`` and ``augment``
            dicts are merged into the defaults: ``student={"width": 6}`` keeps the rest).

    Returns:
        The report (also written to ``out/report.json``)::

            {"task": "textline", "alphabet": {"chars", "blank"}, "input_shape": [C, H, W],
             "rows": {"train", "validation", "test"}, "split": {...}, "settings": {...},
             "teacher": {"kind": "crnn", "model", "config", "file", "trained", "params", "bytes",
                         "frames", "latency_ms_batch1", "best_epoch",
                         "metrics": {"sequence_accuracy", "cer"}},
             "student": {the same but "kind" and "trained"}}

        Files: ``out/student.safetensors`` and (when one was trained) ``out/teacher.safetensors``,
        both loadable with :meth:`crosskd.vision.CTCDistiller.load` (``crosskd.load("out/")`` for
        the student), and ``out/report.json``.
    """
    from .._device import check_precision
    from ..losses import check_alpha, check_temperature
    from ..profiling import model_size
    from .augment import textline_augment
    from .crnn import CRNN
    from .ctc_trainer import MODES, CTCDistiller
    from .textlines import Alphabet, load_textlines, split_textlines

    given = dict(settings)
    cfg = _settings(given)
    # checked now, not after the teacher's training
    check_temperature(cfg["temperature"])
    check_alpha(cfg["alpha"])
    check_precision(cfg["precision"])
    if cfg["mode"] not in MODES:
        raise ConfigError(f"mode must be one of {MODES}, got {cfg['mode']!r}.")
    if cfg["resample"] not in (None, "linear", "nearest"):
        raise ConfigError(f"resample must be None, 'linear' or 'nearest', got {cfg['resample']!r}.")
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"out {str(out_dir)!r} exists and is not a folder.")

    # -------------------------------------------------------------- teacher checkpoint (early)
    loaded = None
    if teacher_model is not None:
        loaded, geometry = _load_teacher(teacher_model, cfg["device"])
        loaded_net = loaded.student_
        if getattr(loaded_net, "pool", "mean") == "flatten":  # a CRNN tied to its input height
            geometry.setdefault("height", loaded_net.height)
        geometry.setdefault("channels", loaded_net.in_chans)
        for key in ("height", "channels"):
            own = geometry.get(key)
            if own is None:
                continue
            if key in given and given[key] != own:
                raise ConfigError(
                    f"The teacher {str(teacher_model)!r} reads lines of {key} {own}, but {key} "
                    f"{given[key]} was asked for. Leave {key} out (the teacher's is used) or train "
                    "a new teacher."
                )
            cfg[key] = int(own)

    # -------------------------------------------------------------- data and splits
    read = {"height": cfg["height"], "channels": cfg["channels"]}
    x, y, files = load_textlines(data, width=cfg["width"], **read)
    _check_labels(y, files, data)
    width = int(x.shape[-1])
    n = len(y)
    if test is not None:
        x_test, y_test, test_files = load_textlines(test, width=width, **read)
        _check_labels(y_test, test_files, test)
        split = split_textlines(n, val=_count(cfg["validation_size"], n), test=0, seed=cfg["seed"])
        idx_test = None
    else:
        split = split_textlines(
            n,
            val=_count(cfg["validation_size"], n),
            test=_count(cfg["test_size"], n),
            seed=cfg["seed"],
        )
        idx_test = split.test
        x_test, y_test = x[idx_test], [y[i] for i in idx_test]
    x_train, y_train = x[split.train], [y[i] for i in split.train]
    x_val, y_val = x[split.val], [y[i] for i in split.val]
    c, h = int(x.shape[1]), int(x.shape[2])
    geometry = {"height": h, "width": width, "channels": c}

    # -------------------------------------------------------------- alphabet and student
    if loaded is not None:
        alphabet = loaded.alphabet_
        missing = sorted({ch for label in y_train for ch in label} - set(alphabet.chars))
        if missing:
            shown = ", ".join(f"{ch!r}" for ch in missing[:20])
            raise DataError(
                f"The training labels have {len(missing)} character(s) that the teacher "
                f"{str(teacher_model)!r} cannot read ({shown}); its alphabet is "
                f"{''.join(alphabet.chars)!r}. Train a new teacher on this data (leave the teacher "
                "out), or remove the lines with those characters."
            )
    else:
        alphabet = Alphabet.from_labels(y_train)
    unseen = sorted({ch for label in [*y_val, *y_test] for ch in label} - set(alphabet.chars))
    if unseen:
        echo(
            f"note: the validation / test labels have {len(unseen)} character(s) that no training "
            f"label has ({', '.join(repr(ch) for ch in unseen[:20])}); the models cannot read them."
        )
    # the models' outputs, channels and (the CRNN reads lines of one height) height
    shape = {"num_classes": alphabet.num_classes, "in_chans": c, "height": h}
    s_cfg = cfg["student"]
    torch.manual_seed(cfg["seed"])
    student_net = CRNN(**{**s_cfg, **shape})
    s_frames = student_net.output_frames(h, width)
    longest = max(y_train, key=_frames_needed)
    if _frames_needed(longest) > s_frames:
        raise DataError(
            f"The training label {longest!r} needs {_frames_needed(longest)} CTC frames (one per "
            f"character and one between repeats), but the student reads {s_frames} frames from a "
            f"line {width} pixels wide (one frame per {student_net.reduction} pixels). Use a larger "
            "width (None: the widest training line), or a student backbone with less horizontal "
            "reduction."
        )

    out_dir.mkdir(parents=True, exist_ok=True)

    def augment(seed: int) -> Any:
        return None if not cfg["augment"] else textline_augment(seed, **cfg["augment"])

    common = {
        "alphabet": alphabet,
        "batch_size": cfg["batch_size"],
        "lr": cfg["lr"],
        "warmup_epochs": cfg["warmup_epochs"],
        "early_stopping": cfg["early_stopping"],
        "device": cfg["device"],
        "precision": cfg["precision"],
        "seed": cfg["seed"],
        "progress": progress,
    }

    # -------------------------------------------------------------- teacher
    teacher_epochs = cfg["teacher_epochs"] or cfg["epochs"]
    if loaded is None:
        t_cfg = cfg["teacher"]
        torch.manual_seed(cfg["seed"])
        net = CRNN(**{**t_cfg, **shape})
        echo(
            f"training a {_model_name(t_cfg)} teacher on {len(y_train):,} lines "
            f"({teacher_epochs} epoch{'s' if teacher_epochs != 1 else ''}) ..."
        )
        teacher_fit = CTCDistiller(
            None,
            net,
            alpha=0.0,
            epochs=teacher_epochs,
            augment=augment(cfg["seed"]),
            **common,
        ).fit(x_train, y_train, eval_set=(x_val, y_val))
        teacher_file = _save(teacher_fit, out_dir / TEACHER_NAME, geometry)
        trained = True
    else:
        teacher_fit = loaded
        teacher_file, trained = Path(teacher_model), False
        echo(f"teacher: {teacher_file} (alphabet {''.join(alphabet.chars)!r})")
    teacher_net = teacher_fit.student_
    t_cfg = teacher_net.config()

    # -------------------------------------------------------------- student
    t_frames = teacher_net.output_frames(h, width)
    echo(
        f"distilling into a {_model_name(student_net.config())} student (T={cfg['temperature']}, "
        f"alpha={cfg['alpha']}, mode={cfg['mode']}; teacher {t_frames} frames, student "
        f"{s_frames}) ..."
    )
    student_fit = CTCDistiller(
        teacher_net,
        student_net,
        temperature=cfg["temperature"],
        alpha=cfg["alpha"],
        mode=cfg["mode"],
        resample=cfg["resample"] if t_frames != s_frames else None,
        epochs=cfg["epochs"],
        augment=augment(cfg["seed"] + 1),
        **common,
    ).fit(x_train, y_train, eval_set=(x_val, y_val))
    student_file = _save(student_fit, out_dir / STUDENT_NAME, geometry)

    # -------------------------------------------------------------- report
    sample = torch.from_numpy(x_test[:1])

    def part(fit: Any, model_cfg: dict[str, Any], file: Path, frames: int) -> dict[str, Any]:
        size = model_size(fit.student_)
        return {
            "model": _model_name(model_cfg),
            "config": model_cfg,
            "file": str(file),
            "params": size.params,
            "bytes": size.bytes,
            "frames": frames,
            "latency_ms_batch1": _latency_ms(fit.student_, sample, cfg["latency_repeats"]),
            "best_epoch": fit.best_epoch_,
            "metrics": fit.evaluate(x_test, y_test),
        }

    report = {
        "task": "textline",
        "alphabet": alphabet.to_dict(),
        "characters_not_in_alphabet": unseen,
        "input_shape": [c, h, width],
        "device": str(student_fit.device_),
        "rows": {"train": len(y_train), "validation": len(y_val), "test": len(y_test)},
        "split": {
            **split.report(),
            "test_source": "split of data" if idx_test is not None else str(test),
        },
        "settings": {
            **cfg,
            "width": width,
            "teacher": cfg["teacher"] if trained else None,
            "teacher_epochs": teacher_epochs if trained else None,
            "data": str(data),
            "test": None if test is None else str(test),
            "teacher_model": None if teacher_model is None else str(teacher_model),
        },
        "teacher": {
            "kind": "crnn",
            **part(teacher_fit, t_cfg, teacher_file, t_frames),
            "trained": trained,
        },
        "student": part(student_fit, student_net.config(), student_file, s_frames),
    }
    write_json(out_dir / REPORT_NAME, report)
    echo("")
    echo(f"{'model':<10}{'params':>12}{'seq. acc.':>11}{'CER':>9}{'ms/line (cpu, batch 1)':>25}")
    for role in ("teacher", "student"):
        r = report[role]
        echo(
            f"{role:<10}{r['params']:>12,}{r['metrics']['sequence_accuracy']:>11.4f}"
            f"{r['metrics']['cer']:>9.4f}{r['latency_ms_batch1']:>25.3f}"
        )
    echo(
        f"\nwrote {out_dir / REPORT_NAME}, {student_file}"
        + (f", {teacher_file}" if trained else "")
    )
    return report
