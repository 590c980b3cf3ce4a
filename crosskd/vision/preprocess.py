"""What an image model expects of its input, applied with torch ops on the device.

:class:`ImagePreprocess` turns a batch of images as crosskd keeps them (``(N, C, H, W)`` float in
[0, 1], or uint8 in [0, 255]) into the input one model expects: its channel count, its size (padded or
resized) and its normalisation. A teacher and a student can each carry their own, so the student may
read raw 28x28 pixels while the teacher reads 32x32 normalised ones from the same batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..exceptions import ConfigError, DataError

__all__ = ["ImagePreprocess", "RESIZE_MODES"]

#: ``"auto"`` pads (centred, with 0) when the image fits, and resizes bilinearly otherwise.
RESIZE_MODES = ("auto", "pad", "bilinear", "none")


def _floats(values: Sequence[float] | float, name: str) -> tuple[float, ...]:
    if isinstance(values, (int, float)):
        values = (float(values),)
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{name} must be a number or a sequence of numbers, got {values!r}."
        ) from None
    if not out:
        raise ConfigError(f"{name} must not be empty.")
    return out


class ImagePreprocess(nn.Module):
    """Channels, size and normalisation of a batch of images, on the batch's device.

    Args:
        in_chans: channels the model takes (1 or 3 usually). A 1-channel batch is repeated to 3
            channels; a 3-channel batch is averaged to 1 (luminance weights are not used: MNIST-like
            data is grey already).
        input_size: ``(H, W)`` the model takes, or None to keep the batch's size.
        mean: per-channel mean subtracted after scaling to [0, 1] (one value, or one per channel).
        std: per-channel standard deviation divided by (one value, or one per channel).
        resize: ``"auto"`` (pad when the image fits in ``input_size``, bilinear resize otherwise),
            ``"pad"`` (centred zero padding; larger images are centre-cropped), ``"bilinear"`` or
            ``"none"``.

    Shapes:
        ``forward(x)``: ``(N, C, H, W)`` or ``(N, H, W)``, float in [0, 1] or uint8 ->
        ``(N, in_chans, *input_size)`` float32. A 3-D ``(N, H, W)`` batch is grey images; one whose
        N equals ``in_chans`` (> 1) is refused as ambiguous, since it is most likely a single
        ``(C, H, W)`` image without the batch axis (add it with ``x[None]``).
    """

    def __init__(
        self,
        in_chans: int = 1,
        input_size: Sequence[int] | None = None,
        mean: Sequence[float] | float = 0.0,
        std: Sequence[float] | float = 1.0,
        resize: str = "auto",
    ) -> None:
        super().__init__()
        if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
            raise ConfigError(f"in_chans must be a positive integer, got {in_chans!r}.")
        if resize not in RESIZE_MODES:
            raise ConfigError(f"resize must be one of {RESIZE_MODES}, got {resize!r}.")
        size = None
        if input_size is not None:
            size = tuple(int(s) for s in input_size)
            if len(size) == 3:  # timm's (C, H, W)
                size = size[1:]
            if len(size) != 2 or min(size) < 1:
                raise ConfigError(
                    f"input_size must be (H, W) (or timm's (C, H, W)), got {input_size!r}."
                )
        mean_t, std_t = _floats(mean, "mean"), _floats(std, "std")
        for name, vals in (("mean", mean_t), ("std", std_t)):
            if len(vals) not in (1, in_chans):
                raise ConfigError(
                    f"{name} has {len(vals)} values for in_chans={in_chans}; give one value or "
                    f"{in_chans}."
                )
        if min(std_t) <= 0:
            raise ConfigError(f"std must be > 0, got {std_t}.")
        self.in_chans = in_chans
        self.input_size = size
        self.mean = mean_t
        self.std = std_t
        self.resize = resize
        self.register_buffer(
            "_mean", torch.tensor(mean_t, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "_std", torch.tensor(std_t, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )

    def config(self) -> dict[str, Any]:
        """The constructor arguments as a JSON-safe dict (what ``TeacherInfo.preprocessing`` holds)."""
        return {
            "in_chans": self.in_chans,
            "input_size": None if self.input_size is None else list(self.input_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": self.resize,
            "input_range": [0.0, 1.0],
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's input for the batch ``x`` (see the class docstring for shapes)."""
        if not torch.is_tensor(x):
            raise DataError(f"ImagePreprocess expects a tensor, got {type(x).__name__}.")
        if x.ndim == 3:
            if self.in_chans > 1 and x.shape[0] == self.in_chans:
                raise DataError(
                    f"Images must have shape (N, C, H, W) or (N, H, W); got {tuple(x.shape)}, which "
                    f"looks like one {self.in_chans}-channel image without the batch axis: add the "
                    f"batch axis: x[None]. (For {x.shape[0]} grey images, add the channel axis: "
                    "x[:, None].)"
                )
            x = x.unsqueeze(1)
        if x.ndim != 4:
            raise DataError(
                f"Images must have shape (N, C, H, W) or (N, H, W); got {tuple(x.shape)}. A flat "
                "(N, H*W) batch must be reshaped to images first."
            )
        x = x.float() / 255.0 if not x.is_floating_point() else x.float()
        c = x.shape[1]
        if c != self.in_chans:
            if c == 1:
                x = x.expand(-1, self.in_chans, -1, -1)
            elif self.in_chans == 1:
                x = x.mean(dim=1, keepdim=True)
            else:
                raise DataError(
                    f"The images have {c} channels but the model takes {self.in_chans}; only 1 <-> "
                    "N channel conversions are automatic. Convert the images first."
                )
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = self._fit_size(x)
        return (x - self._mean) / self._std

    def _fit_size(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        th, tw = self.input_size  # type: ignore[misc]
        mode = self.resize
        if mode == "none":
            raise DataError(
                f"The images are {h}x{w} but the model takes {th}x{tw}, and resize='none'. Use "
                "resize='pad' or 'bilinear'."
            )
        if mode == "auto":
            mode = "pad" if (h <= th and w <= tw) else "bilinear"
        if mode == "bilinear":
            return F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False)
        # centred padding (negative padding crops)
        top, left = (th - h) // 2, (tw - w) // 2
        return F.pad(x, (left, tw - w - left, top, th - h - top))

    def extra_repr(self) -> str:
        return (
            f"in_chans={self.in_chans}, input_size={self.input_size}, mean={self.mean}, "
            f"std={self.std}, resize={self.resize!r}"
        )
