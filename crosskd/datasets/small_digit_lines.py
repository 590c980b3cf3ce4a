"""Lines of small, low-resolution handwritten digits: scikit-learn's 8x8 digit scans side by side.

A second real line set nobody tuned a recipe on, closer to small clean crops (licence plates, form
fields) than the captcha or the MNIST lines: each digit is an 8x8 scan with 17 grey levels
(scikit-learn's ``load_digits``, the UCI optical-recognition set of 43 writers), so a line is 10
pixels high before the reader scales it up to the line height. Lines hold 4 to 8 digits with
spacing, overlap and a vertical jitter of one pixel (:func:`crosskd.datasets.digit_lines.make_digit_lines`).
Training lines use the first :data:`TRAIN_DIGITS` scans and test lines the rest only, so no scan
is in both (the set is ordered by writer blocks, so test digits come mostly from other writers).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..exceptions import ConfigError
from .digit_lines import write_digit_lines

__all__ = ["TRAIN_DIGITS", "load_small_digits", "write_small_digit_lines"]

#: scans ``[0, TRAIN_DIGITS)`` build training lines, the remaining 597 build test lines.
TRAIN_DIGITS = 1200
#: :func:`~crosskd.datasets.digit_lines.make_digit_lines` settings for 8x8 digits.
LINE_SETTINGS: dict[str, int | tuple[int, int]] = {
    "min_digits": 4,
    "max_digits": 8,
    "spacing": (-1, 2),
    "vertical_jitter": 1,
    "margin": (1, 3),
}


def load_small_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits of one split: ``(N, 8, 8)`` float32 in [0, 1] (ink high) and
    ``(N,)`` int labels; ``split`` is ``"train"`` (the first :data:`TRAIN_DIGITS` scans) or
    ``"test"`` (the rest)."""
    from sklearn.datasets import load_digits

    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}.")
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    y = digits.target.astype(int)
    part = slice(0, TRAIN_DIGITS) if split == "train" else slice(TRAIN_DIGITS, None)
    return x[part], y[part]


def write_small_digit_lines(
    folder: str | os.PathLike[str], split: str, n_lines: int, *, seed: int = 0
) -> Path:
    """Write ``n_lines`` lines of one split's 8x8 digits (``folder/images/*.png`` and
    ``folder/lines.tsv``, as :func:`~crosskd.datasets.digit_lines.write_digit_lines`); returns the
    TSV's path."""
    x, y = load_small_digits(split)
    return write_digit_lines(folder, x, y, n_lines, seed=seed, **LINE_SETTINGS)
