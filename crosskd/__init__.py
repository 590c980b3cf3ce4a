"""crosskd: knowledge distillation from LightGBM, scikit-learn and timm teachers into small PyTorch students.

The public API, re-exported by name. Every name is imported on first use, so ``import crosskd``
itself loads neither torch nor pandas, lightgbm or timm; ``crosskd.Distiller`` loads torch and the
trainer, ``crosskd.LightGBMTeacher(...)`` lightgbm, and so on. Helpers that are not listed here stay
importable from their modules (e.g. ``crosskd.profiling.device_description``,
``crosskd.vision.data.read_idx``, ``crosskd.losses.ctc_loss``).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .exceptions import (
    BundleError,
    ConfigError,
    CrossKDError,
    DataError,
    DeviceError,
    ExportError,
    NotFittedError,
    TeacherError,
    TrainingError,
)

__version__ = "0.1.0"

#: public name -> the module that defines it (imported on first use).
_LAZY = {
    # trainers and estimators
    "Distiller": ".trainer",
    "CTCDistiller": ".vision.ctc_trainer",
    "KDClassifier": ".estimator",
    "FeatureHint": ".hints",
    # teachers
    "Teacher": ".teachers.base",
    "TeacherInfo": ".teachers.base",
    "LightGBMTeacher": ".teachers.lightgbm",
    "SklearnTeacher": ".teachers.sklearn",
    "ModuleTeacher": ".teachers.module",
    "TimmTeacher": ".teachers.timm",
    "PrecomputedTeacher": ".teachers.precomputed",
    "EnsembleTeacher": ".teachers.ensemble",
    "fit_lightgbm": ".tabular.gbdt",
    "crossfit_lightgbm": ".teachers.crossfit",
    # students
    "TabularStudent": ".tabular.students",
    "MLP": ".tabular.students",
    "ImageMLP": ".vision.students",
    "SmallCNN": ".vision.students",
    "TimmStudent": ".vision.students",
    "CRNN": ".vision.crnn",
    "Alphabet": ".vision.textlines",
    # data, transfer sets, augmentation
    "ParquetStream": ".datasets.parquet",
    "load_mnist": ".vision.data",
    "load_images": ".vision.data",
    "load_textlines": ".vision.textlines",
    "munge": ".tabular.transfer",
    "jitter": ".tabular.transfer",
    "RandomShift": ".vision.augment",
    "RandomAffine": ".vision.augment",
    "textline_augment": ".vision.augment",
    # the loss
    "soften": ".losses",
    "kd_loss": ".losses",
    "distillation_loss": ".losses",
    # size and speed of teacher vs student
    "model_size": ".profiling",
    "time_inference": ".profiling",
    # the pipelines of `crosskd distill`
    "distill_images": ".vision.distill",
    "distill_textlines": ".vision.textline_distill",
    "export_onnx": ".export",
}

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .datasets.parquet import ParquetStream
    from .estimator import KDClassifier
    from .export import export_onnx
    from .hints import FeatureHint
    from .losses import distillation_loss, kd_loss, soften
    from .profiling import model_size, time_inference
    from .tabular.gbdt import fit_lightgbm
    from .tabular.students import MLP, TabularStudent
    from .tabular.transfer import jitter, munge
    from .teachers.base import Teacher, TeacherInfo
    from .teachers.crossfit import crossfit_lightgbm
    from .teachers.ensemble import EnsembleTeacher
    from .teachers.lightgbm import LightGBMTeacher
    from .teachers.module import ModuleTeacher
    from .teachers.precomputed import PrecomputedTeacher
    from .teachers.sklearn import SklearnTeacher
    from .teachers.timm import TimmTeacher
    from .trainer import Distiller
    from .vision.augment import RandomAffine, RandomShift, textline_augment
    from .vision.crnn import CRNN
    from .vision.ctc_trainer import CTCDistiller
    from .vision.data import load_images, load_mnist
    from .vision.distill import distill_images
    from .vision.students import ImageMLP, SmallCNN, TimmStudent
    from .vision.textline_distill import distill_textlines
    from .vision.textlines import Alphabet, load_textlines


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'crosskd' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def load(path: Any) -> Any:
    """Load a student saved with :meth:`Distiller.save` (or by ``crosskd distill``) for prediction.

    ``path`` is the ``.safetensors`` file, or a run folder holding ``student.safetensors``. A
    text-line student (saved by :meth:`CTCDistiller.save`, ``crosskd distill --task textline``)
    comes back as a :class:`CTCDistiller`, whose ``predict`` reads lines; any other as a
    :class:`Distiller`.
    """
    from pathlib import Path

    from .io import read_bundle_info

    p = Path(path)
    if p.is_dir():
        p = p / "student.safetensors"
    if p.is_file() and (read_bundle_info(p).get("metadata") or {}).get("task") == "textline":
        from .vision.ctc_trainer import CTCDistiller

        return CTCDistiller.load(p)
    from .trainer import Distiller

    return Distiller.load(p)


__all__ = [
    "__version__",
    # errors
    "CrossKDError",
    "ConfigError",
    "DataError",
    "TeacherError",
    "TrainingError",
    "BundleError",
    "ExportError",
    "NotFittedError",
    "DeviceError",
    # train, load, serve
    "Distiller",
    "CTCDistiller",
    "KDClassifier",
    "FeatureHint",
    "load",
    "export_onnx",
    # teachers
    "Teacher",
    "TeacherInfo",
    "LightGBMTeacher",
    "SklearnTeacher",
    "ModuleTeacher",
    "TimmTeacher",
    "PrecomputedTeacher",
    "EnsembleTeacher",
    "fit_lightgbm",
    "crossfit_lightgbm",
    # students
    "TabularStudent",
    "MLP",
    "ImageMLP",
    "SmallCNN",
    "TimmStudent",
    "CRNN",
    "Alphabet",
    # data
    "ParquetStream",
    "load_mnist",
    "load_images",
    "load_textlines",
    "munge",
    "jitter",
    "RandomShift",
    "RandomAffine",
    "textline_augment",
    # the loss
    "soften",
    "kd_loss",
    "distillation_loss",
    # size and speed
    "model_size",
    "time_inference",
    # pipelines
    "distill_images",
    "distill_textlines",
]
