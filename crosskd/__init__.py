"""crosskd: knowledge distillation from LightGBM, scikit-learn and timm teachers into small PyTorch students.

The public API, re-exported by name. ``import crosskd`` imports torch but neither lightgbm nor timm:
the adapters that need them import them when they are used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .exceptions import (
    BundleError,
    ConfigError,
    CrossKDError,
    DataError,
    DeviceError,
    NotFittedError,
    TeacherError,
    TrainingError,
)
from .losses import distillation_loss, hard_loss, kd_loss, soft_cross_entropy, soften
from .profiling import ModelSize, model_size, time_inference
from .tabular import MLP, TabularEncoder, TabularStudent
from .tabular.gbdt import fit_lightgbm
from .teachers import (
    EnsembleTeacher,
    LightGBMTeacher,
    ModuleTeacher,
    PrecomputedTeacher,
    SklearnTeacher,
    Teacher,
    TeacherInfo,
)
from .trainer import Distiller


def load(path) -> Distiller:
    """Load a student saved with :meth:`Distiller.save` (or by ``crosskd distill``) for prediction.

    ``path`` is the ``.safetensors`` file, or a run folder holding ``student.safetensors``.
    """
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        p = p / "student.safetensors"
    return Distiller.load(p)


__all__ = [
    "__version__",
    "BundleError",
    "ConfigError",
    "CrossKDError",
    "DataError",
    "DeviceError",
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
    "MLP",
    "TabularEncoder",
    "TabularStudent",
    "fit_lightgbm",
    "EnsembleTeacher",
    "LightGBMTeacher",
    "ModuleTeacher",
    "PrecomputedTeacher",
    "SklearnTeacher",
    "Teacher",
    "TeacherInfo",
    "Distiller",
    "load",
]
