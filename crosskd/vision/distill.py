"""Images for ``crosskd distill``: read image data, build a timm teacher and an image student.

Everything else (output folder, split, baseline, report, plots) is the scaffold's:
:func:`crosskd.pipeline.run`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._atomic import atomic_path
from ..exceptions import BundleError, ConfigError, DataError
from ..pipeline import (
    BaseKind,
    Parts,
    RunData,
    TeacherResult,
    check_timm_name,
    classification_metrics,
)

__all__ = [
    "distill_images",
    "ImageKind",
    "build_image_student",
    "save_teacher_checkpoint",
    "load_teacher_checkpoint",
    "TEACHER_CHECKPOINT_NAME",
]

#: File name of the teacher trained by :func:`distill_images`.
TEACHER_CHECKPOINT_NAME = "teacher.safetensors"
_META_KEY = "crosskd_teacher"


def _timm_name(spec: str, what: str) -> str:
    name = spec[len("timm:") :] if spec.startswith("timm:") else spec
    if not name:
        raise ConfigError(f"`{what}` must be 'timm:NAME' (e.g. timm:resnet18), got {spec!r}.")
    return check_timm_name(name, f"`{what}`")


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
        return TimmStudent(_timm_name(spec, "student"), num_classes, c, _timm_size(h, w))
    raise ConfigError(f"`student` for images must be mlp, cnn or timm:NAME, got {spec!r}.")


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
            f"{str(p)!r} does not say which model it holds. Give the architecture as `teacher` "
            "timm:NAME (the same name, classes and channels it was trained with)."
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


class ImageKind(BaseKind):
    """Images: a timm teacher (trained, or a checkpoint) and an MLP, CNN or timm student."""

    name = "image"
    sequence = False

    def check(self) -> None:
        s = self.s
        if s["teacher_model"] is None or "teacher" in self.given:
            _timm_name(s["teacher"], "teacher")
        student = s["student"]
        if student.startswith("timm:"):
            _timm_name(student, "student")
        elif student not in ("mlp", "cnn"):
            raise ConfigError(
                f"`student` for images must be mlp, cnn or timm:NAME, got {student!r}."
            )
        if student != "mlp" and "hidden" in self.given:
            raise ConfigError(
                f"`hidden` sets the widths of an MLP student, but `student` is {student!r}. "
                "Remove `hidden`, or use the mlp student."
            )
        if s["teacher_model"] is not None and not Path(s["teacher_model"]).is_file():
            raise ConfigError(
                f"`teacher_model` {s['teacher_model']!r} does not exist. Give the "
                "teacher.safetensors of an earlier image run, or leave it out to train a teacher."
            )

    def read(self, echo: Callable[[str], Any]) -> RunData:
        from .data import load_images

        s = self.s
        size = s["image_size"]
        x, y, classes = load_images(
            s["data"], split="train", size=size, skip_unreadable=s["skip_unreadable"]
        )
        data_path = Path(s["data"])
        is_mnist_dir = data_path.is_dir() and any(
            f.name.startswith("t10k-images-idx3") for f in data_path.iterdir()
        )
        result = RunData(x=x, y=y, classes=list(classes))
        if len(classes) < 2:
            raise DataError(f"The images have {len(classes)} class; a classifier needs at least 2.")
        if s["test"] is not None or is_mnist_dir:
            source = s["test"] if s["test"] is not None else s["data"]
            x_test, y_test, test_classes = load_images(
                source,
                split="test",
                size=size or tuple(x.shape[-2:]),
                skip_unreadable=s["skip_unreadable"],
            )
            what = "`test`" if s["test"] is not None else "the t10k files of `data`"
            if x_test.shape[1:] != x.shape[1:]:
                raise DataError(
                    f"The images of {what} are {x_test.shape[1:]} (C, H, W) but the training "
                    f"images are {x.shape[1:]}. Use images of one size and channel count, or "
                    "resize them with `image_size`."
                )
            result.x_test = x_test
            result.y_test = _map_labels(y_test, test_classes, classes, what)
            result.test_source = str(Path(source).resolve())
        result.info = {"input_shape": [int(v) for v in x.shape[1:]]}
        return result

    def prepare(self, data: RunData, parts: Parts, echo: Callable[[str], Any]) -> None:
        self.classes = data.classes
        self.shape = tuple(int(v) for v in data.x.shape[1:])
        c, h, w = self.shape
        given = self.s["teacher_input_size"]
        self.teacher_size = tuple(given) if given is not None else _timm_size(h, w)
        self.student_model()  # a wrong student stops the run before the teacher trains

    def _augment(self) -> Any:
        from .augment import RandomShift

        s = self.s
        return RandomShift(s["shift"], seed=s["seed"]) if s["augment"] and s["shift"] else None

    def teacher(self, parts: Parts, out: Path, echo: Callable[[str], Any]) -> TeacherResult:
        from .students import TimmStudent

        s, k, (c, _, _) = self.s, len(self.classes), self.shape
        t_kwargs = {"device": s["device"], "precision": s["precision"], "batch_size": 512}
        if s["teacher_model"] is not None:
            named = "teacher" in self.given
            t = load_teacher_checkpoint(
                s["teacher_model"],
                name=_timm_name(s["teacher"], "teacher") if named else None,
                num_classes=k,
                in_chans=c,
                input_size=self.teacher_size,
                **t_kwargs,
            )
            if t.info.num_classes != k:
                raise DataError(
                    f"`teacher_model` has {t.info.num_classes} classes but the images have {k} "
                    f"({[str(v) for v in self.classes][:20]}). Use a teacher trained on these."
                )
            return TeacherResult(t, t.model, Path(s["teacher_model"]), False, t.name)
        name = _timm_name(s["teacher"], "teacher")
        x_train = parts.train[0]
        mean = [float(v) for v in x_train.mean(axis=(0, 2, 3))]
        std = [max(float(v), 1e-3) for v in x_train.std(axis=(0, 2, 3))]
        torch.manual_seed(s["seed"])
        net = TimmStudent(name, k, c, self.teacher_size, mean, std)
        epochs = s["teacher_epochs"] or s["epochs"]
        echo(
            f"training the teacher: {name} on {len(parts.train[1]):,} images ({epochs} epochs) ..."
        )
        self.role = "teacher"
        fitted = self.fit(None, net, 0.0, parts, epochs)
        file = save_teacher_checkpoint(out / TEACHER_CHECKPOINT_NAME, fitted.student_)
        t = fitted.student_.as_teacher(**t_kwargs)
        return TeacherResult(t, fitted.student_, file, True, name, fitted)

    def student_model(self) -> Any:
        torch.manual_seed(self.s["seed"])
        spec, hidden = self.s["student"], self.s["hidden"]
        return build_image_student(spec, self.shape, len(self.classes), hidden=hidden)

    def fit(self, teacher: Any, student: Any, alpha: float, parts: Parts, epochs: int) -> Any:
        from ..trainer import Distiller

        return Distiller(
            teacher,
            student,
            augment=self._augment(),
            chunk_size=1024,
            **self.trainer_settings(alpha, epochs),
        ).fit(*parts.train, eval_set=parts.val)

    def evaluate(self, model: Any, x: Any, y: Any) -> tuple[dict[str, float], Any]:
        if isinstance(model, TeacherResult):
            proba = torch.softmax(model.teacher.logits(x).float(), dim=1).numpy()
        else:
            proba = np.asarray(model.predict_proba(x))
        return classification_metrics(y, proba), proba

    def predictor(self, model: Any) -> Callable[[Any], Any]:
        from ..pipeline import copy_to_cpu

        module = copy_to_cpu(model.teacher.module if isinstance(model, TeacherResult)
                             else model.student_)  # fmt: skip
        return lambda x: module(torch.as_tensor(x))

    def describe(self, model: Any) -> dict[str, Any]:
        if isinstance(model, TeacherResult):
            return {"kind": "timm", "model": model.model}
        spec = self.s["student"]
        hidden = "-".join(str(h) for h in self.s["hidden"])
        return {"model": f"MLP {hidden}" if spec == "mlp" else spec}


def distill_images(
    data: str | os.PathLike[str], out: str | os.PathLike[str], **settings: Any
) -> dict:
    """Distil a timm CNN teacher into a small image student, and write the results to ``out``.

    Reads the images (:func:`crosskd.vision.load_images`: a ``.npz`` with ``x`` and ``y``, IDX
    files or an MNIST folder, whose t10k files are then the test set, or a folder with one
    subfolder per class), trains a timm teacher on the labels unless ``teacher_model`` is given,
    the baseline (the student on labels alone) and the distilled student, the teacher run online
    on the same shifted batches.

    Args:
        data: training images (see above).
        out: output folder (created; refused when it holds other files).
        **settings: ``progress`` (show progress bars), ``echo`` (where progress lines and the table
            go: ``print``; ``lambda s: None`` for silence), and any image setting of :mod:`crosskd.config` (``test``, ``teacher``
            (timm:NAME), ``teacher_model``, ``student`` (mlp, cnn, timm:NAME), ``hidden``,
            ``image_size``, ``teacher_input_size``, ``shift``, ``augment``, ``epochs``,
            ``teacher_epochs``, ``baseline``, ...); defaults from
            :func:`crosskd.config.defaults` ``("image")``.

    Returns:
        The report (also ``out/report.json``; see :mod:`crosskd.pipeline`). Files:
        ``student.safetensors`` (load with :func:`crosskd.load`), ``teacher.safetensors`` (when a
        teacher was trained), ``config.yaml``, ``summary.md`` and the plots.
    """
    from ..pipeline import distill

    return distill("image", {"data": data, "out": out, **settings})
