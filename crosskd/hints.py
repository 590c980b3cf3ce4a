"""Feature hints (FitNets, Romero et al. 2015): the student matches a teacher's intermediate features.

A :class:`FeatureHint` names one layer of the student and one of the teacher (their
``named_modules()`` names). While training, forward hooks keep both layers' outputs; the student's
feature goes through a small learned adapter to the teacher's shape, and

    hint = weight * mean((adapter(f_student) - f_teacher) ** 2)

is added to the task's loss as the term ``"hint"`` (teacher detached). The adapter is a 1x1
convolution for 4-D feature maps (then average pooling or bilinear interpolation of the student's
map to the teacher's height and width when they differ) and a linear layer for 2-D features. It is
trained with the student and dropped after ``fit``: a saved or exported student has no trace of it.

What is here: :class:`FeatureHint` (the setting), :func:`hint_loss` (a pure function),
:func:`build_adapter` and :class:`ConvAdapter`, :func:`find_module` and :class:`FeatureHook` (the hook
helpers), and :class:`HintSession` / :class:`HintedStudent`, which :class:`crosskd.Distiller` uses to
train the student and the adapter as one module through the engine.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._device import autocast
from .exceptions import ConfigError, DataError

__all__ = [
    "FeatureHint",
    "as_feature_hint",
    "hint_loss",
    "ConvAdapter",
    "build_adapter",
    "find_module",
    "FeatureHook",
    "HintedStudent",
    "HintSession",
]

Tensors = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class FeatureHint:
    """Match one student layer's output to one teacher layer's output (FitNets hint).

    Args:
        student_layer: the ``named_modules()`` name of the student's layer, e.g. ``"features.5"``.
        teacher_layer: the ``named_modules()`` name of the teacher module's layer (for a
            :class:`~crosskd.teachers.ModuleTeacher`, of ``teacher.module``), e.g. ``"layer2"``.
        weight: the factor of the hint term in the loss (> 0, finite).

    Raises:
        ConfigError: a name is not a non-empty string, or ``weight`` is not a finite number > 0.
    """

    student_layer: str
    teacher_layer: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        for side in ("student", "teacher"):
            name = getattr(self, f"{side}_layer")
            if not isinstance(name, str) or not name:
                what = "the empty name (the whole model)" if name == "" else repr(name)
                raise ConfigError(
                    f"FeatureHint {side}_layer must name a submodule of the {side} (a "
                    f"named_modules() name such as 'features.3'), got {what}. The whole model's "
                    "output is its logits, which the KD term already matches."
                )
        w = self.weight
        if (
            isinstance(w, bool)
            or not isinstance(w, (int, float))
            or not (math.isfinite(w) and w > 0)
        ):
            raise ConfigError(
                f"FeatureHint weight must be a finite number > 0, got {w!r}. It multiplies the hint "
                "term in the loss (start with 1.0); to train without a hint, pass hint=None."
            )
        object.__setattr__(self, "weight", float(w))

    def to_dict(self) -> dict[str, Any]:
        """``{"student_layer": ..., "teacher_layer": ..., "weight": ...}`` (JSON-safe)."""
        return asdict(self)


def as_feature_hint(value: FeatureHint | Mapping[str, Any] | None) -> FeatureHint | None:
    """``value`` as a :class:`FeatureHint`: a FeatureHint, a mapping with its keys (configs), or None.

    Raises:
        ConfigError: ``value`` is of another type, or the mapping lacks or adds keys.
    """
    if value is None or isinstance(value, FeatureHint):
        return value
    if isinstance(value, Mapping):
        known = {"student_layer", "teacher_layer", "weight"}
        extra = sorted(str(k) for k in value if k not in known)
        missing = sorted({"student_layer", "teacher_layer"} - set(value))
        if extra or missing:
            raise ConfigError(
                f"hint mapping {dict(value)!r} "
                + (f"has unknown keys {extra}" if extra else "")
                + (" and " if extra and missing else "")
                + (f"lacks {missing}" if missing else "")
                + "; expected the keys 'student_layer', 'teacher_layer' and optionally 'weight', "
                "e.g. {'student_layer': 'features.3', 'teacher_layer': 'layer2', 'weight': 1.0}."
            )
        return FeatureHint(**value)
    raise ConfigError(
        f"hint must be a crosskd.hints.FeatureHint, a mapping with its keys, or None; got a "
        f"{type(value).__name__}. Use hint=FeatureHint(student_layer='...', teacher_layer='...')."
    )


def hint_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between the adapted student feature and the teacher feature.

    Computed in float32 (float64 stays float64) whatever the inputs' dtype: bf16 / fp16 features
    from autocast would overflow when squared. The teacher feature is detached.

    Args:
        student_feat: the student's feature after its adapter, e.g. ``(N, C, H, W)`` or ``(N, D)``.
        teacher_feat: the teacher's feature, the same shape.

    Returns:
        A scalar tensor: ``mean((student_feat - teacher_feat) ** 2)`` over all elements.

    Raises:
        DataError: the shapes differ.
    """
    if student_feat.shape != teacher_feat.shape:
        raise DataError(
            f"hint_loss needs features of one shape; got the student's {tuple(student_feat.shape)} "
            f"and the teacher's {tuple(teacher_feat.shape)}. Pass the student's feature through "
            "its adapter (crosskd.hints.build_adapter) first."
        )
    dtype = torch.promote_types(student_feat.dtype, torch.float32)
    return F.mse_loss(student_feat.to(dtype), teacher_feat.detach().to(dtype))


class ConvAdapter(nn.Module):
    """A 1x1 convolution from the student's channels to the teacher's, then a resize to ``size``.

    Args:
        in_channels: the student feature's channels.
        out_channels: the teacher feature's channels.
        size: the teacher feature's ``(H, W)``; a map of another size is average-pooled to it when
            it is at least as large in both dimensions, else bilinearly interpolated.

    Shapes:
        ``(N, in_channels, h, w)`` -> ``(N, out_channels, *size)``.
    """

    def __init__(self, in_channels: int, out_channels: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.size = (int(size[0]), int(size[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        h, w = x.shape[-2:]
        if (h, w) == self.size:
            return x
        if h >= self.size[0] and w >= self.size[1]:
            return F.adaptive_avg_pool2d(x, self.size)
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)


def build_adapter(
    student_feat: torch.Tensor,
    teacher_feat: torch.Tensor,
    student_layer: str = "student layer",
    teacher_layer: str = "teacher layer",
) -> nn.Module:
    """The adapter from the student's feature shape to the teacher's, from one sample of each.

    Args:
        student_feat: a student feature, batch first: ``(N, C_s, H_s, W_s)`` or ``(N, D_s)``.
        teacher_feat: the teacher feature for the same rows: ``(N, C_t, H_t, W_t)`` or ``(N, D_t)``.
        student_layer: the student layer's name, for error messages.
        teacher_layer: the teacher layer's name, for error messages.

    Returns:
        A :class:`ConvAdapter` for 4-D maps, an ``nn.Linear(D_s, D_t)`` for 2-D features (float32,
        on the CPU, initialised from the global random state).

    Raises:
        ConfigError: the features are not both 4-D or both 2-D.
    """
    s, t = tuple(student_feat.shape), tuple(teacher_feat.shape)
    if len(s) == len(t) == 4:
        return ConvAdapter(s[1], t[1], (t[2], t[3]))
    if len(s) == len(t) == 2:
        return nn.Linear(s[1], t[1])
    raise ConfigError(
        f"Feature hints pair 4-D maps (N, C, H, W) with 4-D maps, or 2-D features (N, D) with 2-D "
        f"features; the student's {student_layer!r} gives shape {s} and the teacher's "
        f"{teacher_layer!r} gives {t}. Choose layers of the same kind (for vectors, e.g. a "
        "flatten or pooling layer on both sides)."
    )


def find_module(model: nn.Module, name: str, owner: str) -> nn.Module:
    """The submodule ``name`` of ``model`` (a ``named_modules()`` name).

    Raises:
        ConfigError: no such submodule; the message lists close matches (or the available names).
    """
    modules = dict(model.named_modules())
    if name and name in modules:
        return modules[name]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    close += [n for n in names if n.endswith("." + name) and n not in close][:3]
    if close:
        hint = f"Close matches: {close}."
    else:
        shown = names[:20]
        more = f" (and {len(names) - 20} more)" if len(names) > 20 else ""
        hint = f"Available: {shown}{more}."
    raise ConfigError(
        f"The {owner} ({type(model).__name__}) has no layer named {name!r}. {hint} Names are those "
        f"of {owner}.named_modules()"
        + (" (for a ModuleTeacher, of teacher.module)" if owner == "teacher" else "")
        + "."
    )


class FeatureHook:
    """A forward hook that keeps the latest output of one module until it is taken.

    The output tensor is kept as it is, not copied: a later in-place operation on it (an
    ``nn.ReLU(inplace=True)`` right after a hooked convolution) changes what is matched, so the
    feature is then the activation's output. A module called more than once per forward keeps its
    last call's output.

    Args:
        module: the module whose output is kept.
        name: its name, for messages.
        owner: ``"student"`` or ``"teacher"``, for messages.
    """

    def __init__(self, module: nn.Module, name: str, owner: str) -> None:
        self.name, self.owner = name, owner
        self.value: torch.Tensor | None = None
        self._handle = module.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, args: Any, output: Any) -> None:
        if not torch.is_tensor(output):
            raise DataError(
                f"The {self.owner}'s layer {self.name!r} ({type(module).__name__}) returned a "
                f"{type(output).__name__}; a feature hint needs a layer whose output is one tensor. "
                "Name a submodule that returns a tensor."
            )
        self.value = output

    def take(self) -> torch.Tensor:
        """The kept output (and forget it).

        Raises:
            DataError: the layer did not run since the last ``take``.
        """
        value, self.value = self.value, None
        if value is None:
            raise DataError(
                f"The {self.owner}'s layer {self.name!r} did not run in the {self.owner}'s forward "
                "pass, so there is no feature to match. Name a layer that forward() calls."
            )
        return value

    def remove(self) -> None:
        """Remove the hook and forget the kept output (idempotent)."""
        self._handle.remove()
        self.value = None


class HintedStudent(nn.Module):
    """The student and its hint adapter as one module, so that the engine trains both.

    ``forward`` returns the student's logits and leaves the adapted feature in ``adapted``.

    Args:
        student: the student network.
        adapter: the adapter (:func:`build_adapter`).
        hook: the :class:`FeatureHook` on the student's hinted layer.
    """

    def __init__(self, student: nn.Module, adapter: nn.Module, hook: FeatureHook) -> None:
        super().__init__()
        self.student = student
        self.adapter = adapter
        self._hook = hook
        self.adapted: torch.Tensor | None = None

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = self.student(*inputs)
        self.adapted = self.adapter(self._hook.take())
        return out


class HintSession:
    """The live parts of a feature hint for one ``fit``: hooks, adapter, and the hint term.

    Resolves both layer names on creation (no hooks yet). Used as a context manager: hooks are
    registered on entry and removed on exit, also when training raises.

    Args:
        hint: the setting.
        student: the student network.
        teacher: the teacher's ``nn.Module`` (``ModuleTeacher.module``).

    Raises:
        ConfigError: a layer name is unknown.
    """

    def __init__(self, hint: FeatureHint, student: nn.Module, teacher: nn.Module) -> None:
        self.hint = hint
        self.weight = hint.weight
        self._student_layer = find_module(student, hint.student_layer, "student")
        self._teacher_layer = find_module(teacher, hint.teacher_layer, "teacher")
        self._student_hook: FeatureHook | None = None
        self._teacher_hook: FeatureHook | None = None
        self.model: HintedStudent | None = None
        self.shapes: dict[str, list[int]] = {}

    def __enter__(self) -> HintSession:
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> None:
        """Register the forward hooks on both layers."""
        self.close()
        self._student_hook = FeatureHook(self._student_layer, self.hint.student_layer, "student")
        self._teacher_hook = FeatureHook(self._teacher_layer, self.hint.teacher_layer, "teacher")

    def close(self) -> None:
        """Remove the hooks (idempotent)."""
        for hook in (self._student_hook, self._teacher_hook):
            if hook is not None:
                hook.remove()
        self._student_hook = self._teacher_hook = None

    def build(
        self,
        student: nn.Module,
        inputs: Tensors,
        run_teacher: Callable[..., Any],
        seed: int,
    ) -> HintedStudent:
        """The adapter, sized by one dry forward of ``inputs`` through teacher and student.

        The student runs in eval mode without gradients (no batch-norm statistics change); the
        adapter is initialised from ``seed`` without touching the global random state, so the
        student's training draws the same random numbers as without a hint.

        Args:
            student: the student network (the one the hooks were resolved on).
            inputs: a few rows of student inputs, on the training device.
            run_teacher: ``inputs -> teacher logits`` (e.g. ``ModuleTeacher.logits_on_device``).
            seed: seeds the adapter's initial weights.

        Returns:
            The :class:`HintedStudent` to train (also in ``self.model``).
        """
        if self._student_hook is None or self._teacher_hook is None:
            self.open()
        run_teacher(*inputs)
        teacher_feat = self.teacher_feature()
        was_training = student.training
        student.eval()
        with torch.no_grad():
            student(*inputs)
        student.train(was_training)
        student_feat = self._student_hook.take()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            adapter = build_adapter(
                student_feat, teacher_feat, self.hint.student_layer, self.hint.teacher_layer
            )
        adapter = adapter.to(student_feat.device)
        self.shapes = {
            "student": list(student_feat.shape[1:]),
            "teacher": list(teacher_feat.shape[1:]),
        }
        self.model = HintedStudent(student, adapter, self._student_hook)
        return self.model

    def teacher_feature(self) -> torch.Tensor:
        """The teacher layer's output of the latest teacher forward, detached."""
        return self._teacher_hook.take().detach()

    def student_feature(self) -> torch.Tensor:
        """The adapted student feature of the latest forward of :attr:`model`."""
        adapted, self.model.adapted = self.model.adapted, None
        if adapted is None:
            raise DataError(
                "No adapted student feature: the hinted student did not run since the last hint "
                "term. Run the HintedStudent's forward before computing the hint."
            )
        return adapted

    def loss(self, teacher_feat: torch.Tensor) -> torch.Tensor:
        """:func:`hint_loss` of the latest adapted student feature and ``teacher_feat`` (unweighted)."""
        return hint_loss(self.student_feature(), teacher_feat)

    def forward_batched(
        self,
        inputs: Tensors,
        run_teacher: Callable[..., Any],
        device: torch.device,
        precision: str,
        chunk_size: int,
    ) -> tuple[torch.Tensor, float]:
        """Logits of :attr:`model` and the mean hint term over rows, in eval and inference mode.

        Like :func:`crosskd.tasks.base.forward_batched`, with the teacher run on each chunk for its
        features (validation). The model's train/eval mode is restored afterwards.

        Returns:
            ``(n, num_classes)`` float32 logits on ``device``, and the row-weighted mean hint term.
        """
        model = self.model
        was_training = model.training
        model.eval()
        n = inputs[0].shape[0]
        parts, total = [], 0.0
        with torch.inference_mode():
            for start in range(0, n, chunk_size):
                batch = tuple(t[start : start + chunk_size].to(device) for t in inputs)
                run_teacher(*batch)
                teacher_feat = self.teacher_feature()
                with autocast(device, precision):
                    parts.append(model(*batch).float())
                total += float(self.loss(teacher_feat)) * batch[0].shape[0]
        model.train(was_training)
        if not parts:
            raise ValueError("HintSession.forward_batched got 0 rows")
        return torch.cat(parts), total / n
