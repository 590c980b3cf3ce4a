"""Image students (and teachers trained with the same trainer): an MLP on pixels, a small CNN, timm.

All take images as crosskd keeps them, ``(N, C, H, W)`` float in [0, 1], and return
``(N, num_classes)`` logits. They are registered with :func:`crosskd.io.register_student`, so a
Distiller that trained one saves and loads it as a safe bundle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..exceptions import ConfigError, DataError
from ..io import register_student
from ..tabular.students import MLP, _check_dropout, _check_num_classes
from .preprocess import ImagePreprocess

__all__ = ["ImageMLP", "SmallCNN", "TimmStudent"]


def _check_shape(input_shape: Sequence[int], owner: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(
            f"{owner} input_shape must be (channels, height, width), e.g. (1, 28, 28); got "
            f"{input_shape!r}."
        )
    return shape  # type: ignore[return-value]


class _MaxNorm(nn.Module):
    """Rescale each row (one unit's incoming weights) to an L2 norm of at most ``max_norm``."""

    def __init__(self, max_norm: float) -> None:
        super().__init__()
        self.max_norm = max_norm

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        norms = weight.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return weight * (self.max_norm / norms).clamp(max=1.0)


@register_student
class ImageMLP(nn.Module):
    """A multilayer perceptron on flattened pixels (Hinton et al.'s 784-800-800-10 and 784-1200-1200-10).

    It flattens the image and runs :class:`crosskd.MLP` (``Linear - ReLU (- Dropout)`` blocks and a
    linear head).

    Args:
        input_shape: ``(C, H, W)`` of the images, e.g. ``(1, 28, 28)``.
        num_classes: number of logits.
        hidden: widths of the hidden layers, e.g. ``(800, 800)``.
        dropout: dropout after each hidden layer (the paper's teacher: 0.5).
        input_dropout: dropout on the pixels (the paper's teacher: 0.2).
        max_norm: cap on the L2 norm of each unit's incoming weights (the paper's "weight
            constraints"), applied as a reparametrisation, so it holds after every step; None: no cap.

    Shapes:
        ``(N, C, H, W)`` (or ``(N, C*H*W)``) -> ``(N, num_classes)``.
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        hidden: Sequence[int] = (800, 800),
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        max_norm: float | None = None,
    ) -> None:
        super().__init__()
        self.input_shape = _check_shape(input_shape, "ImageMLP")
        self.input_dropout = _check_dropout(input_dropout, "ImageMLP input_dropout")
        if max_norm is not None and not (isinstance(max_norm, (int, float)) and max_norm > 0):
            raise ConfigError(f"ImageMLP max_norm must be > 0 or None, got {max_norm!r}.")
        self.max_norm = None if max_norm is None else float(max_norm)
        c, h, w = self.input_shape
        self.drop_in = nn.Dropout(self.input_dropout) if self.input_dropout > 0 else nn.Identity()
        self.mlp = MLP(c * h * w, num_classes, hidden, dropout)
        self.num_classes = self.mlp.num_classes
        if self.max_norm is not None:
            for layer in self.mlp.modules():
                if isinstance(layer, nn.Linear) and layer is not self.mlp.head:
                    parametrize.register_parametrization(layer, "weight", _MaxNorm(self.max_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` for images ``(N, C, H, W)``."""
        n_in = self.mlp.in_features
        if x.ndim < 2 or x[0].numel() != n_in:
            _check_batch_axis(x, "ImageMLP", self.input_shape)
            raise DataError(
                f"ImageMLP expects images of shape (N, {', '.join(map(str, self.input_shape))}) "
                f"({n_in} values each), got {tuple(x.shape)}. Create it with "
                "input_shape=(C, H, W) of your images."
            )
        return self.mlp(self.drop_in(x.reshape(x.shape[0], n_in).float()))

    def config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-safe (:meth:`from_config` inverts it)."""
        return {
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "hidden": list(self.mlp.hidden),
            "dropout": self.mlp.dropout,
            "input_dropout": self.input_dropout,
            "max_norm": self.max_norm,
        }

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> ImageMLP:
        """A fresh ImageMLP from :meth:`config`'s output."""
        return cls(**_known(cfg, cls, "ImageMLP"))


@register_student
class SmallCNN(nn.Module):
    """A small convolutional network for character images.

    Two stages of two ``3x3 conv - BatchNorm - ReLU`` layers, each stage followed by 2x2 max
    pooling (``width`` then ``2 * width`` channels), global average pooling, dropout and a linear
    head. About 17k parameters at ``width=16`` and 65k at ``width=32``.

    Args:
        in_chans: channels of the images.
        num_classes: number of logits.
        width: channels of the first stage.
        dropout: dropout before the head.

    Shapes:
        ``(N, in_chans, H, W)`` (any H, W >= 4) -> ``(N, num_classes)``.
    """

    def __init__(
        self, in_chans: int = 1, num_classes: int = 10, width: int = 16, dropout: float = 0.0
    ) -> None:
        super().__init__()
        for name, value in (("in_chans", in_chans), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"SmallCNN {name} must be a positive integer, got {value!r}.")
        self.in_chans, self.width = in_chans, width
        self.num_classes = _check_num_classes(num_classes, "SmallCNN")
        self.dropout = _check_dropout(dropout, "SmallCNN")

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        w = width
        self.features = nn.Sequential(
            *block(in_chans, w),
            *block(w, w),
            nn.MaxPool2d(2),
            *block(w, 2 * w),
            *block(2 * w, 2 * w),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(self.dropout), nn.Linear(2 * w, self.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` for images ``(N, in_chans, H, W)``.

        A single image ``(in_chans, H, W)`` is refused with a message that says to add the batch
        axis (``x[None]``): ``(1, H, W)`` could as well be one image or a batch of one grey image
        without its channel axis, so nothing is guessed.
        """
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            _check_batch_axis(x, "SmallCNN", (self.in_chans,))
            raise DataError(
                f"SmallCNN expects images of shape (N, {self.in_chans}, H, W), got "
                f"{tuple(x.shape)}. Create it with in_chans= the images' channel count."
            )
        return self.head(self.features(x.float()))

    def config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-safe."""
        return {
            "in_chans": self.in_chans,
            "num_classes": self.num_classes,
            "width": self.width,
            "dropout": self.dropout,
        }

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> SmallCNN:
        """A fresh SmallCNN from :meth:`config`'s output."""
        return cls(**_known(cfg, cls, "SmallCNN"))


@register_student
class TimmStudent(nn.Module):
    """Any timm model by name as a student (or as a teacher trained with ``alpha=0``).

    The model is created with ``pretrained=False`` and gets the images through its own
    :class:`~crosskd.vision.preprocess.ImagePreprocess` (channels, padding / resizing to
    ``input_size``, normalisation), so it reads the same ``[0, 1]`` batch as the other students.

    Args:
        name: timm model name, e.g. ``"resnet18"``, ``"resnet10t"``.
        num_classes: number of logits.
        in_chans: channels the model is built for.
        input_size: ``(H, W)`` the model reads (28x28 MNIST is zero-padded to 32x32 with
            ``(32, 32)``); None keeps the images' size.
        mean, std: normalisation after scaling to [0, 1].
        resize: ``"auto"``, ``"pad"`` or ``"bilinear"``.
        model_kwargs: extra constructor arguments for timm (JSON-safe, e.g.
            ``{"channels": [32, 64, 128, 256]}``).

    Shapes:
        ``(N, C, H, W)`` -> ``(N, num_classes)``.
    """

    def __init__(
        self,
        name: str,
        num_classes: int = 10,
        in_chans: int = 1,
        input_size: Sequence[int] | None = None,
        mean: Sequence[float] | float = 0.0,
        std: Sequence[float] | float = 1.0,
        resize: str = "auto",
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        from ..teachers.timm import create_timm_model

        self.name = name
        self.num_classes = _check_num_classes(num_classes, "TimmStudent")
        self.model_kwargs = dict(model_kwargs or {})
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in self.model_kwargs.items()}
        self.preprocess = ImagePreprocess(in_chans, input_size, mean, std, resize)
        self.model = create_timm_model(name, self.num_classes, in_chans, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)``."""
        return self.model(self.preprocess(x))

    def as_teacher(self, **kwargs: Any) -> Any:
        """This network as a :class:`crosskd.teachers.TimmTeacher` with the same preprocessing.

        ``kwargs`` go to ``TimmTeacher`` (``device``, ``precision``, ``channels_last``, ...). The
        model is shared, not copied: train it no further while the teacher is used.
        """
        from ..teachers.timm import TimmTeacher

        pre = self.preprocess
        return TimmTeacher(
            self.model,
            input_size=pre.input_size,
            mean=pre.mean,
            std=pre.std,
            resize=pre.resize,
            **kwargs,
        )

    def config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-safe."""
        pre = self.preprocess.config()
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "in_chans": pre["in_chans"],
            "input_size": pre["input_size"],
            "mean": pre["mean"],
            "std": pre["std"],
            "resize": pre["resize"],
            "model_kwargs": {
                k: list(v) if isinstance(v, tuple) else v for k, v in self.model_kwargs.items()
            },
        }

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> TimmStudent:
        """A fresh TimmStudent (timm model, no pretrained weights) from :meth:`config`'s output."""
        return cls(**_known(cfg, cls, "TimmStudent"))


def _check_batch_axis(x: torch.Tensor, owner: str, image_shape: Sequence[int]) -> None:
    """Say precisely what is wrong with a batch that lacks its batch or channel axis.

    ``image_shape`` is the model's ``(C, H, W)``, or just ``(C,)`` when any size is taken.
    """
    shape = tuple(x.shape)
    c = image_shape[0]
    any_size = len(image_shape) == 1
    if len(shape) == 3 and shape[0] == c and (any_size or shape == tuple(image_shape)):
        raise DataError(
            f"{owner} takes a batch of images (N, {c}, H, W) and got one image of shape "
            f"{shape} without the batch axis: add the batch axis: x[None] (shape {(1, *shape)})."
        )
    if len(shape) == 3 and c == 1 and (any_size or shape[1:] == tuple(image_shape[1:])):
        raise DataError(
            f"{owner} takes grey images (N, 1, H, W) and got {shape}, a batch without the channel "
            f"axis: add the channel axis: x[:, None] (shape {(shape[0], 1, *shape[1:])})."
        )


def _known(cfg: Any, cls: type, owner: str) -> dict[str, Any]:
    import inspect

    if not isinstance(cfg, dict):
        raise ConfigError(f"{owner}.from_config expects a dict, got {type(cfg).__name__}.")
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ConfigError(
            f"{owner}.from_config got unknown keys {unknown}; allowed keys are {sorted(allowed)}."
        )
    return dict(cfg)
