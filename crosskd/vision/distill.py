"""The image pipeline behind ``crosskd distill --task image``: teacher, student, bundle, report."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._atomic import atomic_path, write_json
from ..exceptions import BundleError, ConfigError, DataError

__all__ = [
    "distill_images",
    "build_image_student",
    "save_teacher_checkpoint",
    "load_teacher_checkpoint",
    "TEACHER_CHECKPOINT_NAME",
]

REPORT_NAME = "report.json"
STUDENT_NAME = "student.safetensors"
#: File name of the teacher trained by :func:`distill_images`.
TEACHER_CHECKPOINT_NAME = "teacher.safetensors"
_META_KEY = "crosskd_teacher"
DEFAULT_TEACHER = "timm:resnet18"


def _timm_name(spec: str, what: str) -> str:
    name = spec[len("timm:") :] if spec.startswith("timm:") else spec
    if not name:
        raise ConfigError(f"{what} must be 'timm:NAME' (e.g. timm:resnet18), got {spec!r}.")
    return name


def build_image_student(
    spec: str, input_shape: Sequence[int], num_classes: int, *, hidden: Sequence[int] = (800, 800)
) -> torch.nn.Module:
    """An image student from a short name.

    Args:
        spec: ``"mlp"`` (:class:`~crosskd.vision.ImageMLP` with ``hidden``), ``"cnn"``
            (:class:`~crosskd.vision.SmallCNN`), or ``"timm:NAME"`` (:class:`~crosskd.vision.TimmStudent`,
            input padded or resized to at least 32x32).
        input_shape: ``(C, H, W)`` of the images.
        num_classes: number of logits.
        hidden: hidden widths of the MLP.
    """
    from .students import ImageMLP, SmallCNN, TimmStudent

    c, h, w = (int(s) for s in input_shape)
    if spec == "mlp":
        return ImageMLP((c, h, w), num_classes, hidden)
    if spec == "cnn":
        return SmallCNN(c, num_classes)
    if spec.startswith("timm:"):
        return TimmStudent(_timm_name(spec, "--student"), num_classes, c, _timm_size(h, w))
    raise ConfigError(f"--student must be 'mlp', 'cnn' or 'timm:NAME', got {spec!r}.")


def _timm_size(h: int, w: int) -> tuple[int, int]:
    # timm CNNs downsample by 32: smaller images are zero-padded to 32 (28x28 MNIST -> 32x32)
    return (max(32, h), max(32, w))


def save_teacher_checkpoint(path: str | os.PathLike[str], student: Any) -> Path:
    """Write a trained :class:`~crosskd.vision.TimmStudent`'s weights as a teacher checkpoint.

    A plain safetensors file of the timm model's ``state_dict`` (loadable by timm users too), with
    the model name, classes and preprocessing in its metadata so that :func:`load_teacher_checkpoint`
    rebuilds the teacher without being told the architecture. Written atomically.
    """
    from safetensors.torch import save_file

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in student.model.state_dict().items()}
    meta = {_META_KEY: json.dumps(student.config())}
    with atomic_path(target) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return target


def load_teacher_checkpoint(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    num_classes: int | None = None,
    in_chans: int = 1,
    input_size: Sequence[int] | None = None,
    **teacher_kwargs: Any,
) -> Any:
    """A :class:`~crosskd.teachers.TimmTeacher` from a checkpoint file.

    A checkpoint written by :func:`save_teacher_checkpoint` describes itself; any other
    (``.safetensors`` or a ``torch.save``'d state dict, read with ``weights_only=True``) needs
    ``name`` and ``num_classes``.
    """
    from ..teachers.timm import TimmTeacher

    p = Path(path)
    cfg: dict[str, Any] | None = None
    if p.suffix == ".safetensors" and p.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt") as fh:
                text = (fh.metadata() or {}).get(_META_KEY)
        except Exception as exc:  # noqa: BLE001
            raise BundleError(f"{str(p)!r} is not a readable safetensors file ({exc}).") from None
        cfg = json.loads(text) if text else None
    if cfg is not None:
        return TimmTeacher(
            cfg["name"],
            cfg["num_classes"],
            in_chans=cfg["in_chans"],
            checkpoint=p,
            input_size=cfg["input_size"],
            mean=cfg["mean"],
            std=cfg["std"],
            resize=cfg["resize"],
            **{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["model_kwargs"].items()},
            **teacher_kwargs,
        )
    if name is None or num_classes is None:
        raise ConfigError(
            f"{str(p)!r} does not say which model it holds. Pass the architecture with "
            "--teacher timm:NAME (the same name, classes and channels it was trained with)."
        )
    return TimmTeacher(
        name,
        num_classes,
        in_chans=in_chans,
        checkpoint=p,
        input_size=input_size,
        **teacher_kwargs,
    )


def _map_labels(
    codes: np.ndarray, own: Sequence[Any], classes: Sequence[Any], what: str
) -> np.ndarray:
    index = {str(c): i for i, c in enumerate(classes)}
    table = []
    for c in own:
        if str(c) not in index:
            raise DataError(
                f"{what} has the class {c!r}, which the training data does not have (classes "
                f"{[str(k) for k in classes][:20]}). Use the same labels in both."
            )
        table.append(index[str(c)])
    return np.asarray(table, dtype=np.int64)[codes]


def _latency_ms(model: torch.nn.Module, sample: torch.Tensor) -> float:
    from ..profiling import time_inference

    model = model.to("cpu").eval()
    x = sample[:1].cpu()
    with torch.inference_mode():
        return 1000.0 * time_inference(model, x, repeats=20, warmup=3)


def distill_images(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    test: str | os.PathLike[str] | None = None,
    teacher: str | None = None,
    teacher_model: str | os.PathLike[str] | None = None,
    student: str = "mlp",
    hidden: Sequence[int] = (800, 800),
    temperature: float = 4.0,
    alpha: float = 0.9,
    epochs: int = 20,
    teacher_epochs: int | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    shift: int = 2,
    image_size: Sequence[int] | None = None,
    teacher_input_size: Sequence[int] | None = None,
    test_size: float = 0.15,
    validation_fraction: float = 0.1,
    device: str = "auto",
    precision: str = "32",
    seed: int = 0,
    progress: bool = True,
    echo: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Distil a timm CNN teacher into a small image student, and write the results to ``out``.

    Reads the images (:func:`crosskd.vision.load_images`: a ``.npz`` with ``x`` and ``y``, IDX
    files or an MNIST folder, or a folder with one subfolder per class), trains a timm teacher on
    the labels when no checkpoint is given (``alpha=0``, shifted inputs), then distils it into the
    student with the teacher run online on the same shifted batches.

    Args:
        data: training images (see above). For an MNIST folder without ``test``, the folder's t10k
            files are the test set.
        out: output folder (created).
        test: test images in the same forms; None: the MNIST t10k split, or a stratified
            ``test_size`` share of ``data``.
        teacher: ``"timm:NAME"`` (or ``"NAME"``): the teacher's architecture; default
            ``timm:resnet18``.
        teacher_model: a teacher checkpoint (``.safetensors`` written by crosskd describes itself;
            another file needs ``teacher``); None trains a teacher first.
        student: ``"mlp"``, ``"cnn"`` or ``"timm:NAME"``.
        hidden: hidden widths of the ``"mlp"`` student.
        temperature, alpha: the distillation loss (alpha weighs the soft term).
        epochs: student epochs; ``teacher_epochs``: teacher epochs (default ``epochs``).
        batch_size, lr: optimiser settings for both.
        shift: random shifts of up to this many pixels, applied to every training batch (0: none;
            the teacher's targets are then computed once).
        image_size: ``(H, W)`` to resize folder images to; None: they must all have one size.
        teacher_input_size: ``(H, W)`` the teacher reads (images are zero-padded or resized to it);
            None: the images' size, raised to at least 32x32 (timm CNNs downsample by 32).
        test_size: share of ``data`` held out as test set when there is no ``test``.
        validation_fraction: share of the training images held out for early stopping and
            best-epoch selection (teacher and student).
        device, precision: where and how to train (``"auto"``, ``"cpu"``, ``"cuda"``;
            ``"32"``, ``"bf16-mixed"``).
        seed: seeds splits, weights, shuffling and augmentation.
        progress: show progress bars.
        echo: where to print progress lines (``print``; ``lambda s: None`` for silence).

    Returns:
        The report (also written to ``out/report.json``)::

            {"task": "image", "classes": [...], "rows": {"train", "validation", "test"},
             "settings": {...},
             "teacher": {"kind": "timm", "model", "file", "trained", "params", "bytes",
                         "latency_ms_batch1", "metrics": {"accuracy", "errors"}},
             "student": {"model", "file", "params", "bytes", "latency_ms_batch1", "best_epoch",
                         "metrics": {"accuracy", "errors"}}}

        Files: ``out/student.safetensors`` (load with :func:`crosskd.load`),
        ``out/teacher.safetensors`` (when a teacher was trained) and ``out/report.json``.
    """
    from sklearn.model_selection import train_test_split

    from ..profiling import model_size
    from ..trainer import Distiller
    from .augment import RandomShift
    from .data import load_images
    from .students import TimmStudent

    if not (0.0 < test_size < 1.0):
        raise ConfigError(f"test_size must be in (0, 1), got {test_size}.")
    if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
        raise ConfigError(f"shift must be an integer >= 0 (pixels), got {shift!r}.")
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"out {str(out_dir)!r} exists and is not a folder.")
    if teacher is not None and not isinstance(teacher, str):
        raise ConfigError(f"teacher must be a string 'timm:NAME', got {type(teacher).__name__}.")

    x, y, classes = load_images(data, split="train", size=image_size)
    data_path = Path(data)
    is_mnist_dir = data_path.is_dir() and any(
        f.name.startswith("t10k-images-idx3") for f in data_path.iterdir()
    )
    if test is not None or is_mnist_dir:
        source = test if test is not None else data
        x_test, y_test, test_classes = load_images(
            source, split="test", size=image_size or tuple(x.shape[-2:]), classes=None
        )
        y_test = _map_labels(y_test, test_classes, classes, f"test {str(source)!r}")
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(
                f"The test images are {x_test.shape[1:]} (C, H, W) but the training images are "
                f"{x.shape[1:]}. Use images of one size and channel count (or image_size=...)."
            )
        x_fit, y_fit = x, y
    else:
        counts = np.bincount(y)
        idx_fit, idx_test = train_test_split(
            np.arange(len(y)),
            test_size=test_size,
            random_state=seed,
            stratify=y if counts.min() >= 2 else None,
        )
        idx_fit, idx_test = np.sort(idx_fit), np.sort(idx_test)
        x_fit, y_fit, x_test, y_test = x[idx_fit], y[idx_fit], x[idx_test], y[idx_test]
    k = len(classes)
    if k < 2:
        raise DataError(f"The images have {k} class; a classifier needs at least 2.")
    counts = np.bincount(y_fit, minlength=k)
    idx_train, idx_val = train_test_split(
        np.arange(len(y_fit)),
        test_size=validation_fraction,
        random_state=seed,
        stratify=y_fit if counts.min() >= 2 else None,
    )
    idx_train, idx_val = np.sort(idx_train), np.sort(idx_val)
    x_train, y_train = x_fit[idx_train], y_fit[idx_train]
    x_val, y_val = x_fit[idx_val], y_fit[idx_val]
    c, h, w = x_train.shape[1:]
    t_size_hw = tuple(teacher_input_size) if teacher_input_size is not None else _timm_size(h, w)
    out_dir.mkdir(parents=True, exist_ok=True)
    augment = RandomShift(shift, seed=seed) if shift > 0 else None
    # the Distiller settings teacher and student training share
    common: dict[str, Any] = {
        "batch_size": batch_size,
        "lr": lr,
        "augment": augment,
        "device": device,
        "precision": precision,
        "early_stopping": None,
        "chunk_size": 1024,
        "seed": seed,
        "progress": progress,
    }

    # -------------------------------------------------------------- teacher
    teacher_spec = teacher or DEFAULT_TEACHER
    t_kwargs = {"device": device, "precision": precision, "batch_size": 512}
    if teacher_model is not None:
        t = load_teacher_checkpoint(
            teacher_model,
            name=_timm_name(teacher_spec, "teacher") if teacher else None,
            num_classes=k,
            in_chans=c,
            input_size=t_size_hw,
            **t_kwargs,
        )
        if t.info.num_classes != k:
            raise DataError(
                f"teacher_model has {t.info.num_classes} classes but the images have {k} "
                f"({[str(v) for v in classes][:20]}). Use a teacher trained on these classes."
            )
        teacher_file, trained = Path(teacher_model), False
    else:
        name = _timm_name(teacher_spec, "teacher")
        mean = [float(v) for v in x_train.mean(axis=(0, 2, 3))]
        std = [max(float(v), 1e-3) for v in x_train.std(axis=(0, 2, 3))]
        torch.manual_seed(seed)
        net = TimmStudent(name, k, c, t_size_hw, mean, std)
        echo(f"training a {name} teacher on {len(y_train):,} images ...")
        trainer = Distiller(None, net, alpha=0.0, epochs=teacher_epochs or epochs, **common).fit(
            x_train, y_train, eval_set=(x_val, y_val)
        )
        teacher_file = save_teacher_checkpoint(out_dir / TEACHER_CHECKPOINT_NAME, trainer.student_)
        t = trainer.student_.as_teacher(**t_kwargs)
        trained = True
    if augment is not None:
        augment.reset()

    # -------------------------------------------------------------- student
    net_s = build_image_student(student, (c, h, w), k, hidden=hidden)
    echo(f"distilling into a {student} student (T={temperature}, alpha={alpha}) ...")
    distiller = Distiller(
        t, net_s, temperature=temperature, alpha=alpha, epochs=epochs, **common
    ).fit(x_train, y_train, eval_set=(x_val, y_val))

    t_pred = t.logits(x_test).argmax(dim=1).numpy()
    s_pred = distiller.predict_logits(x_test).argmax(dim=1).numpy()
    n_test = len(y_test)

    def metrics(pred: np.ndarray) -> dict[str, Any]:
        errors = int((pred != y_test).sum())
        return {"accuracy": 1.0 - errors / n_test, "errors": errors}

    student_path = distiller.save(out_dir / STUDENT_NAME)
    sample = torch.from_numpy(x_test[:1])
    t_size, s_size = model_size(t.model), model_size(distiller.student_)
    report = {
        "task": "image",
        "classes": [v.item() if hasattr(v, "item") else v for v in classes],
        "input_shape": [int(c), int(h), int(w)],
        "rows": {"train": int(len(y_train)), "validation": int(len(y_val)), "test": int(n_test)},
        "settings": {
            "teacher": teacher_spec,
            "student": student,
            "temperature": temperature,
            "alpha": alpha,
            "epochs": epochs,
            "teacher_epochs": (teacher_epochs or epochs) if trained else None,
            "batch_size": batch_size,
            "lr": lr,
            "shift": shift,
            "seed": seed,
            "device": str(device),
            "precision": precision,
        },
        "teacher": {
            "kind": "timm",
            "model": t.name,
            "file": str(teacher_file),
            "trained": trained,
            "params": t_size.params,
            "bytes": t_size.bytes,
            "latency_ms_batch1": _latency_ms(t.module, sample),
            "metrics": metrics(t_pred),
        },
        "student": {
            "model": student,
            "file": str(student_path),
            "params": s_size.params,
            "bytes": s_size.bytes,
            "latency_ms_batch1": _latency_ms(distiller.student_, sample),
            "best_epoch": distiller.best_epoch_,
            "metrics": metrics(s_pred),
        },
    }
    t.module.to(t.device)
    write_json(out_dir / REPORT_NAME, report)
    echo("")
    echo(f"{'model':<10}{'params':>12}{'accuracy':>10}{'errors':>8}{'ms/img (cpu, batch 1)':>24}")
    for role in ("teacher", "student"):
        part = report[role]
        echo(
            f"{role:<10}{part['params']:>12,}{part['metrics']['accuracy']:>10.4f}"
            f"{part['metrics']['errors']:>8}{part['latency_ms_batch1']:>24.3f}"
        )
    echo(
        f"\nwrote {out_dir / REPORT_NAME}, {student_path}"
        + (f", {teacher_file}" if trained else "")
    )
    return report
