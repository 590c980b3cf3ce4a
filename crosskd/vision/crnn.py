"""CRNN text-line recognisers for CTC: a CNN backbone, height folded away, a sequence head.

``(N, C, H, W)`` images -> backbone feature map ``(N, D, H', W')`` -> each column's ``D x H'``
features flattened (``pool="flatten"``, the default; or averaged over the height with
``pool="mean"``) -> ``(N, W', D*H')`` frames along the width -> sequence head ->
``(N, W', num_classes)`` logits, class 0 the CTC blank. The backbone is any timm CNN (built with ``features_only=True``) or ``"tiny"``, a
small pure-torch CNN for students.

The number of frames ``W'`` is the input width divided by the backbone's horizontal reduction. CTC
needs at least one frame per character (plus one between repeated characters), so the backbone
feature level is chosen by ``max_reduction``: the deepest level whose reduction is at most that
(8 by default: a 128-pixel-wide line gives 16 frames). ``output_stride`` (timm's dilation option)
keeps deeper levels at a finer resolution instead.

The all-blank plateau: CTC first learns to output the blank everywhere (every alignment contains
blanks); a model can stay there for many epochs. Measured on the captcha lines (5 folds, labels
only, 12-20 epochs): a 36k-parameter ``"tiny"`` CRNN with ``pool="mean"`` stayed all-blank on 2 of
5 folds, and on those folds neither lr 1e-3 / 1e-2, nor batch 8, nor a blank-bias initialisation
helped; flattening the height (``pool="flatten"``, which keeps where a stroke sits vertically) left
1 of 5 stuck; a deeper backbone (2 of 5 stuck) or a 5-wide head (1 of 5) did not remove it, and on
a 16k-parameter one a dilated head and a BiLSTM head made it worse (all folds stuck). The
``resnet18`` CRNNs up to ``layer2`` / ``layer3`` (16 frames) left it within 3 epochs in the 3 runs
where that was logged. What removes it is
starting again from new weights: :class:`crosskd.vision.CTCDistiller` does that by itself
(``plateau_restarts``), after warming the learning rate up and with gradient clipping. The
flattened frames make the model tied to its input height (``height``, checked in ``forward``). The
head is convolutional by default (``head="conv"``); the BiLSTM head has a linear skip connection
from its input to its output and forget-gate biases of 1.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..exceptions import ConfigError, DataError
from ..io import register_student
from ..tabular.students import _check_dropout, _check_num_classes
from .students import _known

__all__ = ["CRNN", "TinyBackbone"]

HEADS = ("conv", "bilstm")
POOLS = ("flatten", "mean")


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"CRNN {name} must be a positive integer, got {value!r}.")
    return value


class TinyBackbone(nn.Module):
    """A small pure-torch CNN for student CRNNs: three ``3x3 conv - BatchNorm - ReLU`` stages of
    ``width``, ``2*width``, ``4*width`` channels, each followed by max pooling (2x2, 2x2, then 2x1:
    height only), so the horizontal reduction is 4. About ``100 * width**2`` parameters.

    Shapes:
        ``(N, in_chans, H, W)`` -> ``(N, 4*width, H/8, W/4)``.
    """

    reduction = 4

    def __init__(self, in_chans: int = 1, width: int = 16) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.body = nn.Sequential(
            *block(in_chans, w),
            nn.MaxPool2d(2),
            *block(w, 2 * w),
            nn.MaxPool2d(2),
            *block(2 * w, 4 * w),
            nn.MaxPool2d((2, 1)),
        )
        self.out_channels = 4 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map ``(N, 4*width, H/8, W/4)``."""
        return self.body(x)


class _TimmBackbone(nn.Module):
    """One feature level of a timm ``features_only`` model."""

    def __init__(
        self,
        name: str,
        in_chans: int,
        max_reduction: int,
        out_index: int | None,
        output_stride: int | None,
        model_kwargs: dict[str, Any],
    ) -> None:
        super().__init__()
        try:
            import timm
        except ImportError:  # pragma: no cover - timm is a dependency
            raise ConfigError("A timm CRNN backbone needs timm: pip install timm.") from None
        if not timm.is_model(name):
            close = timm.list_models(f"*{name}*")[:8]
            raise ConfigError(
                f"timm has no model named {name!r} (similar: {close or 'none'}). Use a timm CNN "
                "name such as 'resnet18', 'lcnet_050', 'mobilenetv3_small_050', or 'tiny'."
            )
        kwargs: dict[str, Any] = dict(model_kwargs)
        if output_stride is not None:
            kwargs["output_stride"] = output_stride

        def create(indices: tuple[int, ...] | None) -> nn.Module:
            extra = {} if indices is None else {"out_indices": indices}
            try:
                return timm.create_model(
                    name, pretrained=False, features_only=True, in_chans=in_chans, **kwargs, **extra
                )
            except (RuntimeError, TypeError, ValueError, AssertionError) as exc:
                raise ConfigError(
                    f"timm could not build {name!r} with features_only=True ({exc}). Choose a CNN "
                    "that supports feature extraction, or another out_index / output_stride."
                ) from None

        probe = create(None)
        reductions = [int(r) for r in probe.feature_info.reduction()]
        if out_index is None:
            fitting = [i for i, r in enumerate(reductions) if r <= max_reduction]
            if not fitting:
                raise ConfigError(
                    f"{name!r} has no feature level with horizontal reduction <= {max_reduction} "
                    f"(its levels reduce by {reductions}). Raise max_reduction."
                )
            index = fitting[-1]
        else:
            if not -len(reductions) <= out_index < len(reductions):
                raise ConfigError(
                    f"out_index={out_index} is out of range for {name!r}, whose {len(reductions)} "
                    f"feature levels reduce by {reductions}."
                )
            index = out_index % len(reductions)
        # Levels are numbered 0.. in timm's feature_info; out_indices take the same numbering.
        module_index = probe.feature_info.out_indices[index]
        self.model = create((module_index,))
        self.reduction = reductions[index]
        self.out_channels = int(self.model.feature_info.channels()[-1])
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[-1]


class _ConvHead(nn.Module):
    """Two ``1-D conv (k=3) - BatchNorm - ReLU`` layers along the frames."""

    def __init__(self, in_channels: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(in_channels, hidden, 3, padding=1, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Conv1d(hidden, hidden, 3, padding=1, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.out_features = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, D) -> (N, T, hidden)
        return self.net(x.transpose(1, 2)).transpose(1, 2)


class _BiLSTMHead(nn.Module):
    """A 2-layer bidirectional LSTM plus a linear skip from its input to its output."""

    def __init__(self, in_channels: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            in_channels,
            hidden,
            num_layers=2,
            bidirectional=True,
            batch_first=True,
            dropout=dropout,
        )
        self.skip = nn.Linear(in_channels, 2 * hidden)
        self.out_features = 2 * hidden
        self.hidden = hidden
        self._forget_bias()

    def reset_parameters(self) -> None:
        """Fresh weights, with the forget-gate biases of 1."""
        self.lstm.reset_parameters()
        self.skip.reset_parameters()
        self._forget_bias()

    @torch.no_grad()
    def _forget_bias(self) -> None:
        for name, param in self.lstm.named_parameters():
            if name.startswith("bias"):
                # gates are (input, forget, cell, output): forget-gate bias 1, the rest 0
                param.zero_()
                param[self.hidden : 2 * self.hidden] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, D) -> (N, T, 2*hidden)
        out, _ = self.lstm(x)
        return out + self.skip(x)


@register_student
class CRNN(nn.Module):
    """A CRNN for CTC text-line recognition (teacher or student).

    Args:
        backbone: ``"tiny"`` (:class:`TinyBackbone`) or a timm CNN name (``"resnet18"``,
            ``"resnet34"``, ``"lcnet_050"``, ``"mobilenetv3_small_050"``, ...), built without
            pretrained weights.
        num_classes: outputs per frame, including the blank (``alphabet.num_classes``).
        in_chans: channels of the images (1 for grey).
        head: ``"conv"`` (default: two 1-D convolutions; trains at once) or ``"bilstm"`` (a
            2-layer BiLSTM with a skip connection; see the module docstring on the blank plateau).
        hidden: width of the head (per direction for the BiLSTM).
        height: the height of the images the model reads (:func:`crosskd.vision.load_textlines`
            ``height``); with ``pool="flatten"`` other heights are refused.
        pool: how a feature column becomes a frame: ``"flatten"`` (all ``D x H'`` features; the
            default, see the module docstring on the blank plateau) or ``"mean"`` (the average over
            the height: fewer head parameters, any input height).
        width: channels of the first stage of the ``"tiny"`` backbone (ignored for timm).
        max_reduction: for timm backbones, the largest horizontal reduction allowed; the deepest
            feature level within it is used (ignored when ``out_index`` is given).
        out_index: for timm backbones, the feature level to use (0 = the shallowest).
        output_stride: for timm backbones that support it, their ``output_stride`` (dilation).
        dropout: dropout in the head.
        model_kwargs: extra JSON-safe arguments for ``timm.create_model``.

    Shapes:
        ``(N, in_chans, height, W)`` float in [0, 1] -> ``(N, frames, num_classes)`` logits with
        ``frames = W / reduction`` (see :meth:`output_frames`).
    """

    def __init__(
        self,
        backbone: str = "tiny",
        num_classes: int = 20,
        in_chans: int = 1,
        head: str = "conv",
        hidden: int = 64,
        height: int = 32,
        pool: str = "flatten",
        width: int = 16,
        max_reduction: int = 8,
        out_index: int | None = None,
        output_stride: int | None = None,
        dropout: float = 0.0,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, str) or not backbone:
            raise ConfigError(
                f"CRNN backbone must be 'tiny' or a timm model name, got {backbone!r}."
            )
        if head not in HEADS:
            raise ConfigError(f"CRNN head must be one of {HEADS}, got {head!r}.")
        self.backbone_name = backbone
        self.num_classes = _check_num_classes(num_classes, "CRNN")
        self.in_chans = _positive_int(in_chans, "in_chans")
        self.head_name = head
        self.hidden = _positive_int(hidden, "hidden")
        self.height = _positive_int(height, "height")
        if pool not in POOLS:
            raise ConfigError(f"CRNN pool must be one of {POOLS}, got {pool!r}.")
        self.pool = pool
        self.width = _positive_int(width, "width")
        self.max_reduction = _positive_int(max_reduction, "max_reduction")
        if out_index is not None and (
            isinstance(out_index, bool) or not isinstance(out_index, int)
        ):
            raise ConfigError(f"CRNN out_index must be an integer or None, got {out_index!r}.")
        self.out_index = out_index
        if output_stride is not None:
            _positive_int(output_stride, "output_stride")
        self.output_stride = output_stride
        self.dropout = _check_dropout(dropout, "CRNN")
        self.model_kwargs = dict(model_kwargs or {})
        if backbone == "tiny":
            self.backbone: nn.Module = TinyBackbone(self.in_chans, self.width)
        else:
            kwargs = {
                k: tuple(v) if isinstance(v, list) else v for k, v in self.model_kwargs.items()
            }
            self.backbone = _TimmBackbone(
                backbone, self.in_chans, self.max_reduction, out_index, output_stride, kwargs
            )
        self.reduction = int(self.backbone.reduction)
        channels = self.backbone.out_channels
        self.feature_height = self._feature_height()
        if pool == "flatten":
            channels *= self.feature_height
        if head == "conv":
            self.head: nn.Module = _ConvHead(channels, self.hidden, self.dropout)
        else:
            self.head = _BiLSTMHead(channels, self.hidden, self.dropout)
        self.classifier = nn.Linear(self.head.out_features, self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, frames, num_classes)`` for images ``(N, in_chans, H, W)``."""
        if x.ndim == 3 and x.shape[0] == self.in_chans:
            raise DataError(
                f"CRNN takes a batch (N, {self.in_chans}, H, W) and got one image of shape "
                f"{tuple(x.shape)} without the batch axis: add the batch axis: x[None]."
            )
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise DataError(
                f"CRNN expects images of shape (N, {self.in_chans}, H, W), got {tuple(x.shape)}. "
                "Create it with in_chans= the images' channel count."
            )
        if self.pool == "flatten" and x.shape[2] != self.height:
            raise DataError(
                f"This CRNN reads lines {self.height} pixels high (pool='flatten'), got images of "
                f"height {x.shape[2]}. Read them with load_textlines(height={self.height}), or "
                "build the CRNN with height= their height."
            )
        features = self.backbone(x.float())  # (N, D, H', W')
        if self.pool == "flatten":
            frames = features.flatten(1, 2).transpose(1, 2)  # (N, W', D*H')
        else:
            frames = features.mean(dim=2).transpose(1, 2)  # (N, W', D)
        return self.classifier(self.head(frames))

    @torch.no_grad()
    def _feature_height(self) -> int:
        """Rows of the backbone's feature map for ``height``-pixel lines (a dry run)."""
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            probe = torch.zeros(1, self.in_chans, self.height, 4 * self.reduction)
            rows = int(self.backbone(probe).shape[2])
        except RuntimeError as exc:
            raise ConfigError(
                f"The {self.backbone_name!r} backbone cannot read lines {self.height} pixels high "
                f"({exc}). Use taller lines (height=)."
            ) from None
        finally:
            self.backbone.train(was_training)
        return rows

    @torch.no_grad()
    def output_frames(self, height: int, width: int) -> int:
        """Number of frames the model gives for ``height x width`` images (a dry run)."""
        was_training = self.training
        self.eval()
        try:
            device = next(self.parameters()).device
            dummy = torch.zeros(1, self.in_chans, int(height), int(width), device=device)
            return int(self(dummy).shape[1])
        finally:
            self.train(was_training)

    def config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-safe (:meth:`from_config` inverts it)."""
        return {
            "backbone": self.backbone_name,
            "num_classes": self.num_classes,
            "in_chans": self.in_chans,
            "head": self.head_name,
            "hidden": self.hidden,
            "height": self.height,
            "pool": self.pool,
            "width": self.width,
            "max_reduction": self.max_reduction,
            "out_index": self.out_index,
            "output_stride": self.output_stride,
            "dropout": self.dropout,
            "model_kwargs": {
                k: list(v) if isinstance(v, tuple) else v for k, v in self.model_kwargs.items()
            },
        }

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> CRNN:
        """A fresh CRNN (no pretrained weights) from :meth:`config`'s output."""
        # configs saved before ``pool`` existed describe mean-pooled models
        return cls(**_known({"pool": "mean", **cfg}, cls, "CRNN"))
