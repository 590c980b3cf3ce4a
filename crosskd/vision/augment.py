"""Batch augmentation on the device, for :class:`crosskd.Distiller`'s ``augment`` argument.

An augmentation is a callable ``batch -> batch``: ``batch`` is the trainer's tuple of tensors (the
images first, ``(N, C, H, W)``) or a single tensor. The trainer applies it once per training batch,
on the device, *before* the student and an online teacher see the batch, so both read the same
augmented images. Randomness comes from a ``torch.Generator`` seeded with ``seed`` (one per
device), so runs are repeatable.

Example:
    >>> shift = RandomShift(max_shift=2, seed=0)        # the paper's jitter
    >>> Distiller(None, teacher_net, alpha=0, augment=shift).fit(x, y)
    >>> CTCDistiller(None, crnn, alpha=0, augment=textline_augment(seed=0))  # text lines
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..exceptions import ConfigError, DataError

__all__ = [
    "BatchAugment",
    "RandomShift",
    "RandomAffine",
    "RandomBlur",
    "RandomNoise",
    "Compose",
    "textline_augment",
    "textline_augment_candidates",
]

Batch = tuple[torch.Tensor, ...] | torch.Tensor


class BatchAugment:
    """Base class: seeded per-device generators and the tuple handling; subclasses do ``_apply``."""

    def __init__(self, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed must be an integer, got {seed!r}.")
        self.seed = seed
        self._generators: dict[str, torch.Generator] = {}

    def reset(self) -> None:
        """Forget the generators: the next batches get the same random draws as a fresh object."""
        self._generators.clear()

    def rng_state(self) -> dict[str, list[int]]:
        """The states of this augmentation's generators (JSON values), for training checkpoints."""
        return {key: g.get_state().tolist() for key, g in self._generators.items()}

    def set_rng_state(self, state: dict[str, list[int]]) -> None:
        """Restore the generators' states returned by :meth:`rng_state`."""
        self._generators.clear()
        for key, values in state.items():
            g = torch.Generator(device=torch.device(key))
            g.set_state(torch.tensor(values, dtype=torch.uint8))
            self._generators[key] = g

    def generator(self, device: torch.device) -> torch.Generator:
        """The generator for ``device`` (created, seeded with ``seed``, on first use)."""
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[key]

    def __call__(self, batch: Batch) -> Batch:
        """Augment the images of ``batch`` (its first tensor); other tensors pass through."""
        if torch.is_tensor(batch):
            return self._checked(batch)
        if not isinstance(batch, tuple) or not batch:
            raise DataError(
                f"{type(self).__name__} expects a tensor or a tuple of tensors with the images "
                f"first, got {type(batch).__name__}."
            )
        return (self._checked(batch[0]), *batch[1:])

    def _checked(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise DataError(
                f"{type(self).__name__} augments image batches of shape (N, C, H, W); got "
                f"{tuple(x.shape)}. Give the trainer images (crosskd.vision.as_images), not flat rows."
            )
        if not x.is_floating_point():
            raise DataError(
                f"{type(self).__name__} needs float images (in [0, 1]), got {x.dtype}. Use "
                "crosskd.vision.as_images."
            )
        return self._apply(x)

    def _apply(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class RandomShift(BatchAugment):
    """Shift every image by a random whole number of pixels, up to ``max_shift`` each way.

    Hinton et al. (2015) jittered MNIST inputs "by up to two pixels in any direction". Each image
    gets its own ``(dy, dx)``, drawn uniformly from ``{-max_shift, ..., max_shift}``; pixels shifted
    in are ``fill``.

    Args:
        max_shift: largest shift in pixels (>= 0).
        fill: value of the pixels shifted in (0: black background).
        seed: seed of the generator.

    Shapes:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``, same dtype and device.
    """

    def __init__(self, max_shift: int = 2, fill: float = 0.0, seed: int = 0) -> None:
        super().__init__(seed)
        if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
            raise ConfigError(f"max_shift must be an integer >= 0, got {max_shift!r}.")
        self.max_shift = max_shift
        self.fill = float(fill)

    def __repr__(self) -> str:
        return f"RandomShift(max_shift={self.max_shift}, fill={self.fill}, seed={self.seed})"

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        p = self.max_shift
        if p == 0:
            return x
        n, c, h, w = x.shape
        g = self.generator(x.device)
        shifts = torch.randint(-p, p + 1, (2, n), generator=g, device=x.device)
        padded = F.pad(x, (p, p, p, p), value=self.fill)
        rows = torch.arange(h, device=x.device)[None, :] + p - shifts[0][:, None]  # (n, h)
        cols = torch.arange(w, device=x.device)[None, :] + p - shifts[1][:, None]  # (n, w)
        n_idx = torch.arange(n, device=x.device)[:, None, None, None]
        c_idx = torch.arange(c, device=x.device)[None, :, None, None]
        return padded[n_idx, c_idx, rows[:, None, :, None], cols[:, None, None, :]]


class RandomAffine(BatchAugment):
    """Small random rotations, scalings and translations (bilinear), one per image.

    Args:
        degrees: largest rotation either way, in degrees.
        scale: ``(low, high)`` range of the zoom factor.
        translate: largest translation as a fraction of the image size (0.1: 10%).
        fill: only 0 is supported (grid_sample pads with zeros).
        seed: seed of the generator.

    Shapes:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """

    def __init__(
        self,
        degrees: float = 10.0,
        scale: Sequence[float] = (0.9, 1.1),
        translate: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        try:
            lo, hi = (float(s) for s in scale)
        except (TypeError, ValueError):
            raise ConfigError(
                f"scale must be (low, high) with 0 < low <= high, got {scale!r}."
            ) from None
        if not (0 < lo <= hi):
            raise ConfigError(f"scale must be (low, high) with 0 < low <= high, got {scale!r}.")
        if degrees < 0 or translate < 0:
            raise ConfigError(
                f"degrees and translate must be >= 0, got {degrees!r} and {translate!r}."
            )
        self.degrees, self.scale, self.translate = float(degrees), (lo, hi), float(translate)

    def __repr__(self) -> str:
        return (
            f"RandomAffine(degrees={self.degrees}, scale={self.scale}, "
            f"translate={self.translate}, seed={self.seed})"
        )

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        g = self.generator(x.device)
        u = torch.rand((4, n), generator=g, device=x.device, dtype=torch.float32)
        angle = (u[0] * 2 - 1) * math.radians(self.degrees)
        zoom = self.scale[0] + u[1] * (self.scale[1] - self.scale[0])
        tx, ty = (u[2] * 2 - 1) * 2 * self.translate, (u[3] * 2 - 1) * 2 * self.translate
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [torch.stack([cos, -sin, tx], dim=1), torch.stack([sin, cos, ty], dim=1)], dim=1
        )
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _range(value: Any, name: str) -> tuple[float, float]:
    """``(low, high)`` of finite numbers with ``0 <= low <= high``, else a ConfigError."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{name} must be a pair (low, high) of numbers with 0 <= low <= high, got {value!r}."
        ) from None
    if any(isinstance(v, bool) for v in value) or not (math.isfinite(hi) and 0.0 <= lo <= hi):
        raise ConfigError(
            f"{name} must be a pair (low, high) of numbers with 0 <= low <= high, got {value!r}."
        )
    return lo, hi


def _probability(p: Any) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ConfigError(
            f"p (the probability of augmenting an image) must be in [0, 1], got {p!r}."
        )
    return float(p)


class RandomBlur(BatchAugment):
    """Gaussian blur with a random ``sigma`` per image, applied to each image with probability ``p``.

    Each image is chosen with probability ``p``; a chosen image is blurred with a separable Gaussian
    kernel whose ``sigma`` (in pixels) is drawn uniformly from ``sigma``. The kernel's radius is
    ``ceil(3 * sigma[1])`` and borders are padded by repeating the edge pixels, so a constant image
    stays constant. Images not chosen pass through unchanged.

    Args:
        sigma: ``(low, high)`` range of the blur's standard deviation in pixels, ``0 <= low <=
            high`` (``(0, 0)``: no blur).
        p: probability that an image is blurred, in [0, 1].
        seed: seed of the generator.

    Shapes:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``, same dtype and device.
    """

    def __init__(self, sigma: Sequence[float] = (0.1, 1.0), p: float = 0.5, seed: int = 0) -> None:
        super().__init__(seed)
        self.sigma = _range(sigma, "sigma")
        self.p = _probability(p)

    def __repr__(self) -> str:
        return f"RandomBlur(sigma={self.sigma}, p={self.p}, seed={self.seed})"

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = self.generator(x.device)
        u = torch.rand((2, n), generator=g, device=x.device, dtype=torch.float32)
        chosen = torch.nonzero(u[0] < self.p).flatten()
        lo, hi = self.sigma
        if len(chosen) == 0 or hi == 0:
            return x
        sigma = (lo + u[1, chosen] * (hi - lo)).clamp_min(1e-3)  # (m,)
        radius = max(1, math.ceil(3 * hi))
        offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)
        kernel = (kernel / kernel.sum(dim=1, keepdim=True)).to(x.dtype)  # (m, k)
        m, k = len(chosen), 2 * radius + 1
        weights = kernel.repeat_interleave(c, dim=0)  # one kernel per (image, channel) group
        y = x[chosen].reshape(1, m * c, h, w)
        y = F.pad(y, (radius, radius, radius, radius), mode="replicate")
        y = F.conv2d(y, weights.view(m * c, 1, 1, k), groups=m * c)  # along the width
        y = F.conv2d(y, weights.view(m * c, 1, k, 1), groups=m * c)  # along the height
        out = x.clone()
        out[chosen] = y.view(m, c, h, w)
        return out


class RandomNoise(BatchAugment):
    """Additive Gaussian noise with a random standard deviation per image, with probability ``p``.

    Each image is chosen with probability ``p``; a chosen image gets independent ``N(0, std^2)``
    noise on every pixel, ``std`` drawn uniformly from ``std``, and is then clamped to [0, 1].
    Images not chosen pass through unchanged.

    Args:
        std: ``(low, high)`` range of the noise's standard deviation, in units of the [0, 1] pixel
            range, ``0 <= low <= high``.
        p: probability that an image gets noise, in [0, 1].
        seed: seed of the generator.

    Shapes:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``, same dtype and device.
    """

    def __init__(self, std: Sequence[float] = (0.0, 0.05), p: float = 0.5, seed: int = 0) -> None:
        super().__init__(seed)
        self.std = _range(std, "std")
        self.p = _probability(p)

    def __repr__(self) -> str:
        return f"RandomNoise(std={self.std}, p={self.p}, seed={self.seed})"

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        g = self.generator(x.device)
        u = torch.rand((2, n), generator=g, device=x.device, dtype=torch.float32)
        noise = torch.randn(x.shape, generator=g, device=x.device, dtype=torch.float32)
        chosen = u[0] < self.p
        if not bool(chosen.any()):
            return x
        lo, hi = self.std
        std = lo + u[1] * (hi - lo)
        noisy = (x + (std.view(n, 1, 1, 1) * noise).to(x.dtype)).clamp(0.0, 1.0)
        return torch.where(chosen.view(n, 1, 1, 1), noisy, x)


class Compose(BatchAugment):
    """Apply augmentations one after the other (each keeps its own generator and seed)."""

    def __init__(self, *augments: BatchAugment) -> None:
        super().__init__(0)
        for a in augments:
            if not callable(a):
                raise ConfigError(f"Compose takes callables, got {type(a).__name__}.")
        self.augments = augments

    def reset(self) -> None:
        for a in self.augments:
            if hasattr(a, "reset"):
                a.reset()

    def rng_state(self) -> list[object]:  # type: ignore[override]
        return [a.rng_state() if hasattr(a, "rng_state") else None for a in self.augments]

    def set_rng_state(self, state: list[object]) -> None:  # type: ignore[override]
        for a, part in zip(self.augments, state, strict=False):
            if part is not None and hasattr(a, "set_rng_state"):
                a.set_rng_state(part)

    def __repr__(self) -> str:
        return f"Compose({', '.join(repr(a) for a in self.augments)})"

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        for a in self.augments:
            x = a(x)
        return x


def textline_augment(
    seed: int = 0,
    *,
    degrees: float = 3.0,
    scale: Sequence[float] = (0.95, 1.05),
    translate: float = 0.03,
    blur: Sequence[float] = (0.1, 1.0),
    blur_p: float = 0.3,
    noise: Sequence[float] = (0.0, 0.05),
    noise_p: float = 0.3,
) -> Compose:
    """A default augmentation for text-line images: a small affine jitter, some blur, some noise.

    ``Compose(RandomAffine(degrees, scale, translate), RandomBlur(blur, blur_p),
    RandomNoise(noise, noise_p))``. Each part gets its own seed (``3 * seed``, ``3 * seed + 1``,
    ``3 * seed + 2``), so their random draws are independent and no two values of ``seed`` share a
    stream.

    Args:
        seed: seed of the three generators.
        degrees, scale, translate: :class:`RandomAffine`'s rotation, zoom range and translation.
        blur, blur_p: :class:`RandomBlur`'s ``sigma`` range (pixels) and probability.
        noise, noise_p: :class:`RandomNoise`'s ``std`` range and probability.

    Returns:
        The :class:`Compose` (for ``CTCDistiller(augment=...)`` or ``Distiller(augment=...)``).
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, got {seed!r}.")
    return Compose(
        RandomAffine(degrees=degrees, scale=scale, translate=translate, seed=3 * seed),
        RandomBlur(sigma=blur, p=blur_p, seed=3 * seed + 1),
        RandomNoise(std=noise, p=noise_p, seed=3 * seed + 2),
    )


def textline_augment_candidates(seed: int = 0) -> dict[str, Compose | None]:
    """The augmentations ``CTCDistiller(augment="auto")`` chooses between on the validation lines:
    ``{"none": None, "default": textline_augment(seed)}``.

    The default augmentation helps on noisy, distorted lines (the captcha set) and stops a model
    learning on small clean crops (photographed licence plates); which one a data set needs is
    measured, not assumed (``benchmarks/textline_defaults.py``).
    """
    return {"none": None, "default": textline_augment(seed)}
