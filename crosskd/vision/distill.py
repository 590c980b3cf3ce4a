"""Images for ``crosskd distill``: read image data, build a timm teacher and an image student.

Everything else (output folder, split, baseline, report, plots) is the scaffold's:
:func:`crosskd.pipeline.run`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
    "TeacherChoice",
    "choose_image_teacher",
    "teacher_input_size",
    "image_epochs",
    "build_image_student",
    "save_teacher_checkpoint",
    "load_teacher_checkpoint",
    "TEACHER_CHECKPOINT_NAME",
]

#: File name of the teacher trained by :func:`distill_images`.
TEACHER_CHECKPOINT_NAME = "teacher.safetensors"
_META_KEY = "crosskd_teacher"


#: The smallest side a timm teacher reads: smaller images are scaled up (bilinear) to it.
TEACHER_MIN_SIDE = 32
#: ``teacher="auto"``: training images from which the wider of the two narrow ResNets is chosen.
#: On 5,577 16x16 MNIST digits the narrower one did as well (0.988 vs 0.987 test accuracy) at 57 %
#: of the time; the wider one's extra capacity is kept for sets larger than any measured.
WIDE_TEACHER_IMAGES = 20_000
#: The two automatic teachers: timm ``resnet10t`` with narrow stages (``stem_width`` 16).
NARROW_TEACHERS = {
    "narrow": (16, 32, 64, 128),
    "wide": (32, 64, 128, 256),
}
#: ``epochs="auto"`` for images: at most this many image passes (training images x epochs) per
#: model, so that the budget of a large set is capped ...
IMAGE_PASSES = 300_000
#: ... but never fewer epochs than this.
IMAGE_MIN_EPOCHS = 10


@dataclass(frozen=True)
class TeacherChoice:
    """The teacher an image run trains: a timm model, its constructor arguments and input.

    Attributes:
        name: timm model name (``"resnet10t"``).
        model_kwargs: extra timm constructor arguments (``{"channels": [16, 32, 64, 128]}``).
        input_size: ``(H, W)`` the teacher reads.
        resize: how the images reach ``input_size`` (``"bilinear"`` or ``"auto"``: pad when they
            fit), see :class:`~crosskd.vision.preprocess.ImagePreprocess`.
        reason: why, in words (written to ``report.json``).
    """

    name: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    input_size: tuple[int, int] = (32, 32)
    resize: str = "bilinear"
    reason: str = ""

    def report(self) -> dict[str, Any]:
        """JSON-safe fields for the report."""
        return {
            "teacher": f"timm:{self.name}",
            "model_kwargs": {
                k: list(v) if isinstance(v, tuple) else v for k, v in self.model_kwargs.items()
            },
            "input_size": list(self.input_size),
            "resize": self.resize,
            "reason": self.reason,
        }


def teacher_input_size(height: int, width: int) -> tuple[int, int]:
    """The size a timm teacher reads images of ``height x width`` at: their own size, or scaled
    up (keeping the aspect ratio) so that the shorter side is :data:`TEACHER_MIN_SIDE`.

    A ResNet's stem divides the size by 4 at once: a 16x16 digit zero-padded to 32x32 reaches the
    first stage as 4x4 pixels of ink, scaled up as 8x8. After one epoch on 5,577 16x16 MNIST
    digits a narrow resnet10t read them at 0.76 test accuracy padded and 0.81 scaled up.
    """
    short = min(height, width)
    if short >= TEACHER_MIN_SIDE:
        return (height, width)
    scale = TEACHER_MIN_SIDE / short
    return (
        max(TEACHER_MIN_SIDE, round(height * scale)),
        max(TEACHER_MIN_SIDE, round(width * scale)),
    )


def choose_image_teacher(n_images: int, input_shape: Sequence[int]) -> TeacherChoice:
    """The teacher ``teacher="auto"`` trains for ``n_images`` training images of ``(C, H, W)``.

    A timm ``resnet10t`` with narrow stages (16 to 128 channels, 318k parameters) below
    :data:`WIDE_TEACHER_IMAGES` training images, twice as wide (32 to 256 channels, about 1.2M)
    from there; it reads the images at :func:`teacher_input_size`. Its cost per image follows the
    image's pixels, and :func:`image_epochs` bounds the passes, so the teacher's time follows the
    data. On 306 scikit-learn digits the three candidates (this one, the wider one and a resnet18,
    11M parameters) all reached 0.97 validation accuracy (0.92, 0.95, 0.95 on 60 test digits); the
    resnet18 took four to five times the time (20 s an epoch on 5,577 16x16 digits on one busy CPU
    core). Give another teacher with ``teacher`` timm:NAME.

    Args:
        n_images: training images (after the test and validation hold-outs).
        input_shape: ``(C, H, W)`` of the images.

    Raises:
        ConfigError: ``n_images`` < 1 or a shape that is not three positive sizes.
    """
    try:
        c, h, w = (int(v) for v in input_shape)
    except (TypeError, ValueError):
        c = h = w = 0
    if min(c, h, w) < 1:
        raise ConfigError(
            f"choose_image_teacher needs input_shape (C, H, W) of positive sizes, got "
            f"{input_shape!r}."
        )
    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)) or n_images < 1:
        raise ConfigError(
            f"choose_image_teacher needs a positive number of training images, got {n_images!r}."
        )
    wide = n_images >= WIDE_TEACHER_IMAGES
    channels = NARROW_TEACHERS["wide" if wide else "narrow"]
    size = teacher_input_size(h, w)
    scaled = size != (h, w)
    reason = (
        f"{n_images:,} training images "
        + (f">= {WIDE_TEACHER_IMAGES:,}" if wide else f"< {WIDE_TEACHER_IMAGES:,}")
        + f": resnet10t with stages of {channels[0]} to {channels[-1]} channels"
        + (
            f"; {h}x{w} images scaled up to {size[0]}x{size[1]}"
            if scaled
            else f"; images read at their {h}x{w}"
        )
    )
    return TeacherChoice(
        "resnet10t",
        {"channels": list(channels), "stem_width": 16},
        size,
        "bilinear" if scaled else "auto",
        reason,
    )


def image_epochs(n_images: int, batch_size: int) -> int:
    """``epochs="auto"`` for an image model: the table rule (:func:`crosskd.engine.runtime.auto_epochs`:
    enough epochs for 10,000 steps, 20 to 300) capped at :data:`IMAGE_PASSES` image passes
    (at least :data:`IMAGE_MIN_EPOCHS` epochs). The plateau schedule usually ends training before:
    the learning rate is cut when the validation metric stalls, and training stops after 3 cuts.

    Args:
        n_images: training images.
        batch_size: images per step.
    """
    from ..engine.runtime import auto_epochs

    steps = max(1, math.ceil(n_images / max(1, batch_size)))
    cap = max(IMAGE_MIN_EPOCHS, math.ceil(IMAGE_PASSES / max(1, n_images)))
    return int(min(auto_epochs(steps), cap))


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
        if s["teacher"] != "auto" and (s["teacher_model"] is None or "teacher" in self.given):
            try:
                _timm_name(s["teacher"], "teacher")
            except ConfigError as err:
                raise ConfigError(
                    f"{err} `teacher` for images is auto (a teacher chosen from the number and "
                    "size of the images) or timm:NAME."
                ) from None
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
        s = self.s
        n = len(parts.train[1])
        if s["teacher"] == "auto":
            self.choice = choose_image_teacher(n, self.shape)
        else:
            size = teacher_input_size(h, w)
            self.choice = TeacherChoice(
                _timm_name(s["teacher"], "teacher"),
                {},
                size,
                "bilinear" if size != (h, w) else "auto",
                "given",
            )
        given = s["teacher_input_size"]
        if given is not None:
            self.choice = TeacherChoice(
                self.choice.name,
                self.choice.model_kwargs,
                (int(given[0]), int(given[1])),
                "auto",
                self.choice.reason + f"; input size {given[0]}x{given[1]} given",
            )
        self.teacher_size = self.choice.input_size
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
            named = "teacher" in self.given and s["teacher"] != "auto"
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
        choice = self.choice
        name = choice.name
        x_train = parts.train[0]
        mean = [float(v) for v in x_train.mean(axis=(0, 2, 3))]
        std = [max(float(v), 1e-3) for v in x_train.std(axis=(0, 2, 3))]
        torch.manual_seed(s["seed"])
        net = TimmStudent(
            name, k, c, self.teacher_size, mean, std, choice.resize, choice.model_kwargs
        )
        epochs = s["teacher_epochs"] or s["epochs"]
        budget = (
            f"at most {self._budget(len(parts.train[1]))} epochs, until the validation loss "
            "stops improving"
            if epochs == "auto"
            else f"{epochs} epochs"
        )
        picked = f" (teacher auto: {choice.reason})" if s["teacher"] == "auto" else ""
        echo(
            f"training the teacher: {name} on {len(parts.train[1]):,} images ({budget}){picked} ..."
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

    def _batch(self, n_images: int) -> int:
        """Images a step: the setting, or for ``"auto"`` the largest power of two from 16 to 512
        that gives at least 32 steps an epoch (per process under torchrun), on every device. The
        trainer's CUDA rule (512 to 16,384 rows a step, for small table models) would give a few
        hundred images one step an epoch, the failure of the old 128-image batch on 306 digits
        (not measured on a GPU here)."""
        from ..distributed import launched_distributed
        from ..trainer import auto_batch_size

        size = self.s["batch_size"]
        if size != "auto":
            return int(size)
        world = int(os.environ.get("WORLD_SIZE", "1")) if launched_distributed() else 1
        return auto_batch_size("cpu", max(1, n_images // world))

    def _budget(self, n_images: int) -> int:
        return image_epochs(n_images, self._batch(n_images))

    def fit(self, teacher: Any, student: Any, alpha: float, parts: Parts, epochs: Any) -> Any:
        """Train ``student`` (``teacher`` None: on labels alone). ``epochs="auto"``: at most
        :func:`image_epochs`, the plateau schedule on the validation images ending it."""
        from ..trainer import Distiller

        settings = self.trainer_settings(alpha, epochs)
        settings["batch_size"] = self._batch(len(parts.train[1]))
        if epochs == "auto":
            settings["epochs"] = self._budget(len(parts.train[1]))
            settings["schedule"] = "plateau"
        fitted = Distiller(
            teacher,
            student,
            augment=self._augment(),
            chunk_size=1024,
            **settings,
        ).fit(*parts.train, eval_set=parts.val)
        if self.role == "teacher":
            fitted.teacher_choice_ = self.choice.report()
        return fitted

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
            out: dict[str, Any] = {"kind": "timm", "model": model.model}
            choice = getattr(model.fitted, "teacher_choice_", None)
            if choice is not None:
                out["teacher_choice"] = {**choice, "auto": self.s["teacher"] == "auto"}
            return out
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
            go: ``print``; ``lambda s: None`` for silence), and any image setting of
            :mod:`crosskd.config` (``test``, ``teacher`` (auto: :func:`choose_image_teacher`, or
            timm:NAME), ``teacher_model``, ``student`` (mlp, cnn, timm:NAME), ``hidden``,
            ``image_size``, ``teacher_input_size``, ``shift``, ``augment``, ``epochs`` (auto:
            :func:`image_epochs`, ended on the validation images), ``teacher_epochs``,
            ``batch_size``, ``baseline``, ...); defaults from :func:`crosskd.config.defaults`
            ``("image")``.

    Returns:
        The report (also ``out/report.json``; see :mod:`crosskd.pipeline`). Files:
        ``student.safetensors`` (load with :func:`crosskd.load`), ``teacher.safetensors`` (when a
        teacher was trained), ``config.yaml``, ``summary.md`` and the plots.
    """
    from ..pipeline import distill

    return distill("image", {"data": data, "out": out, **settings})
