"""Teachers: every source model (LightGBM, scikit-learn, torch, timm, precomputed) behind one protocol.

The adapters are imported on first use, so ``import crosskd.teachers`` imports neither lightgbm,
scikit-learn nor timm; ``lightgbm`` is imported only when a :class:`LightGBMTeacher` is created and
``timm`` only when a :class:`TimmTeacher` creates a model by name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .base import Teacher, TeacherInfo

if TYPE_CHECKING:
    from .crossfit import CrossFittedTeacher, crossfit_lightgbm
    from .ensemble import EnsembleTeacher
    from .lightgbm import LightGBMTeacher
    from .module import ModuleTeacher
    from .precomputed import PrecomputedTeacher
    from .sklearn import SklearnTeacher
    from .timm import TimmTeacher

__all__ = [
    "Teacher",
    "TeacherInfo",
    "LightGBMTeacher",
    "SklearnTeacher",
    "ModuleTeacher",
    "TimmTeacher",
    "PrecomputedTeacher",
    "EnsembleTeacher",
    "CrossFittedTeacher",
    "crossfit_lightgbm",
]

_LAZY = {
    "LightGBMTeacher": ".lightgbm",
    "SklearnTeacher": ".sklearn",
    "ModuleTeacher": ".module",
    "TimmTeacher": ".timm",
    "PrecomputedTeacher": ".precomputed",
    "EnsembleTeacher": ".ensemble",
    "CrossFittedTeacher": ".crossfit",
    "crossfit_lightgbm": ".crossfit",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
