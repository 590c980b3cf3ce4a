"""Teachers built with timm: a CNN (or ViT) by name or as a module, with its own preprocessing.

``timm`` is imported only when a :class:`TimmTeacher` is created from a model name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..exceptions import BundleError, ConfigError, TeacherError
from ..vision.preprocess import ImagePreprocess
from .base import TeacherInfo
from .module import ModuleTeacher

__all__ = ["TimmTeacher", "create_timm_model", "load_weights"]


def create_timm_model(name: str, num_classes: int, in_chans: int = 1, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=False, num_classes=..., in_chans=...)`` with clear errors.

    Args:
        name: a timm model name, e.g. ``"resnet18"``, ``"resnet10t"``.
        num_classes: number of logits.
        in_chans: input channels (1 for grey images).
        **kwargs: passed to the model's constructor (e.g. ``channels=(32, 64, 128, 256)`` for a
            narrow ResNet, ``drop_rate=0.1``).

    Raises:
        ConfigError: timm is not installed, or does not know ``name``.
    """
    try:
        import timm
    except ImportError:  # pragma: no cover - timm is a dependency
        raise ConfigError("TimmTeacher needs the timm package: pip install timm.") from None
    if not isinstance(name, str) or not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:8] if isinstance(name, str) else []
        raise ConfigError(
            f"timm has no model named {name!r}. Similar names: {close or 'none'}; see "
            "timm.list_models()."
        )
    return timm.create_model(
        name, pretrained=False, num_classes=int(num_classes), in_chans=int(in_chans), **kwargs
    )


def load_weights(module: nn.Module, path: str | os.PathLike[str], strict: bool = True) -> nn.Module:
    """Load a checkpoint's weights into ``module``, safely (no pickled code is ever executed).

    ``.safetensors`` files are read with safetensors; anything else with
    ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects. A checkpoint that
    wraps the weights (``{"state_dict": ...}``, ``{"model": ...}``, ``{"model_ema": ...}``) is
    unwrapped, and a ``module.`` prefix (DistributedDataParallel) is removed.

    Returns:
        ``module``, with the weights loaded.

    Raises:
        BundleError: the file is missing, unreadable, holds no weights, or does not match the model.
    """
    p = Path(path)
    if not p.is_file():
        raise BundleError(f"Teacher checkpoint {str(p)!r} does not exist. Check the path.")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(p), device="cpu")
        else:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file for the user
        raise BundleError(
            f"Could not read the teacher checkpoint {str(p)!r} safely ({type(exc).__name__}: "
            f"{str(exc)[:200]}). Save the weights only: safetensors.torch.save_file(model."
            "state_dict(), 'teacher.safetensors'), or torch.save(model.state_dict(), path)."
        ) from None
    for key in ("state_dict", "model", "model_ema", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise BundleError(
            f"{str(p)!r} does not hold a state dict of tensors. Save model.state_dict()."
        )
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise BundleError(
            f"The checkpoint {str(p)!r} does not match the model {type(module).__name__}: "
            f"{' '.join(str(exc).split())[:400]}. Create the teacher with the same model name, "
            "num_classes and in_chans as the checkpoint."
        ) from None
    if strict and (result.missing_keys or result.unexpected_keys):
        raise BundleError(
            f"The checkpoint {str(p)!r} does not match the model {type(module).__name__}: missing "
            f"keys {result.missing_keys[:5]}, unexpected keys {result.unexpected_keys[:5]}. "
            "Create the teacher with the same model name, num_classes and in_chans as the "
            "checkpoint."
        )
    return module


class _Preprocessed(nn.Module):
    """``model(preprocess(x))``, optionally in channels_last memory format."""

    def __init__(self, preprocess: ImagePreprocess, model: nn.Module, channels_last: bool) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.model = model
        self.channels_last = channels_last
        declared = getattr(model, "num_classes", None)
        if isinstance(declared, int) and declared > 0:
            self.num_classes = declared

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)


class TimmTeacher(ModuleTeacher):
    """A timm image classifier as a teacher, with its preprocessing applied inside the adapter.

    Inputs are images as crosskd keeps them: ``(N, C, H, W)`` (or ``(N, H, W)``) float in [0, 1],
    or uint8. The adapter converts channels, pads or resizes to ``input_size`` and normalises with
    ``mean`` / ``std`` before the model sees them, on the teacher's device, both in :meth:`logits`
    and in the trainer's online mode (:meth:`logits_on_device`). So a student can read the raw
    pixels while the teacher reads what it was trained on. The preprocessing is in
    ``info.preprocessing``.

    Args:
        model: a timm model name (created with ``pretrained=False``; no download) or an existing
            ``nn.Module`` (a timm model, or any module returning logits).
        num_classes: number of classes; needed with a name, read from the module otherwise.
        in_chans: input channels of a model created by name.
        checkpoint: a weights file (``.safetensors``, or a ``torch.save``'d state dict, read with
            ``weights_only=True``) loaded into the model.
        input_size: ``(H, W)`` the model takes; None keeps the images' size.
        mean, std: normalisation after scaling pixels to [0, 1]; None: the model's
            ``pretrained_cfg`` values (averaged to one value for 1-channel models), else 0 / 1.
        resize: how images are brought to ``input_size``: ``"auto"``, ``"pad"``, ``"bilinear"``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        precision: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"``; logits come back float32.
        channels_last: run the model in channels_last memory format (faster convolutions on GPUs).
        batch_size: images per forward pass in :meth:`logits`.
        classes: class labels in logit order; default ``0..num_classes-1``.
        **model_kwargs: passed to ``timm.create_model`` with a name.

    Shapes:
        ``logits(X)``: ``X`` ``(N, C, H, W)`` -> ``(N, num_classes)`` float32 CPU tensor.

    Example:
        >>> teacher = TimmTeacher("resnet18", num_classes=10, in_chans=1, checkpoint="t.safetensors",
        ...                       input_size=(32, 32), mean=0.1307, std=0.3081)
    """

    def __init__(
        self,
        model: str | nn.Module,
        num_classes: int | None = None,
        *,
        in_chans: int = 1,
        checkpoint: str | os.PathLike[str] | None = None,
        input_size: Sequence[int] | None = None,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        resize: str = "auto",
        device: str | torch.device = "cpu",
        precision: str = "32",
        channels_last: bool = False,
        batch_size: int | None = 512,
        classes: Sequence[Any] | None = None,
        **model_kwargs: Any,
    ) -> None:
        if isinstance(model, str):
            if num_classes is None:
                num_classes = len(classes) if classes is not None else None
            if num_classes is None:
                raise ConfigError(
                    f"TimmTeacher({model!r}) needs num_classes (or classes) to create the model."
                )
            name = model
            model = create_timm_model(model, num_classes, in_chans, **model_kwargs)
        elif isinstance(model, nn.Module):
            if model_kwargs:
                raise ConfigError(
                    f"TimmTeacher got model keyword arguments {sorted(model_kwargs)} with an existing "
                    "module; they only apply when the model is created by name."
                )
            name = getattr(model, "default_cfg", {}).get("architecture") or type(model).__name__
            declared = getattr(model, "num_classes", None)
            if num_classes is not None and isinstance(declared, int) and declared != num_classes:
                raise TeacherError(
                    f"The module has num_classes={declared} but num_classes={num_classes} was "
                    "given. Pass the module's own number of classes."
                )
            chans = _module_in_chans(model)
            in_chans = chans if chans is not None else in_chans
        else:
            raise TeacherError(
                f"TimmTeacher takes a timm model name or an nn.Module, got {type(model).__name__}."
            )
        if checkpoint is not None:
            load_weights(model, checkpoint)
        cfg = getattr(model, "pretrained_cfg", None) or {}
        if mean is None:
            mean = _per_channel(cfg.get("mean", (0.0,)), in_chans)
        if std is None:
            std = _per_channel(cfg.get("std", (1.0,)), in_chans)
        preprocess = ImagePreprocess(in_chans, input_size, mean, std, resize)
        self.model = model
        self.name = name
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.channels_last = bool(channels_last)
        wrapped = _Preprocessed(preprocess, model, self.channels_last)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if classes is None and num_classes is not None:
            classes = tuple(range(int(num_classes)))
        super().__init__(
            wrapped, device=device, precision=precision, batch_size=batch_size, classes=classes
        )
        self.preprocess = preprocess

    def _set_info(self, classes: tuple[Any, ...]) -> None:
        self._info = TeacherInfo(
            num_classes=len(classes),
            classes=classes,
            kind="timm",
            preprocessing=self.module.preprocess.config(),
            extra={
                "model": self.name,
                "checkpoint": self.checkpoint,
                "device": str(self.device),
                "precision": self.precision,
                "channels_last": self.channels_last,
            },
        )

    def __repr__(self) -> str:
        width = "unknown" if self._info is None else self._info.num_classes
        return f"TimmTeacher({self.name!r}, num_classes={width}, device={str(self.device)!r})"


def _module_in_chans(model: nn.Module) -> int | None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
        if isinstance(module, nn.Linear):
            return None
    return None


def _per_channel(values: Sequence[float], in_chans: int) -> tuple[float, ...]:
    vals = tuple(float(v) for v in values)
    if len(vals) == in_chans or len(vals) == 1:
        return vals
    return (sum(vals) / len(vals),) * (1 if in_chans == 1 else in_chans)
