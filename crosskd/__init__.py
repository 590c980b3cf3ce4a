"""crosskd: knowledge distillation from LightGBM, scikit-learn and timm teachers into small PyTorch students.

The public API, re-exported by name. ``import crosskd`` imports torch but neither lightgbm nor timm:
the adapters that need them import them when they are used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .datasets.parquet import ParquetStream
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
from .losses import (
    blank_aware_kd_loss,
    ctc_loss,
    distillation_loss,
    frame_kd_loss,
    greedy_decode,
    hard_loss,
    kd_loss,
    soft_cross_entropy,
    soften,
)
from .metrics import character_error_rate, sequence_accuracy
from .profiling import ModelSize, device_description, model_size, time_inference
from .tabular import MLP, TabularEncoder, TabularStudent
from .tabular.gbdt import fit_lightgbm
from .tabular.transfer import jitter, munge
from .teachers import (
    EnsembleTeacher,
    LightGBMTeacher,
    ModuleTeacher,
    PrecomputedTeacher,
    SklearnTeacher,
    Teacher,
    TeacherInfo,
    TimmTeacher,
)
from .trainer import Distiller, auto_batch_size
from .vision import (
    CRNN,
    Alphabet,
    CTCDistiller,
    ImageMLP,
    RandomAffine,
    RandomShift,
    SmallCNN,
    TimmStudent,
    as_images,
    load_digits_images,
    load_images,
    load_mnist,
    load_textlines,
    read_idx,
)
from .vision.distill import distill_images
from .vision.textline_distill import distill_textlines


def __getattr__(name: str):
    # Imported on first use: the scikit-learn estimator imports scikit-learn, export imports onnx.
    if name == "KDClassifier":
        from .estimator import KDClassifier

        return KDClassifier
    if name == "export_onnx":
        from .export import export_onnx

        return export_onnx
    raise AttributeError(f"module 'crosskd' has no attribute {name!r}")


def load(path) -> Distiller | CTCDistiller:
    """Load a student saved with :meth:`Distiller.save` (or by ``crosskd distill``) for prediction.

    ``path`` is the ``.safetensors`` file, or a run folder holding ``student.safetensors``. A
    text-line student (saved by :meth:`CTCDistiller.save`, ``crosskd distill --task textline``)
    comes back as a :class:`CTCDistiller`, whose ``predict`` reads lines.
    """
    from pathlib import Path

    from .io import read_bundle_info

    p = Path(path)
    if p.is_dir():
        p = p / "student.safetensors"
    if p.is_file() and (read_bundle_info(p).get("metadata") or {}).get("task") == "textline":
        return CTCDistiller.load(p)
    return Distiller.load(p)


__all__ = [
    "__version__",
    "BundleError",
    "ConfigError",
    "CrossKDError",
    "DataError",
    "DeviceError",
    "ExportError",
    "NotFittedError",
    "TeacherError",
    "TrainingError",
    "distillation_loss",
    "hard_loss",
    "kd_loss",
    "soft_cross_entropy",
    "soften",
    "ModelSize",
    "model_size",
    "time_inference",
    "device_description",
    "MLP",
    "TabularEncoder",
    "TabularStudent",
    "fit_lightgbm",
    "munge",
    "jitter",
    "EnsembleTeacher",
    "LightGBMTeacher",
    "ModuleTeacher",
    "PrecomputedTeacher",
    "SklearnTeacher",
    "Teacher",
    "TeacherInfo",
    "TimmTeacher",
    "Distiller",
    "auto_batch_size",
    "ParquetStream",
    "ImageMLP",
    "SmallCNN",
    "TimmStudent",
    "RandomShift",
    "RandomAffine",
    "as_images",
    "load_digits_images",
    "load_images",
    "load_mnist",
    "read_idx",
    "distill_images",
    "distill_textlines",
    "ctc_loss",
    "frame_kd_loss",
    "blank_aware_kd_loss",
    "greedy_decode",
    "CRNN",
    "Alphabet",
    "CTCDistiller",
    "load_textlines",
    "character_error_rate",
    "sequence_accuracy",
    "load",
    "KDClassifier",
    "export_onnx",
]
