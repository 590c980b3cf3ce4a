"""Lines of real handwritten digits, built from MNIST: a text-line set nobody tuned a recipe on.

Each line holds 3 to 10 MNIST digits side by side, cropped to their ink, with random spacing
(negative spacing overlaps neighbours, as in joined handwriting), a random vertical offset per
digit and a random left margin. Training lines are built from MNIST's training digits only and
test lines from its test digits only, so no digit image is seen in both. The label is the digit
string. :func:`write_digit_lines` writes a folder with ``images/`` and a ``lines.tsv``
(``path<TAB>label``) that ``crosskd distill --task textline --data`` reads.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..exceptions import ConfigError

__all__ = ["make_digit_lines", "write_digit_lines"]


def _ink_columns(image: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """The digit cropped to the columns that hold ink (at least one column)."""
    cols = np.flatnonzero(image.max(axis=0) > threshold)
    if cols.size == 0:
        return image[:, 12:16]
    return image[:, cols[0] : cols[-1] + 1]


def make_digit_lines(
    images: np.ndarray,
    labels: np.ndarray,
    n_lines: int,
    *,
    min_digits: int = 3,
    max_digits: int = 10,
    spacing: tuple[int, int] = (-3, 6),
    vertical_jitter: int = 3,
    margin: tuple[int, int] = (2, 10),
    seed: int = 0,
) -> tuple[list[np.ndarray], list[str]]:
    """Build ``n_lines`` lines of handwritten digits.

    Args:
        images: ``(N, 1, 28, 28)`` or ``(N, 28, 28)`` digits, float in [0, 1] (ink high), as
            :func:`crosskd.vision.load_mnist` returns them.
        labels: ``(N,)`` digit labels.
        n_lines: how many lines.
        min_digits, max_digits: digits per line (uniform).
        spacing: gap between neighbouring digits in pixels, ``[low, high]`` (negative: overlap).
        vertical_jitter: largest vertical offset of a digit, in pixels (each way).
        margin: left and right margin in pixels, ``[low, high]``.
        seed: seed of every random choice.

    Returns:
        ``(lines, texts)``: uint8 grey images ``(28 + 2 * vertical_jitter, width)``, dark ink on a
        light background (like printed lines), and their digit strings.
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 4:
        x = x[:, 0]
    y = np.asarray(labels).astype(int)
    if x.ndim != 3 or len(x) != len(y) or len(x) == 0:
        raise ConfigError(
            f"images must be (N, 28, 28) or (N, 1, 28, 28) with one label each; got {x.shape} "
            f"and {len(y)} labels."
        )
    if not 1 <= min_digits <= max_digits:
        raise ConfigError(f"need 1 <= min_digits <= max_digits, got {min_digits}, {max_digits}.")
    rng = np.random.default_rng(seed)
    height = x.shape[1] + 2 * vertical_jitter
    lines, texts = [], []
    for _ in range(n_lines):
        count = int(rng.integers(min_digits, max_digits + 1))
        picks = rng.integers(0, len(x), size=count)
        glyphs = [_ink_columns(x[i]) for i in picks]
        gaps = rng.integers(spacing[0], spacing[1] + 1, size=max(0, count - 1))
        left, right = (int(v) for v in rng.integers(margin[0], margin[1] + 1, size=2))
        width = left + right + sum(g.shape[1] for g in glyphs) + int(gaps.sum())
        width = max(width, left + right + max(g.shape[1] for g in glyphs))
        canvas = np.zeros((height, width), dtype=np.float32)
        pos = left
        for k, glyph in enumerate(glyphs):
            top = vertical_jitter + int(rng.integers(-vertical_jitter, vertical_jitter + 1))
            h, w = glyph.shape
            region = canvas[top : top + h, pos : pos + w]
            np.maximum(region, glyph[: region.shape[0], : region.shape[1]], out=region)
            pos += w + (int(gaps[k]) if k < len(gaps) else 0)
            pos = max(pos, 0)
        lines.append((255 - np.clip(canvas, 0, 1) * 255).round().astype(np.uint8))
        texts.append("".join(str(int(y[i])) for i in picks))
    return lines, texts


def write_digit_lines(
    folder: str | os.PathLike[str],
    images: np.ndarray,
    labels: np.ndarray,
    n_lines: int,
    *,
    seed: int = 0,
    **kwargs: int | tuple[int, int],
) -> Path:
    """Write :func:`make_digit_lines` lines as ``folder/images/NNNNNN.png`` and
    ``folder/lines.tsv`` (``path<TAB>label``, a header line first). Returns the TSV's path."""
    from PIL import Image

    out = Path(folder)
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines, texts = make_digit_lines(images, labels, n_lines, seed=seed, **kwargs)
    rows = ["path\tlabel"]
    for i, (line, text) in enumerate(zip(lines, texts, strict=True)):
        name = f"images/{i:06d}.png"
        Image.fromarray(line, mode="L").save(out / name)
        rows.append(f"{name}\t{text}")
    tsv = out / "lines.tsv"
    tsv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return tsv
